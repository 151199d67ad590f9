import math
import sys

import numpy as np
import pytest

from spacelm.points import (
    SceneExtentWarning,
    augment,
    grid_sample,
    grid_sample_coords,
    normalize_color,
    positive_shift,
    remove_statistical_outliers,
    sample_fixed_count,
    voxel_downsample,
)
from spacelm.scene import Box, Layout, Wall
from spacelm.scene.layout import translate


def test_positive_shift_returns_subtracted_minimum_and_layout_goes_back():
    xyz = np.array([[2.0, -1.0, 0.5], [4.0, 3.0, -0.25], [3.0, 0.0, 1.0]], np.float32)
    shifted, offset = positive_shift(xyz)
    assert offset.tolist() == [2.0, -1.0, -0.25]
    assert shifted.min(axis=0).tolist() == [0.0, 0.0, 0.0]
    assert shifted.max(axis=0).tolist() == [2.0, 4.0, 1.25]
    # A box predicted at the shifted position of point 1 lands on point 1 after translate(offset).
    box = Box("chair", *shifted[1].tolist(), 0.0, 1.0, 1.0, 1.0)
    moved = translate(Layout(boxes=[box]), offset).boxes[0]
    assert (moved.x, moved.y, moved.z) == pytest.approx(xyz[1].tolist())


def test_normalize_color_maps_0_255_to_minus_one_one():
    out = normalize_color(np.array([[0, 127, 255]], np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[-1.0, 127 / 127.5 - 1, 1.0]], atol=1e-7)


def voxels_of(xyz, size):
    # Independent reference: Python tuples of floored coordinates.
    return [tuple(v) for v in np.floor(np.asarray(xyz, np.float64) / size).astype(int).tolist()]


def test_grid_sample_keeps_exactly_one_point_per_voxel():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 1, (20_000, 3)).astype(np.float32)
    index = grid_sample(xyz, 0.1)
    voxels = voxels_of(xyz, 0.1)
    assert len(index) == len(set(voxels)) == 1000  # 20 points per 10 cm voxel: all 1000 occupied
    assert len({voxels[i] for i in index}) == len(index)
    # test mode keeps the first (lowest-index) point of each voxel
    first = {}
    for i, v in enumerate(voxels):
        first.setdefault(v, i)
    assert sorted(index.tolist()) == sorted(first.values())
    np.testing.assert_array_equal(grid_sample(xyz, 0.1), index)


def test_grid_sample_train_mode_is_random_but_one_per_voxel():
    rng = np.random.default_rng(1)
    xyz = rng.uniform(0, 0.5, (5_000, 3))
    voxels = voxels_of(xyz, 0.1)
    a = grid_sample(xyz, 0.1, mode="train", rng=np.random.default_rng(7))
    b = grid_sample(xyz, 0.1, mode="train", rng=np.random.default_rng(8))
    again = grid_sample(xyz, 0.1, mode="train", rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, again)
    assert (a != b).mean() > 0.9  # ~40 points per voxel: a repeat is rare
    for picked in (a, b):
        assert len(picked) == len({voxels[i] for i in picked}) == len(set(voxels)) == 125


def test_grid_sample_train_mode_is_uniform_within_a_voxel():
    xyz = np.array([[0.01, 0, 0], [0.02, 0, 0], [0.03, 0, 0], [0.04, 0, 0]])  # one 5 cm voxel
    rng = np.random.default_rng(3)
    picks = [int(grid_sample(xyz, 0.05, mode="train", rng=rng)[0]) for _ in range(4000)]
    counts = np.bincount(picks, minlength=4)
    assert counts.min() > 880 and counts.max() < 1120  # 1000 each; 4 sigma is about 110


def test_grid_sample_on_a_huge_grid_uses_the_general_sort():
    # Keys near 2**62 leave no room to pack point indices beside them: the argsort path runs.
    far = 1.6e6  # metres; (1.6e6 voxels per axis)**3 is about 2**62
    xyz = np.array([[0, 0, 0], [far, far, far], [0.5, 0, 0], [far, far, far + 0.5], [2, 0, 0]])
    index, coords = grid_sample_coords(xyz, 1.0, max_extent=None)
    assert index.tolist() == [0, 4, 1]  # voxels in key order, first point of each
    assert coords[1].tolist() == [2, 0, 0]


