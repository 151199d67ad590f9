"""SpatialLM's inference preprocessing of a 1M-point room: their Open3D pipeline vs spacelm.points.

Both sides start from the same binary PLY and end with the same (M, 9) array the encoder receives
(grid coordinates, shifted xyz, colours in [-1, 1]):

  read PLY -> voxel down-sample (2.5 cm) -> statistical outliers (15, 2.0) -> positive shift
  -> colour normalisation -> grid sample (2.5 cm, test mode)

SpatialLM's side is Open3D's reader and clean-up (``cleanup_pcd``) followed by our restatement of
their numpy ``PositiveShift`` / ``NormalizeColor`` / ``GridSample`` (FNV hash, clipped grid). Each side
runs in a fresh interpreter (Open3D's OpenMP threads keep spinning after its calls and would slow
whatever runs next in the same process); times are the best of ``--reps`` runs, read included.

    python bench/bench_points.py

Open3D is optional and not a dependency of spacelm; without it only our side is timed. Its 0.20
wheel needs libusb-1.0, loaded from the ``libusb-package`` wheel when the system lacks it, and its
import needs plotly and dash. To keep them out of the project's environment, install them into a
folder (``pip install --no-deps --target DIR open3d libusb-package plotly dash ...``) and put DIR
on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from spacelm.points import (
    PointCloud,
    grid_sample_coords,
    normalize_color,
    positive_shift,
    read_ply,
    remove_statistical_outliers,
    voxel_downsample,
    write_ply,
)

GRID = 32.0 / 1280  # SpatialLM v1.1: 1280 bins over 32 m = 2.5 cm
NUM_BINS = 1280
# From research/render-physics-io.md, for when Open3D cannot be imported here.
RESEARCH_FIGURE = "about 1.3 s per 1M-point room, 87% of it in Open3D's clean-up"


def synthetic_room(n_points: int, seed: int = 0):
    """(n, 3) float32 xyz and (n, 3) uint8 rgb: floor, ceiling, 4 walls of an 8 x 6 x 3 m room and
    8 boxes, sampled by area with 3 mm noise, plus 0.1% stray points (what the clean-up removes)."""
    rng = np.random.default_rng(seed)
    w, d, h = 8.0, 6.0, 3.0
    patches = [((0, 0, 0), (w, 0, 0), (0, d, 0)), ((0, 0, h), (w, 0, 0), (0, d, 0)),
               ((0, 0, 0), (w, 0, 0), (0, 0, h)), ((0, d, 0), (w, 0, 0), (0, 0, h)),
               ((0, 0, 0), (0, d, 0), (0, 0, h)), ((w, 0, 0), (0, d, 0), (0, 0, h))]
    for _ in range(8):
        size = rng.uniform(0.4, 1.6, 3)
        corner = np.r_[rng.uniform(0, w - size[0]), rng.uniform(0, d - size[1]), 0.0]
        sx, sy, sz = np.diag(size)
        patches += [(corner + sz, sx, sy), (corner, sx, sz), (corner + sy, sx, sz),
                    (corner, sy, sz), (corner + sx, sy, sz)]
    origin, u, v = (np.array(p, dtype=np.float64) for p in zip(*patches))
    area = np.linalg.norm(np.cross(u, v), axis=1)
    n_stray = n_points // 1000
    which = rng.choice(len(area), n_points - n_stray, p=area / area.sum())
    s, t = rng.random((2, len(which), 1))
    surface = origin[which] + s * u[which] + t * v[which] + rng.normal(0, 0.003, (len(which), 3))
    stray = rng.uniform([0, 0, 0], [w, d, h], (n_stray, 3))
    xyz = np.concatenate([surface, stray]).astype(np.float32)
    rgb = np.concatenate([(which[:, None] * [37, 91, 53]) % 256,
                          rng.integers(0, 256, (n_stray, 3))]).astype(np.uint8)
    return xyz, rgb


def ours(path: str) -> tuple[np.ndarray, dict]:
    stages, start = {}, time.perf_counter()

    def lap(name):
        nonlocal start
        now = time.perf_counter()
        stages[name], start = now - start, now

    cloud = read_ply(path)
    lap("read")
    xyz, rgb = voxel_downsample(cloud.xyz, cloud.rgb, GRID)
    lap("voxel")
    keep = remove_statistical_outliers(xyz, k=15, std_ratio=2.0)
    xyz, rgb = xyz[keep], rgb[keep]
    lap("outliers")
    xyz, _ = positive_shift(xyz)
    color = normalize_color(rgb)
    index, coords = grid_sample_coords(xyz, GRID)
    features = np.concatenate([coords, xyz[index], color[index]], axis=1)
    lap("shift+colour+grid")
    return features, stages


def import_open3d():
    try:
        import open3d
    except ImportError as err:
        spec = importlib.util.find_spec("libusb_package")
        if "libusb" not in str(err) or spec is None:
            raise
        ctypes.CDLL(str(Path(spec.origin).parent / "libusb-1.0.so"), mode=ctypes.RTLD_GLOBAL)
        import open3d
    return open3d


def spatiallm(path: str) -> tuple[np.ndarray, dict]:
    o3d = import_open3d()
    stages, start = {}, time.perf_counter()
    pcd = o3d.io.read_point_cloud(path)  # load_o3d_pcd
    stages["read"], start = time.perf_counter() - start, time.perf_counter()
    pcd = pcd.voxel_down_sample(GRID)  # cleanup_pcd
    pcd, _ = pcd.remove_statistical_outlier(15, std_ratio=2.0)
    stages["cleanup"], start = time.perf_counter() - start, time.perf_counter()
    points = np.asarray(pcd.points)  # get_points_and_colors
    colors = np.asarray(pcd.colors)
    if colors.max() < 1.1:
        colors = (colors * 255).astype(np.uint8)
    coord = points.copy() - points.min(0)  # PositiveShift
    color = colors.copy() / 127.5 - 1  # NormalizeColor
    grid = np.floor(coord / GRID).astype(int)  # GridSample(mode="test", hash_type="fnv")
    grid = np.clip(grid - grid.min(0), 0, NUM_BINS - 1)
    key = fnv_hash(grid)
    order = np.argsort(key)
    _, _, count = np.unique(key[order], return_inverse=True, return_counts=True)
    pick = order[np.cumsum(np.insert(count, 0, 0)[:-1]) + (count.max() // 2) % count]
    features = np.concatenate([grid[pick], coord[pick], color[pick]], axis=1)
    stages["shift+colour+grid"] = time.perf_counter() - start
    return features, stages


def fnv_hash(grid: np.ndarray) -> np.ndarray:
    """64-bit FNV-1a over the three coordinates, as Pointcept's GridSample hashes voxels."""
    hashed = np.full(len(grid), 14695981039346656037, dtype=np.uint64)
    for column in grid.astype(np.uint64).T:
        hashed = np.bitwise_xor(hashed * np.uint64(1099511628211), column)
    return hashed


