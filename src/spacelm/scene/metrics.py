"""F1 scores for predicted layouts, computed the way SpatialLM's ``eval.py`` computes them.

Per scene and class, GT and predicted entities are matched one-to-one by Hungarian assignment on
their IoU matrix; a matched pair counts as a true positive when its IoU reaches the threshold.
Walls, doors and windows (classes ``"wall"``, ``"door"``, ``"window"``) use ``geometry.plane_iou``
on vertical quads; boxes use ``geometry.box_iou_3d`` per label, every extent (GT and prediction)
clamped to at least ``min_extent`` first so that paintings and carpets a few millimetres thick can
overlap at all. A class's score is the mean of its per-scene F1 over the scenes where it has GT or
predicted entities; scenes with neither are left out rather than counted as 0 or 1. This is
scene-averaged F1, SpatialLM's figure; pooled F1 (true positives, GT and predictions summed over
scenes first) is reported alongside because it weighs every entity equally.

``compat=True`` reproduces SpatialLM's two geometry bugs (box z read as the top, one-sided plane
offset, see ``geometry``) so its published numbers can be matched; the default is correct geometry.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spacelm.scene.categories import normalize_label
from spacelm.scene.geometry import box_iou_3d, opening_quads, plane_iou, wall_quads
from spacelm.scene.layout import Layout

LAYOUT_CLASSES = ("wall", "door", "window")


@dataclass(frozen=True)
class MatchCounts:
    """Matching outcome of one class: true positives, GT entities and predicted entities.

    Precision, recall and F1 are 0 where undefined (no prediction, no GT, no true positive), as in
    SpatialLM. Counts add up, which is how pooled figures are made.

    >>> MatchCounts(tp=1, n_gt=2, n_pred=1).f1
    0.6666666666666666
    """

    tp: int
    n_gt: int
    n_pred: int

    @property
    def precision(self) -> float:
        return self.tp / self.n_pred if self.n_pred else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_gt if self.n_gt else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: MatchCounts) -> MatchCounts:
        return MatchCounts(self.tp + other.tp, self.n_gt + other.n_gt, self.n_pred + other.n_pred)

    def to_dict(self) -> dict[str, int | float]:
        return {"tp": self.tp, "n_gt": self.n_gt, "n_pred": self.n_pred,
                "precision": self.precision, "recall": self.recall, "f1": self.f1}


def match_counts(iou, threshold: float) -> MatchCounts:
    """Match GT rows to prediction columns of an ``(n_gt, n_pred)`` IoU matrix one-to-one.

    The assignment maximises the number of pairs with IoU >= ``threshold`` (a greedy best-first
    match can miss some); ``tp`` is that number.

    >>> match_counts([[0.9, 0.6], [0.6, 0.0]], 0.5).tp  # greedy would take 0.9 and stop at 1
    2
    """
    iou = np.asarray(iou, dtype=np.float64)
    hit = iou >= threshold
    tp = 0
    if hit.any():
        # scipy.optimize costs about 0.5 s to import; importing it here keeps `import spacelm.scene`
        # fast for everything that never scores a layout.
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(hit, maximize=True)
        tp = int(hit[rows, cols].sum())
    return MatchCounts(tp, iou.shape[0], iou.shape[1])


@dataclass(frozen=True)
class EvalResult:
    """Scores of a set of scenes.

    - ``scores[cls][t]``: mean per-scene F1 at IoU threshold ``t`` over the scenes where ``cls`` has
      GT or predictions (SpatialLM's figure); NaN if it has them in no scene.
    - ``per_scene[scene_id][cls][t]``: the ``MatchCounts`` of one scene; a class with neither GT nor
      predictions in that scene is absent (masked).
    - ``pooled[cls][t]``: counts summed over scenes; ``.f1`` is pooled F1.
    """

    thresholds: tuple[float, ...]
    classes: tuple[str, ...]
    scores: dict[str, dict[float, float]]
    per_scene: dict[str, dict[str, dict[float, MatchCounts]]]
    pooled: dict[str, dict[float, MatchCounts]]

    def to_dict(self) -> dict:
        """JSON-serialisable nested dicts; thresholds become string keys, NaN scores become None."""
        def by_threshold(values: Mapping[float, object], convert) -> dict:
            return {str(t): convert(v) for t, v in values.items()}

        def score(v: float) -> float | None:
            return None if math.isnan(v) else v

        return {
            "thresholds": list(self.thresholds),
            "classes": list(self.classes),
            "scores": {c: by_threshold(s, score) for c, s in self.scores.items()},
            "pooled": {c: by_threshold(p, MatchCounts.to_dict) for c, p in self.pooled.items()},
            "scenes": {str(scene): {c: by_threshold(m, MatchCounts.to_dict) for c, m in counts.items()}
                       for scene, counts in self.per_scene.items()},
        }


def evaluate_scenes(scenes: Iterable[tuple[str, Layout, Layout]], *,
                    thresholds: Sequence[float] = (0.25, 0.5),
                    label_map: Mapping[str, str] | None = None,
                    classes: Sequence[str] | None = None, compat: bool = False,
                    min_extent: float = 0.1) -> EvalResult:
    """Score ``(scene_id, gt_layout, pred_layout)`` triples per class and IoU threshold.

    Box labels are normalised (``categories.normalize_label``: lower case, underscores to spaces)
    and, when ``label_map`` is given, mapped through it (keys and values are normalised too); boxes
    whose label is not in the map are dropped, GT and prediction alike. Boxes whose class would be
    ``"wall"``, ``"door"`` or ``"window"`` are dropped as well: those names belong to the layout
    classes. ``classes`` restricts (and orders) the reported classes; by default every class seen
    is reported, layout classes first, then box classes alphabetically.
    """
    thresholds = tuple(float(t) for t in thresholds)
    mapping = None if label_map is None else {normalize_label(k): normalize_label(v)
                                              for k, v in label_map.items()}
    wanted = None if classes is None else tuple(dict.fromkeys(normalize_label(c) for c in classes))
    per_scene: dict[str, dict[str, dict[float, MatchCounts]]] = {}
    for scene_id, gt, pred in scenes:
        if scene_id in per_scene:
            raise ValueError(f"scene {scene_id!r} appears twice")
        ious = _class_ious(gt, pred, mapping, compat, min_extent)
        per_scene[scene_id] = {c: {t: match_counts(iou, t) for t in thresholds}
                               for c, iou in ious.items() if wanted is None or c in wanted}
    names = wanted if wanted is not None else _class_order(per_scene)
    scores = {c: {t: _mean_f1(per_scene, c, t) for t in thresholds} for c in names}
    pooled = {c: {t: _pooled(per_scene, c, t) for t in thresholds} for c in names}
    return EvalResult(thresholds, names, scores, per_scene, pooled)


def _class_ious(gt: Layout, pred: Layout, mapping: Mapping[str, str] | None, compat: bool,
                min_extent: float) -> dict[str, np.ndarray]:
    """IoU matrix ``(n_gt, n_pred)`` of every class with GT or predictions in this scene."""
    quads = {"wall": wall_quads,
             "door": lambda layout: opening_quads(layout, "door"),
             "window": lambda layout: opening_quads(layout, "window")}
    ious = {}
    for name, to_quads in quads.items():
        g, p = to_quads(gt), to_quads(pred)
        if len(g) or len(p):
            ious[name] = plane_iou(g, p, compat=compat)
    gt_boxes = _boxes_by_class(gt, mapping, min_extent)
    pred_boxes = _boxes_by_class(pred, mapping, min_extent)
    none = np.empty((0, 7))
    for name in gt_boxes.keys() | pred_boxes.keys():
        ious[name] = box_iou_3d(gt_boxes.get(name, none), pred_boxes.get(name, none), compat=compat)
    return ious


def _boxes_by_class(layout: Layout, mapping: Mapping[str, str] | None,
                    min_extent: float) -> dict[str, np.ndarray]:
    """Box rows ``(n, 7)`` per class, extents clamped to ``>= min_extent``; dropped labels left out."""
    rows = layout.box_array()
    rows[:, 4:7] = np.maximum(rows[:, 4:7], min_extent)
    members = defaultdict(list)
    for k, box in enumerate(layout.boxes):
        name = normalize_label(box.label)
        if mapping is not None:
            name = mapping.get(name)
        if name is not None and name not in LAYOUT_CLASSES:
            members[name].append(k)
    return {name: rows[idx] for name, idx in members.items()}


def _class_order(per_scene: Mapping[str, Mapping[str, object]]) -> tuple[str, ...]:
    seen = {c for counts in per_scene.values() for c in counts}
    return tuple(c for c in LAYOUT_CLASSES if c in seen) + tuple(sorted(seen - set(LAYOUT_CLASSES)))


def _mean_f1(per_scene, name: str, threshold: float) -> float:
    """Mean F1 over the scenes where ``name`` is present; NaN if it is present nowhere."""
    f1 = [counts[name][threshold].f1 for counts in per_scene.values() if name in counts]
    return sum(f1) / len(f1) if f1 else math.nan


def _pooled(per_scene, name: str, threshold: float) -> MatchCounts:
    return sum((counts[name][threshold] for counts in per_scene.values() if name in counts),
               MatchCounts(0, 0, 0))
