"""Rewards for layout completions: plain picklable callables with TRL's reward signature.

``reward(prompts, completions, completion_ids=None, **columns) -> list[float | None]``; the task of
each completion comes in the ``task`` column (JSON text, dict or ``ArrangeTask``). Each reward also
has ``breakdown(...)`` returning one dict per completion with the score and its parts, for logs
and for the multi-turn feedback. No framework is imported here.

``combine`` mixes the terms: the ``metaspatial`` preset is MetaSpatial's
``R = 0.5 F + S / 50 - 0.2 C - 0.2 V``, where physics and judge count only when F = 1 (else
``R = 0.5 F``); the ``default`` preset weights our separate physics rates and needs no judge. A
missing judge score S stays None: a reward that needs it is None, never a made-up number.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from dataclasses import dataclass, field, fields, replace

import numpy as np

from spacelm.arrange.answer import ParsedAnswer, parse_answer, placements_to_boxes
from spacelm.arrange.physics import (
    PhysicsConfig,
    PhysicsReport,
    PhysicsWeights,
    check_layouts,
)
from spacelm.arrange.prompts import describe_violations
from spacelm.arrange.task import ArrangeTask, task_from_dict

# MetaSpatial's format tiers.
TIER_STRUCTURE, TIER_NOT_JSON, TIER_WRONG_OBJECTS, TIER_OK = 0.0, 0.1, 0.5, 1.0


@dataclass(frozen=True)
class FormatReward:
    """MetaSpatial's format tiers: 0 (not ``<think>..</think><answer>..</answer>``), 0.1 (answer is
    not JSON), 0.5 (not exactly one valid entry per task object), 1.0.

    The tiers are stricter than MetaSpatial's length-only check: unknown, duplicate or missing ids,
    missing fields and non-finite numbers also give 0.5. ``shaped=True`` grades answers at or above
    0.5 as ``0.5 + 0.5 * completeness * sanity``, halved when any entry has an error, where
    completeness is the share of objects placed and sanity the share of placements whose centre is
    within ``sanity_margin`` metres of the room box and whose |rotation| <= 360.
    """

    shaped: bool = False
    require_rotation: bool = True
    sanity_margin: float = 1.0
    __name__ = "arrange_format"

    def __call__(self, prompts, completions, completion_ids=None, **columns) -> list[float]:
        return [b["score"] for b in self.breakdown(prompts, completions, **columns)]

    def breakdown(self, prompts, completions, completion_ids=None, **columns) -> list[dict]:
        tasks, answers = parse_all(completions, columns, self.require_rotation)
        return [self.grade(a, t) for a, t in zip(answers, tasks)]

    def grade(self, answer: ParsedAnswer, task: ArrangeTask) -> dict:
        """The breakdown of one parsed answer."""
        tier = format_tier(answer)
        n = len(task.objects)
        completeness = len(answer.placements) / n
        sane = [_sane(p, task, self.sanity_margin) for p in answer.placements]
        sanity = float(np.mean(sane)) if sane else 0.0
        score = tier
        if self.shaped and tier >= TIER_WRONG_OBJECTS:
            score = 0.5 + 0.5 * completeness * sanity * (1.0 if tier == TIER_OK else 0.5)
        return {"score": score, "tier": tier, "structure_ok": answer.structure_ok,
                "strict_json": answer.strict_json, "repairs": list(answer.repairs),
                "entries": answer.entries, "completeness": completeness, "numeric_sanity": sanity,
                "errors": [e.message for e in answer.errors]}


def format_tier(answer: ParsedAnswer) -> float:
    """MetaSpatial's tier of a parsed answer (see ``FormatReward``)."""
    if not answer.structure_ok:
        return TIER_STRUCTURE
    if not answer.strict_json:
        return TIER_NOT_JSON
    if answer.errors or answer.entries != answer.num_objects:
        return TIER_WRONG_OBJECTS
    return TIER_OK


def _sane(p, task: ArrangeTask, margin: float) -> bool:
    room = task.room
    return (-margin <= p.x <= room.length + margin and -margin <= p.y <= room.width + margin
            and -margin <= p.z <= room.height + margin and abs(p.rotation) <= 360)


