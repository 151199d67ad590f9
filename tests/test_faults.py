"""Runs killed with SIGKILL at a random point, then rerun, end byte-identical to an uninterrupted run.

Each command runs in a subprocess of its own process group; the kill lands after a random number of
its output files appeared plus a random delay, so it hits mid-write as often as between files. The
rerun must leave exactly the files, and bytes, of a run that was never interrupted: no hidden
temporary file, no doubled manifest row, no layout sampled from a different seed.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOMS = 5
KILLS = 3  # random kill points per command
CLI = "from spacelm.cli.app import main; main()"


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}


def _run(args: list[str], cwd: Path, code: str = CLI) -> None:
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _start(args: list[str], cwd: Path, code: str = CLI) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_after(proc: subprocess.Popen, folder: Path, pattern: str, files: int, delay: float,
                group: bool = True) -> bool:
    """SIGKILL ``proc`` (its whole group, or only itself) once ``files`` files match in ``folder`` and
    ``delay`` seconds passed; True if it was still running then (the kill interrupted it)."""
    deadline = time.monotonic() + 120
    while len(list(folder.glob(pattern))) < files and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    interrupted = proc.poll() is None
    if group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.kill()
    proc.wait(timeout=60)
    return interrupted


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, hidden ones included: relative path -> bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _kill_rerun_compare(tmp_path: Path, name: str, args, folder_of, pattern: str, seed: int,
                        code: str = CLI, kills: int = KILLS, min_files: int = 0) -> None:
    """Reference run, then ``kills`` runs each killed at a random point and rerun; all trees equal."""
    reference = tmp_path / f"{name}_reference"
    _run(args(reference), tmp_path, code)
    expected = _tree(reference)
    assert not [p for p in expected if Path(p).name.startswith(".")]
    rng = random.Random(seed)
    interrupted = 0
    for attempt in range(kills):
        out = tmp_path / f"{name}_{attempt}"
        proc = _start(args(out), tmp_path, code)
        interrupted += _kill_after(proc, folder_of(out), pattern, rng.randint(min_files, ROOMS - 2),
                                   rng.uniform(0.0, 0.01))  # soon after: the bookkeeping writes
        _run(args(out), tmp_path, code)
        assert _tree(out) == expected, f"{name}: kill {attempt} then rerun differs"
    assert interrupted >= max(1, kills - 1)  # (nearly) every kill hit the run, not its end


@pytest.fixture(scope="module")
def synth_args():
    return lambda out: ["data", "synth", "--rooms", str(ROOMS), "--output", str(out), "--density", "300"]


def test_synth_killed_then_rerun_matches_an_uninterrupted_run(tmp_path, synth_args):
    _kill_rerun_compare(tmp_path, "synth", synth_args, lambda out: out / "pcd", "*.ply", seed=1)


def test_convert_killed_then_rerun_matches_an_uninterrupted_run(tmp_path, synth_args):
    source = tmp_path / "source"
    _run(synth_args(source), tmp_path)  # rooms in SpatialLM's format: pcd/, layout/, split.csv

    def args(out):
        return ["data", "convert", "--source", "spatiallm", "--input", str(source), "--output", str(out)]

    _kill_rerun_compare(tmp_path, "convert", args, lambda out: out / "pcd", "*.ply", seed=2)


def _live_members(group: int) -> list[int]:
    """Pids of processes (zombies aside) in process group ``group``, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (name)"
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")
def test_workers_exit_when_their_parent_is_killed(tmp_path):
    out = tmp_path / "out"
    args = ["data", "synth", "--rooms", "12", "--output", str(out), "--density", "300", "--workers", "2"]
    proc = _start(args, tmp_path)
    assert _kill_after(proc, out / "pcd", "*.ply", 1, 0.0, group=False)  # the main pid only
    deadline = time.monotonic() + 5
    while _live_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = _live_members(proc.pid)
    for pid in survivors:  # do not leave them running if the test fails
        os.kill(pid, signal.SIGKILL)
    assert survivors == []


# ---- predict -----------------------------------------------------------------------------------