def test_empty_or_misshaped_points_are_refused():
    with pytest.raises(ValueError, match=r"shape \(N, 3\) with N >= 1, got \(0, 3\)"):
        grid_sample(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"got \(4, 2\)"):
        voxel_downsample(np.zeros((4, 2)), None, 0.1)


def test_grid_coords_are_not_clipped_and_large_scenes_warn():
    xyz = np.array([[0.0, 0.0, 0.0], [40.0, 1.0, 1.0]])
    with pytest.warns(SceneExtentWarning, match=r"spans \[40\.0, 1\.0, 1\.0\] m"):
        _, coords = grid_sample_coords(xyz)
    assert coords.max() == 1600  # 40 m / 2.5 cm; SpatialLM would have clipped this to 1279
    with pytest.raises(ValueError, match="mode must be"):
        grid_sample(xyz, 0.1, mode="eval", max_extent=None)


def test_voxel_downsample_averages_like_open3d():
    # Open3D's grid starts half a voxel below the minimum: with voxel 1 and minimum 0 the cells
    # are [-0.5, 0.5), [0.5, 1.5), ... so 0.4 and 0.6 fall in different cells.
    xyz = np.array([[0.0, 0, 0], [0.4, 0, 0], [0.6, 0, 0], [1.2, 0.2, 0]])
    rgb = np.array([[0, 0, 0], [10, 20, 31], [100, 100, 100], [200, 0, 50]], np.uint8)
    points, colours = voxel_downsample(xyz, rgb, 1.0)
    np.testing.assert_allclose(points, [[0.2, 0, 0], [0.9, 0.1, 0]], atol=1e-7)
    assert colours.tolist() == [[5, 10, 16], [150, 50, 75]]  # 15.5 rounds to even 16
    points, colours = voxel_downsample(xyz, None, 10.0)
    assert colours is None and len(points) == 1


def test_statistical_outliers_matches_definition_and_drops_planted_outlier():
    rng = np.random.default_rng(0)
    cluster = rng.normal(0, 0.1, (2000, 3))
    xyz = np.r_[cluster, [[5.0, 5.0, 5.0]]]
    keep = remove_statistical_outliers(xyz, k=15, std_ratio=2.0)
    assert not keep[-1]
    assert keep[:-1].mean() > 0.9
    # Brute force on a small set: mean distance to the 15 nearest (self included), mean + 2 * std.
    small = rng.uniform(0, 1, (300, 3))
    distances = np.sort(np.linalg.norm(small[:, None] - small[None], axis=2), axis=1)[:, :15]
    scores = distances.mean(axis=1)
    expected = scores < scores.mean() + 2.0 * scores.std(ddof=1)
    np.testing.assert_array_equal(remove_statistical_outliers(small), expected)
    assert 0 < (~expected).sum() < 30


def test_sample_fixed_count_random():
    rng = np.random.default_rng(0)
    index = sample_fixed_count(100, 40, rng=rng)
    assert len(index) == 40 and len(set(index.tolist())) == 40
    padded = sample_fixed_count(10, 25, rng=rng)
    assert len(padded) == 25 and set(padded.tolist()) == set(range(10))
    with pytest.raises(ValueError, match="method must be"):
        sample_fixed_count(10, 5, method="poisson")


