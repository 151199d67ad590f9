import math
from dataclasses import astuple

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from spacelm.datasets import hm3d
from spacelm.datasets.rooms import ConversionError

SCENE = "00800-TEEsavR23oF"
TXT = """HM3D Semantic Annotations
1,FF0000,"wall",0
2,00FF00,"door",0
3,0000FF,"office chair",0
4,FFFF00,"vase, small",0
5,FF00FF,"bed",1
6,00FFFF,"cup",1
7,800000,"lamp",-1
8,008000,"wall",1
9,000080,"sofa",1
"""
VOTES = ("Scene Name,Region #,Bathroom,Bedroom,Office,Unknown room,Weighted Room Proposal\n"
         f"{SCENE},0,0,0,5,0,Office\n{SCENE},1,0,10,10,0,Tie: Bedroom & Office\n")


def grid(*axes):
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def bed_points():
    """A 2 x 1.6 x 0.5 m block turned 30 degrees about z, centred at (7, 1.5)."""
    local = grid(np.linspace(-1, 1, 5), np.linspace(-0.8, 0.8, 5), np.linspace(0, 0.5, 3))
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    return local @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]) + (7, 1.5, 0)


# (semantic colour, points): objects of the file above, then unannotated (black) points.
OBJECTS = [
    ((255, 0, 0), grid(np.linspace(0, 4, 9), [0.0], np.linspace(0, 2.5, 6))),  # wall, room 0
    ((0, 255, 0), grid(np.linspace(1, 1.9, 4), [0.02], np.linspace(0, 2, 5))),  # door on it
    ((0, 0, 255), grid(np.linspace(1.75, 2.25, 4), np.linspace(1.25, 1.75, 4), np.linspace(0, 0.9, 4))),
    ((255, 255, 0), grid(np.linspace(3, 3.2, 4), np.linspace(2, 2.2, 5), [0.8])),  # vase: unmapped
    ((255, 0, 255), bed_points()),
    ((0, 255, 255), grid([6.0, 6.1, 6.2], [1.0], [0.9])),  # cup: 3 points
    ((128, 0, 0), grid(np.linspace(6, 6.2, 4), [1.0, 1.1, 1.2], [1.0])),  # lamp without region
    ((0, 128, 0), np.vstack([grid(np.linspace(5, 9, 9), [0.0], [0.0, 2.5]),  # an L-shaped "wall"
                             grid([9.0], np.linspace(0, 3, 7), [0.0, 2.5])])),
    ((0, 0, 0), grid([4.5, 4.6], [2.0], [0.0, 1.0])),  # unannotated
]


def write_cloud(path, *, appearance):
    xyz = np.vstack([p for _, p in OBJECTS]).astype(np.float32)
    semantic = np.vstack([np.tile(c, (len(p), 1)) for c, p in OBJECTS]).astype(np.uint8)
    names = ["red", "green", "blue"]
    fields = [(a, "f4") for a in "xyz"] + [(n, "u1") for n in names]
    if appearance:
        fields += [(f"semantic_{n}", "u1") for n in names]
    vertex = np.zeros(len(xyz), dtype=fields)
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    for i, name in enumerate(names):
        if appearance:
            vertex[f"semantic_{name}"] = semantic[:, i]
            vertex[name] = 7 * (i + 1)
        else:
            vertex[name] = semantic[:, i]
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))
    return xyz


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / SCENE
    folder.mkdir()
    (folder / "TEEsavR23oF.semantic.txt").write_text(TXT)
    write_cloud(folder / "TEEsavR23oF.semantic.ply", appearance=False)
    (tmp_path / "notes").mkdir()
    return tmp_path


def counts_before(k):
    return sum(len(p) for _, p in OBJECTS[:k])


def test_scenes_are_listed(root):
    assert hm3d.list_scenes(root) == [SCENE]


