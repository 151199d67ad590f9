"""Why the quickstart falls short: short runs of its model with one thing changed, scored by F1 and by
whether the model reads the point cloud at all.

Each variant trains the quickstart's tiny model (stage 1 for ``--stage1-minutes``, stage 2 for
``--minutes``, on the clock) on the same synthetic rooms, then prints per variant: optimiser steps,
F1 on ``--val-rooms`` held-out rooms (greedy), and the held-out answer loss with each room's own cloud
against another room's (``spacelm.train.diagnostics.cloud_reliance``; the difference is what the
cloud is worth, in nats per answer token).

    python bench/ablate_quickstart.py --minutes 6 --output out/ablate_quickstart
    python bench/ablate_quickstart.py --variants short arch zero_resnet --minutes 6
    python bench/ablate_quickstart.py --variants short bins --steps 600   # equal rooms seen, any machine load

Variants (each is the quickstart's config with the change named):

- ``spatiallm_prompt``: SpatialLM's request with its ~260-token code template (``reference_code: true``);
- ``short``: the bare request (the quickstart's default);
- ``no_stage1``: stage 1 cut to 3 seconds (with a random frozen LM it has nothing to align to);
- ``arch``: walls, doors and windows only (an answer ~5x shorter);
- ``zero_resnet``: ``arch`` with the sparse ResNet's output zeroed, so each point token carries only its
  cell's Fourier position features (is the encoder the bottleneck?);
- ``lr3e-3``: ``arch`` with 3x the learning rate;
- ``batch2``, ``batch8``: 2 or 8 rooms per step instead of 4 (about the same rooms per second);
- ``probe_lm``: the feasibility probe's LM and optimiser settings: no grouped-query attention, MLP ratio 3,
  AdamW beta2 0.98, weight decay 0.01;
- ``bins``: one token per layout bin (320 number tokens, Pix2Seq) instead of one per digit;
- ``fourier_bins``: ``bins`` whose embeddings start from Fourier features of the value (nearby bins alike);
- ``mix_arch``: half the training requests are arch-only (walls, doors, windows), half the full one;
- ``stem7``: SceneScript's k7 stem conv (342 neighbour offsets) instead of the quickstart's k3 (26);
- ``voxel5``: 5 cm voxels and layout bins (``num_bins`` 640) with one more down-conv, so tokens stay
  80 cm cells (the quickstart's encoder before 2026-12-02);
- ``all_classes``: rooms with 3-15 boxes of all 33 classes instead of 2-6 of the quickstart's 8;
- ``previous``: the quickstart before 2026-12-02 (``voxel5``, ``stem7`` and ``all_classes`` together);
- ``cells40``: two down-convs instead of three, so tokens are 40 cm cells (about 4x as many): a door or
  window then removes whole tokens from its wall, seen through the tokens' own position features;
- ``arch_cells40``: ``arch`` with those tokens;
- ``encoder_lr3e-3``: the encoder and projector at 3x the LM's learning rate in stage 2;
- ``density300``: rooms scanned at 300 points per m^2 instead of 100, so a 10 cm voxel of a wall is filled
  95% of the time instead of 63% (can the encoder tell a door gap from sampling holes?);
- ``arch_density300``: ``arch`` on those rooms;
- ``door_probe``, ``door_probe_cells40``: ``arch`` (80 or 40 cm token cells) on rooms whose only wall gap is
  their one door: rectangular, no windows, boxes or occlusion holes (can this model read a gap at all?);
- ``door_probe_encoder_lr3e-3``: ``door_probe`` with the encoder and projector at 3x the LM's learning rate;
- ``door_probe_lm256``: ``door_probe`` with a tiny LM twice as wide (256, 8 heads: 2.5 M LM parameters against 0.66 M);
- ``door_probe_tokens``: ``door_probe`` with token supervision (``model.token_labels``: wall, door,
  window): a training-only head on the encoder tokens learns which of those each token's cell touches,
  so the encoder gets a gradient to mark gaps before the LM has learned to look for them;
- ``door_probe_tokens_w0.1``: the same with the head's loss at 0.1x (``token_loss_weight``) instead of 1x;
  ``door_probe_door_w0.1``: that with ``door`` as the only label (does the wall label cost the walls?);
  ``door_probe_tokens_w0.1_wide``: that with the encoder twice as wide (channels 16-16-32-64, 128
  features; do the head and the walls' fine positions compete for the 64 features?);
  ``door_probe_tokens_w0.1_extent``: ``door_probe_tokens_w0.1`` whose head also regresses where in its cell
  each token's voxels lie (``token_extent_weight`` 1);
  ``door_probe_tokens_stage1``: the head (1x) in a 1,000-step stage 1 only, at 0x in stage 2 (the encoder
  learns to mark openings first; then the LM's loss alone trains it, as without a head);
  ``door_probe_tokens_w0.1_backbone``: ``door_probe_tokens_w0.1`` with the head on the sparse ResNet's
  output (``token_head_input: backbone``), before the cell position is mixed in, so ``input_proj`` is the
  LM's alone;
  ``door_probe_tokens_w0.1_late``: ``door_probe_tokens_w0.1`` with the head at 0x for the first 2,000
  stage-2 steps (``token_loss_start_step``): walls first, from an encoder the head has not shaped;
  ``door_probe_tokens_w0.1_early``: the reverse, the head at 0.1x for the first 2,000 stage-2 steps and
  0x from then on (``token_loss_stop_step``): does the LM keep reading doors once the head stops, and do
  the walls recover?
  ``door_probe_branch_w0.1``: the head at 0.1x on an encoder branch of its own (half the widths:
  channels 4-4-8-16, 32 features; ``token_head_input: branch``) whose label probabilities are added to the
  point tokens: the LM reads the marks, and only its own loss shapes the encoder it reads walls from;
  ``door_probe_branch_door_x10``: that with ``door`` the only label (no wall marks to take walls from)
  and the marks at 10x (``token_marks_scale``): two marks among 64 features moved the tokens little;
  ``door_probe_tokens_w0.01``: the head at 0.01x;
  ``door_probe_tokens_w0``: the head at 0x, so only the data path of token supervision differs from ``door_probe``;
- ``arch_tokens``, ``tokens``: ``arch`` and the quickstart itself with it (``tokens``: the 8 box
  classes as labels too); ``tokens_w0.1``: ``tokens`` with the head's loss at 0.1x; ``tokens_w0.1_extent``:
  that with the extent target too (``token_extent_weight`` 1); ``branch_w0.1``: ``tokens_w0.1`` with the
  head on its own branch, as ``door_probe_branch_w0.1``; ``branch_x10``: the branch's marks at 10x on door,
  window and the 8 box classes, no wall (as ``door_probe_branch_door_x10``; ``spacelm quickstart
  --token-branch``); ``branch_x10_heads2``: that with the LM's attention in 2 heads of 64 dims instead of 4
  of 32 (1 key/value head; is the step cheaper?); ``branch_x10_floats2``: ``branch_x10`` writing metres
  with 2 decimals (``layout_decimals: 2``) instead of integer bins (``bench/ablate_discretisation.py
  --token-branch``); ``branch_x10_lr2e-3``: ``branch_x10`` with stage 2 at twice the learning rate (does the
  LM learn to read the marks sooner?); ``boxes_w0.1``: the quickstart with the head at 0.1x on its 8 box
  classes only (do box marks cost the walls as door marks do?);
- ``probe_task``: ``arch`` on easier rooms, close to ``shared/research/quickstart-feasibility.md``'s probe:
  rectangular, no doors or windows, 2-6 boxes, so the answer is four walls (is it our model or the
  full generator that learns slowly?).

Run on an otherwise idle machine: the variants share the clock, so a busy CPU means fewer steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from contextlib import contextmanager
from pathlib import Path

from spacelm.quickstart import QUICKSTART_CLASSES, TOKEN_BRANCH

ARCH = {"data": {"task": "arch"}}
# Token supervision (model.token_labels): a head on the encoder tokens learns which of these each cell touches.
STRUCTURE = ("wall", "door", "window")
# The door probe's rooms have no windows, and a label no training room has is refused
# (spacelm.train.data.check_token_labels). Its runs before 2026-12-06 also had window, an output of the
# head trained towards 0 on every token.
WALL_DOOR = ("wall", "door")
# 5 cm voxels and layout bins with four down-convs (80 cm token cells), as the quickstart had before.
VOXEL5 = {"model": {"point_encoder": {"num_bins": 640, "channels": [8, 8, 16, 16, 32]}}}
# Two down-convs at 10 cm: 40 cm token cells.
CELLS40 = {"model": {"point_encoder": {"channels": [8, 16, 32]}}}
# The quickstart's encoder at twice its widths (channels 8-8-16-32 -> 16-16-32-64, 64 -> 128 features).
WIDE = {"channels": [16, 16, 32, 64], "embed_dim": 128}
# The token head's own encoder (token_head_input: branch) at half the quickstart encoder's widths.
BRANCH = {key: TOKEN_BRANCH[key] for key in ("token_head_input", "token_branch")}
# A steadier learning curve than the quickstart's 10 rooms a point (about 20 s a point for the arch task).
VAL30 = {"validation": {"num_rooms": 30}}
VARIANTS: dict[str, dict] = {
    "spatiallm_prompt": {"model": {"reference_code": True}},
    "short": {},
    "no_stage1": {"stage1": {"time_limit_minutes": 0.05}},
    "arch": ARCH,
    "zero_resnet": ARCH,
    "lr3e-3": {**ARCH, "stage1": {"learning_rate": 3e-3}, "stage2": {"learning_rate": 3e-3}},
    "batch2": {"stage1": {"batch_size": 2}, "stage2": {"batch_size": 2}},
    "batch8": {"stage1": {"batch_size": 8}, "stage2": {"batch_size": 8}},
    "probe_lm": {"model": {"tiny_lm": {"num_kv_heads": 4, "intermediate_size": 384}},
                 "stage1": {"adam_beta2": 0.98, "weight_decay": 0.01},
                 "stage2": {"adam_beta2": 0.98, "weight_decay": 0.01}},
    "probe_task": ARCH,
    "density300": {},
    "cells40": CELLS40,
    "arch_cells40": {**ARCH, **CELLS40},
    "arch_density300": ARCH,
    "encoder_lr3e-3": {"stage2": {"encoder_learning_rate": 3e-3}},
    "door_probe": {**ARCH, **VAL30},
    "door_probe_cells40": {**ARCH, **CELLS40, **VAL30},
    "door_probe_encoder_lr3e-3": {**ARCH, **VAL30, "stage2": {"encoder_learning_rate": 3e-3}},
    "door_probe_lm256": {**ARCH, **VAL30, "model": {"tiny_lm": {"hidden_size": 256, "num_heads": 8}}},
    "door_probe_tokens": {**ARCH, **VAL30, "model": {"token_labels": list(WALL_DOOR)}},
    "door_probe_tokens_w0.1": {**ARCH, **VAL30, "model": {"token_labels": list(WALL_DOOR), "token_loss_weight": 0.1}},
    "door_probe_door_w0.1": {**ARCH, **VAL30, "model": {"token_labels": ["door"], "token_loss_weight": 0.1}},
    "door_probe_tokens_w0.1_wide": {**ARCH, **VAL30, "model": {"token_labels": list(WALL_DOOR),
                                                                "token_loss_weight": 0.1, "point_encoder": WIDE}},
    "door_probe_tokens_w0.1_extent": {**ARCH, **VAL30, "model": {
        "token_labels": list(WALL_DOOR), "token_loss_weight": 0.1, "token_extent_weight": 1.0}},
    "door_probe_tokens_stage1": {**ARCH, **VAL30, "model": {"token_labels": list(WALL_DOOR)},
                                 "stage1": {"max_steps": 1000}, "stage2": {"token_loss_weight": 0.0}},
    "door_probe_tokens_w0.1_backbone": {**ARCH, **VAL30, "model": {
        "token_labels": list(WALL_DOOR), "token_loss_weight": 0.1, "token_head_input": "backbone"}},
    "door_probe_tokens_w0.1_late": {**ARCH, **VAL30, "stage2": {"token_loss_start_step": 2000},
                                    "model": {"token_labels": list(WALL_DOOR), "token_loss_weight": 0.1}},
    "door_probe_tokens_w0.1_early": {**ARCH, **VAL30, "stage2": {"token_loss_stop_step": 2000},
                                     "model": {"token_labels": list(WALL_DOOR), "token_loss_weight": 0.1}},
    "door_probe_branch_w0.1": {**ARCH, **VAL30, "model": {"token_labels": list(WALL_DOOR), "token_loss_weight": 0.1,
                                                           **BRANCH}},
    "door_probe_branch_door_x10": {**ARCH, **VAL30, "model": {"token_labels": ["door"], "token_loss_weight": 0.1,
                                                               "token_marks_scale": 10.0, **BRANCH}},
    "door_probe_tokens_w0.01": {**ARCH, **VAL30, "model": {"token_labels": list(WALL_DOOR), "token_loss_weight": 0.01}},
    "door_probe_tokens_w0": {**ARCH, **VAL30, "model": {"token_labels": list(WALL_DOOR), "token_loss_weight": 0.0}},
    "arch_tokens": {**ARCH, **VAL30, "model": {"token_labels": list(STRUCTURE)}},
    "tokens": {**VAL30, "model": {"token_labels": [*STRUCTURE, *QUICKSTART_CLASSES]}},
    "tokens_w0.1": {**VAL30, "model": {"token_labels": [*STRUCTURE, *QUICKSTART_CLASSES], "token_loss_weight": 0.1}},
    "branch_w0.1": {**VAL30, "model": {"token_labels": [*STRUCTURE, *QUICKSTART_CLASSES], "token_loss_weight": 0.1,
                                       **BRANCH}},
    "branch_x10": {**VAL30, "model": TOKEN_BRANCH},  # spacelm quickstart --token-branch
    "branch_x10_heads2": {**VAL30, "model": {**TOKEN_BRANCH, "tiny_lm": {"num_heads": 2}}},
    "branch_x10_floats2": {**VAL30, "model": {**TOKEN_BRANCH, "layout_decimals": 2}},
    "branch_x10_lr2e-3": {**VAL30, "model": TOKEN_BRANCH, "stage2": {"learning_rate": 2e-3}},
    "boxes_w0.1": {**VAL30, "model": {"token_labels": list(QUICKSTART_CLASSES), "token_loss_weight": 0.1}},
    "tokens_w0.1_extent": {**VAL30, "model": {"token_labels": [*STRUCTURE, *QUICKSTART_CLASSES],
                                              "token_loss_weight": 0.1, "token_extent_weight": 1.0}},
    "bins": {"model": {"tiny_lm": {"numbers": "bins"}}},
    "fourier_bins": {"model": {"tiny_lm": {"numbers": "fourier_bins"}}},
    "mix_arch": {"data": {"task_mix": {"arch": 1.0, "all": 1.0}}},
    "stem7": {"model": {"point_encoder": {"stem_kernel": 7}}},
    "voxel5": VOXEL5,
    "all_classes": {},
    "previous": {"model": {"point_encoder": {**VOXEL5["model"]["point_encoder"], "stem_kernel": 7}}},
}
# Variants trained and scored on rooms of their own generator: SynthConfig fields replaced in the
# quickstart's rooms (spacelm.quickstart.ROOMS).
ALL_CLASSES = {"categories": None, "boxes": (3, 15)}  # the generator's defaults: 33 classes
VARIANT_ROOMS = {"probe_task": {"l_shape_prob": 0.0, "doors": (0, 0), "windows": (0, 0), "boxes": (2, 6)},
                 "all_classes": ALL_CLASSES, "previous": ALL_CLASSES, "density300": {"density": 300.0},
                 "arch_density300": {"density": 300.0}}
# The cleanest door a gap can be: one per rectangular room, nothing else that leaves a hole in a wall
# (no windows, boxes or occlusion spheres).
DOOR_PROBE = {"l_shape_prob": 0.0, "doors": (1, 1), "windows": (0, 0), "boxes": (0, 0), "holes": (0, 0)}
VARIANT_ROOMS.update({name: DOOR_PROBE for name in VARIANTS if name.startswith("door_probe")})


def merged(base: dict, change: dict) -> dict:
    out = dict(base)
    for key, value in change.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@contextmanager
def resnet_zeroed(active: bool):
    """While active, the sparse ResNet returns zeros (the Fourier position head still runs)."""
    from spacelm.model.point_encoder import ResNet3DSparse

    original = ResNet3DSparse.forward

    def zeroed(self, x):
        out = original(self, x)
        return out.replace_features(out.features * 0)

    if active:
        ResNet3DSparse.forward = zeroed
    try:
        yield
    finally:
        ResNet3DSparse.forward = original


def synthesize(data: Path, args, **knobs) -> Path:
    """Training and held-out rooms (seeds ``args.seed`` and ``args.seed + 1``): the quickstart's, with ``knobs``."""
    from spacelm.datasets.convert import synthesize_dataset
    from spacelm.quickstart import ROOMS

    synth = dataclasses.replace(ROOMS, **knobs)
    for split, rooms, seed, val_fraction in (("train", args.rooms, args.seed, 0.0),
                                             ("val", args.val_rooms, args.seed + 1, 1.0)):
        synthesize_dataset(data / split, rooms, seed=seed, val_fraction=val_fraction, workers=2, synth=synth)
    return data


