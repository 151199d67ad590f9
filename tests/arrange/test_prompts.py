import json
import re
from dataclasses import replace

import pytest

from spacelm.arrange.answer import parse_answer
from spacelm.arrange.physics import check_layouts
from spacelm.arrange.prompts import (
    SYSTEM_PROMPT,
    build_messages,
    build_prompt,
    describe_violations,
    example_answer,
    feedback_message,
    revision_messages,
)
from spacelm.arrange.rewards import FormatReward, PhysicsReward
from spacelm.arrange.task import Room

SECTIONS = ["## Task Description", "## Room Information", "## User Preferences",
            "## Placement Rules", "## Output Format", "## Expected Output", "## Input JSON Data"]


@pytest.fixture
def task(make_task):
    return make_task([
        {"id": "sofa_1", "size": [2, 0.9, 0.8], "facing": "north_wall", "style": "modern",
         "relations": [{"type": "against wall", "target": "south_wall", "adjacent": True}]},
        {"id": "lamp_1", "size": [0.3, 0.3, 1.5], "relations": [{"type": "right of", "target": "sofa_1"}]},
    ], room=(5, 4, 2.8))


def test_prompt_sections_and_room(task):
    prompt = build_prompt(task)
    assert [prompt.index(s) for s in SECTIONS] == sorted(prompt.index(s) for s in SECTIONS)
    assert "length 5 m (x) x width 4 m (y) x height 2.8 m (z)" in prompt
    assert "exactly 2 entries" in prompt and '"rotation"' in prompt and "a test room" in prompt
    objects = json.loads(prompt.split("## Input JSON Data\n", 1)[1])
    assert [o["id"] for o in objects] == ["sofa_1", "lamp_1"] and objects[0]["style"] == "modern"


def test_the_example_answer_is_valid(task):
    # MetaSpatial's example was malformed and models copied it (format 0.1); ours parses.
    prompt = build_prompt(task)
    example = re.search(r"## Expected Output.*?<answer>\n(.*?)\n</answer>", prompt, re.DOTALL)
    entries = json.loads(example.group(1))
    assert isinstance(entries, list) and set(entries[0]) == {"id", "x", "y", "z", "rotation"}
    copied = f"<think>copy</think><answer>{example.group(1)}</answer>"
    assert parse_answer(copied, task).strict_json
    assert FormatReward()(["p"], [copied], task=[task]) == [0.5]  # valid JSON, but not these ids


def test_xyz_only_variant_lists_the_fixed_rotation(make_task):
    task = make_task([{"id": "bed_1", "size": [2, 1.6, 0.5], "rotation": 270}])
    prompt = build_prompt(task, rotation=False, image=False)
    assert "rotation" not in json.loads(example_answer(rotation=False))[0]
    assert json.loads(prompt.split("## Input JSON Data\n", 1)[1])[0]["rotation"] == 270
    assert "image" not in prompt.split("## Room")[0]


def test_polygon_rooms_and_relation_frames(make_task):
    task = make_task([{"id": "a"}])
    l_room = replace(task, room=Room(6, 6, 3, ((0, 0), (6, 0), (6, 3), (3, 3), (3, 6), (0, 6))))
    assert "Floor plan polygon (x, y corners, m): [[0, 0], [6, 0], [6, 3]" in build_prompt(l_room)
    assert "polygon" not in build_prompt(task)
    assert "seen from the target object" in build_prompt(task)
    assert "left is west" in build_prompt(task, relation_frame="room")


def test_messages(task):
    messages = build_messages(task)
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert messages[1]["content"][0] == {"type": "image"}
    assert isinstance(build_messages(task, image=False)[1]["content"], str)


def test_describe_violations(make_task):
    task = make_task([{"id": "a"}, {"id": "b", "relations": [{"type": "in front", "target": "a"}]},
                      {"id": "c", "facing": "a"}])
    layout = [[1, 1, 0.5, 0, 1, 1, 1], [1.5, 1, 0.5, 0, 1, 1, 1], [5.8, 4, 0.7, 0, 1, 1, 1]]
    report = check_layouts(task, layout)
    assert describe_violations(report, task) == [
        "a and b overlap by 0.50 m", "c reaches 0.30 m outside the room",
        "c is 0.20 m away from the floor it should stand on", "b is not in front of a",
        "c does not face a"]


def test_feedback_and_revision_turns(task, completion):
    crash = completion([{"id": "sofa_1", "x": 2, "y": 0.45, "z": 0.4, "rotation": 0},
                        {"id": "lamp_1", "x": 2.5, "y": 0.3, "z": 0.75, "rotation": 0}])
    detail = PhysicsReward().breakdown(["p"], [crash], task=[task])[0]
    text = feedback_message(task, crash, detail)
    assert '"id": "lamp_1", "x": 2.5' in text and "- lamp_1 is not right of sofa_1" in text
    assert text.index("## Previous Reward") < text.index("## Problems") < text.index("## Current Step")
    unreadable = feedback_message(task, "<think>hm</think>", {"score": None})
    assert "(no layout could be read)" in unreadable and "- no <answer> block" in unreadable
    assert "unavailable" in unreadable
    messages = revision_messages(task, [(crash, detail), ("<think>hm</think>", {"score": 0.0})])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[2]["content"] == crash
