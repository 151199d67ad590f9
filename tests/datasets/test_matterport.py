import math
from dataclasses import astuple

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from spacelm.datasets import matterport as mp
from spacelm.datasets.rooms import ConversionError
from spacelm.scene import Box, Door, Wall

# Two regions (a bedroom and a kitchen whose boxes overlap by 0.2 m in x), in the exact line
# format of mp.cpp's writer, double spaces included. The last R line is a portal, which the
# writer tags "R" too; the H line declares 2 regions and 1 portal.
HOUSE = """ASCII 1.1
H  house0  -  0 0 0 0 0 8 5 2 1  1  0 0 0 0 0 0 0 0  7 3 2.8  0 0 0 0 0
L  0  0  -  3.5 1.5 0  0 0 0  7 3 2.8  0 0 0 0 0
R  0 0  0 0  b  2 1.5 0  0 0 0  4 3 2.8  2.8  0 0 0 0
R  1 0  0 0  k  5.4 1.5 0  3.8 0 0  7 3 2.8  2.8  0 0 0 0
R  0 0  1  -  3.9 1 0  3.9 2 2  0 0 0 0
C  0  1 wall  1 wall  0 0 0 0 0
C  1  2 door  4 door  0 0 0 0 0
C  2  3 bed  11 bed  0 0 0 0 0
C  3  4 rug  2 floor  0 0 0 0 0
C  4  5 junk#thing  40 misc  0 0 0 0 0
O  0 0 0  2 0 1.4  1 0 0  0 0 1  2 1.4 0.05  0 0 0 0 0 0 0 0
O  1 0 1  1 0 1  1 0 0  0 0 1  0.45 1 0.05  0 0 0 0 0 0 0 0
O  2 0 2  2 1.5 0.3  0 1 0  1 0 0  1 0.8 0.3  0 0 0 0 0 0 0 0
O  3 1 3  5.5 1.5 0.01  1 0 0  0 1 0  1 0.7 0.01  0 0 0 0 0 0 0 0
O  4 1 4  6 2 0.5  1 0 0  0 1 0  0.2 0.2 0.2  0 0 0 0 0 0 0 0
O  5 -1 2  6.5 1 1  1 0 0  0 1 0  0.5 0.5 0.5  0 0 0 0 0 0 0 0
O  6 1 0  5.5 1.5 1.4  1 0 0  0 0 1  1.5 1.4 1  0 0 0 0 0 0 0 0
O  7 1 1  7 1.5 1  0 1 0  0 0 1  0.45 1 0.05  0 0 0 0 0 0 0 0
"""
# category_mapping.tsv rows (CRLF, as released); rug carries the upstream 40 / "floor mat" bug.
TSV = ("index\traw_category\tcategory\tcount\tnyuId\tnyu40id\teigen13id\tnyuClass\tnyu40class\r\n"
       "1\twall\twall\t9\t21\t1\t12\twall\twall\r\n"
       "2\tdoor\tdoor\t9\t28\t8\t12\tdoor\tdoor\r\n"
       "3\tbed\tbed\t9\t157\t4\t1\tbed\tbed\r\n"
       "4\trug\trug\t9\t130\t40\t7\trug\tfloor mat\r\n"
       "5\tjunk thing\tjunk\t1\t\t\t\t\t\r\n")
# Vertices: three in the bedroom box only, one in both boxes but deeper in the bedroom's, two in
# the kitchen box only, one outside both (nearest the kitchen).
VERTICES = np.array([[1, 1, 1], [2, 2, 0.5], [3, 0.5, 2], [3.85, 1.5, 1.0],
                     [5, 1, 1], [6, 2, 2], [10, 1.5, 1]], np.float32)


def write_mesh(path, xyz):
    """A mesh PLY in the house_segmentations layout (x y z nx ny nz tx ty red green blue + faces)."""
    names = ["x", "y", "z", "nx", "ny", "nz", "tx", "ty"]
    colours = [(c, "u1") for c in ("red", "green", "blue")]
    vertex = np.zeros(len(xyz), dtype=[(n, "f4") for n in names] + colours)
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    vertex["red"] = np.arange(len(xyz)) * 10
    face = np.array([([0, 1, 2], 0, 0, 3)], dtype=[("vertex_indices", "i4", (3,)), ("material_id", "i4"),
                                                     ("segment_id", "i4"), ("category_id", "i4")])
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")]).write(str(path))


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "scans" / "house0" / "house_segmentations"
    folder.mkdir(parents=True)
    (folder / "house0.house").write_text(HOUSE)
    write_mesh(folder / "house0.ply", VERTICES)
    (tmp_path / "metadata").mkdir()
    (tmp_path / "metadata" / "category_mapping.tsv").write_bytes(TSV.encode())
    return tmp_path / "scans"  # the tsv is found in ../metadata, as in the release


def test_houses_are_listed(root):
    (root / "not_a_house").mkdir()
    assert mp.list_scenes(root) == ["house0"]


def test_regions_split_the_house(root):
    bedroom, kitchen = mp.convert_scene(root, "house0")
    assert (bedroom.sample_id, bedroom.region, bedroom.room_type) == ("matterport_house0_0", "0", "bedroom")
    assert (kitchen.sample_id, kitchen.room_type) == ("matterport_house0_1", "kitchen")
    np.testing.assert_array_equal(bedroom.xyz, VERTICES[:4])
    np.testing.assert_array_equal(bedroom.rgb[:, 0], [0, 10, 20, 30])
    np.testing.assert_array_equal(kitchen.xyz, VERTICES[4:6])


