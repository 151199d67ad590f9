import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacelm.scene import Door, Layout, Wall, Window
from spacelm.scene.geometry import (
    box_corners,
    box_iou_3d,
    opening_quads,
    plane_iou,
    wall_quads,
)

UNIT = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]  # unit cube centred at the origin


def iou1(a, b, **kw) -> float:
    return float(box_iou_3d([a], [b], **kw)[0, 0])


# ---- boxes -------------------------------------------------------------------------------------

def test_box_corners_follow_yaw_and_full_extents():
    # A 2 x 1 x 1 box turned a quarter turn: its own +x axis points along world +y, so the
    # (-x, -y) bottom corner (-1, -0.5) goes to (0.5, -1); extents are full, z centred.
    corners = box_corners([[1.0, 2.0, 3.0, math.pi / 2, 2.0, 1.0, 1.0]])
    assert corners.shape == (1, 8, 3)
    assert corners[0, 0] == pytest.approx([1.5, 1.0, 2.5])
    assert corners[0, 6] == pytest.approx([0.5, 3.0, 3.5])


def test_identical_boxes_have_iou_one():
    # Same box, turned so the footprint is not axis-aligned: the polygon path must still give 1.
    box = [1.0, -2.0, 0.7, 0.3, 1.2, 0.5, 0.8]
    assert iou1(box, box) == pytest.approx(1.0)


def test_half_unit_shift_gives_one_third():
    # Overlap 0.5 x 1 x 1 = 0.5; union 1 + 1 - 0.5 = 1.5.
    assert iou1(UNIT, [0.5, 0, 0, 0, 1, 1, 1]) == pytest.approx(1 / 3)


def test_square_turned_45_degrees_gives_one_over_sqrt2():
    # The intersection of a unit square and itself turned 45 degrees is a regular octagon of area
    # 2 (sqrt2 - 1); same z range, so IoU = a / (2 - a) = 1 / sqrt2 exactly.
    assert iou1(UNIT, [0, 0, 0, math.pi / 4, 1, 1, 1]) == pytest.approx(1 / math.sqrt(2), abs=1e-12)


def test_disjoint_boxes_score_zero():
    # Apart in x, then apart only in z (same footprint): both must be 0, the second through the z test.
    assert iou1(UNIT, [3, 0, 0, 0.4, 1, 1, 1]) == 0.0
    assert iou1(UNIT, [0, 0, 2, 0, 1, 1, 1]) == 0.0


def test_matrix_shape_and_empty_inputs():
    # (N, 7) x (M, 7) -> (N, M), including empty sides, which evaluation meets all the time.
    assert box_iou_3d(np.zeros((0, 7)), [UNIT]).shape == (0, 1)
    assert box_iou_3d([UNIT, UNIT, UNIT], np.zeros((0, 7))).shape == (3, 0)
    m = box_iou_3d([UNIT, [0.5, 0, 0, 0, 1, 1, 1]], [UNIT, [10, 0, 0, 0, 1, 1, 1], UNIT])
    assert m == pytest.approx(np.array([[1, 0, 1], [1 / 3, 0, 1 / 3]]))


def test_compat_equals_correct_for_boxes_with_the_same_centre():
    # Unit footprints, heights 1 and 2, same centre. Correct: z ranges [-0.5, 0.5] and [-1, 1],
    # nested, overlap 1, union 1 + 2 - 1 = 2 -> 0.5. Compat reads z as the top: [-1, 0] and
    # [-2, 0], nested again -> also 0.5. Nested ranges stay nested, so the bug is invisible here.
    a, b = UNIT, [0, 0, 0, 0, 1, 1, 2]
    assert iou1(a, b) == pytest.approx(0.5)
    assert iou1(a, b, compat=True) == pytest.approx(0.5)


