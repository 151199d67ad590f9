"""Physics and constraint checks for batches of layouts of one task, vectorised in numpy.

A layout is ``(N, 7)`` box rows ``[x, y, z, yaw, l, w, h]`` in task object order (``spacelm.scene``
conventions: centre in metres, yaw in radians counter-clockwise about +z, full extents); a batch is
``(B, N, 7)``. Every check takes a tolerance, unlike MetaSpatial's exact-equality boxes:

- collisions: boxes turn only about z, so the 15 separating axes of two boxes reduce to 5 (the 4
  footprint axes and z; every edge-edge cross product is one of them). Along each axis the
  boxes must move ``r_a + r_b - |d|`` apart; the smallest of the 5 is the exact penetration depth
  (the shortest translation that separates them). A pair collides when it exceeds
  ``contact_tol``, so furniture that touches does not. Thin objects (rugs, wall art) are skipped
  as in IDesign.
- out of bounds: how far a box reaches outside the room box or polygon (m).
- floating: the gap (m) between an object and its support: the floor for ``on_floor`` objects;
  the targets of its "on" relations otherwise; else the nearest of floor, any object top (with
  the object's centre over that top), the ceiling or a wall. A sunken object does not rest either.
- relations, in the frame of the target object (its right +x, front +y at yaw 0) or, with
  ``relation_frame="room"``, the room frame (right +x, front +y = north). "left of" means the
  subject lies beyond the target's left face (within ``contact_tol``) and their extents along the
  front axis overlap; ``adjacent`` also asks for a gap of at most ``near_tol``. "on" rests on the
  target's top with the subject's centre over it; "above" lies higher with overlapping
  footprints; "under" overlaps footprints with both its bottom and top no higher than the
  target's (a rug under a table, whose box includes the legs). "against wall" and "in the
  corner" ask for gaps of at most ``near_tol`` to the named wall (and to a perpendicular one);
  in a polygon room a named wall is every edge whose outward normal is nearest that side.
  Facing asks the front (+y at yaw 0) to point within ``facing_tol_deg`` of the target (a wall:
  towards it, along its outward normal; "middle of the room": the room centre).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import shapely

from spacelm.arrange.task import ANY_WALL, CEILING, FLOOR, WALLS, ArrangeTask
from spacelm.scene.geometry import box_corners

_KINDS = ("left of", "right of", "in front", "behind", "on", "under", "above")
_WALL_NORMALS = np.array([[0, -1], [0, 1], [-1, 0], [1, 0]], dtype=np.float64)  # outward, WALLS order
_PERPENDICULAR = np.array([[2, 3], [2, 3], [0, 1], [0, 1]])  # walls meeting each wall in a corner


@dataclass(frozen=True)
class PhysicsConfig:
    """Tolerances of the checks (see the module docstring).

    contact_tol: interpenetration (m) still counted as touching; also the slack of the beside,
        under and above tests.
    bounds_tol: how far (m) an object may reach out of the room.
    support_tol: gap (m) between an object and its support that still counts as resting.
    near_tol: largest gap (m) for "adjacent", "against wall" and "in the corner".
    facing_tol_deg: largest angle between an object's front and the way to what it faces.
    relation_frame: "target" or "room": the frame of left / right / in front / behind.
    thin_ratio: objects whose longest side is at least this many times their shortest are not
        checked for collisions (None checks all).
    check_facing: whether facings count among the constraints.
    """

    contact_tol: float = 0.01
    bounds_tol: float = 0.01
    support_tol: float = 0.02
    near_tol: float = 0.10
    facing_tol_deg: float = 45.0
    relation_frame: str = "target"
    thin_ratio: float | None = 40.0
    check_facing: bool = True

    def __post_init__(self) -> None:
        if self.relation_frame not in ("target", "room"):
            raise ValueError(f"relation_frame must be 'target' or 'room', got {self.relation_frame!r}")


@dataclass(frozen=True)
class PhysicsWeights:
    """Weights of the four rates in a physics score (``PhysicsReport.score``)."""

    collision: float = 1.0
    violation: float = 1.0
    out_of_bounds: float = 1.0
    floating: float = 1.0

    @property
    def total(self) -> float:
        return self.collision + self.violation + self.out_of_bounds + self.floating


@dataclass(frozen=True)
class Constraint:
    """One checked relation or facing of object ``subject`` (its index in the task)."""

    subject: int
    kind: str
    target: str
    adjacent: bool = False


@dataclass(frozen=True, eq=False)
class PhysicsReport:
    """Per-pair and per-object measurements for B layouts of one N-object task.

    penetration ``(B, N, N)``: depth (m), symmetric, 0 on the diagonal, for apart or thin pairs.
    outside ``(B, N)``: how far (m) each object reaches out of the room, 0 inside.
    support_gap ``(B, N)``: distance (m) from each object to its nearest allowed support.
    satisfied ``(B, K)``: whether each of ``constraints`` holds.
    """

    penetration: np.ndarray
    outside: np.ndarray
    support_gap: np.ndarray
    satisfied: np.ndarray
    constraints: tuple[Constraint, ...]
    config: PhysicsConfig
    owner: np.ndarray  # (K, N) float: 1 where constraint k belongs to object n

    @property
    def colliding(self) -> np.ndarray:
        """``(B, N, N) bool``: pairs that interpenetrate by more than ``contact_tol``."""
        return self.penetration > self.config.contact_tol

    @property
    def out_of_bounds(self) -> np.ndarray:
        return self.outside > self.config.bounds_tol

    @property
    def floating(self) -> np.ndarray:
        return self.support_gap > self.config.support_tol

    @property
    def violated(self) -> np.ndarray:
        """``(B, N) bool``: objects with at least one unmet relation or facing."""
        return (~self.satisfied).astype(np.float64) @ self.owner > 0

    @property
    def collision_rate(self) -> np.ndarray:
        """``(B,)``: colliding pairs over all N (N - 1) / 2 pairs."""
        n = self.penetration.shape[-1]
        return self.colliding.sum(axis=(1, 2)) / max(n * (n - 1), 1)

    @property
    def relation_violation_rate(self) -> np.ndarray:
        return self.violated.mean(axis=1)

    @property
    def out_of_bounds_rate(self) -> np.ndarray:
        return self.out_of_bounds.mean(axis=1)

    @property
    def floating_rate(self) -> np.ndarray:
        return self.floating.mean(axis=1)

    @property
    def constraint_violation_rate(self) -> np.ndarray:
        """``(B,)``: objects breaking a relation, out of bounds or floating: MetaSpatial's V."""
        return (self.violated | self.out_of_bounds | self.floating).mean(axis=1)

    def score(self, weights: PhysicsWeights = PhysicsWeights()) -> np.ndarray:
        """``(B,)`` in ``[-weights.total, 0]``: minus the weighted rates; 0 is a clean layout."""
        return -(weights.collision * self.collision_rate
                 + weights.violation * self.relation_violation_rate
                 + weights.out_of_bounds * self.out_of_bounds_rate
                 + weights.floating * self.floating_rate)

    def object_penalty(self, weights: PhysicsWeights = PhysicsWeights()) -> np.ndarray:
        """``(B, N)``: each object's own share of the terms, for per-object credit (3D-SPO)."""
        n = self.penetration.shape[-1]
        counts = self.owner.sum(axis=0)
        failed = (~self.satisfied).astype(np.float64) @ self.owner
        return (weights.collision * self.colliding.sum(axis=2) / max(n - 1, 1)
                + weights.violation * np.divide(failed, counts, out=np.zeros_like(failed),
                                                where=counts > 0)
                + weights.out_of_bounds * self.out_of_bounds + weights.floating * self.floating)