@dataclass(frozen=True)
class PhysicsReward:
    """Minus the weighted physics rates, in ``[-weights.total, 0]`` (0 = a clean layout).

    Completions whose layout cannot be read completely score ``-weights.total``, as if every check
    failed, so that breaking the format never pays. Layouts of one task are checked in one batch.
    """

    config: PhysicsConfig = field(default_factory=PhysicsConfig)
    weights: PhysicsWeights = field(default_factory=PhysicsWeights)
    require_rotation: bool = True
    __name__ = "arrange_physics"

    def __call__(self, prompts, completions, completion_ids=None, **columns) -> list[float]:
        tasks, answers = parse_all(completions, columns, self.require_rotation)
        scores = [-self.weights.total] * len(completions)
        for rows, report in check_batches(tasks, answers, self.config):
            for row, score in zip(rows, report.score(self.weights)):
                scores[row] = float(score)
        return scores

    def breakdown(self, prompts, completions, completion_ids=None, **columns) -> list[dict]:
        tasks, answers = parse_all(completions, columns, self.require_rotation)
        out = [{"score": -self.weights.total, "checked": False} for _ in completions]
        for rows, report in check_batches(tasks, answers, self.config):
            for b, row in enumerate(rows):
                out[row] = physics_summary(report, b, tasks[row], self.weights)
        return out


def physics_summary(report: PhysicsReport, b: int, task: ArrangeTask,
                    weights: PhysicsWeights) -> dict:
    """Rates, per-object penalties and readable violations of layout ``b`` of a report."""
    rates = {name: float(getattr(report, name)[b]) for name in (
        "collision_rate", "relation_violation_rate", "out_of_bounds_rate", "floating_rate",
        "constraint_violation_rate")}
    return {"score": float(report.score(weights)[b]), "checked": True, **rates,
            "object_penalty": dict(zip(task.object_ids, report.object_penalty(weights)[b].tolist())),
            "violations": describe_violations(report, task, b)}


def parse_all(completions, columns: dict, require_rotation: bool):
    """The tasks of the ``task`` column and the parsed completions."""
    tasks = task_column(columns, len(completions))
    return tasks, [parse_answer(c, t, require_rotation=require_rotation)
                   for c, t in zip(completions, tasks)]


def check_batches(tasks, answers, config: PhysicsConfig):
    """Yield ``(row indices, PhysicsReport)`` per task over the complete answers, one batch each."""
    groups = defaultdict(list)  # task id -> [(task, rows)]: equal tasks share a batch
    for row, (task, answer) in enumerate(zip(tasks, answers)):
        if answer.complete:
            bucket = groups[task.id]
            rows = next((r for known, r in bucket if known is task or known == task), None)
            if rows is None:
                bucket.append((task, rows := []))
            rows.append(row)
    for task, rows in (entry for bucket in groups.values() for entry in bucket):
        boxes = np.stack([placements_to_boxes(task, answers[r].placements) for r in rows])
        yield rows, check_layouts(task, boxes, config)


def task_column(columns: dict, count: int) -> list[ArrangeTask]:
    """The ``task`` column as tasks (JSON text and dicts are parsed; text once per distinct task)."""
    if "task" not in columns:
        raise KeyError("the dataset needs a 'task' column (an ArrangeTask as JSON or dict)")
    column = columns["task"]
    if len(column) != count:
        raise ValueError(f"{len(column)} tasks for {count} completions")
    return [_as_task(t) for t in column]


def _as_task(value) -> ArrangeTask:
    if isinstance(value, ArrangeTask):
        return value
    if isinstance(value, str):
        return _task_from_json(value)
    if isinstance(value, dict):
        return task_from_dict(value)
    raise TypeError(f"a task must be an ArrangeTask, JSON text or a dict, got {type(value)}")


@functools.lru_cache(maxsize=4096)
def _task_from_json(text: str) -> ArrangeTask:
    return task_from_dict(json.loads(text))


@dataclass(frozen=True)
class RewardTerms:
    """The parts of one completion's reward; physics rates in [0, 1], judge S in [0, 50].

    A physics term is None when the layout could not be read; ``judge`` is None when no judge
    score exists (no judge, outage, or not requested). ``tier`` is MetaSpatial's format tier of the
    answer (1.0 = complete and parseable), which the gate reads; ``format`` may be a shaped score.
    None means ``format`` is the tier itself.
    """

    format: float
    tier: float | None = None
    collision: float | None = None
    relations: float | None = None
    out_of_bounds: float | None = None
    floating: float | None = None
    constraint: float | None = None  # MetaSpatial's V: relation, bounds or floating failures
    overlap: float | None = None  # metres per object: summed pair penetration plus distance outside
    judge: float | None = None


