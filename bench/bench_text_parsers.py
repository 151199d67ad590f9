"""Throughput of the text parsers on hostile sizes: layout text (metric and integer bins) and
MetaSpatial's structure check on repeated tags (research/reliability-2026-12.md L4 and A5).

    python bench/bench_text_parsers.py

Prints MB/s for parse_layout in both forms, the integer form once more with the old per-scalar
numpy decode (what L4 measured), and the structure check against MetaSpatial's regex.
"""

from __future__ import annotations

import re
import time

import numpy as np

from spacelm.arrange.answer import structure_ok
from spacelm.scene import Box, Layout, Wall
from spacelm.scene.language import format_layout, parse_layout
from spacelm.scene.quantize import Quantizer

METASPATIAL = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.DOTALL)


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def layout_text(quantizer: Quantizer | None) -> str:
    rng = np.random.default_rng(0)
    walls = [Wall(*rng.uniform(0, 10, 6), 2.5, 0.1) for _ in range(2000)]
    boxes = [Box("chair", *rng.uniform(0, 10, 3), 0.3, *rng.uniform(0.1, 2, 3)) for _ in range(8000)]
    return format_layout(Layout(walls=walls, boxes=boxes), quantizer)


def main() -> None:
    q = Quantizer(1280)
    for name, quantizer in (("metric", None), ("integer bins", q)):
        text = layout_text(quantizer)
        seconds = best_of(lambda: parse_layout(text, quantizer))
        print(f"parse_layout, {name}: {len(text) / 1e6:.2f} MB in {seconds:.3f} s "
              f"= {len(text) / 1e6 / seconds:.2f} MB/s")
    decode = Quantizer.decode
    Quantizer.decode = lambda self, bins, kind: decode(self, np.asarray(bins), kind)  # the old path
    text = layout_text(q)
    seconds = best_of(lambda: parse_layout(text, q))
    Quantizer.decode = decode
    print(f"parse_layout, integer bins, numpy decode per scalar (before): "
          f"{len(text) / 1e6 / seconds:.2f} MB/s")
    for kb in (16, 32, 64, 1024):  # the regex is quadratic: 256 KB takes it 14-60 s
        text = "<think>" + "</think><answer>" * (kb * 1024 // 16)
        near_miss = "<think>" + "</think>x<answer>" * (kb * 1024 // 17) + "</answer>"  # full scan
        ours = best_of(lambda: (structure_ok(text + "</answer>"), structure_ok(near_miss)))
        theirs = "" if kb > 64 else \
            f" (MetaSpatial's regex {best_of(lambda: METASPATIAL.match(text), repeats=1):.2f} s)"
        print(f"structure check, {kb} KB of repeated tags, and of near misses: "
              f"{ours * 1e3:.2f} ms{theirs}")


if __name__ == "__main__":
    main()