def test_regions_are_rooms(root):
    office, bedroom = hm3d.convert_scene(root, SCENE)
    assert (office.sample_id, office.region, office.room_type) == (f"hm3d_{SCENE}_0", "0", "")
    assert (bedroom.sample_id, bedroom.region) == (f"hm3d_{SCENE}_1", "1")
    assert len(office.xyz) == counts_before(4)  # wall, door, chair, vase
    in_bedroom = len(OBJECTS[4][1]) + len(OBJECTS[5][1]) + len(OBJECTS[7][1])
    assert len(bedroom.xyz) == in_bedroom  # no lamp (no region), no unannotated points
    assert (office.rgb == hm3d.GREY).all()  # semantic colours never leak into the points


def test_office_layout(root):
    office, _ = hm3d.convert_scene(root, SCENE)
    [wall] = office.layout.walls
    assert astuple(wall) == pytest.approx((0, 0, 0, 4, 0, 0, 2.5, 0), abs=1e-6)
    [door] = office.layout.doors
    assert astuple(door) == pytest.approx((0, 1.45, 0, 1.0, 0.9, 2.0), abs=1e-6)
    [chair] = office.layout.boxes
    assert chair.label == "chair"
    assert astuple(chair)[1:] == pytest.approx((2, 1.5, 0.45, 0, 0.5, 0.5, 0.9), abs=1e-6)
    assert office.dropped == {"unknown_class": 1}


def test_bedroom_box_and_drop_counts(root):
    _, bedroom = hm3d.convert_scene(root, SCENE)
    [bed] = bedroom.layout.boxes
    assert bed.label == "bed"
    assert astuple(bed)[1:] == pytest.approx((7, 1.5, 0.25, math.pi / 6, 2, 1.6, 0.5), abs=1e-6)
    assert bedroom.layout.walls == ()
    assert bedroom.dropped == {"object_too_few_points": 2, "wall_not_straight": 1, "object_without_region": 1}


def test_room_types_from_votes(root):
    (root / hm3d.VOTES_NAME).write_text(VOTES)
    office, bedroom = hm3d.convert_scene(root, SCENE)
    assert (office.room_type, bedroom.room_type) == ("office", "unknown room")


def test_appearance_colours_are_used_when_present(root):
    write_cloud(root / SCENE / "TEEsavR23oF.semantic.ply", appearance=True)
    office, _ = hm3d.convert_scene(root, SCENE)
    np.testing.assert_array_equal(np.unique(office.rgb, axis=0), [[7, 14, 21]])
    assert len(office.layout.walls) == 1


@pytest.mark.parametrize("name, expected", [
    ("Kitchen Cabinet", 3), ("couch", 6), ("towels", 27), ("night stand", 32), ("rug", 20),
    ("table lamp", 35), ("shower curtain", 28), ("cabinet door", 0), ("window frame", 0),
    ("door", 8), ("wall", 1), ("decoration", 0), ("", 0),
])
def test_name_table(name, expected):
    assert hm3d.hm3d_nyu40(name) == expected


def edit_txt(root, old, new):
    path = root / SCENE / "TEEsavR23oF.semantic.txt"
    path.write_text(path.read_text().replace(old, new))


def test_bad_lines_are_named(root):
    edit_txt(root, '3,0000FF,"office chair",0', '3,0000FF,"office chair"')
    with pytest.raises(ConversionError, match=r"TEEsavR23oF\.semantic\.txt, line 4: expected id,HEXCOLOR"):
        hm3d.convert_scene(root, SCENE)
    edit_txt(root, '3,0000FF,"office chair"', '3,FF0000,"office chair",0')
    with pytest.raises(ConversionError, match="line 4: colour FF0000 repeats line 2"):
        hm3d.convert_scene(root, SCENE)
    edit_txt(root, "HM3D Semantic Annotations", "something else")
    with pytest.raises(ConversionError, match=r"semantic\.txt, line 1: expected 'HM3D Semantic Annotations'"):
        hm3d.convert_scene(root, SCENE)


def test_missing_files_are_named(root):
    (root / SCENE / "TEEsavR23oF.semantic.ply").unlink()
    with pytest.raises(ConversionError, match=r"TEEsavR23oF\.semantic\.ply: missing"):
        hm3d.convert_scene(root, SCENE)
    with pytest.raises(ConversionError, match=r"nope: expected one \*\.semantic\.txt, found 0"):
        hm3d.convert_scene(root, "nope")
