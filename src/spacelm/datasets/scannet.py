"""ScanNet v2 raw scans -> one ``RoomSample`` per scan (ScanNet scans are single rooms).

Files read per scan folder ``root/<scene>/`` (the ``scans/`` layout of the release):

- ``<scene>_vh_clean_2.ply``: the low-resolution mesh; its vertices (with colour) are the points,
  all of them, annotated or not, as SpatialLM sees a whole scan. Faces are ignored.
- ``<scene>.txt``: ``key = value`` lines; ``axisAlignment`` is a row-major 4x4 matrix applied as
  ``M @ [x, y, z, 1]``, which makes the walls parallel to x/y (+z is already up, metres). Test scans
  have no matrix and are refused (they have no annotations either). ``sceneType`` becomes the room
  type, in snake case.
- ``<scene>_vh_clean_2.0.010000.segs.json``: ``segIndices``, one over-segment id per vertex.
- ``<scene>.aggregation.json``: ``segGroups[{id, objectId, segments, label}]``; an instance is the
  vertices whose segment is in ``segments`` (a segment listed by two groups goes to the later one).
- ``scannetv2-labels.combined.tsv`` (ships with the release, not per scan): ``raw_category`` (the
  segGroup label) -> ``nyu40id``. Looked up in ``root`` and then in ``root``'s parent, where the
  release keeps it next to ``scans/``.

Each instance's box is the yaw-only minimum-area rectangle of its aligned vertices (``boxfit``; the
same fit as VLA-3D, whose scene0000_00 boxes it reproduces). Wall, door and window instances become
the layout's walls and openings through ``layout_from_boxes``.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np

from spacelm.datasets.boxfit import fit_yaw_box
from spacelm.datasets.rooms import (
    ConversionError,
    LabelledBox,
    RoomSample,
    layout_from_boxes,
)
from spacelm.datasets.source_files import read_cloud, read_json, safe_id

SOURCE = "scannet"
LABEL_MAP_NAME = "scannetv2-labels.combined.tsv"
SCENE_NAME = re.compile(r"scene\d{4}_\d{2}")


def list_scenes(root: Path) -> list[str]:
    """Scan folders (``sceneXXXX_YY``) directly under ``root``, sorted."""
    return sorted(p.name for p in Path(root).iterdir()
                  if p.is_dir() and SCENE_NAME.fullmatch(p.name))


def convert_scene(root: Path, scene: str, *, label_set: str = "nyu40") -> list[RoomSample]:
    """The scan's aligned vertices and layout; ``ConversionError`` names a bad or missing file."""
    root, folder = Path(root), Path(root) / scene
    info_path = folder / f"{scene}.txt"
    info = read_scene_info(info_path)
    cloud = read_cloud(folder / f"{scene}_vh_clean_2.ply")
    xyz = align_points(cloud.xyz, axis_alignment(info, info_path))
    segments = read_segments(folder / f"{scene}_vh_clean_2.0.010000.segs.json", len(xyz))
    groups = read_seg_groups(folder / f"{scene}.aggregation.json")
    objects, dropped = instance_boxes(xyz, segments, groups, read_label_map(find_label_map(root)))
    layout, more = layout_from_boxes(objects, label_set=label_set)
    room_type = re.sub(r"[^a-z0-9]+", "_", info.get("sceneType", "").lower()).strip("_")
    return [RoomSample(sample_id(scene), SOURCE, scene, "0", xyz, cloud.rgb, layout,
                       dict(dropped + more), room_type)]


def sample_id(scene: str) -> str:
    return safe_id(SOURCE, scene)


def read_scene_info(path: Path) -> dict[str, str]:
    """The ``key = value`` lines of ``<scene>.txt``."""
    if not path.is_file():
        raise ConversionError(f"{path}: missing file (the scan's meta data with axisAlignment)")
    info = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            info[key.strip()] = value.strip()
    return info


def axis_alignment(info: dict[str, str], path: Path) -> np.ndarray:
    """The 4x4 ``axisAlignment`` matrix (row-major) of a parsed ``<scene>.txt``."""
    if "axisAlignment" not in info:
        raise ConversionError(f"{path}: no axisAlignment line (ScanNet test scans have none)")
    try:
        values = [float(v) for v in info["axisAlignment"].split()]
    except ValueError:
        raise ConversionError(f"{path}: axisAlignment is not 16 numbers: "
                              f"{info['axisAlignment'][:80]!r}") from None
    if len(values) != 16:
        raise ConversionError(f"{path}: axisAlignment has {len(values)} numbers, expected 16")
    matrix = np.array(values).reshape(4, 4)
    if not np.allclose(matrix[3], [0, 0, 0, 1]) or not np.isfinite(matrix).all():
        raise ConversionError(f"{path}: axisAlignment is not an affine transform "
                              f"(last row {matrix[3].tolist()})")
    return matrix