# Run `spacelm predict` on a tiny random model whose head writes a box with sampled digits, so each
# room's layout depends on its sampling seed (a random model's own text would parse to nothing).
PREDICT = '''
import sys, torch
import spacelm.predict as predict
from spacelm.cli.app import main

load = predict.load_model

def load_scripted(*args, **kwargs):
    model, processor = load(*args, **kwargs)
    tok = processor.tokenizer
    text = "bbox_0=Bbox(bed,1??,1??,10,0,20,20,10)\\n"
    tokens = tok.tokenize(text.replace("?", "0"))  # digits are single tokens
    pieces, at = [], 0  # the text of each token, "?" kept
    for token in tokens:
        n = len(tok.convert_tokens_to_string([token]))
        pieces.append(text[at:at + n])
        at += n
    script = [None if p == "?" else tok.convert_tokens_to_ids(t) for p, t in zip(pieces, tokens)]
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
    head, state = model.language_model.lm_head, {"step": 0}
    forward = head.forward

    def scripted(hidden):
        logits = forward(hidden)  # (B, L, V); the last position picks the next token
        step = state["step"]
        token = script[step] if step < len(script) else tok.eos_token_id
        forced = torch.full_like(logits[:, -1], -1e4)
        forced[:, digits if token is None else [token]] = 0.0
        logits[:, -1] = forced
        state["step"] += 1
        return logits

    head.forward = scripted
    generate = model.generate

    def reset_then_generate(*a, **k):
        state["step"] = 0
        return generate(*a, **k)

    model.generate = reset_then_generate
    return model, processor

predict.load_model = load_scripted
main()
'''


@pytest.fixture(scope="module")
def predict_inputs(tmp_path_factory):
    """``(tiny model folder, folder of ROOMS clouds)`` for ``spacelm predict``."""
    pytest.importorskip("transformers")
    import torch

    from spacelm.datasets.synthetic import SynthConfig, synth_room
    from spacelm.model import SpatialLMForCausalLM
    from spacelm.model.tiny import save_tiny_base_lm
    from spacelm.points import PointCloud, write_ply

    root = tmp_path_factory.mktemp("predict")
    base = save_tiny_base_lm(root / "base")
    torch.manual_seed(0)
    model, processor = SpatialLMForCausalLM.from_base_lm(
        base, point_config={"channels": [8, 8, 16, 16, 32], "embed_dim": 32, "num_bins": 640})
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    clouds = root / "clouds"
    clouds.mkdir()
    for i in range(ROOMS):
        room = synth_room(i, SynthConfig(density=50))
        write_ply(clouds / f"room{i}.ply", PointCloud(room.xyz, room.rgb))
    return root / "model", clouds


def _predict_args(inputs, batch_size: int):
    model, clouds = inputs
    return lambda out: ["predict", "--model", str(model), "--input", str(clouds), "--output", str(out),
                        "--seed", "3", "--max-new-tokens", "60", "--device", "cpu", "--batch-size", str(batch_size)]


@pytest.mark.parametrize("batch_size", [1, 2])
def test_predict_killed_then_rerun_matches_an_uninterrupted_run(tmp_path, predict_inputs, batch_size):
    # One kill: each run pays seconds of torch imports. After >= 1 output, so the resume is exercised.
    _kill_rerun_compare(tmp_path, "predict", _predict_args(predict_inputs, batch_size), lambda out: out, "*.txt",
                        seed=3, code=PREDICT, kills=1, min_files=1)
    layouts = set(_tree(tmp_path / "predict_reference").values())
    assert len(layouts) > 1  # the sampled digits differ between rooms: the seeds matter


def test_a_batch_cut_between_its_writes_is_predicted_whole_again(tmp_path, predict_inputs):
    # The kill the random ones rarely hit: room0 of the batch (room0, room1) written, room1 not. A rerun
    # that batched only what is left would sample room1 alone, from another seed.
    args = _predict_args(predict_inputs, 2)
    _run(args(tmp_path / "reference"), tmp_path, PREDICT)
    expected = _tree(tmp_path / "reference")
    (tmp_path / "reference" / "room1.txt").unlink()
    _run(args(tmp_path / "reference"), tmp_path, PREDICT)
    assert _tree(tmp_path / "reference") == expected
