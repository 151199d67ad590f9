import math
from dataclasses import replace

import numpy as np
import pytest

from spacelm.arrange import answer as A
from spacelm.arrange.answer import (
    object_name,
    parse_answer,
    placements_to_boxes,
    room_walls,
    to_layout,
)
from spacelm.arrange.task import Room

OBJECTS = [{"id": "sofa_1", "size": [2, 0.9, 0.8], "rotation": 90},
           {"id": "lamp_1", "size": [0.3, 0.3, 1.5]}]
GOOD = [{"id": "sofa_1", "x": 2, "y": 0.45, "z": 0.4, "rotation": 0},
        {"id": "lamp_1", "x": 3.5, "y": 0.3, "z": 0.75, "rotation": 45.5}]


@pytest.fixture
def task(make_task):
    return make_task(OBJECTS)


def codes(answer):
    return [e.code for e in answer.errors]


def test_valid_answer_reads_every_placement(task, completion):
    a = parse_answer(completion(GOOD), task)
    assert a.structure_ok and a.strict_json and a.complete and not a.errors and a.entries == 2
    assert a.placements[1] == A.Placement("lamp_1", 3.5, 0.3, 0.75, 45.5)


def test_placements_follow_task_order_and_accept_metaspatial_key(task, completion):
    entries = [{"new_object_id": "lamp_1", "x": 1, "y": 1, "z": 0.75, "rotation": 0},
               {"id": "sofa_1", "x": 2, "y": 1, "z": 0.4, "rotation": 0}]
    assert [p.id for p in parse_answer(completion(entries), task).placements] == ["sofa_1", "lamp_1"]


def test_chat_message_completions(task, completion):
    message = [{"role": "assistant", "content": completion(GOOD)}]
    assert parse_answer(message, task).complete
    multimodal = [{"role": "assistant", "content": [{"type": "text", "text": completion(GOOD)}]}]
    assert parse_answer(multimodal, task).complete


def test_no_answer_and_structure(task):
    a = parse_answer("<think>hmm</think> the sofa goes left", task)
    assert codes(a) == [A.NO_ANSWER] and not a.structure_ok and not a.complete
    # An answer without a think block is read, but the structure check fails.
    b = parse_answer('<answer>[]</answer>', task)
    assert not b.structure_ok and codes(b) == [A.MISSING_OBJECT, A.MISSING_OBJECT]


def test_lenient_repairs_are_recorded(task):
    body = ('```json\n[{"id": "sofa_1", "x": 2, "y": 0.45, "z": 0.4, "rotation": 0},\n'
            '{"id": "lamp_1", "x": 3, "y": 0.3, "z": 0.75, "rotation": 0},\n]\n```')
    a = parse_answer(f"<think>.</think><answer>{body}</answer>", task)
    assert a.complete and not a.strict_json
    assert a.repairs == ("stripped a code fence", "removed trailing commas")
    bare = ('{"id": "sofa_1", "x": 2, "y": 0.45, "z": 0.4, "rotation": 0}, '
            '{"id": "lamp_1", "x": 3, "y": 0.3, "z": 0.75, "rotation": 0}')
    b = parse_answer(f"<think>.</think><answer>{bare}</answer>", task)
    assert b.complete and b.repairs == ("wrapped the objects in a list",)


def test_metaspatial_prompt_example_is_not_json(task):
    # MetaSpatial's expected-output example: two objects, no brackets, one stray brace.
    example = ('{"new_object_id": "sectional_sofa_1","x": 1.0,"y": 1.8274559707043474,"z": 0.45}, '
               '{"new_object_id": "sectional_sofa_2","x": 1.0,"y": 1.8274559707043474,"z": 0.45}}')
    a = parse_answer(f"<think>.</think><answer>\n{example}\n</answer>", task)
    assert a.structure_ok and codes(a) == [A.NOT_JSON]


def test_unclosed_answer_and_last_block_wins(task, completion):
    text = completion([]) + '<answer>[{"id": "sofa_1", "x": 2, "y": 1, "z": 0.4, "rotation": 0}'
    a = parse_answer(text, task)  # truncated generation: the last block has no closing tag
    assert not a.structure_ok and codes(a) == [A.NOT_JSON]


