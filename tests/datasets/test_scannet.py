import csv
import json
import math
import pickle
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from spacelm.datasets import scannet
from spacelm.datasets.boxfit import fit_yaw_box
from spacelm.datasets.rooms import ConversionError
from spacelm.scene import Door, Window

SCENE = "scene0042_01"
REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata"  # beside the repository
TSV_HEADER = ["id", "raw_category", "category", "count", "nyu40id", "eigen13id", "nyuClass",
              "nyu40class", "eigen13class", "ModelNet40", "ModelNet10", "ShapeNetCore55",
              "synsetoffset", "wnsynsetid", "wnsynsetkey", "mpcat40", "mpcat40index"]
TSV_ROWS = [("wall", 1), ("floor", 2), ("chair", 5), ("door", 8), ("window", 9), ("bottle", 40),
            ("lamp", "")]  # a row without nyu40id is ignored


def slab(x, y, z, step=0.25):
    """Grid points filling the axis-aligned slab x[0]..x[1] etc. (ends included)."""
    axes = [np.append(np.arange(lo, hi, step), hi) if hi > lo else np.array([lo])
            for lo, hi in (x, y, z)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


# Instances in the *aligned* frame: (label, points). The room is 4 m x 3 m with two walls.
INSTANCES = [
    ("wall", slab((0, 4), (0, 0.1), (0, 2.5))),
    ("wall", slab((0, 4), (2.9, 3.0), (0, 2.5))),
    ("door", slab((1, 2), (0.0, 0.05), (0, 2))),
    ("window", slab((2.5, 3.5), (2.95, 3.0), (1, 2))),
    ("chair", slab((2, 2.5), (1, 1.6), (0, 0.9), step=0.1)),
    ("floor", slab((0, 4), (0, 3), (0, 0))),
    ("bottle", slab((1, 1.1), (1, 1.1), (0.7, 0.9), step=0.05)),  # NYU40 otherprop: unknown class
    ("blorb", slab((3, 3.2), (2, 2.2), (0, 0.2), step=0.1)),  # not in the tsv
]
YAW, SHIFT = math.radians(30), np.array([-2.0, 5.0, 0.1])


def alignment():
    """axisAlignment of the fixture: a 30 deg turn and a shift (aligned = M @ raw)."""
    c, s = math.cos(YAW), math.sin(YAW)
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = SHIFT
    return m


def write_scene(root: Path, scene=SCENE, *, with_tsv=True):
    """A scan in ScanNet's native files: binary mesh with faces, segs, aggregation, meta, tsv."""
    folder = root / scene
    folder.mkdir(parents=True)
    aligned = np.concatenate([p for _, p in INSTANCES] + [slab((0.5, 0.6), (2, 2.1), (2, 2.1))])
    sizes = [len(p) for _, p in INSTANCES]
    raw = (aligned - alignment()[:3, 3]) @ alignment()[:3, :3]  # inverse of the rigid transform
    n = len(raw)
    vertex = np.empty(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                                ("green", "u1"), ("blue", "u1"), ("alpha", "u1")])
    for i, axis in enumerate("xyz"):
        vertex[axis] = raw[:, i]
    vertex["red"], vertex["green"], vertex["blue"], vertex["alpha"] = 10, 20, 30, 255
    faces = np.array([([0, 1, 2],), ([2, 3, 4],)], dtype=[("vertex_indices", "<i4", (3,))])
    face = PlyElement.describe(faces, "face", len_types={"vertex_indices": "u1"},
                               val_types={"vertex_indices": "i4"})
    PlyData([PlyElement.describe(vertex, "vertex"), face], text=False,
            byte_order="<").write(str(folder / f"{scene}_vh_clean_2.ply"))
    # ScanNet names a segment after one of its vertices; instance k is one segment here.
    starts = np.cumsum([0] + sizes)
    seg_indices = np.full(n, starts[-1])  # the unlabelled blob is a segment of its own
    for start, stop in zip(starts[:-1], starts[1:]):
        seg_indices[start:stop] = start
    (folder / f"{scene}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(
        {"params": {"kThresh": "0.01"}, "sceneId": scene, "segIndices": seg_indices.tolist()}))
    groups = [{"id": k, "objectId": k, "segments": [int(starts[k])], "label": label}
              for k, (label, _) in enumerate(INSTANCES)]
    k = len(groups)  # a group whose segment no vertex has
    groups.append({"id": k, "objectId": k, "segments": [999999], "label": "chair"})
    (folder / f"{scene}.aggregation.json").write_text(json.dumps(
        {"sceneId": f"scannet.{scene}", "appId": "Aggregator.v2", "segGroups": groups,
         "segmentsFile": f"scannet.{scene}_vh_clean_2.0.010000.segs.json"}))
    matrix = " ".join(f"{v:.9f}" for v in alignment().reshape(-1))
    (folder / f"{scene}.txt").write_text(
        f"axisAlignment = {matrix}\ncolorHeight = 968\nsceneType = Living room / Lounge\n")
    if with_tsv:
        write_tsv(root / scannet.LABEL_MAP_NAME)
    return folder


