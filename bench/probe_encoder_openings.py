"""Does the point encoder see doors and windows? A linear probe on its tokens.

Every encoder token is an occupied cell of the token grid (80 cm in the quickstart). Among the cells that
touch a wall, some also touch a door (or window) opening. A logistic regression on the token features,
fitted on the first rooms and scored on the rest, tells whether the features separate opening cells from
the other wall cells: ROC AUC 0.5 is chance, 1.0 perfect. The same probe on a randomly initialised encoder
of the same shape and on the cell's voxel count alone says what the training added. If a trained encoder
separates openings well while the model still cannot place them, the language model is what fails; if it
does not, the encoder (or what the cloud shows) is.

    python bench/probe_encoder_openings.py out/quickstart/model/stage2 out/quickstart/data/train --rooms 300
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import rankdata

from spacelm.model.point_encoder import PointEncoder
from spacelm.model.token_targets import STRUCTURE_LABELS, label_boxes, token_targets
from spacelm.predict import load_model
from spacelm.train.data import LayoutDataset

WALL_MARGIN = 0.15  # metres: a cell "touches" a wall or opening within this distance of it


def cell_labels(cells: np.ndarray, layout, offset: np.ndarray, voxel_size: float,
                token_stride: int) -> dict[str, np.ndarray]:
    """``(T,) bool`` per kind for the token cells ``cells (T, 3)``: touches a wall, a door, a window (the
    token-supervision targets, ``spacelm.model.token_targets``, with a margin of ``WALL_MARGIN``)."""
    boxes = label_boxes(layout, STRUCTURE_LABELS, offset, voxel_size, margin=WALL_MARGIN / voxel_size)
    boxes = torch.as_tensor(np.pad(boxes, ((0, 0), (1, 0))))  # sample column 0: one room
    cells = torch.as_tensor(np.pad(cells, ((0, 0), (1, 0)))).long()
    targets = token_targets(cells, token_stride, boxes, len(STRUCTURE_LABELS)).numpy() > 0
    return {kind: targets[:, i] for i, kind in enumerate(STRUCTURE_LABELS)}


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half); nan when
    the labels hold only one class (e.g. rooms without windows)."""
    ranks = rankdata(scores)
    pos = labels.sum()
    if pos == 0 or pos == len(labels):
        return float("nan")
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * (len(labels) - pos)))


def fit_probe(x: np.ndarray, y: np.ndarray, steps: int = 500) -> torch.nn.Linear:
    """Logistic regression, standardised features, class-balanced loss, L2 1e-3 (LBFGS)."""
    x_t, y_t = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    probe = torch.nn.Linear(x.shape[1], 1)
    weight = torch.tensor(float((1 - y).sum() / max(y.sum(), 1)))
    optimiser = torch.optim.LBFGS(probe.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(probe(x_t)[:, 0], y_t, pos_weight=weight)
        loss = loss + 1e-3 * probe.weight.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a trained model folder (e.g. out/quickstart/model/stage2)")
    parser.add_argument("rooms", help="a folder of rooms with layouts (e.g. out/quickstart/data/train)")
    parser.add_argument("--rooms", dest="num_rooms", type=int, default=300)
    parser.add_argument("--split", default="train")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model, processor = load_model(args.model, "cpu")
    trained = model.point_encoder.eval()
    random_encoder = PointEncoder(trained.config).eval()
    cfg = trained.config
    voxel_size = 32.0 / cfg.num_bins
    data = LayoutDataset([args.rooms], processor, split=args.split)
    features = {"trained": [], "random": [], "voxel count": []}
    labels = {"wall": [], "door": [], "window": []}
    room_of = []
    with torch.no_grad():
        for i in range(min(args.num_rooms, len(data))):
            _, cloud, layout = data.room(i)
            inputs = processor.preprocess_points(cloud.xyz, cloud.rgb)
            coords = torch.cat([torch.zeros(len(inputs.coords), 1, dtype=torch.long),
                                torch.as_tensor(inputs.coords).long()], dim=1)
            feats = torch.as_tensor(inputs.features)
            out = trained(coords, feats)
            cells = out.coords[:, 1:].numpy()
            features["trained"].append(out.features.numpy())
            features["random"].append(random_encoder(coords, feats).features.numpy())
            token_of_voxel = coords[:, 1:] // cfg.token_stride
            # np.unique's rows are sorted x, then y, then z: the encoder's token order
            rows, count = np.unique(token_of_voxel.numpy(), axis=0, return_counts=True)
            assert (rows == cells).all()
            features["voxel count"].append(np.stack([count, np.log1p(count)], axis=1))
            for kind, mask in cell_labels(cells, layout, inputs.offset, voxel_size, cfg.token_stride).items():
                labels[kind].append(mask)
            room_of.append(np.full(len(cells), i))
    room_of = np.concatenate(room_of)
    labels = {k: np.concatenate(v) for k, v in labels.items()}
    train = room_of < int(0.7 * room_of.max())
    wall = labels["wall"]
    print(f"{room_of.max() + 1} rooms, {len(room_of)} tokens, {wall.sum()} touch a wall; of those "
          f"{labels['door'][wall].mean():.1%} touch a door, {labels['window'][wall].mean():.1%} a window. "
          "Probe fitted on 70% of the rooms, ROC AUC on the rest (wall cells only):")
    print(f"{'features':<12} {'door':>6} {'window':>7}")
    for name, rows in features.items():
        x = np.concatenate(rows)
        mean, std = x[train & wall].mean(0), x[train & wall].std(0) + 1e-6
        x = (x - mean) / std
        aucs = []
        for kind in ("door", "window"):
            y = labels[kind]
            probe = fit_probe(x[train & wall], y[train & wall])
            with torch.no_grad():
                scores = probe(torch.as_tensor(x[~train & wall], dtype=torch.float32))[:, 0].numpy()
            aucs.append(roc_auc(scores, y[~train & wall]))
        print(f"{name:<12} {aucs[0]:>6.3f} {aucs[1]:>7.3f}")


if __name__ == "__main__":
    main()
