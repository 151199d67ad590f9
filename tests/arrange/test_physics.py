"""Hand-computed physics cases; rooms are 6 x 6 x 3 m unless stated, boxes unit cubes."""

import math

import numpy as np
import pytest

from spacelm.arrange.physics import PhysicsConfig, PhysicsWeights, check_layouts

R45 = math.pi / 4
HALF_DIAGONAL = math.sqrt(2) / 2  # reach of a unit square turned 45 degrees


def row(x, y, z=0.5, yaw=0.0, size=(1, 1, 1)):
    return [x, y, z, yaw, *size]


@pytest.fixture
def pair(make_task):
    return make_task([{"id": "a"}, {"id": "b"}])


def test_boxes_overlapping_by_half_a_metre(pair):
    r = check_layouts(pair, [row(2, 2), row(2.5, 2)])
    assert r.penetration[0, 0, 1] == pytest.approx(0.5) == r.penetration[0, 1, 0]
    assert r.colliding[0, 0, 1] and r.collision_rate[0] == 1.0


@pytest.mark.parametrize("bx, depth, colliding", [
    (3.0, 0.0, False),      # faces touch exactly
    (2.995, 0.005, False),  # 5 mm in: within the 1 cm contact tolerance
    (2.98, 0.02, True),     # 2 cm in: a collision
    (3.2, 0.0, False),      # 20 cm apart
])
def test_touching_is_not_a_collision(pair, bx, depth, colliding):
    r = check_layouts(pair, [row(2, 2), row(bx, 2)])
    assert r.penetration[0, 0, 1] == pytest.approx(depth, abs=1e-12)
    assert r.colliding[0, 0, 1] == colliding


def test_stacked_boxes_do_not_collide(pair):
    r = check_layouts(pair, [row(2, 2, 0.5), row(2.3, 2, 1.5)])
    assert r.penetration[0, 0, 1] == 0.0


def test_box_turned_45_degrees(pair):
    # Its corner reaches sqrt(2)/2 along x: 0.107 m into a box whose face is at 2 + 1.1 - 0.5.
    r = check_layouts(pair, [row(2, 2, yaw=R45), row(3.1, 2)])
    assert r.penetration[0, 0, 1] == pytest.approx(HALF_DIAGONAL + 0.5 - 1.1)
    # Diagonal neighbour: the axis-aligned bounds overlap, but the diagonal axis separates them
    # by sqrt(2) - (0.5 + sqrt(2)/2) = 0.207 m (MetaSpatial's AABB test would count a collision).
    r = check_layouts(pair, [row(2, 2, yaw=R45), row(3, 3)])
    assert r.penetration[0, 0, 1] == 0.0


def test_turned_box_near_a_corner(pair):
    inside = check_layouts(pair, [row(0.75, 0.75, yaw=R45), row(3, 3)])
    assert inside.outside[0, 0] == 0.0 and not inside.out_of_bounds[0, 0]
    out = check_layouts(pair, [row(0.65, 0.65, yaw=R45), row(3, 3)])
    assert out.outside[0, 0] == pytest.approx(HALF_DIAGONAL - 0.65) and out.out_of_bounds[0, 0]


@pytest.mark.parametrize("box, outside", [
    (row(0.2, 3), 0.3),           # through the west wall
    (row(3, 5.8), 0.3),           # through the north wall
    (row(3, 3, 2.8), 0.3),        # through the ceiling
    (row(3, 3, 0.2), 0.3),        # sunk into the floor
    (row(3, 3, 0.5), 0.0),
])
def test_out_of_bounds(pair, box, outside):
    r = check_layouts(pair, [box, row(1, 1)])
    assert r.outside[0, 0] == pytest.approx(outside)
    assert r.out_of_bounds[0, 0] == (outside > 0)


def test_floating_on_floor_object(pair):
    r = check_layouts(pair, [row(2, 2, 0.7), row(4, 4, 0.51)])
    assert r.support_gap[0].tolist() == pytest.approx([0.2, 0.01])
    assert r.floating[0].tolist() == [True, False] and r.floating_rate[0] == 0.5


