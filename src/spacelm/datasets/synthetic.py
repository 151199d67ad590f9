"""Procedural furnished rooms: spacelm's embedded default data (layout + coloured point cloud).

The CPU quickstart trains a tiny model on these rooms, so they are meant to be learnable yet not
trivial: rectangular and L-shaped rooms with axis-aligned walls, doors, windows and up to 15 boxes from
SpatialLM's category names, scanned as noisy, holed point clouds. Everything is deterministic by seed.

Frame. z is up and the floor is z = 0 (SpatialLM's ground truth has wall ``az = bz = 0``). The room's
minimum x/y corner is moved by a random offset of up to ``max_offset`` metres in each direction, so
coordinates can be negative and downstream code must shift the cloud to non-negative coordinates, as
SpatialLM's preprocessing does. Rooms are at most 8 m a side, so the shifted scene lies well inside
SpatialLM's 0-32 m position range.

Points. Walls, floor and boxes are sampled uniformly by area at ``density`` points per m^2. The
default, 1000, puts about 2.5 points on each 5 cm voxel face, so a 5 cm voxelisation is nearly
hole-free; a room then has 40k-150k raw points (median 90k, 25k-70k once voxelised at 5 cm), and the
cost is linear in the points. A door opening has no wall points; about half the windows get sparse
glass points, the others none. Boxes get points on their top and sides, not on their bottom nor on a
face against a wall, and floor or wall points hidden inside a box (the floor under a bed, the wall
behind a wardrobe) are removed. The ceiling is off by default: many real scans lack it, and it would
add a quarter more points that tell nothing the walls' height does not. Then a few spheres of points
are cut out (occlusion holes) and Gaussian noise is added. Colours are a fixed base colour per
category (walls and floor draw theirs from small palettes per room), a tint per instance and a jitter
per point.

Labels. ``SynthRoom.labels`` is an instance id per point that indexes the room's own layout:
``FLOOR`` (0), ``CEILING`` (1), ``WALL_BASE + i`` for ``layout.walls[i]``, ``WINDOW_BASE + j`` for the
glass of ``layout.windows[j]`` and ``BOX_BASE + k`` for ``layout.boxes[k]``. Reordering the layout (e.g.
``canonical_order``) breaks this correspondence.

>>> room = synth_room(7)
>>> room.xyz.shape[0] == room.rgb.shape[0] == room.labels.shape[0]
True
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import shapely

from spacelm.datasets.synthetic_furniture import (
    CATALOGUE,
    CEILING_COLOUR,
    FLOOR_COLOURS,
    GLASS_COLOUR,
    ROOM_TYPES,
    WALL_BACKED,
    WALL_COLOURS,
)
from spacelm.scene.entities import Box, Door, Wall, Window
from spacelm.scene.layout import Layout

FLOOR, CEILING, WALL_BASE, WINDOW_BASE, BOX_BASE = 0, 1, 100, 200, 1000
# Every box label the generator can draw, sorted: the words a tiny tokenizer for its rooms must know.
BOX_LABELS: tuple[str, ...] = tuple(sorted(CATALOGUE))

# (origin corner signs, u axis, v axis) of the five visible faces of a box, in the box frame; the last
# one is the back (own -y) face, hidden when the box stands against a wall.
_FACES = (((-1, -1, 1), 0, 1), ((1, -1, -1), 1, 2), ((-1, -1, -1), 1, 2), ((-1, 1, -1), 0, 2),
          ((-1, -1, -1), 0, 2))


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator. Ranges are ``(min, max)``, inclusive for counts; lengths in metres."""

    density: float = 1000.0  # points per m^2 of visible surface
    noise: float = 0.01  # Gaussian sigma per axis
    holes: tuple[int, int] = (1, 4)  # occlusion spheres per room, centred on surface points
    hole_radius: tuple[float, float] = (0.15, 0.5)
    ceiling: bool = False
    glass_ratio: float = 0.1  # point density on a window that has glass, relative to ``density``
    side: tuple[float, float] = (2.5, 8.0)  # room extent along x and y (L-shaped rooms: from 3.5)
    height: tuple[float, float] = (2.4, 3.2)
    l_shape_prob: float = 0.35
    doors: tuple[int, int] = (1, 2)
    windows: tuple[int, int] = (0, 3)
    boxes: tuple[int, int] = (3, 15)  # also capped by floor area, 3 + 1 per 2.5 m^2
    free_yaw_prob: float = 0.1  # free-standing boxes at an arbitrary yaw instead of a quarter turn
    # Box categories the rooms may hold (names of the furniture catalogue); None: all 33. Each room type
    # keeps its anchors and draw weights restricted to these; a type left with none draws them evenly.
    categories: tuple[str, ...] | None = None
    max_offset: float = 2.0  # random x/y shift of the room's minimum corner
    voxel_size: float | None = None  # keep one point per voxel (unshifted grid); None keeps all

    def __post_init__(self) -> None:
        if self.categories is not None:
            object.__setattr__(self, "categories", tuple(self.categories))
            unknown = sorted(set(self.categories) - set(CATALOGUE))
            if not self.categories or unknown:
                raise ValueError(f"categories must be a non-empty subset of the catalogue "
                                 f"({', '.join(BOX_LABELS)}); unknown: {unknown or 'none given'}")


