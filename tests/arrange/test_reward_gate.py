"""The gate of MetaSpatial's combination reads the format tier, so leaving the room never pays."""

import numpy as np
import pytest

from spacelm.arrange.generate import generate_tasks
from spacelm.arrange.prompts import compact_answer
from spacelm.arrange.rewards import (
    PRESETS,
    ArrangeReward,
    FormatReward,
    RewardWeights,
    term_means,
)

GATED = RewardWeights(format=0.5, collision=0.2, constraint=0.2, gate=True)  # MetaSpatial, no judge


@pytest.fixture(scope="module")
def generated():
    return generate_tasks(30, seed=5, max_objects=4)


def _reward(weights, shaped):
    return ArrangeReward(weights=weights, format=FormatReward(shaped=shaped))


def test_a_thrown_out_object_scores_below_a_clean_but_colliding_layout(generated):
    g = next(g for g in generated if len(g.task.objects) >= 3)
    far = list(g.reference)
    far[0] = far[0]._replace(x=g.task.room.length + 5.0)  # outside the sanity margin
    colliding = list(g.reference)
    colliding[1] = colliding[1]._replace(x=colliding[0].x, y=colliding[0].y)
    reward = _reward(GATED, shaped=True)
    scores = reward([None] * 2, [compact_answer(far), compact_answer(colliding)], task=[g.task] * 2)
    breakdown = reward.breakdown([None], [compact_answer(far)], task=[g.task])[0]
    assert breakdown["terms"]["tier"] == 1.0 and breakdown["terms"]["format"] < 1.0
    assert breakdown["terms"]["constraint"] > 0  # the physics term was applied, not skipped
    # Before the fix the thrown-out layout skipped physics: 0.5 * shaped F, about 0.47.
    assert scores[0] < 0.5 * breakdown["terms"]["format"]
    assert scores[0] < scores[1]


@pytest.mark.parametrize("weights", [GATED, PRESETS["default"]], ids=["metaspatial_gate", "default"])
@pytest.mark.parametrize("shaped", [False, True])
def test_moving_any_object_out_of_the_room_never_raises_the_reward(generated, weights, shaped):
    reward = _reward(weights, shaped)
    rng = np.random.default_rng(0)
    compared = 0
    for g in generated:
        for k in range(len(g.task.objects)):
            moved = list(g.reference)
            shift = rng.choice([-1.0, 1.0]) * (g.task.room.length + rng.uniform(0.2, 6.0))
            moved[k] = moved[k]._replace(x=moved[k].x + shift)
            before, after = reward([None] * 2, [compact_answer(g.reference), compact_answer(moved)],
                                   task=[g.task] * 2)
            assert after <= before
            compared += 1
    assert compared >= 90


def test_term_means_report_the_headline_collision_rate(generated):
    g = generated[0]
    colliding = list(g.reference)
    colliding[1] = colliding[1]._replace(x=colliding[0].x, y=colliding[0].y, z=colliding[0].z)
    texts = [compact_answer(g.reference), compact_answer(colliding), "no answer"]
    means = term_means(ArrangeReward("default").breakdown([None] * 3, texts, task=[g.task] * 3))
    assert means["arrange/valid"] == pytest.approx(2 / 3)
    assert means["arrange/collision_rate"] == 0.5  # one of the two read layouts collides
    assert means["arrange/collision"] > 0