def test_not_a_list(task, completion):
    assert codes(parse_answer(completion({"sofa_1": [1, 2, 3]}), task)) == [A.NOT_LIST]


@pytest.mark.parametrize("entry, code", [
    (["sofa_1", 1, 2, 3], A.NOT_OBJECT),
    ({"x": 1, "y": 1, "z": 1, "rotation": 0}, A.MISSING_FIELD),
    ({"id": "sofa_1", "x": 1, "y": 1, "rotation": 0}, A.MISSING_FIELD),
    ({"id": "sofa_1", "x": "1", "y": 1, "z": 1, "rotation": 0}, A.NOT_NUMBER),
    ({"id": "sofa_1", "x": True, "y": 1, "z": 1, "rotation": 0}, A.NOT_NUMBER),
    ({"id": "sofa_1", "x": float("nan"), "y": 1, "z": 1, "rotation": 0}, A.NON_FINITE),
    ({"id": "sofa_1", "x": 1, "y": float("inf"), "z": 1, "rotation": 0}, A.NON_FINITE),
    ({"id": "chair_7", "x": 1, "y": 1, "z": 1, "rotation": 0}, A.UNKNOWN_ID),
])
def test_entry_errors(task, completion, entry, code):
    # json.dumps writes NaN and Infinity, which json.loads accepts: the parser must catch them.
    a = parse_answer(completion([entry, GOOD[1]]), task)
    assert code in codes(a) and not a.complete and a.placements[-1].id == "lamp_1"


def test_duplicates_keep_the_first_and_missing_objects_are_listed(task, completion):
    moved = {**GOOD[0], "x": 4.0}
    a = parse_answer(completion([GOOD[0], moved]), task)
    assert codes(a) == [A.DUPLICATE_ID, A.MISSING_OBJECT]
    assert a.placements[0].x == 2 and "'lamp_1' is not placed" in a.errors[1].message


def test_rotation_can_fall_back_to_the_reference(task, completion):
    xyz = [{k: v for k, v in e.items() if k != "rotation"} for e in GOOD]
    assert codes(parse_answer(completion(xyz), task)) == [A.MISSING_FIELD, A.MISSING_FIELD]
    a = parse_answer(completion(xyz), task, require_rotation=False)
    assert a.complete and [p.rotation for p in a.placements] == [90.0, 0.0]


def test_boxes_and_layout(task, completion):
    placements = parse_answer(completion(GOOD), task).placements
    boxes = placements_to_boxes(task, placements[::-1])  # any order in, task order out
    np.testing.assert_allclose(boxes[1], [3.5, 0.3, 0.75, math.radians(45.5), 0.3, 0.3, 1.5])
    layout = to_layout(task, placements)
    assert [b.label for b in layout.boxes] == ["sofa_1", "lamp_1"]
    # The 6 x 6 x 3 room's four walls, counter-clockwise from the origin.
    assert [(w.ax, w.ay, w.bx, w.by, w.height) for w in layout.walls] == [
        (0, 0, 6, 0, 3), (6, 0, 6, 6, 3), (6, 6, 0, 6, 3), (0, 6, 0, 0, 3)]
    assert to_layout(task, placements, walls=False).walls == ()
    assert [b.label for b in to_layout(task, placements, label="name").boxes] == ["sofa", "lamp"]
    np.testing.assert_allclose(layout.box_array(), boxes)
    with pytest.raises(ValueError, match="no placement for lamp_1"):
        placements_to_boxes(task, placements[:1])


def test_object_name():
    assert object_name("dining_chair_12") == "dining chair"
    assert object_name("lamp") == "lamp" and object_name("3") == "3"


def test_polygon_room_walls_run_counter_clockwise(make_task):
    task = make_task([{"id": "a"}])
    clockwise = ((0, 0), (0, 6), (3, 6), (3, 3), (6, 3), (6, 0))  # an L, listed clockwise
    l_room = replace(task, room=Room(6, 6, 3, clockwise))
    walls = room_walls(l_room)
    assert len(walls) == 6 and (walls[0].ax, walls[0].ay, walls[0].bx, walls[0].by) == (6, 0, 6, 3)
