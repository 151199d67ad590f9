"""Point-cloud transforms as plain vectorised numpy functions (metres, z up).

These reproduce SpatialLM's preprocessing, step for step:

1. clean-up (inference only): ``voxel_downsample`` at the grid size, then
   ``remove_statistical_outliers(k=15, std_ratio=2.0)``; Open3D did this in SpatialLM;
2. ``positive_shift``: subtract the per-axis minimum (keep the offset to move the layout back);
3. ``normalize_color``: rgb / 127.5 - 1;
4. ``grid_sample``: one point per occupied voxel of ``32 / num_bins`` metres (2.5 cm at 1280 bins).

plus ``augment`` (training), ``sample_fixed_count``, and the input checks ``check_alignment`` /
``align_scan`` (scans that are not z-up or not metric are the most common source of garbage output).

Grid coordinates are never clipped: SpatialLM clips them at ``num_bins - 1``, which silently squashes
a scene larger than 32 m against its border. We warn instead (``SceneExtentWarning``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.spatial import cKDTree

from spacelm.scene.layout import Layout, rotate_z, scale

WORLD_EXTENT = 32.0  # metres: SpatialLM's position range (0-32 m) for wall corners and centres
DEFAULT_NUM_BINS = 1280  # SpatialLM v1.1; v1.0 used 640
DEFAULT_GRID_SIZE = WORLD_EXTENT / DEFAULT_NUM_BINS  # 0.025 m


class SceneExtentWarning(UserWarning):
    """A point cloud is larger than the range SpatialLM's layout positions can encode."""


def _points(xyz: np.ndarray) -> np.ndarray:
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) == 0:
        raise ValueError(f"expected points of shape (N, 3) with N >= 1, got {xyz.shape}")
    return xyz


def _column_min(a: np.ndarray) -> np.ndarray:
    # Column by column: numpy reduces an (N, 3) array along axis 0 about 20x slower.
    return np.array([a[:, i].min() for i in range(a.shape[1])])


def _column_max(a: np.ndarray) -> np.ndarray:
    return np.array([a[:, i].max() for i in range(a.shape[1])])


