"""Per-object credit: the token -> object map on generated ids, and the token advantages."""

import json
import re

import numpy as np
import pytest

from spacelm.arrange.answer import Placement
from spacelm.arrange.credit import (
    coord_token_owner,
    credit_advantages,
    token_penalties,
    value_spans,
)
from spacelm.arrange.generate import generate_tasks, reference_completion
from spacelm.arrange.prompts import compact_answer, compact_prompt

tokenizers = pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def generated():
    return generate_tasks(40, seed=3, max_objects=4)


@pytest.fixture(scope="module")
def tokenizer(generated):
    from spacelm.model.tiny import tiny_tokenizer

    corpus = [compact_prompt(g.task) for g in generated] + [compact_answer(g.reference) for g in generated]
    return tiny_tokenizer(600, corpus=corpus)


def _decode(tokenizer):
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("style", ["compact", "metaspatial"])
def test_every_coordinate_character_is_owned_by_its_object_and_nothing_else_is(generated, tokenizer,
                                                                               style):
    mismatches = checked = 0
    for g in generated:
        text = compact_answer(g.reference) if style == "compact" else reference_completion(g.reference)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        owner = coord_token_owner(ids, _decode(tokenizer), g.task.object_ids)
        ends = np.asarray([len(tokenizer.decode(ids[:j + 1])) for j in range(len(ids))])
        starts = np.concatenate([[0], ends[:-1]])
        # Independent truth: the value characters of each entry, found by re-reading the JSON.
        truth = np.full(len(text), -1)
        entries = json.loads(text[text.index("<answer>") + 8:text.index("</answer>")])
        cursor = text.index("<answer>")
        for entry in entries:
            k = g.task.object_ids.index(entry["id"])
            for key in ("x", "y", "z", "rotation"):
                m = re.compile(rf'"{key}"\s*:\s*').search(text, cursor)
                lo = m.end()
                hi = lo + len(re.match(r"-?[0-9.eE+\-]+", text[lo:]).group(0))
                assert float(text[lo:hi]) == pytest.approx(entry[key])
                truth[lo:hi] = k
                cursor = hi
        for j in range(len(ids)):
            chars = set(truth[starts[j]:ends[j]].tolist()) - {-1}
            expected = chars.pop() if chars else -1
            checked += 1
            mismatches += int(owner[j] != expected)
        assert set(owner.tolist()) - {-1} == set(range(len(g.task.objects)))
    assert checked > 1000 and mismatches == 0


def test_only_the_offending_objects_tokens_lose_advantage(generated, tokenizer):
    g = next(g for g in generated if len(g.task.objects) == 4)
    room = g.task.room
    moved = list(g.reference)
    bad = 2
    moved[bad] = moved[bad]._replace(x=room.length + 3.0)  # far outside, touching nothing
    text = compact_answer(moved)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    penalty = token_penalties(ids, _decode(tokenizer), g.task)
    owner = coord_token_owner(ids, _decode(tokenizer), g.task.object_ids)
    assert (penalty[owner == bad] > 0).all() and (owner == bad).sum() >= 4
    assert (penalty[owner != bad] == 0).all()
    clean = token_penalties(tokenizer(compact_answer(g.reference), add_special_tokens=False)["input_ids"],
                            _decode(tokenizer), g.task)
    assert not clean.any()  # the reference solution breaks nothing

    advantages = credit_advantages(np.array([0.7, -0.2]), [penalty, clean], credit=0.5,
                                   length=len(ids) + 3)
    assert advantages.shape == (2, len(ids) + 3)
    changed = np.flatnonzero(advantages[0] != 0.7)
    assert set(changed.tolist()) == set(np.flatnonzero(owner == bad).tolist())
    np.testing.assert_allclose(advantages[0, changed], 0.7 - 0.5 * penalty[changed])
    assert (advantages[1] == -0.2).all()


def test_unreadable_answers_blame_no_token(generated, tokenizer):
    g = generated[0]
    text = compact_answer(g.reference[:-1])  # one object missing: no complete layout
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert not token_penalties(ids, _decode(tokenizer), g.task).any()


def test_entries_of_unknown_objects_own_no_span():
    text = '<think></think><answer>[{"id":"ghost_1","x":1,"y":2,"z":0.5,"rotation":0},' \
           '{"id":"bed_1","x":1.5,"y":2,"z":0.25,"rotation":90}]</answer>'
    spans = value_spans(text, ["bed_1"])
    assert [text[a:b] for a, b, _ in spans] == ["1.5", "2", "0.25", "90"]
    assert {k for _, _, k in spans} == {0}


def test_compact_answer_is_parseable_and_rounded():
    from spacelm.arrange.answer import parse_answer
    from spacelm.arrange.task import task_from_dict

    task = task_from_dict({"id": "t", "room": {"length": 4, "width": 3, "height": 2.5}, "preference": "",
                           "objects": [{"id": "bed_1", "size": [2, 1.6, 0.5]}]})
    text = compact_answer([Placement("bed_1", 1.23456, 0.8, 0.25, 270.0)])
    answer = parse_answer(text, task)
    assert answer.complete and answer.strict_json and answer.structure_ok
    assert answer.placements[0] == Placement("bed_1", 1.23, 0.8, 0.25, 270.0)
