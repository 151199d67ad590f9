"""Convert a source dataset (or synthesise rooms) into our dataset format: parallel, resumable, shardable.

Each source module (``vla3d``, ``scannet``...) offers ``list_scenes(root)`` and
``convert_scene(root, scene, label_set=...)`` returning ``RoomSample``s. Worker processes convert a
scene, apply SpatialLM's box filters (unless the module sets ``APPLY_FILTERS = False``) and write
the sample files themselves; the main process appends the bookkeeping lines, so one writer owns
each JSONL file. A failing scene goes to ``errors.jsonl`` with its reason and the run continues; a
re-run skips finished scenes; ``shard=(i, n)`` takes every n-th scene starting at i (0-based), so
many machines can share the work under any scheduler (e.g. ``--shard $SLURM_ARRAY_TASK_ID/64``).
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from spacelm.datasets.rooms import LABEL_SETS, RoomSample, filter_boxes
from spacelm.datasets.store import DatasetWriter, finalize, write_sample
from spacelm.datasets.synthetic import SynthConfig
from spacelm.errors import ArgumentError
from spacelm.io import atomic_write_text

SYNTH_SETTINGS = "synth_settings.json"  # beside synthesised rooms: a rerun must not mix generators

# CLI source name -> module in spacelm.datasets (each file holds one converter).
SOURCES = {
    "vla3d": "vla3d", "scannet": "scannet", "arkitscenes": "arkitscenes", "3rscan": "rscan",
    "matterport": "matterport", "hm3d": "hm3d", "structured3d": "structured3d",
    "spatiallm": "spatiallm_format",
}


def source_module(source: str):
    if source not in SOURCES:
        raise ArgumentError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    return importlib.import_module(f"spacelm.datasets.{SOURCES[source]}")


def convert_dataset(source: str, input_dir: str | os.PathLike, output_dir: str | os.PathLike, *,
                    workers: int = 1, shard: tuple[int, int] | None = None,
                    label_set: str = "nyu40", val_fraction: float = 0.1,
                    show_progress: bool = True) -> dict:
    """Convert every scene of ``input_dir`` (this shard's share) into ``output_dir``; return a summary."""
    module = source_module(source)
    if label_set not in LABEL_SETS:  # checked here too: each scene's failure would only be recorded
        raise ArgumentError(f"label_set must be one of {LABEL_SETS}, got {label_set!r}")
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"{input_dir}: not a directory")
    scenes = module.list_scenes(input_dir)
    if not scenes:
        raise FileNotFoundError(f"{input_dir}: no {source} scenes found")
    work = partial(_convert_scene, source, str(input_dir), str(output_dir), label_set,
                   getattr(module, "APPLY_FILTERS", True))
    keys = {f"{source}/{scene}": scene for scene in scenes}
    return _run(keys, work, output_dir, workers=workers, shard=shard, val_fraction=val_fraction,
                show_progress=show_progress, description=f"converting {source}")


def synthesize_dataset(output_dir: str | os.PathLike, rooms: int, *, seed: int = 0, workers: int = 1,
                       val_fraction: float = 0.1, density: float | None = None, synth: SynthConfig | None = None,
                       show_progress: bool = True) -> dict:
    """Write ``rooms`` procedural rooms (``datasets.synthetic``) in the same format; resumable too.

    ``synth``: the generator's knobs (None: its defaults); ``density``, points per m^2 of surface,
    overrides ``synth.density``."""
    if density is not None and density <= 0:
        raise ArgumentError(f"density must be > 0 points per m^2, got {density}")
    synth = synth or SynthConfig()
    if density is not None:
        synth = replace(synth, density=density)
    settings = generator_settings(synth)
    earlier = synthesized_with(output_dir)
    if earlier is not None and earlier != settings:
        changed = ", ".join(f"{k}: {earlier.get(k)} -> {v}" for k, v in settings.items() if earlier.get(k) != v)
        raise ArgumentError(f"{output_dir} holds rooms of other generator settings ({changed}); choose another "
                            "output folder or delete it")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(output_dir) / SYNTH_SETTINGS, json.dumps(settings, indent=1) + "\n")
    keys = {f"synth/{seed}/{i:06d}": (seed, i) for i in range(rooms)}
    work = partial(_synthesize_room, str(output_dir), synth)
    return _run(keys, work, output_dir, workers=workers, shard=None, val_fraction=val_fraction,
                show_progress=show_progress, description="synthesising rooms")