def check_layouts(task: ArrangeTask, boxes, config: PhysicsConfig = PhysicsConfig()) -> PhysicsReport:
    """Check ``(N, 7)`` or ``(B, N, 7)`` layouts of ``task``; the report always has a batch axis.

    >>> from spacelm.arrange.task import task_from_dict
    >>> task = task_from_dict({"id": "t", "room": {"length": 4, "width": 3, "height": 2.5},
    ...     "preference": "", "objects": [{"id": "a", "size": [1, 1, 1]}, {"id": "b", "size": [1, 1, 1]}]})
    >>> r = check_layouts(task, [[1, 1, 0.5, 0, 1, 1, 1], [1.5, 1, 0.5, 0, 1, 1, 1]])
    >>> float(r.penetration[0, 0, 1]), r.collision_rate.tolist()
    (0.5, [1.0])
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    boxes = boxes[None] if boxes.ndim == 2 else boxes
    n = len(task.objects)
    if boxes.ndim != 3 or boxes.shape[1:] != (n, 7):
        raise ValueError(f"boxes must be (N, 7) or (B, N, 7) with N = {n}, got {boxes.shape}")
    plan = _compile(task)
    g = _per_box(boxes)
    pairs = _pairs(g, config.contact_tol)
    z_depth = g.hz[:, :, None] + g.hz[:, None, :] - np.abs(g.z[:, :, None] - g.z[:, None, :])
    penetration = np.clip(np.minimum(pairs.depth, z_depth), 0.0, None)
    penetration *= _pair_mask(plan, config.thin_ratio)
    walls, outside = _room_gaps(boxes, g, plan)
    parts = [_object_relations(g, pairs, plan, config), _wall_relations(walls, g, plan, config)]
    constraints = plan.constraints[:plan.num_relations]
    if config.check_facing:
        parts.append(_facings(g, plan, config))
        constraints = plan.constraints
    return PhysicsReport(penetration, outside, _support_gap(g, pairs, walls, plan),
                         np.concatenate(parts, axis=1), constraints, config,
                         plan.owner[:len(constraints)])


def _per_box(boxes: np.ndarray) -> SimpleNamespace:
    """Per-box quantities of a ``(B, N, 7)`` batch, each ``(B, N)``: centre ``x, y, z``, yaw ``c``
    (cos) and ``s`` (sin), half extents ``hx, hy, hz``, ``bottom`` and ``top`` z, and the half
    extents ``ax, ay`` of the footprint's axis-aligned bounds."""
    c, s = np.cos(boxes[..., 3]), np.sin(boxes[..., 3])
    hx, hy, hz = boxes[..., 4] / 2, boxes[..., 5] / 2, boxes[..., 6] / 2
    ac, as_ = np.abs(c), np.abs(s)
    return SimpleNamespace(x=boxes[..., 0], y=boxes[..., 1], z=boxes[..., 2], c=c, s=s, hx=hx, hy=hy,
                           hz=hz, bottom=boxes[..., 2] - hz, top=boxes[..., 2] + hz,
                           ax=ac * hx + as_ * hy, ay=as_ * hx + ac * hy)


