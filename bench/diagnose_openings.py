"""Why doors and windows miss: a breakdown of a trained model's opening errors on held-out rooms.

For every ground-truth door (window) of each room, the predicted opening of the same kind with the best
in-plane IoU is taken (SpatialLM's ``plane_iou``: parallel host walls, centre within 20 cm of the GT wall
plane), and the reason a GT opening has no match at IoU 0.25 is classified in order:

- ``count``: the prediction holds no opening of that kind at all;
- ``wall``: none of the predicted openings is in the GT opening's wall plane (wrong host wall or its
  centre more than 20 cm off the plane);
- ``along``: in the plane, but the best IoU is under 0.25 (position along the wall, z or size off);
- ``hit``: IoU >= 0.25 with some predicted opening (no one-to-one matching: a diagnosis, not the metric).

It also prints the median absolute errors of the in-plane candidates (along-wall centre, z, width,
height) and the predicted/GT counts, so one sees which numbers the model has not learned.

    python bench/diagnose_openings.py out/quickstart/model/stage2 out/quickstart/data/val --rooms 50
    python bench/diagnose_openings.py out/quickstart/model/stage2 out/quickstart/data/train --split train

The second scores training rooms as stored: a model that memorised its rooms' openings instead of reading
them hits far more there than on held-out rooms.
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np
import torch

from spacelm.predict import PredictConfig, load_model, predict_clouds
from spacelm.scene.geometry import MIN_WALL_LENGTH, opening_quads, plane_iou
from spacelm.scene.language import TASKS
from spacelm.scene.metrics import evaluate_scenes
from spacelm.train.data import LayoutDataset
from spacelm.train.sft import f1_by_class


def _kept(layout, kind: str) -> list:
    """The openings ``opening_quads`` keeps, in its order: host wall named and long enough."""
    walls = layout.walls
    return [o for o in getattr(layout, kind + "s") if 0 <= o.wall_id < len(walls)
            and np.hypot(walls[o.wall_id].bx - walls[o.wall_id].ax,
                         walls[o.wall_id].by - walls[o.wall_id].ay) >= MIN_WALL_LENGTH]


def opening_errors(gt, pred, kind: str) -> tuple[list[str], list[tuple[float, float, float, float]]]:
    """Per GT opening of ``kind``: its outcome (see module docstring) and, when a predicted one lies in
    its plane, the absolute errors ``(along, z, width, height)`` of the best-IoU one among those."""
    gt_quads, pred_quads = opening_quads(gt, kind), opening_quads(pred, kind)
    gt_open, pred_open = _kept(gt, kind), _kept(pred, kind)
    outcomes, errors = [], []
    if not len(gt_quads):
        return outcomes, errors
    if not len(pred_quads):
        return ["count"] * len(gt_quads), errors
    iou = plane_iou(gt_quads, pred_quads)  # (N, M)
    # In the plane: host walls parallel within 5 degrees and the centre within 20 cm of the GT plane,
    # plane_iou's own tests, taken from the quads.
    centres = pred_quads.mean(axis=1)  # (M, 3)
    pred_dir = pred_quads[:, 1, :2] - pred_quads[:, 0, :2]
    pred_dir /= np.linalg.norm(pred_dir, axis=1, keepdims=True)  # (M, 2)
    for n, quad in enumerate(gt_quads):
        direction = quad[1, :2] - quad[0, :2]
        direction /= np.linalg.norm(direction)
        normal = np.array([-direction[1], direction[0]])
        parallel = np.abs(direction[0] * pred_dir[:, 1] - direction[1] * pred_dir[:, 0]) <= np.sin(np.radians(5))
        offset = np.abs((centres[:, :2] - quad[0, :2]) @ normal)
        in_plane = parallel & (offset <= 0.2)
        if iou[n].max() >= 0.25:
            outcomes.append("hit")
        elif in_plane.any():
            outcomes.append("along")
        else:
            outcomes.append("wall")
        if in_plane.any():
            m = int(np.argmax(np.where(in_plane, iou[n], -1.0)))
            g, p = gt_open[n], pred_open[m]
            along = abs((centres[m, :2] - quad.mean(axis=0)[:2]) @ direction)
            errors.append((along, abs(p.z - g.z), abs(p.width - g.width), abs(p.height - g.height)))
    return outcomes, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a trained model folder (e.g. out/quickstart/model/stage2)")
    parser.add_argument("rooms_dir", help="a dataset folder (e.g. out/quickstart/data/val; with --split train, "
                                          "out/quickstart/data/train)")
    parser.add_argument("--split", default="val", choices=["train", "val"],
                        help="rows of split.csv to score: 'train' on the training folder tells reading from "
                             "memorising (the rooms as stored, no augmentation)")
    parser.add_argument("--task", default="all", choices=[t for t in TASKS if t != "object"],
                        help="the request the model was trained on")
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, processor = load_model(args.model, "cpu")
    rooms = LayoutDataset([args.rooms_dir], processor, split=args.split, task=args.task)
    n = min(args.rooms, len(rooms))
    tic = time.perf_counter()
    batch = [rooms.room(i) for i in range(n)]
    preds = []
    for begin in range(0, n, 10):
        clouds = [cloud for _, cloud, _ in batch[begin:begin + 10]]
        preds += predict_clouds(model, processor, clouds, PredictConfig(task=args.task, do_sample=False,
                                                                       max_new_tokens=1024))
    print(f"{n} rooms predicted in {time.perf_counter() - tic:.0f} s")
    f1 = f1_by_class(evaluate_scenes([(sid, gt, p.layout) for (sid, _, gt), p in zip(batch, preds)]))
    print("F1 (the metric): " + ", ".join(f"{k} {f1[k][0.5 if k == 'wall' else 0.25]:.3f}"
                                          for k in ("wall", "door", "window", "objects") if k in f1))
    for kind in ("door", "window"):
        outcomes, errors, counts = collections.Counter(), [], collections.Counter()
        for (_, _, gt), pred in zip(batch, preds):
            o, e = opening_errors(gt, pred.layout, kind)
            outcomes.update(o)
            errors += e
            counts[(len(getattr(gt, kind + "s")), len(getattr(pred.layout, kind + "s")))] += 1
        total = sum(outcomes.values())
        print(f"\n{kind}s: {total} in the ground truth; "
              + ", ".join(f"{k} {outcomes[k]} ({outcomes[k] / max(total, 1):.0%})"
                          for k in ("hit", "along", "wall", "count")))
        if errors:
            med = np.median(np.array(errors), axis=0)
            print(f"  in-plane candidates ({len(errors)}): median |error| along {med[0]:.2f} m, z {med[1]:.2f} m, "
                  f"width {med[2]:.2f} m, height {med[3]:.2f} m")
        print("  rooms by (GT count, predicted count): "
              + ", ".join(f"{g}->{p}: {c}" for (g, p), c in sorted(counts.items())))


if __name__ == "__main__":
    main()
