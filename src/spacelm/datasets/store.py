"""The on-disk dataset format and its resumable writer.

SpatialLM's format, so their tools and ours read each other's data::

    root/pcd/<id>.ply           points (metres, z up) with uchar colours
    root/layout/<id>.txt        metric layout text
    root/split.csv              id,split (plus room_type, source, scene, region)
    root/<name>_train.json      ShareGPT records, as SpatialLM's create_dataset.py writes them
    root/<name>_val.json
    root/dataset_info.json      the LLaMA-Factory-style index of those files

plus our bookkeeping, one JSON object per line, appended by one process:

    root/manifest.jsonl         one line per sample: source, scene, region, points, class counts, dropped
    root/scenes.jsonl           one line per finished source scene (resume skips these)
    root/errors.jsonl           scenes that failed, with the reason; retried on the next run

Sharded runs (``--shard I/N`` on several machines) write ``manifest.I-of-N.jsonl`` etc., so no two
writers share a file; ``finalize`` reads them all.

A run killed at any point and rerun ends with the files an uninterrupted run writes (byte for byte
with one worker; several append rows in the order scenes finish): the writer drops the manifest rows
of a scene whose ``scenes.jsonl`` line never landed, so no row is doubled, and removes the hidden
``.<name>.<random>.tmp`` files that killed atomic writes leave behind.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import time
from collections import Counter
from pathlib import Path

from spacelm.datasets.rooms import ConversionError, RoomSample
from spacelm.io import atomic_write_text
from spacelm.points.ply import PointCloud, write_ply
from spacelm.scene.language import format_layout, task_instruction

POINT_CLOUD_PLACEHOLDER = "<point_cloud>"
LAYOUT_START, LAYOUT_END = "<|layout_s|>", "<|layout_e|>"
SPLITS = ("train", "val")
# Sharded writers share the folders: another machine's temp file is only stale once this old.
SHARED_TEMP_AGE_S = 3600.0


class DatasetWriter:
    """Writes samples atomically and records progress so an interrupted run resumes where it stopped."""

    def __init__(self, root: str | os.PathLike, shard: tuple[int, int] | None = None):
        self.root = Path(root)
        suffix = f".{shard[0]}-of-{shard[1]}" if shard else ""
        self.manifest_path = self.root / f"manifest{suffix}.jsonl"
        self.scenes_path = self.root / f"scenes{suffix}.jsonl"
        self.errors_path = self.root / f"errors{suffix}.jsonl"
        for sub in ("pcd", "layout"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.root / sub, older_than_s=SHARED_TEMP_AGE_S if shard else 0.0)
        remove_stale_temp_files(self.root, older_than_s=SHARED_TEMP_AGE_S if shard else 0.0)
        for path in (self.manifest_path, self.scenes_path, self.errors_path):
            _drop_partial_tail(path)
        _drop_unrecorded_rows(self.manifest_path, self.scenes_path)

    def done_scenes(self) -> set[str]:
        """Scenes finished by any earlier run (or shard) into this folder."""
        return {row["scene_key"] for row in _read_jsonl_glob(self.root, "scenes*.jsonl")}

    def record_scene(self, scene_key: str, rows: list[dict]) -> None:
        """Append the manifest rows of a finished scene, then mark it done (in that order).

        Sample files are written before this (``write_sample``), so a crash at any point is
        harmless: a scene not marked done is converted again and its files overwritten.
        """
        _append_jsonl(self.manifest_path, rows)
        _append_jsonl(self.scenes_path, [{"scene_key": scene_key, "samples": len(rows)}])

    def record_error(self, scene_key: str, error: str) -> None:
        _append_jsonl(self.errors_path, [{"scene_key": scene_key, "error": error}])


def remove_stale_temp_files(folder: str | os.PathLike, pattern: str = ".*.tmp", *,
                            older_than_s: float = 0.0) -> int:
    """Delete the hidden temp files (``.<name>.<random>.tmp``) that a killed atomic write left in
    ``folder``; only those untouched for ``older_than_s`` seconds. Returns how many went."""
    removed, now = 0, time.time()
    for path in Path(folder).glob(pattern):
        try:
            if now - path.stat().st_mtime >= older_than_s:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # its writer finished (or another sweep took it) meanwhile
            pass
    return removed


def write_sample(root: str | os.PathLike, sample: RoomSample) -> dict:
    """Write ``pcd/<id>.ply`` and ``layout/<id>.txt`` atomically; return the sample's manifest row.

    A plain function so worker processes can write their own samples.
    """
    root = Path(root)
    write_ply(root / "pcd" / f"{sample.sample_id}.ply", PointCloud(sample.xyz, sample.rgb))
    atomic_write_text(root / "layout" / f"{sample.sample_id}.txt", format_layout(sample.layout) + "\n")
    return manifest_row(sample)


def room_type_name(text: str) -> str:
    """One spelling for room types from every source: ``Living room / Lounge`` -> ``living_room_lounge``."""
    return "_".join(re.findall(r"[a-z0-9]+", text.lower()))


def manifest_row(sample: RoomSample) -> dict:
    classes = Counter(b.label for b in sample.layout.boxes)
    return {"id": sample.sample_id, "source": sample.source, "scene": sample.scene,
            "region": sample.region, "room_type": room_type_name(sample.room_type), "points": int(len(sample.xyz)),
            "walls": len(sample.layout.walls), "doors": len(sample.layout.doors),
            "windows": len(sample.layout.windows), "boxes": len(sample.layout.boxes),
            "classes": dict(sorted(classes.items())), "dropped": dict(sorted(sample.dropped.items()))}


def read_manifest(root: str | os.PathLike) -> list[dict]:
    """All manifest rows of a dataset folder (every shard), in id order; later duplicates win."""
    rows = {row["id"]: row for row in _read_jsonl_glob(Path(root), "manifest*.jsonl")}
    return [rows[k] for k in sorted(rows)]


def assign_split(scene: str, val_fraction: float) -> str:
    """Deterministic split by a hash of the scene, so every room of a scene lands in one split."""
    digest = int.from_bytes(hashlib.sha256(scene.encode()).digest()[:8], "big")
    return "val" if digest / 2**64 < val_fraction else "train"


def finalize(root: str | os.PathLike, *, name: str = "spacelm", val_fraction: float = 0.1,
             task: str = "all") -> dict[str, int]:
    """Write ``split.csv``, the ShareGPT JSON files and ``dataset_info.json`` from the manifests."""
    root = Path(root)
    rows = read_manifest(root)
    instruction = POINT_CLOUD_PLACEHOLDER + task_instruction(task)
    records: dict[str, list] = {split: [] for split in SPLITS}
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["id", "split", "room_type", "source", "scene", "region"])
    for row in rows:
        split = assign_split(f"{row['source']}/{row['scene']}", val_fraction)
        writer.writerow([row["id"], split, row["room_type"], row["source"], row["scene"], row["region"]])
        layout_text = (root / "layout" / f"{row['id']}.txt").read_text(encoding="utf-8").strip()
        records[split].append({
            "conversations": [{"from": "human", "value": instruction},
                              {"from": "gpt", "value": f"{LAYOUT_START}{layout_text}{LAYOUT_END}"}],
            "point_clouds": [f"pcd/{row['id']}.ply"],
        })
    atomic_write_text(root / "split.csv", table.getvalue())
    info = {}
    for split in SPLITS:
        file_name = f"{name}_{split}.json"
        atomic_write_text(root / file_name, json.dumps(records[split], indent=1) + "\n")
        info[f"{name}_{split}"] = {"file_name": file_name, "formatting": "sharegpt",
                                   "columns": {"messages": "conversations", "point_clouds": "point_clouds"}}
    atomic_write_text(root / "dataset_info.json", json.dumps(info, indent=2) + "\n")
    return {split: len(records[split]) for split in SPLITS}


def dataset_stats(root: str | os.PathLike) -> dict:
    """Totals over a dataset folder: samples per source and split, entities, classes, drops."""
    root = Path(root)
    rows = read_manifest(root)
    if not rows:
        raise FileNotFoundError(f"{root}: no manifest*.jsonl with samples")
    splits = _read_splits(root / "split.csv")
    total: dict = {"samples": len(rows), "points": 0, "walls": 0, "doors": 0, "windows": 0, "boxes": 0}
    by_source, by_split, classes, dropped = Counter(), Counter(), Counter(), Counter()
    for row in rows:
        for key in ("points", "walls", "doors", "windows", "boxes"):
            total[key] += row[key]
        by_source[row["source"]] += 1
        by_split[splits.get(row["id"], "unassigned")] += 1
        classes.update(row["classes"])
        dropped.update(row["dropped"])
    errors = list(_read_jsonl_glob(root, "errors*.jsonl"))
    done = {r["scene_key"] for r in _read_jsonl_glob(root, "scenes*.jsonl")}
    return {**total, "by_source": dict(by_source), "by_split": dict(by_split),
            "classes": dict(classes.most_common()), "dropped": dict(dropped.most_common()),
            "failed_scenes": len({e["scene_key"] for e in errors} - done)}


def _read_splits(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        return {row["id"]: row["split"] for row in csv.DictReader(f)}


def _append_jsonl(path: Path, rows: list[dict]) -> None:
    """Append whole lines and fsync; a crash can at worst leave one partial last line."""
    if not rows:
        return
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
        f.flush()
        os.fsync(f.fileno())


def _read_jsonl_glob(root: Path, pattern: str):
    """Rows of every matching JSONL file; an unterminated last line (a crash mid-append) is skipped."""
    for path in sorted(root.glob(pattern)):
        lines = path.read_text(encoding="utf-8").split("\n")
        lines.pop()  # "" after the final newline, or the interrupted tail
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConversionError(f"{path}:{number}: not a JSON line ({e.msg})") from None


def _drop_unrecorded_rows(manifest: Path, scenes: Path) -> None:
    """Cut manifest rows past those of the scenes marked done: a kill between ``record_scene``'s two
    appends leaves them, and the scene is converted again, so keeping them would double its rows.

    Rows are appended scene by scene, so the unrecorded ones are the last lines. A manifest whose
    recorded rows already repeat an id (written before this check existed) is left alone.
    """
    if not manifest.is_file():
        return
    recorded = sum(row["samples"] for row in _read_jsonl_glob(scenes.parent, scenes.name))
    data = manifest.read_bytes()
    lines = data.split(b"\n")[:-1]  # whole lines: the partial tail is already gone
    if len(lines) <= recorded:
        return
    ids = [json.loads(line)["id"] for line in lines[:recorded]]
    if len(set(ids)) == len(ids):
        with manifest.open("r+b") as f:
            f.truncate(sum(len(line) + 1 for line in lines[:recorded]))


def _drop_partial_tail(path: Path) -> None:
    """Cut an unterminated last line left by a crash, so the next append starts a fresh line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
