"""Images of a layout: named camera views of the room shell, class-coloured boxes and a point cloud.

- ``images``: ``render()``, which frames the views and hands them to a backend.
- ``scene``: backend-independent parts: cameras and view framing, the room shell and the label palette.
- ``builtin``: the default backend, a Pillow rasteriser (painter's algorithm, a labelled plan).
- ``blender``: Blender's workbench or cycles in a persistent worker process (``blender_worker``).
"""

from spacelm.render.images import render  # noqa: F401
from spacelm.render.scene import PALETTE, VIEWS, Camera, label_color  # noqa: F401
