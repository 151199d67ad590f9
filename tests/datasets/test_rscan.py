import importlib.util
import json
import math
import struct
import zlib
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from spacelm.datasets import rscan
from spacelm.datasets.rooms import ConversionError

SCAN = "0cac7584-8d6f-2d13-8df8-c05e4307b418"
HAS_PILLOW = importlib.util.find_spec("PIL") is not None
READ_TEXTURE = rscan.read_texture  # the real reader, kept before any test replaces it
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
TEXTURE = np.array([[RED, GREEN], [BLUE, WHITE]], dtype=np.uint8)
UV_OF = {RED: 1, GREEN: 2, BLUE: 3, WHITE: 4}  # 1-based vt lines below: the quadrants' centres
UV_LINES = "vt 0.25 0.75\nvt 0.75 0.75\nvt 0.25 0.25\nvt 0.75 0.25\n"


def grid(x, y, z, n=4):
    axes = [np.linspace(lo, hi, n) if hi > lo else np.array([lo]) for lo, hi in (x, y, z)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def rows(yaw_deg=0.0, order=(0, 1, 2)):
    """normalizedAxes: rows are the axes x', y' (turned by yaw) and z, in the given order."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    axes = [[c, s, 0], [-s, c, 0], [0, 0, 1]]
    return [v for k in order for v in axes[k]]


TILT = math.radians(10)
# objectId: (label, vertices, NYU40 per vertex or one id, obb centroid, axesLengths, normalizedAxes)
OBJECTS = {
    1: ("wall", grid((0, 4), (0, 0.1), (0, 2.5)), 1, [2, 0.05, 1.25], [4, 2.5, 0.1],
        rows(order=(0, 2, 1))),  # vertical axis in the middle, as annotation tools may write it
    2: ("door", grid((1, 2), (0, 0.1), (0, 2)), 8, [1.5, 0.05, 1.0], [1, 0.1, 2], rows()),
    3: ("chair", grid((1.7, 2.3), (1.2, 1.8), (0, 0.9)), [5] * 63 + [0], [2, 1.5, 0.45],
        [0.9, 0.6, 0.5], rows(20, order=(2, 0, 1))),  # vertical first; one stray vertex
    4: ("ceiling", grid((0, 4), (0, 3), (2.5, 2.5)), 22, [2, 1.5, 2.5], [4, 3, 0.02], rows()),
    5: ("plant", grid((3, 3.3), (2, 2.3), (0, 1)), 40, [3.15, 2.15, 0.5], [0.3, 0.3, 1], rows()),
    7: ("box", grid((0.5, 0.9), (2, 2.4), (0, 0.4), n=2), [39, 39, 39, 39, 29, 29, 29, 29],
        [0.7, 2.2, 0.2], [0.4, 0.4, 0.4],
        [1, 0, 0, 0, math.cos(TILT), math.sin(TILT), 0, -math.sin(TILT), math.cos(TILT)]),
}
LAMP = {"id": 6, "objectId": 6, "label": "lamp", "segments": [],
        "obb": {"centroid": [1, 1, 1], "axesLengths": [0.2, 0.2, 0.2], "normalizedAxes": rows()}}


def write_png(path: Path, pixels: np.ndarray):
    """An 8-bit RGB PNG with filter 0 on every row."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\0" + pixels[r].tobytes() for r in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def read_unfiltered_png(path: Path) -> np.ndarray:
    """Decoder for the PNGs ``write_png`` makes, standing in for Pillow where it is missing."""
    data, pos, chunks = path.read_bytes(), 8, {}
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        chunks[kind] = chunks.get(kind, b"") + data[pos + 8:pos + 8 + length]
        pos += 12 + length
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    rows_ = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, 1 + 3 * width)
    assert (rows_[:, 0] == 0).all()
    return rows_[:, 1:].reshape(height, width, 3)


@pytest.fixture(autouse=True)
def texture_reader(monkeypatch):
    if not HAS_PILLOW:
        monkeypatch.setattr(rscan, "read_texture", read_unfiltered_png)


def write_scan(root: Path, scan=SCAN):
    """A scan in 3RScan's native files: ASCII label PLY with faces, semseg, textured OBJ."""
    folder = root / scan
    folder.mkdir(parents=True)
    unannotated = grid((3.5, 3.9), (0.5, 0.9), (0, 0.3), n=2)
    xyz = np.concatenate([obj[1] for obj in OBJECTS.values()] + [unannotated])
    object_id = np.concatenate([[k] * len(obj[1]) for k, obj in OBJECTS.items()] + [[0] * 8])
    nyu40 = np.concatenate([np.broadcast_to(obj[2], len(obj[1])) for obj in OBJECTS.values()]
                           + [[0] * 8])
    props = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
             ("objectId", "u2"), ("globalId", "u2"), ("NYU40", "u1"), ("Eigen13", "u1"),
             ("RIO27", "u1")]
    vertex = np.zeros(len(xyz), dtype=props)
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    vertex["red"] = (object_id * 40) % 256  # instance colours: must not reach the points
    vertex["objectId"], vertex["globalId"], vertex["NYU40"] = object_id, object_id + 100, nyu40
    n = len(xyz)
    triangles = np.stack([np.arange(n - 2), np.arange(1, n - 1), np.arange(2, n)], axis=1)
    faces = np.array([(t,) for t in triangles], dtype=[("vertex_indices", "<i4", (3,))])
    face = PlyElement.describe(faces, "face", len_types={"vertex_indices": "u1"},
                               val_types={"vertex_indices": "i4"})
    PlyData([PlyElement.describe(vertex, "vertex"), face], text=True).write(
        str(folder / rscan.LABELS_NAME))
    groups = [{"id": k, "objectId": k, "partId": k, "index": k, "label": label, "segments": [k],
               "obb": {"centroid": c, "axesLengths": lengths, "normalizedAxes": axes,
                       "dominantNormal": [0, 0, 1]}, "dominantNormal": [0, 0, 1]}
              for k, (label, _, _, c, lengths, axes) in OBJECTS.items()] + [LAMP]
    (folder / rscan.SEMSEG_NAME).write_text(json.dumps({"scan_id": scan, "segGroups": groups}))
    # OBJ: the same vertices plus one that no face uses; every face red, one extra face blue.
    lines = ["mtllib mesh.refined.mtl"] + [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in xyz]
    lines += ["v 9 9 9", UV_LINES + "vn 0 0 1", "usemtl mesh.refined_0"]
    faces = [(t, UV_OF[RED]) for t in triangles + 1] + [((1, 2, 3), UV_OF[BLUE])]
    lines += ["f " + " ".join(f"{v}/{uv}/1" for v in t) for t, uv in faces]
    (folder / rscan.MESH_NAME).write_text("\n".join(lines) + "\n")
    (folder / "mesh.refined.mtl").write_text(
        "newmtl mesh.refined_0\nKa 1 1 1\nKd 1 1 1\nmap_Kd mesh.refined_0.png\n")
    write_png(folder / "mesh.refined_0.png", TEXTURE)
    return folder


