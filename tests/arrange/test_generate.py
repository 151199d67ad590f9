import json

import numpy as np
import pytest

from spacelm.arrange.answer import parse_answer, placements_to_boxes
from spacelm.arrange.generate import (
    ROOM_TYPES,
    GenerationError,
    generate_task,
    generate_tasks,
    save_generated,
    split_of,
)
from spacelm.arrange.physics import check_layouts
from spacelm.arrange.rewards import FormatReward, PhysicsReward
from spacelm.arrange.task import (
    read_completions,
    read_tasks,
    task_from_dict,
    task_to_dict,
)


@pytest.fixture(scope="module")
def generated():
    return generate_tasks(60, seed=11, split="train") + generate_tasks(30, seed=11, split="test")


def test_every_task_validates_and_round_trips(generated):
    for g in generated:
        assert task_from_dict(json.loads(json.dumps(task_to_dict(g.task)))) == g.task
        assert g.task.preference and all(o.style and o.material for o in g.task.objects)
    assert {g.task.id.split("_", 2)[2] for g in generated} == set(ROOM_TYPES)


def test_reference_is_a_perfect_layout(generated):
    """Format 1.0; no collision, nothing out of bounds or floating; all relations and facings met."""
    for g in generated:
        answer = parse_answer(g.completion, g.task)
        assert answer.strict_json and answer.complete and not answer.errors
        report = check_layouts(g.task, placements_to_boxes(g.task, answer.placements))
        assert report.collision_rate[0] == 0 and not report.out_of_bounds.any(), g.task.id
        assert not report.floating.any() and report.satisfied.all(), g.task.id
        assert len(report.constraints) >= len(g.task.objects) - 1  # tasks carry relations
    completions = [g.completion for g in generated]
    columns = {"task": [g.task for g in generated]}
    assert FormatReward()(None, completions, **columns) == [1.0] * len(generated)
    assert PhysicsReward()(None, completions, **columns) == [0.0] * len(generated)


def test_relations_cover_the_vocabulary(generated):
    kinds = {r.type for g in generated for o in g.task.objects for r in o.relations}
    assert kinds == {"against wall", "in the corner", "on", "left of", "right of", "in front",
                     "behind", "under", "above"}
    assert any(o.facing in g.task.object_ids for g in generated for o in g.task.objects)


def test_deterministic_by_seed_and_prefix_stable():
    first = generate_tasks(8, seed=5, split="train")
    assert first == generate_tasks(8, seed=5, split="train")
    assert generate_tasks(4, seed=5, split="train") == first[:4]
    other = generate_tasks(8, seed=6, split="train")
    assert [g.task.objects for g in other] != [g.task.objects for g in first]


def test_splits_are_disjoint():
    train = generate_tasks(40, seed=2, split="train")
    test = generate_tasks(40, seed=2, split="test")
    assert {g.task.id for g in train}.isdisjoint(g.task.id for g in test)
    content = [{k: v for k, v in task_to_dict(g.task).items() if k != "id"} for g in train + test]
    assert len({json.dumps(c, sort_keys=True) for c in content}) == 80
    assert {split_of(g.task) for g in train} == {"train"}
    assert {split_of(g.task) for g in test} == {"test"}
    # The split is a function of the content, so other seeds cannot leak test tasks into train.
    assert {split_of(g.task) for g in generate_tasks(20, seed=3, split="train")} == {"train"}


def test_test_share_is_about_a_fifth():
    ids = [int(g.task.id.split("_")[1]) for g in generate_tasks(60, seed=4, split="test")]
    assert 0.12 < 60 / (ids[-1] + 1) < 0.3


@pytest.mark.parametrize("room_type", sorted(ROOM_TYPES))
def test_each_room_type_with_a_given_size(room_type):
    low = [lo for lo, _ in ROOM_TYPES[room_type].size]
    g = generate_task(room_type, tuple(low), rng=np.random.default_rng(0), task_id="r")
    assert (g.task.room.length, g.task.room.width, g.task.room.height) == tuple(low)
    assert PhysicsReward()(None, [g.completion], task=[g.task]) == [0.0]


def test_too_small_a_room_fails_loudly():
    with pytest.raises(GenerationError, match="tiny: no valid layout for a 1.0 x 1.0 x 2.5 m bed"):
        generate_task("bedroom", (1.0, 1.0, 2.5), rng=np.random.default_rng(0), task_id="tiny")


@pytest.mark.parametrize("kwargs, message", [({"split": "dev"}, "split must be one of"),
                                             ({"room_types": ["attic"]}, "unknown room types")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_tasks(1, seed=0, **kwargs)


def test_save_generated(tmp_path):
    generated = generate_tasks(3, seed=0, split="test")
    save_generated(generated, tmp_path / "tasks.jsonl", tmp_path / "reference.jsonl")
    assert read_tasks(tmp_path / "tasks.jsonl") == [g.task for g in generated]
    records = read_completions(tmp_path / "reference.jsonl")
    assert [(r.task_id, r.completion) for r in records] == \
        [(g.task.id, g.completion) for g in generated]
    assert records[0].completion.startswith("<think>reference</think><answer>[")