def run_variant(name: str, data: Path, output: Path, args) -> dict:
    from spacelm.predict import PredictConfig, load_model, predict_clouds
    from spacelm.quickstart import quickstart_config
    from spacelm.scene.metrics import evaluate_scenes
    from spacelm.train.args import config_from_dict
    from spacelm.train.data import LayoutDataset
    from spacelm.train.diagnostics import cloud_reliance
    from spacelm.train.sft import f1_by_class, train

    base = quickstart_config(output / name, train_dir=data / "train", val_dir=data / "val", seed=args.seed,
                             stage1_minutes=args.stage1_minutes, stage2_minutes=args.minutes)
    settings = dataclasses.asdict(base)
    if args.steps:  # a step budget: rooms seen are equal whatever the variant's speed or the machine's load
        for stage, steps in (("stage1", args.stage1_steps), ("stage2", args.steps)):
            settings[stage].update(time_limit_minutes=None, max_steps=steps)
    config = config_from_dict(merged(settings, VARIANTS[name]))
    if name in VARIANT_ROOMS:
        data = synthesize(output / f"data_{name}", args, **VARIANT_ROOMS[name])
        config.data.train, config.data.val = [str(data / "train")], [str(data / "val")]
    task = config.data.task
    with resnet_zeroed(name == "zero_resnet"):
        folders = train(config, "both", show_progress=False)
        steps = {s: json.loads((f / "stage_complete.json").read_text())["global_step"] for s, f in folders.items()}
        model, processor = load_model(folders["2"], "cpu")
        val = LayoutDataset([data / "val"], processor, split="val", task=task)
        rooms = [val.room(i) for i in range(min(args.val_rooms, len(val)))]
        predictions = predict_clouds(model, processor, [cloud for _, cloud, _ in rooms],
                                     PredictConfig(task=task, do_sample=False, max_new_tokens=1024))
        reliance = cloud_reliance(model, processor, rooms[:16], task=task)
    f1 = f1_by_class(evaluate_scenes([(sid, gt, p.layout) for (sid, _, gt), p in zip(rooms, predictions)]))
    rooms_seen = sum(steps[s] * getattr(config, f"stage{s}").batch_size * getattr(config, f"stage{s}").grad_accum
                     for s in steps)
    return {"steps": steps, "rooms_seen": rooms_seen, "task": task,
            "f1": {k: {str(t): v for t, v in f1[k].items()} for k in ("wall", "door", "window", "objects") if k in f1},
            "own_cloud_loss": reliance.own, "other_cloud_loss": reliance.other, "cloud_gain": reliance.gain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--minutes", type=float, default=6.0, help="stage-2 minutes of each variant")
    parser.add_argument("--stage1-minutes", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=0,
                        help="stage-2 optimiser steps of each variant instead of --minutes (0: on the clock)")
    parser.add_argument("--stage1-steps", type=int, default=25, help="stage-1 steps when --steps is given")
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--val-rooms", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("out/ablate_quickstart"))
    args = parser.parse_args()

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    data = synthesize(args.output / "data", args)
    summary = args.output / "ablate_quickstart.json"
    # Earlier invocations' variants stay in the summary, so variants can be run one at a time.
    results = json.loads(summary.read_text()) if summary.is_file() else {}
    for name in args.variants:
        if (args.output / name).exists():
            raise FileExistsError(f"{args.output / name} exists; remove it or choose another --output")
        tic = time.monotonic()
        results[name] = run_variant(name, data, args.output, args)
        results[name]["minutes"] = (time.monotonic() - tic) / 60
        results[name]["budget"] = {"steps": args.steps, "stage1_steps": args.stage1_steps} if args.steps else \
            {"minutes": args.minutes, "stage1_minutes": args.stage1_minutes}
        summary.write_text(json.dumps(results, indent=1) + "\n")

    budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} min"
    print(f"\n{budget} of stage 2 each; F1 on {args.val_rooms} held-out rooms; cloud gain = answer loss "
          "with another room's cloud minus with its own (nats/token)")
    print(f"{'variant':<17} {'task':<5} {'steps 1+2':>10} {'wall@.5':>8} {'door@.25':>8} {'win@.25':>8} "
          f"{'obj@.25':>8} {'own loss':>9} {'gain':>7}")
    for name, r in results.items():
        f1 = r["f1"]
        cells = [f1.get(k, {}).get(t, float("nan")) for k, t in
                 (("wall", "0.5"), ("door", "0.25"), ("window", "0.25"), ("objects", "0.25"))]
        steps = f"{r['steps']['1']}+{r['steps']['2']}"
        print(f"{name:<17} {r['task']:<5} {steps:>10} " + " ".join(f"{c:>8.3f}" for c in cells)
              + f" {r['own_cloud_loss']:>9.3f} {r['cloud_gain']:>7.3f}")
    print("written to " + str(args.output / "ablate_quickstart.json"))


if __name__ == "__main__":
    main()
