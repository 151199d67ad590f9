import math
import re

import numpy as np
import pytest

from spacelm.points import align_scan, check_alignment


def box_room(seed=0, size=(6.0, 4.5, 2.7), n=40_000, noise=0.005):
    """Points on the floor, ceiling and four walls of an axis-aligned room, corner at the origin."""
    rng = np.random.default_rng(seed)
    # (fixed axis, its value) for floor, ceiling and the four walls
    faces = [(2, 0.0), (2, size[2]), (0, 0.0), (0, size[0]), (1, 0.0), (1, size[1])]
    areas = np.array([np.prod(size) / size[axis] for axis, _ in faces])
    parts = []
    for (axis, value), count in zip(faces, rng.multinomial(n, areas / areas.sum())):
        points = rng.uniform(0, 1, (count, 3)) * size
        points[:, axis] = value
        parts.append(points)
    return np.concatenate(parts) + rng.normal(0, noise, (n, 3))


def rotation(axis, degrees):
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def test_level_metric_room_passes():
    assert check_alignment(box_room()) == []


def test_tilted_room_is_flagged_not_z_up():
    tilted = box_room() @ rotation(0, 30).T
    problems = check_alignment(tilted)
    assert len(problems) == 1  # height is measured along the estimated up, so it is still fine
    assert "not z-up" in problems[0] and "tilted 30 degrees" in problems[0]


@pytest.mark.parametrize("factor", [0.1, 100.0])  # metres read as decimetres / centimetres
def test_non_metric_room_is_flagged(factor):
    problems = check_alignment(box_room() * factor)
    assert len(problems) == 1 and "not be in metres" in problems[0]
    height = float(re.search(r"height is about ([0-9.]+)", problems[0]).group(1))
    assert height == pytest.approx(2.7 * factor, rel=0.03)


@pytest.mark.parametrize("yaw, tilt_x, tilt_y", [(27.0, 12.0, -7.0), (-130.0, -25.0, 18.0),
                                                 (44.0, 3.0, 0.0)])
def test_align_scan_recovers_a_known_rotation(yaw, tilt_x, tilt_y):
    true = rotation(0, tilt_x) @ rotation(1, tilt_y) @ rotation(2, yaw)
    scan = box_room(seed=1) @ true.T
    transform = align_scan(scan)
    assert transform.shape == (4, 4) and transform[:3, 3].tolist() == [0, 0, 0]
    residual = transform[:3, :3] @ true  # maps the room's own axes to the aligned frame
    assert math.degrees(math.acos(min(1.0, residual[2, 2]))) < 1.0  # floor level within 1 deg
    turn = math.degrees(math.atan2(residual[1, 0], residual[0, 0]))
    assert abs((turn + 45) % 90 - 45) < 1.0  # walls on the x/y axes within 1 degree
    assert check_alignment(scan @ transform[:3, :3].T) == []


def test_align_scan_is_deterministic_and_identity_on_aligned_room():
    room = box_room(seed=2)
    transform = align_scan(room)
    np.testing.assert_array_equal(transform, align_scan(room))
    np.testing.assert_allclose(transform, np.eye(4), atol=math.radians(0.5))


def test_too_few_points():
    with pytest.raises(ValueError, match="at least 32 points"):
        align_scan(np.zeros((5, 3)))


def test_flat_scan_gets_a_warning_not_a_division_by_zero():
    # A floor-only scan: planar everywhere, so orientation is estimated, but its height is 0.
    rng = np.random.default_rng(0)
    floor = np.c_[rng.uniform(0, 4, (5000, 2)), np.zeros(5000)]
    problems = check_alignment(floor)
    assert len(problems) == 1 and "no height" in problems[0]
