"""Vectorised geometry for scoring layouts: oriented 3D box IoU and IoU of vertical quads.

Conventions (those of ``entities``): z is up, units are metres, a box row is
``[x, y, z, angle_z, scale_x, scale_y, scale_z]`` with the *centre* of the box, yaw ``angle_z`` in
radians counter-clockwise about +z and *full* extents (``scale_x`` along the box's own x axis before
the yaw). Boxes only ever turn about z, so a 3D IoU is a footprint-polygon IoU times a z-interval
overlap, computed exactly.

Walls, doors and windows are scored as vertical rectangles ("quads"), ``(K, 4, 3) float64`` with
corners ordered ``(a, b, b + height, a + height)``: corner 0 -> 1 is the horizontal bottom edge, whose
direction is the quad's *direction*; corners 2 and 3 lie above 1 and 0.

Both IoUs have a ``compat`` switch that reproduces one bug of SpatialLM's ``eval.py`` each, so that
its published numbers can be matched; the default is the correct geometry.
"""

from __future__ import annotations

import numpy as np
import shapely

from spacelm.scene.layout import Layout

# Walls shorter than this in xy (metres) have no direction and are dropped, as SpatialLM drops walls
# with zero extent; the tolerance only absorbs float rounding.
MIN_WALL_LENGTH = 1e-6

# Box corners in the box frame, in half extents: the bottom face counter-clockwise seen from above
# (starting at -x, -y), then the top face in the same order.
_CORNER_SIGNS = np.array([[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1],
                          [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], dtype=np.float64)


def _as_boxes(boxes) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 7)


def box_corners(boxes) -> np.ndarray:
    """Corners of oriented boxes: ``(N, 7)`` rows -> ``(N, 8, 3) float64``.

    Corner order: the bottom face counter-clockwise seen from above, starting at the box's own
    (-x, -y) corner, then the top face in the same order.

    >>> box_corners([[0, 0, 0.5, 0, 2, 1, 1]])[0, [0, 6]].tolist()
    [[-1.0, -0.5, 0.0], [1.0, 0.5, 1.0]]
    """
    boxes = _as_boxes(boxes)
    local = _CORNER_SIGNS[None] * boxes[:, None, 4:7] / 2  # (N, 8, 3)
    c, s = np.cos(boxes[:, 3])[:, None], np.sin(boxes[:, 3])[:, None]
    x = c * local[..., 0] - s * local[..., 1]
    y = s * local[..., 0] + c * local[..., 1]
    return np.stack([x, y, local[..., 2]], axis=-1) + boxes[:, None, :3]


def box_iou_3d(a, b, *, compat: bool = False) -> np.ndarray:
    """Exact IoU of yaw-only oriented boxes: ``(N, 7), (M, 7)`` -> ``(N, M) float64`` in [0, 1].

    Intersection = area of the intersected footprint polygons x overlap of the z ranges; union =
    sum of the volumes minus it. Pairs whose axis-aligned xy bounds or z ranges cannot overlap are
    skipped with a numpy test, so only plausible pairs go to shapely (one vectorised call). Pairs
    with no volume at all score 0; results are clipped to [0, 1] against rounding.

    ``compat=True`` reproduces SpatialLM's ``eval.py`` (the ``bbox`` package it uses): the centre z
    is taken as the box *top*, so z spans ``[z - sz, z]``: each box moves down by half its height.
    Boxes of equal height keep their IoU, and so do pairs whose z ranges stay nested (same centre,
    or same bottom); stacked or offset boxes of different heights get a different one.
    """
    a, b = _as_boxes(a), _as_boxes(b)
    iou = np.zeros((len(a), len(b)))
    dz = _z_overlap(a, b, compat)
    i, j = np.nonzero((dz > 0) & _xy_bounds_overlap(a, b))
    if len(i) == 0:
        return iou
    footprint_a, footprint_b = _footprints(a), _footprints(b)
    inter = shapely.area(shapely.intersection(footprint_a[i], footprint_b[j])) * dz[i, j]
    volume_a, volume_b = a[:, 4:7].prod(axis=1), b[:, 4:7].prod(axis=1)
    union = volume_a[i] + volume_b[j] - inter
    ratio = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    iou[i, j] = np.clip(ratio, 0.0, 1.0)
    return iou


