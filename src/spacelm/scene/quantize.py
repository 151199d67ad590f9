"""Discretisation of metric layout values into the integer bins the language model writes.

Value ranges are SpatialLM's ``NORMALIZATION_PRESET`` so our integer text and theirs agree bin for
bin. Encoding is theirs too: ``bin = floor((v - lo) / (hi - lo) * num_bins)``, clipped to
``[0, num_bins - 1]``. Decoding differs on purpose: we return the *centre* of the bin, so the
round-trip error is at most half a bin; SpatialLM returns the bin's lower edge (a bias of half a bin,
1.25 cm for positions at 1280 bins). ``Quantizer(compat=True)`` decodes their way for comparisons.

Unlike SpatialLM we do not clip out-of-range values silently: ``encode`` raises by default (a room
larger than 32 m would otherwise be squashed against the border without a word).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spacelm.errors import ArgumentError, SpacelmError
from spacelm.scene.layout import Layout

# kind -> (low, high). Positions are relative to the point cloud's minimum corner (non-negative).
RANGES: dict[str, tuple[float, float]] = {
    "world": (0.0, 32.0),  # wall endpoints, door/window/box centres
    "height": (0.0, 25.6),  # wall height and thickness, door/window height
    "width": (0.0, 25.6),  # door/window width
    "scale": (0.0, 20.0),  # box extents
    "angle": (-6.2832, 6.2832),  # box yaw, radians (SpatialLM's literal, not 2*pi)
}

# Values this far outside a range are still rounding noise (e.g. -1e-7 after a shift), not overflow.
_TOLERANCE = 1e-6


class QuantizationError(SpacelmError, ValueError):
    """A value lies outside its quantisation range."""


@dataclass(frozen=True)
class Quantizer:
    """Encode metric values to bins and back.

    >>> q = Quantizer(num_bins=1280)
    >>> int(q.encode(1.0, "world"))
    40
    >>> float(q.decode(40, "world"))  # centre of bin 40: 1.0125 m
    1.0125
    """

    num_bins: int = 1280
    compat: bool = False  # decode to the bin's lower edge, as SpatialLM does

    def __post_init__(self) -> None:
        if not (isinstance(self.num_bins, (int, np.integer)) and self.num_bins > 0):
            raise ArgumentError(f"num_bins must be a positive integer, got {self.num_bins!r}")

    def bin_size(self, kind: str) -> float:
        lo, hi = _range(kind)
        return (hi - lo) / self.num_bins

    def encode(self, values, kind: str, *, clip: bool = False):
        """Metric value(s) -> integer bin(s). Raises ``QuantizationError`` outside the range unless ``clip``."""
        lo, hi = _range(kind)
        v = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(v)):
            raise QuantizationError(f"non-finite {kind} value in {v.ravel()[~np.isfinite(v.ravel())][:3]}")
        if not clip:
            bad = (v < lo - _TOLERANCE) | (v > hi + _TOLERANCE)
            if np.any(bad):
                first = float(v[bad].ravel()[0])
                raise QuantizationError(
                    f"{kind} value {first:.6g} is outside [{lo}, {hi}] "
                    f"(shift the scene to non-negative coordinates, or pass clip=True)")
        bins = np.floor((v - lo) / (hi - lo) * self.num_bins).astype(np.int64)
        bins = np.clip(bins, 0, self.num_bins - 1)
        return bins if bins.ndim else int(bins)

    def decode(self, bins, kind: str):
        """Integer bin(s) -> metric value(s): the bin centre (or lower edge when ``compat``)."""
        lo, hi = _range(kind)
        offset = 0.0 if self.compat else 0.5
        if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
            # One bin (the parser's case): plain floats, the same IEEE operations as below but
            # without numpy's per-call overhead (integer layout text parses 4-7x faster;
            # bench/bench_text_parsers.py).
            if not 0 <= bins <= self.num_bins - 1:
                raise QuantizationError(f"{kind} bin outside [0, {self.num_bins - 1}]: {bins}")
            return lo + (float(bins) + offset) * (hi - lo) / self.num_bins
        b = np.asarray(bins, dtype=np.float64)
        if np.any((b < 0) | (b > self.num_bins - 1)):
            raise QuantizationError(f"{kind} bin outside [0, {self.num_bins - 1}]: {b.ravel()[:3]}")
        values = lo + (b + offset) * (hi - lo) / self.num_bins
        return values if values.ndim else float(values)


def _range(kind: str) -> tuple[float, float]:
    try:
        return RANGES[kind]
    except KeyError:
        raise ValueError(f"unknown quantisation kind {kind!r}; known: {sorted(RANGES)}") from None


def quantize_layout(layout: Layout, quantizer: Quantizer, *, clip: bool = False) -> Layout:
    """Snap every numeric field to its decoded bin value: what survives a trip through integer text."""
    def snap(entity):
        values = [getattr(entity, name) if kind in ("label", "wall_ref")
                  else quantizer.decode(quantizer.encode(getattr(entity, name), kind, clip=clip), kind)
                  for name, kind in type(entity).FIELDS]
        return type(entity)(*values)

    return Layout(*([snap(e) for e in group]
                    for group in (layout.walls, layout.doors, layout.windows, layout.boxes)))
