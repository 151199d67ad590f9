"""GRPO training of an arranging policy on TRL: ``spacelm arrange train``.

Our small interface over TRL (pinned in the ``rl`` extra), so that another framework could be put
behind it: the *data* are rows ``{"prompt": messages, "task": JSON[, "image": PIL]}``; the *reward*
is a plain callable (``rewards.ArrangeReward``, or ``multiturn.DiscountedReturn`` over the turns'
scores); the *rollout* is TRL's own generation for single-turn runs (vLLM, vision-language models
and all) or ``multiturn.ArrangeRollout`` for refinement; the *trainer* is ``ArrangeGRPOTrainer``,
a ``GRPOTrainer`` that hands the rows to the rollout and, with per-object credit, turns the
sequence advantages into token advantages.

The same code runs a tiny policy on a laptop CPU and Qwen2.5-VL-7B under ``accelerate launch``
(DDP, DeepSpeed ZeRO-3, FSDP2; see docs/arrange.md): only the config differs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from spacelm.arrange.config import ArrangeArgs, save_policy_info
from spacelm.arrange.credit import credit_advantages, token_penalties
from spacelm.arrange.multiturn import ArrangeRollout, DiscountedReturn
from spacelm.arrange.prompts import build_messages
from spacelm.arrange.rewards import PRESETS, ArrangeReward, FormatReward, task_column
from spacelm.arrange.task import ArrangeTask, task_to_dict


def task_rows(tasks: Sequence[ArrangeTask], args: ArrangeArgs) -> list[dict]:
    """One training row per task: the chat prompt, the task as JSON and, for vision-language
    policies, an empty-room render (the image the prompt's image part refers to)."""
    rows = []
    for task in tasks:
        row = {"prompt": build_messages(task, rotation=args.rotation, image=args.image,
                                        style=args.prompt_style),
               "task": json.dumps(task_to_dict(task), sort_keys=True)}
        if args.image:
            row["image"] = empty_room_image(task, args.image_size)
        rows.append(row)
    return rows


def empty_room_image(task: ArrangeTask, size: int):
    """A corner view of the task's empty room (built-in renderer), as a PIL image."""
    from spacelm.arrange.answer import room_walls
    from spacelm.render import render
    from spacelm.scene import Layout

    return render(Layout(walls=room_walls(task)), views=("corner",), size=(size, size))["corner"]


def arrange_reward(args: ArrangeArgs, judge=None) -> ArrangeReward:
    """The reward of a run: the preset's weights, our format grading, the optional judge."""
    weights = PRESETS[args.reward]
    if judge is None:
        weights = replace(weights, judge=0.0)
    elif not weights.judge:
        weights = replace(weights, judge=args.judge_weight)
    return ArrangeReward(weights=weights, format=FormatReward(shaped=args.shaped_format,
                                                              require_rotation=args.rotation),
                         require_rotation=args.rotation, judge=judge, log_terms=True)


def make_judge(args: ArrangeArgs):
    """The render-and-judge reward, or None when no judge endpoint is configured."""
    if not args.judge_model:
        return None
    from spacelm.arrange.judge import Judge, JudgeConfig

    config = JudgeConfig(model=args.judge_model, base_url=args.judge_base_url,
                         max_concurrency=args.judge_max_concurrency,
                         cache_dir=args.judge_cache_dir or None)
    return Judge(config, require_rotation=args.rotation)


def _grpo_trainer_class():
    from trl import GRPOTrainer

    class ArrangeGRPOTrainer(GRPOTrainer):
        """``GRPOTrainer`` with the dataset rows available to the rollout and per-object credit.

        ``_generate_and_score_completions`` is the one TRL method overridden: TRL's own
        ``_compute_loss`` takes ``(B, T)`` advantages for subclasses that set them there (its
        comment says so; its experimental trainers do the same), so no loss code is copied.
        """

        def __init__(self, *args, token_credit: float = 0.0, credit_physics=None,
                     require_rotation: bool = True, **kwargs):
            super().__init__(*args, **kwargs)
            self.token_credit = token_credit
            self.credit_physics = credit_physics
            self.require_rotation = require_rotation
            self.current_rows: list[dict] = []

        def _generate_and_score_completions(self, inputs):
            self.current_rows = inputs
            out = super()._generate_and_score_completions(inputs)
            if self.token_credit > 0:
                out["advantages"] = self._token_advantages(inputs, out)
            return out

        def _token_advantages(self, inputs, out):
            import torch

            ids, mask = out["completion_ids"], out["completion_mask"]
            tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
            tasks = task_column({"task": [row["task"] for row in inputs]}, len(inputs))
            penalties = []
            for i, row in enumerate(inputs):
                if "token_penalty" in row:  # the multi-turn rollout scored each turn's tokens
                    penalties.append(np.asarray(row["token_penalty"], dtype=np.float64))
                    continue
                row_ids = ids[i][mask[i].bool()].tolist()
                penalties.append(token_penalties(
                    row_ids, lambda t: tokenizer.decode(t, skip_special_tokens=True), tasks[i],
                    physics=self.credit_physics, require_rotation=self.require_rotation))
            adv = credit_advantages(out["advantages"].detach().cpu().numpy(), penalties,
                                    self.token_credit, ids.shape[1])
            return torch.as_tensor(adv, dtype=out["advantages"].dtype,
                                   device=out["advantages"].device)

    return ArrangeGRPOTrainer


def build_trainer(args: ArrangeArgs, config, tasks: Sequence[ArrangeTask], *, model=None,
                  processing_class=None, callbacks=None, judge=None):
    """The ``ArrangeGRPOTrainer`` of a run (``config`` is TRL's ``GRPOConfig``)."""
    from datasets import Dataset

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental
    reward = arrange_reward(args, judge)
    rows = Dataset.from_list(task_rows(tasks, args))
    rollout = None
    reward_funcs = [reward]
    if args.turns > 1:
        rollout = ArrangeRollout(reward=reward, turns=args.turns, feedback_style=args.feedback_style,
                                 token_credit=args.token_credit > 0, require_rotation=args.rotation)
        reward_funcs = [DiscountedReturn(gamma=args.gamma, normalize=args.normalize_return)]
    if processing_class is None:
        processing_class = load_processing_class(args.model, args.image)
    trainer_class = _grpo_trainer_class()
    return trainer_class(model=model or args.model, reward_funcs=reward_funcs, args=config,
                         train_dataset=rows, processing_class=processing_class,
                         rollout_func=rollout, callbacks=callbacks, token_credit=args.token_credit,
                         credit_physics=reward.physics, require_rotation=args.rotation)


def load_processing_class(model_path: str, image: bool):
    """The tokenizer (text policy) or processor (vision-language policy), left-padded, with a pad
    token."""
    from transformers import AutoTokenizer

    if image:
        from spacelm.arrange.vl_processor import load_policy_processor

        processing = load_policy_processor(model_path, padding_side="left")
    else:
        processing = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    tokenizer = getattr(processing, "tokenizer", processing)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return processing


def last_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-<step>`` folder of a run, to resume from (None when there is none)."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None


def quiet_printer(trainer, callbacks) -> None:
    """With our own progress callback, drop the Trainer's printing of raw log dicts (the progress
    lines carry the figures, and every logged dict is kept in its ``history``)."""
    from transformers import PrinterCallback

    from spacelm.arrange.progress import RunProgress

    if any(isinstance(c, RunProgress) for c in callbacks or ()):
        trainer.remove_callback(PrinterCallback)


def train_grpo(args: ArrangeArgs, config, tasks: Sequence[ArrangeTask], *, callbacks=None,
               resume: bool = True) -> Path:
    """Run GRPO (resuming from the newest checkpoint in ``config.output_dir`` when ``resume``) and
    save the final policy there; returns the folder."""
    trainer = build_trainer(args, config, tasks, callbacks=callbacks, judge=make_judge(args))
    quiet_printer(trainer, callbacks)
    checkpoint = last_checkpoint(config.output_dir) if resume else None
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(config.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(config.output_dir)
        save_policy_info(config.output_dir, args)
    return Path(config.output_dir)
