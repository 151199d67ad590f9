"""``spacelm quickstart``: train a tiny SpatialLM on synthetic rooms on a CPU, then score it on held-out rooms.

Within a wall-clock budget (25 minutes by default, 2 CPU cores): synthesise training rooms and a
held-out set from another seed (``ROOMS``: 2-6 boxes of 8 classes), build a tiny random LM offline
(width 128, 4 layers) with a cheap sparse encoder at 10 cm voxels, train stage 1 then stage 2 on the
clock (the learning-rate schedule is sized to the time left; F1 on a few held-out rooms every
``VALIDATE_EVERY_STEPS``: the learning curve), predict the held-out rooms greedily with
``predict_clouds``, score them with ``evaluate_scenes`` and print F1 per class at IoU 0.25 and 0.5
against the targets, plus how much the point cloud lowers the held-out answer loss
(``spacelm.train.diagnostics``). It also writes an HTML view of one prediction, a PNG of its plan
beside the ground truth's, the predicted layout and a JSON of the figures. Printed to a file or a
pipe, progress comes as a plain line per 5% of each stage.

The run config is ``quickstart_config``; ``configs/quickstart.yaml`` is the same config as a file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from transformers import TrainerCallback

from spacelm.datasets.synthetic import SynthConfig
from spacelm.errors import ArgumentError
from spacelm.train.args import TrainConfig, config_from_dict

# class -> (IoU threshold, F1 to reach) on held-out rooms of the full generator.
TARGETS = {"wall": (0.5, 0.9), "door": (0.25, 0.6), "window": (0.25, 0.6), "objects": (0.25, 0.5)}
STAGE1_SHARE = 0.05  # of the training time: the LM is random and frozen in stage 1
# Points per m^2 of the synthetic rooms (the generator's default is 1000). The encoder's cost grows with
# the occupied 5 cm voxels: a batch of 4 rooms takes 0.26 s forward+backward at 100 against 0.56 s at
# 300 and 1.3 s at 1000 on 2 cores, and optimiser steps are what limit learning here. Below ~100 the
# SpatialLM filter (a box needs > 100 points around it) drops many small objects (28% at 60, 8% at 100).
DENSITY = 100.0
# The quickstart's rooms: the full generator (rectangular and L-shaped, 1-2 doors, 0-3 windows) furnished
# with 2-6 boxes of 8 large classes instead of 3-15 of 33: an object vocabulary sized to a 25-minute CPU
# budget (docs/training.md, "What it reaches"). Printed with the results.
QUICKSTART_CLASSES = ("bed", "sofa", "wardrobe", "bookcase", "dining_table", "desk", "refrigerator", "cupboard")
ROOMS = SynthConfig(density=DENSITY, categories=QUICKSTART_CLASSES, boxes=(2, 6))
VALIDATE_EVERY_STEPS = 1000  # F1 on VALIDATION_ROOMS held-out rooms in the logs: the learning curve
VALIDATION_ROOMS = 10
# Greedy decoding up to MAX_NEW_TOKENS in batches of 10, the encoder on the full cloud and the clean-up:
# about 1 s per room on 2 idle cores when the model never stops early, several times that on a busy
# machine. Scoring also stops at the deadline (see _score), so this only sizes the reserve.
EVAL_SECONDS_PER_ROOM = 2.0
EVAL_BATCH = 10
MAX_NEW_TOKENS = 1024  # the longest synthetic room is about 800 answer tokens
RELIANCE_ROOMS = 16  # held-out rooms scored with their own and with another room's cloud (a few seconds)
# ``--token-branch``: a second encoder at half the widths learns which of these labels each 80 cm token
# cell touches (the head's loss at 0.1x); its marks, at 10x, are added to the point tokens the LM reads.
# It meets every target after about 6,000-7,000 stage-2 steps (65-75 minutes here; `--minutes 90` met them
# all), not in 25 minutes, where it is behind the default (docs/training.md, "Every target on the clock").
TOKEN_BRANCH = {"token_labels": ["door", "window", *QUICKSTART_CLASSES], "token_loss_weight": 0.1,
                "token_marks_scale": 10.0, "token_head_input": "branch",
                "token_branch": {"channels": [4, 4, 8, 16], "embed_dim": 32}}


def quickstart_config(output_dir: str | Path, *, train_dir: str | Path, val_dir: str | Path,
                      stage1_minutes: float, stage2_minutes: float, seed: int = 0,
                      token_branch: bool = False) -> TrainConfig:
    """The quickstart's run config (``configs/quickstart.yaml`` holds the same values), with the
    ``TOKEN_BRANCH`` model settings when ``token_branch``."""
    stage = {"learning_rate": 1e-3, "batch_size": 4, "warmup_ratio": 0.05, "min_lr_ratio": 0.1}
    return config_from_dict({
        "output_dir": str(output_dir),
        "seed": seed,
        "model": {"tiny_lm": {"hidden_size": 128, "num_layers": 4, "num_heads": 4},
                  # 10 cm voxels and layout bins, three down-convs (80 cm token cells), a k3 stem
                  "point_encoder": {"channels": [8, 8, 16, 32], "embed_dim": 64, "num_bins": 320,
                                    "stem_kernel": 3},
                  "projector": "linear", "dtype": "float32", "reference_code": False,
                  **(TOKEN_BRANCH if token_branch else {})},
        "data": {"train": [str(train_dir)], "val": [str(val_dir)], "task": "all", "num_workers": 1,
                 "augment": {"rotate": "right_angles", "scale_range": [0.9, 1.1], "color_jitter": 0.0}},
        "stage1": {**stage, "time_limit_minutes": stage1_minutes},
        "stage2": {**stage, "time_limit_minutes": stage2_minutes},
        "validation": {"every_steps": VALIDATE_EVERY_STEPS, "at_end": False, "num_rooms": VALIDATION_ROOMS,
                       "batch_size": VALIDATION_ROOMS},
        "logging": {"report_to": ["tensorboard"], "logging_steps": 10, "save_steps": 200},
    })


def run_quickstart(output_dir: str | Path, *, minutes: float = 25.0, rooms: int = 1000, val_rooms: int = 50,
                   seed: int = 0, overwrite: bool = False, token_branch: bool = False,
                   console: Console | None = None) -> dict:
    """Synthesise, train both stages, predict and score within ``minutes`` of wall-clock time
    (with ``token_branch``, the model of ``TOKEN_BRANCH``: for runs of 70 minutes or more).

    Returns the figures also written to ``<output_dir>/quickstart_metrics.json``: F1 per class and
    threshold, whether each target was met, optimiser steps and steps/s per stage, minutes taken.
    Synthesised rooms in ``output_dir`` are reused; a trained model there is an error unless
    ``overwrite`` (which deletes it), since finished stages would otherwise be skipped.
    """
    from transformers.utils import logging as hf_logging

    from spacelm.datasets.convert import generator_settings, synthesize_dataset, synthesized_with
    from spacelm.train.sft import train

    start = time.monotonic()
    console = console or Console()
    output_dir = Path(output_dir)
    hf_logging.disable_progress_bar()
    train_dir, val_dir = output_dir / "data" / "train", output_dir / "data" / "val"
    if (output_dir / "model").exists():
        if not overwrite:
            raise FileExistsError(f"{output_dir / 'model'} exists; pass overwrite=True (--overwrite) to "
                                  "train again, or choose another output folder")
        shutil.rmtree(output_dir / "model")
    console.rule("[bold]spacelm quickstart")
    workers = min(2, os.cpu_count() or 1)
    console.print(f"rooms: {describe_rooms(ROOMS)}")
    if token_branch:
        console.print("model: with the token branch (door, window and box-class marks from a second encoder, "
                      "added to the point tokens); it met every target with --minutes 90 on 2 cores")
    settings = generator_settings(ROOMS)
    for folder in (train_dir, val_dir):  # rooms of an earlier spacelm's generator are made again
        if folder.exists() and synthesized_with(folder) != settings:
            console.print(f"{folder} holds rooms of other generator settings: synthesising them again")
            shutil.rmtree(folder)
    synthesize_dataset(train_dir, rooms, seed=seed, val_fraction=0.0, workers=workers, synth=ROOMS)
    # Held out: another seed, so no training room is repeated.
    synthesize_dataset(val_dir, val_rooms, seed=seed + 1, val_fraction=1.0, workers=workers, synth=ROOMS)

    reserve = 30.0 + EVAL_SECONDS_PER_ROOM * val_rooms  # scoring, saving, loading
    train_minutes = (minutes * 60 - (time.monotonic() - start) - reserve) / 60
    if train_minutes < 0.5:
        raise ArgumentError(f"a {minutes}-minute budget leaves {train_minutes:.1f} min for training after "
                            f"synthesis and a {reserve:.0f} s reserve for scoring; give more --minutes")
    config = quickstart_config(output_dir / "model", train_dir=train_dir, val_dir=val_dir, seed=seed,
                               stage1_minutes=STAGE1_SHARE * train_minutes,
                               stage2_minutes=(1 - STAGE1_SHARE) * train_minutes, token_branch=token_branch)
    console.print(f"training {train_minutes:.1f} min on {rooms} rooms: stage 1 (encoder, LM frozen) "
                  f"{STAGE1_SHARE * train_minutes:.1f} min, stage 2 (everything) "
                  f"{(1 - STAGE1_SHARE) * train_minutes:.1f} min")
    seconds = {f"stage{s}": 60 * getattr(config, f"stage{s}").time_limit_minutes for s in ("1", "2")}
    curve = LearningCurve(console)
    with _progress(console) as progress:
        folders = train(config, "both", callbacks=[RichTrainingProgress(progress, seconds), curve],
                        show_progress=False)
    steps = {s: json.loads((folder / "stage_complete.json").read_text()) for s, folder in folders.items()}

    result, example, reliance = _score(folders["2"], val_dir, console, deadline=start + 60 * minutes)
    figures = _figures(result, steps, start)
    figures["rooms"] = {"generator": settings, "train": rooms, "held_out": val_rooms,
                        "seen": curve.rooms_before}
    figures["learning_curve"] = curve.points
    figures["token_branch"] = token_branch
    figures["cloud_reliance"] = {"own_cloud_loss": reliance.own, "other_cloud_loss": reliance.other,
                                 "gain": reliance.gain, "rooms": reliance.rooms}
    html, plans = _write_outputs(output_dir, result, example, figures)
    console.print(summary_table(figures["f1"]))
    rates = ", ".join(f"stage {s}: {v['steps']} steps at {v['steps_per_second']:.2f}/s"
                      for s, v in figures["stages"].items())
    console.print(f"held-out answer loss {reliance.own:.3f} nats/token with each room's own cloud, "
                  f"{reliance.other:.3f} with another room's: the cloud is worth {reliance.gain:.3f}")
    console.print(f"{rates}; {figures['minutes']:.1f} min in all. View one prediction: {html} "
                  f"(plan views, ground truth beside prediction: {plans})")
    return figures


def _score(model_dir: Path, val_dir: Path, console: Console, *, deadline: float):
    """Greedy predictions on the held-out rooms: ``(EvalResult, (id, cloud, gt, pred) of the first,
    CloudReliance on up to RELIANCE_ROOMS of them)``.

    Batches stop early when the next one would end after ``deadline`` (a slow machine); the rooms
    predicted so far are scored and the count is printed.
    """
    from spacelm.predict import PredictConfig, load_model, predict_clouds
    from spacelm.scene.metrics import evaluate_scenes
    from spacelm.train.data import LayoutDataset
    from spacelm.train.diagnostics import cloud_reliance

    model, processor = load_model(model_dir, "cpu")
    rooms = LayoutDataset([val_dir], processor, split="val")
    reliance = cloud_reliance(model, processor, [rooms.room(i) for i in range(min(RELIANCE_ROOMS, len(rooms)))])
    config = PredictConfig(do_sample=False, max_new_tokens=MAX_NEW_TOKENS)
    scenes, example, batch_seconds = [], None, 0.0
    name, lines = "predicting held-out rooms", PlainProgress(console)
    with _progress(console) as progress:
        task = progress.add_task(name, total=len(rooms), info="")
        lines.update(name, 0.0, f"0 of {len(rooms)} rooms")
        for begin in range(0, len(rooms), EVAL_BATCH):
            if scenes and time.monotonic() + batch_seconds > deadline:
                console.print(f"[yellow]time budget reached: scoring {len(scenes)} of {len(rooms)} "
                              "held-out rooms[/yellow]")
                break
            tic = time.monotonic()
            batch = [rooms.room(i) for i in range(begin, min(begin + EVAL_BATCH, len(rooms)))]
            predictions = predict_clouds(model, processor, [cloud for _, cloud, _ in batch], config)
            for (sid, cloud, gt), pred in zip(batch, predictions):
                scenes.append((sid, gt, pred.layout))
                example = example or (sid, cloud, gt, pred.layout)
            batch_seconds = max(batch_seconds, time.monotonic() - tic)
            progress.advance(task, len(batch))
            lines.update(name, len(scenes) / len(rooms), f"{len(scenes)} of {len(rooms)} rooms")
    return evaluate_scenes(scenes), example, reliance


def _figures(result, steps: dict, start: float) -> dict:
    from spacelm.train.sft import f1_by_class

    f1 = {name: {str(t): (None if math.isnan(v) else v) for t, v in by_t.items()}
          for name, by_t in f1_by_class(result).items()}
    met = {name: f1.get(name, {}).get(str(t)) is not None and f1[name][str(t)] >= goal
           for name, (t, goal) in TARGETS.items()}
    stages = {s: {"steps": info["global_step"],
                  "steps_per_second": info["global_step"] / max(info["train_runtime"], 1e-9),
                  "minutes": info["train_runtime"] / 60} for s, info in steps.items()}
    return {"f1": f1, "rooms_scored": len(result.per_scene),
            "targets": {k: list(v) for k, v in TARGETS.items()}, "targets_met": met,
            "stages": stages, "minutes": (time.monotonic() - start) / 60}


def _write_outputs(output_dir: Path, result, example, figures: dict) -> tuple[Path, Path]:
    """The example's predicted layout, the figures as JSON; returns the HTML viewer and the PNG plans."""
    from spacelm.scene.language import write_layout
    from spacelm.viz import write_html

    sid, cloud, gt, pred = example
    write_layout(output_dir / "predictions" / f"{sid}.txt", pred)
    (output_dir / "quickstart_metrics.json").write_text(
        json.dumps({**figures, "evaluation": result.to_dict()}, indent=1) + "\n", encoding="utf-8")
    html = write_html(output_dir / "quickstart_prediction.html", points=cloud.xyz, rgb=cloud.rgb, layout=gt,
                      pred=pred, title=f"{sid}: ground truth and prediction")
    return html, write_plan_pair(output_dir / "quickstart_prediction.png", gt, pred, title=sid, points=cloud)