def test_support_of_objects_off_the_floor(make_task):
    task = make_task([{"id": "table", "size": [1, 1, 0.75]},
                      {"id": "cup", "size": [0.1, 0.1, 0.1], "on_floor": False,
                       "relations": [{"type": "on", "target": "table"}]},
                      {"id": "box", "size": [0.4, 0.4, 0.4], "on_floor": False}])
    table = row(3, 3, 0.375, size=(1, 1, 0.75))
    resting = check_layouts(task, [table, row(3.2, 3, 0.8, size=(.1, .1, .1)),
                                   row(3, 3.2, 0.95, size=(.4, .4, .4))])
    assert resting.support_gap[0].tolist() == pytest.approx([0, 0, 0])  # box: any support
    hovering = check_layouts(task, [table, row(3.2, 3, 1.0, size=(.1, .1, .1)),
                                    row(3, 3.2, 1.15, size=(.4, .4, .4))])
    assert hovering.support_gap[0, 1:].tolist() == pytest.approx([0.2, 0.2])
    # Off the table's footprint the cup has no support at all (its only support is the table).
    off = check_layouts(task, [table, row(4, 3, 0.8, size=(.1, .1, .1)), row(1, 1, 0.2, size=(.4,) * 3)])
    assert off.support_gap[0, 1] == np.inf and off.floating[0, 1] and not off.floating[0, 2]


def test_rates_and_object_penalties(make_task):
    task = make_task([{"id": "a"}, {"id": "b"}, {"id": "c", "relations": [
        {"type": "left of", "target": "a"}]}])
    r = check_layouts(task, [row(2, 2), row(2.5, 2), row(5, 5, 0.7)])
    assert r.collision_rate[0] == pytest.approx(1 / 3)
    assert r.relation_violation_rate[0] == pytest.approx(1 / 3) and r.floating_rate[0] == pytest.approx(1 / 3)
    assert r.constraint_violation_rate[0] == pytest.approx(1 / 3)  # c floats and breaks its relation
    assert r.score(PhysicsWeights())[0] == pytest.approx(-1.0)
    assert r.object_penalty()[0].tolist() == pytest.approx([0.5, 0.5, 2.0])


# Relations: a target object "t" at (3, 3) facing +y (yaw 0) unless stated; subject "s".
def relate(make_task, kind, s_box, t_box=None, adjacent=False, s_size=(1, 1, 1), t_size=(1, 1, 1),
           on_floor=True, **config):
    task = make_task([{"id": "t", "size": list(t_size)},
                      {"id": "s", "size": list(s_size), "on_floor": on_floor,
                       "relations": [{"type": kind, "target": "t", "adjacent": adjacent}]}])
    t_box = t_box or row(3, 3, t_size[2] / 2, size=t_size)
    r = check_layouts(task, [t_box, s_box], PhysicsConfig(**config))
    return bool(r.satisfied[0, 0])


@pytest.mark.parametrize("kind, s_xy, expected", [
    ("left of", (2, 3), True), ("left of", (4, 3), False),
    ("left of", (2, 4.2), False),  # beside, but not level with the target along its front axis
    ("left of", (1.5, 3), True), ("right of", (4, 3), True), ("right of", (2, 3), False),
    ("in front", (3, 4), True), ("in front", (3, 2), False),
    ("behind", (3, 2), True), ("behind", (3, 4.5), False),
    ("left of", (2.05, 3), False),  # 5 cm into the target: beyond the contact tolerance
])
def test_directional_relations(make_task, kind, s_xy, expected):
    assert relate(make_task, kind, row(*s_xy)) == expected


def test_adjacency_needs_a_small_gap(make_task):
    assert relate(make_task, "left of", row(1.95, 3), adjacent=True)      # 5 cm gap
    assert not relate(make_task, "left of", row(1.5, 3), adjacent=True)   # 50 cm gap
    assert relate(make_task, "left of", row(1.5, 3), adjacent=False)


def test_directions_follow_the_target_or_the_room(make_task):
    turned = row(3, 3, yaw=math.pi)  # the target faces south: its left is east
    assert relate(make_task, "left of", row(4, 3), turned)
    assert not relate(make_task, "left of", row(4, 3), turned, relation_frame="room")
    assert relate(make_task, "left of", row(2, 3), turned, relation_frame="room")
    west = row(3, 3, yaw=math.pi / 2)  # faces west: in front of it is -x
    assert relate(make_task, "in front", row(2, 3), west)


