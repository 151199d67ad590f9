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

import numpy as np
import shapely

from spacelm.arrange.physics_plan import (
    OBJECT_KINDS,
    ON_CEILING,
    ON_FLOOR,
    Constraint,
    TaskPlan,
    compile_task,
)
from spacelm.arrange.task import ArrangeTask
from spacelm.scene.geometry import box_corners


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
    plan = compile_task(task)
    box = BoxTerms.of(boxes)
    pairs = PairTerms.of(box, config.contact_tol)
    hz, z = box.half_z, box.z  # (B, N)
    z_depth = hz[:, :, None] + hz[:, None, :] - np.abs(z[:, :, None] - z[:, None, :])  # (B, N, N)
    penetration = np.clip(np.minimum(pairs.depth, z_depth), 0.0, None) * _pair_mask(plan, config.thin_ratio)
    walls, outside = _room_gaps(boxes, box, plan)
    parts = [_object_relations(box, pairs, plan, config), _wall_relations(walls, box, plan, config)]
    constraints = plan.constraints[:plan.num_relations]
    if config.check_facing:
        parts.append(_facings(box, plan, config))
        constraints = plan.constraints
    return PhysicsReport(penetration, outside, _support_gap(box, pairs, walls, plan),
                         np.concatenate(parts, axis=1), constraints, config,
                         plan.owner[:len(constraints)])


@dataclass(frozen=True)
class BoxTerms:
    """Per-box quantities of a ``(B, N, 7)`` batch, each ``(B, N)`` float64 (m, radians)."""

    x: np.ndarray  # centre
    y: np.ndarray
    z: np.ndarray
    cos: np.ndarray  # of the yaw
    sin: np.ndarray
    half_x: np.ndarray  # half extents along the box's own axes
    half_y: np.ndarray
    half_z: np.ndarray
    bottom: np.ndarray  # z of the lowest and highest face
    top: np.ndarray
    reach_x: np.ndarray  # half extents of the footprint's axis-aligned bounds
    reach_y: np.ndarray

    @classmethod
    def of(cls, boxes: np.ndarray) -> BoxTerms:
        c, s = np.cos(boxes[..., 3]), np.sin(boxes[..., 3])  # (B, N)
        hx, hy, hz = boxes[..., 4] / 2, boxes[..., 5] / 2, boxes[..., 6] / 2  # (B, N)
        ac, as_ = np.abs(c), np.abs(s)
        return cls(x=boxes[..., 0], y=boxes[..., 1], z=boxes[..., 2], cos=c, sin=s, half_x=hx, half_y=hy,
                   half_z=hz, bottom=boxes[..., 2] - hz, top=boxes[..., 2] + hz,
                   reach_x=ac * hx + as_ * hy, reach_y=as_ * hx + ac * hy)


@dataclass(frozen=True)
class PairTerms:
    """All ordered pairs ``[b, i, j]`` in box ``i``'s own frame, each ``(B, N, N)``."""

    offset_x: np.ndarray  # j's centre minus i's, along i's x and y axes (signed, m)
    offset_y: np.ndarray
    reach_x: np.ndarray  # j's half extent along i's x and y axes
    reach_y: np.ndarray
    over: np.ndarray  # bool: j's centre is over i's footprint (within the tolerance)
    depth: np.ndarray  # xy SAT depth over the 4 footprint axes, symmetric; negative when apart

    @classmethod
    def of(cls, box: BoxTerms, tol: float) -> PairTerms:
        # Short names for the SAT: i indexes the rows (axis 1), j the columns (axis 2).
        dx = box.x[:, None, :] - box.x[:, :, None]  # (B, N, N): c_j - c_i
        dy = box.y[:, None, :] - box.y[:, :, None]
        ci, si = box.cos[..., None], box.sin[..., None]  # (B, N, 1): i's yaw
        cj, sj = box.cos[:, None, :], box.sin[:, None, :]  # (B, 1, N): j's yaw
        px, py = dx * ci + dy * si, dy * ci - dx * si  # (B, N, N): j's centre in i's frame
        cos_d, sin_d = np.abs(ci * cj + si * sj), np.abs(ci * sj - si * cj)  # |cos|, |sin| of yaw_j - yaw_i
        hxj, hyj = box.half_x[:, None, :], box.half_y[:, None, :]  # (B, 1, N)
        rx, ry = hxj * cos_d + hyj * sin_d, hxj * sin_d + hyj * cos_d  # (B, N, N): j's reach along i's axes
        hxi, hyi = box.half_x[..., None], box.half_y[..., None]  # (B, N, 1)
        apx, apy = np.abs(px), np.abs(py)
        push = np.minimum(hxi + rx - apx, hyi + ry - apy)  # (B, N, N): depth along i's 2 axes
        over = (apx <= hxi + tol) & (apy <= hyi + tol)
        # push[b, j, i] is the depth along j's own 2 axes: the SAT depth is the smaller over all 4.
        return cls(offset_x=px, offset_y=py, reach_x=rx, reach_y=ry, over=over,
                   depth=np.minimum(push, push.transpose(0, 2, 1)))


