import csv
import math
from pathlib import Path

import numpy as np
import plyfile
import pytest

from spacelm.datasets import vla3d
from spacelm.datasets.rooms import ConversionError

REAL_SCENE = (Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata"
              / "scannet_spacelm_vla3d_scene0000_00")  # beside the repository, when present

REGION_HEADER = ["region_id", "region_label", "region_bbox_cx", "region_bbox_cy", "region_bbox_cz",
                 "region_bbox_xlength", "region_bbox_ylength", "region_bbox_zlength",
                 "region_bbox_heading"]
COLOUR_COLUMNS = [f"object_color_{c}{i}" for i in (1, 2, 3) for c in
                  ("r", "g", "b", "scheme", "scheme_percentage", "scheme_average_dist")]
OBJECT_HEADER = ["object_id", "region_id", "raw_label", "nyu_id", "nyu40_id", "nyu_label",
                 "nyu40_label", "object_bbox_cx", "object_bbox_cy", "object_bbox_cz",
                 "object_bbox_xlength", "object_bbox_ylength", "object_bbox_zlength",
                 "object_bbox_heading", "object_front_heading", *COLOUR_COLUMNS]
assert len(OBJECT_HEADER) == 33

# Two 4 x 4 x 3 m rooms side by side: region 0 spans x 0..4, region 1 spans x 4..8 (y 0..4, z 0..3).
REGIONS = [(0, "Bedroom", 2, 2, 1.5, 4, 4, 3, 0), (1, "kitchen", 6, 2, 1.5, 4, 4, 3, 0)]
# (region, raw label, nyu40 id, nyu40 label, cx, cy, cz, xlength, ylength, zlength, heading)
OBJECTS = [
    (0, "wall", 1, "wall", 2, 0, 1.25, 4, 0.2, 2.5, 0),  # along x: (0,0)-(4,0)
    (0, "wall", 1, "wall", 0, 2, 1.25, 0.2, 4, 2.5, 0),  # long in y: (0,0)-(0,4)
    (0, "floor", 2, "floor", 2, 2, 0.05, 4, 4, 0.1, 0),  # dropped: floor_or_ceiling
    (0, "door", 8, "door", 1.5, 0.05, 1.0, 0.9, 0.1, 2.0, 0),  # on wall 0, centre -> (1.5, 0)
    (0, "bed", 4, "bed", 2.5, 2.5, 0.3, 2, 1.6, 0.6, 0.5),
    (0, "object", 40, "otherprop", 3, 3, 0.5, 0.3, 0.3, 0.3, 0),  # dropped: unknown_class
    (-1, "chair", 5, "chair", 6, 5, 0.4, 0.5, 0.5, 0.8, 0),  # no region; nearest region 1
    (1, "wall", 1, "wall", 6, 4, 1.25, 4, 0.2, 2.5, math.pi),  # heading pi: (8,4)-(4,4)
    (1, "window", 9, "window", 6.5, 3.95, 1.5, 0.15, 1.2, 1.0, math.pi / 2),  # on it -> (6.5, 4)
    (1, "chair", 5, "chair", 5, 1, 0.45, 0.5, 0.5, 0.9, 0),
    (1, "door", 8, "door", 4.0, 2, 1.0, 0.1, 0.9, 2.0, 0),  # perpendicular to the wall: dropped
    (1, "rug", 40, "floor mat", 6, 2, 0.01, 2, 1.5, 0.02, 0),  # Matterport bug: id 40 -> 20
]
N0, N1 = 300, 200


