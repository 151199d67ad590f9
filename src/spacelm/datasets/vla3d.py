"""VLA-3D scenes (all six sources: Scannet, Matterport, HM3D, Unity, ARKitScenes, 3RScan) -> rooms.

A release holds ``<root>/<Source>/<scene>/<scene>_*`` files; ``root`` may also be one source folder.
A scene folder is any folder, one or two levels below ``root``, holding a ``*_object_result.csv``;
its file prefix is the folder name, or the prefix of its only ``*_object_result.csv`` (so renamed
copies still work). Per scene we read ``_pc_result.ply`` (x, y, z, uchar colours; metres, z up, the
source's own frame, kept as is), ``_object_result.csv`` and ``_region_result.csv``, plus
``_region_split.npy`` when present, and return one ``RoomSample`` per region.

Choices, and why:

- Classes come from ``nyu40_id``, never names: spellings differ between sources. One exception is
  Matterport's mapping bug (rug/carpet rows carry id 40 but are named ``floor mat``, which is id
  20): a row with id 40 whose ``nyu40_label`` is ``floor mat`` is read as 20. Id 0 (void, Matterport)
  counts as ``unknown_class`` in ``layout_from_boxes``. Boxes are used as given: VLA-3D's
  centre/extents/heading is SpatialLM's ``Bbox`` convention.
- Points: the region split gives each point its region. A point that lies farther than
  ``REGION_MARGIN`` outside its region's box, or has region -1 (HM3D's unlabelled points), or every
  point when there is no split file, goes to the region box it lies deepest inside; if it is
  farther than the margin outside every box it is dropped, counted as ``point_outside_region`` in the
  sample of the nearest region. For ScanNet, HM3D, ARKitScenes and 3RScan the region box is the
  AABB of the region's points, so nothing moves. The rule exists for Matterport, whose unlabelled
  vertices of the whole house all carry region 0 (they move to their room, or are dropped), and for
  Unity, whose objects are given to a region by a vote and may stick out of its rotated box. With a
  single region every point belongs to it, whatever the boxes say.
- Objects with ``region_id`` -1 (Unity: outside every region; note these include shared walls)
  are dropped, counted as ``object_without_region`` in the region nearest their centre, so the
  counts of all samples add up to what the scene lost. Regions with no points give no sample.
- Room type: ``region_label``, stripped and lower-cased; ARKitScenes writes its video id there,
  which is no room type, so a label equal to the scene name becomes "".
- Sample ids: ``vla3d_<source>_<scene>_r<region_id>``, where ``<source>`` is the scene folder's
  parent (the ``<Source>`` folder, or ``root``'s own name when ``root`` is a source folder), lower
  case, so both ways of pointing at a release give the same ids.
- Older releases with ``.pt`` split files are not read (that would need torch).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from spacelm.datasets.rooms import (
    LABEL_SETS,
    ConversionError,
    LabelledBox,
    RoomSample,
    layout_from_boxes,
)
from spacelm.points.ply import PointFileError, read_ply
from spacelm.scene.categories import normalize_label
from spacelm.scene.entities import Box
from spacelm.scene.table import TableError, read_rows

SOURCE = "vla3d"
# Metres a point may lie outside its region's box and still belong to it (scan noise, wall thickness).
REGION_MARGIN = 0.25
FLOOR_MAT, OTHERPROP = 20, 40
_BOX_KEYS = ("cx", "cy", "cz", "heading", "xlength", "ylength", "zlength")  # Layout.box_array order
_OBJECT_COLUMNS = ("object_id", "region_id", "nyu40_id", *(f"object_bbox_{k}" for k in _BOX_KEYS))
_REGION_COLUMNS = ("region_id", "region_label", *(f"region_bbox_{k}" for k in _BOX_KEYS))


def list_scenes(root: Path) -> list[str]:
    """Scene folders under ``root`` (one or two levels down), as sorted POSIX paths relative to it."""
    root = Path(root)
    found = {csv_path.parent for pattern in ("*/*_object_result.csv", "*/*/*_object_result.csv")
             for csv_path in root.glob(pattern)}
    # A scene folder is never also a source folder: skip scene folders nested in scene folders.
    return sorted(p.relative_to(root).as_posix() for p in found if p.parent not in found)


def convert_scene(root: Path, scene: str, *, label_set: str = "nyu40") -> list[RoomSample]:
    """One sample per region of ``root/scene`` that has points; see the module docstring."""
    if label_set not in LABEL_SETS:
        raise ValueError(f"label_set must be one of {LABEL_SETS}, got {label_set!r}")
    folder = Path(root) / scene
    prefix = _scene_prefix(folder)
    ids, labels, boxes = _read_regions(folder / f"{prefix}_region_result.csv")
    objects = _read_objects(folder / f"{prefix}_object_result.csv", set(ids))
    xyz, rgb = _read_points(folder / f"{prefix}_pc_result.ply")
    split_path = folder / f"{prefix}_region_split.npy"
    runs = _read_split(split_path, len(xyz), ids) if split_path.exists() else []
    owner, points_dropped = _assign_points(xyz, runs, boxes)
    homeless = [o for r, o in objects if r == -1]
    objects_dropped = np.bincount(_nearest_box(_centres(homeless), boxes)[0], minlength=len(ids))
    source = (Path(scene).parent.name or Path(root).resolve().name).lower()
    id_prefix = "_".join(part for part in (SOURCE, source, prefix) if part)
    samples = []
    for index, (region_id, label) in enumerate(zip(ids, labels)):
        mask = owner == index
        if not mask.any():
            continue
        layout, dropped = layout_from_boxes((o for r, o in objects if r == region_id),
                                            label_set=label_set)
        dropped.update(point_outside_region=int(points_dropped[index]),
                       object_without_region=int(objects_dropped[index]))
        samples.append(RoomSample(
            sample_id=_sanitise(f"{id_prefix}_r{region_id}"),
            source=SOURCE, scene=scene, region=str(region_id), xyz=xyz[mask], rgb=rgb[mask],
            layout=layout, dropped={k: v for k, v in dropped.items() if v},
            room_type="" if label == prefix else normalize_label(label)))
    return samples


def _scene_prefix(folder: Path) -> str:
    """The scene's file prefix: the folder name, or that of the folder's only object CSV."""
    if (folder / f"{folder.name}_object_result.csv").is_file():
        return folder.name
    candidates = sorted(folder.glob("*_object_result.csv"))
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise ConversionError(f"{folder}: expected one <scene>_object_result.csv, found {found}")
    return candidates[0].name[: -len("_object_result.csv")]


def _read_regions(path: Path) -> tuple[list[int], list[str], np.ndarray]:
    """Region ids, labels and ``(R, 7)`` boxes ``[x, y, z, yaw, sx, sy, sz]`` in file order."""
    ids, labels, boxes = [], [], []
    for line, row in _read_csv(path, _REGION_COLUMNS):
        region_id = _integer(path, line, "region_id", row)
        if region_id in ids:
            raise ConversionError(f"{path}, line {line}: region_id {region_id} appears twice")
        ids.append(region_id)
        labels.append(row["region_label"])
        boxes.append(_box(path, line, "region_bbox", row))
    if not ids:
        raise ConversionError(f"{path}: no regions")
    return ids, labels, np.array(boxes, dtype=np.float64).reshape(-1, 7)


def _read_objects(path: Path, region_ids: set[int]) -> list[tuple[int, LabelledBox]]:
    """``(region_id, LabelledBox)`` per object row; the raw label is kept as the box label."""
    objects = []
    for line, row in _read_csv(path, _OBJECT_COLUMNS):
        region_id = _integer(path, line, "region_id", row)
        if region_id != -1 and region_id not in region_ids:
            raise ConversionError(f"{path}, line {line}: region_id {region_id} is not in the "
                                  "region file")
        nyu40 = _integer(path, line, "nyu40_id", row)
        if nyu40 == OTHERPROP and normalize_label(row.get("nyu40_label") or "") == "floor mat":
            nyu40 = FLOOR_MAT  # Matterport's category_mapping.tsv bug, see the module docstring
        x, y, z, yaw, sx, sy, sz = _box(path, line, "object_bbox", row)
        box = Box(row.get("raw_label") or "", x, y, z, yaw, sx, sy, sz)
        objects.append((region_id, LabelledBox(nyu40, box)))
    return objects


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: cell}) per non-blank row (``spacelm.scene.table.read_rows``)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return read_rows(f, str(path), columns, cells_required=True)
    except TableError as err:
        raise ConversionError(str(err)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConversionError(f"{path}: cannot read: {getattr(err, 'strerror', None) or err}") from None


def _number(path: Path, line: int, column: str, row: dict[str, str]) -> float:
    try:
        value = float(row[column])
    except ValueError:
        raise ConversionError(f"{path}, line {line}: column {column!r}: "
                              f"{row[column]!r} is not a number") from None
    if not math.isfinite(value):
        raise ConversionError(f"{path}, line {line}: column {column!r}: {row[column]!r} is not finite")
    return value


def _integer(path: Path, line: int, column: str, row: dict[str, str]) -> int:
    value = _number(path, line, column, row)
    if value != int(value):
        raise ConversionError(f"{path}, line {line}: column {column!r}: {row[column]!r} "
                              "is not an integer")
    return int(value)


def _box(path: Path, line: int, prefix: str, row: dict[str, str]) -> tuple[float, ...]:
    x, y, z, yaw, sx, sy, sz = (_number(path, line, f"{prefix}_{k}", row) for k in _BOX_KEYS)
    if min(sx, sy, sz) < 0:
        raise ConversionError(f"{path}, line {line}: negative {prefix} extent ({sx}, {sy}, {sz})")
    return x, y, z, yaw, sx, sy, sz


def _read_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        cloud = read_ply(path)
    except PointFileError as err:  # its message names the file
        raise ConversionError(str(err)) from None
    except OSError as err:
        raise ConversionError(f"{path}: cannot read: {err.strerror or err}") from None
    if cloud.rgb is None:
        raise ConversionError(f"{path}: no red/green/blue vertex properties")
    return cloud.xyz, cloud.rgb


def _read_split(path: Path, n_points: int, region_ids: list[int]) -> list[tuple[int, int, int]]:
    """The split's runs as ``(region index or -1, start, end)``; checks it against the PLY."""
    try:
        split = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ConversionError(f"{path}: cannot read: {err}") from None
    if split.ndim != 2 or split.shape[1] != 2 or split.dtype.kind not in "iu":
        raise ConversionError(f"{path}: expected a (k, 2) integer array, "
                              f"got {split.shape} {split.dtype}")
    ends = split[:, 1].astype(np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    if np.any(ends < starts):
        raise ConversionError(f"{path}: end indices decrease (row {int(np.argmax(ends < starts))})")
    if len(ends) == 0 or ends[-1] != n_points:
        last = int(ends[-1]) if len(ends) else 0
        raise ConversionError(f"{path}: the split covers {last} points, the point cloud has {n_points}")
    index = {region_id: i for i, region_id in enumerate(region_ids)}
    unknown = sorted({int(r) for r in split[:, 0]} - set(index) - {-1})
    if unknown:
        raise ConversionError(f"{path}: region id(s) {unknown} are not in the region file")
    return [(index.get(int(r), -1), int(s), int(e)) for r, s, e in zip(split[:, 0], starts, ends)]


def _assign_points(xyz: np.ndarray, runs: list[tuple[int, int, int]], boxes: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Region index per point (-1: dropped) and the number of dropped points nearest each region."""
    if len(boxes) == 1:
        return np.zeros(len(xyz), np.int64), np.zeros(1, np.int64)
    owner = np.full(len(xyz), -1, np.int64)
    for index, start, end in runs:
        if index >= 0:
            inside = _box_distance(xyz[start:end], boxes[index]) <= REGION_MARGIN
            owner[start:end][inside] = index
    loose = np.flatnonzero(owner < 0)
    nearest, distance = _nearest_box(xyz[loose], boxes)
    keep = distance <= REGION_MARGIN
    owner[loose[keep]] = nearest[keep]
    return owner, np.bincount(nearest[~keep], minlength=len(boxes))


def _nearest_box(xyz: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per point, the box it lies deepest inside (or nearest to) and that signed distance.

    A loop over boxes, not points, so memory stays O(N) for 10M-point HM3D scenes.
    """
    best = np.zeros(len(xyz), np.int64)
    best_distance = np.full(len(xyz), np.inf)
    for index, box in enumerate(boxes):
        distance = _box_distance(xyz, box)
        closer = distance < best_distance
        best[closer], best_distance[closer] = index, distance[closer]
    return best, best_distance


def _box_distance(xyz: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Signed distance to a yaw-rotated box, Chebyshev style: <= 0 inside, else the largest excess."""
    x, y, z, yaw, sx, sy, sz = box
    rel = np.asarray(xyz, dtype=np.float64).reshape(-1, 3) - (x, y, z)
    c, s = math.cos(yaw), math.sin(yaw)
    local_x, local_y = rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c
    return np.maximum.reduce([np.abs(local_x) - sx / 2, np.abs(local_y) - sy / 2,
                              np.abs(rel[:, 2]) - sz / 2])


def _centres(objects: list[LabelledBox]) -> np.ndarray:
    return np.array([(o.box.x, o.box.y, o.box.z) for o in objects], dtype=np.float64).reshape(-1, 3)


def _sanitise(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)