def _room_gaps(boxes: np.ndarray, box: BoxTerms, plan: TaskPlan) -> tuple[np.ndarray, np.ndarray]:
    """Gaps to the four walls ``(B, N, 4)`` (WALLS order, signed for box rooms, negative through
    the wall) and how far each object reaches out of the room ``(B, N)``."""
    if plan.polygon is None:
        walls = np.stack([box.y - box.reach_y, plan.width - box.y - box.reach_y,
                          box.x - box.reach_x, plan.length - box.x - box.reach_x], axis=-1)
        xy_out = -walls.min(axis=-1)
    else:
        corners = box_corners(boxes.reshape(-1, 7))[:, :4, :2]  # (B*N, 4, 2)
        footprints = shapely.polygons(corners)
        walls = shapely.distance(footprints[:, None], plan.wall_lines[None, :])
        walls = np.nan_to_num(walls, nan=np.inf).reshape(*boxes.shape[:2], 4)  # NaN: no such side
        xy_out = shapely.distance(shapely.points(corners), plan.polygon).max(axis=-1)
        xy_out = xy_out.reshape(boxes.shape[:2])
    outside = np.maximum(np.maximum(xy_out, -box.bottom), box.top - plan.height)
    return walls, np.clip(outside, 0.0, None)


def _support_gap(box: BoxTerms, pairs: PairTerms, walls: np.ndarray, plan: TaskPlan) -> np.ndarray:
    """``(B, N)``: gap to the nearest allowed support (columns: objects, floor, ceiling, walls)."""
    gaps = np.empty((len(box.x),) + plan.support_allowed.shape)  # (B, N, N + 6)
    n = gaps.shape[1]
    np.abs(box.bottom[:, :, None] - box.top[:, None, :], out=gaps[..., :n])
    gaps[..., :n][~pairs.over.transpose(0, 2, 1)] = np.inf  # only tops under the centre
    gaps[..., n] = np.abs(box.bottom)
    gaps[..., n + 1] = np.abs(box.top - plan.height)
    np.abs(walls, out=gaps[..., n + 2:])
    gaps[..., ~plan.support_allowed] = np.inf
    return gaps.min(axis=-1)


