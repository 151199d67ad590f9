import json
from pathlib import Path

from typer.testing import CliRunner

from spacelm.cli.app import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "layouts"
runner = CliRunner()


def test_eval_prints_tables_and_writes_json(tmp_path):
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", "--gt", str(EXAMPLES / "gt"), "--pred", str(EXAMPLES / "pred"),
                                 "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "wall" in result.output and "58.3" in result.output
    assert "room_c" in result.output  # the missing prediction is named
    data = json.loads(out.read_text())
    assert data["scores"]["nightstand"] == {"0.25": 1.0, "0.5": 0.0}
    assert data["scenes"]["room_b"]["wall"]["0.25"]["tp"] == 3


def test_eval_with_builtin_label_mapping_drops_unmapped_classes(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    (gt / "s.txt").write_text("bbox_0=Bbox(dining_chair,1,1,0.4,0,0.5,0.5,0.8)\n"
                              "bbox_1=Bbox(pillow,2,2,0.5,0,0.5,0.3,0.2)\n")
    (pred / "s.txt").write_text("bbox_0=Bbox(chair,1,1,0.4,0,0.5,0.5,0.8)\n")
    result = runner.invoke(app, ["eval", "--gt", str(gt), "--pred", str(pred), "--label-to", "spatiallm20",
                                 "--output", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["classes"] == ["chair"]  # dining_chair -> chair matches; pillow has no counterpart
    assert data["scores"]["chair"]["0.5"] == 1.0


def test_layout_check_exit_codes(tmp_path):
    good = runner.invoke(app, ["layout", "check", str(EXAMPLES / "gt" / "room_a.txt")])
    assert good.exit_code == 0 and "4 walls" in good.output
    bad_file = tmp_path / "bad.txt"
    bad_file.write_text("wall_0=Wall(0,0,0,4,0,0,2.5,0)\ndoor_0=Door(wall_2,1,0,1,0.9,2)\n")
    bad = runner.invoke(app, ["layout", "check", str(bad_file)])
    assert bad.exit_code == 1
    assert "bad.txt:2: dangling_wall" in bad.output
    quantised = tmp_path / "q.txt"
    quantised.write_text("wall_0=Wall(0,0,0,160,0,0,125,0)\n")
    assert runner.invoke(app, ["layout", "check", "--bins", "1280", str(quantised)]).exit_code == 0
    assert runner.invoke(app, ["layout", "check", "--bins", "100", str(quantised)]).exit_code == 1


def test_data_synth_then_stats(tmp_path):
    out = tmp_path / "rooms"
    result = runner.invoke(app, ["data", "synth", "--rooms", "2", "--output", str(out), "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "samples: 2" in result.output
    stats = runner.invoke(app, ["data", "stats", str(out)])
    assert stats.exit_code == 0 and "by source: synth" in stats.output


def test_user_errors_are_one_line_with_exit_code_2(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-c", "from spacelm.cli.app import main; main()", "data", "convert",
           "--source", "nope", "--input", str(tmp_path), "--output", str(tmp_path / "o")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 2
    assert "error: unknown source 'nope'" in done.stderr and "Traceback" not in done.stderr
    bad_shard = runner.invoke(app, ["data", "convert", "--source", "vla3d", "--input", str(tmp_path),
                                    "--output", str(tmp_path / "o"), "--shard", "3"])
    assert bad_shard.exit_code == 2 and "expected I/N" in bad_shard.output


def test_arrange_generate_then_eval_references(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    result = runner.invoke(app, ["arrange", "generate", "--n", "5", "--output", str(tasks), "--seed", "3"])
    assert result.exit_code == 0, result.output
    reference = tmp_path / "tasks.reference.jsonl"
    assert len(tasks.read_text().splitlines()) == 5 and reference.is_file()
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["arrange", "eval", "--tasks", str(tasks), "--completions", str(reference),
                                 "--output", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    # reference solutions are verified by the physics checks when generated
    assert data["mean"]["format"] == 1.0 and data["mean"]["collision"] == 0.0
    assert data["mean"]["out_of_bounds"] == 0.0 and data["mean"]["relations"] == 0.0
