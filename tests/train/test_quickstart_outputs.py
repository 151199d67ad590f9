"""What `spacelm quickstart` shows the person watching it: plain progress lines when its output goes to
a file, and a PNG of one held-out room's plan, ground truth beside prediction."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

pytest.importorskip("transformers")

from spacelm import quickstart  # noqa: E402
from spacelm.scene.entities import Box, Wall  # noqa: E402
from spacelm.scene.layout import Layout  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def _train_a_stage(console: Console, clock: Clock, steps: int, budget: float) -> None:
    """Drive ``RichTrainingProgress`` through a stage of ``steps`` steps spread over ``budget`` seconds."""
    with quickstart._progress(console) as progress:
        callback = quickstart.RichTrainingProgress(progress, {"stage2": budget})
        args = SimpleNamespace(output_dir="out/model/stage2")
        callback.on_train_begin(args, None, None)
        for step in range(1, steps + 1):
            clock.now += budget / steps
            if step % 10 == 0:
                callback.on_log(args, None, None, logs={"loss": 1.0 / step})
            callback.on_step_end(args, SimpleNamespace(global_step=step), None)
        callback.on_train_end(args, None, None)


def test_a_log_file_gets_a_plain_line_every_5_percent(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(quickstart, "time", clock)
    out = io.StringIO()
    console = Console(file=out, width=120)
    assert not console.is_terminal
    _train_a_stage(console, clock, steps=1000, budget=600.0)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("training stage2: ")]
    assert 20 <= len(lines) <= 22, lines  # 0%, 5%, ..., 100%: not one per step
    assert lines[0].startswith("training stage2: 0%")
    assert "training stage2: 50% step 500  1.67 steps/s  loss 0.002  elapsed 5.0 min" in lines
    assert lines[-1].startswith("training stage2: 100% step 1000") and lines[-1].endswith("elapsed 10.0 min")


def test_a_terminal_gets_only_the_live_bar(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(quickstart, "time", clock)
    out = io.StringIO()
    _train_a_stage(Console(file=out, width=120, force_terminal=True), clock, steps=100, budget=60.0)
    assert "training stage2: " not in out.getvalue()


def test_plan_pair_png_shows_ground_truth_beside_prediction(tmp_path):
    walls = [Wall(0, 0, 0, 4, 0, 0, 2.5, 0.1), Wall(4, 0, 0, 4, 3, 0, 2.5, 0.1),
             Wall(4, 3, 0, 0, 3, 0, 2.5, 0.1), Wall(0, 3, 0, 0, 0, 0, 2.5, 0.1)]
    gt = Layout(walls=walls, boxes=[Box("bed", 2.0, 1.5, 0.3, 0.0, 2.0, 1.6, 0.6)])
    pred = Layout(walls=walls[:3], boxes=[Box("bed", 2.2, 1.4, 0.3, 0.1, 2.0, 1.6, 0.6)])
    path = quickstart.write_plan_pair(tmp_path / "plans.png", gt, pred, title="room0", size=(200, 160))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (400, 184)  # two 200 x 160 panels under a caption
        pixels = np.asarray(image.convert("RGB"))
    left, right = pixels[24:, :200], pixels[24:, 200:]
    assert not np.array_equal(left, right)  # each panel draws its own layout
    assert all(len(np.unique(p.reshape(-1, 3), axis=0)) > 3 for p in (left, right))  # not blank

    empty = quickstart.write_plan_pair(tmp_path / "empty.png", gt, Layout())  # nothing predicted
    with Image.open(empty) as image:
        blank = np.asarray(image.convert("RGB"))[24:, image.width // 2:]
    assert (blank == 255).all()