def generator_settings(synth: SynthConfig) -> dict:
    """``synth``'s fields as ``synthesized_with`` reads them back (tuples as lists)."""
    return json.loads(json.dumps(asdict(synth)))


def synthesized_with(output_dir: str | os.PathLike) -> dict | None:
    """The generator settings (``SynthConfig`` fields) a folder's rooms were synthesised with; None for a
    folder without rooms or made before spacelm recorded them."""
    path = Path(output_dir) / SYNTH_SETTINGS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _run(keys: dict, work, output_dir, *, workers: int, shard, val_fraction: float,
         show_progress: bool, description: str) -> dict:
    writer = DatasetWriter(output_dir, shard)
    todo = sorted(keys)
    if shard is not None:
        index, count = shard
        if not (count > 0 and 0 <= index < count):
            raise ArgumentError(f"shard must be I/N with 0 <= I < N, got {index}/{count}")
        todo = todo[index::count]
    done = writer.done_scenes()
    pending = [k for k in todo if k not in done]
    summary = Counter(skipped=len(todo) - len(pending))
    with _progress(show_progress) as progress:
        task = progress.add_task(description, total=len(pending))
        for key, rows, error in _map(work, [(k, keys[k]) for k in pending], workers):
            if error is None:
                writer.record_scene(key, rows)
                summary["scenes"] += 1
                summary["samples"] += len(rows)
            else:
                writer.record_error(key, error)
                summary["failed"] += 1
            progress.advance(task)
    splits = finalize(output_dir, val_fraction=val_fraction)
    return {**summary, **{f"{split}_samples": n for split, n in splits.items()}}


def _map(work, jobs: list[tuple[str, object]], workers: int):
    """Yield ``(key, rows, error)`` as jobs finish; in-process when ``workers <= 1``."""
    if workers <= 1:
        for key, arg in jobs:
            yield (key, *work(arg))
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
        waiting, queue = {}, list(reversed(jobs))
        while queue or waiting:
            while queue and len(waiting) < 2 * workers:  # bounded, so huge runs don't queue everything
                key, arg = queue.pop()
                waiting[pool.submit(work, arg)] = key
            finished, _ = wait(waiting, return_when=FIRST_COMPLETED)
            for future in finished:
                yield (waiting.pop(future), *future.result())


def _exit_with_parent(parent: int) -> None:
    """Worker initialiser: exit as soon as the main process is gone (killed), instead of finishing
    rooms nobody will record. A forked worker is re-parented when its parent dies, so ``getppid``
    changes; a forkserver's worker may keep its parent, so the main pid is also checked."""
    own_parent = os.getppid()

    def main_alive() -> bool:
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # a pid that exists, owned by someone else: not ours to judge
            return True
        return True

    def watch() -> None:
        while os.getppid() == own_parent and main_alive():
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _convert_scene(source: str, input_dir: str, output_dir: str, label_set: str, apply_filters: bool,
                   scene: str) -> tuple[list[dict], str | None]:
    """Worker: convert and write one scene. Any failure is returned as text for errors.jsonl.

    Catching everything here is deliberate: one broken scene of thousands must not stop the run,
    and its reason is kept, not hidden.
    """
    try:
        samples = source_module(source).convert_scene(Path(input_dir), scene, label_set=label_set)
        return [write_sample(output_dir, _filtered(s) if apply_filters else s) for s in samples], None
    except Exception as e:  # noqa: BLE001 - recorded in errors.jsonl, see docstring
        return [], _describe(e)


def _synthesize_room(output_dir: str, config: SynthConfig, arg: tuple[int, int]) -> tuple[list[dict], str | None]:
    from spacelm.datasets.synthetic import room_seed, synth_room

    seed, index = arg
    try:
        room = synth_room(room_seed(seed, index), config)
        sample = RoomSample(f"synth_{seed}_{index:06d}", "synth", f"{seed}_{index:06d}", "0",
                            room.xyz, room.rgb, room.layout, {}, room.room_type)
        return [write_sample(output_dir, _filtered(sample))], None
    except Exception as e:  # noqa: BLE001 - recorded in errors.jsonl
        return [], _describe(e)


def _filtered(sample: RoomSample) -> RoomSample:
    layout, dropped = filter_boxes(sample.layout, sample.xyz)
    return replace(sample, layout=layout, dropped=dict(Counter(sample.dropped) + dropped))


def _describe(error: Exception) -> str:
    where = traceback.extract_tb(error.__traceback__)[-1]
    return f"{type(error).__name__}: {error} (at {Path(where.filename).name}:{where.lineno})"


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), disable=not enabled)