def align_points(xyz: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``M @ [p, 1]`` for every point ``(N, 3)``, computed in float64, returned as float32."""
    xyz = np.asarray(xyz, dtype=np.float64)
    return (xyz @ matrix[:3, :3].T + matrix[:3, 3]).astype(np.float32)


def read_segments(path: Path, n_vertices: int) -> np.ndarray:
    """``segIndices`` of a ``segs.json``: one non-negative segment id per mesh vertex."""
    segments = read_json(path).get("segIndices")
    if not isinstance(segments, list):
        raise ConversionError(f"{path}: no 'segIndices' list")
    if len(segments) != n_vertices:
        raise ConversionError(f"{path}: {len(segments)} segIndices for a mesh of {n_vertices} "
                              "vertices (segments of another mesh?)")
    segments = np.asarray(segments)
    if segments.dtype.kind not in "iu" or (segments < 0).any():
        raise ConversionError(f"{path}: segIndices must be non-negative integers")
    return segments


def read_seg_groups(path: Path) -> list[dict]:
    """``segGroups`` of an aggregation file, each checked to have a label and a segment list."""
    groups = read_json(path).get("segGroups")
    if not isinstance(groups, list):
        raise ConversionError(f"{path}: no 'segGroups' list")
    for k, group in enumerate(groups):
        if not (isinstance(group, dict) and isinstance(group.get("label"), str)
                and isinstance(group.get("segments"), list)):
            raise ConversionError(f"{path}: segGroups[{k}] lacks a 'label' string or a "
                                  "'segments' list")
    return groups


def find_label_map(root: Path) -> Path:
    """``scannetv2-labels.combined.tsv`` in ``root`` or its parent."""
    for folder in (root, root.parent):
        if (folder / LABEL_MAP_NAME).is_file():
            return folder / LABEL_MAP_NAME
    raise ConversionError(f"{root / LABEL_MAP_NAME}: missing file (also looked in "
                          f"{root.parent}); it ships with the ScanNet release")


def read_label_map(path: Path) -> dict[str, int]:
    """``raw_category`` -> ``nyu40id`` from the tsv; rows without an id are left out."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t")
        missing = {"raw_category", "nyu40id"} - set(rows.fieldnames or ())
        if missing:
            raise ConversionError(f"{path}: no {' or '.join(sorted(missing))} column")
        return {row["raw_category"]: int(row["nyu40id"]) for row in rows
                if (row["nyu40id"] or "").strip().isdigit()}


def instance_boxes(xyz: np.ndarray, segments: np.ndarray, groups: list[dict],
                   label_map: dict[str, int]) -> tuple[list[LabelledBox], Counter]:
    """One fitted box per segGroup with a known label and at least one vertex, plus drop counts."""
    owner = instance_per_vertex(segments, groups)
    order = np.argsort(owner, kind="stable")
    ids = np.arange(len(groups))
    starts = np.searchsorted(owner[order], ids, side="left")
    ends = np.searchsorted(owner[order], ids, side="right")
    objects, dropped = [], Counter()
    for group, start, end in zip(groups, starts, ends):
        if group["label"] not in label_map:
            dropped["unmapped_label"] += 1
        elif start == end:
            dropped["object_without_points"] += 1
        else:
            box = fit_yaw_box(xyz[order[start:end]], label=group["label"])
            objects.append(LabelledBox(label_map[group["label"]], box))
    return objects, dropped


def instance_per_vertex(segments: np.ndarray, groups: list[dict]) -> np.ndarray:
    """Index of the segGroup owning each vertex, -1 for none (one lookup in a segment table)."""
    listed = [np.asarray(g["segments"], dtype=np.int64).reshape(-1) for g in groups]
    size = max([int(segments.max(initial=0))] + [int(s.max(initial=0)) for s in listed]) + 1
    owner_of_segment = np.full(size, -1, dtype=np.int64)
    for k, members in enumerate(listed):
        owner_of_segment[members[members >= 0]] = k
    return owner_of_segment[segments]

