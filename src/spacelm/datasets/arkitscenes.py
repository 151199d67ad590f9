"""ARKitScenes 3DOD -> one ``RoomSample`` per video (each 3DOD scan is one room).

Files per scan folder ``root/<video_id>/`` (the ``3dod/{Training,Validation}/`` layout; pass one
fold folder as ``root``):

- ``<video_id>_3dod_mesh.ply``: the reconstructed mesh, metres, z up (gravity); every vertex with
  its colour becomes a point. Faces are ignored. Nothing is recentred, so the floor sits wherever
  the capture put it (often near z = -1.3 m).
- ``<video_id>_3dod_annotation.json``: ``{data, stats, comment, confirm, skipped}``; each
  ``data[i]`` has a ``label`` and ``segments.obbAligned`` = ``{centroid, axesLengths,
  normalizedAxes}``: the rows of ``reshape(normalizedAxes, 3, 3)`` are the box axes and
  ``axesLengths`` their full lengths (ARKitScenes' ``compute_box_3d``).

Boxes are the annotated OBBs, not refits: ``boxfit.yaw_box_from_obb`` reads the yaw off the
horizontal axes. The boxes are gravity-aligned ("obbAligned"); one tilted more than 1 degree is
replaced by the yaw-only box around its corners and counted under ``tilted_obb_enclosed``.

ARKitScenes annotates furniture only, no walls, doors or windows, so a layout holds boxes alone.
Labels are normalised as the official code does (lower case; space, '-' and '/' -> '_') and
mapped to NYU40 through ``LABEL_TO_NYU40``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from spacelm.datasets.boxfit import yaw_box_from_obb
from spacelm.datasets.rooms import (
    ConversionError,
    LabelledBox,
    RoomSample,
    layout_from_boxes,
)
from spacelm.datasets.source_files import read_cloud, read_json, safe_id

SOURCE = "arkitscenes"
VIDEO_ID = re.compile(r"\d+")

# The 17 benchmark classes (threedod/benchmark_scripts/utils/taxonomy.py) plus the raw labels
# build_in_cabinet and stairs, to NYU40 ids. The ids follow VLA-3D's arkit_cat_mapping.csv, which
# goes through the NYUv2 class of each label, so they agree with how ScanNet and 3RScan label the
# same furniture. NYU40 has no class for appliances, fireplaces or stools: stove, oven,
# dishwasher, fireplace and stairs land in otherstructure (38), stool in otherprop (40), both
# dropped by layout_from_boxes as unknown_class; washer is otherfurniture (39) and is kept.
LABEL_TO_NYU40 = {
    "cabinet": 3, "build_in_cabinet": 3, "refrigerator": 24, "shelf": 15, "stove": 38, "bed": 4,
    "sink": 34, "washer": 39, "toilet": 33, "bathtub": 36, "oven": 38, "dishwasher": 38,
    "fireplace": 38, "stool": 40, "chair": 5, "table": 7, "tv_monitor": 25, "sofa": 6,
    "stairs": 38,
}


def list_scenes(root: Path) -> list[str]:
    """Scan folders (numeric video ids) directly under ``root``, sorted."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and VIDEO_ID.fullmatch(p.name))


def convert_scene(root: Path, scene: str, *, label_set: str = "nyu40") -> list[RoomSample]:
    """The scan's mesh vertices and its boxes; ``ConversionError`` names a bad or missing file."""
    folder = Path(root) / scene
    cloud = read_cloud(folder / f"{scene}_3dod_mesh.ply")
    objects, dropped = read_annotation(folder / f"{scene}_3dod_annotation.json")
    layout, more = layout_from_boxes(objects, label_set=label_set)
    sample_id = safe_id(SOURCE, scene)
    return [RoomSample(sample_id, SOURCE, scene, "0", cloud.xyz, cloud.rgb, layout,
                       dict(dropped + more))]


def normalize_label(label: str) -> str:
    """ARKitScenes' label normalisation: lower case, and ' ', '-', '/' become '_'."""
    return re.sub(r"[ /-]", "_", label.strip().lower())


def read_annotation(path: Path) -> tuple[list[LabelledBox], Counter]:
    """Labelled yaw-only boxes of an annotation file, and counts of what was left out."""
    data = read_json(path).get("data")
    if not isinstance(data, list):
        raise ConversionError(f"{path}: no 'data' list")
    objects, dropped = [], Counter()
    for k, item in enumerate(data):
        label = item.get("label") if isinstance(item, dict) else None
        obb = (item.get("segments") or {}).get("obbAligned") if isinstance(item, dict) else None
        if not isinstance(label, str) or not isinstance(obb, dict):
            raise ConversionError(f"{path}: data[{k}] lacks a 'label' or 'segments.obbAligned'")
        nyu40 = LABEL_TO_NYU40.get(normalize_label(label))
        if nyu40 is None:
            dropped["unmapped_label"] += 1
            continue
        try:
            box, tilted = yaw_box_from_obb(obb["centroid"], obb["axesLengths"],
                                           obb["normalizedAxes"], normalize_label(label))
        except (KeyError, TypeError, ValueError) as err:
            raise ConversionError(f"{path}: data[{k}] ({label!r}) has a bad obbAligned: "
                                  f"{type(err).__name__} {err}") from None
        dropped["tilted_obb_enclosed"] += tilted
        objects.append(LabelledBox(nyu40, box))
    return objects, +dropped

