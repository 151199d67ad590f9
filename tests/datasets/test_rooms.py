import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacelm.datasets.rooms import (
    LabelledBox,
    attach_opening,
    box_label,
    filter_boxes,
    layout_from_boxes,
    points_in_boxes,
    wall_from_box,
)
from spacelm.scene import Box, Door, Layout, Wall, Window

S30, C30 = 0.5, math.sqrt(3) / 2


def wall_values(wall: Wall) -> list[float]:
    return [wall.ax, wall.ay, wall.az, wall.bx, wall.by, wall.bz, wall.height, wall.thickness]


@pytest.mark.parametrize("box, expected", [
    # long in x: along x through the centre, at the bottom face
    (Box("wall", 1, 2, 1.5, 0, 4, 0.2, 3), [-1, 2, 0, 3, 2, 0, 3, 0.2]),
    # long in y: the segment turns by 90 degrees
    (Box("wall", 1, 2, 1.5, 0, 0.2, 4, 3), [1, 0, 0, 1, 4, 0, 3, 0.2]),
    # rotated by 30 degrees, long along its own x: direction (cos 30, sin 30), half length 1
    (Box("wall", 0, 0, 1, math.pi / 6, 2, 0.1, 2), [-C30, -S30, 0, C30, S30, 0, 2, 0.1]),
    # rotated by 30 degrees, long along its own y: direction 120 degrees
    (Box("wall", 0, 0, 1, math.pi / 6, 0.1, 2, 2), [S30, -C30, 0, -S30, C30, 0, 2, 0.1]),
])
def test_wall_from_box(box, expected):
    np.testing.assert_allclose(wall_values(wall_from_box(box)), expected, atol=1e-12)


@given(st.floats(-10, 10), st.floats(-10, 10), st.floats(-4, 4), st.floats(0.05, 6),
       st.floats(0.05, 6), st.floats(0.1, 4))
def test_wall_from_box_spans_the_long_side(x, y, yaw, sx, sy, sz):
    wall = wall_from_box(Box("wall", x, y, 1.0, yaw, sx, sy, sz))
    assert math.hypot(wall.bx - wall.ax, wall.by - wall.ay) == pytest.approx(max(sx, sy))
    assert ((wall.ax + wall.bx) / 2, (wall.ay + wall.by) / 2) == pytest.approx((x, y), abs=1e-9)
    assert wall.thickness == min(sx, sy) and wall.az == wall.bz == pytest.approx(1.0 - sz / 2)


W_SOUTH = Wall(0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 2.5, 0.2)
W_WEST = Wall(0.0, 0.0, 0.0, 0.0, 4.0, 0.0, 2.5, 0.2)
W_INNER = Wall(0.0, 0.3, 0.0, 4.0, 0.3, 0.0, 2.5, 0.1)  # parallel to W_SOUTH, 0.3 m north of it


def door_box(x, y, yaw=0.0, width=0.9):
    return Box("door", x, y, 1.0, yaw, width, 0.1, 2.0)


def test_attach_opening_picks_the_nearest_parallel_wall():
    door = attach_opening(door_box(1.5, 0.2), [W_SOUTH, W_WEST, W_INNER], Door)
    assert door == Door(2, 1.5, 0.3, 1.0, 0.9, 2.0)
    door = attach_opening(door_box(1.5, 0.1), [W_SOUTH, W_WEST, W_INNER], Door)
    assert door.wall_id == 0 and door.y == 0


def test_attach_opening_projects_and_keeps_the_kind():
    window = attach_opening(Box("window", 2.5, -0.1, 1.6, math.pi / 2, 0.2, 1.2, 0.8),
                            [W_WEST, W_SOUTH], Window)
    assert isinstance(window, Window)
    assert (window.wall_id, window.x, window.y, window.z, window.width, window.height) == (
        1, 2.5, 0, 1.6, 1.2, 0.8)


def test_attach_opening_rejects_perpendicular_and_far_walls():
    assert attach_opening(door_box(0.1, 2.0), [W_WEST], Door) is None  # door along x, wall along y
    assert attach_opening(door_box(2.0, 0.6), [W_SOUTH], Door) is None  # 0.6 m > max_gap 0.5
    assert attach_opening(door_box(2.0, 0.45), [W_SOUTH], Door).wall_id == 0
    assert attach_opening(door_box(2.0, 0.45), [W_SOUTH], Door, max_gap=0.4) is None
    assert attach_opening(door_box(5.0, 0.0), [W_SOUTH], Door) is None  # beyond the wall's end
    end = attach_opening(door_box(4.3, 0.0), [W_SOUTH], Door)  # overhangs by < width / 2: clamped
    assert (end.x, end.y) == (4, 0)


