"""The command line's error contract: bad input is one line naming the file (exit code 2), a bug
is a traceback, and ``--debug`` / ``SPACELM_DEBUG=1`` show the traceback of input errors too."""

import json
import os
import subprocess
import sys

import pytest

from spacelm.cli.app import main

TASK = {"id": "t1", "room": {"length": 4, "width": 3, "height": 2.5}, "preference": "",
        "objects": [{"id": "bed_1", "size": [2, 1.6, 0.5], "rotation": 90}]}


def _spacelm(*args, env=None):
    cmd = [sys.executable, "-c", "from spacelm.cli.app import main; main()", *map(str, args)]
    environment = {k: v for k, v in os.environ.items() if k != "SPACELM_DEBUG"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**environment, "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.fixture
def files(tmp_path):
    tasks, completions = tmp_path / "tasks.jsonl", tmp_path / "completions.jsonl"
    tasks.write_bytes(json.dumps(TASK).encode() + b"\n" + b'{"id": "t\xff"}\n')
    completions.write_text(json.dumps({"task_id": "t1", "completion": "x"}) + "\n")
    return tasks, completions


def test_input_errors_are_one_line_naming_the_file_and_line(files):
    tasks, completions = files
    done = _spacelm("arrange", "eval", "--tasks", tasks, "--completions", completions)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: {tasks}, line 2: not UTF-8 text (byte 0xff at column 10)"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback_of_input_errors(files, how):
    tasks, completions = files
    args = ["arrange", "eval", "--tasks", tasks, "--completions", completions]
    done = _spacelm(*(["--debug"] + args if how == "flag" else args),
                    env={"SPACELM_DEBUG": "1"} if how == "env" else None)
    assert done.returncode == 1 and "Traceback (most recent call last)" in done.stderr
    assert f"spacelm.arrange.task.TaskError: {tasks}, line 2: not UTF-8" in done.stderr


def test_a_bug_is_a_traceback_not_an_input_error(files, monkeypatch):
    import spacelm.arrange.task as task_module

    def broken(path):
        return 1 / 0

    tasks, completions = files
    monkeypatch.setattr(task_module, "read_tasks", broken)
    monkeypatch.delenv("SPACELM_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["spacelm", "arrange", "eval", "--tasks", str(tasks),
                                      "--completions", str(completions)])
    with pytest.raises(ZeroDivisionError):
        main()


def test_fixed_rotation_scores_metaspatials_own_answers(tmp_path):
    tasks, completions = tmp_path / "tasks.jsonl", tmp_path / "completions.jsonl"
    tasks.write_text(json.dumps(TASK) + "\n")
    answer = '<think>.</think><answer>[{"new_object_id": "bed_1", "x": 1.0, "y": 0.8, "z": 0.25}]</answer>'
    completions.write_text(json.dumps({"task_id": "t1", "completion": answer}) + "\n")
    for flags, fmt in (([], 0.5), (["--fixed-rotation"], 1.0)):
        out = tmp_path / "scores.json"
        done = _spacelm("arrange", "eval", "--tasks", tasks, "--completions", completions,
                        "--output", out, *flags)
        assert done.returncode == 0, done.stderr
        scores = json.loads(out.read_text())
        assert scores["completions"][0]["format"] == fmt  # the tier: 0.5 is "a field is missing"
        assert scores["mean"]["format"] == (fmt == 1.0)  # the share of valid completions


def _run_main(monkeypatch, *args):
    """``main()`` in this process: the exit code (0 when it returns)."""
    monkeypatch.delenv("SPACELM_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["spacelm", *map(str, args)])
    try:
        main()
    except SystemExit as e:
        return e.code
    return 0


@pytest.mark.parametrize("case", ["train config", "eval metadata", "convert option", "arrange option"])
def test_user_errors_in_configs_files_and_options_are_one_line(tmp_path, monkeypatch, capsys, case):
    (tmp_path / "gt").mkdir()
    config, metadata = tmp_path / "run.yaml", tmp_path / "test.csv"
    config.write_text("output_dir: out\nseed: 0\nnope: 1\n")
    metadata.write_text("id\nroom0\nroom0\n")
    args, expected = {
        "train config": (["train", config], f"error: {config}: nope: unknown key (known: output_dir,"),
        "eval metadata": (["eval", "--gt", tmp_path / "gt", "--pred", tmp_path / "gt", "--metadata", metadata],
                          f"error: {metadata}: scene id(s) listed twice: room0"),
        "convert option": (["data", "convert", "--source", "vla3d", "--input", tmp_path, "--output",
                            tmp_path / "out", "--label-set", "nope"],
                           "error: label_set must be one of ('nyu40', 'spatiallm59'), got 'nope'"),
        "arrange option": (["arrange", "eval", "--tasks", tmp_path / "tasks.jsonl"],
                           "error: give exactly one of --completions FILE (score them) and --model DIR"),
    }[case]
    assert _run_main(monkeypatch, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_a_plain_value_error_from_library_code_is_a_bug_with_its_traceback(files):
    # A ValueError that no input check raised (here: one patched into the task reader) is a bug.
    tasks, completions = files
    code = ("import spacelm.arrange.task as t\n"
            "def broken(path): raise ValueError('an internal invariant broke')\n"
            "t.read_tasks = broken\n"
            "from spacelm.cli.app import main; main()")
    cmd = [sys.executable, "-c", code, "arrange", "eval", "--tasks", str(tasks), "--completions", str(completions)]
    environment = {k: v for k, v in os.environ.items() if k != "SPACELM_DEBUG"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**environment, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1 and "Traceback (most recent call last)" in done.stderr
    assert "ValueError: an internal invariant broke" in done.stderr and "error:" not in done.stderr


def test_a_plain_value_error_propagates_from_main(tmp_path, monkeypatch):
    import spacelm.evaluate

    def broken(*args, **kwargs):
        raise ValueError("not an input error")

    monkeypatch.setattr(spacelm.evaluate, "evaluate_dirs", broken)
    with pytest.raises(ValueError, match="not an input error"):
        _run_main(monkeypatch, "eval", "--gt", tmp_path, "--pred", tmp_path)


def test_input_error_classes_are_spacelm_errors_and_value_errors():
    from spacelm.arrange.generate import generate_tasks
    from spacelm.datasets.convert import source_module
    from spacelm.errors import ArgumentError, SpacelmError
    from spacelm.scene.categories import label_mapping
    from spacelm.scene.quantize import Quantizer

    for call in (lambda: source_module("nope"), lambda: label_mapping("nyu40", "nope"),
                 lambda: Quantizer(0), lambda: generate_tasks(1, 0, "nope")):
        with pytest.raises(ArgumentError) as caught:
            call()
        assert isinstance(caught.value, SpacelmError) and isinstance(caught.value, ValueError)