def write_tsv(path: Path):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(TSV_HEADER)
        for k, (raw_category, nyu40) in enumerate(TSV_ROWS):
            writer.writerow([k + 1, raw_category, raw_category, 10, nyu40] + [""] * 12)


def test_convert_native_scan(tmp_path):
    write_scene(tmp_path / "scans")
    (tmp_path / "scans" / "not_a_scene").mkdir()
    assert scannet.list_scenes(tmp_path / "scans") == [SCENE]
    [room] = scannet.convert_scene(tmp_path / "scans", SCENE)
    assert (room.sample_id, room.source, room.scene, room.region) == (
        "scannet_scene0042_01", "scannet", SCENE, "0")
    assert room.room_type == "living_room_lounge"
    assert room.xyz.dtype == np.float32 and room.rgb.dtype == np.uint8
    assert len(room.xyz) == sum(len(p) for _, p in INSTANCES) + 8  # + the unlabelled blob
    assert room.xyz.min(axis=0) == pytest.approx([0, 0, 0], abs=1e-5)  # aligned frame
    assert room.xyz.max(axis=0) == pytest.approx([4, 3, 2.5], abs=1e-5)
    assert (room.rgb == [10, 20, 30]).all()
    walls, doors, windows, boxes = (room.layout.walls, room.layout.doors, room.layout.windows,
                                    room.layout.boxes)
    assert [astuple(w) for w in walls] == [
        pytest.approx((0, 0.05, 0, 4, 0.05, 0, 2.5, 0.1), abs=1e-5),
        pytest.approx((0, 2.95, 0, 4, 2.95, 0, 2.5, 0.1), abs=1e-5)]
    [door], [window] = doors, windows
    assert isinstance(door, Door) and isinstance(window, Window)
    assert astuple(door) == pytest.approx((0, 1.5, 0.05, 1.0, 1.0, 2.0), abs=1e-5)
    assert astuple(window) == pytest.approx((1, 3.0, 2.95, 1.5, 1.0, 1.0), abs=1e-5)
    [chair] = boxes
    assert chair.label == "chair"
    assert astuple(chair)[1:5] == pytest.approx((2.25, 1.3, 0.45, 0), abs=1e-5)
    assert (chair.scale_x, chair.scale_y, chair.scale_z) == pytest.approx((0.5, 0.6, 0.9), abs=1e-5)
    assert room.dropped == {"floor_or_ceiling": 1, "unknown_class": 1, "unmapped_label": 1,
                            "object_without_points": 1}


def test_label_map_is_found_next_to_the_scans_folder(tmp_path):
    write_scene(tmp_path / "scans", with_tsv=False)
    with pytest.raises(ConversionError, match=f"{scannet.LABEL_MAP_NAME}: missing file"):
        scannet.convert_scene(tmp_path / "scans", SCENE)
    write_tsv(tmp_path / scannet.LABEL_MAP_NAME)
    [room] = scannet.convert_scene(tmp_path / "scans", SCENE)
    assert len(room.layout.walls) == 2


def test_spatiallm59_label_set_drops_classes_without_counterpart(tmp_path):
    write_scene(tmp_path)
    [room] = scannet.convert_scene(tmp_path, SCENE, label_set="spatiallm59")
    assert [b.label for b in room.layout.boxes] == ["chair"]


