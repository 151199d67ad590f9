"""Images of a layout: named camera views of the room shell, class-coloured boxes and a point cloud.

- ``scene``: backend-independent parts: ``render()``, cameras and view framing, the room shell and
  the label palette.
- ``builtin``: the default backend, a Pillow rasteriser (painter's algorithm, a labelled plan).
"""

from spacelm.render.scene import PALETTE, VIEWS, Camera, label_color, render  # noqa: F401