def test_on_under_above(make_task):
    table = {"t_size": (1, 1, 0.75), "t_box": row(3, 3, 0.375, size=(1, 1, 0.75))}
    cup = {"s_size": (0.2, 0.2, 0.2), "on_floor": False}
    assert relate(make_task, "on", row(3, 3, 0.85, size=(.2, .2, .2)), **table, **cup)
    assert not relate(make_task, "on", row(3.6, 3, 0.85, size=(.2, .2, .2)), **table, **cup)  # off
    assert not relate(make_task, "on", row(3, 3, 0.95, size=(.2, .2, .2)), **table, **cup)   # hovers
    rug = {"s_size": (2, 2, 0.02)}
    assert relate(make_task, "under", row(3, 3, 0.01, size=(2, 2, .02)), **table, **rug)
    assert not relate(make_task, "under", row(4.6, 3, 0.01, size=(2, 2, .02)), **table, **rug)
    lamp = {"s_size": (0.3, 0.3, 0.3), "on_floor": False}
    assert relate(make_task, "above", row(3, 3, 2.0, size=(.3, .3, .3)), **table, **lamp)
    assert not relate(make_task, "above", row(4.5, 3, 2.0, size=(.3, .3, .3)), **table, **lamp)
    assert not relate(make_task, "above", row(3, 3, 0.5, size=(.3, .3, .3)), **table, **lamp)


def wall_relation(make_task, kind, target, box, size=(1, 1, 1), on_floor=True):
    task = make_task([{"id": "s", "size": list(size), "on_floor": on_floor,
                       "relations": [{"type": kind, "target": target}]}])
    return bool(check_layouts(task, [box]).satisfied[0, 0])


def test_against_wall_and_corners(make_task):
    bed = (2, 1.6, 0.5)
    assert wall_relation(make_task, "against wall", "south_wall", row(3, 0.85, 0.25, size=bed), bed)
    assert not wall_relation(make_task, "against wall", "south_wall", row(3, 1.4, 0.25, size=bed), bed)
    turned = row(0.85, 3, 0.25, yaw=math.pi / 2, size=bed)  # footprint 1.6 along x now
    assert wall_relation(make_task, "against wall", "west_wall", turned, bed)
    assert wall_relation(make_task, "against wall", "wall", turned, bed)
    plant = (0.4, 0.4, 1.0)
    corner = row(0.25, 0.25, size=plant)
    assert wall_relation(make_task, "in the corner", "south_wall", corner, plant)
    assert wall_relation(make_task, "in the corner", "wall", corner, plant)
    assert not wall_relation(make_task, "in the corner", "north_wall", corner, plant)
    middle_of_wall = row(3, 0.25, size=plant)
    assert not wall_relation(make_task, "in the corner", "south_wall", middle_of_wall, plant)
    assert not wall_relation(make_task, "in the corner", "wall", middle_of_wall, plant)


def test_on_ceiling_and_floor(make_task):
    lamp = (0.5, 0.5, 0.5)
    assert wall_relation(make_task, "on", "ceiling", row(3, 3, 2.75, size=lamp), lamp, False)
    assert not wall_relation(make_task, "on", "ceiling", row(3, 3, 2.5, size=lamp), lamp, False)
    assert wall_relation(make_task, "on", "middle of the room", row(3, 3, 0.25, size=lamp), lamp)
    assert not wall_relation(make_task, "on", "middle of the room", row(3, 3, 0.5, size=lamp), lamp)


@pytest.mark.parametrize("facing, yaw_deg, expected", [
    ("north_wall", 0, True), ("north_wall", 180, False), ("north_wall", 30, True),
    ("north_wall", 60, False), ("west_wall", 90, True), ("east_wall", 270, True),
    ("tv", 0, True), ("tv", 90, False), ("middle of the room", 0, True),
])
def test_facing(make_task, facing, yaw_deg, expected):
    task = make_task([{"id": "sofa", "facing": facing}, {"id": "tv"}])
    r = check_layouts(task, [row(3, 1, yaw=math.radians(yaw_deg)), row(3, 5)])
    assert bool(r.satisfied[0, 0]) == expected
    assert len(check_layouts(task, [row(3, 1), row(3, 5)], PhysicsConfig(check_facing=False))
               .constraints) == 0