def write_plan_pair(path: str | Path, gt, pred, *, title: str = "", size: tuple[int, int] = (480, 480),
                    points=None) -> Path:
    """A PNG of two ``render`` plan views (the built-in backend), ground truth left, prediction right,
    each ``size`` pixels, framed alike (one scale for both) and drawn over ``points`` (the scan) when
    given, under a caption line. A layout with nothing to draw (an untrained model may predict no walls
    and no boxes) gets a blank panel saying so."""
    import numpy as np
    from PIL import Image, ImageDraw

    from spacelm.render import render
    from spacelm.render.scene import room_shell, scene_bounds

    extents = []
    for layout in (gt, pred):
        try:
            extents.append(scene_bounds(room_shell(layout), layout))
        except ValueError:  # no walls, no boxes
            pass
    bounds = None if not extents else np.stack([np.min([e[0] for e in extents], axis=0),
                                                np.max([e[1] for e in extents], axis=0)])
    caption_height = 24
    canvas = Image.new("RGB", (2 * size[0], size[1] + caption_height), "white")
    draw = ImageDraw.Draw(canvas)
    for column, (layout, caption) in enumerate(((gt, "ground truth"), (pred, "prediction"))):
        if layout.num_entities and bounds is not None:
            image = render(layout, views=("top",), size=size, bounds=bounds, points=points)["top"]
            canvas.paste(image, (column * size[0], caption_height))
        else:
            caption += " (nothing to draw)"
        draw.text((column * size[0] + 8, 6), f"{caption}  {title}".rstrip(), fill="black")
    path = Path(path)
    canvas.save(path)
    return path


