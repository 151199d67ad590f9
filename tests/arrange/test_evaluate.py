import io
import json

import pytest
from rich.console import Console

from spacelm.arrange.evaluate import evaluate_completions, print_table
from spacelm.arrange.generate import generate_tasks
from spacelm.arrange.task import CompletionRecord

CUBES = [{"id": "a", "size": [1, 1, 1]}, {"id": "b", "size": [1, 1, 1]}]


def entry(object_id, x, y=1.0, z=0.5):
    return {"id": object_id, "x": x, "y": y, "z": z, "rotation": 0}


@pytest.fixture
def cubes(make_task):
    """Two unit cubes without relations in a 6 x 6 x 3 m room, and a second task left unanswered."""
    return make_task(CUBES, task_id="cubes"), make_task(CUBES, task_id="unanswered")


@pytest.fixture
def four(cubes, completion):
    """Clean; colliding (1 of 1 pairs); a floating (1 of 2 objects); not JSON (format 0.1)."""
    texts = [completion([entry("a", 1), entry("b", 3)]),
             completion([entry("a", 1), entry("b", 1.5)]),
             completion([entry("a", 1, z=1.5), entry("b", 3)]),
             "<think>x</think><answer>[{'id': 'a'}]</answer>"]
    return [CompletionRecord("cubes", t) for t in texts]


def test_hand_checked_rates(cubes, four):
    result = evaluate_completions(cubes, four)
    m = result.mean
    assert (m.completions, m.valid, m.format) == (4, 3, 0.75)
    assert m.collision == pytest.approx(1 / 3)  # (0 + 1 + 0) / 3 valid completions
    assert m.floating == pytest.approx(1 / 6) and m.constraint == pytest.approx(1 / 6)
    assert (m.out_of_bounds, m.relations) == (0.0, 0.0)
    # MetaSpatial's Overall from the columns: 0.5 * 0.75 - 0.2 / 3 - 0.2 / 6
    assert m.overall == pytest.approx(0.275)
    # Per completion: 0.5, 0.5 - 0.2, 0.5 - 0.2 * 0.5, 0.5 * 0.1 (gated)
    assert [c.reward for c in result.completions] == pytest.approx([0.5, 0.3, 0.4, 0.05])
    assert m.reward == pytest.approx(1.25 / 4)
    assert (m.judge, m.judged, m.judge_missing) == (None, 0, 0)
    assert result.completions[3].errors and result.completions[3].collision is None


def test_best_of_and_missing_tasks(cubes, four):
    result = evaluate_completions(cubes, four[::-1])
    assert result.samples == 4 and result.missing_tasks == ("unanswered",)
    [task] = result.per_task
    assert task.best.index == 3 and task.best.reward == 0.5  # the clean one, listed last
    b = result.best_of
    assert (b.completions, b.format, b.collision, b.constraint) == (1, 1.0, 0.0, 0.0)
    assert b.overall == 0.5


def test_unknown_task_ids_fail(cubes):
    with pytest.raises(ValueError, match="'nope'"):
        evaluate_completions(cubes, [CompletionRecord("nope", "")])


class FakeJudge:
    """S = 40 for the first completion it sees, a failure for the rest."""

    def breakdown(self, prompts, completions, completion_ids=None, **columns):
        return [{"score": 40.0 if i == 0 else None, "reason": "HTTP 500"}
                for i in range(len(completions))]


def test_judge_scores_and_missing(cubes, four):
    result = evaluate_completions(cubes, four, judge=FakeJudge())
    m = result.mean
    assert (m.judge, m.judged, m.judge_missing) == (0.8, 1, 2)  # only valid completions are judged
    judged = [(c.judge, c.judge_reason) for c in result.completions]
    assert judged == [(0.8, None), (None, "HTTP 500"), (None, "HTTP 500"), (None, None)]
    # A missing judge score leaves the reward missing, never 0.5 as in MetaSpatial.
    assert [c.reward for c in result.completions] == pytest.approx([1.3, None, None, 0.05])
    assert m.overall == pytest.approx(0.275 + 0.8)


def test_plain_callable_judge(cubes, four):
    result = evaluate_completions(cubes, four[:1], judge=lambda p, c, **k: [25.0] * len(c))
    assert result.mean.judge == 0.5 and result.completions[0].reward == pytest.approx(1.0)


def test_generated_references_are_perfect_and_corruption_counts():
    generated = generate_tasks(6, seed=1, split="test")
    tasks = [g.task for g in generated]
    records = [CompletionRecord(g.task.id, g.completion) for g in generated]
    clean = evaluate_completions(tasks, records)
    assert (clean.mean.format, clean.mean.collision, clean.mean.constraint) == (1.0, 0.0, 0.0)
    assert clean.mean.overall == 0.5 and clean.best_of == clean.mean
    # Move each task's first object 100 m east: out of bounds for exactly 1 of N objects.
    moved = []
    for g in generated:
        entries = json.loads(g.completion.split("<answer>")[1].split("</answer>")[0])
        entries[0]["x"] += 100
        moved.append(CompletionRecord(g.task.id, f"<think>x</think><answer>{json.dumps(entries)}"
                                                 "</answer>"))
    corrupt = evaluate_completions(tasks, moved)
    for t, g in zip(corrupt.per_task, generated):
        assert t.mean.out_of_bounds == pytest.approx(1 / len(g.task.objects))
        assert t.mean.constraint >= t.mean.out_of_bounds and t.mean.collision == 0.0


def test_to_dict_and_table(cubes, four):
    result = evaluate_completions(cubes, four)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["mean"]["format"] == 0.75 and len(data["completions"]) == 4
    out = io.StringIO()
    print_table(result, per_task=True, console=Console(file=out, width=160))
    text = out.getvalue()
    assert "best of 4" in text and "Coll" in text and "33.3%" in text and "no judge" in text
