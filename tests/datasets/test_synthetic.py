import collections
import math

import numpy as np
import pytest
import shapely

from spacelm.datasets.synthetic import (
    BOX_BASE,
    CEILING,
    FLOOR,
    WALL_BASE,
    SynthConfig,
    room_seed,
    synth_layout,
    synth_room,
    synth_rooms,
)
from spacelm.datasets.synthetic_furniture import CATALOGUE, ROOM_TYPES, WALL_BACKED
from spacelm.scene.categories import category_names, normalize_label
from spacelm.scene.layout import translate
from spacelm.scene.quantize import Quantizer, quantize_layout

N_LAYOUTS = 200


@pytest.fixture(scope="module")
def plans():
    return [synth_layout(room_seed(11, i)) for i in range(N_LAYOUTS)]


@pytest.fixture(scope="module")
def rooms():
    return list(synth_rooms(8, seed=3))


def footprint(box):
    c, s = math.cos(box.angle_z), math.sin(box.angle_z)
    local = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)]) * (box.scale_x / 2, box.scale_y / 2)
    return shapely.Polygon(local @ np.array([[c, s], [-s, c]]) + (box.x, box.y))


def wall_frame(wall):
    a = np.array([wall.ax, wall.ay])
    d = np.array([wall.bx, wall.by]) - a
    length = float(np.linalg.norm(d))
    return a, d / length, length


def along_and_off(wall, x, y):
    """Position along the wall from its start, and signed distance off its line (room side > 0)."""
    a, u, _ = wall_frame(wall)
    rel = np.stack([np.asarray(x) - a[0], np.asarray(y) - a[1]], -1)
    return rel @ u, rel @ np.array([-u[1], u[0]])