def test_sample_fixed_count_fps_spreads_samples():
    pytest.importorskip("fpsample")
    rng = np.random.default_rng(0)
    # Four tight clusters at the corners of a 10 m square: 4 FPS samples take one from each.
    corners = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [10, 10, 0]], float)
    xyz = np.repeat(corners, 100, axis=0) + rng.normal(0, 0.01, (400, 3))
    index = sample_fixed_count(400, 4, method="fps", rng=rng, xyz=xyz)
    assert sorted((index // 100).tolist()) == [0, 1, 2, 3]
    assert len(sample_fixed_count(400, 450, method="fps", rng=rng, xyz=xyz)) == 450
    assert len(sample_fixed_count(400, 0, method="fps", rng=rng, xyz=xyz)) == 0
    with pytest.raises(ValueError, match=r"needs xyz of shape \(400, 3\)"):
        sample_fixed_count(400, 4, method="fps", rng=rng)


def test_sample_fixed_count_fps_without_fpsample(monkeypatch):
    monkeypatch.setitem(sys.modules, "fpsample", None)  # makes `import fpsample` fail
    with pytest.raises(ImportError, match="pip install fpsample"):
        sample_fixed_count(10, 5, method="fps", xyz=np.zeros((10, 3)))


def room_with_box(rng):
    room = rng.uniform([0, 0, 0], [6, 4, 2.7], (2000, 3))
    box = Box("table", 4.0, 1.0, 0.4, 0.3, 1.2, 0.8, 0.8)
    wall = Wall(0, 0, 0, 6, 0, 0, 2.7, 0.1)
    # The box's centre and a corner of its footprint, as points that must travel with the box.
    c, s = math.cos(box.angle_z), math.sin(box.angle_z)
    corner = [box.x + c * 0.6 - s * 0.4, box.y + s * 0.6 + c * 0.4, box.z]
    return np.r_[room, [[box.x, box.y, box.z], corner]], Layout(walls=[wall], boxes=[box])


@pytest.mark.parametrize("rotate", ["uniform", "right_angles"])
def test_augment_moves_layout_with_points(rotate):
    rng = np.random.default_rng(5)
    xyz, layout = room_with_box(rng)
    for _ in range(5):
        out, _, moved = augment(xyz, None, layout, rng=rng, rotate=rotate)
        box, factor = moved.boxes[0], moved.boxes[0].scale_x / 1.2
        assert 0.75 <= factor <= 1.25
        assert (box.x, box.y, box.z) == pytest.approx(out[-2].tolist(), abs=1e-5)
        # the corner point stays the corner: same offset in the box's rotated frame
        c, s = math.cos(box.angle_z), math.sin(box.angle_z)
        expected = [box.x + (c * 0.6 - s * 0.4) * factor, box.y + (s * 0.6 + c * 0.4) * factor]
        assert out[-1, :2].tolist() == pytest.approx(expected, abs=1e-5)
        assert (box.scale_y, box.scale_z) == pytest.approx((0.8 * factor, 0.8 * factor))
        assert moved.walls[0].height == pytest.approx(2.7 * factor)
        turn = (box.angle_z - 0.3) % (math.pi / 2)
        if rotate == "right_angles":
            assert min(turn, math.pi / 2 - turn) == pytest.approx(0, abs=1e-9)


def test_augment_without_rotation_or_scale_and_colour_jitter():
    rng = np.random.default_rng(0)
    xyz, layout = room_with_box(rng)
    rgb = np.full((len(xyz), 3), 128, np.uint8)
    out, same_rgb, same = augment(xyz, rgb, layout, rng=rng, rotate=None, scale_range=None)
    np.testing.assert_allclose(out, xyz, atol=1e-6)
    assert same == layout and same_rgb is rgb
    _, jittered, _ = augment(xyz, rgb, None, rng=rng, color_jitter=0.05)
    assert jittered.dtype == np.uint8
    assert 11 < (jittered.astype(int) - 128).std() < 14  # std 0.05 * 255 = 12.75


@pytest.mark.parametrize("bad", [1e20, 5e17, np.inf, np.nan])
def test_grid_coords_refuse_coordinates_the_int64_cast_would_wrap(bad):
    # 5e17 m / 2.5 cm = 2e19 voxels > 2**63: the cast used to give INT64_MIN and pass later checks.
    xyz = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, bad, 0.0]])
    with pytest.raises(ValueError, match=r"point 2 at \[0.0, .*\] is not finite or too far"):
        grid_sample_coords(xyz, max_extent=None)
    with pytest.raises(ValueError, match="is not finite or too far"):  # NaN: every row (min is NaN)
        voxel_downsample(xyz, None)
