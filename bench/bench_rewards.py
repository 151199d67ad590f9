"""Physics reward throughput (layouts/s) for 12- and 30-object layouts, one at a time and batched.

Each task is a random rectangular room with N objects (random sizes, a few relations and facings,
some objects on others); each layout puts the objects at random positions and yaws, so collisions,
out-of-bounds objects, floating and broken relations all occur. Three paths are timed:

- ``check_layouts`` on one ``(N, 7)`` layout per call (the one-at-a-time cost);
- ``check_layouts`` on a ``(B, N, 7)`` batch (one GRPO group or a whole rollout batch per call);
- ``PhysicsReward`` on completion text (parse + batch per task), the cost a trainer pays.

MetaSpatial's pure-Python checks take about 6 ms per 12-object layout (~160 layouts/s); the target
is 100x that. Render timing is not included.

    PYTHONPATH=src .venv/bin/python bench/bench_rewards.py --layouts 2000 --seed 0
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import numpy as np

from spacelm.arrange.physics import check_layouts
from spacelm.arrange.rewards import PhysicsReward
from spacelm.arrange.task import DIRECTIONAL, WALLS, task_from_dict

METASPATIAL_LAYOUTS_PER_S = 160.0


def random_task(rng: np.random.Generator, n: int):
    """A room with ``n`` objects; about a third carry a relation, some a facing."""
    objects = []
    for i in range(n):
        obj = {"id": f"object_{i}", "size": rng.uniform(0.3, 1.5, 3).round(2).tolist(),
               "on_floor": bool(rng.random() < 0.8), "facing": None, "relations": []}
        kind = rng.integers(4)
        if i and kind == 0:
            obj["relations"].append({"type": str(rng.choice(DIRECTIONAL)), "adjacent": False,
                                     "target": f"object_{rng.integers(i)}"})
        elif i and kind == 1 and not obj["on_floor"]:
            obj["relations"].append({"type": "on", "target": f"object_{rng.integers(i)}",
                                     "adjacent": True})
        elif kind == 2:
            obj["relations"].append({"type": "against wall", "target": str(rng.choice(WALLS)),
                                     "adjacent": True})
        if rng.random() < 0.3:
            obj["facing"] = str(rng.choice(WALLS))
        objects.append(obj)
    room = {"length": float(rng.uniform(4, 8)), "width": float(rng.uniform(4, 8)), "height": 3.0}
    return task_from_dict({"id": f"room_{n}", "room": room, "preference": "", "objects": objects})


def random_layouts(rng: np.random.Generator, task, count: int) -> np.ndarray:
    """``(count, N, 7)`` random layouts of ``task``."""
    size = np.array([o.size for o in task.objects])
    n = len(size)
    xy = rng.uniform(0, 1, (count, n, 2)) * [task.room.length, task.room.width]
    z = size[:, 2] / 2 + rng.choice([0.0, 0.0, 0.0, 0.5], (count, n))
    yaw = rng.choice([0, np.pi / 2, np.pi, 3 * np.pi / 2], (count, n)) + rng.normal(0, 0.2, (count, n))
    return np.concatenate([xy, z[..., None], yaw[..., None], np.broadcast_to(size, (count, n, 3))],
                          axis=-1)


def completions(task, layouts: np.ndarray) -> list[str]:
    out = []
    for layout in layouts:
        entries = [{"id": o.id, "x": round(r[0], 3), "y": round(r[1], 3), "z": round(r[2], 3),
                    "rotation": round(float(np.degrees(r[3])), 1)} for o, r in zip(task.objects, layout)]
        out.append(f"<think>placing</think><answer>{json.dumps(entries)}</answer>")
    return out


def best_rate(fn, count: int, repeat: int, *args) -> float:
    """Layouts per second, best of ``repeat`` runs of ``fn(*args)`` (which handles ``count``)."""
    fn(*args)  # warm-up: caches, imports
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return count / min(times)


def one_at_a_time(task, layouts) -> None:
    for layout in layouts:
        check_layouts(task, layout)


def in_batches(task, layouts, size: int) -> None:
    for i in range(0, len(layouts), size):
        check_layouts(task, layouts[i:i + size])


def rates_for(task, layouts, group: int, repeat: int) -> dict[str, float]:
    single = min(len(layouts), 500)
    texts, reward = completions(task, layouts[:single]), PhysicsReward()
    return {
        "one at a time": best_rate(one_at_a_time, single, repeat, task, layouts[:single]),
        f"batches of {group}": best_rate(in_batches, len(layouts), repeat, task, layouts, group),
        f"one batch of {len(layouts)}": best_rate(check_layouts, len(layouts), repeat, task, layouts),
        "PhysicsReward on text": best_rate(functools.partial(reward, task=[task] * single), single,
                                           repeat, [""] * single, texts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", type=int, default=2000)
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (GRPO group)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"MetaSpatial reference: ~{METASPATIAL_LAYOUTS_PER_S:.0f} layouts/s (12 objects); "
          f"target 100x = {100 * METASPATIAL_LAYOUTS_PER_S:,.0f} layouts/s")
    for n in (12, 30):
        task = random_task(rng, n)
        layouts = random_layouts(rng, task, args.layouts)
        rates = rates_for(task, layouts, args.group, args.repeat)
        report = check_layouts(task, layouts)
        print(f"\n{n} objects ({len(report.constraints)} relations/facings; mean collision rate "
              f"{report.collision_rate.mean():.2f}, out of bounds {report.out_of_bounds_rate.mean():.2f})")
        for name, rate in rates.items():
            print(f"  {name:<24} {rate:>10,.0f} layouts/s  {1e6 / rate:>8.1f} us/layout  "
                  f"{rate / METASPATIAL_LAYOUTS_PER_S:>6.0f}x MetaSpatial")


if __name__ == "__main__":
    main()