def test_same_seed_same_room_and_different_seed_different_room():
    a, b, c = synth_room(5), synth_room(5), synth_room(6)
    assert a.layout == b.layout and a.room_type == b.room_type
    for name in ("xyz", "rgb", "labels", "footprint"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.layout != c.layout and a.xyz.shape != c.xyz.shape


def test_stream_rooms_regenerate_alone_and_point_knobs_keep_the_layout():
    streamed = list(synth_rooms(3, seed=9))
    alone = synth_room(room_seed(9, 2))
    assert streamed[2].layout == alone.layout and np.array_equal(streamed[2].xyz, alone.xyz)
    assert len({r.layout for r in streamed}) == 3
    sparse = synth_room(room_seed(9, 2), SynthConfig(density=200, noise=0.0, holes=(0, 0), ceiling=True))
    assert sparse.layout == alone.layout and len(sparse.xyz) < len(alone.xyz)


def test_arrays_have_documented_types_and_are_read_only(rooms):
    room = rooms[0]
    n = len(room.xyz)
    assert room.xyz.shape == (n, 3) and room.xyz.dtype == np.float32
    assert room.rgb.shape == (n, 3) and room.rgb.dtype == np.uint8
    assert room.labels.shape == (n,) and room.labels.dtype == np.int16
    with pytest.raises(ValueError):
        room.xyz[0, 0] = 1.0


def test_walls_form_a_closed_axis_aligned_loop(plans):
    cfg = SynthConfig()
    assert {p.shape for p in plans} == {"rect", "L"}
    for p in plans:
        walls = p.layout.walls
        assert len(walls) == {"rect": 4, "L": 6}[p.shape] == len(p.footprint)
        for w, nxt in zip(walls, walls[1:] + walls[:1]):
            assert (w.bx, w.by) == (nxt.ax, nxt.ay)
            assert w.ax == w.bx or w.ay == w.by
            assert w.az == w.bz == 0.0 and w.thickness == 0.0 and w.height == walls[0].height
        assert cfg.height[0] <= walls[0].height <= cfg.height[1]
        extent = p.footprint.max(0) - p.footprint.min(0)
        assert np.all(extent >= cfg.side[0]) and np.all(extent <= cfg.side[1])
        assert shapely.Polygon(p.footprint).exterior.is_ccw


def test_rooms_are_offset_and_fit_the_quantisation_range_once_shifted(rooms):
    assert any(np.any(r.footprint.min(0) < 0) for r in rooms)
    assert any(np.all(r.footprint.min(0) > 0) for r in rooms)
    for r in rooms:
        shifted = translate(r.layout, -r.xyz.min(0).astype(np.float64))
        quantize_layout(shifted, Quantizer(num_bins=640))  # raises if anything leaves 0-32 m


def test_openings_lie_on_their_wall_without_overlap(plans):
    cfg = SynthConfig()
    for p in plans:
        lay = p.layout
        assert cfg.doors[0] <= len(lay.doors) <= cfg.doors[1]
        assert len(lay.windows) <= cfg.windows[1]
        spans = collections.defaultdict(list)
        for op in (*lay.doors, *lay.windows):
            wall = lay.walls[op.wall_id]
            t, off = along_and_off(wall, op.x, op.y)
            assert abs(off) < 1e-3
            assert 0 <= t - op.width / 2 and t + op.width / 2 <= wall_frame(wall)[2]
            assert op.z + op.height / 2 < wall.height
            spans[op.wall_id].append((t - op.width / 2, t + op.width / 2))
        for intervals in spans.values():
            intervals.sort()
            assert all(a[1] < b[0] for a, b in zip(intervals, intervals[1:]))
        for d in lay.doors:
            assert d.z == pytest.approx(d.height / 2) and 0.8 <= d.width <= 1.0 and 2.0 <= d.height <= 2.2
        for w in lay.windows:
            assert 0.6 <= w.z - w.height / 2 <= 1.2 and 0.6 <= w.width <= 2.0


def test_boxes_inside_room_and_not_colliding(plans):
    cfg = SynthConfig()
    for p in plans:
        room = shapely.Polygon(p.footprint).buffer(1e-3, join_style="mitre")
        boxes = p.layout.boxes
        assert cfg.boxes[0] <= len(boxes) <= cfg.boxes[1]
        polys = [footprint(b) for b in boxes]
        assert all(room.contains(poly) for poly in polys)
        height = p.layout.walls[0].height
        assert all(b.z - b.scale_z / 2 >= 0 and b.z + b.scale_z / 2 < height for b in boxes)
        for i in range(len(boxes)):
            for j in range(i):
                a, b = boxes[i], boxes[j]
                z_overlap = min(a.z + a.scale_z / 2, b.z + b.scale_z / 2) - max(
                    a.z - a.scale_z / 2, b.z - b.scale_z / 2)
                if z_overlap > 1e-3:
                    assert polys[i].intersection(polys[j]).area < 1e-5, (a, b)


def test_wall_backed_boxes_have_their_back_on_a_wall(plans):
    checked = collections.Counter()
    for p in plans:
        walls = [shapely.LineString([(w.ax, w.ay), (w.bx, w.by)]) for w in p.layout.walls]
        for b in p.layout.boxes:
            if CATALOGUE[b.label].rule not in WALL_BACKED:
                continue
            # back face = own -y side; its centre and both corners must be within 3 cm of one wall
            c, s = math.cos(b.angle_z), math.sin(b.angle_z)
            back = np.array([b.x, b.y]) - np.array([-s, c]) * b.scale_y / 2
            corners = [back + k * np.array([c, s]) * b.scale_x / 2 for k in (-1, 0, 1)]
            assert any(max(w.distance(shapely.Point(q)) for q in corners) < 0.03 for w in walls), b
            assert min(abs(b.angle_z - k * math.pi / 2) for k in range(-2, 3)) < 1e-9
            checked[b.label] += 1
    assert checked["bed"] > 20 and checked["wardrobe"] > 10


def test_catalogue_is_consistent():
    spatiallm59 = set(category_names("spatiallm59"))
    for name, f in CATALOGUE.items():
        assert name == name.lower() and " " not in name and normalize_label(name) in spatiallm59
        assert f.rule in {"wall", "mounted", "window", "free", "near"}
        assert (f.near in CATALOGUE) == (f.rule == "near")
        assert all(lo <= hi for lo, hi in (f.width, f.depth, f.height, f.elevation))
    assert sum(t.probability for t in ROOM_TYPES.values()) == pytest.approx(1.0)
    assert all(set(t.anchors) | set(t.weights) <= set(CATALOGUE) for t in ROOM_TYPES.values())


def test_thin_and_mounted_categories(plans):
    boxes = [b for p in plans for b in p.layout.boxes]
    for b in boxes:
        if b.label in ("painting", "curtain", "mirror"):
            assert b.scale_y <= 0.15
        if b.label == "carpet":
            assert b.scale_z <= 0.02 and b.z == pytest.approx(b.scale_z / 2)
        if b.label == "painting":
            assert b.z - b.scale_z / 2 >= 1.2
    yaws = np.array([b.angle_z for b in boxes])
    aligned = np.min(np.abs(yaws[:, None] - np.arange(-2, 3) * math.pi / 2), axis=1) < 1e-9
    assert 0.85 < aligned.mean() < 1.0


def test_boxes_keep_clear_of_doors(plans):
    for p in plans:
        for d in p.layout.doors:
            wall = p.layout.walls[d.wall_id]
            a, u, _ = wall_frame(wall)
            n = np.array([-u[1], u[0]])
            t, _ = along_and_off(wall, d.x, d.y)
            ends = [a + u * (t + k * d.width / 2) for k in (-1, 1)]
            strip = shapely.Polygon([ends[0], ends[1], ends[1] + 0.6 * n, ends[0] + 0.6 * n])
            for b in p.layout.boxes:
                if b.z - b.scale_z / 2 < d.height:
                    assert footprint(b).intersection(strip).area < 1e-6, (b, d)


def test_category_mix_is_as_intended(plans):
    types = collections.Counter(p.room_type for p in plans)
    for name, kind in ROOM_TYPES.items():
        assert types[name] / N_LAYOUTS == pytest.approx(kind.probability, abs=0.1)
    extra, anchored = collections.defaultdict(collections.Counter), collections.Counter()
    for p in plans:
        labels = [b.label for b in p.layout.boxes]
        anchors = ROOM_TYPES[p.room_type].anchors
        anchored[p.room_type] += all(a in labels for a in anchors)
        for anchor in anchors:
            if anchor in labels:
                labels.remove(anchor)
        extra[p.room_type].update(labels)
    assert all(anchored[t] >= 0.9 * types[t] for t in types)  # beds in bedrooms, sofas in living rooms
    # the other boxes follow the room type's weights, up to what rejection and limits change
    for name, counts in extra.items():
        weights = ROOM_TYPES[name].weights
        total, n = sum(weights.values()), sum(counts.values())
        tv = 0.5 * sum(abs(counts[k] / n - weights.get(k, 0) / total) for k in set(counts) | set(weights))
        assert tv < 0.3, (name, tv, counts)
    seen = {b.label for p in plans for b in p.layout.boxes}
    assert seen == set(CATALOGUE)


def test_point_counts_and_label_encoding(rooms):
    for r in rooms:
        assert 20_000 <= len(r.xyz) <= 150_000
        labels = r.labels
        assert not np.any(labels == CEILING)
        floor = r.xyz[labels == FLOOR]
        assert np.abs(floor[:, 2]).max() < 0.06
        for i, w in enumerate(r.layout.walls):
            on = r.xyz[labels == WALL_BASE + i]
            _, off = along_and_off(w, on[:, 0], on[:, 1])
            assert len(on) > 100 and np.abs(off).max() < 0.06
        for k, b in enumerate(r.layout.boxes):
            pts = r.xyz[labels == BOX_BASE + k].astype(np.float64)
            c, s = math.cos(b.angle_z), math.sin(b.angle_z)
            rel = pts - (b.x, b.y, b.z)
            local = np.stack([rel[:, 0] * c + rel[:, 1] * s, rel[:, 1] * c - rel[:, 0] * s, rel[:, 2]], 1)
            assert np.all(np.abs(local) < np.array([b.scale_x, b.scale_y, b.scale_z]) / 2 + 0.06)
            if len(pts) > 50:
                assert np.abs(r.rgb[labels == BOX_BASE + k].mean(0) - CATALOGUE[b.label].colour).max() < 45


def test_no_wall_points_in_door_openings(rooms):
    for r in rooms:
        for d in r.layout.doors:
            wall = r.layout.walls[d.wall_id]
            t_door, _ = along_and_off(wall, d.x, d.y)
            t, off = along_and_off(wall, r.xyz[:, 0], r.xyz[:, 1])
            inside = ((np.abs(t - t_door) < d.width / 2 - 0.03) & (np.abs(off) < 0.05)
                      & (r.xyz[:, 2] > 0.05) & (r.xyz[:, 2] < d.height - 0.03))
            assert not inside.any()


def test_floor_hidden_under_boxes_and_ceiling_on_request(rooms):
    r = rooms[0]
    bed_like = [b for b in r.layout.boxes if b.z - b.scale_z / 2 < 0.01 and b.scale_x > 0.5]
    floor = r.xyz[r.labels == FLOOR]
    for b in bed_like:
        inner = footprint(b).buffer(-0.1)
        assert not shapely.contains_xy(inner, floor[:, 0], floor[:, 1]).any()
    lit = synth_room(r.seed, SynthConfig(ceiling=True))
    top = lit.xyz[lit.labels == CEILING]
    assert len(top) > 1000 and np.abs(top[:, 2] - r.layout.walls[0].height).max() < 0.06


def test_voxel_size_keeps_one_point_per_voxel():
    r = synth_room(4, SynthConfig(voxel_size=0.05))
    keys = np.floor(r.xyz / 0.05).astype(np.int64)
    assert len(np.unique(keys, axis=0)) == len(r.xyz)
    assert len(r.xyz) < len(synth_room(4).xyz) and r.layout == synth_room(4).layout


def test_categories_restrict_the_boxes_and_all_of_them_change_nothing():
    few = ("bed", "sofa", "wardrobe", "desk")
    config = SynthConfig(categories=few, boxes=(2, 6))
    labels = collections.Counter(b.label for i in range(60) for b in synth_layout(room_seed(5, i), config).layout.boxes)
    assert set(labels) == set(few)  # every kept class occurs, nothing else does
    everything = SynthConfig(categories=tuple(CATALOGUE))
    for i in range(20):
        assert synth_layout(room_seed(5, i), everything).layout == synth_layout(room_seed(5, i)).layout
    for bad in ((), ("bed", "unicorn")):
        with pytest.raises(ValueError, match="categories"):
            SynthConfig(categories=bad)
