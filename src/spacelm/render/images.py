"""``render()``: images of a layout from the chosen backend.

It lives apart from ``scene`` (what every backend draws) so that the backends import ``scene`` and
this module imports them: the imports run one way, ``images -> builtin, blender -> scene``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from spacelm.render.blender import ENGINES, render_blender
from spacelm.render.scene import Color, room_shell, scene_bounds, view_cameras
from spacelm.scene.layout import Layout

BACKENDS = ("builtin", "blender")


def render(layout: Layout, *, views=("corner", "top"), size=(512, 512), room_size=None,
           points=None, backend: str = "builtin", colors: Mapping[str, Color] | None = None,
           engine: str = "workbench", bounds=None) -> dict:
    """Render ``layout`` to one RGB ``PIL.Image.Image`` per named view: ``{view: image}``.

    ``size`` is ``(width, height)`` pixels. ``room_size=(L, W, H)`` metres gives a box room when the
    layout has no walls. ``points``: a ``PointCloud`` (``xyz`` metres, optional ``rgb``) or an
    ``(N, 3)`` array, drawn with the layout; boxes are then drawn as outlines so the scan shows.
    ``colors`` overrides the palette colour of some labels (see ``label_color``).
    ``bounds`` (``(2, 3)`` min and max corner, metres) frames the views instead of the scene's own
    extent, so images of two layouts share one scale (ground truth beside a prediction).
    ``backend="blender"`` renders with Blender's ``engine`` (``"workbench"`` or ``"cycles"``) in a
    worker process kept for the session (``spacelm.render.blender``; set up with ``make blender``).

    >>> from spacelm.scene import Box
    >>> images = render(Layout(boxes=[Box("bed", 1, 1, 0.25, 0, 2, 1.5, 0.5)]), room_size=(4, 3, 2.5))
    >>> sorted(images), images["top"].size
    (['corner', 'top'], (512, 512))
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    width, height = (int(v) for v in size)
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive (width, height) pixels, got {size}")
    shell = room_shell(layout, room_size)
    views = (views,) if isinstance(views, str) else views
    frame = scene_bounds(shell, layout) if bounds is None else np.asarray(bounds, dtype=np.float64)
    cameras = view_cameras(frame, views, (width, height))
    xyz, rgb = _point_arrays(points)
    if backend == "blender":  # its worker process starts on the first call
        return render_blender(shell, layout, cameras, xyz, rgb, colors, engine=engine)
    from spacelm.render import builtin  # Pillow is only needed by this backend

    return {name: builtin.draw_view(camera, shell, layout, xyz, rgb, colors)
            for name, camera in cameras.items()}


def _point_arrays(points) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(N, 3) float64`` positions and ``(N, 3) uint8`` colours (or None) of a cloud or an array."""
    if points is None:
        return None, None
    xyz = np.asarray(getattr(points, "xyz", points), dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"points must be a PointCloud or an (N, 3) array, got shape {xyz.shape}")
    rgb = getattr(points, "rgb", None)
    if rgb is not None and np.shape(rgb) != xyz.shape:
        raise ValueError(f"point colours must have shape {xyz.shape}, got {np.shape(rgb)}")
    return xyz, None if rgb is None else np.asarray(rgb, dtype=np.uint8)
