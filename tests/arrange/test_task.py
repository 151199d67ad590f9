import json

import pytest

from spacelm.arrange.task import (
    ArrangeTask,
    Relation,
    TaskError,
    read_completions,
    read_tasks,
    task_from_dict,
    task_to_dict,
    write_tasks,
)

TASK = {
    "id": "room_1", "room": {"length": 5, "width": 4, "height": 2.8}, "preference": "cosy den",
    "objects": [
        {"id": "sofa_1", "size": [2.0, 0.9, 0.8], "on_floor": True, "facing": "tv_1",
         "relations": [{"type": "against wall", "target": "south_wall", "adjacent": True}]},
        {"id": "tv_1", "size": [1.2, 0.3, 0.7], "on_floor": False, "facing": "sofa_1",
         "relations": [{"type": "on", "target": "stand_1", "adjacent": True}]},
        {"id": "stand_1", "size": [1.5, 0.4, 0.5], "on_floor": True, "facing": None,
         "relations": [{"type": "in front", "target": "sofa_1", "adjacent": False}],
         "style": "modern", "material": "oak"},
    ],
}


def test_round_trip_through_jsonl(tmp_path, make_task):
    task = task_from_dict(TASK)
    assert task.objects[1].relations == (Relation("on", "stand_1", True),)
    assert task.objects[2].style == "modern" and task.objects[0].size == (2.0, 0.9, 0.8)
    path = tmp_path / "tasks.jsonl"
    write_tasks(path, [task, make_task([{"id": "box_1"}], task_id="t2")])
    again = read_tasks(path)
    assert again[0] == task and isinstance(again[0], ArrangeTask)
    # The written form is exactly the documented schema (optional fields only when set).
    assert json.loads(path.read_text().splitlines()[0]) == TASK


def test_polygon_and_image_are_optional_fields():
    data = {**TASK, "image": "room_1.png",
            "room": {**TASK["room"], "polygon": [[0, 0], [5, 0], [5, 2], [3, 2], [3, 4], [0, 4]]}}
    task = task_from_dict(data)
    assert task.room.polygon[3] == (3.0, 2.0) and task.image == "room_1.png"
    assert task_to_dict(task) == data


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["objects"][2]["size"].__setitem__(1, 0), r"objects\[2\]\.size\[1\]: must be > 0"),
    (lambda d: d["objects"][0]["size"].pop(), r"objects\[0\]\.size: must be \[l, w, h\]"),
    (lambda d: d["objects"][1].__setitem__("on_floor", "yes"), r"objects\[1\]\.on_floor: must be true"),
    (lambda d: d["room"].__setitem__("height", float("nan")), r"room\.height: must be finite"),
    (lambda d: d["room"].pop("width"), r"room\.width: missing"),
    (lambda d: d["objects"][1].__setitem__("id", "sofa_1"), r"objects\[1\]\.id: 'sofa_1' already"),
    (lambda d: d["objects"][0].__setitem__("id", "ceiling"), r"objects\[0\]\.id: 'ceiling' is a reserved"),
    (lambda d: d["objects"][0].__setitem__("facing", "lamp_9"), r"objects\[0\]\.facing: 'lamp_9'"),
    (lambda d: d["objects"][0]["relations"][0].__setitem__("type", "near"),
     r"objects\[0\]\.relations\[0\]\.type: 'near' is not one of"),
    (lambda d: d["objects"][2]["relations"][0].__setitem__("target", "north_wall"),
     r"objects\[2\]\.relations\[0\]\.target: 'north_wall' is not valid for 'in front'"),
    (lambda d: d["objects"][2]["relations"][0].__setitem__("target", "stand_1"),
     r"objects\[2\]\.relations\[0\]\.target: 'stand_1'"),  # an object cannot relate to itself
    (lambda d: d["objects"][0]["relations"][0].__setitem__("target", "sofa_1"),
     r"'sofa_1' is not valid for 'against wall'; expected south_wall"),
    (lambda d: d.__setitem__("objects", []), r"objects: must list at least one object"),
    (lambda d: d["room"].__setitem__("polygon", [[0, 0], [9, 0], [0, 4]]),
     r"room\.polygon\[1\]: \(9\.0, 0\.0\) lies outside the room box"),
    (lambda d: d["room"].__setitem__("polygon", [[0, 0], [5, 4], [5, 0], [0, 4]]),
     r"room\.polygon: not a simple polygon"),
])
def test_errors_name_the_field_path(edit, message):
    data = json.loads(json.dumps(TASK))
    edit(data)
    with pytest.raises(TaskError, match=message):
        task_from_dict(data)


def test_read_errors_name_file_and_line(tmp_path):
    bad = json.loads(json.dumps(TASK))
    bad["objects"][1]["size"][2] = -1
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(TASK) + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(TaskError, match=r"tasks\.jsonl, line 3: objects\[1\]\.size\[2\]: must be > 0"):
        read_tasks(path)
    path.write_text(json.dumps(TASK) + "\n" + json.dumps(TASK) + "\n")
    with pytest.raises(TaskError, match="line 2: id: 'room_1' already used on line 1"):
        read_tasks(path)
    path.write_text("{not json\n")
    with pytest.raises(TaskError, match="line 1: not JSON"):
        read_tasks(path)


def test_read_completions(tmp_path):
    path = tmp_path / "completions.jsonl"
    path.write_text(json.dumps({"task_id": "room_1", "completion": "<think/>"}) + "\n"
                    + json.dumps({"task_id": "room_1"}) + "\n")
    with pytest.raises(TaskError, match="completions.jsonl, line 2: completion: missing"):
        read_completions(path)
    path.write_text(json.dumps({"task_id": "room_1", "completion": "x", "extra": 1}) + "\n")
    assert read_completions(path)[0].completion == "x"
