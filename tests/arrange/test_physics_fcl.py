"""Cross-checks of the collision test: python-fcl (skipped when missing) and brute-force SAT."""

import itertools

import numpy as np
import pytest

from spacelm.arrange.physics import PhysicsConfig, check_layouts
from spacelm.scene.geometry import box_corners

EXACT = PhysicsConfig(thin_ratio=None)  # every pair checked


def random_layouts(make_task, seed, count=40, n=12):
    """Dense random boxes in a 5 x 5 m room, some raised: plenty of collisions and near misses."""
    rng = np.random.default_rng(seed)
    layouts = []
    for _ in range(count):
        size = rng.uniform(0.2, 1.5, (n, 3))
        z = size[:, 2] / 2 + rng.choice([0.0, 0.0, 0.6], n)
        layouts.append(np.column_stack([rng.uniform(0, 5, (n, 2)), z, rng.uniform(-np.pi, np.pi, n),
                                        size]))
    task = make_task([{"id": f"o{i}"} for i in range(n)], room=(5, 5, 3))
    return task, layouts


def checked(make_task, task, layout):
    """The report for a layout whose sizes differ from the task's (sizes come from the rows)."""
    sized = make_task([{"id": o.id, "size": list(r[4:])} for o, r in zip(task.objects, layout)],
                      room=(5, 5, 3))
    return check_layouts(sized, layout, EXACT)


def brute_force_depth(a, b) -> float:
    """Minimum push-out distance over all 15 OBB separating axes (face normals, edge crosses)."""
    def axes(r):
        c, s = np.cos(r[3]), np.sin(r[3])
        return np.array([[c, s, 0], [-s, c, 0], [0, 0, 1.0]])

    corners_a, corners_b = box_corners([a])[0], box_corners([b])[0]
    candidates = list(axes(a)) + list(axes(b)) + [np.cross(u, v) for u in axes(a) for v in axes(b)]
    best = np.inf
    for axis in candidates:
        if np.linalg.norm(axis) < 1e-9:
            continue
        pa, pb = corners_a @ (axis / np.linalg.norm(axis)), corners_b @ (axis / np.linalg.norm(axis))
        best = min(best, pa.max() - pb.min(), pb.max() - pa.min())
    return max(best, 0.0)


def test_depth_equals_brute_force_sat(make_task):
    task, layouts = random_layouts(make_task, seed=0, count=8)
    for layout in layouts:
        report = checked(make_task, task, layout)
        for i, j in itertools.combinations(range(len(layout)), 2):
            assert report.penetration[0, i, j] == pytest.approx(
                brute_force_depth(layout[i], layout[j]), abs=1e-9)


def test_collisions_agree_with_fcl(make_task):
    fcl = pytest.importorskip("fcl")

    def fcl_object(r):
        c, s = np.cos(r[3]), np.sin(r[3])
        rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
        return fcl.CollisionObject(fcl.Box(*r[4:7]), fcl.Transform(rotation, r[:3]))

    task, layouts = random_layouts(make_task, seed=1)
    pairs = agree = hits = equal_depth = 0
    for layout in layouts:
        report = checked(make_task, task, layout)
        objects = [fcl_object(r) for r in layout]
        for i, j in itertools.combinations(range(len(layout)), 2):
            request, result = fcl.CollisionRequest(enable_contact=True), fcl.CollisionResult()
            hit = fcl.collide(objects[i], objects[j], request, result) > 0
            ours = report.penetration[0, i, j]
            pairs += 1
            agree += hit == (ours > 0)
            if hit:
                hits += 1
                fcl_depth = result.contacts[0].penetration_depth
                # fcl's box-box contact may pick a face with a deeper overlap; ours is the minimum.
                assert ours <= fcl_depth + 1e-6
                equal_depth += abs(ours - fcl_depth) < 1e-6
    assert agree == pairs and hits > 200
    assert equal_depth / hits > 0.9
