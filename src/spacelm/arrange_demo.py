"""``spacelm arrange demo``: SFT then GRPO of a tiny arranging policy on a CPU, scored on held-out tasks.

Within a wall-clock budget (30 minutes by default, 2 CPU cores):

1. generate training tasks and 100 held-out tasks (the generator's own train/test split), at most
   ``max_objects`` objects each, with compact prompts;
2. build a tiny random Qwen2 policy offline (a BPE trained on those prompts and answers);
3. SFT on the reference solutions with their x, y jittered, so the SFT policy starts by colliding;
4. GRPO from the SFT policy with the ``dense`` reward (format tiers, physics rates, overlap depth);
5. optionally GRPO with 2-turn refinement from the same SFT start (``multiturn``);
6. score base, SFT and GRPO greedily on the held-out tasks with ``arrange.evaluate``, print a
   before/after table, draw one held-out task before and after (plan view), and write
   ``arrange_demo_metrics.json`` (one entry per policy plus the learning curves).

Every stage is the code ``spacelm arrange sft|train|eval`` runs for Qwen2.5-VL-7B; only the
configuration differs (``configs/arrange/demo.yaml`` is this run as a file).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from spacelm.arrange.config import ArrangeArgs, trl_config
from spacelm.arrange.generate import generate_tasks
from spacelm.arrange.prompts import compact_answer, compact_prompt
from spacelm.arrange.task import CompletionRecord
from spacelm.errors import ArgumentError

POLICY = {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "vocab_size": 1000}
SFT = {"per_device_train_batch_size": 8, "learning_rate": 1e-3, "lr_scheduler_type": "constant",
       "weight_decay": 0.0, "max_length": 512}
GRPO = {"per_device_train_batch_size": 16, "num_generations": 8, "max_completion_length": 160,
        "learning_rate": 1e-4, "lr_scheduler_type": "constant", "beta": 0.0, "loss_type": "dapo",
        "scale_rewards": "group", "temperature": 0.8, "mask_truncated_completions": True}
REWARD = "dense"  # the default rates plus overlap depth (calibration: docs/arrange.md)
COMMON = {"use_cpu": True, "bf16": False, "report_to": [], "logging_steps": 5, "save_strategy": "no",
          "max_steps": 100_000, "disable_tqdm": True, "seed": 0}
SFT_SHARE = 0.28  # of the training time; the rest is GRPO (halved between the two with multiturn)
EVAL_RESERVE_S = 150.0  # three held-out evaluations, the picture, saving


def run_demo(output_dir: str | Path = "out/arrange_demo", *, minutes: float = 30.0, seed: int = 0,
             train_tasks: int = 2000, test_tasks: int = 100, max_objects: int = 4,
             jitter: float = 0.25, multiturn: bool = False, overwrite: bool = False,
             console: Console | None = None) -> dict:
    """Run the demo (see the module docstring); returns the figures written to the metrics JSON."""
    import datasets
    import torch
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, SFTConfig

    from spacelm.arrange.grpo import train_grpo
    from spacelm.arrange.progress import RunProgress, TimeLimit
    from spacelm.arrange.sft import train_sft
    from spacelm.model.tiny import save_tiny_base_lm

    start = time.monotonic()
    console = console or Console()
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{output_dir} is not empty; pass overwrite=True (--overwrite)")
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    # TRL 1.16 still calls transformers' gradient_checkpointing names, deprecated in 5.24 for
    # activation_checkpointing: four FutureWarnings per run that no spacelm call can avoid.
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated",
                            category=FutureWarning)
    torch.manual_seed(seed)
    console.rule("[bold]spacelm arrange demo")

    train = generate_tasks(train_tasks, seed, "train", max_objects=max_objects)
    test = generate_tasks(test_tasks, seed, "test", max_objects=max_objects)
    corpus = [compact_prompt(g.task) for g in train] + [compact_answer(g.reference) for g in train]
    base = save_tiny_base_lm(output_dir / "base", corpus=corpus, seed=seed, **POLICY)
    args = ArrangeArgs(model=str(base), prompt_style="compact", feedback_style="compact",
                       jitter=jitter, seed=seed, max_objects=max_objects, reward=REWARD)
    console.print(f"{len(train)} training and {len(test)} held-out tasks (at most {max_objects} "
                  f"objects); policy: Qwen2 width {POLICY['hidden_size']}, {POLICY['num_layers']} "
                  f"layers, {sum(p.numel() for p in _load(base)[0].parameters()) / 1e6:.2f} M params")

    figures = {"policies": {}, "curves": {}, "settings": {
        "train_tasks": len(train), "test_tasks": len(test), "max_objects": max_objects,
        "jitter_m": jitter, "policy": POLICY, "sft": SFT, "grpo": GRPO, "reward": REWARD,
        "seed": seed}}
    figures["policies"]["base"] = _evaluate(base, test, args, console, "base")
    train_s = minutes * 60 - (time.monotonic() - start) - EVAL_RESERVE_S
    if train_s < 30:
        raise ArgumentError(f"a {minutes}-minute budget leaves {train_s:.0f} s for training; give more")
    grpo_s = (1 - SFT_SHARE) * train_s / (2 if multiturn else 1)

    progress = RunProgress("sft", seconds=SFT_SHARE * train_s, console=console)
    sft_config = trl_config(SFTConfig, {}, "", "sft", output_dir=str(output_dir / "sft"),
                            **{**COMMON, **SFT})
    sft = train_sft(args, sft_config, [g.task for g in train], [g.reference for g in train],
                    callbacks=[TimeLimit(SFT_SHARE * train_s), progress], resume=False)
    figures["curves"]["sft"] = progress.history
    figures["policies"]["sft"] = _evaluate(sft, test, args, console, "sft")

    runs = [("grpo", 1)] + ([("grpo_multiturn", 2)] if multiturn else [])
    completions = {}
    for name, turns in runs:
        progress = RunProgress(name, seconds=grpo_s, console=console)
        run_args = replace(args, model=str(sft), turns=turns)
        config = trl_config(GRPOConfig, {}, "", "grpo", output_dir=str(output_dir / name),
                            **{**COMMON, **GRPO})
        folder = train_grpo(run_args, config, [g.task for g in train],
                            callbacks=[TimeLimit(grpo_s), progress], resume=False)
        figures["curves"][name] = progress.history
        figures["policies"][name] = _evaluate(folder, test, run_args, console, name,
                                              keep=completions)
    _evaluate(sft, test, args, console, None, keep=completions, key="sft")
    picture = _picture(output_dir / "held_out_before_after.png", test, completions)
    figures["minutes"] = round((time.monotonic() - start) / 60, 2)
    figures["picture"] = str(picture) if picture else None
    (output_dir / "arrange_demo_metrics.json").write_text(json.dumps(figures, indent=2) + "\n")
    console.print(summary_table(figures["policies"]))
    if picture:
        console.print(f"one held-out task before (SFT) and after (GRPO): {picture}")
    console.print(f"{figures['minutes']:.1f} min in all; figures in "
                  f"{output_dir / 'arrange_demo_metrics.json'}")
    return figures


def _load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    return model, tokenizer


def _evaluate(path, generated, args: ArrangeArgs, console, name, keep=None, key=None) -> dict:
    """Greedy completions of the held-out tasks (final turn scored) and their evaluation row."""
    from spacelm.arrange.evaluate import evaluate_completions
    from spacelm.arrange.sampling import policy_completions

    started = time.monotonic()
    model, tokenizer = _load(path)
    tasks = [g.task for g in generated]
    turns = policy_completions(model, tokenizer, tasks, style=args.prompt_style, rotation=args.rotation,
                               turns=args.turns, feedback_style=args.feedback_style,
                               max_new_tokens=GRPO["max_completion_length"])
    records = [CompletionRecord(t.id, c[-1]) for t, c in zip(tasks, turns)]
    if keep is not None:
        keep[key or name] = records
    if name is None:
        return {}
    result = evaluate_completions(tasks, records, require_rotation=args.rotation)
    row = asdict(result.mean)
    valid = [e for e in result.completions if e.valid]
    row["colliding_layouts"] = (sum(e.collision > 0 for e in valid) / len(valid)) if valid else None
    row["eval_seconds"] = round(time.monotonic() - started, 1)
    console.print(f"{name}: format {row['format']:.2f}, collision "
                  f"{_fmt(row['collision'])}, out of bounds {_fmt(row['out_of_bounds'])}, "
                  f"reward {_fmt(row['reward'])} ({row['eval_seconds']:.0f} s)")
    return row


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary_table(policies: dict) -> Table:
    """Before/after: one row per policy, the held-out rates as percentages."""
    table = Table(title="held-out tasks, greedy (MetaSpatial Qwen2.5-VL-7B: collision 38.2% -> "
                        "11.5%, format 0.85 -> 0.98)")
    for column in ("policy", "format", "collision", "colliding layouts", "out of bounds",
                   "constraint V", "reward"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for name, row in policies.items():
        table.add_row(name, *(_pct(row.get(k)) for k in (
            "format", "collision", "colliding_layouts", "out_of_bounds", "constraint")),
            _fmt(row.get("reward")))
    return table


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _picture(path: Path, generated, completions: dict) -> Path | None:
    """Plan views of one held-out task, SFT beside GRPO: preferably one whose SFT answer collides
    and whose GRPO answer can be read; an answer that cannot be read is drawn as the empty room."""
    from PIL import Image, ImageDraw

    from spacelm.arrange.answer import (
        parse_answer,
        placements_to_boxes,
        room_walls,
        to_layout,
    )
    from spacelm.arrange.physics import check_layouts
    from spacelm.render import render
    from spacelm.scene import Layout

    before, after = completions.get("sft"), completions.get("grpo")
    if not before or not after:
        return None

    def rank(k: int) -> tuple[bool, bool, bool]:
        task = generated[k].task
        pb, pa = (parse_answer(c[k].completion, task) for c in (before, after))
        collides = pb.complete and check_layouts(
            task, placements_to_boxes(task, pb.placements)).collision_rate[0] > 0
        return (bool(collides) and pa.complete, pb.complete and pa.complete, pa.complete)

    k = max(range(len(generated)), key=rank)
    task, size = generated[k].task, (420, 420)
    canvas = Image.new("RGB", (2 * size[0], size[1] + 24), "white")
    draw = ImageDraw.Draw(canvas)
    for column, (records, title) in enumerate(((before, "before: SFT"), (after, "after: GRPO"))):
        answer = parse_answer(records[k].completion, task)
        layout = to_layout(task, answer.placements) if answer.complete else Layout(walls=room_walls(task))
        canvas.paste(render(layout, views=("top",), size=size)["top"], (column * size[0], 24))
        note = "" if answer.complete else "  (answer not readable)"
        draw.text((column * size[0] + 8, 6), f"{title}  {task.id}{note}", fill="black")
    canvas.save(path)
    return path