def positive_shift(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shift points so every coordinate is >= 0 (SpatialLM's ``PositiveShift``).

    Returns ``(shifted (N, 3), offset (3,) float64)``; ``offset`` is the per-axis minimum that was
    subtracted, so a layout predicted on the shifted cloud goes back with
    ``scene.layout.translate(layout, offset)``.

    >>> shifted, offset = positive_shift(np.array([[1.0, -2.0, 0.5], [3.0, 0.0, 1.5]]))
    >>> shifted.tolist(), offset.tolist()
    ([[0.0, 0.0, 0.0], [2.0, 2.0, 1.0]], [1.0, -2.0, 0.5])
    """
    xyz = _points(xyz)
    offset = _column_min(xyz)
    return xyz - offset, offset.astype(np.float64)


def normalize_color(rgb: np.ndarray) -> np.ndarray:
    """``(N, 3) uint8`` colours -> ``(N, 3) float32`` in [-1, 1] (SpatialLM's ``NormalizeColor``).

    >>> normalize_color(np.array([[0, 255, 51]], np.uint8)).tolist()
    [[-1.0, 1.0, -0.6000000238418579]]
    """
    # In float64 then rounded, as SpatialLM (which casts only at the encoder): float32 arithmetic is
    # 1 ulp off on 43 % of the values.
    return (np.asarray(rgb, dtype=np.float64) / 127.5 - 1.0).astype(np.float32)


def grid_coords(xyz: np.ndarray, grid_size: float = DEFAULT_GRID_SIZE, *,
                max_extent: float | None = WORLD_EXTENT) -> np.ndarray:
    """Integer voxel coordinates ``(N, 3) int64``: ``floor(xyz / grid_size)`` minus its minimum.

    Not clipped. Warns with ``SceneExtentWarning`` when the cloud spans more than ``max_extent``
    metres on some axis (SpatialLM's layout positions cover 0-32 m); ``None`` disables the check.
    """
    xyz = _points(xyz)
    if not grid_size > 0:
        raise ValueError(f"grid_size must be positive, got {grid_size}")
    # float64 as in SpatialLM, so a float32 point on a voxel boundary falls on the same side.
    coords = _cells(xyz, xyz.astype(np.float64) / grid_size, grid_size)
    coords -= _column_min(coords)
    if max_extent is not None:
        extent = _column_max(xyz) - _column_min(xyz)
        if (extent > max_extent).any():
            warnings.warn(
                f"point cloud spans {np.round(extent, 2).tolist()} m, more than the "
                f"{max_extent:g} m that layout positions can encode; grid coordinates are not "
                "clipped, so crop the cloud or split it into rooms", SceneExtentWarning,
                stacklevel=3)
    return coords


def _cells(xyz: np.ndarray, scaled: np.ndarray, grid_size: float) -> np.ndarray:
    """``floor(scaled)`` as ``(N, 3) int64``, refusing values the cast would wrap (to INT64_MIN)."""
    cells = np.floor(scaled)
    fits = np.abs(cells) < 2.0**62  # (N, 3); False for NaN; leaves room to subtract a minimum
    if not fits.all():
        bad = int(np.argmax(~fits.all(axis=1)))
        raise ValueError(f"point {bad} at {xyz[bad].tolist()} is not finite or too far from the "
                         f"origin for a {grid_size:g} m grid (at most {2.0**62 * grid_size:.3g})")
    return cells.astype(np.int64)


def _pack(coords: np.ndarray) -> np.ndarray:
    """One int64 key per row of non-negative integer coordinates ``(N, 3)`` (row-major ravel)."""
    dims = _column_max(coords) + 1
    if float(dims[0]) * float(dims[1]) * float(dims[2]) >= 2.0**63:
        raise ValueError(f"voxel grid of {dims.tolist()} cells is too large to index; "
                         "use a larger voxel")
    return (coords[:, 0] * dims[1] + coords[:, 1]) * dims[2] + coords[:, 2]


def _sorted_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, starts)``: a stable argsort of ``keys`` and where each run of equal keys begins.

    Stable, so the first point of a run is the lowest-index point with that key.
    """
    n = len(keys)
    shift = max(1, (n - 1).bit_length())
    if n and int(keys.max()) < 1 << (63 - shift):
        # Sorting the keys with each point's index in the low bits is stable, and measured twice as
        # fast as argsort on 1M keys (numpy's SIMD sort serves sort, not argsort).
        packed = np.sort((keys << shift) | np.arange(n))
        order, sorted_keys = packed & ((1 << shift) - 1), packed >> shift
    else:
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    return order, starts


def grid_sample(xyz: np.ndarray, grid_size: float = DEFAULT_GRID_SIZE, *, mode: str = "test",
                rng: np.random.Generator | None = None,
                max_extent: float | None = WORLD_EXTENT) -> np.ndarray:
    """Indices ``(M,) int64`` of one point per occupied voxel (SpatialLM's ``GridSample``).

    ``mode="test"``: the lowest-index point of each voxel (deterministic). ``mode="train"``: a
    uniformly random point of each voxel, drawn from ``rng``. Indices come in voxel order. The
    default voxel is 32 m / 1280 bins = 2.5 cm; use ``32 / 640`` for SpatialLM v1.0 checkpoints.

    >>> grid_sample(np.array([[0.0, 0, 0], [0.01, 0, 0], [0.03, 0, 0]])).tolist()
    [0, 2]
    """
    return grid_sample_coords(xyz, grid_size, mode=mode, rng=rng, max_extent=max_extent)[0]


def grid_sample_coords(xyz: np.ndarray, grid_size: float = DEFAULT_GRID_SIZE, *,
                       mode: str = "test", rng: np.random.Generator | None = None,
                       max_extent: float | None = WORLD_EXTENT) -> tuple[np.ndarray, np.ndarray]:
    """``grid_sample`` that also returns the kept points' grid coordinates ``(M, 3) int64``."""
    if mode not in ("test", "train"):
        raise ValueError(f"mode must be 'test' or 'train', got {mode!r}")
    coords = grid_coords(xyz, grid_size, max_extent=max_extent)
    order, starts = _sorted_groups(_pack(coords))
    if mode == "train":
        rng = np.random.default_rng() if rng is None else rng
        counts = np.diff(np.r_[starts, len(order)])
        starts = starts + (rng.random(len(starts)) * counts).astype(np.int64)
    index = order[starts]
    return index, coords[index]


def voxel_downsample(xyz: np.ndarray, rgb: np.ndarray | None,
                     voxel: float = DEFAULT_GRID_SIZE) -> tuple[np.ndarray, np.ndarray | None]:
    """Average the points (and colours) of each occupied voxel: Open3D's ``voxel_down_sample``.

    The grid starts half a voxel below the cloud's minimum, as Open3D's does, so the same cloud
    gives the same voxels. Returns ``(xyz (M, 3) float64, rgb (M, 3) uint8 or None)`` in voxel order.
    The means stay float64 like Open3D's: rounded to float32, a rare mean moves across a boundary
    of the later grid sample (1 voxel in 279k on the bench room). Colours are rounded means (Open3D
    averages floats in [0, 1] and SpatialLM then truncates).
    """
    xyz = _points(xyz)
    if voxel <= 0:
        raise ValueError(f"voxel must be positive, got {voxel}")
    origin = _column_min(xyz).astype(np.float64) - voxel / 2  # float64 keys, as Open3D's
    order, starts = _sorted_groups(_pack(_cells(xyz, (xyz - origin) / voxel, voxel)))
    counts = np.diff(np.r_[starts, len(order)])
    group = np.repeat(np.arange(len(starts)), counts)  # voxel number of each point, in sort order

    def means(values: np.ndarray) -> np.ndarray:
        sums = [np.bincount(group, weights=values[order, i], minlength=len(starts)) for i in range(3)]
        return np.stack(sums, axis=1) / counts[:, None]

    xyz_means = means(xyz)
    if rgb is None:
        return xyz_means, None
    return xyz_means, np.rint(means(rgb)).astype(np.uint8)


def remove_statistical_outliers(xyz: np.ndarray, k: int = 15,
                                std_ratio: float = 2.0) -> np.ndarray:
    """Keep mask ``(N,) bool`` of Open3D's ``remove_statistical_outlier(k, std_ratio)``.

    A point's score is its mean distance to its ``k`` nearest neighbours (itself included, as in
    Open3D); points scoring at or above ``mean + std_ratio * std`` of all scores (sample std) are
    outliers. One difference: a point whose ``k`` neighbours all coincide with it (score 0) is kept
    and counted in the statistics, where Open3D drops it; after ``voxel_downsample`` there are none.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    if len(xyz) < 3:
        return np.ones(len(xyz), dtype=bool)
    # An unbalanced, uncompacted tree builds 4x faster here and answers the same queries.
    tree = cKDTree(xyz, balanced_tree=False, compact_nodes=False)
    distances, _ = tree.query(xyz, k=min(k, len(xyz)), workers=-1)
    scores = distances.mean(axis=1)
    return scores < scores.mean() + std_ratio * scores.std(ddof=1)


def sample_fixed_count(n_points: int, count: int, *, method: str = "random",
                       rng: np.random.Generator | None = None,
                       xyz: np.ndarray | None = None) -> np.ndarray:
    """Indices ``(count,) int64`` that pick exactly ``count`` of ``n_points`` points.

    ``method="random"``: without replacement when ``count <= n_points``; otherwise every point once
    plus random repeats to pad up. ``method="fps"``: farthest point sampling of ``xyz`` with the
    ``fpsample`` package (bucketed kd-line variant: as good as exact FPS, ~40x faster), padded the
    same way. Both draw from ``rng``.

    >>> index = sample_fixed_count(3, 5, rng=np.random.default_rng(0))  # pad 3 points up to 5
    >>> len(index), sorted(set(index.tolist()))
    (5, [0, 1, 2])
    """
    if n_points < 1 or count < 0:
        raise ValueError(f"need n_points >= 1 and count >= 0, got {n_points} and {count}")
    rng = np.random.default_rng() if rng is None else rng
    if method == "random":
        chosen = rng.permutation(n_points)[:count]
    elif method == "fps":
        chosen = _farthest_points(xyz, n_points, min(count, n_points), rng)
    else:
        raise ValueError(f"method must be 'random' or 'fps', got {method!r}")
    padding = rng.integers(0, n_points, size=count - len(chosen))
    return np.concatenate([chosen, padding]).astype(np.int64)


def _farthest_points(xyz, n_points: int, count: int, rng: np.random.Generator) -> np.ndarray:
    try:
        import fpsample
    except ImportError:
        raise ImportError("method='fps' needs the fpsample package: pip install fpsample") from None
    if xyz is None or np.shape(xyz) != (n_points, 3):
        raise ValueError(f"method='fps' needs xyz of shape ({n_points}, 3)")
    if count == 0:
        return np.empty(0, dtype=np.int64)
    height = min(7, int(math.log2(n_points)))  # the kd-line tree needs 2**height <= n_points
    start = int(rng.integers(n_points))
    points = np.ascontiguousarray(xyz, dtype=np.float32)
    return fpsample.bucket_fps_kdline_sampling(points, count, h=height, start_idx=start).astype(
        np.int64)


def augment(xyz: np.ndarray, rgb: np.ndarray | None, layout: Layout | None, *,
            rng: np.random.Generator, rotate: str | None = "uniform",
            scale_range: tuple[float, float] | None = (0.75, 1.25), color_jitter: float = 0.0,
            ) -> tuple[np.ndarray, np.ndarray | None, Layout | None]:
    """Randomly rotate, scale and colour-jitter a cloud and its layout together (training).

    As in SpatialLM, the rotation is about the vertical axis through the centre of the cloud's
    bounding box: ``rotate="uniform"`` draws an angle in [0, 2 pi), ``"right_angles"`` one of 0, 90,
    180, 270 degrees, ``None`` skips it. Then everything is scaled about the origin by a factor drawn
    uniformly from ``scale_range`` (``None`` skips it). ``color_jitter`` is the std of per-point
    Gaussian colour noise as a fraction of 255 (Pointcept's ``ChromaticJitter``); 0 leaves colours.
    Returns ``(xyz (N, 3) float32, rgb (N, 3) uint8 or None, layout or None)``.
    """
    xyz = _points(xyz).astype(np.float64)
    centre = (_column_min(xyz) + _column_max(xyz)) / 2
    if rotate == "uniform":
        angle = rng.uniform(0.0, 2 * math.pi)
    elif rotate == "right_angles":
        angle = int(rng.integers(4)) * math.pi / 2
    elif rotate is None:
        angle = 0.0
    else:
        raise ValueError(f"rotate must be 'uniform', 'right_angles' or None, got {rotate!r}")
    factor = 1.0 if scale_range is None else rng.uniform(*scale_range)
    c, s = math.cos(angle), math.sin(angle)
    out = xyz.copy()
    dx, dy = xyz[:, 0] - centre[0], xyz[:, 1] - centre[1]
    out[:, 0] = centre[0] + c * dx - s * dy
    out[:, 1] = centre[1] + s * dx + c * dy
    out *= factor
    if layout is not None:
        layout = scale(rotate_z(layout, angle, centre[:2]), factor)
    if rgb is not None and color_jitter > 0:
        noise = rng.normal(0.0, color_jitter * 255.0, size=np.shape(rgb))
        rgb = np.rint(np.clip(rgb + noise, 0, 255)).astype(np.uint8)
    return out.astype(np.float32), rgb, layout