def _z_ranges(boxes: np.ndarray, compat: bool) -> tuple[np.ndarray, np.ndarray]:
    """Bottom and top of each box, ``(N,)`` each; compat reads the centre z as the top."""
    z, height = boxes[:, 2], boxes[:, 6]
    if compat:
        return z - height, z
    return z - height / 2, z + height / 2


def _z_overlap(a: np.ndarray, b: np.ndarray, compat: bool) -> np.ndarray:
    """Length of the overlap of the z ranges, ``(N, M)``, 0 where they are apart."""
    (lo_a, hi_a), (lo_b, hi_b) = _z_ranges(a, compat), _z_ranges(b, compat)
    return _interval_overlap(lo_a[:, None], hi_a[:, None], lo_b[None], hi_b[None])


def _xy_bounds_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M) bool``: whether the axis-aligned xy bounds of the rotated footprints overlap."""
    def half_extents(boxes):
        c, s = np.abs(np.cos(boxes[:, 3])), np.abs(np.sin(boxes[:, 3]))
        sx, sy = boxes[:, 4] / 2, boxes[:, 5] / 2
        return np.stack([c * sx + s * sy, s * sx + c * sy], axis=1)  # (N, 2)

    gap = np.abs(a[:, None, :2] - b[None, :, :2])
    reach = half_extents(a)[:, None] + half_extents(b)[None]
    return np.all(gap < reach, axis=-1)


def _footprints(boxes: np.ndarray) -> np.ndarray:
    """``(N,)`` object array of shapely polygons: the bottom face of each box."""
    return shapely.polygons(box_corners(boxes)[:, :4, :2])


def _interval_overlap(lo_a, hi_a, lo_b, hi_b) -> np.ndarray:
    return np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0.0, None)


def wall_quads(layout: Layout) -> np.ndarray:
    """Walls as vertical quads ``(K, 4, 3) float64``: ``(a, b, b + height, a + height)``.

    Walls shorter than ``MIN_WALL_LENGTH`` in xy are dropped (SpatialLM's evaluator drops them too:
    a wall without a direction has no plane), so K can be less than ``len(layout.walls)``.
    """
    walls = layout.wall_array()
    valid = _valid_walls(walls)
    a, b, height = walls[valid, 0:3], walls[valid, 3:6], walls[valid, 6]
    up = np.zeros_like(a)
    up[:, 2] = height
    return np.stack([a, b, b + up, a + up], axis=1)


def opening_quads(layout: Layout, kind: str) -> np.ndarray:
    """Doors (``kind="door"``) or windows (``kind="window"``) as vertical quads ``(K, 4, 3) float64``.

    Each quad is centred on the opening's centre, +- width / 2 along its host wall's direction
    (a -> b) and +- height / 2 vertically, in the order bottom-start, bottom-end, top-end, top-start.
    The centre is used as written, not snapped onto the wall. Openings whose ``wall_id`` does not
    name a wall of the layout (negative or out of range) or whose host wall is dropped by
    ``wall_quads`` are dropped, as in SpatialLM's evaluator.
    """
    openings = {"door": layout.doors, "window": layout.windows}.get(kind)
    if openings is None:
        raise ValueError(f"kind must be 'door' or 'window', got {kind!r}")
    walls = layout.wall_array()
    valid = _valid_walls(walls)
    kept = [o for o in openings if 0 <= o.wall_id < len(walls) and valid[o.wall_id]]
    rows = np.array([(o.wall_id, o.x, o.y, o.z, o.width, o.height) for o in kept],
                    dtype=np.float64).reshape(-1, 6)
    host = walls[rows[:, 0].astype(np.intp)]
    edge = host[:, 3:5] - host[:, 0:2]
    direction = edge / np.linalg.norm(edge, axis=1, keepdims=True)
    half_w = np.zeros((len(rows), 3))
    half_w[:, :2] = direction * rows[:, 4:5] / 2
    half_h = np.zeros((len(rows), 3))
    half_h[:, 2] = rows[:, 5] / 2
    centre = rows[:, 1:4]
    return np.stack([centre - half_w - half_h, centre + half_w - half_h,
                     centre + half_w + half_h, centre - half_w + half_h], axis=1)


def _valid_walls(walls: np.ndarray) -> np.ndarray:
    """``(N,) bool``: walls long enough in xy to have a direction."""
    return np.hypot(walls[:, 3] - walls[:, 0], walls[:, 4] - walls[:, 1]) >= MIN_WALL_LENGTH


def plane_iou(gt_quads, pred_quads, *, compat: bool = False, max_angle_deg: float = 5.0,
              max_offset: float = 0.2) -> np.ndarray:
    """IoU of vertical quads in the GT quad's plane: ``(N, 4, 3), (M, 4, 3)`` -> ``(N, M) float64``.

    A pair scores 0 unless the quads are parallel within ``max_angle_deg`` (``|sin|`` of the angle
    between their directions at most ``sin(max_angle_deg)``, so a quad facing the other way is
    parallel too) and the centre of the pred quad lies within ``max_offset`` metres of the GT plane.
    Otherwise the pred quad is projected onto the GT plane and the IoU is taken there. Both being
    vertical rectangles, that is exact with intervals: (overlap along the GT direction x overlap in
    z) / union, the pred area being its projected one. Quads are read as rectangles spanned by their
    extent along the direction and their z range, exact for walls with a horizontal bottom edge.

    The offset is signed along the GT normal ``n = z x d`` (``d`` the GT direction, corner 0 -> 1):
    seen from above, positive is to the left of a wall walked from a to b, negative to its right.
    ``compat=True`` reproduces SpatialLM's one-sided test: the signed offset, not its absolute
    value, is compared with ``max_offset``, so a parallel quad any distance on the negative side
    passes.
    """
    gt = np.asarray(gt_quads, dtype=np.float64).reshape(-1, 4, 3)
    pred = np.asarray(pred_quads, dtype=np.float64).reshape(-1, 4, 3)
    gt_dir, gt_len = _directions(gt)
    pred_dir, pred_len = _directions(pred)
    ok = _same_plane(gt, gt_dir, pred, pred_dir, compat, max_angle_deg, max_offset)
    ok &= (gt_len[:, None] > 0) & (pred_len[None] > 0)
    inter, union = _in_plane_overlap(gt, gt_dir, gt_len, pred)
    return np.divide(inter, union, out=np.zeros_like(inter), where=ok & (union > 0))


def _same_plane(gt, gt_dir, pred, pred_dir, compat, max_angle_deg, max_offset) -> np.ndarray:
    """``(N, M) bool``: parallel within ``max_angle_deg`` and pred centre near the GT plane."""
    sin = np.abs(gt_dir[:, None, 0] * pred_dir[None, :, 1] - gt_dir[:, None, 1] * pred_dir[None, :, 0])
    normal = np.stack([-gt_dir[:, 1], gt_dir[:, 0]], axis=1)  # z x d, (N, 2)
    to_centre = pred.mean(axis=1)[None, :, :2] - gt[:, None, 0, :2]  # (N, M, 2)
    offset = np.einsum("nmk,nk->nm", to_centre, normal)
    near = offset <= max_offset if compat else np.abs(offset) <= max_offset
    return near & (sin <= np.sin(np.radians(max_angle_deg)))


def _in_plane_overlap(gt, gt_dir, gt_len, pred) -> tuple[np.ndarray, np.ndarray]:
    """Intersection and union areas ``(N, M)`` of GT quads and pred quads projected onto them."""
    # Pred corners along the GT direction, measured from the GT's corner 0: (N, M, 4).
    gt_start = (gt[:, 0, :2] * gt_dir).sum(axis=1)
    along = np.einsum("mck,nk->nmc", pred[..., :2], gt_dir) - gt_start[:, None, None]
    lo, hi = along.min(axis=2), along.max(axis=2)
    (gt_z0, gt_z1), (pred_z0, pred_z1) = _z_span(gt), _z_span(pred)
    inter = (_interval_overlap(0.0, gt_len[:, None], lo, hi)
             * _interval_overlap(gt_z0[:, None], gt_z1[:, None], pred_z0[None], pred_z1[None]))
    gt_area = gt_len * (gt_z1 - gt_z0)
    pred_area = (hi - lo) * (pred_z1 - pred_z0)[None]
    return inter, gt_area[:, None] + pred_area - inter


def _directions(quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit xy direction of each quad's bottom edge ``(K, 2)``, 0 where it has no length ``(K,)``."""
    edge = quads[:, 1, :2] - quads[:, 0, :2]
    length = np.linalg.norm(edge, axis=1)
    unit = np.divide(edge, length[:, None], out=np.zeros_like(edge), where=length[:, None] > 0)
    return unit, length


def _z_span(quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return quads[..., 2].min(axis=1), quads[..., 2].max(axis=1)
