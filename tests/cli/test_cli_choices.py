"""Options with a fixed set of values fail at parse time (exit 2) and list the values the library takes."""

import pytest
from typer.testing import CliRunner

from spacelm.arrange.generate import SPLITS
from spacelm.cli.app import app
from spacelm.render.images import BACKENDS
from spacelm.scene.language import TASKS
from spacelm.train.args import STAGES

runner = CliRunner()


@pytest.mark.parametrize("args, option, allowed", [
    (["predict", "--model", "m", "--input", "i", "--output", "o", "--task", "rooms"], "--task", tuple(TASKS)),
    (["train", "configs/quickstart.yaml", "--stage", "3"], "--stage", STAGES),
    (["arrange", "generate", "--n", "2", "--output", "x.jsonl", "--split", "val"], "--split", SPLITS),
    (["arrange", "eval", "--tasks", "t.jsonl", "--judge-render", "cycles"], "--judge-render", BACKENDS),
])
def test_a_bad_choice_fails_at_parse_time_listing_the_allowed_values(args, option, allowed):
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output  # click's usage error: nothing ran
    assert f"Invalid value for '{option}'" in result.output
    assert all(f"'{value}'" in result.output for value in allowed), result.output


def test_a_good_choice_reaches_the_library_as_a_plain_string(tmp_path):
    out = tmp_path / "tasks.jsonl"
    result = runner.invoke(app, ["arrange", "generate", "--n", "2", "--output", str(out), "--split", "test"])
    assert result.exit_code == 0, result.output
    from spacelm.arrange.generate import split_of
    from spacelm.arrange.task import read_tasks

    assert [split_of(task) for task in read_tasks(out)] == ["test", "test"]


@pytest.mark.parametrize("device, ok", [("cpu", True), ("cuda:1", True), ("gpu", False), ("cuda:x", False)])
def test_device_is_checked_at_parse_time(tmp_path, device, ok):
    args = ["predict", "--model", str(tmp_path / "none"), "--input", str(tmp_path), "--output", str(tmp_path / "o"),
            "--device", device]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    if ok:  # parsed, then refused by the library for the folder without clouds
        assert isinstance(result.exception, FileNotFoundError), result.output
    else:
        assert result.exit_code == 2 and "Invalid value for '--device'" in result.output
        assert "'cuda:N'" in result.output
