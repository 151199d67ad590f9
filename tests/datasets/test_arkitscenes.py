import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from spacelm.datasets import arkitscenes
from spacelm.datasets.rooms import ConversionError

VIDEO = "41069025"
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"  # beside the repository, when present
REAL_CSV = SHARED / "realdata" / "arkitscenes_vla3d_47204840" / "47204840_object_result.csv"


def yaw_axes(yaw_deg, up_row=2):
    """normalizedAxes (rows = axes) of a gravity-aligned box; the vertical axis at ``up_row``."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    rows = [[c, s, 0.0], [-s, c, 0.0]]
    rows.insert(up_row, [0.0, 0.0, 1.0])
    return [v for row in rows for v in row]


def item(label, centroid, lengths, axes, uid="u"):
    """One ``data[i]`` entry with every key of the native file."""
    return {"uid": uid, "label": label, "modelId": "", "children": [], "objectId": 1,
            "segments": {"obbAligned": {"centroid": centroid, "axesLengths": lengths,
                                        "normalizedAxes": axes}},
            "hierarchy": 1, "isInGroup": False, "labelType": "object", "attributes": {}}


TILT = math.radians(10)
ITEMS = [
    item("sofa", [1.0, 2.0, -0.9], [2.0, 0.9, 0.8], yaw_axes(30)),
    # vertical axis first: lengths follow the rows, so the 0.5 m height comes first
    item("tv_monitor", [3.0, 0.5, -0.2], [0.5, 1.2, 0.1], yaw_axes(-100, up_row=0)),
    item("Build In/Cabinet", [0.0, 0.0, -1.0], [1.0, 0.6, 0.9], yaw_axes(0)),
    item("stool", [2.0, 2.0, -1.1], [0.4, 0.4, 0.5], yaw_axes(0)),  # NYU40 otherprop
    item("oven", [2.5, 0.0, -0.8], [0.6, 0.6, 0.6], yaw_axes(0)),  # NYU40 otherstructure
    item("piano", [4.0, 4.0, -0.8], [1.5, 0.6, 1.0], yaw_axes(0)),  # not an ARKitScenes label
    item("table", [1.0, 4.0, -1.0], [1.0, 1.0, 0.5],
         [1, 0, 0, 0, math.cos(TILT), math.sin(TILT), 0, -math.sin(TILT), math.cos(TILT)]),
]


def write_scan(root: Path, items=ITEMS, video=VIDEO):
    folder = root / video
    folder.mkdir(parents=True)
    (folder / f"{video}_3dod_annotation.json").write_text(json.dumps(
        {"data": items, "stats": {}, "comment": "", "confirm": True, "skipped": False}))
    rng = np.random.default_rng(0)
    vertex = np.empty(300, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                                  ("green", "u1"), ("blue", "u1"), ("alpha", "u1")])
    xyz = rng.uniform([-1, -1, -1.3], [5, 5, 1.3], (300, 3))
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    vertex["red"], vertex["green"], vertex["blue"], vertex["alpha"] = 90, 80, 70, 255
    faces = np.array([([0, 1, 2],), ([1, 2, 3],)], dtype=[("vertex_indices", "<i4", (3,))])
    face = PlyElement.describe(faces, "face", len_types={"vertex_indices": "u1"},
                               val_types={"vertex_indices": "i4"})
    PlyData([PlyElement.describe(vertex, "vertex"), face], byte_order="<").write(
        str(folder / f"{video}_3dod_mesh.ply"))
    return folder


def test_convert_native_scan(tmp_path):
    write_scan(tmp_path)
    (tmp_path / "notes").mkdir()
    assert arkitscenes.list_scenes(tmp_path) == [VIDEO]
    [room] = arkitscenes.convert_scene(tmp_path, VIDEO)
    assert (room.sample_id, room.source, room.scene, room.region, room.room_type) == (
        f"arkitscenes_{VIDEO}", "arkitscenes", VIDEO, "0", "")
    assert room.xyz.shape == (300, 3) and (room.rgb == [90, 80, 70]).all()
    assert room.layout.walls == room.layout.doors == room.layout.windows == ()  # boxes only
    sofa, tv, cabinet, table = room.layout.boxes
    assert sofa.label == "sofa"
    assert (sofa.x, sofa.y, sofa.z) == (1.0, 2.0, -0.9)
    assert (sofa.angle_z, sofa.scale_x, sofa.scale_y, sofa.scale_z) == pytest.approx(
        (math.radians(30), 2.0, 0.9, 0.8))
    # -100 deg is 80 deg mod 180 and -10 deg mod 90: the extents swap, the height stays 0.5 m
    assert tv.label == "television"
    assert (tv.angle_z, tv.scale_x, tv.scale_y, tv.scale_z) == pytest.approx(
        (math.radians(-10), 0.1, 1.2, 0.5))
    assert (cabinet.label, cabinet.angle_z, cabinet.scale_x) == ("cabinet", 0, 1.0)
    # the table is tilted 10 deg about x: the yaw-only box around it is taller and deeper
    assert table.label == "table" and table.angle_z == pytest.approx(0, abs=1e-9)
    depth = math.cos(TILT) + 0.5 * math.sin(TILT)
    height = math.sin(TILT) + 0.5 * math.cos(TILT)
    assert (table.scale_x, table.scale_y, table.scale_z) == pytest.approx((1.0, depth, height))
    assert room.dropped == {"unknown_class": 2, "unmapped_label": 1, "tilted_obb_enclosed": 1}


def test_spatiallm59_label_set(tmp_path):
    write_scan(tmp_path)
    [room] = arkitscenes.convert_scene(tmp_path, VIDEO, label_set="spatiallm59")
    assert [b.label for b in room.layout.boxes] == ["sofa", "tv", "cupboard"]  # NYU40 table: none


@pytest.mark.parametrize("items, message", [
    ([{"label": "sofa", "segments": {}}], r"data\[0\] lacks a 'label' or 'segments.obbAligned'"),
    ([item("sofa", [0, 0, 0], [1, 1, 1], [1, 0, 0, 0, 1, 0])],
     r"data\[0\] \('sofa'\) has a bad obbAligned: ValueError .*9 normalizedAxes"),
    ([{"label": "bed", "segments": {"obbAligned": {"centroid": [0, 0, 0]}}}],
     r"data\[0\] \('bed'\) has a bad obbAligned: KeyError"),
])
def test_bad_annotation_raises_naming_file_and_problem(tmp_path, items, message):
    write_scan(tmp_path, items)
    with pytest.raises(ConversionError, match=message) as info:
        arkitscenes.convert_scene(tmp_path, VIDEO)
    assert f"{VIDEO}_3dod_annotation.json" in str(info.value)


@pytest.mark.parametrize("name", [f"{VIDEO}_3dod_annotation.json", f"{VIDEO}_3dod_mesh.ply"])
def test_missing_file_raises(tmp_path, name):
    (write_scan(tmp_path) / name).unlink()
    with pytest.raises(ConversionError, match=f"{name}: missing file"):
        arkitscenes.convert_scene(tmp_path, VIDEO)


def test_no_data_list_raises(tmp_path):
    folder = write_scan(tmp_path)
    (folder / f"{VIDEO}_3dod_annotation.json").write_text(json.dumps({"stats": {}}))
    with pytest.raises(ConversionError, match="no 'data' list"):
        arkitscenes.convert_scene(tmp_path, VIDEO)


def test_label_table_agrees_with_vla3d_on_a_real_scan():
    if not REAL_CSV.exists():
        pytest.skip(f"real-data fixture {REAL_CSV} not available")
    with open(REAL_CSV) as f:
        rows = list(csv.DictReader(f))
    assert {r["raw_label"] for r in rows} == {"sofa", "table", "fireplace", "tv_monitor"}
    for row in rows:
        assert arkitscenes.LABEL_TO_NYU40[row["raw_label"]] == int(row["nyu40_id"])