def test_compat_differs_for_stacked_boxes_of_different_heights():
    # A: z 0.5, height 1 -> [0, 1]; B: z 1.5, height 2 -> [0.5, 2.5]. Correct overlap 0.5,
    # union 1 + 2 - 0.5 = 2.5 -> 0.2. Compat: A [-0.5, 0.5], B [-0.5, 1.5], A inside B:
    # overlap 1, union 2 -> 0.5. One pair, two answers on either side of 0.25.
    a, b = [0, 0, 0.5, 0, 1, 1, 1], [0, 0, 1.5, 0, 1, 1, 2]
    assert iou1(a, b) == pytest.approx(0.2)
    assert iou1(a, b, compat=True) == pytest.approx(0.5)


def test_prefilter_keeps_turned_thin_boxes():
    # A long thin box turned 90 degrees reaches far outside the AABB of its unturned extents in y;
    # the prefilter must use the turned bounds. Cross of two 4 x 0.2 bars: 0.04 / (0.8 + 0.8 - 0.04).
    a, b = [0, 0, 0, 0, 4, 0.2, 1], [0, 1.5, 0, math.pi / 2, 4, 0.2, 1]
    assert iou1(a, b) == pytest.approx(0.04 / 1.56)


finite = st.floats(-5, 5, allow_nan=False)
box_st = st.tuples(finite, finite, finite, st.floats(-math.pi, math.pi),
                   *(st.floats(0.05, 4.0) for _ in range(3)))


@settings(max_examples=200, deadline=None)
@given(st.lists(box_st, min_size=1, max_size=6), st.lists(box_st, min_size=1, max_size=6))
def test_box_iou_is_symmetric_bounded_and_one_on_itself(a, b):
    # Properties of any IoU: symmetric, in [0, 1], 1 for a box with itself.
    ab, ba = box_iou_3d(a, b), box_iou_3d(b, a)
    assert np.allclose(ab, ba.T, atol=1e-9)
    assert np.all((ab >= 0) & (ab <= 1))
    assert np.allclose(np.diag(box_iou_3d(a, a)), 1.0, atol=1e-9)


# ---- quads -------------------------------------------------------------------------------------

def test_wall_quads_and_dropped_zero_length_walls():
    # Corner order (a, b, b + h, a + h); the zero-length second wall has no plane and is dropped.
    layout = Layout(walls=[Wall(0, 0, 0, 4, 0, 0, 2.5), Wall(1, 1, 0, 1, 1, 0, 2.5)])
    quads = wall_quads(layout)
    assert quads.shape == (1, 4, 3)
    assert quads[0] == pytest.approx(np.array([[0, 0, 0], [4, 0, 0], [4, 0, 2.5], [0, 0, 2.5]]))


def test_door_quad_on_a_wall_along_x():
    # Door centre (1, 0, 1.05), 0.9 wide, 2.1 high: x from 0.55 to 1.45, z from 0 to 2.1.
    layout = Layout(walls=[Wall(0, 0, 0, 4, 0, 0, 2.5)], doors=[Door(0, 1.0, 0.0, 1.05, 0.9, 2.1)])
    expected = [[0.55, 0, 0], [1.45, 0, 0], [1.45, 0, 2.1], [0.55, 0, 2.1]]
    assert opening_quads(layout, "door")[0] == pytest.approx(np.array(expected))


def test_window_quad_follows_the_host_wall_direction_along_y():
    # Host wall runs from (0, 4) down to (0, 0): the width goes along -y, so the quad starts at
    # the larger y. Window centre (0, 2, 1.5), 1 wide, 1.2 high.
    layout = Layout(walls=[Wall(0, 4, 0, 0, 0, 0, 2.5)], windows=[Window(0, 0.0, 2.0, 1.5, 1.0, 1.2)])
    expected = [[0, 2.5, 0.9], [0, 1.5, 0.9], [0, 1.5, 2.1], [0, 2.5, 2.1]]
    assert opening_quads(layout, "window")[0] == pytest.approx(np.array(expected))


