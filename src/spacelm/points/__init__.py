"""Point clouds as plain numpy arrays: I/O, SpatialLM's preprocessing, augmentation and alignment.

No torch here. ``PointCloud`` holds ``xyz (N, 3) float32`` metres, optional ``rgb (N, 3) uint8`` and
``normals (N, 3) float32``, and any other per-point scalars in ``extra``.

- ``cloud``: ``PointCloud`` and ``rgb_to_uint8``.
- ``ply``: ``read_ply`` / ``write_ply`` / ``read_points`` (.ply, .npy, .bin) with errors naming the file.
- ``transforms``: ``positive_shift``, ``normalize_color``, ``grid_sample``, ``voxel_downsample``,
  ``remove_statistical_outliers``, ``sample_fixed_count``, ``augment``.
- ``align``: ``check_alignment`` (not z-up / not metric) and ``align_scan`` (level + wall yaw).
"""

from spacelm.points.align import align_scan, check_alignment  # noqa: F401
from spacelm.points.cloud import PointCloud, rgb_to_uint8  # noqa: F401
from spacelm.points.ply import PointFileError, read_ply, read_points, write_ply  # noqa: F401
from spacelm.points.transforms import (  # noqa: F401
    DEFAULT_GRID_SIZE,
    DEFAULT_NUM_BINS,
    WORLD_EXTENT,
    SceneExtentWarning,
    augment,
    grid_coords,
    grid_sample,
    grid_sample_coords,
    normalize_color,
    positive_shift,
    remove_statistical_outliers,
    sample_fixed_count,
    voxel_downsample,
)
