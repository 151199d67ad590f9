"""The compiled task behind ``check_layouts``: one cached, read-only plan per task, relations in order."""

import numpy as np
import pytest

from spacelm.arrange.physics import check_layouts
from spacelm.arrange.physics_plan import OBJECT_KINDS, ON_FLOOR, compile_task


@pytest.fixture
def task(make_task):
    return make_task([
        {"id": "desk"},
        {"id": "chair", "relations": [{"type": "left of", "target": "desk"}], "facing": "desk"},
        {"id": "lamp", "on_floor": False, "relations": [{"type": "on", "target": "desk"}]},
        {"id": "rug", "size": [2, 2, 0.01], "relations": [{"type": "on", "target": "middle of the room"}]},
    ])


def test_the_plan_is_built_once_per_task_and_cannot_be_written(task):
    plan = compile_task(task)
    assert compile_task(task) is plan
    assert [OBJECT_KINDS[k] for k in plan.rel_kind] == ["left of", "on"]
    assert plan.rel_subject.tolist() == [1, 2] and plan.rel_target.tolist() == [0, 0]
    assert plan.elem_kind.tolist() == [ON_FLOOR] and plan.face_object.tolist() == [0]
    assert [c.kind for c in plan.constraints] == ["left of", "on", "on", "facing"]
    with pytest.raises(ValueError, match="read-only"):
        plan.support_allowed[0, 0] = True


def test_checks_leave_the_cached_plan_as_it_was(task):
    plan = compile_task(task)
    before = {name: np.array(value, copy=True) for name, value in vars(plan).items() if isinstance(value, np.ndarray)}
    rows = [[3, 3, 0.5, 0, 1, 1, 1], [1.9, 3, 0.5, 0, 1, 1, 1], [3, 3, 1.1, 0, 0.2, 0.2, 0.2],
            [4, 4, 0.005, 0, 2, 2, 0.01]]
    first = check_layouts(task, rows)
    for thin_ratio in (None, 40.0):
        check_layouts(task, rows, type(first.config)(thin_ratio=thin_ratio))
    assert all(np.array_equal(before[name], getattr(plan, name)) for name in before)
    # chair 10 cm left of the desk, lamp on it, rug on the floor; the chair faces +y, not towards the desk.
    assert first.satisfied.tolist() == [[True, True, True, False]]
