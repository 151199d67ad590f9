import math

import numpy as np
import pytest

pytest.importorskip("PIL")

from spacelm.render import PALETTE, label_color, render
from spacelm.render.builtin import draw_order
from spacelm.render.scene import (
    BACKGROUND,
    FLOOR,
    room_shell,
    scene_bounds,
    view_cameras,
)
from spacelm.scene import Box, Door, Layout, Wall, Window
from spacelm.scene.geometry import box_corners

RED = (220, 20, 20)
COLORS = {"red_box": RED, "blue_box": (20, 20, 220)}
# A 4 x 3 x 2.5 m room with a red box near (+x, -y) and a blue one near (-x, +y).
WALLS = [Wall(0, 0, 0, 4, 0, 0, 2.5, 0.1), Wall(4, 0, 0, 4, 3, 0, 2.5, 0.1),
         Wall(4, 3, 0, 0, 3, 0, 2.5, 0.1), Wall(0, 3, 0, 0, 0, 0, 2.5, 0.1)]
BOXES = [Box("red_box", 3.0, 0.75, 0.4, 0.3, 0.8, 0.6, 0.8),
         Box("blue_box", 1.0, 2.2, 0.5, 0.0, 1.0, 0.8, 1.0)]
LAYOUT = Layout(walls=WALLS, doors=[Door(0, 1.5, 0, 1.0, 0.9, 2.0)],
                windows=[Window(2, 2.0, 3, 1.5, 1.2, 1.0)], boxes=BOXES)


def pixel(image, uv):
    return image.getpixel((int(uv[0]), int(uv[1])))


def is_red(rgb) -> bool:
    r, g, b = rgb
    return r > 100 and r > 3 * g and r > 3 * b


def cameras(layout, views, size=(512, 512), room_size=None):
    shell = room_shell(layout, room_size)
    return view_cameras(scene_bounds(shell, layout), views, size)


def test_default_views_and_size():
    images = render(LAYOUT, size=(320, 240), colors=COLORS)
    assert sorted(images) == ["corner", "top"]
    assert all(image.size == (320, 240) and image.mode == "RGB" for image in images.values())


def test_red_box_centre_is_red_in_every_corner_view():
    # The box centre projects inside the box's silhouette; shading keeps it red-dominant, and the
    # walls between each camera and the room are culled, so nothing hides the box.
    views = ("corner", "corner_0", "corner_1", "corner_2", "corner_3")
    images = render(LAYOUT, views=views, colors=COLORS)
    for name, camera in cameras(LAYOUT, views).items():
        uv, _ = camera.project([BOXES[0].x, BOXES[0].y, BOXES[0].z])
        assert is_red(pixel(images[name], uv)), name


def test_plan_maps_x_right_and_y_up():
    # Bounds 4 x 3 m into 512 px with a 5% margin each side: 512 / 4 * 0.9 = 115.2 px per metre,
    # room centre (2, 1.5) at pixel (256, 256). The red box centre (3, 0.75) is 1 m right and
    # 0.75 m down: pixel (371.2, 342.4). An empty floor spot (0.5, 1.0) is at (83.2, 313.6).
    top = render(LAYOUT, views=("top",), colors=COLORS)["top"]
    assert top.getpixel((371, 342)) == RED
    assert top.getpixel((83, 313)) == FLOOR
    assert top.getpixel((5, 5)) == BACKGROUND


def test_rendering_is_deterministic():
    first = render(LAYOUT, views=("corner", "top"))
    second = render(LAYOUT, views=("corner", "top"))
    assert all(first[k].tobytes() == second[k].tobytes() for k in first)


def test_corner_views_differ():
    images = render(LAYOUT, views=("corner_0", "corner_1", "corner_2", "corner_3"))
    assert len({image.tobytes() for image in images.values()}) == 4
    assert render(LAYOUT, views=("corner",))["corner"].tobytes() == images["corner_1"].tobytes()


def test_room_size_gives_a_box_room_without_walls():
    layout = Layout(boxes=BOXES)
    images = render(layout, room_size=(4, 3, 2.5), colors=COLORS)
    assert images["top"].getpixel((371, 342)) == RED
    assert images["top"].getpixel((83, 313)) == FLOOR
    # Without walls or room_size there is no floor: the same spot shows the background.
    bare = render(layout, views=("top",), colors=COLORS)["top"]
    assert FLOOR not in {bare.getpixel((x, y)) for x in range(0, 512, 16) for y in range(0, 512, 16)}


