import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from spacelm.datasets import spatiallm_format as sf
from spacelm.datasets.rooms import ConversionError
from spacelm.scene import Box, Door, Wall

GOOD = """wall_0=Wall(0.0,0.0,0.0,4.0,0.0,0.0,2.8,0.0)
door_0=Door(wall_0,1.0,0.0,1.0,0.9,2.0)
bbox_0=Bbox(sofa,2.0,1.5,0.4,0.0,2.0,0.9,0.8)
"""
BROKEN = """wall_0=Wall(0.0,0.0,0.0,4.0,0.0,0.0,2.8,0.0)
bbox_0=Bbox(sofa,2.0,oops,0.4,0.0,2.0,0.9,0.8)
"""


def write_ply(path, xyz, rgb=None):
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if rgb is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.empty(len(xyz), dtype=fields)
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    if rgb is not None:
        for i, channel in enumerate(("red", "green", "blue")):
            vertex[channel] = rgb[:, i]
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))


@pytest.fixture
def root(tmp_path):
    xyz = np.array([[0, 0, 0], [1, 2, 3], [4, 3, 2.5]], np.float32)
    rgb = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], np.uint8)
    for name, text in (("scene_000001_00_0", GOOD), ("scene_000001_01_2", BROKEN)):
        write_ply(tmp_path / "pcd" / f"{name}.ply", xyz, rgb)
        (tmp_path / "layout").mkdir(exist_ok=True)
        (tmp_path / "layout" / f"{name}.txt").write_text(text)
    (tmp_path / "split.csv").write_text(
        "id,room_type,scene_id,room_id,sample,split\n"
        "scene_000001_00_0,bedroom,scene_000001,00,0,train\n"
        "scene_000001_01_2,kitchen,scene_000001,01,2,train\n")
    return tmp_path


def test_ids_come_from_split_csv(root):
    assert sf.list_scenes(root) == ["scene_000001_00_0", "scene_000001_01_2"]
    assert sf.APPLY_FILTERS is False


def test_sample_passes_through_unchanged(root):
    [sample] = sf.convert_scene(root, "scene_000001_00_0")
    assert sample.sample_id == "spatiallm_scene_000001_00_0"
    assert (sample.source, sample.scene, sample.region, sample.room_type) == (
        "spatiallm", "scene_000001", "00_0", "bedroom")
    np.testing.assert_array_equal(sample.xyz[1], [1, 2, 3])
    np.testing.assert_array_equal(sample.rgb[2], [70, 80, 90])
    assert sample.layout.walls == (Wall(0, 0, 0, 4, 0, 0, 2.8, 0),)
    assert sample.layout.doors == (Door(0, 1, 0, 1, 0.9, 2),)
    assert sample.layout.boxes == (Box("sofa", 2, 1.5, 0.4, 0, 2, 0.9, 0.8),)
    assert sample.dropped == {}


def test_broken_layout_names_file_and_line(root):
    with pytest.raises(ConversionError, match=r"scene_000001_01_2\.txt.*line 2"):
        sf.convert_scene(root, "scene_000001_01_2")


def test_missing_or_colourless_cloud_is_an_error(root):
    (root / "pcd" / "scene_000001_00_0.ply").unlink()
    with pytest.raises(ConversionError, match=r"scene_000001_00_0\.ply: missing"):
        sf.convert_scene(root, "scene_000001_00_0")
    write_ply(root / "pcd" / "scene_000001_00_0.ply", np.zeros((2, 3), np.float32))
    with pytest.raises(ConversionError, match="no red/green/blue vertex colours"):
        sf.convert_scene(root, "scene_000001_00_0")


def test_missing_layout_and_unknown_id(root):
    (root / "layout" / "scene_000001_00_0.txt").unlink()
    with pytest.raises(ConversionError, match=r"scene_000001_00_0\.txt: missing layout"):
        sf.convert_scene(root, "scene_000001_00_0")
    with pytest.raises(ConversionError, match="no sample 'nope'"):
        sf.convert_scene(root, "nope")


def test_repeated_id_names_csv_line(root):
    with open(root / "split.csv", "a") as f:
        f.write("scene_000001_00_0,bedroom,scene_000001,00,0,test\n")
    with pytest.raises(ConversionError, match=r"split\.csv, line 4: id 'scene_000001_00_0' repeats line 2"):
        sf.list_scenes(root)


def test_testset_csv_names_the_files(root):
    (root / "split.csv").unlink()
    (root / "test.csv").write_text("id,pcd,layout\nscene0000_00,pcd/scene_000001_00_0.ply,"
                                   "layout/scene_000001_00_0.txt\n")
    assert sf.list_scenes(root) == ["scene0000_00"]
    [sample] = sf.convert_scene(root, "scene0000_00")
    assert (sample.sample_id, sample.scene, sample.region) == ("spatiallm_scene0000_00", "scene0000_00", "0")
    assert len(sample.layout.walls) == 1


def test_without_csv_ids_are_ply_stems(root):
    (root / "split.csv").unlink()
    assert sf.list_scenes(root) == ["scene_000001_00_0", "scene_000001_01_2"]


def test_csv_without_id_column(root):
    (root / "split.csv").write_text("name,split\na,train\n")
    with pytest.raises(ConversionError, match=r"split\.csv: missing column\(s\) id"):
        sf.list_scenes(root)
