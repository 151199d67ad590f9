"""MetaSpatial interop (issue 13): all nine prepositions import, "in the middle of" is checked as
MetaSpatial checks it (as "on"), and no room_name can put a file outside the image folder (S3)."""

import json

import pytest

from spacelm.arrange.metaspatial_import import (
    INPUT_MARKER,
    read_parquet,
    task_from_scene_graph,
)
from spacelm.arrange.physics import check_layouts
from spacelm.arrange.task import Relation


def _priors(length, width, height):
    names = ("south_wall", "north_wall", "east_wall", "west_wall", "middle of the room", "ceiling")
    sizes = ((length, 0, height), (length, 0, height), (width, 0, height), (width, 0, height),
             (length, width, 0), (length, width, 0))
    return [{"new_object_id": n, "size_in_meters": dict(zip(("length", "width", "height"), s))}
            for n, s in zip(names, sizes)]


def _object(object_id, size, elements=(), objects=(), on_floor=True):
    return {"new_object_id": object_id, "size_in_meters": dict(zip(("length", "width", "height"), size)),
            "is_on_the_floor": on_floor, "facing": None, "rotation": {"z_angle": 0},
            "placement": {"room_layout_elements": [{"layout_element_id": e, "preposition": p}
                                                   for e, p in elements],
                          "objects_in_room": [{"object_id": o, "preposition": p, "is_adjacent": True}
                                              for o, p in objects]}}


GRAPH = [
    _object("table_1", (1.2, 0.8, 0.75), [("middle of the room", "in the middle of")]),
    _object("vase_1", (0.2, 0.2, 0.3), objects=[("table_1", "in the middle of")], on_floor=False),
    _object("chair_1", (0.5, 0.5, 0.9), objects=[("table_1", "behind")]),
    _object("shelf_1", (0.8, 0.4, 1.8), [("north_wall", "in the corner"), ("east_wall", "in the corner")]),
    _object("lamp_1", (0.3, 0.3, 0.4), [("ceiling", "on")], [("table_1", "above")], on_floor=False),
    _object("rug_1", (2.0, 1.5, 0.01), objects=[("table_1", "under")]),
    _object("plant_1", (0.4, 0.4, 1.0), objects=[("shelf_1", "left of"), ("chair_1", "right of")]),
    _object("stool_1", (0.4, 0.4, 0.5), objects=[("table_1", "in front"), ("table_1", "on")]),
] + _priors(5, 4, 2.8)


def test_all_nine_prepositions_import_and_middle_of_means_on():
    task = task_from_scene_graph(GRAPH, task_id="room_1", preference="")
    relations = {o.id: o.relations for o in task.objects}
    assert relations["table_1"] == (Relation("on", "middle of the room"),)
    assert relations["vase_1"] == (Relation("on", "table_1", True),)
    used = {r.type for rs in relations.values() for r in rs}
    assert used == {"on", "behind", "in the corner", "above", "under", "left of", "right of",
                    "in front"}


def test_in_the_middle_of_is_checked_like_on():
    graph = GRAPH[:2] + _priors(5, 4, 2.8)
    task = task_from_scene_graph(graph, task_id="room_1", preference="")
    table = [2.5, 2.0, 0.375, 0, 1.2, 0.8, 0.75]
    on_table = [2.5, 2.0, 0.75 + 0.15, 0, 0.2, 0.2, 0.3]
    hovering = [2.5, 2.0, 1.5, 0, 0.2, 0.2, 0.3]
    beside = [4.0, 3.0, 0.15, 0, 0.2, 0.2, 0.3]
    report = check_layouts(task, [[table, on_table], [table, hovering], [table, beside]])
    assert report.violated[:, 1].tolist() == [False, True, True]
    assert not report.violated[:, 0].any()  # the table stands on the floor


@pytest.mark.parametrize("room_name", ["../../escaped", "sub/dir/x", "/abs", ".hidden", "..", "a\x00b"])
def test_room_names_that_are_not_file_names_are_skipped(tmp_path, room_name):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")

    def row(name):
        return {"problem": f"<image>\n{INPUT_MARKER}\n" + json.dumps(GRAPH[:1] + _priors(5, 4, 2.8)),
                "images": [{"bytes": b"\x89PNG", "path": None}],
                "answer": json.dumps({"room_name": name, "user_preference": "",
                                      "size_of_room": {"x": 5, "y": 4, "z": 2.8}})}

    path = tmp_path / "data" / "train.parquet"
    path.parent.mkdir()
    pq.write_table(pa.Table.from_pylist([row(room_name), row("room_2")]), path)
    images = tmp_path / "out" / "images"
    result = read_parquet(path, image_dir=images)
    assert [t.id for t in result.tasks] == ["room_2"]
    assert [f.where for f in result.failures] == ["train.parquet, row 0"]
    assert "cannot name an image file" in result.failures[0].reason
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["data/train.parquet", "out/images/room_2.png"]


def test_room_descriptions_with_bad_sizes_or_bad_files(tmp_path):
    from spacelm.arrange.metaspatial_import import read_room_descriptions
    from spacelm.arrange.task import TaskError

    path = tmp_path / "rooms.json"
    path.write_text('[{"description": "den", "size": {"x": 5, "y": 4, "z": 3}},'
                    ' {"description": "a", "size": {"x": 1e400, "y": 4, "z": 3}},'
                    ' {"description": "b", "size": {"x": 1' + "0" * 400 + ', "y": 4, "z": 3}}]')
    rooms, failures = read_room_descriptions(path)
    assert [(r.description, r.length) for r in rooms] == [("den", 5.0)]
    assert [f.where for f in failures] == ["rooms.json, entry 1", "rooms.json, entry 2"]
    for text in (b"[" * 100000, b'{"a": 1}', b"\xff"):
        path.write_bytes(text)
        with pytest.raises(TaskError, match="rooms.json: "):
            read_room_descriptions(path)
