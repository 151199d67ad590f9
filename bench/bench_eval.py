"""Time ``evaluate_scenes`` on random scenes, correct geometry and SpatialLM-compatible.

Each GT scene is a rectangular room (4 walls, 1-2 doors, 0-3 windows) with ``--boxes`` boxes of 8
classes at random yaw; its prediction keeps about 85 % of the entities with jitter (5-10 cm,
~0.1 rad, ~10 % size) and adds about 15 % spurious boxes. Prints milliseconds per scene (best of
``--repeat`` full runs, after a warm-up that pays the scipy import) next to the figure quoted for
SpatialLM's ``eval.py`` on this class of machine.

    PYTHONPATH=src .venv/bin/python bench/bench_eval.py --scenes 100 --boxes 30 --seed 0
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from spacelm.scene import Box, Door, Layout, Wall, Window
from spacelm.scene.metrics import evaluate_scenes

CLASSES = ("bed", "chair", "sofa", "cabinet", "dining_table", "nightstand", "painting", "carpet")
SPATIALLM_MS_PER_SCENE = 105.0  # eval.py, per scene, this class of machine (78 % in the box IoU)
SPATIALLM_BOX_IOU_SHARE = 0.78


def random_room(rng: np.random.Generator, n_boxes: int) -> Layout:
    """A rectangular room with openings and ``n_boxes`` boxes inside it."""
    w, d, h = rng.uniform(3, 8), rng.uniform(3, 8), rng.uniform(2.4, 3.0)
    corners = [(0, 0), (w, 0), (w, d), (0, d)]
    walls = [Wall(*corners[k], 0.0, *corners[(k + 1) % 4], 0.0, h, 0.0) for k in range(4)]

    def on_wall(k, z, width, height, kind):
        (ax, ay), (bx, by) = corners[k], corners[(k + 1) % 4]
        t = rng.uniform(0.2, 0.8)
        return kind(k, ax + t * (bx - ax), ay + t * (by - ay), z, width, height)

    doors = [on_wall(rng.integers(4), 1.0, 0.9, 2.0, Door) for _ in range(rng.integers(1, 3))]
    windows = [on_wall(rng.integers(4), 1.5, 1.2, 1.2, Window) for _ in range(rng.integers(0, 4))]
    boxes = [random_box(rng, w, d) for _ in range(n_boxes)]
    return Layout(walls, doors, windows, boxes)


def random_box(rng: np.random.Generator, w: float, d: float) -> Box:
    sx, sy, sz = rng.uniform(0.3, 2.0, 3)
    return Box(str(rng.choice(CLASSES)), rng.uniform(0, w), rng.uniform(0, d), sz / 2,
               rng.uniform(-np.pi, np.pi), sx, sy, sz)


def perturb(rng: np.random.Generator, gt: Layout, keep: float = 0.85, extra: float = 0.15) -> Layout:
    """A plausible prediction: jittered survivors of ``gt`` plus spurious boxes."""
    def kept(entities):
        return [e for e in entities if rng.random() < keep]

    def jitter(n, sigma):
        return rng.normal(0, sigma, n)

    walls = [Wall(*(np.r_[w.ax, w.ay, w.az, w.bx, w.by, w.bz] + jitter(6, 0.05)), w.height, 0.0)
             for w in gt.walls]  # walls all kept so door/window references stay valid
    doors = [Door(o.wall_id, *(np.r_[o.x, o.y, o.z] + jitter(3, 0.05)), o.width, o.height)
             for o in kept(gt.doors)]
    windows = [Window(o.wall_id, *(np.r_[o.x, o.y, o.z] + jitter(3, 0.05)), o.width, o.height)
               for o in kept(gt.windows)]
    boxes = [Box(b.label, *(np.r_[b.x, b.y, b.z] + jitter(3, 0.1)), b.angle_z + jitter(1, 0.1)[0],
                 *(np.r_[b.scale_x, b.scale_y, b.scale_z] * (1 + jitter(3, 0.1))))
             for b in kept(gt.boxes)]
    w, d = gt.walls[1].ax, gt.walls[2].ay
    boxes += [random_box(rng, w, d) for _ in range(rng.binomial(len(gt.boxes), extra))]
    return Layout(walls, doors, windows, boxes)


def best_ms_per_scene(scenes, repeat: int, **kwargs) -> tuple[float, object]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = evaluate_scenes(scenes, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times) / len(scenes) * 1e3, result


def mean_score(result, threshold: float) -> float:
    return float(np.nanmean([result.scores[c][threshold] for c in result.classes]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--boxes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    gts = [random_room(rng, args.boxes) for _ in range(args.scenes)]
    scenes = [(f"scene_{k:04d}", gt, perturb(rng, gt)) for k, gt in enumerate(gts)]
    n_gt = np.mean([gt.num_entities for _, gt, _ in scenes])
    n_pred = np.mean([pred.num_entities for _, _, pred in scenes])
    print(f"{args.scenes} scenes, {args.boxes} boxes of {len(CLASSES)} classes each, seed {args.seed}; "
          f"entities per scene: {n_gt:.1f} GT, {n_pred:.1f} predicted")

    evaluate_scenes(scenes[:2])  # warm-up: imports scipy.optimize
    for label, compat in (("default", False), ("compat ", True)):
        ms, result = best_ms_per_scene(scenes, args.repeat, compat=compat)
        print(f"evaluate_scenes {label}: {ms:6.2f} ms/scene  "
              f"(mean class F1 @0.25 {mean_score(result, 0.25):.3f}, @0.5 {mean_score(result, 0.5):.3f})  "
              f"speed-up vs SpatialLM eval.py: {SPATIALLM_MS_PER_SCENE / ms:.0f}x")
    print(f"SpatialLM eval.py (quoted): about {SPATIALLM_MS_PER_SCENE:.0f} ms/scene, "
          f"{SPATIALLM_BOX_IOU_SHARE:.0%} of it in the box IoU")


if __name__ == "__main__":
    main()
