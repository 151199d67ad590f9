import json
import math

import numpy as np
import pytest

from spacelm.scene import Box, Layout, Wall
from spacelm.scene.metrics import MatchCounts, evaluate_scenes, match_counts


def box(label, x=0.0, y=0.0, z=0.5, yaw=0.0, sx=1.0, sy=1.0, sz=1.0) -> Box:
    return Box(label, x, y, z, yaw, sx, sy, sz)


def wall(ax, ay, bx, by) -> Wall:
    return Wall(ax, ay, 0.0, bx, by, 0.0, 2.5)


# ---- matching ----------------------------------------------------------------------------------

def test_hungarian_maximises_the_number_of_matches():
    # Greedy best-first takes (0, 0) = 0.9 and leaves row 1 with 0.0; the optimal assignment
    # pairs (0, 1) and (1, 0), both >= 0.5.
    counts = match_counts([[0.9, 0.6], [0.6, 0.0]], 0.5)
    assert counts == MatchCounts(tp=2, n_gt=2, n_pred=2)


def test_threshold_is_inclusive_and_extra_predictions_count():
    # IoU exactly at the threshold is a true positive; the unmatched predictions lower precision.
    counts = match_counts([[0.5, 0.1, 0.0]], 0.5)
    assert (counts.tp, counts.precision, counts.recall) == (1, pytest.approx(1 / 3), 1.0)
    assert counts.f1 == pytest.approx(0.5)


def test_empty_sides_give_zero_not_nan():
    # Only GT, or only predictions: F1 is 0 (SpatialLM's convention), never a division error.
    assert match_counts(np.zeros((2, 0)), 0.25) == MatchCounts(0, 2, 0)
    assert match_counts(np.zeros((0, 3)), 0.25).f1 == 0.0


# ---- evaluate_scenes ---------------------------------------------------------------------------

def three_scenes():
    """Scenes with known outcomes (IoUs at thresholds 0.25 / 0.5):

    a: walls 1 of 2 found plus one stray (tp 1, gt 2, pred 2 -> F1 0.5); chair exact (F1 1);
       table shifted half a unit (IoU 1/3: F1 1 at 0.25, 0 at 0.5).
    b: wall exact (F1 1); a chair predicted where there is none (F1 0).
    c: wall missed (F1 0); bed exact (F1 1); no chair at all -> chair masked here.
    """
    a = (Layout(walls=[wall(0, 0, 4, 0), wall(4, 0, 4, 3)],
                boxes=[box("chair"), box("table", x=3)]),
         Layout(walls=[wall(0, 0, 4, 0), wall(0, 2, 4, 2)],
                boxes=[box("chair"), box("table", x=3.5)]))
    b = (Layout(walls=[wall(0, 0, 4, 0)]),
         Layout(walls=[wall(0, 0, 4, 0)], boxes=[box("chair", x=2)]))
    c = (Layout(walls=[wall(0, 0, 4, 0)], boxes=[box("bed", x=1)]),
         Layout(boxes=[box("bed", x=1)]))
    return [("a", *a), ("b", *b), ("c", *c)]


def test_scene_averaged_f1_masks_scenes_without_the_class():
    result = evaluate_scenes(three_scenes())
    assert result.classes == ("wall", "bed", "chair", "table")
    # wall present in all three: (0.5 + 1 + 0) / 3
    assert result.scores["wall"][0.25] == pytest.approx(0.5)
    # chair: scenes a (1) and b (0); scene c has no chair and is left out, so 0.5, not 1/3
    assert result.scores["chair"][0.25] == pytest.approx(0.5)
    assert "chair" not in result.per_scene["c"]
    assert result.scores["bed"][0.5] == pytest.approx(1.0)
    # the table pair sits between the two thresholds
    assert result.scores["table"] == {0.25: pytest.approx(1.0), 0.5: pytest.approx(0.0)}
    assert result.per_scene["a"]["wall"][0.5] == MatchCounts(tp=1, n_gt=2, n_pred=2)


