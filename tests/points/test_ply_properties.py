"""Malformed PLY files: every one reads as a PointCloud or raises PointFileError naming the file.

Each named test pins one failure from the 2026-12 reliability report (P1-P6); the hypothesis tests
mutate headers and bodies of valid files and also bound the memory the reader takes.
"""

import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacelm.points import PointCloud, PointFileError, read_ply, write_ply

HEADER = b"ply\nformat ascii 1.0\nelement vertex %d\nproperty float x\nproperty float y\nproperty float z\n"


def _write(tmp_path, data: bytes, name="bad.ply"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _error(path) -> str:
    with pytest.raises(PointFileError) as err:
        read_ply(path)
    assert str(path) in str(err.value)
    return str(err.value)


def test_zero_vertices_is_an_empty_cloud_error(tmp_path):  # P1
    assert "empty point cloud (0 points)" in _error(_write(tmp_path, HEADER % 0 + b"end_header\n"))


@pytest.mark.parametrize("count", [10**12, 2**63, 10**18])
@pytest.mark.parametrize("encoding", ["ascii", "binary_little_endian"])
def test_huge_declared_counts_are_refused_before_allocating(tmp_path, count, encoding):  # P2
    header = (HEADER % count).replace(b"ascii", encoding.encode())
    path = _write(tmp_path, header + b"end_header\n" + b"0 0 0\n" * 4)
    tracemalloc.start()
    message = _error(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "truncated" in message and f"{count}" in message
    assert peak < 1 << 20


LIST_HEADER = (b"ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
               b"property list uchar int extra\nproperty float z\n")


def _list_rows(lengths) -> bytes:
    """Two binary vertices (x, y, extra list, z) = (1, 2, [7]*n, 3) and (4, 5, [8]*m, 6)."""
    (n, m) = lengths
    return (struct.pack("<2fB", 1, 2, n) + struct.pack(f"<{n}i", *[7] * n) + struct.pack("<f", 3)
            + struct.pack("<2fB", 4, 5, m) + struct.pack(f"<{m}i", *[8] * m) + struct.pack("<f", 6))


@pytest.mark.parametrize("lengths", [(0, 0), (3, 3), (1, 2)])  # uniform lists: one frombuffer; else a walk
def test_binary_vertices_with_list_properties(tmp_path, lengths):
    path = _write(tmp_path, LIST_HEADER + b"end_header\n" + _list_rows(lengths))
    assert read_ply(path).xyz.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_elements_before_the_vertices_are_walked_past(tmp_path):
    before = (b"element nothing 3\nelement face 1\nproperty list uchar int vertex_indices\n"
              b"property uchar flags\n")
    data = (LIST_HEADER.replace(b"element vertex", before + b"element vertex") + b"end_header\n"
            + struct.pack("<B3iB", 3, 0, 1, 1, 9) + _list_rows((1, 2)))
    assert read_ply(_write(tmp_path, data)).xyz.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_huge_face_count_before_the_vertices(tmp_path):  # P2, with a list property
    face = b"element face 9223372036854775808\nproperty list uchar int vertex_indices\n"
    data = LIST_HEADER.replace(b"element vertex", face + b"element vertex") + b"end_header\n" + _list_rows((0, 1))
    assert "'face' declares 9223372036854775808 rows" in _error(_write(tmp_path, data))


@pytest.mark.parametrize("lengths", [(2**31 - 1, 0), (0, 2**31 - 1)])
def test_list_lengths_the_file_cannot_hold(tmp_path, lengths):  # plyfile allocated 8 GiB for this
    header = LIST_HEADER.replace(b"list uchar int", b"list int int")
    rows = b"".join(struct.pack("<2fi", 1, 2, n) + struct.pack("<f", 3) for n in lengths)
    path = _write(tmp_path, header + b"end_header\n" + rows)
    tracemalloc.start()
    message = _error(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "element 'vertex': truncated: row" in message and peak < 1 << 20


def test_ascii_vertices_with_list_properties(tmp_path):
    data = (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty list uchar int extra\n"
            b"property float y\nproperty float z\nelement face 1\nproperty list uchar int vertex_indices\n"
            b"end_header\n1 0 2 3\n4 2 9 9 5 6\n3 0 1 1\n")
    assert read_ply(_write(tmp_path, data)).xyz.tolist() == [[1, 2, 3], [4, 5, 6]]
    bad = data.replace(b"4 2 9 9 5 6", b"4 3 9 9 5 6")  # the list claims one value more
    assert "line 12: too few values" in _error(_write(tmp_path, bad, "short.ply"))


def test_count_with_thousands_of_digits(tmp_path):  # P4
    message = _error(_write(tmp_path, HEADER.replace(b"%d", b"9" * 4301) + b"end_header\n"))
    assert "line 3" in message and "a 4301-digit count" in message


def test_duplicate_property_names_the_line(tmp_path):  # P5
    data = HEADER % 1 + b"property float x\nend_header\n0 0 0 0\n"
    assert "line 7: property 'x' of element 'vertex' declared twice" in _error(_write(tmp_path, data))


@pytest.mark.parametrize("row, bad", [(b"0 0 0 300 0 0", "300"), (b"0 0 0 0 -1 0", "-1"),
                                      (b"0 0 0 0 0 0.5", "0.5")])
def test_ascii_colours_out_of_range_or_fractional(tmp_path, row, bad):  # P6: was wrapped to uint8
    data = (HEADER % 2 + b"property uchar red\nproperty uchar green\nproperty uchar blue\n"
            b"end_header\n1 2 3 4 5 6\n" + row + b"\n")
    column = 1 + row.split().index(bad.encode())  # 1-based
    message = _error(_write(tmp_path, data))
    assert f"line 12, column {column}" in message and f"{bad} is not a whole number in 0-255" in message


def test_ascii_colours_in_range_still_read(tmp_path):
    data = (HEADER % 2 + b"property uchar red\nproperty uchar green\nproperty uchar blue\n"
            b"end_header\n1 2 3 4 5 6\n0 0 0 255 0 7\n")
    assert read_ply(_write(tmp_path, data)).rgb.tolist() == [[4, 5, 6], [255, 0, 7]]


def test_integer_colours_out_of_range_in_binary_name_the_file(tmp_path):
    cloud = PointCloud(np.zeros((1, 3)), extra={"red": np.array([300], np.int32),
                                                 "green": np.array([0], np.int32),
                                                 "blue": np.array([0], np.int32)})
    write_ply(tmp_path / "int.ply", cloud)
    assert "integer colours must lie in 0-255" in _error(tmp_path / "int.ply")


# ---- property tests ----------------------------------------------------------------------------

def _valid_file(tmp_path, n: int, encoding: str, with_list: bool) -> bytes:
    """A valid PLY; ``with_list`` adds an (empty) list property per vertex, which plyfile reads."""
    rng = np.random.default_rng(n)
    cloud = PointCloud(rng.uniform(-3, 3, (n, 3)), rgb=rng.integers(0, 256, (n, 3), dtype=np.uint8),
                       extra={"label": rng.integers(-5, 40, n).astype(np.int32)})
    write_ply(tmp_path / "valid.ply", cloud, encoding=encoding)
    head, body = (tmp_path / "valid.ply").read_bytes().split(b"end_header\n")
    if not with_list:
        return head + b"end_header\n" + body
    head = head.replace(b"property int label\n", b"property int label\nproperty list uchar int extra\n")
    if encoding == "ascii":
        body = b"".join(line + b" 0\n" for line in body.splitlines())
    else:  # one zero length byte after each row
        rows = np.frombuffer(body, np.uint8).reshape(n, -1)  # (n, row bytes)
        body = np.hstack([rows, np.zeros((n, 1), np.uint8)]).tobytes()
    return head + b"end_header\n" + body


def _read_within_budget(path) -> None:
    """Read ``path``: a PointCloud or a PointFileError naming it, with peak memory a few file sizes."""
    size = path.stat().st_size
    tracemalloc.start()
    try:
        cloud = read_ply(path)
        assert isinstance(cloud, PointCloud) and len(cloud) > 0
    except PointFileError as err:
        assert str(path) in str(err)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 64 * size + (2 << 20), (peak, size)


ENCODING = st.sampled_from(["ascii", "binary_little_endian", "binary_big_endian"])
HEADER_EDITS = st.sampled_from([
    (b"element vertex ", b"element vertex 9"), (b"element vertex ", b"element vertex 1"),
    (b"element vertex ", b"element vertex 99999999999999999"), (b"element face ", b"element face 7777777777"),
    (b"property float x", b"property float x\nproperty float x"), (b"property uchar red", b"property float red"),
    (b"property uchar red", b"property int red"), (b"property uchar red", b"property char red"),
    (b"property float y", b"property double y"), (b"property float z\n", b""),
    (b"property int label", b"property list uchar int label"), (b"end_header", b"end_heade"),
    (b"1.0", b"2.0"), (b"ascii", b"binary_little_endian"), (b"binary_little_endian", b"ascii"),
    (b"binary_big_endian", b"binary_little_endian"), (b"\nproperty", b"\ncomment x\nproperty"),
])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 40), encoding=ENCODING, with_list=st.booleans(),
       edits=st.lists(HEADER_EDITS, max_size=3))
def test_mutated_headers(tmp_path, n, encoding, with_list, edits):
    data = _valid_file(tmp_path, n, encoding, with_list)
    head, _, body = data.partition(b"end_header\n")
    for old, new in edits:
        head = head.replace(old, new, 1)
    _read_within_budget(_write(tmp_path, head + b"end_header\n" + body))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 40), encoding=ENCODING, with_list=st.booleans(), data=st.data())
