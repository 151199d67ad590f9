"""Input checks and automatic alignment: z up, walls along x/y, metres.

SpatialLM was trained on scans that are z-up, roughly Manhattan-aligned to the x/y axes and metric;
given anything else it prints a plausible-looking but wrong layout without complaint. So we check
(``check_alignment``) and offer a fix (``align_scan``).

Both read the scan's plane orientations. Surface normals come from local PCA (the smallest
eigenvector of the covariance of each sample point's ``_NEIGHBOURS`` nearest neighbours) on the
cloud thinned to one point per cube of 1/100 of its largest extent, so the method depends on neither
units nor point density.
An indoor scan's planes fall into three orthogonal families (floor and ceiling, two wall
directions); "up" is the family nearest the current z axis, which assumes the scan is tilted by
less than 45 degrees (true for capture devices; convert y-up mesh exports first). The wall
direction is the peak of the horizontal normals' angles taken modulo 90 degrees.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from spacelm.points.transforms import grid_sample

MAX_TILT_DEG = 5.0  # how far "up" may lean from +z before check_alignment complains
ROOM_HEIGHT_RANGE = (2.0, 4.5)  # metres, floor to ceiling, for a plausible metric indoor scan
_NEIGHBOURS = 32  # enough that 1 cm scanner noise barely tilts a normal on the thinned cloud
_SAMPLES = 6000  # sample points whose normals are estimated
_THIN_DIVISIONS = 100  # thinning voxel = largest extent / this


def check_alignment(xyz: np.ndarray, *, seed: int = 0) -> list[str]:
    """Warnings (empty when fine) about a scan SpatialLM would misread: not z-up, or not metric.

    The height check measures floor to ceiling along the estimated up direction, from the 1st and
    99th percentiles (robust to stray points), and expects ``ROOM_HEIGHT_RANGE``.

    >>> rng = np.random.default_rng(0)
    >>> floor = np.c_[rng.uniform(0, 3, (3000, 2)), np.zeros(3000)]
    >>> check_alignment(np.r_[floor, floor + [0, 0, 0.3]])[0][:36]  # a 30 cm "room": centimetres?
    'floor-to-ceiling height is about 0.3'
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    normals = _plane_normals(xyz, seed)
    up = _up_direction(normals)
    problems = []
    tilt = math.degrees(math.acos(min(1.0, up[2])))
    if tilt > MAX_TILT_DEG:
        problems.append(f"the scan is not z-up: its floor and ceiling planes are tilted "
                        f"{tilt:.0f} degrees from horizontal; level it with align_scan")
    heights = xyz @ up
    height = float(np.percentile(heights, 99) - np.percentile(heights, 1))
    low, high = ROOM_HEIGHT_RANGE
    if height == 0:  # a floor-only scan, or every point at one height
        problems.append("the scan has no height (its points lie in one horizontal plane): "
                        "SpatialLM needs walls to predict a layout")
    elif not low <= height <= high:
        problems.append(f"floor-to-ceiling height is about {height:.3g}, outside {low}-{high} m: "
                        f"the scan may not be in metres (scale it by about {2.7 / height:.3g} "
                        "if the room is 2.7 m high)")
    return problems


