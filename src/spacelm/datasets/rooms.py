"""Turn a room's labelled object boxes and points into a ``Layout``: shared by every converter.

Most real datasets annotate walls, doors and windows as object boxes (NYU40 ids 1, 8, 9), not as
SpatialLM's wall segments and openings. ``layout_from_boxes`` converts them: a wall box becomes a
``Wall`` along its long horizontal axis, at its bottom, with its height and its short side as
thickness; a door or window box attaches to the nearest wall that runs parallel to it (within
``max_gap``) and becomes an opening centred on its projection onto that wall. Floor and ceiling
are dropped; other classes become ``Box`` entities. Everything that is dropped is counted by reason,
so converters can put the counts in the manifest instead of losing data silently.

``filter_boxes`` is SpatialLM's training filter: drop boxes whose three extents are all below
0.15 m, and boxes with at most 100 points inside the box grown by 0.15 m.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from spacelm.errors import SpacelmError
from spacelm.scene.categories import label_mapping, nyu40_name
from spacelm.scene.entities import Box, Door, Wall, Window
from spacelm.scene.layout import Layout

WALL, FLOOR, DOOR, WINDOW, CEILING = 1, 2, 8, 9, 22
# NYU40 ids that name no object class (void, otherstructure, otherprop): dropped as unknown.
UNKNOWN_NYU40 = frozenset({0, 38, 40})
LABEL_SETS = ("nyu40", "spatiallm59")


class ConversionError(SpacelmError, ValueError):
    """A source file is missing or malformed; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields explicitly
class RoomSample:
    """One training sample: a room's points and layout in the source's metric, z-up frame.

    ``sample_id`` is unique in a dataset (``<source>_<scene>_<region>``); ``dropped`` counts what the
    converter left out, by reason (``unknown_class``, ``door_without_wall``...).
    """

    sample_id: str
    source: str
    scene: str
    region: str
    xyz: np.ndarray  # (N, 3) float32, metres
    rgb: np.ndarray  # (N, 3) uint8
    layout: Layout
    dropped: dict[str, int]
    room_type: str = ""


@dataclass(frozen=True)
class LabelledBox:
    """An annotated object of a source dataset: NYU40 id, raw label (for messages) and its box."""

    nyu40_id: int
    box: Box


def box_label(nyu40_id: int, label_set: str = "nyu40") -> str | None:
    """Class name for a box entity, underscores for spaces; None if the class is not kept.

    ``label_set="nyu40"`` keeps the NYU40 name (``night stand`` -> ``nightstand``, ``floor mat`` ->
    ``floor_mat``); ``"spatiallm59"`` maps it to SpatialLM's names and drops what has no counterpart.
    """
    if nyu40_id in UNKNOWN_NYU40 or not 1 <= nyu40_id <= 40:
        return None
    if label_set == "nyu40":
        name = nyu40_name(nyu40_id)
    elif label_set == "spatiallm59":
        name = label_mapping("nyu40", "spatiallm59").get(nyu40_name(nyu40_id))
    else:
        raise ValueError(f"label_set must be one of {LABEL_SETS}, got {label_set!r}")
    return None if name is None else name.replace(" ", "_")


def wall_from_box(box: Box) -> Wall:
    """A wall segment along the box's long horizontal axis, on its bottom face."""
    long_x = box.scale_x >= box.scale_y
    length = box.scale_x if long_x else box.scale_y
    angle = box.angle_z if long_x else box.angle_z + math.pi / 2
    dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
    bottom = box.z - box.scale_z / 2
    return Wall(box.x - dx, box.y - dy, bottom, box.x + dx, box.y + dy, bottom, box.scale_z,
                min(box.scale_x, box.scale_y))


def attach_opening(box: Box, walls: list[Wall], kind: type, *, max_gap: float = 0.5,
                   max_angle_deg: float = 20.0) -> Door | Window | None:
    """Attach a door/window box to the nearest parallel wall; None if no wall is close enough.

    The opening's width is the box's long horizontal extent, its centre is projected onto the
    wall's line (z kept), as SpatialLM places openings in the wall plane.
    """
    long_x = box.scale_x >= box.scale_y
    width = max(box.scale_x, box.scale_y)
    axis = box.angle_z if long_x else box.angle_z + math.pi / 2
    best, best_gap = None, max_gap
    for i, w in enumerate(walls):
        direction = np.array([w.bx - w.ax, w.by - w.ay], dtype=np.float64)
        length = float(np.hypot(*direction))
        if length == 0:
            continue
        direction /= length
        if abs(math.sin(axis - math.atan2(direction[1], direction[0]))) > math.sin(math.radians(max_angle_deg)):
            continue
        rel = np.array([box.x - w.ax, box.y - w.ay])
        along = float(rel @ direction)
        gap = abs(float(rel[0] * direction[1] - rel[1] * direction[0]))
        if -width / 2 <= along <= length + width / 2 and gap <= best_gap:
            along = min(max(along, 0.0), length)
            best = (i, float(w.ax + along * direction[0]), float(w.ay + along * direction[1]))
            best_gap = gap
    if best is None:
        return None
    i, x, y = best
    return kind(i, x, y, box.z, width, box.scale_z)


