"""Evaluate predicted layout files against ground truth, as SpatialLM's ``eval.py`` does.

The edge between files and ``scene.metrics``: reads ``<id>.txt`` layouts from two folders (GT strictly,
predictions leniently since they are model output), then scores them with ``evaluate_scenes``.
"""

from __future__ import annotations

import csv
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from spacelm.errors import decode_error
from spacelm.scene.language import Diagnostic, read_layout
from spacelm.scene.layout import Layout
from spacelm.scene.metrics import EvalResult, evaluate_scenes
from spacelm.scene.table import TableError


@dataclass(frozen=True)
class LoadedScenes:
    scenes: list[tuple[str, Layout, Layout]]
    missing_predictions: list[str] = field(default_factory=list)
    prediction_diagnostics: dict[str, tuple[Diagnostic, ...]] = field(default_factory=dict)


def read_metadata_ids(path: str | Path) -> list[str]:
    """Scene ids from a CSV with an ``id`` column (SpatialLM's ``test.csv``)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "id" not in reader.fieldnames:
                raise TableError(f"{path}: expected a CSV header with an 'id' column, got {reader.fieldnames}")
            ids = [row["id"].strip() for row in reader]
    except UnicodeDecodeError as e:
        raise decode_error(path, e, TableError) from None
    if not ids:
        raise TableError(f"{path}: no scene ids")
    repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if repeated:  # evaluate_scenes would refuse them without naming the file
        raise TableError(f"{path}: scene id(s) listed twice: {', '.join(repeated[:5])}")
    return ids


def load_scenes(gt_dir: str | Path, pred_dir: str | Path, ids: list[str] | None = None) -> LoadedScenes:
    """Pair ``gt_dir/<id>.txt`` with ``pred_dir/<id>.txt``; a missing prediction counts as empty."""
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for d in (gt_dir, pred_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: not a directory")
    if ids is None:
        ids = sorted(p.stem for p in gt_dir.glob("*.txt"))
        if not ids:
            raise FileNotFoundError(f"{gt_dir}: no <id>.txt layout files")
    scenes, missing, diagnostics = [], [], {}
    for scene_id in ids:
        gt_path = gt_dir / f"{scene_id}.txt"
        if not gt_path.is_file():
            raise FileNotFoundError(f"{gt_path}: ground truth for scene {scene_id!r} is missing")
        gt = read_layout(gt_path).layout
        pred_path = pred_dir / f"{scene_id}.txt"
        if pred_path.is_file():
            result = read_layout(pred_path, strict=False)
            pred = result.layout
            if result.diagnostics:
                diagnostics[scene_id] = result.diagnostics
        else:
            missing.append(scene_id)
            pred = Layout()
        scenes.append((scene_id, gt, pred))
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        warnings.warn(f"{len(missing)} prediction(s) missing in {pred_dir}, counted as empty: {shown}",
                      stacklevel=2)
    return LoadedScenes(scenes, missing, diagnostics)


def evaluate_dirs(gt_dir: str | Path, pred_dir: str | Path, *, metadata: str | Path | None = None,
                  label_map: dict[str, str] | None = None, classes: list[str] | None = None,
                  compat: bool = False) -> tuple[EvalResult, LoadedScenes]:
    """Score every scene of ``gt_dir`` (or of the metadata CSV) against ``pred_dir``."""
    ids = read_metadata_ids(metadata) if metadata else None
    loaded = load_scenes(gt_dir, pred_dir, ids)
    result = evaluate_scenes(loaded.scenes, label_map=label_map, classes=classes, compat=compat)
    return result, loaded