def write_scene(folder: Path, prefix: str, *, regions=REGIONS, objects=OBJECTS, xyz=None,
                split=((0, N0), (1, N0 + N1))) -> np.ndarray:
    """A VLA-3D scene in the release's format; returns the points written, in file order."""
    folder.mkdir(parents=True, exist_ok=True)
    if xyz is None:
        rng = np.random.default_rng(0)
        xyz = np.concatenate([rng.uniform((0.1, 0.1, 0.1), (3.9, 3.9, 2.9), (N0, 3)),
                              rng.uniform((4.1, 0.1, 0.1), (7.9, 3.9, 2.9), (N1, 3))])
    xyz = np.asarray(xyz, dtype=np.float32)
    vertex = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                       ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    for colour in ("red", "green", "blue"):
        vertex[colour] = np.arange(len(xyz)) % 256
    plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")]).write(
        str(folder / f"{prefix}_pc_result.ply"))
    with open(folder / f"{prefix}_region_result.csv", "w", newline="") as f:
        csv.writer(f).writerows([REGION_HEADER, *regions])
    with open(folder / f"{prefix}_object_result.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(OBJECT_HEADER)
        for i, (region, raw, nyu40, nyu40_label, *box) in enumerate(objects):
            # VLA-3D writes one colour and leaves the other columns out, so rows are short.
            writer.writerow([i, region, raw, 20, nyu40, raw, nyu40_label, *box, "_",
                             128, 128, 128, "gray", 1.0, 0.5])
    if split is not None:
        np.save(folder / f"{prefix}_region_split.npy", np.array(split, dtype=np.int64))
        np.save(folder / f"{prefix}_object_split.npy", np.array([(-1, N0), (-1, N0 + N1)], np.int64))
    return xyz


@pytest.fixture
def scene(tmp_path):
    xyz = write_scene(tmp_path / "Scannet" / "scene0001_00", "scene0001_00")
    return tmp_path, xyz


def by_region(samples):
    return {s.region: s for s in samples}


def test_two_regions_split_by_npy(scene):
    root, xyz = scene
    samples = vla3d.convert_scene(root, "Scannet/scene0001_00")
    assert [s.sample_id for s in samples] == ["vla3d_scannet_scene0001_00_r0",
                                             "vla3d_scannet_scene0001_00_r1"]
    r0, r1 = by_region(samples)["0"], by_region(samples)["1"]
    assert np.array_equal(r0.xyz, xyz[:N0]) and np.array_equal(r1.xyz, xyz[N0:])
    assert r0.rgb.dtype == np.uint8 and r1.rgb[0].tolist() == [N0 % 256] * 3
    assert (r0.source, r0.scene, r0.room_type, r1.room_type) == (
        "vla3d", "Scannet/scene0001_00", "bedroom", "kitchen")
    assert r0.dropped == {"floor_or_ceiling": 1, "unknown_class": 1}
    assert r1.dropped == {"door_without_wall": 1, "object_without_region": 1}


def test_walls_openings_and_boxes(scene):
    r0, r1 = (s.layout for s in vla3d.convert_scene(*scene[:1], "Scannet/scene0001_00"))
    np.testing.assert_allclose(r0.wall_array(), [[0, 0, 0, 4, 0, 0, 2.5, 0.2],
                                                 [0, 0, 0, 0, 4, 0, 2.5, 0.2]], atol=1e-9)
    np.testing.assert_allclose(r1.wall_array(), [[8, 4, 0, 4, 4, 0, 2.5, 0.2]], atol=1e-9)
    (door,) = r0.doors
    assert door.wall_id == 0
    np.testing.assert_allclose((door.x, door.y, door.z, door.width, door.height),
                               (1.5, 0, 1.0, 0.9, 2.0), atol=1e-9)
    (window,) = r1.windows
    assert window.wall_id == 0 and not r1.doors
    np.testing.assert_allclose((window.x, window.y, window.z, window.width, window.height),
                               (6.5, 4, 1.5, 1.2, 1.0), atol=1e-9)
    assert [(b.label, b.x, b.angle_z, b.scale_x) for b in r0.boxes] == [("bed", 2.5, 0.5, 2)]
    assert sorted(b.label for b in r1.boxes) == ["chair", "floor_mat"]


def test_spatiallm_label_set(scene):
    r0, r1 = (s.layout for s in vla3d.convert_scene(scene[0], "Scannet/scene0001_00",
                                                    label_set="spatiallm59"))
    assert [b.label for b in r0.boxes] == ["bed"]
    assert sorted(b.label for b in r1.boxes) == ["carpet", "chair"]
    with pytest.raises(ValueError, match="label_set"):
        vla3d.convert_scene(scene[0], "Scannet/scene0001_00", label_set="coco")


def test_list_scenes_nested_and_flat(tmp_path):
    write_scene(tmp_path / "Scannet" / "scene0001_00", "scene0001_00")
    write_scene(tmp_path / "Unity" / "loft", "loft")
    (tmp_path / "Unity" / "notes").mkdir()
    assert vla3d.list_scenes(tmp_path) == ["Scannet/scene0001_00", "Unity/loft"]
    # A single source folder gives the same sample ids.
    assert vla3d.list_scenes(tmp_path / "Unity") == ["loft"]
    flat = vla3d.convert_scene(tmp_path / "Unity", "loft")
    nested = vla3d.convert_scene(tmp_path, "Unity/loft")
    assert [s.sample_id for s in flat] == [s.sample_id for s in nested] == [
        "vla3d_unity_loft_r0", "vla3d_unity_loft_r1"]


def test_renamed_folder_uses_the_file_prefix(tmp_path):
    write_scene(tmp_path / "copy of scene", "scene0001_00")
    assert vla3d.list_scenes(tmp_path) == ["copy of scene"]
    samples = vla3d.convert_scene(tmp_path, "copy of scene")
    assert samples[0].sample_id == f"vla3d_{tmp_path.name.lower()}_scene0001_00_r0"


def test_without_split_points_go_by_region_box(tmp_path):
    """No split file: each point goes to the box it is deepest in; far strays are dropped, counted."""
    regions = [REGIONS[0], (1, "kitchen", 6, 2, 1.5, 4, 4, 3, math.pi / 2)]  # same square, rotated
    xyz = [(1, 1, 1), (3.9, 2, 1), (4.1, 2, 1), (4.2, 2, 1), (6, 3, 2), (20, 2, 1), (2, 2, 3.2)]
    write_scene(tmp_path / "s", "s", regions=regions, xyz=xyz, split=None)
    r0, r1 = vla3d.convert_scene(tmp_path, "s")
    np.testing.assert_allclose(r0.xyz, [[1, 1, 1], [3.9, 2, 1], [2, 2, 3.2]], rtol=1e-6)  # z: margin
    np.testing.assert_allclose(r1.xyz[:, 0], [4.1, 4.2, 6], rtol=1e-6)
    assert r1.dropped["point_outside_region"] == 1 and "point_outside_region" not in r0.dropped


def test_split_points_outside_their_region_move_or_drop(tmp_path):
    """Matterport's region 0 also holds the house's unlabelled vertices: they are re-homed."""
    xyz = [(1, 1, 1), (2, 2, 2), (6, 2, 1), (2, 30, 1), (5, 1, 1), (7, 3, 2)]
    write_scene(tmp_path / "s", "s", xyz=xyz, split=((0, 4), (-1, 5), (1, 6)))
    r0, r1 = vla3d.convert_scene(tmp_path, "s")
    assert r0.xyz.tolist() == [[1, 1, 1], [2, 2, 2]]
    assert r1.xyz.tolist() == [[6, 2, 1], [5, 1, 1], [7, 3, 2]]
    assert r0.dropped["point_outside_region"] == 1


def test_single_region_keeps_every_point(tmp_path):
    objects = [o for o in OBJECTS if o[0] == 0]
    xyz = [(1, 1, 1), (50, 50, 50)]
    write_scene(tmp_path / "s", "s", regions=REGIONS[:1], objects=objects, xyz=xyz, split=None)
    (sample,) = vla3d.convert_scene(tmp_path, "s")
    assert len(sample.xyz) == 2 and "point_outside_region" not in sample.dropped


def test_region_without_points_gives_no_sample(tmp_path):
    write_scene(tmp_path / "s", "s", xyz=[(1, 1, 1)], split=((0, 1), (1, 1)))
    assert [s.region for s in vla3d.convert_scene(tmp_path, "s")] == ["0"]


def test_arkit_video_id_is_no_room_type(tmp_path):
    write_scene(tmp_path / "47204840", "47204840", regions=[(0, "47204840", 2, 2, 1.5, 4, 4, 3, 0)],
                objects=[], split=None)
    assert vla3d.convert_scene(tmp_path, "47204840")[0].room_type == ""


def test_missing_column_names_file_and_column(scene):
    root, _ = scene
    path = root / "Scannet" / "scene0001_00" / "scene0001_00_object_result.csv"
    path.write_text(path.read_text().replace("nyu40_id", "nyu_40_id", 1))
    with pytest.raises(ConversionError, match=r"scene0001_00_object_result\.csv.*'nyu40_id'"):
        vla3d.convert_scene(root, "Scannet/scene0001_00")


def test_unparsable_number_names_line(scene):
    root, _ = scene
    path = root / "Scannet" / "scene0001_00" / "scene0001_00_region_result.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("6,2,1.5", "6,two,1.5")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConversionError, match=r"region_result\.csv, line 3: column "
                                              r"'region_bbox_cy': 'two' is not a number"):
        vla3d.convert_scene(root, "Scannet/scene0001_00")