def summary_table(f1: dict[str, dict[str, float | None]]) -> Table:
    """Rich table of F1@0.25 and F1@0.5 per class, with the quickstart's targets."""
    table = Table(title="held-out rooms: F1 per class (scene-averaged)")
    for column in ("class", "F1@0.25", "F1@0.5", "target"):
        table.add_column(column, justify="left" if column == "class" else "right")
    order = ["wall", "door", "window", "objects", "objects_pooled"]
    names = [n for n in order if n in f1] + sorted(n for n in f1 if n not in order)
    for name in names:
        cells = [("-" if f1[name].get(t) is None else f"{f1[name][t]:.3f}") for t in ("0.25", "0.5")]
        target = ""
        if name in TARGETS:
            t, goal = TARGETS[name]
            value = f1[name].get(str(t))
            mark = "[green]met[/green]" if value is not None and value >= goal else "[red]not met[/red]"
            target = f"F1@{t} >= {goal} {mark}"
        table.add_row(name, *cells, target, end_section=name == "objects_pooled")
    return table


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[info]}"), console=console)


class PlainProgress:
    """Progress as plain lines where rich's live bars show nothing until the end: output to a file or a
    pipe (``spacelm quickstart ... > log.txt``). One line each time a task passes another ``every`` of
    its total (about 21 per task), e.g. ``training stage2: 35% step 610  1.21 steps/s  loss 0.512
    elapsed 8.1 min``; nothing on a terminal or in Jupyter, where the bars show.
    """

    def __init__(self, console: Console, every: float = 0.05) -> None:
        self.console, self.every = console, every
        self.shown: dict[str, tuple[int, float]] = {}  # task -> (last mark printed, first seen)

    def update(self, name: str, share: float, info: str = "") -> None:
        """Task ``name`` has done ``share`` (0 to 1) of its total; prints when it reaches a new mark."""
        if self.console.is_terminal or self.console.is_jupyter:
            return
        share = min(max(share, 0.0), 1.0)
        mark, now = math.floor(share / self.every + 1e-9), time.monotonic()
        last, start = self.shown.get(name, (-1, now))
        if mark > last:
            self.shown[name] = (mark, start)
            line = " ".join(part for part in (f"{name}: {share:.0%}", info) if part)
            self.console.print(f"{line}  elapsed {(now - start) / 60:.1f} min", markup=False, highlight=False,
                               soft_wrap=True)  # one line per report, however narrow the console