def _pairs(g: SimpleNamespace, tol: float) -> SimpleNamespace:
    """All ordered pairs ``[b, i, j]``, each ``(B, N, N)``, in box ``i``'s own frame: ``j``'s centre
    (``px``, ``py``, signed), ``j``'s half extent along ``i``'s axes (``rx``, ``ry``), the xy SAT
    depth (``depth``, negative when apart) and whether ``j``'s centre is over ``i``'s footprint."""
    dx, dy = g.x[:, None, :] - g.x[:, :, None], g.y[:, None, :] - g.y[:, :, None]  # c_j - c_i
    ci, si, cj, sj = g.c[..., None], g.s[..., None], g.c[:, None, :], g.s[:, None, :]
    px, py = dx * ci + dy * si, dy * ci - dx * si
    cos_d, sin_d = np.abs(ci * cj + si * sj), np.abs(ci * sj - si * cj)
    hxj, hyj = g.hx[:, None, :], g.hy[:, None, :]
    rx, ry = hxj * cos_d + hyj * sin_d, hxj * sin_d + hyj * cos_d
    apx, apy = np.abs(px), np.abs(py)
    push = np.minimum(g.hx[..., None] + rx - apx, g.hy[..., None] + ry - apy)  # along i's axes
    over = (apx <= g.hx[..., None] + tol) & (apy <= g.hy[..., None] + tol)
    return SimpleNamespace(px=px, py=py, rx=rx, ry=ry, over=over,
                           depth=np.minimum(push, push.transpose(0, 2, 1)))