def test_split_row_count_mismatch(tmp_path):
    write_scene(tmp_path / "s", "s", split=((0, N0), (1, N0 + N1 - 1)))
    with pytest.raises(ConversionError, match=rf"s_region_split\.npy: the split covers {N0 + N1 - 1} "
                                              rf"points, the point cloud has {N0 + N1}"):
        vla3d.convert_scene(tmp_path, "s")


def test_unknown_region_ids(tmp_path):
    write_scene(tmp_path / "s", "s", split=((0, N0), (7, N0 + N1)))
    with pytest.raises(ConversionError, match=r"region_split\.npy: region id\(s\) \[7\]"):
        vla3d.convert_scene(tmp_path, "s")
    objects = [*OBJECTS, (5, "chair", 5, "chair", 1, 1, 0.4, 0.5, 0.5, 0.8, 0)]
    write_scene(tmp_path / "t", "t", objects=objects)
    with pytest.raises(ConversionError, match=rf"object_result\.csv, line {len(objects) + 1}: "
                                              "region_id 5"):
        vla3d.convert_scene(tmp_path, "t")


def test_missing_point_cloud(scene):
    root, _ = scene
    (root / "Scannet" / "scene0001_00" / "scene0001_00_pc_result.ply").unlink()
    with pytest.raises(ConversionError, match=r"scene0001_00_pc_result\.ply"):
        vla3d.convert_scene(root, "Scannet/scene0001_00")


