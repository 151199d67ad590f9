import json
from dataclasses import astuple

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from spacelm.datasets import structured3d as s3d
from spacelm.datasets.rooms import ConversionError

# One 4 x 3 x 2.8 m room (millimetres, as in Structured3D), walls 0.2 m thick: a door in the south
# wall (x 1.0-1.9 m, up to 2 m) and a window in the east wall (y 1.0-2.2 m, z 0.9-2.1 m).
JUNCTIONS = [
    (0, 0, 0), (4000, 0, 0), (4000, 3000, 0), (0, 3000, 0),  # 0-3 floor corners
    (0, 0, 2800), (4000, 0, 2800), (4000, 3000, 2800), (0, 3000, 2800),  # 4-7 ceiling corners
    (1000, 0, 0), (1900, 0, 0), (1900, 0, 2000), (1000, 0, 2000),  # 8-11 door, room side
    (1000, -200, 0), (1900, -200, 0), (1900, -200, 2000), (1000, -200, 2000),  # 12-15 outside
    (4000, 1000, 900), (4000, 2200, 900), (4000, 2200, 2100), (4000, 1000, 2100),  # 16-19 window
    (4200, 1000, 900), (4200, 2200, 900), (4200, 2200, 2100), (4200, 1000, 2100),  # 20-23 outside
]
# (type, normal, polygons): each polygon a junction cycle; a wall's second polygon is its hole.
PLANES = [
    ("floor", (0, 0, 1), [[0, 1, 2, 3]]),
    ("ceiling", (0, 0, -1), [[4, 5, 6, 7]]),
    ("wall", (0, 1, 0), [[0, 1, 5, 4], [8, 9, 10, 11]]),  # south, with the door hole
    ("wall", (-1, 0, 0), [[1, 2, 6, 5], [16, 17, 18, 19]]),  # east, with the window hole
    ("wall", (0, -1, 0), [[2, 3, 7, 6]]),
    ("wall", (1, 0, 0), [[3, 0, 4, 7]]),
    ("floor", (0, 0, 1), [[8, 9, 13, 12]]),  # 6-9: the door's reveal
    ("ceiling", (0, 0, -1), [[11, 10, 14, 15]]),
    ("wall", (1, 0, 0), [[8, 11, 15, 12]]),
    ("wall", (-1, 0, 0), [[9, 10, 14, 13]]),
    ("floor", (0, 0, 1), [[16, 17, 21, 20]]),  # 10-13: the window's reveal
    ("ceiling", (0, 0, -1), [[19, 18, 22, 23]]),
    ("wall", (0, 1, 0), [[16, 19, 23, 20]]),
    ("wall", (0, -1, 0), [[17, 18, 22, 21]]),
]
SEMANTICS = [
    {"ID": 485142, "type": "living room", "planeID": [0, 1, 2, 3, 4, 5]},
    {"ID": 7, "type": "door", "planeID": [6, 7, 8, 9]},
    {"ID": 8, "type": "window", "planeID": [10, 11, 12, 13]},
    {"ID": 9, "type": "outwall", "planeID": []},
]
POINTS_MM = np.array([
    [2000, 1500, 1000],  # inside
    [0, 1500, 1000],  # on the west wall
    [-30, 1500, 1000],  # 3 cm behind it: within the crop margin
    [-500, 1500, 1000],  # outside
    [2000, 1500, 3500],  # above the ceiling
    [1500, -150, 1000],  # in the door's reveal, 15 cm outside the room
], np.float32)


def annotation():
    edges = sorted({tuple(sorted((c[i], c[(i + 1) % len(c)])))
                    for _, _, polygons in PLANES for c in polygons for i in range(len(c))})
    line_junctions = np.zeros((len(edges), len(JUNCTIONS)), int)
    for k, (a, b) in enumerate(edges):
        line_junctions[k, [a, b]] = 1
    plane_lines = np.zeros((len(PLANES), len(edges)), int)
    for p, (_, _, polygons) in enumerate(PLANES):
        for c in polygons:
            for i in range(len(c)):
                plane_lines[p, edges.index(tuple(sorted((c[i], c[(i + 1) % len(c)]))))] = 1
    junctions = np.array(JUNCTIONS, float)
    return {
        "junctions": [{"ID": i, "coordinate": list(c)} for i, c in enumerate(JUNCTIONS)],
        "lines": [{"ID": k, "point": junctions[a].tolist(),
                   "direction": (junctions[b] - junctions[a]).tolist()} for k, (a, b) in enumerate(edges)],
        "planes": [{"ID": p, "type": t, "normal": list(n), "offset": 0.0}
                   for p, (t, n, _) in enumerate(PLANES)],
        "semantics": SEMANTICS,
        "planeLineMatrix": plane_lines.tolist(),
        "lineJunctionMatrix": line_junctions.tolist(),
        "cuboids": [], "manhattan": [],
    }