def _room_gaps(boxes: np.ndarray, g: SimpleNamespace, plan):
    """Gaps to the four walls ``(B, N, 4)`` (WALLS order, signed for box rooms, negative through
    the wall) and how far each object reaches out of the room ``(B, N)``."""
    if plan.polygon is None:
        walls = np.stack([g.y - g.ay, plan.width - g.y - g.ay, g.x - g.ax, plan.length - g.x - g.ax],
                         axis=-1)
        xy_out = -walls.min(axis=-1)
    else:
        corners = box_corners(boxes.reshape(-1, 7))[:, :4, :2]  # (B*N, 4, 2)
        footprints = shapely.polygons(corners)
        walls = shapely.distance(footprints[:, None], plan.wall_lines[None, :])
        walls = np.nan_to_num(walls, nan=np.inf).reshape(*boxes.shape[:2], 4)  # NaN: no such side
        xy_out = shapely.distance(shapely.points(corners), plan.polygon).max(axis=-1)
        xy_out = xy_out.reshape(boxes.shape[:2])
    outside = np.maximum(np.maximum(xy_out, -g.bottom), g.top - plan.height)
    return walls, np.clip(outside, 0.0, None)


def _support_gap(g: SimpleNamespace, pairs: SimpleNamespace, walls, plan) -> np.ndarray:
    """``(B, N)``: gap to the nearest allowed support (columns: objects, floor, ceiling, walls)."""
    gaps = np.empty((len(g.x),) + plan.support_allowed.shape)  # (B, N, N + 6)
    n = gaps.shape[1]
    np.abs(g.bottom[:, :, None] - g.top[:, None, :], out=gaps[..., :n])
    gaps[..., :n][~pairs.over.transpose(0, 2, 1)] = np.inf  # only tops under the centre
    gaps[..., n] = np.abs(g.bottom)
    gaps[..., n + 1] = np.abs(g.top - plan.height)
    np.abs(walls, out=gaps[..., n + 2:])
    gaps[..., ~plan.support_allowed] = np.inf
    return gaps.min(axis=-1)


def _object_relations(g: SimpleNamespace, pairs: SimpleNamespace, plan, config) -> np.ndarray:
    """``(B, R)``: relations whose target is another object (see the module docstring)."""
    s, t = plan.rel_subject, plan.rel_target
    tol, near = config.contact_tol, config.near_tol
    if config.relation_frame == "target":
        u, v, su, sv = (m[:, t, s] for m in (pairs.px, pairs.py, pairs.rx, pairs.ry))
        tu, tv = g.hx[:, t], g.hy[:, t]
    else:
        u, v, su, sv, tu, tv = g.x[:, s] - g.x[:, t], g.y[:, s] - g.y[:, t], g.ax[:, s], g.ay[:, s], \
            g.ax[:, t], g.ay[:, t]
    gap_u, gap_v = np.abs(u) - su - tu, np.abs(v) - sv - tv  # separation along the frame axes
    loose = ~plan.rel_adjacent
    beside_u = (gap_u >= -tol) & (gap_v < 0) & (loose | (gap_u <= near))
    beside_v = (gap_v >= -tol) & (gap_u < 0) & (loose | (gap_v <= near))
    sb, st, tb, tt = g.bottom[:, s], g.top[:, s], g.bottom[:, t], g.top[:, t]
    overlap = pairs.depth[:, s, t] > tol
    results = [beside_u & (u < 0), beside_u & (u > 0), beside_v & (v > 0), beside_v & (v < 0),
               pairs.over[:, t, s] & (np.abs(sb - tt) <= config.support_tol),
               overlap & (sb <= tb + tol) & (st <= tt + tol),
               overlap & (sb >= tt - tol)]
    return np.choose(plan.rel_kind, results)


def _wall_relations(walls, g: SimpleNamespace, plan, config) -> np.ndarray:
    """``(B, E)``: "against wall", "in the corner" and "on" a wall, the ceiling or the floor."""
    s = plan.elem_subject
    near = np.abs(walls[:, s]) <= config.near_tol  # (B, E, 4)
    by_walls = (near & plan.elem_near).any(axis=-1) & (near & plan.elem_also).any(axis=-1)
    ceiling = np.abs(g.top[:, s] - plan.height) <= config.support_tol
    floor = np.abs(g.bottom[:, s]) <= config.support_tol
    return np.where(plan.elem_kind == 1, ceiling, np.where(plan.elem_kind == 2, floor, by_walls))