@dataclass(frozen=True, eq=False)
class RoomPlan:
    """A room without points: its layout, type, shape (``"rect"`` or ``"L"``) and seed.

    ``footprint`` is ``(K, 2) float64``, the floor polygon's corners counter-clockwise; ``walls[i]``
    runs from corner ``i`` to corner ``i + 1``, so the room is on each wall's left.
    """

    layout: Layout
    room_type: str
    shape: str
    footprint: np.ndarray = field(repr=False)
    seed: int


@dataclass(frozen=True, eq=False)
class SynthRoom:
    """A generated room: the plan's fields plus its scan.

    ``xyz (N, 3) float32`` metres, ``rgb (N, 3) uint8``, ``labels (N,) int16`` (encoding in the module
    docstring). Arrays are read-only.
    """

    layout: Layout
    xyz: np.ndarray = field(repr=False)
    rgb: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    room_type: str
    shape: str
    footprint: np.ndarray = field(repr=False)
    seed: int


def room_seed(seed: int, index: int) -> int:
    """Seed of room ``index`` of the stream ``seed``: ``synth_room(room_seed(s, i))`` regenerates it."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


def synth_rooms(n: int, seed: int, config: SynthConfig = SynthConfig()) -> Iterator[SynthRoom]:
    """``n`` rooms; room ``i`` is ``synth_room(room_seed(seed, i), config)``."""
    for i in range(n):
        yield synth_room(room_seed(seed, i), config)


def synth_room(seed: int, config: SynthConfig = SynthConfig()) -> SynthRoom:
    """One room and its point cloud. ``seed`` is a non-negative int.

    The layout draws from its own random stream, so point knobs (density, noise, holes, ceiling...)
    never change the layout of a seed.
    """
    plan = synth_layout(seed, config)
    xyz, rgb, labels = _scan(plan, config, np.random.default_rng([seed, 1]))
    for a in (xyz, rgb, labels):
        a.flags.writeable = False
    return SynthRoom(plan.layout, xyz, rgb, labels, plan.room_type, plan.shape, plan.footprint, seed)


def synth_layout(seed: int, config: SynthConfig = SynthConfig()) -> RoomPlan:
    """The layout of ``synth_room(seed, config)`` alone, without points (about 3 ms instead of 30)."""
    rng = np.random.default_rng([seed, 0])
    names = list(ROOM_TYPES)
    p = np.array([ROOM_TYPES[t].probability for t in names])
    room_type = names[rng.choice(len(names), p=p / p.sum())]
    shape, corners = _footprint(rng, config)
    height = float(rng.uniform(*config.height))
    room = _Room(corners, height)
    ends = corners.tolist()
    walls = [Wall(*ends[i], 0.0, *ends[(i + 1) % len(ends)], 0.0, height, 0.0)
             for i in range(len(ends))]
    doors, windows = _openings(rng, room, config)
    boxes = _furnish(rng, room, room_type, config)
    corners.flags.writeable = False
    return RoomPlan(Layout(walls, doors, windows, boxes), room_type, shape, corners, seed)


def _footprint(rng: np.random.Generator, cfg: SynthConfig) -> tuple[str, np.ndarray]:
    """Counter-clockwise floor corners ``(K, 2)``: a rectangle, or one with a corner notch (an L)."""
    lo, hi = cfg.side
    if rng.random() < cfg.l_shape_prob:
        w, d = rng.uniform(max(lo, 3.5), hi, size=2)
        nw, nd = rng.uniform(0.3, 0.6, size=2) * (w, d)
        corners = np.array([(0, 0), (w, 0), (w, d - nd), (w - nw, d - nd), (w - nw, d), (0, d)])
        quarter = np.linalg.matrix_power(np.array([[0.0, -1.0], [1.0, 0.0]]), int(rng.integers(4)))
        corners, shape = corners @ quarter.T, "L"  # notch at a random corner
    else:
        w, d = rng.uniform(lo, hi, size=2)
        corners, shape = np.array([(0, 0), (w, 0), (w, d), (0, d)]), "rect"
    offset = rng.uniform(-cfg.max_offset, cfg.max_offset, size=2)
    return shape, corners - corners.min(axis=0) + offset


class _Room:
    """Wall frames of a footprint plus what furnishing has to avoid.

    Per wall ``i``: start ``a[i]``, unit direction ``u[i]``, inward normal ``n[i]``, ``length[i]``.
    ``solids`` holds ``(footprint polygon, z_min, z_max, kind)`` for placed boxes (kind ``"box"``) and
    the clearances in front of doors and windows (``"door"``, ``"window"``), which are not output.
    """

    def __init__(self, corners: np.ndarray, height: float):
        self.a, self.height = corners, height
        edge = np.roll(corners, -1, axis=0) - corners
        self.length = np.linalg.norm(edge, axis=1)
        self.u = edge / self.length[:, None]
        self.n = np.stack([-self.u[:, 1], self.u[:, 0]], axis=1)
        self.polygon = shapely.Polygon(corners).buffer(1e-6, join_style="mitre")
        self.windows: list[tuple[int, float, float]] = []  # (wall, position along it, width)
        self.solids: list[tuple[shapely.Polygon, float, float, str]] = []
        self.boxes: list[Box] = []

    def wall_pose(self, i: int, t: float, depth: float, gap: float) -> tuple[float, float, float]:
        """``(x, y, yaw)`` of a box of ``depth`` whose back is ``gap`` from wall ``i`` at ``t``: its
        own x runs along the wall and its front (+y) faces the room."""
        x, y = self.a[i] + self.u[i] * t + self.n[i] * (gap + depth / 2)
        return float(x), float(y), math.atan2(self.u[i, 1], self.u[i, 0])

    def pick_wall(self, rng: np.random.Generator, min_length: float) -> int | None:
        """A wall at least ``min_length`` long, drawn with probability proportional to its length."""
        ok = self.length >= min_length
        if not ok.any():
            return None
        return int(rng.choice(len(ok), p=np.where(ok, self.length, 0.0) / self.length[ok].sum()))

    def fits(self, poly: shapely.Polygon, z0: float, z1: float, ignore: str = "") -> bool:
        """Inside the room and clear of every solid it overlaps vertically (``ignore``: a kind)."""
        if not self.polygon.contains(poly):
            return False
        return not any(kind != ignore and z0 < hi - 1e-6 and lo < z1 - 1e-6
                       and other.intersection(poly).area > 1e-6
                       for other, lo, hi, kind in self.solids)


def _rect(x: float, y: float, yaw: float, sx: float, sy: float) -> shapely.Polygon:
    """Footprint of a box centred at ``(x, y)`` with yaw and full extents ``sx``, ``sy``."""
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)]) * (sx / 2, sy / 2)
    return shapely.Polygon(local @ np.array([[c, s], [-s, c]]) + (x, y))


def _wall_spot(rng, room: _Room, occupied: list, width: float) -> tuple[int, float] | None:
    """A wall and centre position for an opening of ``width``: 15 cm from wall ends, 20 cm from others."""
    end, gap = 0.15, 0.2
    for _ in range(20):
        i = room.pick_wall(rng, width + 2 * end)
        if i is None:
            return None
        t = float(rng.uniform(end + width / 2, room.length[i] - end - width / 2))
        if all(t + width / 2 + gap <= lo or t - width / 2 - gap >= hi for lo, hi in occupied[i]):
            occupied[i].append((t - width / 2, t + width / 2))
            return i, t
    return None


def _openings(rng, room: _Room, cfg: SynthConfig) -> tuple[list[Door], list[Window]]:
    """Doors (on the floor) and windows, with the clearances that keep furniture away from them."""
    occupied: list[list[tuple[float, float]]] = [[] for _ in room.length]
    doors, windows = [], []
    for _ in range(rng.integers(cfg.doors[0], cfg.doors[1] + 1)):
        width, height = rng.uniform(0.8, 1.0), rng.uniform(2.0, 2.2)
        if spot := _wall_spot(rng, room, occupied, width):
            i, t = spot
            x, y, _ = room.wall_pose(i, t, 0.0, 0.0)
            doors.append(Door(i, x, y, height / 2, width, height))
            room.solids.append((_rect(*room.wall_pose(i, t, 0.8, 0.0), width + 0.2, 0.8), 0.0,
                                height + 0.1, "door"))
    for _ in range(rng.integers(cfg.windows[0], cfg.windows[1] + 1)):
        width, sill = rng.uniform(0.6, 2.0), rng.uniform(0.6, 1.2)
        height = min(rng.uniform(0.8, 1.5), room.height - 0.1 - sill)
        if spot := _wall_spot(rng, room, occupied, width):
            i, t = spot
            x, y, _ = room.wall_pose(i, t, 0.0, 0.0)
            windows.append(Window(i, x, y, sill + height / 2, width, height))
            room.windows.append((i, t, width))
            room.solids.append((_rect(*room.wall_pose(i, t, 0.3, 0.0), width, 0.3), sill,
                                sill + height, "window"))
    return doors, windows


def _furnish(rng, room: _Room, room_type: str, cfg: SynthConfig) -> list[Box]:
    """Place the room type's anchors, then weighted draws, by rejection sampling.

    The target count is drawn from ``cfg.boxes`` and capped by floor area; a draw is given 5
    placement tries (anchors 50), at most 8 draws per target box are made and categories stop at
    their ``limit``.
    """
    kind = ROOM_TYPES[room_type]
    area = shapely.Polygon(room.a).area
    target = min(int(rng.integers(cfg.boxes[0], cfg.boxes[1] + 1)), 3 + int(area / 2.5))
    allowed = set(CATALOGUE if cfg.categories is None else cfg.categories)
    weights = {k: w for k, w in kind.weights.items() if k in allowed} or dict.fromkeys(sorted(allowed), 1.0)
    names = list(weights)
    p = np.array([weights[k] for k in names], dtype=float)
    draws = [(name, 50) for name in kind.anchors if name in allowed]
    draws += [(names[j], 5) for j in rng.choice(len(names), size=8 * target, p=p / p.sum())]
    for name, tries in draws:
        if len(room.boxes) >= target:
            break
        if sum(b.label == name for b in room.boxes) >= CATALOGUE[name].limit:
            continue
        for _ in range(tries):
            if _place(rng, name, room, cfg):
                break
    return room.boxes


def _place(rng, name: str, room: _Room, cfg: SynthConfig) -> bool:
    """Try once to place a box of category ``name`` by its rule; on success record it in ``room``."""
    f = CATALOGUE[name]
    w, d, h, elev = (float(rng.uniform(*r)) for r in (f.width, f.depth, f.height, f.elevation))
    h = min(h, room.height - elev - 0.05)
    anchor = next((b for b in room.boxes if b.label == f.near), None)
    rule = "free" if f.rule == "near" and anchor is None else f.rule
    if rule in ("wall", "mounted"):
        i = room.pick_wall(rng, w)
        if i is None:
            return False
        t = rng.uniform(w / 2, room.length[i] - w / 2)
        x, y, yaw = room.wall_pose(i, t, d, rng.uniform(0.0, 0.02) if rule == "wall" else 0.0)
    elif rule == "window":
        if not room.windows:
            return False
        i, t, width = room.windows[rng.integers(len(room.windows))]
        w = max(w, width + 0.2)
        x, y, yaw = room.wall_pose(i, t, d, 0.0)
    elif rule == "near":
        x, y, yaw = _near_pose(rng, anchor, w, d)
    else:
        x0, y0, x1, y1 = room.polygon.bounds
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        free = rng.random() < cfg.free_yaw_prob
        yaw = rng.uniform(-math.pi, math.pi) if free else rng.integers(4) * math.pi / 2
    yaw = (yaw + math.pi) % (2 * math.pi) - math.pi
    poly = _rect(x, y, yaw, w, d)
    if not room.fits(poly, elev, elev + h, ignore="window" if rule == "window" else ""):
        return False
    room.boxes.append(Box(name, *(float(v) for v in (x, y, elev + h / 2, yaw, w, d, h))))
    room.solids.append((poly, elev, elev + h, "box"))
    return True


def _near_pose(rng, anchor: Box, w: float, d: float) -> tuple[float, float, float]:
    """Pose of a ``w`` x ``d`` box facing a random side of ``anchor`` (a chair at a table)."""
    k = int(rng.integers(4))
    phi = k * math.pi / 2
    normal_ext, side_ext = (anchor.scale_x, anchor.scale_y)[:: 1 if k % 2 == 0 else -1]
    dist = normal_ext / 2 + rng.uniform(0.02, 0.15) + d / 2
    slide = rng.uniform(-1, 1) * max(side_ext / 2 - w / 2, 0.0)
    lx, ly = dist * math.cos(phi) - slide * math.sin(phi), dist * math.sin(phi) + slide * math.cos(phi)
    c, s = math.cos(anchor.angle_z), math.sin(anchor.angle_z)
    return anchor.x + c * lx - s * ly, anchor.y + s * lx + c * ly, anchor.angle_z + phi + math.pi / 2


def _scan(plan: RoomPlan, cfg: SynthConfig, rng: np.random.Generator):
    """Sample, occlude and perturb the room's surfaces: ``(xyz, rgb, labels)`` as in ``SynthRoom``.

    Points are handled as ``(3, N)`` columns until the end: row gathers and reductions over ``(N, 3)``
    arrays cost several times more.
    """
    origin, u, v, labels, colour, ratio = _surfaces(plan, cfg, rng)
    area = np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)
    counts = rng.poisson(cfg.density * ratio * area)
    s, t = rng.random((2, counts.sum()), dtype=np.float32)
    xyz = np.repeat(origin.T, counts, 1) + s * np.repeat(u.T, counts, 1) + t * np.repeat(v.T, counts, 1)
    idx = np.repeat(np.arange(len(labels)), counts)
    keep = _visible(plan, xyz, labels[idx])
    idx, xyz = idx[keep], xyz[:, keep]
    keep = np.ones(len(idx), bool)
    for _ in range(rng.integers(cfg.holes[0], cfg.holes[1] + 1)):
        centre, radius = xyz[:, rng.integers(len(idx))], rng.uniform(*cfg.hole_radius)
        keep &= sum((xyz[k] - centre[k]) ** 2 for k in range(3)) > radius**2
    idx, xyz = idx[keep], xyz[:, keep]
    xyz += np.float32(cfg.noise) * rng.standard_normal(xyz.shape, dtype=np.float32)
    rgb = colour.T[:, idx] + 20 * rng.random(xyz.shape, dtype=np.float32) - 10
    xyz, rgb = np.ascontiguousarray(xyz.T), np.clip(np.rint(rgb.T), 0, 255).astype(np.uint8)
    if cfg.voxel_size:
        v = np.floor(xyz / cfg.voxel_size).astype(np.int64)
        v -= v.min(axis=0)
        key = (v[:, 0] * (v[:, 1].max() + 1) + v[:, 1]) * (v[:, 2].max() + 1) + v[:, 2]
        first = np.sort(np.unique(key, return_index=True)[1])  # 1-D keys: 20x faster than axis=0
        idx, xyz, rgb = idx[first], xyz[first], rgb[first]
    return xyz, rgb, labels[idx].astype(np.int16)


def _surfaces(plan: RoomPlan, cfg: SynthConfig, rng):
    """Every sampled rectangle as ``origin + s u + t v`` for ``s, t`` in [0, 1].

    Returns ``origin, u, v (R, 3)``, ``labels (R,)`` (non-decreasing: floor, ceiling, walls, glass,
    boxes), ``colour (R, 3)`` (base colour + a tint drawn per instance) and ``ratio (R,)`` (density
    relative to ``cfg.density``).
    """
    lay = plan.layout
    height = lay.walls[0].height
    wall_rgb = WALL_COLOURS[rng.integers(len(WALL_COLOURS))]
    floor_rgb = FLOOR_COLOURS[rng.integers(len(FLOOR_COLOURS))]
    slabs = _slabs(plan.footprint)
    rects = [((x0, y0, 0.0), (x1 - x0, 0, 0), (0, y1 - y0, 0), FLOOR, floor_rgb, 1.0)
             for x0, y0, x1, y1 in slabs]
    if cfg.ceiling:
        rects += [((x0, y0, height), (x1 - x0, 0, 0), (0, y1 - y0, 0), CEILING, CEILING_COLOUR, 1.0)
                  for x0, y0, x1, y1 in slabs]
    for i, w in enumerate(lay.walls):
        rects.append(((w.ax, w.ay, 0.0), (w.bx - w.ax, w.by - w.ay, 0), (0, 0, height), WALL_BASE + i,
                      wall_rgb, 1.0))
    for j, win in enumerate(lay.windows):
        if rng.random() < 0.5:
            wall = lay.walls[win.wall_id]
            along = np.array([wall.bx - wall.ax, wall.by - wall.ay, 0.0])
            along *= win.width / np.linalg.norm(along)
            corner = np.array([win.x, win.y, win.z - win.height / 2]) - along / 2
            rects.append((corner, along, (0, 0, win.height), WINDOW_BASE + j, GLASS_COLOUR,
                          cfg.glass_ratio))
    for k, b in enumerate(lay.boxes):
        rects += _box_faces(b, BOX_BASE + k)
    origin, u, v, labels, colour, ratio = (np.array(c, dtype=np.float32) for c in zip(*rects))
    _, inverse = np.unique(labels, return_inverse=True)
    colour += rng.normal(0.0, 12.0, (inverse.max() + 1, 3))[inverse]
    return origin, u, v, labels.astype(np.int64), colour, ratio


def _slabs(footprint: np.ndarray) -> list[tuple[float, float, float, float]]:
    """The footprint cut at its corners' x into rectangles ``(x0, y0, x1, y1)`` (2 for an L)."""
    poly, xs = shapely.Polygon(footprint), np.unique(footprint[:, 0])
    (_, y_lo, _, y_hi), slabs = poly.bounds, []
    for x0, x1 in zip(xs[:-1], xs[1:]):
        cut = poly.intersection(shapely.LineString([((x0 + x1) / 2, y_lo), ((x0 + x1) / 2, y_hi)]))
        slabs.append((x0, cut.bounds[1], x1, cut.bounds[3]))
    return slabs