class RichTrainingProgress(TrainerCallback):
    """A rich bar per stage, filled by elapsed time against the stage's budget, with step and loss
    (and ``PlainProgress`` lines when the console is not a terminal)."""

    def __init__(self, progress: Progress, seconds: dict[str, float]) -> None:
        self.progress, self.seconds = progress, seconds
        self.task, self.start, self.loss, self.info = None, 0.0, float("nan"), ""
        self.lines = PlainProgress(progress.console)

    def on_train_begin(self, args, state, control, **kwargs):
        name = Path(args.output_dir).name
        self.budget = self.seconds.get(name, 1.0)
        self.name = f"training {name}"
        self.task = self.progress.add_task(self.name, total=self.budget, info="")
        self.start = time.monotonic()
        self.lines.update(self.name, 0.0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])

    def on_step_end(self, args, state, control, **kwargs):
        elapsed = time.monotonic() - self.start
        rate = state.global_step / max(elapsed, 1e-9)
        loss = "-" if math.isnan(self.loss) else f"{self.loss:.3f}"
        self.info = f"step {state.global_step}  {rate:.2f} steps/s  loss {loss}"
        self.progress.update(self.task, completed=min(elapsed, self.budget), info=self.info)
        self.lines.update(self.name, elapsed / self.budget, self.info)

    def on_train_end(self, args, state, control, **kwargs):
        self.progress.update(self.task, completed=self.budget)
        self.lines.update(self.name, 1.0, self.info)


