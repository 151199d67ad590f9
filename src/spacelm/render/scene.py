"""What a render shows, independent of the backend: room shell, colours and named cameras.

Every backend (``builtin``, the Pillow rasteriser, and ``blender``) gets the same ``Shell`` and the same
``Camera`` for a view name, so images of one layout line up across backends; ``spacelm.render.images``
chooses the backend.

Conventions: world z up, metres (as ``spacelm.scene``). A ``Camera`` looks from ``eye`` at ``target``;
its image axes are u to the right and v down, in continuous pixel coordinates with (0, 0) the
top-left corner of the image, so pixel ``(i, j)`` covers ``[i, i + 1) x [j, j + 1)``.

Views:
- ``"corner_0"`` .. ``"corner_3"``: perspective views from outside the room's bounding box, beyond
  its corner (x_min, y_min), (x_max, y_min), (x_max, y_max), (x_min, y_max) respectively (counter-
  clockwise seen from above), 35 degrees above the horizontal, looking at the box's centre and
  pulled back until the whole bounding box fits the frame.
- ``"corner"``: ``"corner_1"``, the (+x, -y, +z) side that Blender's factory camera, and so
  MetaSpatial's renders, look from.
- ``"top"``: an orthographic plan seen from above, +x to the right and +y up in the image.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely

from spacelm.scene.geometry import (
    MIN_WALL_LENGTH,
    box_corners,
    opening_quads,
    wall_quads,
)
from spacelm.scene.layout import Layout

Color = tuple[int, int, int]

# Box colours: 16 well-separated colours. A label's colour is PALETTE[crc32(label) % 16], a fixed
# hash, so one label gets one colour in every run, view and backend; two labels can share a colour.
PALETTE: tuple[Color, ...] = (
    (214, 39, 40), (31, 119, 180), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (188, 189, 34), (23, 190, 207), (255, 187, 120), (152, 223, 138),
    (174, 199, 232), (197, 176, 213), (196, 156, 148), (247, 182, 210), (219, 219, 141),
)
BACKGROUND: Color = (58, 62, 70)
FLOOR: Color = (205, 200, 190)
WALL: Color = (232, 230, 225)
DOOR: Color = (150, 100, 60)
WINDOW: Color = (120, 180, 225)
POINT: Color = (150, 150, 150)  # points without colours

# The 12 edges of a box as pairs of ``geometry.box_corners`` indices: bottom, top, then uprights.
BOX_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4],
                      [0, 4], [1, 5], [2, 6], [3, 7]])

CORNER_VIEWS = ("corner_0", "corner_1", "corner_2", "corner_3")
VIEWS = ("corner", *CORNER_VIEWS, "top")
DEFAULT_CORNER = "corner_1"
FOV_DEG = 50.0  # vertical field of view of the corner views
ELEVATION_DEG = 35.0  # corner cameras look down at this angle
MARGIN = 0.05  # fraction of the image kept free on each side when framing
NEAR = 1e-3  # metres: geometry closer to (or behind) a perspective camera is not drawn


def label_color(label: str, colors: Mapping[str, Color] | None = None) -> Color:
    """The RGB colour of a box label: ``colors[label]`` if given there, else the fixed palette.

    >>> label_color("sofa") == label_color("sofa"), label_color("x", {"x": (1, 2, 3)})
    (True, (1, 2, 3))
    """
    if colors is not None and label in colors:
        return tuple(int(v) for v in colors[label])
    return PALETTE[zlib.crc32(label.encode("utf-8")) % len(PALETTE)]


@dataclass(frozen=True)
class Camera:
    """A pinhole (``fov_deg`` set) or orthographic (``fov_deg=None``) camera, world metres, z up.

    ``fov_deg`` is the vertical field of view; an orthographic camera's image spans ``ortho_height``
    metres vertically. ``size`` is ``(width, height)`` in pixels; the principal point is the image
    centre. A Blender backend sets its camera from ``eye``, ``target``, ``up`` and ``fov_deg``.
    """

    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float]
    size: tuple[int, int]
    fov_deg: float | None = FOV_DEG
    ortho_height: float | None = None

    @cached_property
    def rotation(self) -> np.ndarray:
        """``(3, 3)`` world -> camera; rows are the camera's right (u), down (v) and forward axes."""
        rotation = _look_at(np.array(self.eye, float), np.array(self.target, float),
                            np.array(self.up, float))
        rotation.flags.writeable = False  # cached: shared by every caller
        return rotation

    def project(self, points) -> tuple[np.ndarray, np.ndarray]:
        """World points ``(..., 3)`` -> pixel coordinates ``(..., 2)`` and depth ``(..., )`` (metres).

        Depth is measured along the viewing direction; perspective pixels are NaN at depth <= NEAR.
        """
        points = np.asarray(points, dtype=np.float64)
        offset = points.reshape(-1, 3) - np.array(self.eye)
        # Three broadcasts instead of ``offset @ R.T``: a 3-column matmul gains nothing from BLAS,
        # whose threads can stall for 100 ms on a busy machine.
        rotation = self.rotation
        cam = sum(offset[:, k:k + 1] * rotation[:, k] for k in range(3))  # (N, 3)
        width, height = self.size
        centre = np.array([width / 2, height / 2])
        depth = cam[:, 2]
        if self.fov_deg is None:
            uv = cam[:, :2] * (height / self.ortho_height) + centre
        else:
            focal = height / 2 / math.tan(math.radians(self.fov_deg) / 2)  # pixels
            safe = np.where(depth > NEAR, depth, np.nan)
            uv = cam[:, :2] / safe[:, None] * focal + centre
        return uv.reshape(*points.shape[:-1], 2), depth.reshape(points.shape[:-1])


