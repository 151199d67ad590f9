"""Hostile task and completion JSONL: every bad line is a ``TaskError`` naming the file and line.
The regressions are the reproducers T1-T6 of research/reliability-2026-12.md."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacelm.arrange.evaluate import evaluate_completions
from spacelm.arrange.task import (
    CompletionRecord,
    TaskError,
    read_completions,
    read_tasks,
    short_json,
)
from spacelm.errors import SpacelmError

TASK = {"id": "t1", "room": {"length": 4, "width": 3, "height": 2.5}, "preference": "",
        "objects": [{"id": "bed_1", "size": [2, 1.6, 0.5], "rotation": 90}]}


def _file(tmp_path, bad_line: bytes, name="tasks.jsonl"):
    """Two good records, then the bad line (line 3), then one more good record."""
    good = [json.dumps({**TASK, "id": f"t{i}"} if name.startswith("tasks") else
                       {"task_id": f"t{i}", "completion": "x"}).encode() for i in (1, 2, 4)]
    path = tmp_path / name
    path.write_bytes(b"\n".join(good[:2] + [bad_line] + good[2:]) + b"\n")
    return path


@pytest.mark.parametrize("bad, message", [
    (b'{"id": ' + b"1" * 4301 + b"}", "a number has more digits than can be read"),  # T1
    (b"[" * 5000, "nested too deeply to read"),  # T2
    (b'{"id": "t3\xff"}', r"not UTF-8 text \(byte 0xff at column 11\)"),  # T3
    (json.dumps({**TASK, "room": {**TASK["room"], "length": 10**400}}).encode(),
     r"room.length: must be finite \(and fit a float\), got an integer of 401 digits"),  # T4
    (json.dumps({**TASK, "objects": [{"id": "b", "size": [1, 1, 10**400]}]}).encode(),
     r"objects\[0\].size\[2\]: must be finite"),
    (json.dumps({**TASK, "objects": [{"id": "b", "size": [1, 1, 1], "rotation": -10**400}]}).encode(),
     r"objects\[0\].rotation: must be finite"),
])
def test_bad_lines_name_the_file_and_line(tmp_path, bad, message):
    with pytest.raises(TaskError, match=rf"tasks.jsonl, line 3: {message}"):
        read_tasks(_file(tmp_path, bad))
    if b"room" not in bad:  # the lines no JSON reader gets past
        with pytest.raises(TaskError, match=rf"completions.jsonl, line 3: {message}"):
            read_completions(_file(tmp_path, bad, "completions.jsonl"))


def test_unknown_task_id_names_the_completion_file_and_line(tmp_path):  # T5
    tasks = read_tasks(_file(tmp_path, json.dumps({**TASK, "id": "t3"}).encode()))
    path = tmp_path / "completions.jsonl"
    path.write_text("".join(json.dumps({"task_id": t, "completion": "x"}) + "\n"
                            for t in ("t1", "t2", "nope", "t1", "gone")))
    with pytest.raises(TaskError, match=r"completions.jsonl, line 3: task_id 'nope' is not among the "
                                        r"tasks \(2 unknown task id\(s\) in all\)"):
        evaluate_completions(tasks, read_completions(path))
    with pytest.raises(TaskError, match=r"^completion 1: task_id 'x'"):
        evaluate_completions(tasks, [CompletionRecord("t1", ""), CompletionRecord("x", "")])


def test_eval_scores_completions_that_used_to_abort_it(tmp_path):  # T6
    tasks = read_tasks(_file(tmp_path, json.dumps({**TASK, "id": "t3"}).encode()))
    texts = ['<think>.</think><answer>[{"id":"bed_1","x":1' + "0" * 400 + ',"y":1,"z":0.25}]</answer>',
             '<think>.</think><answer>[{"id":"bed_1","x":' + "1" * 4301 + "}]</answer>",
             "<think>.</think><answer>" + "[" * 100000 + "</answer>"]
    result = evaluate_completions(tasks, [CompletionRecord("t1", t) for t in texts])
    assert [c.format for c in result.completions] == [0.5, 0.5, 0.1]
    assert result.mean.valid == 0


def test_records_compare_without_where():
    assert CompletionRecord("t", "x", "a.jsonl, line 1") == CompletionRecord("t", "x")
    assert issubclass(TaskError, SpacelmError) and issubclass(TaskError, ValueError)
    assert short_json({"a": [1] * 5}) == "an object of 1 entries" and short_json(2.5) == "2.5"


# --- properties ---------------------------------------------------------------------------------

_LEAVES = st.sampled_from([0, -1, 1.5, 10**400, "1e999", "", "x", None, True, [], {}, [1, 2, 3],
                           [1, 1, 1], 1e308, "south_wall", "bed_1", "on", "left of"])
_KEYS = st.sampled_from(["id", "room", "preference", "objects", "size", "length", "width", "height",
                         "polygon", "relations", "type", "target", "facing", "rotation", "on_floor",
                         "image", "adjacent", "style", "task_id", "completion"])


@st.composite
def mutated_tasks(draw):
    """The good task with a few values replaced (at any depth) by odd leaves or containers."""
    record = json.loads(json.dumps(TASK))
    record["objects"][0]["relations"] = [{"type": "on", "target": "middle of the room"}]
    record["room"]["polygon"] = [[0, 0], [4, 0], [4, 3], [0, 3]]
    for _ in range(draw(st.integers(1, 4))):
        node = record
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            if not isinstance(node[key], (dict, list)):
                break
            node = node[key]
        if isinstance(node, dict):
            node[draw(_KEYS)] = draw(_LEAVES | st.recursive(_LEAVES, lambda c: st.lists(c, max_size=3)))
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(_LEAVES)
    return json.dumps(record).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.one_of(mutated_tasks(), st.binary(max_size=40),
                 st.sampled_from([b"[" * 3000, b'{"id": ' + b"9" * 5000 + b"}", b"\xef\xbb\xbf{}"])))
def test_readers_raise_only_task_errors_that_name_the_line(tmp_path, line):
    line = line.replace(b"\n", b" ").replace(b"\r", b" ")
    for reader, name in ((read_tasks, "tasks.jsonl"), (read_completions, "completions.jsonl")):
        path = _file(tmp_path, line, name)
        try:
            reader(path)
        except TaskError as e:
            assert str(e).startswith(f"{path}, line ")