def _object_relations(box: BoxTerms, pairs: PairTerms, plan: TaskPlan, config: PhysicsConfig) -> np.ndarray:
    """``(B, R)``: relations whose target is another object (see the module docstring)."""
    s, t = plan.rel_subject, plan.rel_target  # (R,) subject and target indices
    tol, near = config.contact_tol, config.near_tol
    # u, v: the subject's centre from the target's along the frame axes; su, sv and tu, tv: the
    # subject's and the target's half extents along them. Each (B, R).
    if config.relation_frame == "target":
        u, v, su, sv = (m[:, t, s] for m in (pairs.offset_x, pairs.offset_y, pairs.reach_x, pairs.reach_y))
        tu, tv = box.half_x[:, t], box.half_y[:, t]
    else:
        u, v = box.x[:, s] - box.x[:, t], box.y[:, s] - box.y[:, t]
        su, sv, tu, tv = box.reach_x[:, s], box.reach_y[:, s], box.reach_x[:, t], box.reach_y[:, t]
    gap_u, gap_v = np.abs(u) - su - tu, np.abs(v) - sv - tv  # separation along the frame axes
    loose = ~plan.rel_adjacent
    beside_u = (gap_u >= -tol) & (gap_v < 0) & (loose | (gap_u <= near))
    beside_v = (gap_v >= -tol) & (gap_u < 0) & (loose | (gap_v <= near))
    sb, st, tb, tt = box.bottom[:, s], box.top[:, s], box.bottom[:, t], box.top[:, t]
    overlap = pairs.depth[:, s, t] > tol
    tests = {
        "left of": beside_u & (u < 0),
        "right of": beside_u & (u > 0),
        "in front": beside_v & (v > 0),
        "behind": beside_v & (v < 0),
        "on": pairs.over[:, t, s] & (np.abs(sb - tt) <= config.support_tol),
        "under": overlap & (sb <= tb + tol) & (st <= tt + tol),
        "above": overlap & (sb >= tt - tol),
    }
    return np.choose(plan.rel_kind, [tests[kind] for kind in OBJECT_KINDS])


def _wall_relations(walls: np.ndarray, box: BoxTerms, plan: TaskPlan, config: PhysicsConfig) -> np.ndarray:
    """``(B, E)``: "against wall", "in the corner" and "on" a wall, the ceiling or the floor."""
    s = plan.elem_subject
    near = np.abs(walls[:, s]) <= config.near_tol  # (B, E, 4)
    by_walls = (near & plan.elem_near).any(axis=-1) & (near & plan.elem_also).any(axis=-1)
    ceiling = np.abs(box.top[:, s] - plan.height) <= config.support_tol
    floor = np.abs(box.bottom[:, s]) <= config.support_tol
    return np.where(plan.elem_kind == ON_CEILING, ceiling,
                    np.where(plan.elem_kind == ON_FLOOR, floor, by_walls))


def _facings(box: BoxTerms, plan: TaskPlan, config: PhysicsConfig) -> np.ndarray:
    """``(B, F)``: the front (+y at yaw 0) points within the tolerance of the target."""
    s, o = plan.face_subject, plan.face_object
    # Towards an object's centre, the room centre, or (walls) along the wall's outward normal.
    tx = np.where(o >= 0, box.x[:, o], plan.face_point[0]) - box.x[:, s]  # (B, F)
    ty = np.where(o >= 0, box.y[:, o], plan.face_point[1]) - box.y[:, s]
    wall = plan.face_wall >= 0
    tx, ty = np.where(wall, plan.face_direction[:, 0], tx), np.where(wall, plan.face_direction[:, 1], ty)
    norm = np.hypot(tx, ty)
    cosine = (-box.sin[:, s] * tx + box.cos[:, s] * ty) / np.where(norm > 0, norm, 1.0)
    return (cosine >= math.cos(math.radians(config.facing_tol_deg))) | (norm == 0)


@functools.lru_cache(maxsize=1024)
def _pair_mask(plan: TaskPlan, thin_ratio: float | None) -> np.ndarray:
    """``(N, N)`` float, read-only: 1 for pairs checked for collisions (no thin object, not i = j).

    Cached by the plan's identity (``eq=False``), which ``compile_task`` caches per task."""
    n = len(plan.sizes)
    thin = np.zeros(n, dtype=bool) if thin_ratio is None else (
        plan.sizes.max(axis=1) / plan.sizes.min(axis=1) >= thin_ratio)
    keep = (~(thin[:, None] | thin[None, :]) & ~np.eye(n, dtype=bool)).astype(np.float64)
    keep.setflags(write=False)
    return keep
