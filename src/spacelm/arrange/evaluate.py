"""Evaluate layout completions in the columns of MetaSpatial's results table, per task and overall.

MetaSpatial's table (research notes, section 7) has Format (share of completions with format
reward F = 1), GPT-4o (S / 50), Collision and Constraint (MetaSpatial's C and V) and Overall =
0.5 Format + GPT-4o - 0.2 Collision - 0.2 Constraint, computed from the column means (that is how
the paper's rows add up). As in MetaSpatial, physics and the judge only apply to completions with
F = 1 ("valid"), so the physics columns average over valid completions. Our separate rates (out of
bounds, floating, relations) come too, and ``reward``: the mean per-completion training reward
(``rewards.combine`` with the ``metaspatial`` preset, so 0.5 F for invalid completions).

Without a judge the GPT-4o column is empty and Overall and reward leave the judge term out. A
judge failure is missing, not 0: judge means are over judged completions, with the count of
missing ones; a completion without its judge score has no reward. With several completions per
task, ``mean`` aggregates all of them and ``best_of`` each task's best by reward (ties: the first).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from spacelm.arrange.physics import PhysicsConfig
from spacelm.arrange.rewards import (
    PRESETS,
    TIER_OK,
    ArrangeReward,
    RewardTerms,
    combine,
)
from spacelm.arrange.task import ArrangeTask, CompletionRecord, TaskError

_RATES = ("collision", "constraint", "out_of_bounds", "floating", "relations")


@dataclass(frozen=True)
class CompletionEval:
    """One completion: format tier F, physics rates in [0, 1] (None when the layout could not be
    read), judge S / 50 (None: not valid, no judge, or a failure with ``judge_reason``)."""

    task_id: str
    index: int  # its position among the completions of its task
    format: float
    collision: float | None
    constraint: float | None
    out_of_bounds: float | None
    floating: float | None
    relations: float | None
    judge: float | None
    judge_reason: str | None
    reward: float | None
    errors: tuple[str, ...]

    @property
    def valid(self) -> bool:
        return self.format >= TIER_OK


@dataclass(frozen=True)
class Scores:
    """One row of the table. Rates are fractions (the table prints percentages); a mean over no
    completions is None. ``judge_missing``: valid completions that got no judge score."""

    completions: int
    valid: int
    format: float
    judge: float | None
    judged: int
    judge_missing: int
    collision: float | None
    constraint: float | None
    overall: float | None
    out_of_bounds: float | None
    floating: float | None
    relations: float | None
    reward: float | None


@dataclass(frozen=True)
class TaskEval:
    task_id: str
    mean: Scores
    best: CompletionEval


@dataclass(frozen=True)
class ArrangeEval:
    """The evaluation: overall ``mean`` and ``best_of`` rows, per task, and per completion.

    ``samples``: the most completions any task has (the k of best-of-k); ``missing_tasks``: tasks
    without any completion (left out of every row); ``judged``: whether a judge was used."""

    mean: Scores
    best_of: Scores
    per_task: tuple[TaskEval, ...]
    completions: tuple[CompletionEval, ...]
    samples: int
    missing_tasks: tuple[str, ...]
    judged: bool

    def to_dict(self) -> dict:
        """Plain JSON-ready data (nested dicts and lists)."""
        return asdict(self)


def evaluate_completions(tasks: Sequence[ArrangeTask], completions: Sequence[CompletionRecord], *,
                         judge=None, physics: PhysicsConfig | None = None,
                         require_rotation: bool = True) -> ArrangeEval:
    """Score ``completions`` (any number per task) against ``tasks``.

    ``judge``: None, or a reward-signature callable returning S in [0, 50] or None (``Judge``;
    its ``breakdown`` is used when it has one, for the failure reasons). ``physics``: the
    checks' tolerances (default ``PhysicsConfig()``). ``require_rotation=False``: the rotation
    is fixed by the scene graph, so an answer may give only x, y, z (MetaSpatial's own answers);
    a missing rotation takes the object's reference rotation. Raises ``TaskError`` for a
    completion of an unknown task, naming where it was read (``CompletionRecord.where``).
    """
    by_id = {t.id: t for t in tasks}
    unknown = [(i, c) for i, c in enumerate(completions) if c.task_id not in by_id]
    if unknown:
        index, first = unknown[0]
        count = len({c.task_id for _, c in unknown})
        raise TaskError(f"{first.where or f'completion {index}'}: task_id {first.task_id!r} is not "
                        f"among the tasks ({count} unknown task id(s) in all)")
    rows = [by_id[c.task_id] for c in completions]
    texts = [c.completion for c in completions]
    weights = PRESETS["metaspatial"] if judge is not None else \
        replace(PRESETS["metaspatial"], judge=0.0)
    base = ArrangeReward(weights=replace(weights, judge=0.0), physics=physics or PhysicsConfig(),
                         require_rotation=require_rotation)
    breakdown = base.breakdown([""] * len(texts), texts, task=rows)
    judged = _judge(judge, texts, rows, breakdown)
    counts = defaultdict(int)
    evals = []
    for c, b, (score, reason) in zip(completions, breakdown, judged):
        terms = replace(RewardTerms(**b["terms"]), judge=score)
        evals.append(_completion_eval(c.task_id, counts[c.task_id], terms, score, reason,
                                      combine(terms, weights), b["format"]["errors"]))
        counts[c.task_id] += 1
    return _aggregate(tasks, evals, judge is not None)


def _judge(judge, texts, rows, breakdown) -> list[tuple[float | None, str | None]]:
    """``(S, reason)`` per completion; only valid completions are judged."""
    out = [(None, None)] * len(texts)
    wanted = [i for i, b in enumerate(breakdown) if b["format"]["tier"] >= TIER_OK]
    if judge is None or not wanted:
        return out
    args = ([""] * len(wanted), [texts[i] for i in wanted])
    columns = {"task": [rows[i] for i in wanted]}
    if hasattr(judge, "breakdown"):
        results = [(r["score"], r.get("reason")) for r in judge.breakdown(*args, **columns)]
    else:
        results = [(s, None) for s in judge(*args, **columns)]
    for i, (score, reason) in zip(wanted, results, strict=True):
        if score is None:
            out[i] = (None, reason or "the judge gave no score")
        else:
            out[i] = (float(score), None)
    return out


def _completion_eval(task_id, index, terms: RewardTerms, score, reason, reward, errors
                     ) -> CompletionEval:
    return CompletionEval(
        task_id, index, terms.format, terms.collision, terms.constraint, terms.out_of_bounds,
        terms.floating, terms.relations, None if score is None else float(score) / 50.0, reason,
        reward, tuple(errors))


def _aggregate(tasks, evals: list[CompletionEval], judged: bool) -> ArrangeEval:
    by_task = defaultdict(list)
    for e in evals:
        by_task[e.task_id].append(e)
    per_task = tuple(TaskEval(t.id, table_row(by_task[t.id], judged), _best(by_task[t.id]))
                     for t in tasks if by_task[t.id])
    best = [t.best for t in per_task]
    return ArrangeEval(table_row(evals, judged), table_row(best, judged), per_task, tuple(evals),
                       max((len(v) for v in by_task.values()), default=0),
                       tuple(t.id for t in tasks if not by_task[t.id]), judged)


def _best(evals: list[CompletionEval]) -> CompletionEval:
    """Highest reward; a completion without one ranks last; ties keep the first."""
    return max(evals, key=lambda e: (e.reward is not None, e.reward or 0.0, -e.index))


def table_row(evals: Sequence[CompletionEval], judged: bool) -> Scores:
    """One table row over ``evals`` (see the module docstring).

    Overall is None only when a judge is used and no valid completion got a score.
    """
    valid = [e for e in evals if e.valid]
    fmt = len(valid) / len(evals) if evals else 0.0
    rates = {name: _mean([getattr(e, name) for e in valid]) for name in _RATES}
    judge_scores = [e.judge for e in valid if e.judge is not None]
    judge = _mean(judge_scores)
    overall = None
    if not (judged and valid and judge is None):
        overall = round(0.5 * fmt + (judge or 0.0) - 0.2 * (rates["collision"] or 0.0)
                        - 0.2 * (rates["constraint"] or 0.0), 12)
    return Scores(len(evals), len(valid), fmt, judge, len(judge_scores),
                  len(valid) - len(judge_scores) if judged else 0, rates["collision"],
                  rates["constraint"], overall, rates["out_of_bounds"], rates["floating"],
                  rates["relations"], _mean([e.reward for e in evals]))


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def print_table(result: ArrangeEval, *, per_task: bool = False, console=None) -> None:
    """Print MetaSpatial's columns (Coll.: collision, Constr.: constraint), then ours (OOB: out
    of bounds, floating, relations), with rich: the mean and best-of-k rows, then (``per_task``)
    one mean row per task."""
    from rich import box
    from rich.console import Console  # only printing needs rich
    from rich.table import Table

    title = f"{len(result.per_task)} tasks, {len(result.completions)} completions"
    if result.missing_tasks:
        title += f", {len(result.missing_tasks)} tasks without completions"
    # Short headers and no side padding: the table must fit 80 columns (CI logs, pipes).
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), caption=None if result.judged else
                  "no judge: GPT-4o is empty; Overall and Reward leave out its term")
    for name in ("", "n", "Fmt↑", "GPT4o↑", "Coll↓", "Constr↓", "Overall↑", "OOB↓", "Float↓",
                 "Rel↓", "Reward↑"):
        table.add_column(name, justify="right" if name else "left", no_wrap=True)
    table.add_row("mean", *_cells(result.mean, result.judged))
    table.add_row(f"best of {result.samples}", *_cells(result.best_of, result.judged))
    if per_task:
        table.add_section()
        for t in result.per_task:
            table.add_row(t.task_id, *_cells(t.mean, result.judged))
    (console or Console()).print(table)


def _cells(s: Scores, judged: bool) -> list[str]:
    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}%"

    def num(v):
        return "–" if v is None else f"{v:.3f}"

    judge = num(s.judge) + (f" ({s.judge_missing} missing)" if s.judge_missing else "")
    return [str(s.completions), f"{s.format:.2f}", judge if judged else "–", pct(s.collision),
            pct(s.constraint), num(s.overall), pct(s.out_of_bounds), pct(s.floating),
            pct(s.relations), num(s.reward)]
