import math

import numpy as np
import pytest

from spacelm.scene import Box, Layout, Wall, fold_yaw
from spacelm.scene.quantize import RANGES, QuantizationError, Quantizer, quantize_layout


@pytest.mark.parametrize("num_bins", [640, 1280, 7])
@pytest.mark.parametrize("kind", sorted(RANGES))
def test_round_trip_error_is_at_most_half_a_bin(num_bins, kind):
    q = Quantizer(num_bins)
    lo, hi = RANGES[kind]
    values = np.linspace(lo, hi, 5001)
    decoded = q.decode(q.encode(values, kind), kind)
    assert np.max(np.abs(decoded - values)) <= q.bin_size(kind) / 2 + 1e-9


def test_bin_sizes_match_spatiallm_presets():
    # spatiallm.md section 2: 2.5 cm positions, 2 cm heights/widths, 1.5625 cm scales at 1280 bins.
    q = Quantizer(1280)
    assert q.bin_size("world") == pytest.approx(0.025)
    assert q.bin_size("height") == pytest.approx(0.02)
    assert q.bin_size("width") == pytest.approx(0.02)
    assert q.bin_size("scale") == pytest.approx(0.015625)
    assert Quantizer(640).bin_size("world") == pytest.approx(0.05)


def test_encode_truncates_like_spatiallm_and_decodes_to_centre():
    q = Quantizer(1280)
    assert q.encode(1.0249, "world") == 40  # 1.0249 / 0.025 = 40.996 -> 40
    assert q.decode(40, "world") == pytest.approx(1.0125)
    assert q.encode(32.0, "world") == 1279  # the top edge falls in the last bin
    assert Quantizer(1280, compat=True).decode(40, "world") == pytest.approx(1.0)  # lower edge


def test_angle_bins_use_spatiallm_range():
    q = Quantizer(1280)
    assert q.encode(0.0, "angle") == 640
    assert q.encode(-math.pi / 2, "angle") == 480  # (-1.5708 + 6.2832) / 12.5664 * 1280 = 480.0002
    assert q.decode(0, "angle") == pytest.approx(-6.2832 + 6.2832 / 1280)


def test_out_of_range_raises_with_the_value_unless_clipped():
    q = Quantizer(1280)
    with pytest.raises(QuantizationError, match="world value 33"):
        q.encode(33.0, "world")
    with pytest.raises(QuantizationError, match="outside"):
        q.encode([-0.5, 1.0], "world")
    assert q.encode(-1e-9, "world") == 0  # rounding noise after a shift is not an error
    assert q.encode(33.0, "world", clip=True) == 1279
    with pytest.raises(QuantizationError, match="non-finite"):
        q.encode(float("nan"), "world")
    with pytest.raises(QuantizationError):
        q.decode(1280, "world")


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_bins"):
        Quantizer(0)
    with pytest.raises(ValueError, match="unknown quantisation kind 'depth'"):
        Quantizer().encode(1.0, "depth")


@pytest.mark.parametrize("angle, sx, sy, expected", [
    (0.1, 2.0, 1.0, 0.1 - math.pi),  # half-turn symmetry
    (-0.5, 2.0, 1.0, -0.5),  # already canonical
    (3.0, 2.0, 1.0, 3.0 - math.pi),
    (7.0, 2.0, 1.0, 7.0 - 3 * math.pi),  # wraps more than a full turn
    (0.3, 1.0, 1.0, 0.3 - math.pi),  # square: quarter-turn symmetry, into [-pi, -pi/2)
    (-1.2, 1.0, 1.0, -1.2 - math.pi / 2),
])
def test_fold_yaw(angle, sx, sy, expected):
    assert fold_yaw(angle, sx, sy) == pytest.approx(expected)


def test_folded_yaw_describes_the_same_footprint():
    from spacelm.scene.geometry import box_corners

    rng = np.random.default_rng(0)
    for _ in range(50):
        angle = rng.uniform(-10, 10)
        sx, sy = rng.uniform(0.2, 3, size=2)
        folded = fold_yaw(angle, sx, sy)
        a = box_corners(np.array([[0, 0, 0, angle, sx, sy, 1.0]]))[0, :4, :2]
        b = box_corners(np.array([[0, 0, 0, folded, sx, sy, 1.0]]))[0, :4, :2]
        # same set of corners, in some order
        d = np.linalg.norm(a[:, None] - b[None], axis=-1).min(axis=1)
        assert d.max() < 1e-9


def test_quantize_layout_snaps_to_bin_centres():
    q = Quantizer(640)
    layout = Layout(walls=[Wall(0.01, 0.0, 0.0, 4.0, 0.0, 0.0, 2.5, 0.0)],
                    boxes=[Box("bed", 2.0, 1.0, 0.3, -1.0, 2.0, 1.6, 0.6)])
    snapped = quantize_layout(layout, q)
    assert snapped.walls[0].ax == pytest.approx(0.025)  # bin 0 of 5 cm bins
    assert snapped.boxes[0].label == "bed"
    assert snapped.boxes[0].scale_x == pytest.approx(2.0 + q.bin_size("scale") / 2)
    assert quantize_layout(snapped, q) == snapped  # idempotent
