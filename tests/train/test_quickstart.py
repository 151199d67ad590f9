"""`spacelm quickstart` end to end on a one-minute budget: every stage runs, every output is written,
and the minute of training measurably helps: the held-out answer loss falls well below the untrained
LM's. Whether F1 reaches the targets is measured by the full 25-minute run (figures in the README).
"""

import json

import pytest

pytest.importorskip("accelerate")

from typer.testing import CliRunner  # noqa: E402

from spacelm.cli.app import app  # noqa: E402
from spacelm.predict import load_model  # noqa: E402
from spacelm.quickstart import TARGETS  # noqa: E402
from spacelm.scene.language import read_layout  # noqa: E402
from spacelm.train.data import LayoutDataset  # noqa: E402
from spacelm.train.diagnostics import answer_loss  # noqa: E402

runner = CliRunner()


def test_quickstart_runs_every_stage_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "qs"
    args = ["quickstart", "--output", str(out), "--minutes", "1.3", "--rooms", "8", "--val-rooms", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads((out / "quickstart_metrics.json").read_text())
    assert figures["rooms_scored"] == 2
    assert set(figures["stages"]) == {"1", "2"} and all(s["steps"] >= 1 for s in figures["stages"].values())
    for name, (threshold, goal) in TARGETS.items():  # each verdict agrees with its F1
        f1 = figures["f1"].get(name, {}).get(str(threshold))
        assert figures["targets_met"][name] == (f1 is not None and f1 >= goal)
    assert "F1@0.25" in result.output

    # Stage 1 trains only the encoder: its LM is the untrained base. A minute of stage 2 must beat it.
    def held_out_loss(stage):
        model, processor = load_model(out / "model" / f"stage{stage}", "cpu")
        rooms = LayoutDataset([out / "data" / "val"], processor, split="val")
        return answer_loss(model, processor, [rooms.room(i) for i in range(len(rooms))])

    trained, untrained = held_out_loss(2), held_out_loss(1)
    assert trained == pytest.approx(figures["cloud_reliance"]["own_cloud_loss"], rel=1e-4)
    assert trained < untrained - 0.5, (trained, untrained)  # nats per token; measured 4.49 vs 6.25 (15 steps)
    (prediction,) = (out / "predictions").glob("*.txt")
    read_layout(prediction)  # the written prediction is a valid layout file
    assert (out / "quickstart_prediction.html").stat().st_size > 10_000
    for stage in ("stage1", "stage2"):
        assert (out / "model" / stage / "stage_complete.json").is_file()
    again = runner.invoke(app, args)
    assert isinstance(again.exception, FileExistsError) and "--overwrite" in str(again.exception)
