import io
import os
import struct

import numpy as np
import pytest

from spacelm.points import PointCloud, PointFileError, read_ply, read_points, write_ply
from spacelm.points import ply as ply_module

ENCODINGS = ["binary_little_endian", "binary_big_endian", "ascii"]


def make_cloud(n=50, seed=0):
    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(n, 3))
    return PointCloud(
        xyz=rng.uniform(-5, 5, (n, 3)),
        rgb=rng.integers(0, 256, (n, 3), dtype=np.uint8),
        normals=normals / np.linalg.norm(normals, axis=1, keepdims=True),
        extra={"label": rng.integers(-1, 40, n).astype(np.int32),
               "intensity": rng.random(n).astype(np.float32)},
    )


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("color_format", ["uchar", "float"])
def test_round_trip_keeps_every_property(tmp_path, encoding, color_format):
    cloud = make_cloud()
    path = tmp_path / "scene.ply"
    write_ply(path, cloud, encoding=encoding, color_format=color_format)
    back = read_ply(path)
    np.testing.assert_array_equal(back.xyz, cloud.xyz)  # float32 survives ASCII via %.9g
    np.testing.assert_array_equal(back.rgb, cloud.rgb)  # float colours round back to the same uchar
    np.testing.assert_array_equal(back.normals, cloud.normals)
    assert set(back.extra) == {"label", "intensity"}
    assert back.extra["label"].dtype == np.int32
    np.testing.assert_array_equal(back.extra["label"], cloud.extra["label"])
    np.testing.assert_array_equal(back.extra["intensity"], cloud.extra["intensity"])
    header = path.read_bytes().split(b"end_header")[0].decode()
    assert f"format {encoding} 1.0" in header
    assert ("property float red" in header) == (color_format == "float")
    assert [p for p in os.listdir(tmp_path)] == ["scene.ply"]  # no temporary file left behind


def test_big_endian_bytes_are_big_endian(tmp_path):
    path = tmp_path / "be.ply"
    write_ply(path, PointCloud(np.array([[1.5, -2.0, 3.25]])), encoding="binary_big_endian")
    body = path.read_bytes().split(b"end_header\n")[1]
    assert struct.unpack(">3f", body) == (1.5, -2.0, 3.25)


def test_write_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "scene.ply"
    write_ply(path, make_cloud(n=5))
    before = path.read_bytes()

    def fail(*args, **kwargs):  # fails after the header has gone to the temporary file
        raise OSError("disk full")

    monkeypatch.setattr(ply_module, "_write_ascii_rows", fail)
    with pytest.raises(OSError, match="disk full"):
        write_ply(path, make_cloud(n=7), encoding="ascii")
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["scene.ply"]


def test_int64_extra_is_stored_as_int32_or_refused(tmp_path):
    ok = PointCloud(np.zeros((2, 3)), extra={"label": np.array([3, -7], dtype=np.int64)})
    write_ply(tmp_path / "ok.ply", ok)
    assert read_ply(tmp_path / "ok.ply").extra["label"].tolist() == [3, -7]
    too_big = PointCloud(np.zeros((1, 3)), extra={"id": np.array([2**40], dtype=np.int64)})
    with pytest.raises(ValueError, match="'id'"):
        write_ply(tmp_path / "bad.ply", too_big)


def test_truncated_binary_names_file_and_counts(tmp_path):
    path = tmp_path / "cut.ply"
    write_ply(path, make_cloud(n=10))  # 3*4 + 3*4 + 3 + 4 + 4 = 35 bytes per vertex
    path.write_bytes(path.read_bytes()[:-40])  # 350 - 40 = 310 bytes = 8 whole vertices
    with pytest.raises(PointFileError, match="truncated") as err:
        read_ply(path)
    assert str(path) in str(err.value)
    assert "350 bytes" in str(err.value) and "8 whole vertices" in str(err.value)


def test_truncated_ascii(tmp_path):
    path = tmp_path / "cut.ply"
    write_ply(path, make_cloud(n=10), encoding="ascii")
    path.write_text("\n".join(path.read_text().splitlines()[:-3]) + "\n")
    with pytest.raises(PointFileError, match=r"cut\.ply: truncated: header declares 10 vertices, "
                                             r"found 7 rows"):
        read_ply(path)


@pytest.mark.parametrize("text, problem", [
    (b"plx\nformat ascii 1.0\n", "does not start with 'ply'"),
    (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n", "no 'end_header'"),
    (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n0\n",
     "unknown property type 'float128'"),
    (b"ply\nformat binary_middle_endian 1.0\nend_header\n", "line 2 not understood"),
    (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float int int x\nend_header\n0\n",
     "line 4 not understood"),
    (b"ply\nelement vertex 1\nproperty float x\nend_header\n0\n", "no 'format' line"),
])
def test_bad_header(tmp_path, text, problem):
    path = tmp_path / "bad.ply"
    path.write_bytes(text)
    with pytest.raises(PointFileError, match="bad PLY header") as err:
        read_ply(path)
    assert problem in str(err.value) and str(path) in str(err.value)


def test_no_vertex_element_and_missing_coordinate(tmp_path):
    path = tmp_path / "faces.ply"
    path.write_bytes(b"ply\nformat ascii 1.0\nelement face 0\n"
                     b"property list uchar int vertex_indices\nend_header\n")
    with pytest.raises(PointFileError, match=r"no 'vertex' element .*\['face'\]"):
        read_ply(path)
    path = tmp_path / "flat.ply"
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                     b"property float y\nend_header\n1 2\n")
    with pytest.raises(PointFileError, match="no z property"):
        read_ply(path)


