"""A task compiled for ``spacelm.arrange.physics``: index arrays built once per task (``compile_task``).

Relations split three ways: R to other objects (``rel_*``), E to room elements (walls, ceiling,
floor: ``elem_*``) and F facings (``face_*``); ``constraints`` lists them in that order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import shapely

from spacelm.arrange.task import ANY_WALL, CEILING, FLOOR, WALLS, ArrangeTask

# Relations whose target is another object; ``physics._object_relations`` names its test of each.
OBJECT_KINDS = ("left of", "right of", "in front", "behind", "on", "under", "above")
# What a room-element relation ("against wall", "in the corner", "on" the ceiling or floor) checks.
NEAR_WALLS, ON_CEILING, ON_FLOOR = 0, 1, 2
_WALL_NORMALS = np.array([[0, -1], [0, 1], [-1, 0], [1, 0]], dtype=np.float64)  # outward, WALLS order
_PERPENDICULAR = np.array([[2, 3], [2, 3], [0, 1], [0, 1]])  # walls meeting each wall in a corner


@dataclass(frozen=True)
class Constraint:
    """One checked relation or facing of object ``subject`` (its index in the task)."""

    subject: int
    kind: str
    target: str
    adjacent: bool = False


@dataclass(frozen=True, eq=False)
class TaskPlan:
    """Index arrays of one task, built once (``compile_task``). R relations to objects, E to room
    elements, F facings; the ``constraints`` are those rows in that order."""

    length: float  # the room box (m)
    width: float
    height: float
    polygon: shapely.Polygon | None  # the floor plan; None for a box room
    wall_lines: np.ndarray  # (4,) object: per side (WALLS order) the polygon edges facing it, or None
    sizes: np.ndarray  # (N, 3): each object's l, w, h
    support_allowed: np.ndarray  # (N, N + 6) bool: objects, floor, ceiling, 4 walls that may carry i
    rel_subject: np.ndarray  # (R,) intp
    rel_target: np.ndarray  # (R,) intp
    rel_kind: np.ndarray  # (R,) intp: index into OBJECT_KINDS
    rel_adjacent: np.ndarray  # (R,) bool
    elem_subject: np.ndarray  # (E,) intp
    elem_kind: np.ndarray  # (E,) intp: NEAR_WALLS, ON_CEILING or ON_FLOOR
    elem_near: np.ndarray  # (E, 4) bool: some wall of this set must be near ...
    elem_also: np.ndarray  # (E, 4) bool: ... and some of this one (a corner: a perpendicular wall)
    face_subject: np.ndarray  # (F,) intp
    face_object: np.ndarray  # (F,) intp: the object faced, -1 for a wall or the room centre
    face_wall: np.ndarray  # (F,) intp: the wall faced (WALLS index), -1 otherwise
    face_direction: np.ndarray  # (F, 2): outward normal of the wall faced
    face_point: np.ndarray  # (2,): the room centre
    constraints: tuple[Constraint, ...]  # (K,) = R + E + F
    num_relations: int  # R + E
    owner: np.ndarray  # (K, N) float: 1 where constraint k belongs to object n

    def __post_init__(self) -> None:
        # Every check of the task shares one plan (compile_task caches it): a write would be a bug.
        for value in vars(self).values():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)


@functools.lru_cache(maxsize=1024)
def compile_task(task: ArrangeTask) -> TaskPlan:
    """The ``TaskPlan`` of ``task`` (cached: GRPO checks many layouts of one task)."""
    ids = {o.id: i for i, o in enumerate(task.objects)}
    n = len(task.objects)
    rel, elem, face = [], [], []
    allowed = np.ones((n, n + 6), dtype=bool)
    for i, obj in enumerate(task.objects):
        _support_row(allowed[i], i, obj, ids)
        for r in obj.relations:
            constraint = Constraint(i, r.type, r.target, r.adjacent)
            if r.target in ids:
                rel.append((constraint, ids[r.target], OBJECT_KINDS.index(r.type)))
            else:
                elem.append((constraint, *_wall_test(r.type, r.target)))
        if obj.facing is not None and obj.facing != CEILING:
            wall = WALLS.index(obj.facing) if obj.facing in WALLS else -1
            face.append((Constraint(i, "facing", obj.facing), ids.get(obj.facing, -1), wall))
    polygon, lines = _room_shape(task)
    centre = (np.array(polygon.centroid.coords[0]) if polygon is not None
              else np.array([task.room.length / 2, task.room.width / 2]))
    constraints = tuple(row[0] for row in rel + elem + face)
    owner = np.zeros((len(constraints), n))
    owner[np.arange(len(constraints)), [c.subject for c in constraints]] = 1.0
    face_wall = np.array([f[2] for f in face], dtype=np.intp)

    def column(rows, k, dtype=np.intp):
        return np.array([row[k] for row in rows], dtype=dtype)

    def subjects(rows):
        return np.array([c.subject for c, *_ in rows], dtype=np.intp)

    return TaskPlan(
        length=task.room.length, width=task.room.width, height=task.room.height,
        polygon=polygon, wall_lines=lines, support_allowed=allowed,
        sizes=np.array([o.size for o in task.objects], dtype=np.float64).reshape(-1, 3),
        rel_subject=subjects(rel), rel_target=column(rel, 1), rel_kind=column(rel, 2),
        rel_adjacent=np.array([c.adjacent for c, *_ in rel], dtype=bool),
        elem_subject=subjects(elem), elem_kind=column(elem, 1), elem_near=column(elem, 2, bool).reshape(-1, 4),
        elem_also=column(elem, 3, bool).reshape(-1, 4),
        face_subject=subjects(face), face_object=column(face, 1), face_wall=face_wall,
        face_direction=_WALL_NORMALS[np.clip(face_wall, 0, 3)].reshape(-1, 2), face_point=centre,
        constraints=constraints, num_relations=len(rel) + len(elem), owner=owner)


def _wall_test(kind: str, target: str) -> tuple[int, list[bool], list[bool]]:
    """What a room-element relation checks (``NEAR_WALLS``, ``ON_CEILING``, ``ON_FLOOR``) and its two
    wall sets: a wall of the first set must be near, and of the second too (a corner: one perpendicular)."""
    if target in (CEILING, FLOOR):
        return (ON_CEILING if target == CEILING else ON_FLOOR), [False] * 4, [False] * 4
    corner = kind == "in the corner"
    if target == ANY_WALL:  # any corner: near south or north, and near west or east
        return NEAR_WALLS, [True, True, not corner, not corner], [not corner, not corner, True, True]
    k = WALLS.index(target)
    near = [w == k for w in range(4)]
    also = [w in _PERPENDICULAR[k] for w in range(4)] if corner else [True] * 4
    return NEAR_WALLS, near, also


def _support_row(row: np.ndarray, i: int, obj, ids: dict) -> None:
    """Which supports (objects, floor, ceiling, 4 walls) may carry object ``i``."""
    n = len(row) - 6
    targets = [r.target for r in obj.relations if r.type == "on"]
    if obj.on_floor or targets:
        row[:] = False
        row[n] = obj.on_floor or FLOOR in targets
        row[n + 1] = CEILING in targets
        for t in targets:
            if t in ids:
                row[ids[t]] = True
            elif t in WALLS:
                row[n + 2 + WALLS.index(t)] = True
    row[i] = False


def _room_shape(task: ArrangeTask):
    """The floor polygon (None for a box room) and, per wall side, the polygon edges facing it."""
    if task.room.polygon is None:
        return None, np.empty(0, dtype=object)
    polygon = shapely.orient_polygons(shapely.Polygon(task.room.polygon))  # exterior CCW
    ring = np.asarray(polygon.exterior.coords)
    edges = np.stack([ring[:-1], ring[1:]], axis=1)  # (E, 2, 2)
    direction = edges[:, 1] - edges[:, 0]
    outward = np.stack([direction[:, 1], -direction[:, 0]], axis=1)  # right normal of a CCW ring
    side = np.argmax(outward @ _WALL_NORMALS.T, axis=1)
    lines = np.array([shapely.multilinestrings(edges[side == k]) if np.any(side == k) else None
                      for k in range(4)], dtype=object)
    shapely.prepare(polygon)
    return polygon, lines