def run_side(side: str, path: str, reps: int) -> None:
    """Child process: time one side and print a JSON line."""
    pipeline = {"ours": ours, "spatiallm": spatiallm}[side]
    best, stages = float("inf"), {}
    for _ in range(reps):
        start = time.perf_counter()
        features, laps = pipeline(path)
        elapsed = time.perf_counter() - start
        if elapsed < best:
            best, stages = elapsed, laps
    # The occupied voxels, in a canonical order (each side returns its own order and, within a
    # voxel, its own representative point), reduced to a digest the parent can compare.
    voxels = np.unique(features[:, :3].astype(np.int64), axis=0)
    print(json.dumps({"seconds": best, "stages": stages, "points": len(features),
                      "voxels": hashlib.sha1(voxels.tobytes()).hexdigest()}))


def spawn(side: str, path: str, reps: int) -> dict | str:
    done = subprocess.run([sys.executable, __file__, "--side", side, "--ply", path,
                           "--reps", str(reps)], capture_output=True, text=True)
    if done.returncode:
        return done.stderr.strip().splitlines()[-1]
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe(name: str, result: dict) -> str:
    stages = ", ".join(f"{k} {v:.3f}" for k, v in result["stages"].items())
    return f"{name:9s} {result['seconds']:.3f} s  -> {result['points']:,} points  ({stages})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--side", choices=["ours", "spatiallm"], help=argparse.SUPPRESS)
    parser.add_argument("--ply", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return run_side(args.side, args.ply, args.reps)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "room.ply")
        write_ply(path, PointCloud(*synthetic_room(args.points)))
        print(f"input: {args.points:,} points, binary PLY, {Path(path).stat().st_size / 1e6:.1f} MB;"
              f" best of {args.reps}, each side in a fresh process")
        mine = spawn("ours", path, args.reps)
        theirs = spawn("spatiallm", path, args.reps)
    print(describe("spacelm", mine))
    if isinstance(theirs, str):
        print(f"SpatialLM: Open3D unavailable ({theirs}); research figure: {RESEARCH_FIGURE}")
        return
    print(describe("SpatialLM", theirs))
    same = "the same" if mine["voxels"] == theirs["voxels"] else "DIFFERENT"
    print(f"speed-up: {theirs['seconds'] / mine['seconds']:.1f}x; {mine['points']:,} vs "
          f"{theirs['points']:,} output points, {same} occupied voxels")


if __name__ == "__main__":
    main()