@dataclass(frozen=True)
class RewardWeights:
    """Weights of ``RewardTerms``; physics terms are subtracted, ``judge`` multiplies S (0-50).

    ``gate``: physics and judge count only when the answer's format tier is 1 (MetaSpatial): the
    tier, not a shaped format score, so that throwing one object out of the room can never skip
    the physics penalty.
    """

    format: float = 1.0
    collision: float = 0.0
    relations: float = 0.0
    out_of_bounds: float = 0.0
    floating: float = 0.0
    constraint: float = 0.0
    overlap: float = 0.0
    judge: float = 0.0
    gate: bool = False


PRESETS = {
    "metaspatial": RewardWeights(format=0.5, collision=0.2, constraint=0.2, judge=1 / 50, gate=True),
    "default": RewardWeights(format=1.0, collision=1.0, relations=0.5, out_of_bounds=1.0,
                             floating=0.5),
    # ``default`` plus how deep the overlaps go: rates change in steps of one pair or one object,
    # depth keeps ranking the samples of a group whose rates tie (small policies, few objects).
    "dense": RewardWeights(format=1.0, collision=1.0, relations=0.5, out_of_bounds=1.0,
                           floating=0.5, overlap=2.0),
}
_PENALTIES = ("collision", "relations", "out_of_bounds", "floating", "constraint", "overlap")


def combine(terms: RewardTerms, weights: RewardWeights | str = "metaspatial") -> float | None:
    """One scalar reward from its terms, or None when a judge score is needed but missing.

    Terms with weight 0 are ignored. A missing physics term counts as the worst rate (1).

    >>> combine(RewardTerms(format=1.0, collision=0.1, constraint=0.5, judge=40))
    1.18
    >>> combine(RewardTerms(format=0.1)), combine(RewardTerms(format=1.0, collision=0.0))
    (0.05, None)
    """
    weights = PRESETS[weights] if isinstance(weights, str) else weights
    total = weights.format * terms.format
    tier = terms.format if terms.tier is None else terms.tier
    if weights.gate and tier < TIER_OK:
        return total
    for name in _PENALTIES:
        w = getattr(weights, name)
        if w:
            value = getattr(terms, name)
            total -= w * (1.0 if value is None else value)
    if weights.judge:
        if terms.judge is None:
            return None
        total += weights.judge * terms.judge
    return round(total, 12)


@dataclass(frozen=True)
class PhasedSchedule:
    """Weights by training step: ``phases`` are ``(first step, weights)`` in increasing order."""

    phases: tuple[tuple[int, RewardWeights], ...]

    def __post_init__(self) -> None:
        starts = [s for s, _ in self.phases]
        if not starts or starts[0] != 0 or starts != sorted(set(starts)):
            raise ValueError(f"phases must start at step 0 and increase, got steps {starts}")

    def at(self, step: int) -> RewardWeights:
        return [w for s, w in self.phases if s <= step][-1]


def phased(physics_from: int, judge_from: int,
           final: RewardWeights | str = "metaspatial") -> PhasedSchedule:
    """Format first, physics from ``physics_from``, the judge (``final`` in full) from ``judge_from``.

    MetaSpatial v2 describes this order (raise physics once format is learnt; add the expensive
    render-and-judge term last); here the switch points are training steps.
    """
    final = PRESETS[final] if isinstance(final, str) else final
    if not 0 < physics_from <= judge_from:
        raise ValueError(f"need 0 < physics_from <= judge_from, got {physics_from}, {judge_from}")
    no_judge = replace(final, judge=0.0)
    format_only = replace(no_judge, **{name: 0.0 for name in _PENALTIES})
    return PhasedSchedule(((0, format_only), (physics_from, no_judge), (judge_from, final)))


