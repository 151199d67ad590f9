"""Yaw-only boxes for converters: fitted to an object's points, or read from a source's OBB.

SpatialLM's ``Bbox`` turns only about z, so every source box must become (centre, yaw, extents).

``fit_yaw_box`` is VLA-3D's fit (``calculate_bbox_hull``): the minimum-area rectangle around the
points' xy convex hull, and z from min to max. The minimum-area rectangle has one side on a hull
edge (Freeman & Shapira 1975), so every edge direction is tried at once, as one ``(hull vertices x
edges)`` projection, instead of walking calipers in a loop.

``yaw_box_from_obb`` reads the annotated OBBs of ARKitScenes and 3RScan: ``centroid``,
``axesLengths`` (full lengths) and ``normalizedAxes`` (9 numbers; reshaped to 3x3 its *rows* are the
box axes, as ARKitScenes' ``compute_box_3d`` uses it). Such boxes are gravity-aligned, so one axis
is vertical and the yaw is read off another; a box tilted further than ``max_tilt_deg`` is replaced
by the yaw-only box fitted around its eight corners, which contains it.

A box's yaw is ambiguous by 90 degrees (swap the extents), so all boxes are returned in one
canonical form: yaw in [-pi/4, pi/4). Axis-aligned objects come out with yaw 0 and x/y extents.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from spacelm.scene.entities import Box

QUARTER = math.pi / 2


def canonical_yaw(yaw: float, size_x: float, size_y: float) -> tuple[float, float, float]:
    """The same rectangle with yaw in [-pi/4, pi/4): turning by 90 degrees swaps the extents.

    >>> canonical_yaw(math.pi / 2, 4.0, 1.0)
    (0.0, 1.0, 4.0)
    """
    turns = math.floor((yaw + math.pi / 4) / QUARTER)
    yaw = yaw - turns * QUARTER
    if turns % 2:
        size_x, size_y = size_y, size_x
    return float(yaw), float(size_x), float(size_y)


def min_area_rectangle(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Smallest rectangle around 2-D points: ``(centre (2,), (size_x, size_y), yaw)``.

    Degenerate input has a clear answer rather than an error: one distinct point gives a zero-size
    rectangle at it (yaw 0); collinear points give a zero-width rectangle along their line (the
    hull does not exist, so the line's direction comes from the points' principal axis). Raises
    ``ValueError`` for no points or non-finite coordinates.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) == 0:
        raise ValueError("cannot fit a rectangle to 0 points")
    if not np.isfinite(xy).all():
        raise ValueError("cannot fit a rectangle to points with NaN or infinite coordinates")
    origin = xy.mean(axis=0)  # centring keeps qhull and the projections precise far from 0
    local = xy - origin
    try:
        hull = local[ConvexHull(local).vertices]
    except QhullError:  # fewer than 3 points, or all on one line: no 2-D hull
        angle = _principal_angle(local)
    else:
        angle = _best_edge_angle(hull)
    centre, size = _rectangle_at(local, angle)
    yaw, size_x, size_y = canonical_yaw(angle, size[0], size[1])
    return centre + origin, np.array([size_x, size_y]), yaw


def _best_edge_angle(hull: np.ndarray) -> float:
    """Direction of the hull edge whose aligned bounding rectangle has the least area."""
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.arctan2(edges[:, 1], edges[:, 0]) % QUARTER
    cos, sin = np.cos(angles), np.sin(angles)
    along = hull[:, :1] * cos + hull[:, 1:] * sin  # (hull vertices, candidate angles)
    across = -hull[:, :1] * sin + hull[:, 1:] * cos
    area = np.ptp(along, axis=0) * np.ptp(across, axis=0)
    return float(angles[np.argmin(area)])


def _principal_angle(local: np.ndarray) -> float:
    if not np.any(local):
        return 0.0  # a single distinct point: every direction fits; choose the x axis
    direction = np.linalg.svd(local, full_matrices=False)[2][0]
    return float(math.atan2(direction[1], direction[0]))


def _rectangle_at(local: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre and (along, across) extents of the points' bounding rectangle rotated by ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    rotated = local @ np.array([[c, -s], [s, c]])  # columns: coordinates along / across the angle
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    mid = (low + high) / 2
    centre = np.array([mid[0] * c - mid[1] * s, mid[0] * s + mid[1] * c])
    return centre, high - low


def fit_yaw_box(xyz: np.ndarray, label: str = "") -> Box:
    """Yaw-only box around points ``(N, 3)``: minimum-area rectangle in xy, z from min to max.

    Degenerate point sets follow ``min_area_rectangle`` (zero extents, no error), so downstream
    size filters decide about them; ``ValueError`` for no points or non-finite coordinates.
    """
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    centre, size, yaw = min_area_rectangle(xyz[:, :2])
    z_low, z_high = float(xyz[:, 2].min()), float(xyz[:, 2].max())
    return Box(label, float(centre[0]), float(centre[1]), (z_low + z_high) / 2, yaw,
               float(size[0]), float(size[1]), z_high - z_low)


def obb_corners(centroid, axes_lengths, normalized_axes) -> np.ndarray:
    """The 8 corners ``(8, 3)`` of an OBB whose axes are the rows of ``normalized_axes`` (3x3)."""
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    axes = np.asarray(normalized_axes, dtype=np.float64).reshape(3, 3)
    return np.asarray(centroid, dtype=np.float64) + (signs * np.asarray(axes_lengths) / 2) @ axes


def yaw_box_from_obb(centroid, axes_lengths, normalized_axes, label: str = "", *,
                     max_tilt_deg: float = 1.0) -> tuple[Box, bool]:
    """A source OBB as a yaw-only box, and whether it was tilted (then: the fit around its corners).

    The vertical axis is the row with the largest z component; it need not be the third (ScanNet-
    style tools order axes by other rules). Rows are normalised first; ``ValueError`` if the
    numbers are not 3 + 3 + 9 finite values with non-negative lengths and non-zero axes.
    """
    centroid = np.asarray(centroid, dtype=np.float64).reshape(-1)
    lengths = np.asarray(axes_lengths, dtype=np.float64).reshape(-1)
    axes = np.asarray(normalized_axes, dtype=np.float64).reshape(-1)
    if centroid.shape != (3,) or lengths.shape != (3,) or axes.shape != (9,):
        raise ValueError(f"an OBB needs 3 centroid, 3 axesLengths and 9 normalizedAxes numbers, "
                         f"got {centroid.size}, {lengths.size} and {axes.size}")
    if not (np.isfinite(centroid).all() and np.isfinite(lengths).all() and np.isfinite(axes).all()):
        raise ValueError("OBB has NaN or infinite numbers")
    if (lengths < 0).any():
        raise ValueError(f"OBB has a negative axis length: {lengths.tolist()}")
    axes = axes.reshape(3, 3)
    norms = np.linalg.norm(axes, axis=1)
    if (norms < 1e-9).any():
        raise ValueError(f"OBB has a zero axis: {axes.tolist()}")
    axes = axes / norms[:, None]
    up = int(np.argmax(np.abs(axes[:, 2])))
    if math.degrees(math.acos(min(1.0, abs(axes[up, 2])))) > max_tilt_deg:
        return fit_yaw_box(obb_corners(centroid, lengths, axes), label), True
    first, second = (i for i in range(3) if i != up)
    yaw, size_x, size_y = canonical_yaw(math.atan2(axes[first, 1], axes[first, 0]),
                                        lengths[first], lengths[second])
    return Box(label, *(float(v) for v in centroid), yaw, size_x, size_y, float(lengths[up])), False