def test_nan_rows_raise_or_are_dropped_with_count(tmp_path):
    cloud = make_cloud(n=10)
    xyz = cloud.xyz.copy()
    xyz[3, 1], xyz[7, 2] = np.nan, np.inf
    path = tmp_path / "nan.ply"
    write_ply(path, PointCloud(xyz, cloud.rgb, cloud.normals, cloud.extra))
    with pytest.raises(PointFileError, match="2 of 10 points have NaN or infinite coordinates "
                                             r"\(first at row 3\)"):
        read_ply(path)
    with pytest.warns(UserWarning, match="dropped 2 of 10 points"):
        kept = read_ply(path, drop_invalid=True)
    rows = [i for i in range(10) if i not in (3, 7)]
    np.testing.assert_array_equal(kept.xyz, cloud.xyz[rows])
    np.testing.assert_array_equal(kept.extra["label"], cloud.extra["label"][rows])


def test_empty_cloud_is_an_error(tmp_path):
    path = tmp_path / "empty.ply"
    write_ply(path, PointCloud(np.zeros((0, 3))))
    with pytest.raises(PointFileError, match=r"empty\.ply: empty point cloud"):
        read_ply(path)


def test_colour_spellings_and_float_colours(tmp_path):
    path = tmp_path / "colours.ply"
    path.write_bytes(b"ply\nformat ascii 1.0\ncomment from some scanner\nelement vertex 2\n"
                     b"property double x\nproperty double y\nproperty double z\n"
                     b"property float r\nproperty float g\nproperty float b\n"
                     b"property uchar alpha\nend_header\n"
                     b"0 0 0 0 0.5 1 255\n1 2 3 1 0.2 0 128\n")
    cloud = read_ply(path)
    assert cloud.rgb.tolist() == [[0, 128, 255], [255, 51, 0]]
    assert cloud.extra["alpha"].tolist() == [255, 128]
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                     b"property float y\nproperty float z\nproperty uchar diffuse_red\n"
                     b"property uchar diffuse_green\nproperty uchar diffuse_blue\nend_header\n"
                     b"0 0 0 10 20 30\n")
    assert read_ply(path).rgb.tolist() == [[10, 20, 30]]


def test_vertices_are_read_around_mesh_faces(tmp_path):
    # Faces after the vertices (ScanNet meshes) are skipped; faces before them are walked past.
    xyz = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    vertex = b"element vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
    face = b"element face 1\nproperty list uchar int vertex_indices\n"
    face_data = struct.pack("<B3i", 3, 0, 1, 2)
    for header, body in [(vertex + face, xyz.tobytes() + face_data),
                         (face + vertex, face_data + xyz.tobytes())]:
        path = tmp_path / "mesh.ply"
        path.write_bytes(b"ply\nformat binary_little_endian 1.0\n" + header + b"end_header\n"
                         + body)
        np.testing.assert_array_equal(read_ply(path).xyz, xyz)


def test_npy_variants(tmp_path):
    xyz = np.array([[0, 1, 2], [3, 4, 5]], np.float32)
    np.save(tmp_path / "xyz.npy", xyz)
    cloud = read_points(tmp_path / "xyz.npy")
    np.testing.assert_array_equal(cloud.xyz, xyz)
    assert cloud.rgb is None
    np.save(tmp_path / "unit.npy", np.c_[xyz, [[1.0, 0.5, 0.0], [0.0, 0.0, 0.2]]])
    assert read_points(tmp_path / "unit.npy").rgb.tolist() == [[255, 128, 0], [0, 0, 51]]
    np.save(tmp_path / "byte.npy", np.c_[xyz, [[255.0, 7, 0], [1, 2, 3]], [[4.0], [9.0]]])
    cloud = read_points(tmp_path / "byte.npy")
    assert cloud.rgb.tolist() == [[255, 7, 0], [1, 2, 3]]
    assert cloud.extra["column6"].tolist() == [4.0, 9.0]
    np.save(tmp_path / "flat.npy", np.zeros((4, 2)))
    with pytest.raises(PointFileError, match=r"flat\.npy: expected a numeric N x 3"):
        read_points(tmp_path / "flat.npy")


def test_bin_variants(tmp_path):
    data = np.array([[0, 1, 2, 10, 20, 30], [3, 4, 5, 255, 0, 1]], np.float32)
    data.tofile(tmp_path / "scan.bin")
    cloud = read_points(tmp_path / "scan.bin")
    np.testing.assert_array_equal(cloud.xyz, data[:, :3])
    assert cloud.rgb.tolist() == [[10, 20, 30], [255, 0, 1]]
    # The same 12 floats read as xyz + intensity: 3 points, the 4th column kept.
    cloud = read_points(tmp_path / "scan.bin", bin_columns=4)
    assert len(cloud) == 3 and cloud.extra["column3"].tolist() == [10.0, 4.0, 1.0]
    with pytest.raises(PointFileError, match=r"scan\.bin: 12 float32 values is not a multiple of "
                                             "bin_columns=5"):
        read_points(tmp_path / "scan.bin", bin_columns=5)
    with pytest.raises(PointFileError, match=r"unknown point file type '\.xyz'"):
        read_points(tmp_path / "scan.xyz")


def test_ascii_rows_cross_chunk_boundaries():
    vertex = np.zeros(7, dtype=[("x", "f4"), ("label", "i4")])
    vertex["x"], vertex["label"] = np.arange(7) / 4, np.arange(7) - 3
    out = io.BytesIO()
    ply_module._write_ascii_rows(out, vertex, chunk=3)  # chunks of 3, 3 and 1 rows
    assert out.getvalue().decode().splitlines() == [
        "0 -3", "0.25 -2", "0.5 -1", "0.75 0", "1 1", "1.25 2", "1.5 3"]