def _box_faces(box: Box, label: int) -> list:
    """The top and side faces of ``box`` as ``_surfaces`` rectangles (no back face if wall-backed)."""
    c, s = math.cos(box.angle_z), math.sin(box.angle_z)
    axes = np.array([(c, s, 0.0), (-s, c, 0.0), (0.0, 0.0, 1.0)])
    size = np.array([box.scale_x, box.scale_y, box.scale_z])
    centre = np.array([box.x, box.y, box.z])
    info = CATALOGUE[box.label]
    faces = _FACES[:4] if info.rule in WALL_BACKED else _FACES
    return [(centre + (np.array(signs) * size / 2) @ axes, axes[a] * size[a], axes[b] * size[b],
             label, info.colour, 1.0) for signs, a, b in faces]


def _visible(plan: RoomPlan, xyz: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mask ``(N,)`` of the points ``xyz (3, N)`` a scanner would see: no wall points in door or
    window openings, and no floor, ceiling or wall point inside a box grown by 2 cm (the floor under a
    bed, the wall behind a wardrobe). ``labels`` must be sorted, as ``_surfaces`` makes them."""
    lay, keep = plan.layout, np.ones(len(labels), bool)
    for op in (*lay.doors, *lay.windows):
        w = lay.walls[op.wall_id]
        on = slice(*np.searchsorted(labels, [WALL_BASE + op.wall_id, WALL_BASE + op.wall_id + 1]))
        ux, uy = np.array([w.bx - w.ax, w.by - w.ay]) / math.hypot(w.bx - w.ax, w.by - w.ay)
        t = (xyz[0, on] - op.x) * ux + (xyz[1, on] - op.y) * uy
        keep[on] &= (np.abs(t) >= op.width / 2) | (np.abs(xyz[2, on] - op.z) >= op.height / 2)
    shell = slice(0, np.searchsorted(labels, BOX_BASE))
    x, y, z = xyz[:, shell]
    for b in lay.boxes:
        c, s = math.cos(b.angle_z), math.sin(b.angle_z)
        dx, dy = x - np.float32(b.x), y - np.float32(b.y)
        keep[shell] &= ((np.abs(dx * c + dy * s) >= b.scale_x / 2 + 0.02)
                        | (np.abs(dy * c - dx * s) >= b.scale_y / 2 + 0.02)
                        | (np.abs(z - np.float32(b.z)) >= b.scale_z / 2 + 0.02))
    return keep
