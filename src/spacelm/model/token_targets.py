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

``token_extents`` is a second, label-free target (``token_extent_weight``): where in its cell each token's
voxels lie. The label loss alone teaches the encoder what a cell holds and wipes out of the features where
in its 80 cm the cell's points are, which a wall endpoint at 5 cm needs (``docs/training.md``: with the
label head the far walls land on whole metres); regressing the voxels' extent within the cell keeps it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from spacelm.scene.geometry import box_corners, opening_quads, wall_quads
from spacelm.scene.layout import Layout

STRUCTURE_LABELS = ("wall", "door", "window")  # any other label names a box category
EXTENT_OUTPUTS = 6  # token_extents' columns: per axis the lowest and highest voxel in the cell


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


def token_extents(voxel_coords: Tensor, token_coords: Tensor, token_stride: int) -> Tensor:
    """``(T, 6) float``: per axis, the lowest and the highest voxel of each token's cell, as the voxel
    centre's fraction of the cell (``(offset + 0.5) / token_stride``, in ``(0, 1)``): ``[x_lo, y_lo, z_lo,
    x_hi, y_hi, z_hi]``.

    ``voxel_coords``: ``(N, 4)`` int64 ``[batch, x, y, z]``, the encoder's input; ``token_coords``: ``(T, 4)``
    its output cells (``voxel // token_stride``, each occupied cell once).

    >>> voxels = torch.tensor([[0, 1, 0, 3], [0, 2, 3, 3], [0, 5, 0, 0]])
    >>> token_extents(voxels, torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0]]), 4).mul(8).tolist()
    [[3.0, 1.0, 7.0, 5.0, 7.0, 7.0], [3.0, 1.0, 1.0, 3.0, 1.0, 1.0]]
    """
    voxel_coords, token_coords = voxel_coords.long(), token_coords.long().to(voxel_coords.device)
    cells = torch.cat([voxel_coords[:, :1], torch.div(voxel_coords[:, 1:], token_stride, rounding_mode="floor")],
                      dim=1)  # (N, 4)
    offsets = ((voxel_coords[:, 1:] - cells[:, 1:] * token_stride).float() + 0.5) / token_stride  # (N, 3)
    span = int(torch.cat([cells, token_coords]).max()) + 1

    def keys(c: Tensor) -> Tensor:  # one int64 per (batch, x, y, z) cell
        return ((c[:, 0] * span + c[:, 1]) * span + c[:, 2]) * span + c[:, 3]

    token_keys = keys(token_coords)
    order = torch.argsort(token_keys)
    voxel_keys = keys(cells)
    position = torch.searchsorted(token_keys[order], voxel_keys).clamp_(max=len(order) - 1)
    if not torch.equal(token_keys[order][position], voxel_keys):
        raise ValueError("token_coords miss cells of voxel_coords: pass the encoder's own input and output")
    index = order[position][:, None].expand(-1, 3)  # (N, 3) each voxel's token
    low = offsets.new_ones(len(token_coords), 3).scatter_reduce_(0, index, offsets, "amin")
    high = offsets.new_zeros(len(token_coords), 3).scatter_reduce_(0, index, offsets, "amax")
    return torch.cat([low, high], dim=1)
