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