def test_walls_take_precedence_over_room_size():
    with_size = render(LAYOUT, room_size=(10, 10, 3), views=("top",))["top"]
    assert with_size.tobytes() == render(LAYOUT, views=("top",))["top"].tobytes()


def test_points_are_drawn_under_box_outlines():
    # A blue floor scan covering the room: the empty floor spot of the plan shows a point colour,
    # and boxes become outlines, so the red box centre shows the scan too.
    g = np.linspace(0.05, 3.95, 200)
    xy = np.stack(np.meshgrid(g, g * 0.75), axis=-1).reshape(-1, 2)
    xyz = np.column_stack([xy, np.full(len(xy), 0.01)])
    rgb = np.tile(np.array([[0, 0, 255]], np.uint8), (len(xyz), 1))

    class Cloud:  # anything with xyz and rgb, like spacelm.points.PointCloud
        pass

    cloud = Cloud()
    cloud.xyz, cloud.rgb = xyz, rgb
    images = render(LAYOUT, points=cloud, colors=COLORS)
    assert images["top"].getpixel((83, 313)) == (0, 0, 255)
    assert images["top"].getpixel((371, 342)) == (0, 0, 255)
    grey = render(LAYOUT, points=xyz, views=("top",))["top"]  # a bare array: grey points
    assert grey.getpixel((83, 313)) == (150, 150, 150)


def test_label_colours_are_a_fixed_hash_with_overrides():
    assert label_color("chair") in PALETTE
    assert label_color("chair") == label_color("chair")
    assert label_color("chair", {"chair": (1, 2, 3)}) == (1, 2, 3)
    assert len({label_color(name) for name in ("bed", "sofa", "chair", "table", "lamp")}) > 1


def test_painter_order_uses_separating_planes_not_centres():
    # A long thin box A along x (y in [-0.1, 0.1]) stands between the eye (y = -10) and a small
    # box B at y = 1. B's centre is nearer the eye than A's (11.7 m vs 12.8 m), yet A covers B,
    # so B must be drawn first.
    boxes = np.array([[0, 0, 0.5, 0, 10, 0.2, 1], [4, 1, 0.5, 0, 1, 1, 1]], float)
    eye = np.array([8.0, -10.0, 0.5])
    assert np.linalg.norm(boxes[1, :3] - eye) < np.linalg.norm(boxes[0, :3] - eye)
    assert draw_order(box_corners(boxes), boxes[:, 3], eye) == [1, 0]


def test_stacked_box_is_drawn_after_its_support_seen_from_above():
    boxes = np.array([[0, 0, 0.25, 0, 2, 2, 0.5], [0, 0, 0.6, math.pi / 4, 0.3, 0.3, 0.2]], float)
    assert draw_order(box_corners(boxes), boxes[:, 3], np.array([5.0, 5.0, 5.0])) == [0, 1]


def test_errors_are_clear():
    with pytest.raises(ValueError, match="unknown view"):
        render(LAYOUT, views=("side",))
    with pytest.raises(ValueError, match="unknown backend"):
        render(LAYOUT, backend="pyrender")
    with pytest.raises(ValueError, match="nothing to render"):
        render(Layout())


def test_thirty_boxes_each_show_their_colour_in_the_plan():
    # A 6 x 5 grid of small boxes, 8 labels with distinct colours, random yaws: none overlaps another,
    # so the plan shows every box's own colour at its centre (render time is in bench/).
    rng = np.random.default_rng(0)
    colors = {f"c{k}": (30 + 25 * k, 220 - 25 * k, 90) for k in range(8)}
    boxes = [Box(f"c{i % 8}", 0.5 + 0.6 * (i % 6), 0.4 + 0.55 * (i // 6), 0.3, rng.uniform(-3, 3),
                 0.3, 0.25, 0.6) for i in range(30)]
    layout = Layout(walls=WALLS, boxes=boxes)
    top = render(layout, views=("top",), colors=colors)["top"]
    camera = cameras(layout, ("top",))["top"]
    for box in boxes:
        uv, _ = camera.project([box.x, box.y, box.z])
        assert pixel(top, uv) == colors[box.label], box