class LearningCurve(TrainerCallback):
    """Collects the held-out F1 that ``validation.every_steps`` logs, against rooms seen, and prints each
    point as one line: ``points`` is a list of dicts (stage, step, rooms_seen, the TARGETS' F1s, cloud gain).
    """

    def __init__(self, console: Console) -> None:
        self.console, self.points, self.rooms_before = console, [], 0
        self.rooms_per_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.rooms_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not any(key.startswith("val/f1@") for key in logs):
            return
        point = {"stage": Path(args.output_dir).name, "step": state.global_step,
                 "rooms_seen": self.rooms_before + state.global_step * self.rooms_per_step,
                 **{f"{name}@{t}": logs.get(f"val/f1@{t}/{name}") for name, (t, _) in TARGETS.items()},
                 "cloud_gain": logs.get("val/cloud_gain")}
        self.points.append(point)
        scores = "  ".join(f"{key} {'-' if value is None else f'{value:.2f}'}" for key, value in point.items()
                           if "@" in key)
        self.console.print(f"held-out check ({VALIDATION_ROOMS} rooms) after {point['rooms_seen']} rooms seen: "
                           f"{scores}", highlight=False)

    def on_train_end(self, args, state, control, **kwargs):
        self.rooms_before += state.global_step * self.rooms_per_step


def describe_rooms(rooms: SynthConfig) -> str:
    """One line of the generator settings that differ from SpatialLM-Testset-like defaults."""
    classes = "all 33" if rooms.categories is None else f"{len(rooms.categories)} ({', '.join(rooms.categories)})"
    return (f"{rooms.density:g} points/m^2, L-shaped share {rooms.l_shape_prob:g}, doors {rooms.doors[0]}-"
            f"{rooms.doors[1]}, windows {rooms.windows[0]}-{rooms.windows[1]}, boxes {rooms.boxes[0]}-"
            f"{rooms.boxes[1]} of {classes} classes")
