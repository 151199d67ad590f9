import json
import pickle
from types import SimpleNamespace

import pytest

from spacelm.arrange.rewards import (
    PRESETS,
    ArrangeReward,
    FormatReward,
    PhasedSchedule,
    PhysicsReward,
    RewardTerms,
    RewardWeights,
    combine,
    phased,
)
from spacelm.arrange.task import task_to_dict

OBJECTS = [
    {"id": "sofa_1", "size": [2, 0.9, 0.8], "facing": "north_wall",
     "relations": [{"type": "against wall", "target": "south_wall", "adjacent": True}]},
    {"id": "lamp_1", "size": [0.3, 0.3, 1.5], "relations": [{"type": "right of", "target": "sofa_1"}]},
]
SOFA = {"id": "sofa_1", "x": 2, "y": 0.45, "z": 0.4, "rotation": 0}
LAMP = {"id": "lamp_1", "x": 3.5, "y": 0.3, "z": 0.75, "rotation": 0}
METASPATIAL_EXAMPLE = ('<think>\nThinking process here.\n</think>\n<answer>\n'
                       '{"new_object_id": "sofa_1","x": 1.0,"y": 1.8,"z": 0.45}, '
                       '{"new_object_id": "lamp_1","x": 1.0,"y": 1.8,"z": 0.45}}\n</answer>')


@pytest.fixture
def task(make_task):
    return make_task(OBJECTS)


def call(reward, completions, task, **columns):
    """Call a reward the way TRL does: prompts, completions, completion_ids and dataset columns."""
    n = len(completions)
    return reward(["prompt"] * n, completions, completion_ids=[[1, 2]] * n, task=[task] * n,
                  **columns)


def test_format_tiers_exact(task, completion):
    completions = [
        f"<answer>{json.dumps([SOFA, LAMP])}</answer>",            # no think block: 0
        METASPATIAL_EXAMPLE,                                         # their malformed example: 0.1
        completion([SOFA, LAMP]).replace("}]", "},]"),              # trailing comma: 0.1
        completion([SOFA]),                                          # an object missing: 0.5
        completion([SOFA, LAMP, {**LAMP, "id": "chair_1"}]),        # an unknown id: 0.5
        completion([SOFA, {**LAMP, "z": float("nan")}]),            # non-finite: 0.5
        completion({"objects": [SOFA, LAMP]}),                       # not a list: 0.5
        completion([SOFA, LAMP]),                                    # 1.0
    ]
    assert call(FormatReward(), completions, task) == [0.0, 0.1, 0.1, 0.5, 0.5, 0.5, 0.5, 1.0]


def test_shaped_format_grades_completeness_and_sanity(task, completion):
    shaped = FormatReward(shaped=True)
    completions = [completion([SOFA]), completion([SOFA, {**LAMP, "x": 100}]), completion([SOFA, LAMP])]
    # 0.5 + 0.5 * (1/2 placed) * (1 sane) * 0.5 (an error); 0.5 + 0.5 * 1 * (1/2 sane); perfect.
    assert call(shaped, completions, task) == [0.625, 0.75, 1.0]
    detail = shaped.breakdown(["p"], [completion([SOFA])], task=[task])[0]
    assert detail["tier"] == 0.5 and detail["completeness"] == 0.5
    assert detail["errors"] == ["'lamp_1' is not placed"]


def test_task_column_forms_and_chat_completions(task, completion):
    text = [{"role": "assistant", "content": completion([SOFA, LAMP])}]
    for column in (task, task_to_dict(task), json.dumps(task_to_dict(task))):
        assert FormatReward()(["p"], [text], task=[column], trainer_state=None) == [1.0]
    with pytest.raises(KeyError, match="'task' column"):
        FormatReward()(["p"], ["x"])


def test_physics_reward(task, completion):
    clean = completion([SOFA, LAMP])
    crash = completion([SOFA, {**LAMP, "x": 2.5}])      # lamp inside the sofa, not right of it
    broken = "no answer at all"
    scores = call(PhysicsReward(), [clean, crash, broken], task)
    # crash: 1 colliding pair of 1 (rate 1) + 1 of 2 objects breaking a relation (0.5).
    assert scores == [0.0, pytest.approx(-1.5), -4.0]
    details = PhysicsReward().breakdown(["p"] * 3, [clean, crash, broken], task=[task] * 3)
    assert details[0]["checked"] and details[0]["violations"] == []
    # Shortest way out for the lamp: along y, 0.45 + 0.15 - |0.3 - 0.45| = 0.45 m.
    assert details[1]["violations"] == ["sofa_1 and lamp_1 overlap by 0.45 m",
                                        "lamp_1 is not right of sofa_1"]
    assert details[1]["object_penalty"] == {"sofa_1": 1.0, "lamp_1": 2.0}
    assert details[2] == {"score": -4.0, "checked": False}


