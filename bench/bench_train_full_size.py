"""A few optimiser steps of configs/qwen2.5-0.5b.yaml on CPU, at full size, on a real ScanNet room.

The run goes through ``spacelm.train.sft.train(config, "1")`` then ``("2")``, the path ``spacelm train``
takes, with three inputs built offline:

- a dataset folder (pcd/<id>.ply, layout/<id>.txt, split.csv with the room as both train and val) from
  ../shared/realdata/scannet_spacelm_vla3d_scene0000_00: its ``scene0000_00_pc_result.ply`` as is, and the
  layout spacelm's VLA-3D converter makes of its object CSV (9 walls, 2 doors, 2 windows, 28 boxes);
- a random Qwen2 of Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14/2 heads, MLP 4864, 151936 embedding
  rows, tied) with a small BPE tokenizer from ``spacelm.model.tiny.tiny_tokenizer``: the embedding has
  more rows than the tokenizer has tokens, as Qwen2.5's does, so the point tokens take spare rows;
- the YAML with only what a CPU run needs changed: base LM, data folders, no data workers, bf16 off
  (``--bf16``: on, as CPU autocast), ``max_steps = --steps``, batch 1, no gradient accumulation, no
  validation, no logging or mid-run checkpoints. The encoder (channels 16..256, embed 512, 1280 bins) and
  stage 2's gradient checkpointing stay as the YAML has them.

Prints per stage: parameters trained, seconds per optimiser step (the first, then the median of the rest;
wall and process CPU time, the steadier figure on a shared machine), the data seconds between steps, the
final checkpoint write, peak RSS (a 20 Hz psutil sampler over the stage, and the process's
``ru_maxrss`` so far), the example's sequence length (point tokens + text tokens) and the stage's wall
time; writes the same figures to <--output>.json. Random weights: the loss means nothing, the shapes
are real.

    python bench/bench_train_full_size.py --steps 3 --threads 2       # full size: ~2 GB base LM, 6 GB checkpoints
    python bench/bench_train_full_size.py --lm-shape tiny --encoder-shape tiny --steps 2   # seconds
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, TrainerCallback

from spacelm.datasets import vla3d
from spacelm.model.tiny import tiny_tokenizer
from spacelm.scene.language import write_layout
from spacelm.train.args import load_config
from spacelm.train.sft import train, uses_row_mask

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"
SCENE = SHARED / "realdata" / "scannet_spacelm_vla3d_scene0000_00"
ROOM_ID = "scene0000_00"
CONFIG = REPO / "configs" / "qwen2.5-0.5b.yaml"
# Qwen2.5-0.5B(-Instruct)'s config.json, less what the tokenizer sets (eos/pad ids).
QWEN25_05B = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                  intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True, rope_theta=1e6,
                  max_position_embeddings=32768, rms_norm_eps=1e-6)
TINY_LM = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
               intermediate_size=128, tie_word_embeddings=True, max_position_embeddings=32768)
# Small widths, but the YAML's 1280 bins and 5 levels, so the point-token count is the full-size one.
TINY_ENCODER = {"channels": [8, 8, 8, 8, 8], "embed_dim": 16, "num_bins": 1280}


def build_dataset(root: Path) -> dict:
    """pcd/, layout/ and split.csv for the one room; returns what the converter kept and dropped."""
    (sample,) = vla3d.convert_scene(SCENE.parent, SCENE.name)
    (root / "pcd").mkdir(parents=True)
    (root / "layout").mkdir()
    shutil.copyfile(SCENE / f"{ROOM_ID}_pc_result.ply", root / "pcd" / f"{ROOM_ID}.ply")
    write_layout(root / "layout" / f"{ROOM_ID}.txt", sample.layout)
    (root / "split.csv").write_text(f"id,split\n{ROOM_ID},train\n{ROOM_ID},val\n")
    layout = sample.layout
    return {"points": len(sample.xyz), "walls": len(layout.walls), "doors": len(layout.doors),
            "windows": len(layout.windows), "boxes": len(layout.boxes),
            "labels": sorted({box.label for box in layout.boxes}), "dropped": sample.dropped}


def build_base_lm(folder: Path, shape: str, labels: list[str]) -> int:
    """A random float32 Qwen2 + tokenizer, loadable with ``from_pretrained``; returns its parameter count."""
    tokenizer = tiny_tokenizer(labels=labels)
    dims = QWEN25_05B if shape == "full" else {**TINY_LM, "vocab_size": len(tokenizer)}
    config = Qwen2Config(**dims, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def run_config(work: Path, base_lm: Path, dataset: Path, args: argparse.Namespace):
    stage = {"max_steps": args.steps, "batch_size": 1, "grad_accum": 1}
    overrides = {
        "output_dir": str(work / "run"),
        "bf16": args.bf16,
        "model": {"base_lm": str(base_lm)},
        "data": {"train": [str(dataset)], "val": [str(dataset)], "num_workers": 0},
        "stage1": stage, "stage2": stage,
        "validation": {"every_steps": 0, "at_end": False},
        "logging": {"report_to": ["none"], "logging_steps": 10**6, "save_steps": 10**6},
    }
    if args.encoder_shape == "tiny":
        overrides["model"]["point_encoder"] = TINY_ENCODER
    return load_config(CONFIG, overrides)


def rss_bytes() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss


class StageProbe(TrainerCallback):
    """Times each optimiser step (forward + backward + clip + AdamW), samples RSS at 20 Hz over the stage,
    and reads the sequence length of every batch through a forward pre-hook on the model."""

    def __init__(self, row_mask: bool) -> None:
        self.row_mask = row_mask
        self.steps: list[tuple[float, float]] = []  # (wall, cpu) seconds per optimiser step
        self.gaps: list[float] = []  # wall seconds from one step's end to the next's begin (data)
        self.lengths: list[dict] = []
        self.trained = self.trained_effective = 0
        self.peak_rss = 0
        self.checkpoint_s: float | None = None
        self._begin = self._end = (0.0, 0.0)
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._hooks = []
        self.cpu_autocast: bool | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.trained = sum(p.numel() for _, p in trained)
        if self.row_mask:  # only the point-token rows of the embedding move (sft.train_embedding_rows)
            rows, width = model.get_input_embeddings().weight.shape
            self.trained_effective = self.trained - (rows - len(model.config.point_token_ids)) * width
        else:
            self.trained_effective = self.trained
        point_id = model.config.point_token_id

        def record(module, margs, mkwargs):
            ids, labels = mkwargs["input_ids"], mkwargs.get("labels")
            points = int((ids == point_id).sum())
            self.lengths.append({"tokens": int(ids.numel()), "point_tokens": points,
                                 "text_tokens": int(ids.numel()) - points,
                                 "answer_tokens": None if labels is None else int((labels != -100).sum())})

        def autocast(module, margs):  # inside the outer forward, which accelerate wraps in autocast
            self.cpu_autocast = torch.is_autocast_enabled("cpu")

        self._hooks = [model.register_forward_pre_hook(record, with_kwargs=True),
                       model.language_model.register_forward_pre_hook(autocast)]
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, rss_bytes() or 0)
            self._stop.wait(0.05)

    def on_step_begin(self, args, state, control, **kwargs):
        self._begin = (time.perf_counter(), time.process_time())
        if self.steps:
            self.gaps.append(self._begin[0] - self._end[0])

    def on_step_end(self, args, state, control, **kwargs):
        self._end = (time.perf_counter(), time.process_time())
        self.steps.append((self._end[0] - self._begin[0], self._end[1] - self._begin[1]))

    def on_save(self, args, state, control, **kwargs):
        self.checkpoint_s = time.perf_counter() - self._end[0]

    def on_train_end(self, args, state, control, **kwargs):
        self._stop.set()
        self._sampler.join()
        for hook in self._hooks:
            hook.remove()


def summary(probe: StageProbe, wall_s: float) -> dict:
    walls, cpus = [w for w, _ in probe.steps], [c for _, c in probe.steps]
    rest = slice(1, None) if len(walls) > 1 else slice(0, None)
    length = probe.lengths[0] if probe.lengths else {}
    return {
        "params_trained": probe.trained, "params_trained_effective": probe.trained_effective,
        "steps": len(walls), "first_step_s": walls[0], "first_step_cpu_s": cpus[0],
        "median_step_s": statistics.median(walls[rest]), "median_step_cpu_s": statistics.median(cpus[rest]),
        "step_s": walls, "step_cpu_s": cpus, "median_data_s": statistics.median(probe.gaps) if probe.gaps else None,
        "checkpoint_s": probe.checkpoint_s, "cpu_autocast": probe.cpu_autocast,
        "peak_rss_sampled_gib": probe.peak_rss / 2**30 if probe.peak_rss else None,
        "ru_maxrss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "sequence": length, "sequence_range": [min(x["tokens"] for x in probe.lengths),
                                               max(x["tokens"] for x in probe.lengths)] if probe.lengths else None,
        "wall_s": wall_s,
    }


def print_table(stages: dict[str, dict]) -> None:
    rows = [("parameters trained (M)", lambda s: f"{s['params_trained'] / 1e6:.2f}"),
            ("  of which move (M)", lambda s: f"{s['params_trained_effective'] / 1e6:.2f}"),
            ("first step s (cpu s)", lambda s: f"{s['first_step_s']:.2f} ({s['first_step_cpu_s']:.2f})"),
            ("median step s (cpu s)", lambda s: f"{s['median_step_s']:.2f} ({s['median_step_cpu_s']:.2f})"),
            ("median data s", lambda s: "-" if s["median_data_s"] is None else f"{s['median_data_s']:.2f}"),
            ("checkpoint write s", lambda s: "-" if s["checkpoint_s"] is None else f"{s['checkpoint_s']:.1f}"),
            ("peak RSS GiB (sampled)", lambda s: "-" if s["peak_rss_sampled_gib"] is None
             else f"{s['peak_rss_sampled_gib']:.2f}"),
            ("ru_maxrss GiB so far", lambda s: f"{s['ru_maxrss_gib']:.2f}"),
            ("tokens = point + text", lambda s: "{tokens} = {point_tokens} + {text_tokens}".format(**s["sequence"])),
            ("  answer tokens", lambda s: str(s["sequence"]["answer_tokens"])),
            ("CPU autocast in forward", lambda s: str(s["cpu_autocast"])),
            ("stage wall s", lambda s: f"{s['wall_s']:.1f}")]
    print(f"{'':24}" + "".join(f"{'stage ' + name:>22}" for name in stages))
    for label, cell in rows:
        print(f"{label:24}" + "".join(f"{cell(s):>22}" for s in stages.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps per stage")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--lm-shape", choices=("full", "tiny"), default="full",
                        help="full: Qwen2.5-0.5B's shape; tiny: hidden 64, 2 layers (to check the script)")
    parser.add_argument("--encoder-shape", choices=("full", "tiny"), default="full",
                        help="full: the YAML's encoder; tiny: widths 8, embed 16, same 1280 bins")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on CPU (the YAML's bf16: true)")
    parser.add_argument("--output", type=Path, default=REPO / "out" / "bench_train_full_size",
                        help="figures go to <output>.json")
    parser.add_argument("--keep", type=Path, default=None,
                        help="build and keep the dataset, base LM and run folders in this new or empty folder "
                        "(default: a temp dir, removed at the end)")
    args = parser.parse_args()
    if not (SCENE / f"{ROOM_ID}_pc_result.ply").is_file():
        print(f"{SCENE.resolve()}: not found; this benchmark needs the real ScanNet room beside the repository")
        return
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: not empty (a finished stage there would be skipped, not timed)")
    if args.bf16 and not torch.amp.is_autocast_available("cpu"):
        parser.error("this torch has no CPU autocast; run without --bf16")
    torch.set_num_threads(args.threads)

    work_dir = tempfile.TemporaryDirectory(prefix="spacelm_bench_train_") if args.keep is None else None
    work = Path(work_dir.name) if work_dir else args.keep
    try:
        start = time.perf_counter()
        room = build_dataset(work / "data")
        print(f"{ROOM_ID}: {room['points']} points; {room['walls']} walls, {room['doors']} doors, "
              f"{room['windows']} windows, {room['boxes']} boxes (dropped {room['dropped']}) "
              f"in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        lm_params = build_base_lm(work / "base_lm", args.lm_shape, room["labels"])
        print(f"random {args.lm_shape} base LM: {lm_params / 1e6:.1f} M parameters, built and saved in "
              f"{time.perf_counter() - start:.1f} s")
        config = run_config(work, work / "base_lm", work / "data", args)
        print(f"encoder {config.model.point_encoder}; bf16 autocast {'on' if config.bf16 else 'off'}; "
              f"gradient checkpointing stage 1 {config.stage1.gradient_checkpointing}, "
              f"stage 2 {config.stage2.gradient_checkpointing}; {args.threads} threads")
        stages = {}
        for stage in ("1", "2"):
            probe = StageProbe(uses_row_mask(stage, config.stage2.lora if stage == "2" else None))
            start = time.perf_counter()
            train(config, stage, callbacks=[probe], show_progress=False)
            stages[stage] = summary(probe, time.perf_counter() - start)
    finally:
        if work_dir is not None:
            work_dir.cleanup()
    print_table(stages)
    report = {"room": room, "lm_shape": args.lm_shape, "lm_params": lm_params, "encoder_shape": args.encoder_shape,
              "point_encoder": config.model.point_encoder, "bf16": config.bf16, "threads": args.threads,
              "torch": torch.__version__, "stages": stages}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    path = args.output.with_suffix(".json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