@pytest.mark.skipif(not REAL_SCENE.is_dir(), reason="real VLA-3D ScanNet sample not available")
def test_real_scannet_scene():
    """SpaceLM's copy of VLA-3D's ScanNet scene0000_00: one region, no split file.

    Its CSV has 9 walls, 3 door rows (a door and two doorframes, all NYU40 8), 2 windows, a floor,
    a ceiling, 22 otherprop and 1 otherstructure row, and 28 other objects: every opening attaches,
    and the two doorframe rows overlapping one door merge into it.
    """
    (sample,) = vla3d.convert_scene(REAL_SCENE.parent, REAL_SCENE.name)
    with open(REAL_SCENE / "scene0000_00_object_result.csv", newline="") as f:
        classes = [int(row["nyu40_id"]) for row in csv.DictReader(f)]
    layout = sample.layout
    assert (classes.count(1), classes.count(8), classes.count(9)) == (9, 3, 2)
    assert (len(layout.walls), len(layout.doors), len(layout.windows)) == (9, 2, 2)
    assert len(layout.boxes) == 28 and all(b.label for b in layout.boxes)
    assert sample.dropped == {"unknown_class": 23, "floor_or_ceiling": 2, "door_merged": 1}
    assert layout.num_entities + sum(sample.dropped.values()) == len(classes)
    assert len(sample.xyz) == 77012 and sample.room_type == "apartment"
    assert sample.sample_id.endswith("_scene0000_00_r0")