def test_metaspatial_formula():
    # R = 0.5 F + S / 50 - 0.2 C - 0.2 V, physics and judge only when F = 1.
    assert combine(RewardTerms(format=1.0, collision=0.25, constraint=0.5, judge=35)) == 1.05
    assert combine(RewardTerms(format=1.0, collision=0.0, constraint=0.0, judge=50)) == 1.5
    assert combine(RewardTerms(format=0.5, collision=1.0, constraint=1.0, judge=50)) == 0.25
    assert combine(RewardTerms(format=0.1)) == 0.05 and combine(RewardTerms(format=0.0)) == 0.0
    # A missing judge score is never replaced by a number.
    assert combine(RewardTerms(format=1.0, collision=0.0, constraint=0.0, judge=None)) is None


def test_default_preset():
    terms = RewardTerms(format=1.0, collision=0.1, relations=0.2, out_of_bounds=0.0, floating=0.5)
    assert combine(terms, "default") == pytest.approx(1 - 0.1 - 0.1 - 0.25)
    # Unreadable layout: every physics rate counts as 1, so breaking the format never pays.
    assert combine(RewardTerms(format=0.5), "default") == pytest.approx(0.5 - 1 - 0.5 - 1 - 0.5)
    assert combine(RewardTerms(format=1.0, judge=None), PRESETS["default"]) is not None


class FakeJudge:
    """Returns S = 40 (or None, an outage) and records which completions it saw."""

    __name__ = "fake_judge"

    def __init__(self, score=40.0):
        self.score, self.seen = score, []

    def __call__(self, prompts, completions, completion_ids=None, **columns):
        self.seen.append(len(completions))
        return [self.score] * len(completions)


def test_arrange_reward_metaspatial(task, completion):
    judge = FakeJudge()
    reward = ArrangeReward(judge=judge)
    crash = completion([SOFA, {**LAMP, "x": 2.5}])
    scores = call(reward, [completion([SOFA, LAMP]), crash, completion([SOFA])], task)
    # V counts lamp_1 (relation broken) of 2 objects; the third answer fails the format gate.
    assert scores == [pytest.approx(0.5 + 0.8), pytest.approx(0.5 + 0.8 - 0.2 - 0.1), 0.25]
    assert judge.seen == [2]  # the gated completion was never rendered or judged
    outage = ArrangeReward(judge=FakeJudge(score=None))
    assert call(outage, [completion([SOFA, LAMP]), completion([SOFA])], task) == [None, 0.25]
    assert call(ArrangeReward(), [completion([SOFA, LAMP])], task) == [None]  # no judge at all


def test_phased_schedule(task, completion):
    schedule = phased(physics_from=10, judge_from=20)
    judge = FakeJudge()
    reward = ArrangeReward(weights=schedule, judge=judge)
    crash = [completion([SOFA, {**LAMP, "x": 2.5}])]
    at = {step: call(reward, crash, task, trainer_state=SimpleNamespace(global_step=step))[0]
          for step in (0, 9, 10, 25)}
    assert at[0] == at[9] == 0.5 and judge.seen == [1]  # format only; judged once, at step 25
    assert at[10] == pytest.approx(0.5 - 0.2 - 0.1)
    assert at[25] == pytest.approx(0.5 + 0.8 - 0.2 - 0.1)
    assert call(reward, crash, task)[0] == 0.5  # no trainer state: step 0
    with pytest.raises(ValueError, match="start at step 0"):
        PhasedSchedule(((5, RewardWeights()),))
    with pytest.raises(ValueError, match="physics_from"):
        phased(physics_from=20, judge_from=10)


def test_breakdown_and_pickling(task, completion):
    reward = ArrangeReward(weights="default")
    detail = reward.breakdown(["p"], [completion([SOFA, LAMP])], task=[task])[0]
    assert detail["score"] == 1.0 and detail["terms"]["collision"] == 0.0
    assert detail["terms"]["judge"] is None and detail["format"]["tier"] == 1.0
    for r in (FormatReward(), PhysicsReward(), reward):
        again = pickle.loads(pickle.dumps(r))
        assert again == r and again.__name__.startswith("arrange_")