def test_thin_objects_are_not_collisions(make_task):
    task = make_task([{"id": "rug", "size": [2, 2, 0.02]}, {"id": "table", "size": [1, 1, 0.75]}])
    layout = [row(3, 3, 0.01, size=(2, 2, .02)), row(3, 3, 0.375, size=(1, 1, .75))]
    assert not check_layouts(task, layout).colliding.any()
    strict = check_layouts(task, layout, PhysicsConfig(thin_ratio=None))
    assert strict.penetration[0, 0, 1] == pytest.approx(0.02) and strict.colliding[0, 0, 1]


def random_batch(rng, task, count):
    size = np.array([o.size for o in task.objects])
    xy = rng.uniform(-0.5, 6.5, (count, len(size), 2))
    z = size[:, 2] / 2 + rng.choice([0.0, 0.0, 0.4], (count, len(size)))
    yaw = rng.uniform(-np.pi, np.pi, (count, len(size)))
    return np.concatenate([xy, z[..., None], yaw[..., None],
                           np.broadcast_to(size, (count, len(size), 3))], axis=-1)


@pytest.fixture
def busy_task(make_task):
    kinds = ["left of", "right of", "in front", "behind", "on", "under", "above"]
    objects = [{"id": f"o{i}", "size": [0.4 + 0.1 * i, 0.5, 0.3 + 0.05 * i], "on_floor": i % 3 != 2,
                "facing": "north_wall" if i % 4 == 0 else None,
                "relations": [{"type": kinds[i % 7], "target": f"o{i - 1}"}] if i else
                [{"type": "in the corner", "target": "wall"}]} for i in range(9)]
    return make_task(objects)


def test_batch_equals_one_at_a_time(busy_task):
    layouts = random_batch(np.random.default_rng(0), busy_task, 16)
    batch = check_layouts(busy_task, layouts)
    for b, layout in enumerate(layouts):
        one = check_layouts(busy_task, layout)
        for field in ("penetration", "outside", "support_gap", "satisfied"):
            np.testing.assert_array_equal(getattr(one, field)[0], getattr(batch, field)[b])


def test_polygon_room(make_task):
    l_shape = [[0, 0], [6, 0], [6, 3], [3, 3], [3, 6], [0, 6]]
    task = make_task([{"id": "a", "relations": [{"type": "against wall", "target": "north_wall"}]}],
                     room=(6, 6, 3))
    l_task = type(task)(task.id, type(task.room)(6, 6, 3, tuple(map(tuple, l_shape))),
                        task.preference, task.objects)
    # In the missing quadrant: the far corner (5, 5) is 2 m from the room.
    r = check_layouts(l_task, [[row(4.5, 4.5)], [row(1, 1)], [row(4.5, 2.5)]])
    assert r.outside[:, 0].tolist() == pytest.approx([2.0, 0.0, 0.0])
    # Against the inner north-facing edge y = 3 of the L: a "north wall" of this room.
    assert r.satisfied[:, 0].tolist() == [False, False, True]


def test_box_polygon_matches_box_room(busy_task):
    square = type(busy_task.room)(6, 6, 3, ((0, 0), (6, 0), (6, 6), (0, 6)))
    poly_task = type(busy_task)(busy_task.id, square, busy_task.preference, busy_task.objects)
    layouts = random_batch(np.random.default_rng(1), busy_task, 8)
    # Half the batch wholly inside: centres >= 1 m from the walls, more than half the widest diagonal.
    layouts[4:, :, :2] = np.random.default_rng(2).uniform(1.0, 5.0, (4, layouts.shape[1], 2))
    box, poly = check_layouts(busy_task, layouts), check_layouts(poly_task, layouts)
    np.testing.assert_allclose(poly.outside, box.outside, atol=1e-9)
    inside = (box.outside == 0).all(axis=1)  # polygon wall distances are unsigned, equal inside the room
    assert inside.sum() >= 4
    np.testing.assert_array_equal(poly.satisfied[inside], box.satisfied[inside])


def test_shape_errors(pair):
    with pytest.raises(ValueError, match=r"\(B, N, 7\) with N = 2"):
        check_layouts(pair, np.zeros((3, 7)))
    with pytest.raises(ValueError, match="relation_frame"):
        PhysicsConfig(relation_frame="viewer")