def test_attach_opening_accepts_integer_walls():
    assert attach_opening(door_box(2, 0), [Wall(0, 0, 0, 4, 0, 0, 2, 0)], Door).wall_id == 0


def test_attach_opening_angle_tolerance():
    assert attach_opening(door_box(2, 0, yaw=math.radians(15)), [W_SOUTH], Door) is not None
    assert attach_opening(door_box(2, 0, yaw=math.radians(25)), [W_SOUTH], Door) is None
    assert attach_opening(door_box(2, 0, yaw=math.pi), [W_SOUTH], Door) is not None  # reversed


def test_layout_from_boxes_counts_what_it_drops():
    objects = [
        LabelledBox(1, Box("wall", 2, 0, 1.25, 0, 4, 0.2, 2.5)),
        LabelledBox(2, Box("floor", 2, 2, 0, 0, 4, 4, 0.1)),
        LabelledBox(22, Box("ceiling", 2, 2, 2.5, 0, 4, 4, 0.1)),
        LabelledBox(8, door_box(1, 0.05)),
        LabelledBox(8, door_box(1, 3.0)),  # no wall near
        LabelledBox(9, Box("window", 0, 2, 1.5, 0, 0.1, 1, 1)),  # perpendicular to the only wall
        LabelledBox(0, Box("void", 1, 1, 1, 0, 1, 1, 1)),
        LabelledBox(38, Box("shower", 1, 1, 1, 0, 1, 1, 1)),
        LabelledBox(40, Box("cup", 1, 1, 1, 0, 1, 1, 1)),
        LabelledBox(5, Box("armchair", 1, 1, 0.4, 0.3, 0.6, 0.6, 0.8)),
        LabelledBox(7, Box("table", 2, 2, 0.4, 0, 1, 1, 0.8)),
    ]
    layout, dropped = layout_from_boxes(objects)
    assert (len(layout.walls), len(layout.doors), len(layout.windows)) == (1, 1, 0)
    assert [b.label for b in layout.boxes] == ["chair", "table"]
    assert layout.boxes[0] == Box("chair", 1, 1, 0.4, 0.3, 0.6, 0.6, 0.8)
    assert dropped == {"floor_or_ceiling": 2, "door_without_wall": 1, "window_without_wall": 1,
                       "unknown_class": 3}
    layout, dropped = layout_from_boxes(objects, label_set="spatiallm59")
    assert [b.label for b in layout.boxes] == ["chair"]
    assert dropped["unknown_class"] == 3 and dropped["unmapped_class"] == 1  # table: no counterpart


@pytest.mark.parametrize("nyu40_id, label_set, expected", [
    (4, "nyu40", "bed"), (32, "nyu40", "nightstand"), (20, "nyu40", "floor_mat"),
    (24, "nyu40", "refrigerator"), (39, "nyu40", "otherfurniture"), (36, "nyu40", "bathtub"),
    (0, "nyu40", None), (38, "nyu40", None), (40, "nyu40", None), (41, "nyu40", None),
    (-1, "nyu40", None),
    (3, "spatiallm59", "cupboard"), (11, "spatiallm59", "painting"), (25, "spatiallm59", "tv"),
    (20, "spatiallm59", "carpet"), (7, "spatiallm59", None), (39, "spatiallm59", None),
    (40, "spatiallm59", None),
])
def test_box_label(nyu40_id, label_set, expected):
    assert box_label(nyu40_id, label_set) == expected
    assert box_label(np.int64(nyu40_id), label_set) == expected


def test_box_label_rejects_unknown_sets():
    with pytest.raises(ValueError, match="label_set"):
        box_label(4, "coco")


def rotated_points(box, local):
    """World points from coordinates in the frame of ``box`` = (x, y, z, yaw, ...)."""
    x, y, z, yaw = box[:4]
    local = np.asarray(local, dtype=np.float64)
    c, s = math.cos(yaw), math.sin(yaw)
    return np.stack([x + c * local[:, 0] - s * local[:, 1], y + s * local[:, 0] + c * local[:, 1],
                     z + local[:, 2]], axis=1)