def test_openings_without_a_valid_host_wall_are_dropped():
    # wall_id past the end, negative, and on a zero-length wall: none has a direction to use.
    layout = Layout(walls=[Wall(0, 0, 0, 4, 0, 0, 2.5), Wall(1, 1, 0, 1, 1, 0, 2.5)],
                    doors=[Door(0, 1, 0, 1, 0.9, 2), Door(5, 1, 0, 1, 0.9, 2),
                           Door(-1, 1, 0, 1, 0.9, 2), Door(1, 1, 1, 1, 0.9, 2)])
    assert opening_quads(layout, "door").shape == (1, 4, 3)
    assert opening_quads(layout, "window").shape == (0, 4, 3)
    with pytest.raises(ValueError):
        opening_quads(layout, "bbox")


def wall(ax, ay, bx, by, height=2.5) -> np.ndarray:
    return wall_quads(Layout(walls=[Wall(ax, ay, 0, bx, by, 0, height)]))


GT = wall(0, 0, 4, 0)  # along +x: normal z x d = +y, so y < 0 is the negative side


def test_parallel_wall_10cm_away_scores_its_overlap():
    # Pred spans x 1..5 at y = 0.1: overlap 3 x 2.5 = 7.5, union 10 + 10 - 7.5 = 12.5 -> 0.6.
    assert plane_iou(GT, wall(1, 0.1, 5, 0.1))[0, 0] == pytest.approx(0.6)
    assert plane_iou(GT, wall(1, -0.1, 5, -0.1))[0, 0] == pytest.approx(0.6)


def test_parallel_wall_30cm_away_fails_except_on_the_negative_side_in_compat():
    # 0.3 m is past max_offset = 0.2 on either side. SpatialLM's test is one-sided: the signed
    # offset -0.3 is < 0.2, so compat passes it with the in-plane IoU 0.6; +0.3 fails in both modes.
    below, above = wall(1, -0.3, 5, -0.3), wall(1, 0.3, 5, 0.3)
    assert plane_iou(GT, below)[0, 0] == 0.0
    assert plane_iou(GT, below, compat=True)[0, 0] == pytest.approx(0.6)
    assert plane_iou(GT, above, compat=True)[0, 0] == 0.0
    # far below still passes in compat: the offset has no lower bound
    assert plane_iou(GT, wall(1, -3, 5, -3), compat=True)[0, 0] == pytest.approx(0.6)


def test_parallel_within_5_degrees_passes_and_beyond_fails():
    # A 4 m wall turned by theta about its centre (2, 0): it projects onto [2 - 2cos, 2 + 2cos],
    # inside the GT's [0, 4], so IoU = 4 cos h / (4 h + 4 cos h - 4 cos h) = cos(theta).
    def turned(deg):
        c, s = 2 * math.cos(math.radians(deg)), 2 * math.sin(math.radians(deg))
        return wall(2 - c, -s, 2 + c, s)

    assert plane_iou(GT, turned(4))[0, 0] == pytest.approx(math.cos(math.radians(4)))
    assert plane_iou(GT, turned(6))[0, 0] == 0.0


def test_reversed_wall_is_the_same_plane():
    # Walls have no front: b -> a along -x is parallel (|sin| = 0) and identical.
    assert plane_iou(GT, wall(4, 0, 0, 0))[0, 0] == pytest.approx(1.0)


def test_plane_iou_uses_the_z_overlap():
    # Same line, heights 2.5 and 1.25: overlap 4 x 1.25 = 5, union 10 + 5 - 5 = 10 -> 0.5.
    assert plane_iou(GT, wall(0, 0, 4, 0, height=1.25))[0, 0] == pytest.approx(0.5)


def test_plane_iou_shapes():
    # (N, 4, 3) x (M, 4, 3) -> (N, M), empty sides included.
    quads = np.concatenate([GT, wall(0, 0, 0, 4)])
    assert plane_iou(quads, quads) == pytest.approx(np.eye(2))
    assert plane_iou(quads, np.zeros((0, 4, 3))).shape == (2, 0)
