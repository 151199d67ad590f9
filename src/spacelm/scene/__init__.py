"""The scene core shared by both halves of spacelm: pure Python + numpy, no torch.

- ``entities``: Wall, Door, Window, Box (metres, z up) and their field tables.
- ``layout``: the immutable ``Layout`` and pure transforms (translate, rotate, canonical order).
- ``language``: SpatialLM's text format, writer and lenient/strict parser.
- ``quantize``: metric <-> integer bins with SpatialLM's ranges.
- ``geometry`` / ``metrics``: oriented IoUs and SpatialLM-compatible F1.
- ``categories``: NYU40, ScanNet-18 and SpatialLM label sets and mappings.
"""

from spacelm.scene.entities import ENTITY_TYPES, Box, Door, Wall, Window  # noqa: F401
from spacelm.scene.language import (  # noqa: F401
    Diagnostic,
    LayoutParseError,
    ParseResult,
    format_layout,
    parse_layout,
    read_layout,
    write_layout,
)
from spacelm.scene.layout import (  # noqa: F401
    Layout,
    canonical_order,
    fold_box_yaws,
    fold_yaw,
    rotate_z,
    scale,
    translate,
)
from spacelm.scene.quantize import RANGES, QuantizationError, Quantizer, quantize_layout  # noqa: F401