def test_convert_native_scan(tmp_path):
    write_scan(tmp_path)
    (tmp_path / "3RScan.json").write_text("[]")
    assert rscan.list_scenes(tmp_path) == [SCAN]
    [room] = rscan.convert_scene(tmp_path, SCAN)
    assert (room.sample_id, room.source, room.scene, room.region, room.room_type) == (
        f"3rscan_{SCAN}", "3rscan", SCAN, "0", "")
    n = sum(len(obj[1]) for obj in OBJECTS.values()) + 8
    assert room.xyz.shape == (n, 3)  # the OBJ's extra vertex on no face is gone
    assert tuple(room.rgb[0]) == (128, 0, 128)  # red and blue corners: the mean, rounded
    assert (room.rgb[3:] == RED).all()
    [wall] = room.layout.walls
    assert astuple(wall) == pytest.approx((0, 0.05, 0, 4, 0.05, 0, 2.5, 0.1))
    [door] = room.layout.doors
    assert astuple(door) == pytest.approx((0, 1.5, 0.05, 1.0, 1.0, 2.0))
    chair, box = room.layout.boxes
    assert chair.label == "chair"  # 63 vertices say NYU40 5, one says 0
    assert astuple(chair)[1:] == pytest.approx((2, 1.5, 0.45, math.radians(20), 0.6, 0.5, 0.9))
    assert box.label == "box"  # 4 votes for 29 (box), 4 for 39: the tie goes to the smaller id
    depth, height = 0.4 * (math.cos(TILT) + math.sin(TILT)), 0.4 * (math.sin(TILT) + math.cos(TILT))
    assert (box.angle_z, box.scale_x, box.scale_y, box.scale_z) == pytest.approx(
        (0, 0.4, depth, height), abs=1e-9)
    assert room.dropped == {"floor_or_ceiling": 1, "unknown_class": 1, "object_without_points": 1,
                            "tilted_obb_enclosed": 1, "vertex_without_texture": 1}


def test_instance_colours_of_the_label_ply_are_not_used(tmp_path):
    write_scan(tmp_path)
    [room] = rscan.convert_scene(tmp_path, SCAN)
    assert set(map(tuple, room.rgb)) <= {RED, (128, 0, 128), (170, 0, 85), (191, 0, 64)}


def replace_in(path: Path, old: str, new: str):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize("name, damage, message", [
    (rscan.SEMSEG_NAME, None, "missing file"),
    (rscan.SEMSEG_NAME, lambda p: p.write_text('{"segGroups": [{"objectId": 1, "label": "x"}]}'),
     r"segGroups\[0\] lacks a usable objectId, label or obb: KeyError"),
    (rscan.LABELS_NAME, None, "missing file"),
    (rscan.LABELS_NAME, lambda p: replace_in(p, "objectId", "instance"),
     "lack the objectId and NYU40"),
    (rscan.MESH_NAME, None, "missing file"),
    (rscan.MESH_NAME, lambda p: replace_in(p, "mtllib mesh.refined.mtl\n", ""), "no 'mtllib'"),
    (rscan.MESH_NAME, lambda p: replace_in(p, "f 1/1/1 2/1/1 3/1/1", "f 1 2 3"),
     "no texture coordinates"),
    (rscan.MESH_NAME, lambda p: replace_in(p, "f 1/1/1 2/1/1 3/1/1", "f 1/1/1 2/1/1 3/1/1 4/1/1"),
     "faces must be triangles"),
    (rscan.MESH_NAME, lambda p: replace_in(p, "f 1/1/1 2/1/1 3/1/1", "f 1/1/1 2/1/1 3/9/1"),
     "refers to a vertex or uv that does not exist"),
    ("mesh.refined.mtl", lambda p: p.write_text("newmtl a\n"), "expected one 'map_Kd'"),
])
def test_bad_files_raise_naming_file_and_problem(tmp_path, name, damage, message):
    path = write_scan(tmp_path) / name
    if damage is None:
        path.unlink()
    else:
        damage(path)
    with pytest.raises(ConversionError, match=message) as info:
        rscan.convert_scene(tmp_path, SCAN)
    assert name in str(info.value)


def test_texture_needs_pillow(tmp_path):
    path = tmp_path / "t.png"
    write_png(path, TEXTURE)
    if HAS_PILLOW:
        np.testing.assert_array_equal(READ_TEXTURE(path), TEXTURE)
    else:
        with pytest.raises(ImportError, match="pip install pillow"):
            READ_TEXTURE(path)
