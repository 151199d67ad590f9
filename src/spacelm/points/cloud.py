"""``PointCloud``: a point cloud as plain arrays, with the colour conventions used everywhere.

``xyz`` in metres, ``(N, 3) float32``; ``rgb`` ``(N, 3) uint8`` in 0-255; ``normals``
``(N, 3) float32``; every other per-point scalar (labels, intensity, alpha, ...) in ``extra`` as an
``(N,)`` array of its own dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PointCloud:
    """An immutable point cloud; arrays are converted to the documented dtypes on construction.

    >>> cloud = PointCloud(np.zeros((2, 3)), rgb=np.full((2, 3), 255, np.uint8))
    >>> len(cloud), cloud.xyz.dtype.name
    (2, 'float32')
    """

    xyz: np.ndarray  # (N, 3) float32, metres
    rgb: np.ndarray | None = None  # (N, 3) uint8
    normals: np.ndarray | None = None  # (N, 3) float32
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N,)

    def __post_init__(self) -> None:
        xyz = np.ascontiguousarray(self.xyz, dtype=np.float32)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise ValueError(f"xyz must have shape (N, 3), got {xyz.shape}")
        n = len(xyz)
        object.__setattr__(self, "xyz", xyz)
        if self.rgb is not None:
            rgb = np.asarray(self.rgb)
            if rgb.dtype != np.uint8 or rgb.shape != (n, 3):
                raise ValueError(f"rgb must be ({n}, 3) uint8, got {rgb.shape} {rgb.dtype} "
                                 "(convert float colours with rgb_to_uint8)")
            object.__setattr__(self, "rgb", np.ascontiguousarray(rgb))
        if self.normals is not None:
            normals = np.ascontiguousarray(self.normals, dtype=np.float32)
            if normals.shape != (n, 3):
                raise ValueError(f"normals must have shape ({n}, 3), got {normals.shape}")
            object.__setattr__(self, "normals", normals)
        extra = {name: np.ascontiguousarray(values) for name, values in self.extra.items()}
        for name, values in extra.items():
            if values.shape != (n,):
                raise ValueError(f"extra property {name!r} must have shape ({n},), "
                                 f"got {values.shape}")
        object.__setattr__(self, "extra", extra)

    def __len__(self) -> int:
        return len(self.xyz)

    def select(self, index: np.ndarray) -> PointCloud:
        """The points picked by ``index`` (integer indices or a boolean mask), every array alike."""
        return PointCloud(
            self.xyz[index],
            None if self.rgb is None else self.rgb[index],
            None if self.normals is None else self.normals[index],
            {name: values[index] for name, values in self.extra.items()},
        )


def rgb_to_uint8(colors: np.ndarray) -> np.ndarray:
    """Colours ``(N, 3)`` of any numeric dtype -> ``(N, 3) uint8``.

    Floats whose maximum is at most 1 are taken as [0, 1] and scaled by 255; larger floats as
    0-255. Both are rounded to the nearest integer (NaN becomes 0). Integers must lie in 0-255.

    >>> rgb_to_uint8(np.array([[0.0, 0.5, 1.0]])).tolist()
    [[0, 128, 255]]
    """
    colors = np.asarray(colors)
    if colors.dtype.kind in "ui":
        if colors.size and (colors.min() < 0 or colors.max() > 255):
            raise ValueError(f"integer colours must lie in 0-255, found {colors.min()}-"
                             f"{colors.max()}")
        return colors.astype(np.uint8)
    colors = np.nan_to_num(colors.astype(np.float64), nan=0.0)
    if colors.size and colors.max() <= 1.0 + 1e-6:
        colors = colors * 255.0
    return np.rint(np.clip(colors, 0.0, 255.0)).astype(np.uint8)
