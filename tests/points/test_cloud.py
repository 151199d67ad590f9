import numpy as np
import pytest

from spacelm.points import PointCloud, rgb_to_uint8


def test_pointcloud_converts_and_validates():
    cloud = PointCloud(np.zeros((2, 3), np.float64), normals=[[0, 0, 1], [0, 1, 0]])
    assert cloud.xyz.dtype == np.float32 and cloud.normals.dtype == np.float32
    with pytest.raises(ValueError, match=r"rgb must be \(2, 3\) uint8"):
        PointCloud(np.zeros((2, 3)), rgb=np.zeros((2, 3)))  # float colours are ambiguous
    with pytest.raises(ValueError, match=r"xyz must have shape \(N, 3\), got \(2, 2\)"):
        PointCloud(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="extra property 'label'"):
        PointCloud(np.zeros((2, 3)), extra={"label": np.zeros(3)})


def test_select_applies_to_every_array():
    cloud = PointCloud(np.arange(18).reshape(6, 3), rgb=np.full((6, 3), 9, np.uint8),
                       normals=np.ones((6, 3)), extra={"label": np.arange(6)})
    picked = cloud.select(np.array([True, False] * 3))
    assert picked.xyz[:, 0].tolist() == [0, 6, 12]
    assert picked.extra["label"].tolist() == [0, 2, 4]
    assert len(picked.rgb) == len(picked.normals) == 3


def test_rgb_to_uint8_scales_unit_floats_and_checks_integers():
    assert rgb_to_uint8(np.array([[0.2, 1.0, np.nan]])).tolist() == [[51, 255, 0]]
    assert rgb_to_uint8(np.array([[12.4, 300.0, 0.0]])).tolist() == [[12, 255, 0]]  # 0-255 floats
    assert rgb_to_uint8(np.array([[1, 2, 255]], np.int32)).tolist() == [[1, 2, 255]]
    with pytest.raises(ValueError, match="0-255, found 0-256"):
        rgb_to_uint8(np.array([[0, 256, 5]], np.uint16))