@dataclass(frozen=True)
class ArrangeReward:
    """Format, physics and judge combined by ``combine``, with fixed or phased weights.

    ``weights`` is a preset name, ``RewardWeights`` or a ``PhasedSchedule``; ``format`` grades the
    answers (its tiers or shaped score become F); ``physics`` sets the checks' tolerances.
    ``judge`` is any callable with the reward signature returning S in [0, 50] or None; it is
    called only for completions whose judge term counts (gate passed, judge weight > 0). The step
    of a phased schedule comes from TRL's ``trainer_state.global_step`` (0 when absent).
    """

    weights: RewardWeights | PhasedSchedule | str = "metaspatial"
    format: FormatReward = field(default_factory=FormatReward)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    require_rotation: bool = True
    judge: object = None
    log_terms: bool = False  # log each term's mean through TRL's ``log_metric`` (training)
    __name__ = "arrange_reward"

    def __call__(self, prompts, completions, completion_ids=None, **columns) -> list[float | None]:
        breakdown = self.breakdown(prompts, completions, **columns)
        if self.log_terms and columns.get("log_metric") is not None:
            for name, value in term_means(breakdown).items():
                columns["log_metric"](name, value)
        return [b["score"] for b in breakdown]

    def breakdown(self, prompts, completions, completion_ids=None, **columns) -> list[dict]:
        weights = self.weights_at(columns.get("trainer_state"))
        tasks, answers = parse_all(completions, columns, self.require_rotation)
        formats = [self.format.grade(a, t) for a, t in zip(answers, tasks)]
        terms = [RewardTerms(format=f["score"], tier=f["tier"]) for f in formats]
        for rows, report in check_batches(tasks, answers, self.physics):
            for b, row in enumerate(rows):
                terms[row] = replace(terms[row], **_physics_terms(report, b))
        terms, asked = self._add_judge(weights, terms, prompts, completions, columns)
        return [{"score": combine(t, weights), "terms": _as_dict(t), "format": f,
                 "judge_asked": i in asked} for i, (t, f) in enumerate(zip(terms, formats))]

    def weights_at(self, trainer_state) -> RewardWeights:
        """The weights in force at the trainer's current step."""
        if isinstance(self.weights, str):
            return PRESETS[self.weights]
        if isinstance(self.weights, RewardWeights):
            return self.weights
        return self.weights.at(getattr(trainer_state, "global_step", 0) or 0)

    def _add_judge(self, weights, terms, prompts, completions, columns):
        wanted = [i for i, t in enumerate(terms)
                  if weights.judge and (not weights.gate or t.tier >= TIER_OK)]
        if not wanted or self.judge is None:
            return terms, set()
        subset = {k: [v[i] for i in wanted] if isinstance(v, list) else v for k, v in columns.items()}
        scores = self.judge([prompts[i] for i in wanted], [completions[i] for i in wanted], **subset)
        terms = list(terms)
        for i, score in zip(wanted, scores, strict=True):
            terms[i] = replace(terms[i], judge=None if score is None else float(score))
        return terms, set(wanted)


def term_means(breakdown: list[dict]) -> dict[str, float]:
    """Means of the reward terms over a batch, named ``arrange/<term>`` for training logs.

    Physics terms are averaged over the layouts that could be read; ``arrange/valid`` is the share
    of complete, parseable answers and ``arrange/collision_rate`` the headline: the share of read
    layouts with at least one collision. ``arrange/judge_missing`` counts the completions the judge
    was asked about and gave no score (an outage: their reward is None and TRL leaves them out).
    """
    out = {"arrange/valid": float(np.mean([b["terms"]["tier"] >= TIER_OK for b in breakdown]))}
    for name in ("format", "collision", "out_of_bounds", "floating", "relations", "overlap", "judge"):
        values = [b["terms"][name] for b in breakdown if b["terms"][name] is not None]
        if values:
            out[f"arrange/{name}"] = float(np.mean(values))
    read = [b["terms"]["collision"] for b in breakdown if b["terms"]["collision"] is not None]
    if read:
        out["arrange/collision_rate"] = float(np.mean([c > 0 for c in read]))
    asked = [b for b in breakdown if b.get("judge_asked")]
    if asked:
        out["arrange/judge_missing"] = float(sum(b["terms"]["judge"] is None for b in asked))
    return out


def _physics_terms(report: PhysicsReport, b: int) -> dict:
    n = max(report.outside.shape[1], 1)
    depth = float(np.triu(report.penetration[b], 1).sum() + report.outside[b].sum()) / n
    return {"overlap": depth, "collision": float(report.collision_rate[b]),
            "relations": float(report.relation_violation_rate[b]),
            "out_of_bounds": float(report.out_of_bounds_rate[b]),
            "floating": float(report.floating_rate[b]),
            "constraint": float(report.constraint_violation_rate[b])}


def _as_dict(terms: RewardTerms) -> dict:
    return {f.name: getattr(terms, f.name) for f in fields(terms)}