@pytest.mark.parametrize("name, damage, message", [
    (f"{SCENE}.aggregation.json", None, "missing file"),
    (f"{SCENE}.aggregation.json", "{not json", "not valid JSON"),
    (f"{SCENE}.aggregation.json", json.dumps({"segGroups": [{"label": "chair"}]}),
     r"segGroups\[0\] lacks"),
    (f"{SCENE}_vh_clean_2.0.010000.segs.json", json.dumps({"segIndices": [0, 1, 2]}),
     "3 segIndices for a mesh of"),
    (f"{SCENE}.txt", "sceneType = Office\n", "no axisAlignment"),
    (f"{SCENE}.txt", "axisAlignment = 1 0 0\n", "has 3 numbers, expected 16"),
    (f"{SCENE}_vh_clean_2.ply", None, "missing file"),
    (f"{SCENE}_vh_clean_2.ply", "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\n"
     "property float y\nproperty float z\nend_header\n0 0 0\n1 1 1\n", "no red/green/blue"),
])
def test_bad_files_raise_naming_file_and_problem(tmp_path, name, damage, message):
    folder = write_scene(tmp_path)
    if damage is None:
        (folder / name).unlink()
    else:
        (folder / name).write_text(damage)
    with pytest.raises(ConversionError, match=message) as info:
        scannet.convert_scene(tmp_path, SCENE)
    assert name in str(info.value)


# --- real ScanNet scene0000_00 (mmdet3d test files, read in place) -----------------------------

def real(path: str) -> Path:
    full = REAL / path
    if not full.exists():
        pytest.skip(f"real-data fixture {full} not available")
    return full


def test_alignment_maps_real_raw_points_onto_the_aligned_scan():
    with open(real("scannet_mmdet3d_demo/scannet_infos.pkl"), "rb") as f:
        matrix = np.array(pickle.load(f)["data_list"][0]["axis_align_matrix"])
    raw = np.fromfile(real("scannet_mmdet3d_demo/scene0000_00.bin"), dtype="<f4").reshape(-1, 6)
    info = {"axisAlignment": " ".join(str(v) for v in matrix.reshape(-1))}
    aligned = scannet.align_points(raw[:, :3], scannet.axis_alignment(info, Path("x.txt")))
    reference = np.load(real("scannet_mmdet3d_scene0000/scene0000_00_vert_all.npy"))[:, :3]
    # The .bin holds half the vertices, so its extent may fall short by a vertex spacing.
    assert np.abs(aligned.min(axis=0) - reference.min(axis=0)).max() < 0.01
    assert np.abs(aligned.max(axis=0) - reference.max(axis=0)).max() < 0.01
    assert np.abs(raw[:, :3].min(axis=0) - reference.min(axis=0)).max() > 1  # it did move


def test_box_fit_reproduces_real_axis_aligned_boxes_where_yaw_is_zero():
    folder = "scannet_mmdet3d_scene0000/scene0000_00_"
    points = np.load(real(folder + "vert_all.npy"))[:, :3]
    instance = np.load(real(folder + "ins_label_all.npy"))
    boxes, ids = np.load(real(folder + "bbox.npy")), np.load(real(folder + "bbox_idx.npy"))
    checked = 0
    for reference, instance_id in zip(boxes, ids):
        box = fit_yaw_box(points[instance == instance_id])
        if abs(box.angle_z) < math.radians(1):
            fitted = [box.x, box.y, box.z, box.scale_x, box.scale_y, box.scale_z]
            assert np.abs(np.array(fitted) - reference[:6]).max() < 0.035
            checked += 1
    assert checked == 11  # of 27; the fit turns the others by 1 to 38 degrees


def test_box_fit_reproduces_vla3d_oriented_boxes_of_the_same_scan():
    folder = "scannet_mmdet3d_scene0000/scene0000_00_"
    points = np.load(real(folder + "vert_all.npy"))[:, :3]
    instance = np.load(real(folder + "ins_label_all.npy"))
    with open(real("scannet_spacelm_vla3d_scene0000_00/scene0000_00_object_result.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 67
    for row in rows:  # VLA-3D object k is mmdet3d instance k + 1 (both follow segGroups)
        box = fit_yaw_box(points[instance == int(row["object_id"]) + 1])
        value = {k: float(row[f"object_bbox_{k}"]) for k in
                 ("cx", "cy", "cz", "xlength", "ylength", "zlength", "heading")}
        theirs = box_corners(value["cx"], value["cy"], value["heading"], value["xlength"],
                             value["ylength"])
        mine = box_corners(box.x, box.y, box.angle_z, box.scale_x, box.scale_y)
        assert np.linalg.norm(mine[:, None] - theirs[None], axis=2).min(axis=1).max() < 0.001
        assert (box.z, box.scale_z) == pytest.approx((value["cz"], value["zlength"]), abs=0.001)


def box_corners(x, y, yaw, sx, sy):
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [sx / 2, sy / 2]
    return np.array([x, y]) + local @ np.array([[c, s], [-s, c]])