def test_pooled_counts_sum_over_scenes():
    # wall: tp 1 + 1 + 0, gt 2 + 1 + 1, pred 2 + 1 + 0 -> P 2/3, R 1/2, F1 4/7.
    # chair: tp 1, gt 1, pred 2 -> F1 2/3, unlike its scene average 0.5.
    pooled = evaluate_scenes(three_scenes()).pooled
    assert pooled["wall"][0.25] == MatchCounts(2, 4, 3)
    assert pooled["wall"][0.25].f1 == pytest.approx(4 / 7)
    assert pooled["chair"][0.5].f1 == pytest.approx(2 / 3)


def test_classes_restricts_and_orders_the_report():
    # A requested class seen nowhere has no defined score: NaN, and None in the JSON form.
    result = evaluate_scenes(three_scenes(), classes=["chair", "Wall", "sofa"])
    assert result.classes == ("chair", "wall", "sofa")
    assert set(result.per_scene["a"]) == {"chair", "wall"}
    assert math.isnan(result.scores["sofa"][0.25])
    assert result.to_dict()["scores"]["sofa"]["0.25"] is None


def test_to_dict_is_json_serialisable():
    d = evaluate_scenes(three_scenes()).to_dict()
    assert json.loads(json.dumps(d))["scenes"]["a"]["table"]["0.5"]["f1"] == 0.0
    assert d["pooled"]["wall"]["0.25"]["tp"] == 2


def test_label_map_normalises_maps_and_drops_unmapped_labels():
    # "Dining_Chair" normalises to "dining chair" and maps to chair; the pillow has no entry and
    # is dropped from GT, so it is not an unmatched GT box.
    gt = Layout(boxes=[box("Dining_Chair"), box("pillow", x=3)])
    pred = Layout(boxes=[box("chair")])
    mapped = evaluate_scenes([("s", gt, pred)], label_map={"dining chair": "chair", "chair": "chair"})
    assert mapped.classes == ("chair",)
    assert mapped.scores["chair"][0.5] == 1.0
    unmapped = evaluate_scenes([("s", gt, pred)])
    assert set(unmapped.classes) == {"dining chair", "chair", "pillow"}


def test_boxes_named_like_layout_classes_are_dropped():
    # A box labelled "door" must not be scored against Door openings with a different IoU.
    result = evaluate_scenes([("s", Layout(boxes=[box("door")]), Layout())])
    assert result.classes == ()


def test_min_extent_lets_a_thin_painting_match():
    # Paintings 2 cm thick, 5 cm apart in depth: disjoint as given. Clamped to 10 cm thick they
    # overlap 5 cm of 15: IoU 1/3 >= 0.25.
    gt = Layout(boxes=[box("painting", z=1.5, sx=1.0, sy=0.02, sz=0.8)])
    pred = Layout(boxes=[box("painting", y=0.05, z=1.5, sx=1.0, sy=0.02, sz=0.8)])
    assert evaluate_scenes([("s", gt, pred)]).scores["painting"][0.25] == 1.0
    assert evaluate_scenes([("s", gt, pred)], min_extent=0.0).scores["painting"][0.25] == 0.0


def test_compat_switch_reaches_the_box_iou():
    # The stacked pair from test_geometry: IoU 0.2 correctly, 0.5 with SpatialLM's z bug.
    gt = Layout(boxes=[box("cabinet", z=0.5, sz=1.0)])
    pred = Layout(boxes=[box("cabinet", z=1.5, sz=2.0)])
    assert evaluate_scenes([("s", gt, pred)]).scores["cabinet"][0.25] == 0.0
    assert evaluate_scenes([("s", gt, pred)], compat=True).scores["cabinet"][0.25] == 1.0


def test_duplicate_scene_ids_are_an_error():
    # A repeated id would silently overwrite a scene's figures.
    with pytest.raises(ValueError, match="twice"):
        evaluate_scenes([("s", Layout(), Layout()), ("s", Layout(), Layout())])