def test_mutated_bodies(tmp_path, n, encoding, with_list, data):
    valid = bytearray(_valid_file(tmp_path, n, encoding, with_list))
    start = valid.index(b"end_header\n") + len(b"end_header\n")
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(start, len(valid)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "word"]))
        if action == "flip" and at < len(valid):
            valid[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del valid[at:at + data.draw(st.integers(1, 64))]
        elif action == "insert":
            valid[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:  # ASCII-shaped damage: odd numbers where values go
            valid[at:at] = data.draw(st.sampled_from([b" 1e400", b" nan", b" -1", b" 300", b" 0.5 ",
                                                      b"\n", b" 9" * 30, b" x"]))
    _read_within_budget(_write(tmp_path, bytes(valid)))


@pytest.mark.parametrize("encoding", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_meshes_with_polygons_of_every_size_read_as_plyfile_reads_them(tmp_path, encoding):
    # Faces of 3-6 corners before the vertices, and a per-vertex list of 0-2 values: no fixed row size.
    plyfile = pytest.importorskip("plyfile")
    rng = np.random.default_rng(0)
    n = 50
    vertex = np.empty(n, [("x", "f4"), ("y", "f4"), ("z", "f4"), ("tags", "O"), ("red", "u1"),
                          ("green", "u1"), ("blue", "u1"), ("label", "i2")])
    for name in "xyz":
        vertex[name] = rng.uniform(-3, 3, n)
    for name in ("red", "green", "blue"):
        vertex[name] = rng.integers(0, 256, n)
    vertex["label"] = rng.integers(-100, 100, n)
    vertex["tags"] = [rng.integers(0, 9, rng.integers(0, 3)).astype("i4") for _ in range(n)]
    faces = np.empty(20, [("vertex_indices", "O")])
    faces["vertex_indices"] = [rng.integers(0, n, rng.integers(3, 7)).astype("i4") for _ in range(20)]
    path = tmp_path / "mesh.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(faces, "face"), plyfile.PlyElement.describe(vertex, "vertex")],
                    text=encoding == "ascii", byte_order="<" if encoding.endswith("little_endian") else ">"
                    ).write(str(path))
    reference = plyfile.PlyData.read(str(path))["vertex"].data
    cloud = read_ply(path)
    np.testing.assert_array_equal(cloud.xyz, np.stack([reference[a] for a in "xyz"], axis=1))
    np.testing.assert_array_equal(cloud.rgb, np.stack([reference[c] for c in ("red", "green", "blue")], axis=1))
    np.testing.assert_array_equal(cloud.extra["label"], reference["label"])
    assert set(cloud.extra) == {"label"}  # list properties are not kept