def _look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(forward, right), forward])


@dataclass(frozen=True)
class Shell:
    """The room's surfaces, as every backend draws them.

    ``floor``: ``(K, 3)`` polygon at floor height, empty ``(0, 3)`` without a room. ``walls``,
    ``doors``, ``windows``: vertical quads ``(N, 4, 3)`` ordered as ``geometry.wall_quads``, with
    unit horizontal normals ``(N, 3)`` pointing into the room (``*_inward``) so that a backend can
    hide the walls between the camera and the room. ``wall_thickness``: ``(N,)`` metres (0 unknown).
    """

    floor: np.ndarray
    walls: np.ndarray
    walls_inward: np.ndarray
    wall_thickness: np.ndarray
    doors: np.ndarray
    doors_inward: np.ndarray
    windows: np.ndarray
    windows_inward: np.ndarray


def room_shell(layout: Layout, room_size=None) -> Shell:
    """The room shell from the layout's walls, else from ``room_size=(L, W, H)`` metres, else empty.

    ``room_size`` is a box room ``[0, L] x [0, W] x [0, H]`` with four walls and no openings; it is
    ignored when the layout has walls. The floor is the polygon the walls enclose (snapped to 5 mm so
    slightly open corners still close), or their convex hull if they enclose none.
    """
    if layout.walls:
        walls = wall_quads(layout)
        thickness = layout.wall_array()[:, 7][_valid_wall_mask(layout)]
        floor = _floor_polygon(walls)
        doors, windows = opening_quads(layout, "door"), opening_quads(layout, "window")
    elif room_size is not None:
        length, width, height = (float(v) for v in room_size)
        floor = np.array([[0, 0, 0], [length, 0, 0], [length, width, 0], [0, width, 0]], float)
        walls = np.stack([np.stack([a, b, b + [0, 0, height], a + [0, 0, height]])
                          for a, b in zip(floor, np.roll(floor, -1, axis=0))])
        thickness = np.zeros(4)
        doors = windows = np.zeros((0, 4, 3))
    else:
        floor, walls, thickness = np.zeros((0, 3)), np.zeros((0, 4, 3)), np.zeros(0)
        doors = windows = np.zeros((0, 4, 3))
    return Shell(floor, walls, _inward_normals(walls, floor), thickness,
                 doors, _inward_normals(doors, floor), windows, _inward_normals(windows, floor))


def _valid_wall_mask(layout: Layout) -> np.ndarray:
    """Which walls ``wall_quads`` keeps (those with an xy length), to keep thickness aligned."""
    walls = layout.wall_array()
    return np.hypot(walls[:, 3] - walls[:, 0], walls[:, 4] - walls[:, 1]) >= MIN_WALL_LENGTH


def _floor_polygon(walls: np.ndarray) -> np.ndarray:
    """``(K, 3)`` floor outline at the lowest wall bottom: the largest area the walls enclose."""
    if len(walls) == 0:
        return np.zeros((0, 3))
    lines = shapely.set_precision(shapely.linestrings(walls[:, :2, :2]), 0.005)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(shapely.union_all(lines))))
    area = shapely.union_all(faces) if len(faces) else shapely.Polygon()
    if area.is_empty or area.area <= 0:
        area = shapely.convex_hull(shapely.multipoints(walls[:, :2, :2].reshape(-1, 2)))
    if area.geom_type == "MultiPolygon":
        area = max(area.geoms, key=lambda g: g.area)
    if area.geom_type != "Polygon":  # collinear walls enclose nothing
        return np.zeros((0, 3))
    xy = np.asarray(area.exterior.coords)[:-1]
    return np.column_stack([xy, np.full(len(xy), walls[:, :, 2].min())])


