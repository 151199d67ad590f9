import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from spacelm.points import PointCloud, write_ply
from spacelm.scene import Box, Door, Layout, Wall, Window, write_layout
from spacelm.viz import visualize
from spacelm.viz.html import GT_BOX, PRED, css_color, subsample_points, write_html

WALLS = [Wall(0, 0, 0, 4, 0, 0, 2.5, 0.1), Wall(4, 0, 0, 4, 3, 0, 2.5, 0.1),
         Wall(4, 3, 0, 0, 3, 0, 2.5, 0.1), Wall(0, 3, 0, 0, 0, 0, 2.5, 0.1)]
GT = Layout(walls=WALLS, doors=[Door(0, 1.5, 0, 1.0, 0.9, 2.0)],
            windows=[Window(2, 2.0, 3, 1.5, 1.2, 1.0)],
            boxes=[Box("bed", 1.2, 1.0, 0.3, 0.0, 2.0, 1.6, 0.6),
                   Box("lamp", 3.5, 2.5, 0.8, 0.0, 0.3, 0.3, 1.6)])
PRED_LAYOUT = Layout(boxes=[Box("sofa", 1.3, 1.1, 0.3, 0.1, 2.0, 1.5, 0.6)])


def room_points(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xyz = rng.uniform([0, 0, 0], [4, 3, 2.5], size=(n, 3)).astype(np.float32)
    return xyz, rng.integers(0, 256, size=(n, 3), dtype=np.uint8)


def scene_data(text: str) -> dict:
    block = re.search(r'<script type="application/json" id="scene">(.*?)</script>', text, re.DOTALL)
    return json.loads(block.group(1))


def test_page_is_self_contained_with_subsampled_points(tmp_path):
    xyz, rgb = room_points(1000)
    out = write_html(tmp_path / "view.html", points=xyz, rgb=rgb, layout=GT, pred=PRED_LAYOUT,
                     max_points=300)
    text = out.read_text()
    assert not re.search(r"https?://", text)
    assert "<script src" not in text and "<link" not in text
    data = scene_data(text)
    assert data["points"]["count"] == 300
    shown = np.frombuffer(base64.b64decode(data["points"]["xyz"]), "<f4").reshape(-1, 3)
    assert shown.shape == (300, 3)
    # Every shown point is an input point, kept in input order.
    index = [int(np.flatnonzero((xyz == p).all(axis=1))[0]) for p in shown]
    assert index == sorted(index)
    assert list(tmp_path.iterdir()) == [out]  # atomic: no temporary file left behind


def test_gt_and_prediction_have_their_own_colours(tmp_path):
    data = scene_data(write_html(tmp_path / "v.html", layout=GT, pred=PRED_LAYOUT).read_text())
    labels = {(label["text"], label["color"]) for label in data["labels"]}
    assert labels == {("bed", css_color(GT_BOX)), ("lamp", css_color(GT_BOX)), ("sofa", css_color(PRED))}
    colors = np.frombuffer(base64.b64decode(data["lines"]["rgb"]), np.uint8).reshape(-1, 3)
    # 4 walls + 1 door + 1 window quads (4 edges each) and 3 boxes (12 edges), 2 vertices per edge.
    assert len(colors) == data["lines"]["count"] == 2 * (6 * 4 + 3 * 12)
    assert (colors == GT_BOX).all(axis=1).sum() == 2 * 2 * 12
    assert (colors == PRED).all(axis=1).sum() == 2 * 12
    assert [entry["text"] for entry in data["legend"]] == ["ground truth (2 boxes)", "prediction (1 boxes)"]


def test_title_is_escaped_and_output_is_deterministic(tmp_path):
    xyz, _ = room_points(500)
    first = write_html(tmp_path / "a.html", points=xyz, max_points=100, title="<b>scan").read_text()
    second = write_html(tmp_path / "b.html", points=xyz, max_points=100, title="<b>scan").read_text()
    assert first == second
    assert "&lt;b&gt;scan" in first and "<b>scan" not in first
    tricky = Layout(boxes=[Box("</script>__TITLE__", 1, 1, 0.3, 0, 1, 1, 0.6)])
    data = scene_data(write_html(tmp_path / "c.html", layout=tricky, title="__DATA__").read_text())
    assert data["labels"][0]["text"] == "</script>__TITLE__"


def test_subsample_keeps_small_clouds_and_shades_by_height():
    xyz = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2]], float)
    kept, rgb = subsample_points(xyz, max_points=10)
    assert kept.shape == (3, 3)
    assert rgb[:, 0].tolist() == [90, 160, 230]  # grey rises with height when there is no colour


def test_nothing_to_show_raises_but_an_empty_layout_is_fine(tmp_path):
    with pytest.raises(ValueError, match="nothing to show"):
        write_html(tmp_path / "v.html")
    with pytest.raises(ValueError, match="nothing to show"):
        visualize(None, None, out_path=tmp_path / "v.html")
    assert scene_data(write_html(tmp_path / "v.html", layout=Layout()).read_text())["labels"] == []


def test_visualize_reads_files_and_dispatches_on_suffix(tmp_path):
    xyz, rgb = room_points(2000)
    write_ply(tmp_path / "scan.ply", PointCloud(xyz, rgb=rgb))
    write_layout(tmp_path / "gt.txt", GT)
    (tmp_path / "pred.txt").write_text("bbox_0=Bbox(sofa,1.3,1.1,0.3,0.1,2.0,1.5,0.6)\nbbox_1=Bbox(\n")
    with pytest.warns(UserWarning, match="pred.txt"):  # the truncated line is reported, not fatal
        out = visualize(tmp_path / "scan.ply", tmp_path / "gt.txt", tmp_path / "pred.txt",
                        out_path=tmp_path / "view.html")
    data = scene_data(out.read_text())
    assert data["points"]["count"] == 2000
    assert {label["text"] for label in data["labels"]} == {"bed", "lamp", "sofa"}
    with pytest.raises(ValueError, match=r"view\.png"):
        visualize(tmp_path / "scan.ply", tmp_path / "gt.txt", out_path=tmp_path / "view.png")
    with pytest.raises(FileNotFoundError, match="missing.ply"):
        visualize(tmp_path / "missing.ply", tmp_path / "gt.txt", out_path=tmp_path / "view.html")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_page_draws_in_headless_chromium(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    xyz, rgb = room_points(20_000)
    page = write_html(tmp_path / "view.html", points=xyz, rgb=rgb, layout=GT, pred=PRED_LAYOUT)
    shot = tmp_path / "shot.png"
    # WebGL without a GPU runs on SwiftShader, which Chromium wants enabled explicitly.
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
                    "--enable-unsafe-swiftshader", f"--screenshot={shot}", "--window-size=800,600",
                    page.as_uri()], check=True, capture_output=True, timeout=180)
    pixels = np.asarray(image_module.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.shape == (600, 800, 3)
    # Below the legend, WebGL must have drawn the cloud: many pixels off the background, high variance.
    scene = pixels[150:]
    off_background = (np.abs(scene - [32, 35, 41]).sum(axis=-1) > 30).mean()
    assert off_background > 0.05
    assert scene.std() > 10
