"""spacelm: spatial language models.

Importing ``spacelm`` gives the scene core only (no torch): ``Layout`` and its entities, the layout
language and quantisation. Heavier parts live in their own subpackages.
"""

from spacelm.scene import (  # noqa: F401
    Box,
    Door,
    Layout,
    Quantizer,
    Wall,
    Window,
    format_layout,
    parse_layout,
    read_layout,
    write_layout,
)

__version__ = "0.1.0"