def write_cloud(path, xyz):
    """An ASCII PLY like RoomFormer's export_ply: x y z (mm) and uchar red green blue."""
    vertex = np.zeros(len(xyz), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"),
                                       ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    vertex["green"] = np.arange(len(xyz))
    PlyData([PlyElement.describe(vertex, "vertex")], text=True).write(str(path))


@pytest.fixture
def root(tmp_path):
    scene = tmp_path / "scene_00000"
    scene.mkdir()
    (scene / "annotation_3d.json").write_text(json.dumps(annotation()))
    (scene / "bbox_3d.json").write_text(json.dumps([
        {"ID": 1, "basis": np.eye(3).tolist(), "coeffs": [400, 300, 200], "centroid": [2000, 1500, 500]},
        {"ID": 2, "basis": np.eye(3).tolist(), "coeffs": [400, 300, 200], "centroid": [9000, 0, 500]},
    ]))
    write_cloud(scene / "point_cloud.ply", POINTS_MM)
    (tmp_path / "not_a_scene").mkdir()
    return tmp_path


def test_scenes_are_listed(root):
    assert s3d.list_scenes(root) == ["scene_00000"]


def test_room_points_in_metres(root):
    [room] = s3d.convert_scene(root, "scene_00000")
    assert (room.sample_id, room.region, room.room_type) == (
        "structured3d_scene_00000_485142", "485142", "living room")
    np.testing.assert_allclose(room.xyz, POINTS_MM[:3] / 1000, atol=1e-6)
    np.testing.assert_array_equal(room.rgb[:, 1], [0, 1, 2])


def test_walls_from_wall_planes(root):
    [room] = s3d.convert_scene(root, "scene_00000")
    walls = [astuple(w) for w in room.layout.walls]
    assert walls == [pytest.approx(w) for w in [
        (4, 0, 0, 0, 0, 0, 2.8, 0), (4, 3, 0, 4, 0, 0, 2.8, 0),
        (0, 3, 0, 4, 3, 0, 2.8, 0), (0, 0, 0, 0, 3, 0, 2.8, 0)]]


def test_door_and_window_attach_to_their_walls(root):
    [room] = s3d.convert_scene(root, "scene_00000")
    [door], [window] = room.layout.doors, room.layout.windows
    assert astuple(door) == pytest.approx((0, 1.45, 0, 1.0, 0.9, 2.0))
    assert astuple(window) == pytest.approx((1, 4, 1.6, 1.5, 1.2, 1.2))
    assert room.layout.boxes == ()


def test_unclassed_objects_are_counted(root):
    [room] = s3d.convert_scene(root, "scene_00000")
    assert room.dropped == {"object_without_class": 1}
    (root / "scene_00000" / "bbox_3d.json").unlink()
    [room] = s3d.convert_scene(root, "scene_00000")
    assert room.dropped == {}


def test_room_without_points_gives_no_sample(root):
    write_cloud(root / "scene_00000" / "point_cloud.ply", POINTS_MM[3:4])
    assert s3d.convert_scene(root, "scene_00000") == []


def write_annotation(root, data):
    (root / "scene_00000" / "annotation_3d.json").write_text(json.dumps(data))


def test_malformed_annotations_are_named(root):
    data = annotation()
    data["lineJunctionMatrix"] = [row[:-1] for row in data["lineJunctionMatrix"]]
    write_annotation(root, data)
    with pytest.raises(ConversionError, match=r"annotation_3d\.json: planeLineMatrix is \(14, \d+\) "
                                              r"and lineJunctionMatrix \(\d+, 23\)"):
        s3d.convert_scene(root, "scene_00000")
    data = annotation()
    data["planes"][3]["ID"] = 30
    write_annotation(root, data)
    with pytest.raises(ConversionError, match="planes IDs are not 0, 1, 2"):
        s3d.convert_scene(root, "scene_00000")
    del data["junctions"]
    write_annotation(root, data)
    with pytest.raises(ConversionError, match=r"malformed annotation \(KeyError: 'junctions'\)"):
        s3d.convert_scene(root, "scene_00000")


def test_room_without_floor_is_named(root):
    data = annotation()
    data["semantics"][0]["planeID"] = [1, 2, 3, 4, 5]
    write_annotation(root, data)
    with pytest.raises(ConversionError, match="room 485142: no closed floor outline"):
        s3d.convert_scene(root, "scene_00000")


def test_missing_point_cloud_is_named(root):
    (root / "scene_00000" / "point_cloud.ply").unlink()
    with pytest.raises(ConversionError, match=r"point_cloud\.ply: missing"):
        s3d.convert_scene(root, "scene_00000")
