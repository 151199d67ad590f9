"""The bundled example scenes were designed so every figure below can be worked out by hand."""

import json
import math
from pathlib import Path

import pytest

from spacelm.evaluate import evaluate_dirs, load_scenes, read_metadata_ids

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "layouts"


def scores(result, name):
    return [round(result.scores[name][t], 4) for t in result.thresholds]


def test_example_table_matches_hand_computation():
    with pytest.warns(UserWarning, match="1 prediction.*missing.*room_c"):
        result, loaded = evaluate_dirs(EXAMPLES / "gt", EXAMPLES / "pred")
    assert loaded.missing_predictions == ["room_c"]
    # walls: room_a 4/4 (a wall 5 cm off is parallel and near: IoU 1; a wall cut to 2 of 3 m: 2/3),
    # room_b 3/4 (one wall 0.3 m away fails the 0.2 m plane test) -> F1 0.75, room_c no prediction.
    assert scores(result, "wall") == [round((1 + 0.75 + 0) / 3, 4)] * 2
    assert scores(result, "door") == [round(2 / 3, 4)] * 2  # exact in a and b, missing in c
    # windows: a misses its only one (F1 0), b gets 1 of 2 (other shifted 1 m: IoU 0.5/2.5 = 0.2)
    assert scores(result, "window") == [0.25, 0.25]
    # a bed shifted by 0.5 m along its 2 m side: IoU 1.5/2.5 = 0.6, a TP at both thresholds
    assert scores(result, "bed") == [0.5, 0.5]
    # a 0.5 m nightstand shifted 0.25 m: IoU 1/3, a TP at 0.25 only
    assert scores(result, "nightstand") == [1.0, 0.0]
    # the tv cabinet turned 90 degrees in place: IoU 0.25/1.75 = 0.14, a miss
    assert scores(result, "tv cabinet") == [0.0, 0.0]
    assert scores(result, "sofa") == [1.0, 1.0]
    for name in ("chair", "wardrobe", "coffee table", "side table"):
        assert scores(result, name) == [0.0, 0.0]
    assert set(result.per_scene["room_a"]) == {"wall", "door", "window", "bed", "nightstand",
                                               "wardrobe", "chair"}


def test_compat_mode_reproduces_the_one_sided_plane_test():
    with pytest.warns(UserWarning):
        result, _ = evaluate_dirs(EXAMPLES / "gt", EXAMPLES / "pred", compat=True)
    # room_b's wall 0 predicted 0.3 m on the negative side now passes: room_b walls F1 = 1
    assert scores(result, "wall") == [round(2 / 3, 4)] * 2


def test_metadata_selects_scenes(tmp_path):
    meta = tmp_path / "test.csv"
    meta.write_text("id,pcd,layout\nroom_b,pcd/room_b.ply,layout/room_b.txt\n")
    assert read_metadata_ids(meta) == ["room_b"]
    result, loaded = evaluate_dirs(EXAMPLES / "gt", EXAMPLES / "pred", metadata=meta)
    assert [s[0] for s in loaded.scenes] == ["room_b"]
    assert scores(result, "wall") == [0.75, 0.75]
    assert math.isnan(result.scores.get("bed", {0.25: math.nan})[0.25])


def test_bad_inputs_name_the_file(tmp_path):
    meta = tmp_path / "ids.csv"
    meta.write_text("scene\nroom_a\n")
    with pytest.raises(ValueError, match="ids.csv: expected a CSV header with an 'id' column"):
        read_metadata_ids(meta)
    with pytest.raises(FileNotFoundError, match="nowhere: not a directory"):
        load_scenes(tmp_path / "nowhere", EXAMPLES / "pred")
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "s1.txt").write_text("wall_0=Wall(0,0,0,1,0,0,2.5)\n")
    with pytest.raises(ValueError, match=r"s1.txt:line 1: wrong_arity"):
        load_scenes(gt, EXAMPLES / "pred")


def test_prediction_diagnostics_are_kept_not_fatal(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    (gt / "s.txt").write_text("wall_0=Wall(0,0,0,4,0,0,2.5,0)\n")
    (pred / "s.txt").write_text("wall_0=Wall(0,0,0,4,0,0,2.5,0)\nwall_1=Wall(0,0,0,4,0,0,2.5,0)\nwall_2=Wa")
    result, loaded = evaluate_dirs(gt, pred)
    assert [d.kind for d in loaded.prediction_diagnostics["s"]] == ["repeated", "truncated"]
    assert scores(result, "wall") == [1.0, 1.0]  # the repeat does not count as a false positive
    json.dumps(result.to_dict())
