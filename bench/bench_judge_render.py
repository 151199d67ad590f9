"""Render cost of the judge reward per layout: 12 and 30 objects, 2 views, 512 px.

Each layout is a random room (4-8 m x 4-8 m x 3 m, four walls) with N boxes at random positions,
sizes and yaws, rendered the way ``judge.request_payload`` does (corner and top views at 512 x 512).
Three costs per layout are printed (median and 90th percentile over the layouts):

- ``render``: ``spacelm.render.render`` for both views;
- ``render + PNG``: plus PNG encoding and base64 data URLs (what goes into a request);
- ``request payload``: ``judge.request_payload`` from task and placements (adds the layout
  conversion and the rubric text).

MetaSpatial pays a Blender process start plus GLB imports per sample ("delays on the order of
seconds", issue #4). No request is sent here.

``--backend blender`` (after ``make blender``) times ``render`` and ``render + PNG`` with the
Blender worker instead (``--engine workbench`` or ``cycles``, 16 samples), and the first call,
which starts the worker; ``request payload`` always uses the built-in backend, so it is left out.

    PYTHONPATH=src .venv/bin/python bench/bench_judge_render.py --layouts 50 --seed 0
    PYTHONPATH=src .venv/bin/python bench/bench_judge_render.py --layouts 10 --backend blender
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from spacelm.arrange.answer import Placement, to_layout
from spacelm.arrange.judge import JudgeConfig, png_data_url, request_payload
from spacelm.arrange.task import task_from_dict
from spacelm.render import render

VIEWS, SIZE = ("corner", "top"), 512


def random_case(rng: np.random.Generator, n: int):
    """A task with ``n`` random objects and one random placement of them."""
    room = {"length": float(rng.uniform(4, 8)), "width": float(rng.uniform(4, 8)), "height": 3.0}
    objects = [{"id": f"object_{i}", "size": rng.uniform(0.3, 1.5, 3).round(2).tolist()}
               for i in range(n)]
    task = task_from_dict({"id": f"room_{n}", "room": room, "preference": "a bench room",
                           "objects": objects})
    placements = [Placement(o.id, float(rng.uniform(0, room["length"])),
                            float(rng.uniform(0, room["width"])), o.size[2] / 2,
                            float(rng.choice([0, 90, 180, 270]) + rng.normal(0, 10)))
                  for o in task.objects]
    return task, placements


RENDER_OPTIONS = {"backend": "builtin"}  # main() sets the backend and engine from the command line


def render_only(task, placements) -> None:
    room = task.room
    render(to_layout(task, placements, label="name"), views=VIEWS, size=(SIZE, SIZE),
           room_size=(room.length, room.width, room.height), **RENDER_OPTIONS)


def render_png(task, placements) -> None:
    room = task.room
    images = render(to_layout(task, placements, label="name"), views=VIEWS, size=(SIZE, SIZE),
                    room_size=(room.length, room.width, room.height), **RENDER_OPTIONS)
    for image in images.values():
        png_data_url(image)


BENCH_CONFIG = JudgeConfig(model="bench", views=VIEWS, image_size=SIZE)


def payload(task, placements) -> None:
    request_payload(task, placements, BENCH_CONFIG)


def timings_ms(fn, cases) -> tuple[float, np.ndarray]:
    """The warm-up call's time (imports, fonts, a Blender worker's start) and each case's, ms."""
    start = time.perf_counter()
    fn(*cases[0])
    first = 1e3 * (time.perf_counter() - start)
    out = []
    for case in cases:
        start = time.perf_counter()
        fn(*case)
        out.append(1e3 * (time.perf_counter() - start))
    return first, np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=("builtin", "blender"), default="builtin")
    parser.add_argument("--engine", choices=("workbench", "cycles"), default="workbench",
                        help="Blender engine (with --backend blender)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = [("render", render_only), ("render + PNG", render_png)]
    if args.backend == "blender":
        RENDER_OPTIONS.update(backend="blender", engine=args.engine)
        title = f"Blender backend ({args.engine})"
    else:
        rows.append(("request payload", payload))
        title = "built-in backend"
    print(f"{title}, views {', '.join(VIEWS)}, {SIZE} x {SIZE} px, {args.layouts} layouts each")
    for n in (12, 30):
        cases = [random_case(rng, n) for _ in range(args.layouts)]
        print(f"\n{n} objects")
        for name, fn in rows:
            first, ms = timings_ms(fn, cases)
            print(f"  {name:<16} median {np.median(ms):6.1f} ms/layout   "
                  f"p90 {np.percentile(ms, 90):6.1f} ms   ({1e3 / np.median(ms):5.1f} layouts/s)"
                  + (f"   first call {first:6.0f} ms" if args.backend == "blender" else ""))


if __name__ == "__main__":
    main()
