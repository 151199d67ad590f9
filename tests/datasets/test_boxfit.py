import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacelm.datasets.boxfit import (
    canonical_yaw,
    fit_yaw_box,
    min_area_rectangle,
    obb_corners,
    yaw_box_from_obb,
)


def rectangle_points(centre, size, yaw, n=400, seed=0):
    """Points filling a rotated rectangle, its four corners included (so the fit is exact)."""
    rng = np.random.default_rng(seed)
    local = rng.uniform(-0.5, 0.5, (n, 2))
    local[:4] = [[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]
    local *= size
    c, s = math.cos(yaw), math.sin(yaw)
    return local @ np.array([[c, s], [-s, c]]) + centre


def corners(centre, size, yaw):
    return rectangle_points(centre, size, yaw, n=4)[:4]


def same_corners(a, b):
    """Largest distance from a corner of ``a`` to the nearest corner of ``b`` (order-free)."""
    return np.linalg.norm(a[:, None] - b[None], axis=2).min(axis=1).max()


def yaw_difference_mod_90(a, b):
    d = (a - b) % (math.pi / 2)
    return min(d, math.pi / 2 - d)


def test_rotated_rectangle_recovers_centre_extents_and_yaw():
    xy = rectangle_points((3.0, -2.0), (2.4, 0.8), math.radians(35))
    centre, size, yaw = min_area_rectangle(xy)
    assert centre == pytest.approx([3.0, -2.0], abs=1e-6)
    assert yaw == pytest.approx(math.radians(35))  # inside [-45, 45) deg: kept, extents in order
    assert size == pytest.approx([2.4, 0.8], abs=1e-6)


def test_yaw_past_45_degrees_swaps_extents():
    _, size, yaw = min_area_rectangle(rectangle_points((0, 0), (2.0, 1.0), math.radians(70)))
    assert yaw == pytest.approx(math.radians(-20))
    assert size == pytest.approx([1.0, 2.0])  # the 2 m side now lies along yaw + 90 deg


@settings(max_examples=60, deadline=None)
@given(cx=st.floats(-50, 50), cy=st.floats(-50, 50), sx=st.floats(0.2, 8), sy=st.floats(0.2, 8),
       yaw=st.floats(-math.pi, math.pi), seed=st.integers(0, 1000))
def test_any_rotated_rectangle_is_recovered_within_1cm(cx, cy, sx, sy, yaw, seed):
    xy = rectangle_points((cx, cy), (sx, sy), yaw, seed=seed)
    centre, size, fitted_yaw = min_area_rectangle(xy)
    assert np.abs(centre - (cx, cy)).max() < 0.01
    assert same_corners(corners(centre, size, fitted_yaw), corners((cx, cy), (sx, sy), yaw)) < 0.01
    if abs(sx - sy) > 0.05:  # a near-square's yaw is ambiguous, its corners are not
        assert yaw_difference_mod_90(fitted_yaw, yaw) < math.radians(0.5)
        assert sorted(size) == pytest.approx(sorted([sx, sy]), abs=0.01)


def test_fit_yaw_box_takes_z_from_min_to_max():
    xy = rectangle_points((1.0, 2.0), (1.0, 0.5), 0.3)
    z = np.linspace(0.2, 1.1, len(xy))
    box = fit_yaw_box(np.column_stack([xy, z]), label="chair")
    assert (box.label, box.z, box.scale_z) == ("chair", pytest.approx(0.65), pytest.approx(0.9))
    assert (box.x, box.y, box.angle_z) == pytest.approx((1.0, 2.0, 0.3))
    assert (box.scale_x, box.scale_y) == (pytest.approx(1.0), pytest.approx(0.5))


def test_axis_aligned_points_give_yaw_zero():
    xyz = np.array([[0, 0, 0], [2, 0, 0], [2, 1, 1], [0, 1, 1], [1, 0.5, 0.5]], dtype=float)
    box = fit_yaw_box(xyz)
    assert (box.x, box.y, box.z) == pytest.approx((1.0, 0.5, 0.5))
    assert (box.angle_z, box.scale_x, box.scale_y, box.scale_z) == pytest.approx((0, 2, 1, 1))


def test_collinear_points_give_a_zero_width_box_along_their_line():
    t = np.linspace(0, 1, 7)
    xyz = np.column_stack([1 + 3 * t, 2 + 3 * t, np.zeros(7)])  # 45 deg line, 4.24 m long
    box = fit_yaw_box(xyz)
    assert (box.x, box.y) == pytest.approx((2.5, 3.5))
    assert abs(box.angle_z) == pytest.approx(math.pi / 4)
    assert sorted([box.scale_x, box.scale_y]) == pytest.approx([0, 3 * math.sqrt(2)], abs=1e-9)


def test_two_points_and_one_point():
    two = fit_yaw_box(np.array([[0, 0, 0], [0, 2, 1]]))  # vertical in xy: yaw 90 deg -> canonical 0
    assert (two.x, two.y, two.z, two.angle_z) == pytest.approx((0, 1, 0.5, 0))
    assert (two.scale_x, two.scale_y, two.scale_z) == pytest.approx((0, 2, 1))
    one = fit_yaw_box(np.array([[5, 6, 7]] * 3))
    assert (one.x, one.y, one.z, one.angle_z, one.scale_x, one.scale_y, one.scale_z) == \
        pytest.approx((5, 6, 7, 0, 0, 0, 0))


def test_no_points_or_nan_raise():
    with pytest.raises(ValueError, match="0 points"):
        fit_yaw_box(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fit_yaw_box(np.array([[0, 0, 0], [1, np.nan, 0], [1, 1, 0]]))


def test_canonical_yaw_keeps_the_rectangle():
    for yaw in np.linspace(-7, 7, 29):
        new_yaw, sx, sy = canonical_yaw(yaw, 3.0, 1.0)
        assert -math.pi / 4 <= new_yaw < math.pi / 4
        assert same_corners(corners((0, 0), (sx, sy), new_yaw), corners((0, 0), (3, 1), yaw)) < 1e-9


def obb_rows(yaw, up_row=2):
    """normalizedAxes of a gravity-aligned box: rows are axes, the vertical one at ``up_row``."""
    c, s = math.cos(yaw), math.sin(yaw)
    horizontal = [[c, s, 0.0], [-s, c, 0.0]]
    rows = horizontal[:up_row] + [[0.0, 0.0, 1.0]] + horizontal[up_row:]
    return np.array(rows).reshape(-1)


@pytest.mark.parametrize("up_row", [0, 1, 2])
def test_obb_rows_are_axes_and_the_vertical_one_can_be_any_row(up_row):
    lengths = [2.0, 0.5, 0.8]
    lengths.insert(up_row, lengths.pop(2))  # the height goes with the vertical row
    box, tilted = yaw_box_from_obb([1, 2, 0.4], lengths, obb_rows(0.2, up_row), "sofa")
    assert not tilted
    assert (box.label, box.x, box.y, box.z) == ("sofa", 1, 2, 0.4)
    assert (box.angle_z, box.scale_x, box.scale_y, box.scale_z) == pytest.approx((0.2, 2, 0.5, 0.8))


def test_obb_yaw_is_canonicalised():
    box, _ = yaw_box_from_obb([0, 0, 0], [2.0, 0.5, 1.0], obb_rows(math.radians(100)))
    assert box.angle_z == pytest.approx(math.radians(10))
    assert (box.scale_x, box.scale_y) == pytest.approx((0.5, 2.0))


def test_tilted_obb_is_enclosed_by_a_yaw_only_box():
    tilt = math.radians(20)  # box turned about its x axis
    axes = np.array([[1, 0, 0], [0, math.cos(tilt), math.sin(tilt)],
                     [0, -math.sin(tilt), math.cos(tilt)]])
    box, tilted = yaw_box_from_obb([0, 0, 1], [2, 1, 1], axes.reshape(-1))
    assert tilted
    cs = obb_corners([0, 0, 1], [2, 1, 1], axes)
    assert box.angle_z == pytest.approx(0, abs=1e-9)
    assert (box.scale_x, box.scale_y, box.scale_z) == pytest.approx(tuple(np.ptp(cs, axis=0)))
    assert np.ptp(cs, axis=0)[1] > 1  # larger than the box itself: it contains the tilted box


def test_bad_obb_raises():
    with pytest.raises(ValueError, match="9 normalizedAxes"):
        yaw_box_from_obb([0, 0, 0], [1, 1, 1], [1, 0, 0, 0, 1, 0])
    with pytest.raises(ValueError, match="negative"):
        yaw_box_from_obb([0, 0, 0], [1, -1, 1], np.eye(3).reshape(-1))
    with pytest.raises(ValueError, match="zero axis"):
        yaw_box_from_obb([0, 0, 0], [1, 1, 1], [1, 0, 0, 0, 0, 0, 0, 0, 1])