def test_points_in_boxes_rotated_with_margin():
    box = (1.0, 2.0, 0.5, math.radians(30), 2.0, 1.0, 1.0)  # half extents 1, 0.5, 0.5
    m, eps = 0.15, 1e-3
    inside = [(1 + m - eps, 0, 0), (-1 - m + eps, 0, 0), (0, 0.5 + m - eps, 0),
              (0, 0, -0.5 - m + eps), (1 + m - eps, -0.5 - m + eps, 0.5 + m - eps)]
    outside = [(1 + m + eps, 0, 0), (0, -0.5 - m - eps, 0), (0, 0, 0.5 + m + eps),
               (1 + m + eps, 0.5 + m + eps, 0)]
    xyz = rotated_points(box, inside + outside)
    for points in (xyz, xyz.astype(np.float32)):
        assert points_in_boxes(points, np.array([box]), m).tolist() == [len(inside)]
    # without the margin only the centre-ish points count; a second box counts independently
    boxes = np.array([box, (50, 50, 0, 0, 1, 1, 1)])
    assert points_in_boxes(np.vstack([xyz, [[1, 2, 0.5]]]), boxes).tolist() == [1, 0]
    assert points_in_boxes(xyz, np.zeros((0, 7))).shape == (0,)


def cube_points(center, n, half=0.05):
    rng = np.random.default_rng(n)
    return rng.uniform(-half, half, (n, 3)) + center


def test_filter_boxes_thresholds():
    boxes = [
        Box("tiny", 0, 0, 0, 0, 0.14, 0.14, 0.14),  # all extents < 0.15: dropped, even with points
        Box("edge", 2, 0, 0, 0, 0.15, 0.15, 0.15),  # 0.15 is not below 0.15: kept
        Box("flat", 4, 0, 0, 0, 0.3, 0.1, 0.01),  # one extent >= 0.15 is enough
        Box("hundred", 6, 0, 0, 0, 0.5, 0.5, 0.5),  # exactly 100 points: dropped
        Box("ring", 8, 0, 0, 0, 0.5, 0.5, 0.5),  # 101 points, all in the 0.15 m margin ring: kept
    ]
    ring = np.column_stack([np.full(101, 8.35), np.zeros(101), np.zeros(101)])
    xyz = np.vstack([cube_points((0, 0, 0), 500), cube_points((2, 0, 0), 101),
                     cube_points((4, 0, 0), 101), cube_points((6, 0, 0), 100), ring])
    walls = [Wall(0, 0, 0, 1, 0, 0, 2, 0)]
    kept, dropped = filter_boxes(Layout(walls=walls, boxes=boxes), xyz)
    assert [b.label for b in kept.boxes] == ["edge", "flat", "ring"] and kept.walls == tuple(walls)
    assert dropped == {"box_too_small": 1, "box_too_few_points": 1}


def test_door_and_doorframe_on_one_wall_merge_into_one_opening():
    # ScanNet labels "door" and "doorframe" NYU40 8: two boxes 2 cm apart must give one door.
    objects = [LabelledBox(1, Box("wall", 2, 0, 1.25, 0, 4, 0.2, 2.5)),
               LabelledBox(8, Box("door", 1.0, 0.05, 1.0, 0, 0.9, 0.1, 2.0)),
               LabelledBox(8, Box("doorframe", 1.02, 0.05, 1.05, 0, 1.0, 0.1, 2.1)),
               LabelledBox(8, Box("door", 3.0, 0.05, 1.0, 0, 0.8, 0.1, 2.0))]  # another door
    layout, dropped = layout_from_boxes(objects)
    assert dropped["door_merged"] == 1
    first, second = layout.doors
    # union along the wall: [min(0.55, 0.52), max(1.45, 1.52)] = [0.52, 1.52]; vertically [0, 2.1]
    assert first.width == pytest.approx(1.0) and first.x == pytest.approx(1.02)
    assert first.height == pytest.approx(2.1) and first.z == pytest.approx(1.05)
    assert second.x == pytest.approx(3.0) and second.width == pytest.approx(0.8)


def test_unmapped_and_unknown_classes_are_counted_apart():
    objects = [LabelledBox(7, Box("table", 1, 1, 0.4, 0, 1, 1, 0.8)),  # no spatiallm59 counterpart
               LabelledBox(40, Box("otherprop", 2, 2, 0.2, 0, 0.3, 0.3, 0.3)),
               LabelledBox(4, Box("bed", 2, 2, 0.3, 0, 2, 1.6, 0.6))]
    layout, dropped = layout_from_boxes(objects, label_set="spatiallm59")
    assert [b.label for b in layout.boxes] == ["bed"]
    assert dropped == {"unmapped_class": 1, "unknown_class": 1}
    with pytest.raises(ValueError, match="label_set"):
        layout_from_boxes([], label_set="coco")