def _facings(g: SimpleNamespace, plan, config) -> np.ndarray:
    """``(B, F)``: the front (+y at yaw 0) points within the tolerance of the target."""
    s, o = plan.face_subject, plan.face_object
    # Towards an object's centre, the room centre, or (walls) along the wall's outward normal.
    tx = np.where(o >= 0, g.x[:, o], plan.face_point[0]) - g.x[:, s]
    ty = np.where(o >= 0, g.y[:, o], plan.face_point[1]) - g.y[:, s]
    wall = plan.face_wall >= 0
    tx, ty = np.where(wall, plan.face_direction[:, 0], tx), np.where(wall, plan.face_direction[:, 1], ty)
    norm = np.hypot(tx, ty)
    cosine = (-g.s[:, s] * tx + g.c[:, s] * ty) / np.where(norm > 0, norm, 1.0)
    return (cosine >= math.cos(math.radians(config.facing_tol_deg))) | (norm == 0)


def _pair_mask(plan: SimpleNamespace, thin_ratio: float | None) -> np.ndarray:
    """``(N, N)`` float: 1 for pairs checked for collisions (no thin object, not i = j)."""
    if thin_ratio not in plan.pair_masks:
        n = len(plan.sizes)
        thin = np.zeros(n, dtype=bool) if thin_ratio is None else (
            plan.sizes.max(axis=1) / plan.sizes.min(axis=1) >= thin_ratio)
        keep = ~(thin[:, None] | thin[None, :]) & ~np.eye(n, dtype=bool)
        plan.pair_masks[thin_ratio] = keep.astype(np.float64)
    return plan.pair_masks[thin_ratio]


@functools.lru_cache(maxsize=1024)
def _compile(task: ArrangeTask) -> SimpleNamespace:
    """Index arrays, built once per task: the room (``length``, ``width``, ``height``, ``polygon``
    and per side ``wall_lines``), ``sizes`` ``(N, 3)``, ``support_allowed`` ``(N, N + 6)`` (objects,
    floor, ceiling, 4 walls), relations to objects (``rel_*``, R rows), to room elements
    (``elem_*``, E rows: kind 0 walls, 1 ceiling, 2 floor; some wall of ``elem_near`` and some of
    ``elem_also`` must be near), facings (``face_*``, F rows), and the ``constraints`` in that
    order with their ``owner`` ``(K, N)``."""
    ids = {o.id: i for i, o in enumerate(task.objects)}
    n = len(task.objects)
    rel, elem, face = [], [], []
    allowed = np.ones((n, n + 6), dtype=bool)
    for i, obj in enumerate(task.objects):
        _support_row(allowed[i], i, obj, ids)
        for r in obj.relations:
            constraint = Constraint(i, r.type, r.target, r.adjacent)
            if r.target in ids:
                rel.append((constraint, ids[r.target], _KINDS.index(r.type)))
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

    return SimpleNamespace(
        length=task.room.length, width=task.room.width, height=task.room.height,
        polygon=polygon, wall_lines=lines, support_allowed=allowed,
        sizes=np.array([o.size for o in task.objects], dtype=np.float64),
        rel_subject=np.array([c.subject for c, *_ in rel], dtype=np.intp),
        rel_target=column(rel, 1), rel_kind=column(rel, 2),
        rel_adjacent=np.array([c.adjacent for c, *_ in rel], dtype=bool),
        elem_subject=np.array([c.subject for c, *_ in elem], dtype=np.intp),
        elem_kind=column(elem, 1), elem_near=column(elem, 2, bool).reshape(-1, 4),
        elem_also=column(elem, 3, bool).reshape(-1, 4),
        face_subject=np.array([c.subject for c, *_ in face], dtype=np.intp),
        face_object=column(face, 1), face_wall=face_wall,
        face_direction=_WALL_NORMALS[np.clip(face_wall, 0, 3)].reshape(-1, 2), face_point=centre,
        constraints=constraints, num_relations=len(rel) + len(elem), owner=owner, pair_masks={})


def _wall_test(kind: str, target: str) -> tuple[int, list[bool], list[bool]]:
    """Kind (0 walls, 1 ceiling, 2 floor) and the two wall sets of a room-element relation: a wall
    of the first set must be near, and of the second too (a corner: one perpendicular to it)."""
    if target in (CEILING, FLOOR):
        return (1 if target == CEILING else 2), [False] * 4, [False] * 4
    corner = kind == "in the corner"
    if target == ANY_WALL:  # any corner: near south or north, and near west or east
        return 0, [True, True, not corner, not corner], [not corner, not corner, True, True]
    k = WALLS.index(target)
    near = [w == k for w in range(4)]
    also = [w in _PERPENDICULAR[k] for w in range(4)] if corner else [True] * 4
    return 0, near, also


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
