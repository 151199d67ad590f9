"""Which wall numbers a trained model gets wrong: errors of the predicted walls on held-out rooms.

SpatialLM's wall F1 matches walls by the IoU of their vertical quads, so a wall can miss by its length
(an endpoint) or by its height. For each room this prints nothing; over all rooms it prints the median
and 90th-percentile absolute error of:

- the walls' bounding box, near corner (``min x``, ``min y``) and far corner (``max x``, ``max y``): the
  cloud is shifted so that its minimum is the origin, so the near corner is nearly given, while the far
  corner has to be read from the far walls' points;
- each GT wall's best-matching predicted wall (smallest largest endpoint error, either direction):
  its length and its height;

and the (GT, predicted) wall counts. A model whose far corners err far more than its near ones is not
reading where in its token cell a far wall lies.

    python bench/diagnose_walls.py out/quickstart/model/stage2 out/quickstart/data/val --rooms 50
"""

from __future__ import annotations

import argparse
import collections

import numpy as np
import torch

from spacelm.predict import PredictConfig, load_model, predict_clouds
from spacelm.train.data import LayoutDataset


def wall_errors(gt, pred) -> dict[str, list[float]]:
    """Absolute errors (metres) of ``pred``'s walls against ``gt``'s (both ``Layout``s with walls)."""
    g, p = gt.wall_array(), pred.wall_array()  # (W, 8): ax ay az bx by bz height thickness
    out: dict[str, list[float]] = collections.defaultdict(list)
    for axis, name in ((0, "x"), (1, "y")):
        g_axis, p_axis = g[:, [axis, axis + 3]], p[:, [axis, axis + 3]]
        out[f"min {name}"].append(abs(p_axis.min() - g_axis.min()))
        out[f"max {name}"].append(abs(p_axis.max() - g_axis.max()))
    ends = p[:, [0, 1, 3, 4]]  # (P, 4)
    both = np.concatenate([ends, ends[:, [2, 3, 0, 1]]])  # (2P, 4): each wall in both directions
    length = np.hypot(ends[:, 2] - ends[:, 0], ends[:, 3] - ends[:, 1])  # (P,)
    for wall in g:
        best = np.abs(both - wall[[0, 1, 3, 4]]).max(axis=1).argmin() % len(p)
        out["wall length"].append(abs(length[best] - np.hypot(wall[3] - wall[0], wall[4] - wall[1])))
        out["wall height"].append(abs(p[best, 6] - wall[6]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a trained model folder (e.g. out/quickstart/model/stage2)")
    parser.add_argument("rooms_dir", help="a dataset folder (e.g. out/quickstart/data/val)")
    parser.add_argument("--split", default="val", choices=["train", "val"])
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, processor = load_model(args.model, "cpu")
    dataset = LayoutDataset([args.rooms_dir], processor, split=args.split, task="arch")
    rooms = [dataset.room(i) for i in range(min(args.rooms, len(dataset)))]
    predictions = predict_clouds(model, processor, [cloud for _, cloud, _ in rooms],
                                 PredictConfig(task="arch", do_sample=False, max_new_tokens=1024))
    counts = collections.Counter((len(gt.walls), len(p.layout.walls)) for (_, _, gt), p in zip(rooms, predictions))
    errors: dict[str, list[float]] = collections.defaultdict(list)
    for (_, _, gt), p in zip(rooms, predictions):
        if gt.walls and p.layout.walls:
            for key, values in wall_errors(gt, p.layout).items():
                errors[key].extend(values)
    print(f"{len(rooms)} {args.split} rooms; (GT, predicted) wall counts: "
          + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    print(f"{'error (m)':12s} {'median':>7s} {'p90':>7s}")
    for key, values in errors.items():
        print(f"{key:12s} {np.median(values):7.3f} {np.percentile(values, 90):7.3f}")


if __name__ == "__main__":
    main()
