import sys

import numpy as np
import pytest

from spacelm.points import PointCloud, write_ply
from spacelm.scene import Box, Layout, Wall, write_layout
from spacelm.viz import visualize
from spacelm.viz.rerun import write_rrd

LAYOUT = Layout(walls=[Wall(0, 0, 0, 4, 0, 0, 2.5, 0.1), Wall(4, 0, 0, 4, 3, 0, 2.5, 0.1)],
                boxes=[Box("bed", 1.2, 1.0, 0.3, 0.5, 2.0, 1.6, 0.6)])


def test_rrd_is_written(tmp_path):
    pytest.importorskip("rerun")
    xyz = np.random.default_rng(0).uniform(0, 3, size=(5000, 3))
    out = write_rrd(tmp_path / "scene.rrd", points=xyz, layout=LAYOUT, pred=LAYOUT)
    data = out.read_bytes()
    assert data[:4] == b"RRF2"  # rerun's file magic
    assert len(data) > 5000 * 12  # at least the float32 positions
    assert list(tmp_path.iterdir()) == [out]


def test_visualize_writes_rrd_for_rrd_suffix(tmp_path):
    pytest.importorskip("rerun")
    write_ply(tmp_path / "scan.ply", PointCloud(np.zeros((10, 3))))
    write_layout(tmp_path / "gt.txt", LAYOUT)
    out = visualize(tmp_path / "scan.ply", tmp_path / "gt.txt", out_path=tmp_path / "scene.rrd")
    assert out.read_bytes()[:4] == b"RRF2"


def test_missing_rerun_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rerun", None)  # makes `import rerun` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "spacelm\[viz\]"'):
        write_rrd(tmp_path / "scene.rrd", layout=LAYOUT)
