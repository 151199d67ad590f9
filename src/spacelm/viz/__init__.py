"""Viewers for a point cloud with its layout and a prediction: offline HTML, or a rerun recording.

- ``html``: ``write_html``, a self-contained WebGL page (no network needed to view it).
- ``rerun``: ``write_rrd``, the same content for rerun (optional ``rerun-sdk``).
- ``visualize``: files in, viewer out, chosen by the output suffix (the ``spacelm viz`` command).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from spacelm.errors import ArgumentError
from spacelm.points import read_points
from spacelm.scene.language import read_layout
from spacelm.viz.html import write_html
from spacelm.viz.rerun import write_rrd

WRITERS = {".html": write_html, ".rrd": write_rrd}


def visualize(points_path: str | os.PathLike | None, layout_path: str | os.PathLike | None,
              pred_path: str | os.PathLike | None = None, *, out_path: str | os.PathLike) -> Path:
    """Read a cloud (.ply, .npy or .bin), a GT layout and a predicted one; write ``out_path``.

    ``out_path`` ends in ``.html`` (``write_html``, at most 200,000 points) or ``.rrd``
    (``write_rrd``, every point). Any input may be None, but not all. The GT layout is read strictly;
    a prediction leniently (model output may be truncated), with a warning per problem. Read errors
    name the file.
    """
    inputs = [p for p in (points_path, layout_path, pred_path) if p is not None]
    if not inputs:
        raise ArgumentError("nothing to show: give a point cloud, a layout or a prediction")
    out_path = Path(out_path)
    writer = WRITERS.get(out_path.suffix.lower())
    if writer is None:
        raise ArgumentError(f"{out_path}: unknown viewer format {out_path.suffix!r}; "
                            f"use one of {', '.join(WRITERS)}")
    cloud = None if points_path is None else read_points(points_path)
    layout = None if layout_path is None else read_layout(layout_path).layout
    pred = None
    if pred_path is not None:
        result = read_layout(pred_path, strict=False)
        for diagnostic in result.diagnostics:
            warnings.warn(f"{pred_path}:{diagnostic}", stacklevel=2)
        pred = result.layout
    return writer(out_path, points=None if cloud is None else cloud.xyz,
                  rgb=None if cloud is None else cloud.rgb, layout=layout, pred=pred,
                  title=Path(inputs[0]).stem)
