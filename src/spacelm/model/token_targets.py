"""Per-token targets for the optional token-supervision loss: which layout elements each encoder cell touches.

SpatialLM trains its encoder only through the LM's answer. A model trained from scratch then meets a
chicken-and-egg problem for doors and windows: the LM has no reason to attend to the cells of a gap
until the encoder marks them, and the encoder gets no gradient to mark them until the LM attends to
them (``docs/training.md``: walls reach F1 1.0 while doors stay at chance over 20,000 rooms). A small
linear head on the encoder tokens, trained to say which labels (``wall``, ``door``, ``window`` or a box
category) each token's cell touches, gives the encoder that signal directly. It is a training loss only:
the head is not used by ``generate``, and the architecture the LM sees is SpatialLM's.

Two pure steps, one per side of the collator:

- ``label_boxes`` (data side, numpy): a layout -> axis-aligned boxes in voxel units of the processor's
  grid, one row per element whose label is asked for;
- ``token_targets`` (model side, torch): the encoder's token cells x those boxes -> a multi-hot
  ``(T, C)`` matrix, the label of a cell being 1 when its voxel range overlaps a box of that label.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from spacelm.scene.geometry import box_corners, opening_quads, wall_quads
from spacelm.scene.layout import Layout

STRUCTURE_LABELS = ("wall", "door", "window")  # any other label names a box category


def label_boxes(layout: Layout, labels: Sequence[str], origin: np.ndarray, voxel_size: float,
                margin: float = 1.0) -> np.ndarray:
    """``(K, 7) float32`` rows ``[label index, x0, y0, z0, x1, y1, z1]``: each wall, door, window and box
    of ``layout`` whose label is in ``labels``, as its axis-aligned bounds in voxel units of a grid whose
    voxel 0 starts at ``origin`` (the processor's positive shift), grown by ``margin`` voxels on every
    side so that a wall's zero-thickness plane still overlaps the cells on both sides of it.

    >>> from spacelm.scene.entities import Wall
    >>> label_boxes(Layout(walls=[Wall(0, 0, 0, 2, 0, 0, 1, 0)]), ["wall"], np.zeros(3), 0.5).tolist()
    [[0.0, -1.0, -1.0, -1.0, 5.0, 1.0, 3.0]]
    """
    index = {name: i for i, name in enumerate(labels)}
    corners, rows = [], []  # (n, m, 3) metres per group, label index per element
    for kind in STRUCTURE_LABELS:
        if kind not in index:
            continue
        quads = wall_quads(layout) if kind == "wall" else opening_quads(layout, kind)
        corners.append(quads)
        rows += [index[kind]] * len(quads)
    wanted = [i for i, box in enumerate(layout.boxes) if box.label in index]
    if wanted:
        corners.append(box_corners(layout.box_array()[wanted]))
        rows += [index[layout.boxes[i].label] for i in wanted]
    if not rows:
        return np.zeros((0, 7), dtype=np.float32)
    lows = np.concatenate([c.min(axis=1) for c in corners])  # (K, 3) metres
    highs = np.concatenate([c.max(axis=1) for c in corners])
    origin = np.asarray(origin, dtype=np.float64)
    lows = (lows - origin) / voxel_size - margin
    highs = (highs - origin) / voxel_size + margin
    return np.concatenate([np.array(rows, dtype=np.float64)[:, None], lows, highs], axis=1).astype(np.float32)


def token_targets(token_coords: Tensor, token_stride: int, boxes: Tensor, num_labels: int) -> Tensor:
    """``(T, num_labels) float`` multi-hot: 1 where token ``t``'s cell overlaps a box of that label.

    ``token_coords``: ``(T, 4)`` int64 ``[batch, x, y, z]`` in token cells (the encoder's output: cell ``c``
    holds voxels ``[c * stride, (c + 1) * stride)``). ``boxes``: ``(K, 8)`` rows ``[batch, label index, x0,
    y0, z0, x1, y1, z1]`` in voxel units (``label_boxes`` plus the collator's batch column).

    >>> cells = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]])
    >>> token_targets(cells, 8, torch.tensor([[0., 1, 9, 0, 0, 12, 4, 4]]), 2).tolist()
    [[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    """
    targets = torch.zeros(len(token_coords), num_labels, device=token_coords.device)
    if len(boxes) == 0:
        return targets
    boxes = boxes.to(token_coords.device, torch.float32)
    low = token_coords[:, None, 1:].float() * token_stride  # (T, 1, 3) voxel range of each cell
    overlap = ((low < boxes[None, :, 5:8]) & (low + token_stride > boxes[None, :, 2:5])).all(dim=2)  # (T, K)
    overlap &= token_coords[:, None, 0] == boxes[None, :, 0].long()
    labels = torch.nn.functional.one_hot(boxes[:, 1].long(), num_labels).float()  # (K, C)
    return (overlap.float() @ labels).clamp_(max=1.0)