def align_scan(xyz: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """A ``(4, 4) float64`` rotation about the origin that levels the scan and turns its walls to x/y.

    Apply it as ``xyz @ T[:3, :3].T``; map a layout predicted in the aligned frame back with the
    inverse. The yaw is the smallest turn (within +-45 degrees) that aligns the dominant wall
    direction with the x or y axis. Deterministic for a given ``seed``.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    normals = _plane_normals(xyz, seed)
    level = _rotation_between(_up_direction(normals), np.array([0.0, 0.0, 1.0]))
    yaw = _wall_angle(normals @ level.T)
    c, s = math.cos(-yaw), math.sin(-yaw)
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    transform = np.eye(4)
    transform[:3, :3] = turn @ level
    return transform


def _plane_normals(xyz: np.ndarray, seed: int) -> np.ndarray:
    """Unit normals ``(M, 3)`` of sample points that lie on locally planar surfaces."""
    if len(xyz) < _NEIGHBOURS:
        raise ValueError(f"need at least {_NEIGHBOURS} points to estimate orientation, "
                         f"got {len(xyz)}")
    extent = float((xyz.max(axis=0) - xyz.min(axis=0)).max())
    if extent == 0:
        raise ValueError("all points coincide; orientation is undefined")
    thin = xyz[grid_sample(xyz, extent / _THIN_DIVISIONS, max_extent=None)]
    rng = np.random.default_rng(seed)
    samples = thin[rng.choice(len(thin), min(_SAMPLES, len(thin)), replace=False)]
    _, neighbours = cKDTree(thin).query(samples, k=min(_NEIGHBOURS, len(thin)), workers=-1)
    patches = thin[neighbours]  # (M, K, 3)
    patches = patches - patches.mean(axis=1, keepdims=True)
    values, vectors = np.linalg.eigh(np.einsum("mki,mkj->mij", patches, patches))
    # Planar: the thinnest spread is small next to the middle one (a line or blob is not).
    planar = values[:, 0] < 0.05 * values[:, 1]
    if planar.sum() < 10:
        raise ValueError("found too few planar surfaces to estimate the scan's orientation")
    return vectors[planar, :, 0]


def _mode_direction(normals: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The axis (sign-free) among ``candidates`` that most normals lie within 10 degrees of, then
    moved to the mode by mean shift: the principal axis of the normals in a cone around it."""
    support = (np.abs(candidates @ normals.T) > math.cos(math.radians(10))).sum(axis=1)
    axis = candidates[np.argmax(support)]
    # Normals scatter by several degrees, so a cone much narrower than that would stay stuck near
    # the starting candidate; shift with a wide cone first, then a narrower one.
    for cone_deg in (10.0,) * 4 + (5.0,) * 4:
        near = normals[np.abs(normals @ axis) > math.cos(math.radians(cone_deg))]
        if len(near) >= 3:
            axis = np.linalg.eigh(near.T @ near)[1][:, -1]
    return axis


def _up_direction(normals: np.ndarray) -> np.ndarray:
    """The Manhattan axis nearest +z, as a unit vector with a positive z component."""
    candidates = normals[:: max(1, len(normals) // 400)]
    first = _mode_direction(normals, candidates)
    axes = [first]
    orthogonal = candidates[np.abs(candidates @ first) < math.sin(math.radians(10))]
    if len(orthogonal):
        second = _mode_direction(normals, orthogonal)
        second = second - (second @ first) * first  # re-orthogonalise after refinement
        second /= np.linalg.norm(second)
        axes += [second, np.cross(first, second)]
    up = max(axes, key=lambda a: abs(a[2]))
    return up if up[2] > 0 else -up


def _wall_angle(level_normals: np.ndarray) -> float:
    """Yaw (radians, in [-pi/4, pi/4)) of the dominant wall direction, modulo 90 degrees."""
    horizontal = level_normals[np.abs(level_normals[:, 2]) < math.sin(math.radians(15))]
    if len(horizontal) < 10:
        return 0.0  # no walls seen: nothing to align
    # Angles times 4 make directions 90 degrees apart coincide; find the peak, then refine it by
    # the circular mean of the angles within 5 degrees (20 in the quadrupled space).
    quad = 4 * np.arctan2(horizontal[:, 1], horizontal[:, 0])
    grid = np.radians(np.arange(0.0, 360.0, 2.0))
    score = np.exp(20 * (np.cos(quad[None, :] - grid[:, None]) - 1)).sum(axis=1)
    peak = grid[np.argmax(score)]
    offsets = np.angle(np.exp(1j * (quad - peak)))
    near = offsets[np.abs(offsets) < math.radians(20)]
    quad_angle = peak + float(np.angle(np.exp(1j * near).mean()))
    return (quad_angle / 4 + math.pi / 4) % (math.pi / 2) - math.pi / 4


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation ``(3, 3)`` taking unit vector ``a`` to unit vector ``b`` (Rodrigues)."""
    axis = np.cross(a, b)
    sin, cos = np.linalg.norm(axis), float(a @ b)
    if sin < 1e-12:  # already aligned (callers pass an "up" with positive z, never its opposite)
        return np.eye(3)
    k = axis / sin
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + sin * cross + (1 - cos) * cross @ cross
