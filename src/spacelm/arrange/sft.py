"""Supervised baseline: fine-tune a policy on reference solutions (``spacelm arrange sft``).

MetaSpatial has no SFT stage; with one, the report can compare base, SFT, SFT + GRPO and SFT + GRPO
multi-turn from the same start. References come from the task generator (which solves its own
tasks) or from a completions JSONL. ``jitter`` moves each reference object by N(0, jitter) metres
in x and y, so that the SFT policy starts with collisions that GRPO can learn to remove.

The output is a plain saved model (with its tokenizer or processor and ``spacelm_arrange.json``)
that ``spacelm arrange train`` and ``spacelm arrange eval --model`` load.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spacelm.arrange.answer import Placement
from spacelm.arrange.config import ArrangeArgs, save_policy_info
from spacelm.arrange.grpo import empty_room_image, load_processing_class
from spacelm.arrange.prompts import build_messages, compact_answer
from spacelm.arrange.task import ArrangeTask


def jittered(placements: Sequence[Placement], sigma: float, seed: int, task_id: str
             ) -> list[Placement]:
    """``placements`` moved by N(0, sigma) m in x and y, drawn from (seed, task id)."""
    if sigma == 0:
        return list(placements)
    key = int.from_bytes(hashlib.sha256(task_id.encode("utf-8")).digest()[:8], "big")
    rng = np.random.default_rng([seed, key])
    shift = rng.normal(0.0, sigma, size=(len(placements), 2))  # (N, 2) metres
    return [p._replace(x=p.x + float(dx), y=p.y + float(dy)) for p, (dx, dy) in zip(placements, shift)]


def reference_text(placements: Sequence[Placement], args: ArrangeArgs) -> str:
    """The target completion: the compact style's short answer, else MetaSpatial's form."""
    if args.prompt_style == "compact":
        return compact_answer(placements, rotation=args.rotation)
    return compact_answer(placements, rotation=args.rotation, decimals=3).replace(
        "<think></think>", "<think>Place each object where its relations hold, clear of the "
        "others and inside the room.</think>")


def sft_rows(tasks: Sequence[ArrangeTask], references: Sequence[Sequence[Placement]],
             args: ArrangeArgs) -> list[dict]:
    """Prompt-completion rows (conversational), one per task, references jittered per task."""
    rows = []
    for task, reference in zip(tasks, references, strict=True):
        target = reference_text(jittered(reference, args.jitter, args.seed, task.id), args)
        row = {"prompt": build_messages(task, rotation=args.rotation, image=args.image,
                                        style=args.prompt_style),
               "completion": [{"role": "assistant", "content": target}]}
        if args.image:
            row["image"] = empty_room_image(task, args.image_size)
        rows.append(row)
    return rows


def train_sft(args: ArrangeArgs, config, tasks: Sequence[ArrangeTask],
              references: Sequence[Sequence[Placement]], *, callbacks=None,
              resume: bool = True) -> Path:
    """Fine-tune ``args.model`` on the references with TRL's ``SFTTrainer`` (loss on the answer
    only); resumes from the newest checkpoint in ``config.output_dir``. Returns the folder."""
    from datasets import Dataset
    from trl import SFTTrainer

    from spacelm.arrange.grpo import last_checkpoint, quiet_printer

    processing = load_processing_class(args.model, args.image)
    trainer = SFTTrainer(model=args.model, args=config,
                         train_dataset=Dataset.from_list(sft_rows(tasks, references, args)),
                         processing_class=processing, callbacks=callbacks)
    quiet_printer(trainer, callbacks)
    checkpoint = last_checkpoint(config.output_dir) if resume else None
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(config.output_dir)
    if trainer.accelerator.is_main_process:
        processing.save_pretrained(config.output_dir)
        save_policy_info(config.output_dir, args)
    return Path(config.output_dir)
