"""Hostile completions: ``parse_answer`` and every reward never raise, and return a finite score
or None. The regressions are the reproducers A1-A5 of research/reliability-2026-12.md."""

import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacelm.arrange import answer as A
from spacelm.arrange.answer import parse_answer, structure_ok
from spacelm.arrange.rewards import ArrangeReward, FormatReward, PhysicsReward

OBJECTS = [{"id": "bed_1", "size": [2, 1.6, 0.5]}, {"id": "lamp_1", "size": [0.3, 0.3, 1.5]}]
METASPATIAL = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.DOTALL)


@pytest.fixture
def task(make_task):
    return make_task(OBJECTS)


def _bed(x: str) -> str:
    return ('<think>.</think><answer>[{"id":"bed_1","x":' + x + ',"y":1,"z":0.25,"rotation":0},'
            '{"id":"lamp_1","x":3,"y":1,"z":0.75,"rotation":0}]</answer>')


@pytest.mark.parametrize("x", ["1" + "0" * 400,  # A1: an int too large for a float
                               "1" * 4301,  # A2: past Python's int() digit limit
                               "1" * 5000, "1e400", "-1e400"])
def test_numbers_too_large_for_a_float_are_a_format_error(task, x):
    a = parse_answer(_bed(x), task)
    assert a.strict_json and [e.code for e in a.errors] == [A.NON_FINITE] and not a.complete
    assert "'x' is not a finite number" in a.errors[0].message and len(a.errors[0].message) < 200
    assert FormatReward()([""], [_bed(x)], task=[task]) == [0.5]


def test_largest_floats_still_parse(task):
    a = parse_answer(_bed("1e308"), task)
    assert a.complete and a.placements[0].x == 1e308


@pytest.mark.parametrize("body", ["[" * 100000, "{" * 100000, '[{"id": "bed_1", "x": ' + "[" * 100000])
def test_deep_nesting_is_not_json(task, body):  # A3
    text = f"<think>.</think><answer>{body}</answer>"
    a = parse_answer(text, task)
    assert a.structure_ok and [e.code for e in a.errors] == [A.NOT_JSON]
    assert FormatReward()([""], [text], task=[task]) == [0.1]


def test_chat_parts_that_are_not_text_are_skipped(task, completion):  # A4
    good = completion([{"id": "bed_1", "x": 1, "y": 1, "z": 0.25, "rotation": 0},
                       {"id": "lamp_1", "x": 3, "y": 1, "z": 0.75, "rotation": 0}])
    parts = [{"type": "text", "text": 3}, {"type": "text", "text": good}, {"type": "image"}, "x"]
    assert parse_answer([{"role": "assistant", "content": parts}], task).complete
    assert parse_answer([{"role": "assistant", "content": None}], task).errors[0].code == A.NO_ANSWER


def test_structure_check_is_linear():  # A5: the regex took 14 s on 256 KB
    import time

    text = "<think>" + "</think><answer>" * (1 << 16)  # 1 MB
    start = time.perf_counter()
    assert not structure_ok(text) and structure_ok(text + "</answer>")
    assert time.perf_counter() - start < 0.5


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "a",
                                 "<", "/", "\u00a0", "\x1c"]), max_size=9).map("".join))
def test_structure_check_agrees_with_metaspatials_regex(text):
    assert structure_ok(text) == (METASPATIAL.match(text) is not None)


def test_fence_repair_matches_the_old_behaviour(task):
    body = '```json\n[{"id": "bed_1", "x": 1, "y": 1, "z": 0.25, "rotation": 0}]\n```'
    a = parse_answer(f"<think>.</think><answer>{body}</answer>", task)
    assert a.repairs == ("stripped a code fence",) and a.placements[0].x == 1.0
    assert A._fence_content("```") is None and A._fence_content("``````") == ""
    assert A._fence_content("```py  \n x \n```") == "x"


# --- properties ---------------------------------------------------------------------------------

_VALUES = st.sampled_from(["1", "0.5", "-2", "1e400", "1" * 4301, "1" + "0" * 400, "NaN",
                           "Infinity", '"3"', "true", "null", "[" * 3000, "{}", "[1]"])


@st.composite
def completions(draw):
    """Answers with hostile values, bad JSON, odd tags and chat forms."""
    entries = []
    for object_id in draw(st.lists(st.sampled_from(["bed_1", "lamp_1", "ghost"]), max_size=4)):
        fields = {k: draw(_VALUES) for k in draw(st.sets(st.sampled_from("x y z rotation".split())))}
        key = draw(st.sampled_from(["id", "new_object_id", "name"]))
        entries.append("{" + f'"{key}": "{object_id}"' + "".join(f', "{k}": {v}' for k, v in fields.items())
                       + "}")
    body = "[" + ",".join(entries) + draw(st.sampled_from(["]", "", ",]", "]]"]))
    body = draw(st.sampled_from([body, f"```json\n{body}\n```", body.strip("[]"), "[" * 5000]))
    text = draw(st.sampled_from(["<think>t</think><answer>{}</answer>", "<answer>{}",
                                 "<think>t</think>\n<answer>{}</answer><answer>{}</answer>", "{}"]))
    text = text.replace("{}", body) + draw(st.text(max_size=4))
    shape = draw(st.sampled_from(["str", "chat", "parts"]))
    if shape == "chat":
        return [{"role": "assistant", "content": text}]
    if shape == "parts":
        return [{"role": "assistant", "content": [{"type": "text", "text": text},
                                                  {"type": "text", "text": draw(_VALUES)}]}]
    return text


def _finite_or_none(scores):
    return all(s is None or (isinstance(s, float) and math.isfinite(s)) for s in scores)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.lists(completions(), min_size=1, max_size=3))
def test_parse_answer_and_the_rewards_never_raise(task, batch):
    for c in batch:
        for require_rotation in (True, False):
            a = parse_answer(c, task, require_rotation=require_rotation)
            assert all(math.isfinite(v) for p in a.placements for v in p[1:])
    columns = {"task": [task] * len(batch)}
    prompts = [""] * len(batch)
    for reward in (FormatReward(), FormatReward(shaped=True), PhysicsReward(), ArrangeReward(),
                   ArrangeReward(weights="default")):
        scores = reward(prompts, batch, **columns)
        assert len(scores) == len(batch) and _finite_or_none(scores)
    PhysicsReward().breakdown(prompts, batch, **columns)
