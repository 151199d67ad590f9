import math

import pytest

from spacelm.scene import Box, Door, Layout, Wall, Window
from spacelm.scene.layout import (
    canonical_order,
    fold_box_yaws,
    rotate_z,
    scale,
    translate,
)


def test_canonical_order_sorts_walls_by_corners_and_remaps_openings():
    # Walls given in reverse, one with its endpoints reversed; a door and a window on them.
    walls = [Wall(4, 3, 0, 0, 3, 0, 2.5, 0),  # top wall, written b->a: becomes (0,3)->(4,3)
             Wall(4, 0, 0, 4, 3, 0, 2.5, 0),
             Wall(0, 0, 0, 4, 0, 0, 2.5, 0)]
    layout = Layout(walls,
                    doors=[Door(0, 2.0, 3.0, 1.0, 0.9, 2.0), Door(2, 1.0, 0.0, 1.0, 0.9, 2.0)],
                    windows=[Window(1, 4.0, 1.5, 1.5, 1.0, 1.0)],
                    boxes=[Box("b", 3.0, 2.0, 0.5, 0, 1, 1, 1), Box("a", 1.0, 2.0, 0.5, 0, 1, 1, 1),
                           Box("c", 5.0, 0.5, 0.5, 0, 1, 1, 1)])
    ordered = canonical_order(layout)
    # keys (z, y, x) of the first corner: (0,0,0) < (0,0,4) < (0,3,0)
    assert ordered.walls == (Wall(0, 0, 0, 4, 0, 0, 2.5, 0), Wall(4, 0, 0, 4, 3, 0, 2.5, 0),
                             Wall(0, 3, 0, 4, 3, 0, 2.5, 0))
    # doors sorted by y then x; their walls follow: old 2 -> new 0, old 0 -> new 2
    assert ordered.doors == (Door(0, 1.0, 0.0, 1.0, 0.9, 2.0), Door(2, 2.0, 3.0, 1.0, 0.9, 2.0))
    assert ordered.windows == (Window(1, 4.0, 1.5, 1.5, 1.0, 1.0),)
    assert [b.label for b in ordered.boxes] == ["c", "a", "b"]
    assert canonical_order(ordered) == ordered


def test_rotate_z_quarter_turn():
    layout = Layout(walls=[Wall(1, 0, 0, 2, 0, 0, 2.5, 0)],
                    doors=[Door(0, 1.5, 0, 1, 0.8, 2)],
                    boxes=[Box("bed", 1.0, 2.0, 0.3, 0.25, 2, 1, 0.6)])
    r = rotate_z(layout, math.pi / 2)
    assert (r.walls[0].ax, r.walls[0].ay, r.walls[0].bx, r.walls[0].by) == pytest.approx((0, 1, 0, 2))
    assert (r.doors[0].x, r.doors[0].y) == pytest.approx((0, 1.5))
    assert (r.boxes[0].x, r.boxes[0].y) == pytest.approx((-2.0, 1.0))
    assert r.boxes[0].angle_z == pytest.approx(0.25 + math.pi / 2)
    # about another centre: (3, 0) turned by 90 degrees about (2, 0) lands on (2, 1)
    r2 = rotate_z(Layout(boxes=[Box("x", 3, 0, 0, 0, 1, 1, 1)]), math.pi / 2, center=(2, 0))
    assert (r2.boxes[0].x, r2.boxes[0].y) == pytest.approx((2.0, 1.0))


def test_translate_and_scale():
    layout = Layout(walls=[Wall(0, 0, 0, 4, 0, 0, 2.5, 0.1)],
                    windows=[Window(0, 2, 0, 1.5, 1, 1)],
                    boxes=[Box("bed", 1.0, 2.0, 0.3, 0.25, 2, 1, 0.6)])
    t = translate(layout, (1, -2, 0.5))
    assert (t.walls[0].ax, t.walls[0].ay, t.walls[0].az, t.walls[0].bx) == (1, -2, 0.5, 5)
    assert (t.windows[0].x, t.windows[0].z) == (3, 2.0)
    assert t.boxes[0].scale_x == 2  # sizes do not move
    s = scale(layout, 2.0)
    assert s.walls[0].bx == 8 and s.walls[0].height == 5 and s.walls[0].thickness == 0.2
    assert (s.windows[0].width, s.boxes[0].scale_z, s.boxes[0].angle_z) == (2, 1.2, 0.25)


def test_fold_box_yaws_only_touches_angles():
    layout = Layout(boxes=[Box("bed", 1, 2, 0.3, 0.5, 2, 1, 0.6)])
    folded = fold_box_yaws(layout)
    assert folded.boxes[0].angle_z == pytest.approx(0.5 - math.pi)
    assert folded.boxes[0].x == 1


def test_layout_arrays_and_lists_become_tuples():
    layout = Layout(walls=[Wall(0, 0, 0, 4, 0, 0, 2.5)], boxes=[Box("bed", 1, 2, 3, 0.1, 4, 5, 6)])
    assert isinstance(layout.walls, tuple)
    assert layout.box_array().tolist() == [[1, 2, 3, 0.1, 4, 5, 6]]
    assert layout.wall_array().shape == (1, 8)
    assert Layout().box_array().shape == (0, 7)
    assert hash(layout) == hash(Layout(walls=(Wall(0, 0, 0, 4, 0, 0, 2.5),),
                                       boxes=(Box("bed", 1, 2, 3, 0.1, 4, 5, 6),)))