def _inward_normals(quads: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Unit horizontal normals ``(N, 3)`` of vertical quads, on the side where the floor is.

    The side is tested 5 cm off each quad's bottom midpoint, which works for non-convex rooms; a
    quad with the floor on neither (or both) sides faces the floor's centroid instead.
    """
    edge = quads[:, 1, :2] - quads[:, 0, :2]
    length = np.maximum(np.linalg.norm(edge, axis=1, keepdims=True), 1e-12)
    normal = np.column_stack([-edge[:, 1], edge[:, 0]]) / length  # left of a -> b
    if len(quads) == 0 or len(floor) < 3:
        return np.column_stack([normal, np.zeros(len(quads))])
    middle = quads[:, :2, :2].mean(axis=1)
    polygon = shapely.Polygon(floor[:, :2])
    left = shapely.contains_xy(polygon, *(middle + 0.05 * normal).T)
    right = shapely.contains_xy(polygon, *(middle - 0.05 * normal).T)
    towards_centre = ((floor[:, :2].mean(axis=0) - middle) * normal).sum(axis=1) >= 0
    flip = np.where(left != right, right, ~towards_centre)
    normal[flip] *= -1
    return np.column_stack([normal, np.zeros(len(quads))])


def scene_bounds(shell: Shell, layout: Layout) -> np.ndarray:
    """``(2, 3)`` min and max corner of everything drawn (shell and boxes), metres."""
    parts = [shell.floor, shell.walls.reshape(-1, 3), box_corners(layout.box_array()).reshape(-1, 3)]
    points = np.concatenate(parts)
    if len(points) == 0:
        raise ValueError("nothing to render: the layout has no walls and no boxes, and no room_size")
    return np.stack([points.min(axis=0), points.max(axis=0)])


def view_cameras(bounds: np.ndarray, views, size: tuple[int, int]) -> dict[str, Camera]:
    """The camera of each named view (see the module docstring), framed to fit ``bounds``."""
    cameras = {}
    for name in views:
        if name == "top":
            cameras[name] = top_camera(bounds, size)
        elif name in VIEWS:
            corner = CORNER_VIEWS.index(DEFAULT_CORNER if name == "corner" else name)
            cameras[name] = corner_camera(bounds, corner, size)
        else:
            raise ValueError(f"unknown view {name!r}; expected one of {VIEWS}")
    return cameras


def corner_camera(bounds: np.ndarray, corner: int, size: tuple[int, int],
                  fov_deg: float = FOV_DEG, elevation_deg: float = ELEVATION_DEG) -> Camera:
    """Perspective camera beyond bounding-box corner ``corner`` (0-3), fitted to the whole box.

    The direction is fixed (from the centre through the corner in xy, ``elevation_deg`` up); the
    distance is the smallest that keeps all 8 bounding-box corners inside the frame minus MARGIN,
    solved exactly per corner: ``|x| <= tan(half fov) * (z + d)`` in camera coordinates.
    """
    lo, hi = bounds
    centre = (lo + hi) / 2
    corner_xy = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])[corner]
    out = corner_xy - centre[:2]
    out = out / np.linalg.norm(out) if np.linalg.norm(out) > 0 else np.array([1.0, -1.0]) / 2**0.5
    elevation = math.radians(elevation_deg)
    back = np.array([*(out * math.cos(elevation)), math.sin(elevation)])  # target -> eye, unit
    rotation = _look_at(centre + back, centre, np.array([0.0, 0.0, 1.0]))
    width, height = size
    tan_y = math.tan(math.radians(fov_deg) / 2) * (1 - 2 * MARGIN)
    tan_x = math.tan(math.radians(fov_deg) / 2) * width / height * (1 - 2 * MARGIN)
    box = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    cam = (box - centre) @ rotation.T  # relative to the target; the eye sits at depth -distance
    need = np.maximum(np.abs(cam[:, 0]) / tan_x, np.abs(cam[:, 1]) / tan_y) - cam[:, 2]
    distance = max(float(need.max()), float(-cam[:, 2].min()) + 0.1, 0.5)
    eye = centre + distance * back
    return Camera(tuple(eye), tuple(centre), (0.0, 0.0, 1.0), size, fov_deg)


def top_camera(bounds: np.ndarray, size: tuple[int, int]) -> Camera:
    """Orthographic camera straight down on the bounds, +y up in the image, fitted with MARGIN."""
    lo, hi = bounds
    centre = (lo + hi) / 2
    width, height = size
    extent = np.maximum(hi[:2] - lo[:2], 0.1)
    pixels_per_metre = min(width / extent[0], height / extent[1]) * (1 - 2 * MARGIN)
    eye = (centre[0], centre[1], hi[2] + 1.0)
    return Camera(eye, (centre[0], centre[1], lo[2]), (0.0, 1.0, 0.0), size, None,
                  height / pixels_per_metre)
