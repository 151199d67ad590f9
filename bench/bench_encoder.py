"""Time the default SceneScript point encoder on synthetic rooms (CPU or whatever torch defaults to).

Prints, per room and thread count: points, voxel size, occupied voxels, tokens, forward seconds (no_grad),
forward+backward seconds (a training step without optimizer) and peak RSS growth over the process once the
model is built. Times are medians of ``--reps`` runs after one warm-up and include building the kernel maps,
which happens again for every new cloud. Each measurement runs in a fresh process so RSS peaks do not mix.

    python bench/bench_encoder.py            # 4k points at 5 cm and 200k at 2.5 cm, 1 and 2 threads
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

ROOM = (6.0, 5.0, 3.0)  # metres
CASES = ((4_096, 0.05), (200_000, 0.025))  # (points, voxel size in metres)


def synthetic_room(n_points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) float32 xyz in metres and (n, 3) uint8 rgb: floor, 4 walls and 6 boxes, 5 mm noise.

    Points are spread over the surfaces in proportion to their area.
    """
    rng = np.random.default_rng(seed)
    w, d, h = ROOM
    # Each patch: origin and two edge vectors spanning a rectangle.
    patches = [((0, 0, 0), (w, 0, 0), (0, d, 0))]
    patches += [((0, 0, 0), (w, 0, 0), (0, 0, h)), ((0, d, 0), (w, 0, 0), (0, 0, h))]
    patches += [((0, 0, 0), (0, d, 0), (0, 0, h)), ((w, 0, 0), (0, d, 0), (0, 0, h))]
    for _ in range(6):
        size = rng.uniform(0.4, 1.5, 3)
        corner = np.r_[rng.uniform(0, w - size[0]), rng.uniform(0, d - size[1]), 0.0]
        sx, sy, sz = np.diag(size)
        patches += [(corner + sz, sx, sy), (corner, sx, sz), (corner + sy, sx, sz)]
        patches += [(corner, sy, sz), (corner + sx, sy, sz)]
    origin, u, v = (np.array(p, dtype=np.float64) for p in zip(*patches))  # (P, 3) each
    area = np.linalg.norm(np.cross(u, v), axis=1)
    which = rng.choice(len(area), n_points, p=area / area.sum())
    s, t = rng.random((2, n_points, 1))
    xyz = origin[which] + s * u[which] + t * v[which] + rng.normal(0, 0.005, (n_points, 3))
    rgb = rng.integers(0, 256, (n_points, 3), dtype=np.uint8)
    return xyz.astype(np.float32), rgb


def voxelise(xyz: np.ndarray, rgb: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3) int64 grid coords and (M, 6) float32 features [xyz after the shift, rgb in [-1, 1]],
    one point per occupied voxel (SpatialLM keeps a representative point, not a mean)."""
    shifted = xyz - xyz.min(0)
    grid = np.floor(shifted / voxel).astype(np.int64)
    grid, first = np.unique(grid, axis=0, return_index=True)
    feats = np.concatenate([shifted[first], rgb[first] / 127.5 - 1.0], axis=1).astype(np.float32)
    return grid, feats


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _median_seconds(step, reps: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(n_points: int, voxel: float, threads: int, reps: int) -> dict:
    """Runs in a child process: one room, one thread count."""
    import torch

    from spacelm.model.point_encoder import PointEncoder, count_tokens

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    grid, feats = voxelise(*synthetic_room(n_points), voxel)
    coords = torch.from_numpy(np.concatenate([np.zeros((len(grid), 1), np.int64), grid], axis=1))
    features = torch.from_numpy(feats)
    encoder = PointEncoder()
    base = _peak_rss_mb()

    def forward():
        with torch.no_grad():
            encoder(coords, features)

    def train_step():
        encoder.zero_grad(set_to_none=True)
        encoder(coords, features).features.square().mean().backward()

    fwd = _median_seconds(forward, reps)
    fwd_mb = _peak_rss_mb() - base
    train = _median_seconds(train_step, reps)
    return {
        "points": n_points,
        "voxel_cm": voxel * 100,
        "voxels": len(grid),
        "tokens": int(count_tokens(coords).sum()),
        "threads": threads,
        "fwd_s": fwd,
        "train_s": train,
        "fwd_mb": fwd_mb,
        "train_mb": _peak_rss_mb() - base,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per measurement")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts")
    args = parser.parse_args()
    print("points  voxel  voxels  tokens  threads  fwd s  fwd+bwd s  fwd extra MB  train extra MB")
    for n_points, voxel in CASES:
        for threads in args.threads:
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                r = pool.submit(measure, n_points, voxel, threads, args.reps).result()
            print(
                f"{r['points']:>6}  {r['voxel_cm']:>3.1f}cm  {r['voxels']:>6}  {r['tokens']:>6}  {r['threads']:>7}"
                f"  {r['fwd_s']:>5.2f}  {r['train_s']:>9.2f}  {r['fwd_mb']:>12.0f}  {r['train_mb']:>14.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
