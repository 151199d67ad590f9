"""The viewer content as a rerun recording (.rrd), for large clouds and rerun's desktop or web viewer.

Needs the optional ``rerun-sdk`` (``pip install "spacelm[viz]"``), imported only when a recording is
written. The world is z up, metres (``ViewCoordinates.RIGHT_HAND_Z_UP``). Entities:

- ``world/points``: the cloud with its colours;
- ``world/{gt,pred}/boxes``: ``Boxes3D`` (centre, half sizes, yaw as a quaternion about +z, labels);
- ``world/{gt,pred}/{walls,doors,windows}``: closed line strips around each quad.

Colours match ``spacelm.viz.html``: GT boxes green and predictions red.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from spacelm.io import atomic_write_bytes
from spacelm.scene.geometry import opening_quads, wall_quads
from spacelm.scene.layout import Layout
from spacelm.viz.html import DOOR, GT_BOX, PRED, WALL, WINDOW, subsample_points

POINT_RADIUS = 0.01  # metres


def _import_rerun():
    try:
        import rerun
    except ImportError as error:
        raise ImportError('writing .rrd files needs rerun-sdk: pip install "spacelm[viz]"') from error
    return rerun


def write_rrd(path: str | os.PathLike, *, points=None, rgb=None, layout: Layout | None = None,
              pred: Layout | None = None, max_points: int | None = None,
              title: str = "spacelm viewer") -> Path:
    """Write a rerun recording of a cloud ``(N, 3)`` metres (``rgb`` optional), a layout and a prediction.

    Arguments as ``spacelm.viz.html.write_html``, except that ``max_points`` defaults to None, which
    keeps every point: rerun handles millions (1M points + 30 boxes is about 16 MB). The file is
    written atomically; returns its path.
    """
    rr = _import_rerun()
    if points is None and layout is None and pred is None:
        raise ValueError("nothing to show: give points, a layout or a prediction")
    recording = rr.RecordingStream("spacelm")
    stream = recording.binary_stream()
    recording.send_recording_name(title)
    recording.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    if points is not None:
        xyz, colors = subsample_points(points, rgb, max_points)
        recording.log("world/points", rr.Points3D(xyz, colors=colors, radii=POINT_RADIUS), static=True)
    for name, lay, predicted in (("gt", layout, False), ("pred", pred, True)):
        if lay is not None:
            _log_layout(rr, recording, f"world/{name}", lay, predicted)
    atomic_write_bytes(path, stream.read(flush=True) or b"")
    return Path(path)


def _log_layout(rr, recording, root: str, layout: Layout, predicted: bool) -> None:
    """Boxes as ``Boxes3D`` and walls, doors and windows as closed line strips under ``root``."""
    for kind, quads, color in (("walls", wall_quads(layout), WALL),
                               ("doors", opening_quads(layout, "door"), DOOR),
                               ("windows", opening_quads(layout, "window"), WINDOW)):
        if len(quads):
            strips = np.concatenate([quads, quads[:, :1]], axis=1)  # (K, 5, 3): back to the start
            recording.log(f"{root}/{kind}", rr.LineStrips3D(strips, colors=PRED if predicted else color),
                          static=True)
    boxes = layout.box_array()
    if len(boxes):
        half_yaw = boxes[:, 3] / 2
        quaternions = np.column_stack([np.zeros((len(boxes), 2)), np.sin(half_yaw), np.cos(half_yaw)])
        recording.log(f"{root}/boxes", rr.Boxes3D(
            centers=boxes[:, :3], half_sizes=boxes[:, 4:7] / 2, quaternions=quaternions,  # xyzw
            colors=PRED if predicted else GT_BOX, labels=[b.label for b in layout.boxes]), static=True)