def layout_from_boxes(objects: Iterable[LabelledBox], *, label_set: str = "nyu40"
                      ) -> tuple[Layout, Counter]:
    """Walls, openings and boxes of one room from its labelled boxes; also the drop counts by reason."""
    if label_set not in LABEL_SETS:
        raise ValueError(f"label_set must be one of {LABEL_SETS}, got {label_set!r}")
    objects = list(objects)
    dropped: Counter = Counter()
    walls = [wall_from_box(o.box) for o in objects if o.nyu40_id == WALL]
    doors, windows, boxes = [], [], []
    for o in objects:
        if o.nyu40_id in (WALL,):
            continue
        if o.nyu40_id in (FLOOR, CEILING):
            dropped["floor_or_ceiling"] += 1
        elif o.nyu40_id in (DOOR, WINDOW):
            kind = Door if o.nyu40_id == DOOR else Window
            opening = attach_opening(o.box, walls, kind)
            if opening is None:
                dropped[f"{kind.prefix}_without_wall"] += 1
            else:
                (doors if kind is Door else windows).append(opening)
        else:
            label = box_label(o.nyu40_id, label_set)
            if label is not None:
                boxes.append(replace(o.box, label=label))
            elif box_label(o.nyu40_id, "nyu40") is None:
                dropped["unknown_class"] += 1
            else:
                dropped["unmapped_class"] += 1
    doors, merged_doors = merge_openings(doors)
    windows, merged_windows = merge_openings(windows)
    dropped["door_merged"] += merged_doors
    dropped["window_merged"] += merged_windows
    return Layout(walls, doors, windows, boxes), +dropped


def merge_openings(openings: list) -> tuple[list, int]:
    """Merge openings of one kind on the same wall whose spans overlap by over half the narrower one.

    ScanNet labels both "door" and "doorframe" as NYU40 door, which would give two doors 2 cm apart;
    the merged opening spans both. Returns the openings and how many were merged away.
    """
    kept: list = []
    for o in sorted(openings, key=lambda o: (o.wall_id, o.x, o.y)):
        prev = kept[-1] if kept else None
        if prev is not None and prev.wall_id == o.wall_id:
            gap = math.hypot(o.x - prev.x, o.y - prev.y)
            overlap = (prev.width + o.width) / 2 - gap
            if overlap > min(prev.width, o.width) / 2:
                kept[-1] = _span_union(prev, o)
                continue
        kept.append(o)
    return kept, len(openings) - len(kept)


def _span_union(a, b):
    """The opening covering both ``a`` and ``b`` (same wall) along the wall and vertically."""
    dx, dy = b.x - a.x, b.y - a.y
    gap = math.hypot(dx, dy)
    ux, uy = (dx / gap, dy / gap) if gap > 0 else (1.0, 0.0)
    lo, hi = min(-a.width / 2, gap - b.width / 2), max(a.width / 2, gap + b.width / 2)
    bottom = min(a.z - a.height / 2, b.z - b.height / 2)
    top = max(a.z + a.height / 2, b.z + b.height / 2)
    mid = (lo + hi) / 2
    return replace(a, x=a.x + ux * mid, y=a.y + uy * mid, z=(bottom + top) / 2, width=hi - lo,
                   height=top - bottom)


def points_in_boxes(xyz: np.ndarray, boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Number of points inside each yaw-rotated box grown by ``margin``: ``(N, 3), (B, 7)`` -> ``(B,)``."""
    counts = np.zeros(len(boxes), dtype=np.int64)
    for k, (x, y, z, yaw, sx, sy, sz) in enumerate(boxes):
        half = np.array([sx, sy, sz]) / 2 + margin
        reach = float(np.hypot(half[0], half[1]))
        near = np.all(np.abs(xyz[:, :2] - (x, y)) <= reach, axis=1) & (np.abs(xyz[:, 2] - z) <= half[2])
        rel = xyz[near, :2] - (x, y)
        c, s = math.cos(yaw), math.sin(yaw)
        local_x, local_y = rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c
        counts[k] = int(np.count_nonzero((np.abs(local_x) <= half[0]) & (np.abs(local_y) <= half[1])))
    return counts


def filter_boxes(layout: Layout, xyz: np.ndarray, *, min_size: float = 0.15, min_points: int = 100,
                 margin: float = 0.15) -> tuple[Layout, Counter]:
    """SpatialLM's training filters on boxes; returns the kept layout and the drop counts by reason."""
    dropped: Counter = Counter()
    counts = points_in_boxes(xyz, layout.box_array(), margin)
    kept = []
    for box, n in zip(layout.boxes, counts):
        if max(box.scale_x, box.scale_y, box.scale_z) < min_size:
            dropped["box_too_small"] += 1
        elif n <= min_points:
            dropped["box_too_few_points"] += 1
        else:
            kept.append(box)
    return replace(layout, boxes=tuple(kept)), dropped
