"""`spacelm quickstart` end to end on a one-minute budget: every stage runs and every output is written.

Whether the tiny model really learns is measured by the full 25-minute run (figures in the README),
not here: a minute of CPU training cannot reach the targets.
"""

import json

import pytest

pytest.importorskip("accelerate")

from typer.testing import CliRunner  # noqa: E402

from spacelm.cli.app import app  # noqa: E402
from spacelm.scene.language import read_layout  # noqa: E402

runner = CliRunner()


def test_quickstart_runs_every_stage_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "qs"
    args = ["quickstart", "--output", str(out), "--minutes", "1.3", "--rooms", "8", "--val-rooms", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads((out / "quickstart_metrics.json").read_text())
    assert figures["rooms_scored"] == 2
    assert set(figures["stages"]) == {"1", "2"} and all(s["steps"] >= 1 for s in figures["stages"].values())
    for name in ("wall", "door", "objects"):
        assert 0.0 <= figures["f1"][name]["0.25"] <= 1.0
    assert set(figures["targets_met"]) == {"wall", "door", "window", "objects"}
    assert "F1@0.25" in result.output and "not met" in result.output
    (prediction,) = (out / "predictions").glob("*.txt")
    read_layout(prediction)  # the written prediction is a valid layout file
    assert (out / "quickstart_prediction.html").stat().st_size > 10_000
    for stage in ("stage1", "stage2"):
        assert (out / "model" / stage / "stage_complete.json").is_file()
    again = runner.invoke(app, args)
    assert isinstance(again.exception, FileExistsError) and "--overwrite" in str(again.exception)