def test_bedroom_layout_from_objects(root):
    bedroom, _ = mp.convert_scene(root, "house0")
    [wall] = bedroom.layout.walls
    assert astuple(wall) == pytest.approx(astuple(Wall(0, 0, 0, 4, 0, 0, 2.8, 0.1)))
    [door] = bedroom.layout.doors
    assert astuple(door) == pytest.approx(astuple(Door(0, 1, 0, 1, 0.9, 2)))
    [bed] = bedroom.layout.boxes  # O 2 turned 90 degrees: canonical yaw 0, extents swapped
    assert (bed.label, bed.x, bed.y, bed.z) == ("bed", 2, 1.5, 0.3)
    assert (bed.angle_z, bed.scale_x, bed.scale_y, bed.scale_z) == pytest.approx((0, 1.6, 2, 0.6))
    assert bedroom.dropped == {}


def test_kitchen_drop_counts(root):
    _, kitchen = mp.convert_scene(root, "house0")
    assert kitchen.layout.walls == () and kitchen.layout.doors == ()
    [rug] = kitchen.layout.boxes
    assert rug.label == "floor_mat"
    assert astuple(rug)[1:] == pytest.approx((5.5, 1.5, 0.01, 0, 2, 1.4, 0.02))
    assert kitchen.dropped == {"unknown_class": 1, "wall_not_straight": 1, "door_without_wall": 1,
                               "object_without_region": 1, "point_outside_region": 1}


def test_degenerate_obb_is_counted(root):
    edit_house(root, "0.2 0.2 0.2  0 0", "0.2 -1 0.2  0 0")
    _, kitchen = mp.convert_scene(root, "house0")
    assert kitchen.dropped["object_without_box"] == 1 and "unknown_class" not in kitchen.dropped


def test_spatiallm_label_set(root):
    _, kitchen = mp.convert_scene(root, "house0", label_set="spatiallm59")
    assert [b.label for b in kitchen.layout.boxes] == ["carpet"]


def test_region_meshes_are_preferred(root):
    folder = root / "house0" / "region_segmentations"
    write_mesh(folder / "region0.ply", VERTICES[:2])
    write_mesh(folder / "region1.ply", VERTICES[5:])
    bedroom, kitchen = mp.convert_scene(root, "house0")
    np.testing.assert_array_equal(bedroom.xyz, VERTICES[:2])
    np.testing.assert_array_equal(kitchen.xyz, VERTICES[5:])
    assert "point_outside_region" not in kitchen.dropped


def test_category_mapping_trusts_the_class_name(root):
    mapping = mp.read_category_mapping(root.parent / "metadata" / "category_mapping.tsv")
    assert mapping == {1: 1, 2: 8, 3: 4, 4: 20, 5: 0}


def edit_house(root, old, new):
    path = root / "house0" / "house_segmentations" / "house0.house"
    path.write_text(path.read_text().replace(old, new))
    return path


def test_truncated_house_is_an_error(root):
    edit_house(root, "O  7 1 1  7 1.5 1  0 1 0  0 0 1  0.45 1 0.05  0 0 0 0 0 0 0 0\n", "")
    with pytest.raises(ConversionError, match=r"house0\.house: the H line .* 8 objects; .* 7 O lines"):
        mp.convert_scene(root, "house0")


def test_malformed_line_names_the_line(root):
    edit_house(root, "O  3 1 3  5.5", "O  3 1 3  five")
    with pytest.raises(ConversionError, match=r"house0\.house, line 15: malformed O record"):
        mp.convert_scene(root, "house0")
    edit_house(root, "O  3 1 3  five 1.5 0.01  1 0 0  0 1 0  1 0.7 0.01  0 0 0 0 0 0 0 0", "O  3 1 3  5")
    with pytest.raises(ConversionError, match=r"line 15: O record has 5 fields, expected at least 16"):
        mp.convert_scene(root, "house0")


def test_missing_files_are_named(root):
    (root.parent / "metadata" / "category_mapping.tsv").unlink()
    with pytest.raises(ConversionError, match="category_mapping.tsv: missing file"):
        mp.convert_scene(root, "house0")
    with pytest.raises(ConversionError, match=r"nope\.house: missing file"):
        mp.convert_scene(root, "nope")


def test_unknown_mapping_index_is_an_error(root):
    tsv = root.parent / "metadata" / "category_mapping.tsv"
    tsv.write_bytes(TSV.replace("\r\n5\tjunk", "\r\n6\tjunk").encode())
    with pytest.raises(ConversionError, match="no row for category_mapping index 5"):
        mp.convert_scene(root, "house0")


def test_thick_walls_are_dropped():
    thin = mp.LabelledBox(1, Box("", 0, 0, 1, 0, 4, 0.2, 2))
    thick = mp.LabelledBox(1, Box("", 0, 0, 1, math.pi / 8, 4, 3, 2))
    sofa = mp.LabelledBox(6, Box("", 0, 0, 1, 0, 4, 3, 2))
    assert mp.drop_thick_walls([thin, thick, sofa]) == ([thin, sofa], 1)
