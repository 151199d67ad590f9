"""``spacelm predict`` on an upstream SpatialLM checkpoint folder, from the PLY, against upstream's tokens.

Uses ../shared/fixtures/spatiallm11_tiny (tiny random ``spatiallm_qwen`` checkpoint + upstream's outputs on
its room); skips when it is absent.
"""

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spacelm.cli.app import app
from spacelm.model.spatiallm_checkpoint import load_spatiallm_checkpoint
from spacelm.points import read_points
from spacelm.predict import PredictConfig, load_model, predict_clouds

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "spatiallm11_tiny"
pytestmark = pytest.mark.skipif(not (FIXTURE / "reference.npz").is_file(), reason="fixture not present")
# Greedy and short: upstream's 9th greedy token is <|point_pad|>, which predict never emits.
GREEDY = PredictConfig(do_sample=False, max_new_tokens=8, stop_on_repeat=False)


def test_predict_from_the_ply_gives_upstreams_tokens():
    model, processor = load_spatiallm_checkpoint(FIXTURE / "checkpoint", shuffle_orders=True)
    cloud = read_points(FIXTURE / "room.ply")
    # seed 1234 = upstream's set_seed before generate: the same Sonata order draws.
    (prediction,) = predict_clouds(model, processor, [cloud], GREEDY, seed=1234)
    expected = np.load(FIXTURE / "reference.npz")["greedy_tokens"][:8].tolist()
    assert prediction.text == processor.tokenizer.decode(expected, skip_special_tokens=True)


def test_cli_predicts_from_a_spatiallm_folder_and_saves_the_raw_text(tmp_path):
    result = CliRunner().invoke(app, ["predict", "--model", str(FIXTURE / "checkpoint"),
                                      "--input", str(FIXTURE / "room.ply"), "--output", str(tmp_path),
                                      "--greedy", "--max-new-tokens", "8", "--save-raw", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "room.txt").is_file()
    model, processor = load_model(FIXTURE / "checkpoint", device="cpu")
    (prediction,) = predict_clouds(model, processor, [read_points(FIXTURE / "room.ply")],
                                   PredictConfig(do_sample=False, max_new_tokens=8))
    assert (tmp_path / "room.raw.txt").read_text(encoding="utf-8") == prediction.text != ""
