"""Solvable arrangement tasks without an LLM: room-type templates plus a reference solution.

MetaSpatial's tasks come from GPT-4o descriptions and IDesign's solver; this generator gives SFT
baselines and sanity checks tasks that are known to be solvable. A task is drawn from a room
type's template (object kinds, plausible size ranges, relations such as against a wall, in a
corner, left of, in front, on, under, above), then placed by a greedy solver with random
restarts: each object is put where its relations hold by construction, candidates that leave the
room or overlap an earlier object are redrawn, and the finished layout is accepted only if
``physics.check_layouts`` finds no collision, nothing out of bounds or floating, and every
relation and facing met. The reference placements become a completion
``<think>reference</think><answer>[...]</answer>``, which scores format 1.0 and physics 0.

Rotations are multiples of 90 degrees, so every footprint is an axis-aligned rectangle. Objects
against a wall have their back to it (front facing into the room). Object ``rotation`` in the
task holds the reference yaw, as IDesign's do (``prompts`` hides it when rotation is asked for).

Splits: a task belongs to ``test`` when the sha256 of its content (everything but its id) falls in
the first fifth of the hash range, else to ``train``; so splits are disjoint for any seeds, and
``generate_tasks(n, seed, split)`` is a prefix-stable, deterministic function of its arguments.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from spacelm.arrange.answer import Placement, placements_to_boxes
from spacelm.arrange.physics import PhysicsConfig, check_layouts
from spacelm.arrange.room_templates import OCCUPANTS, ROOM_TYPES, STYLES, Item
from spacelm.arrange.task import (
    CEILING,
    FLOOR,
    ArrangeObject,
    ArrangeTask,
    CompletionRecord,
    Relation,
    Room,
    task_to_dict,
    write_tasks,
)
from spacelm.errors import ArgumentError
from spacelm.io import atomic_write_text

SPLITS = ("train", "test")
TEST_SHARE = 0.2
_WALL_ROTATION = {"south_wall": 0, "north_wall": 180, "west_wall": 270, "east_wall": 90}
_OPPOSITE = {"south_wall": "north_wall", "north_wall": "south_wall",
             "west_wall": "east_wall", "east_wall": "west_wall"}
_ADJACENT_GAP, _LOOSE_GAP = (0.02, 0.07), (0.25, 0.5)  # metres between neighbours
_TRIES, _RESTARTS, _DRAWS = 40, 30, 5  # candidates per object, restarts per list, object lists
_THIN = PhysicsConfig().thin_ratio
_OFF_FLOOR = ("on", "above", "ceiling", "wall_high")  # rules whose objects do not stand


class GenerationError(RuntimeError):
    """No valid layout was found for a room (the message names the room and the last problem)."""


@dataclass(frozen=True)
class GeneratedTask:
    """A task with its reference placements (one per object, in task order)."""

    task: ArrangeTask
    reference: tuple[Placement, ...]

    @property
    def completion(self) -> str:
        return reference_completion(self.reference)


@dataclass(frozen=True)
class _Placed:
    """A placed object: centre (m), yaw (degrees, multiple of 90), size (l, w, h), the wall at
    its back (if any) and the wall it faces (if any)."""

    x: float
    y: float
    z: float
    rot: float
    size: tuple[float, float, float]
    wall: str | None = None
    facing: str | None = None

    @property
    def half(self) -> np.ndarray:
        """World half extents (x, y, z): l and w swap at 90 and 270 degrees."""
        length, width, height = self.size
        return np.array([width, length, height] if self.rot % 180 else [length, width, height]) / 2


def reference_completion(placements: Iterable[Placement]) -> str:
    """The completion text of reference placements (metres and degrees, as given)."""
    entries = [{"id": p.id, "x": p.x, "y": p.y, "z": p.z, "rotation": p.rotation}
               for p in placements]
    return f"<think>reference</think><answer>{json.dumps(entries)}</answer>"


def generate_tasks(n: int, seed: int, split: str = "train", *,
                   room_types: Iterable[str] | None = None,
                   max_objects: int | None = None) -> list[GeneratedTask]:
    """The first ``n`` tasks of ``split`` from candidate stream ``seed`` (see the module docstring).

    ``max_objects`` keeps the first that many objects of each drawn list (targets come before the
    objects placed relative to them, so every relation still has its target): smaller tasks for
    small policies.

    >>> [g.task.id for g in generate_tasks(2, seed=0, split="test")]
    ['gen0_000001_office', 'gen0_000003_office']
    """
    if split not in SPLITS:
        raise ArgumentError(f"split must be one of {SPLITS}, got {split!r}")
    kinds = tuple(room_types or ROOM_TYPES)
    unknown = [k for k in kinds if k not in ROOM_TYPES]
    if unknown:
        raise ArgumentError(f"room_types: unknown room types {unknown}; expected some of {tuple(ROOM_TYPES)}")
    out, index = [], 0
    while len(out) < n:
        rng = np.random.default_rng([seed, index])
        kind = kinds[int(rng.integers(len(kinds)))]
        generated = generate_task(kind, rng=rng, task_id=f"gen{seed}_{index:06d}_{kind}",
                                  max_objects=max_objects)
        if split_of(generated.task) == split:
            out.append(generated)
        index += 1
    return out


def split_of(task: ArrangeTask) -> str:
    """``"test"`` for a fifth of all task contents (by sha256, id excluded), else ``"train"``."""
    content = {k: v for k, v in task_to_dict(task).items() if k != "id"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:8], "big") < TEST_SHARE * 2**64 else "train"


def generate_task(room_type: str, size: tuple[float, float, float] | None = None, *,
                  rng: np.random.Generator, task_id: str,
                  max_objects: int | None = None) -> GeneratedTask:
    """One task of ``room_type`` (size ``(L, W, H)`` m, drawn from the type's range if None), with
    at most ``max_objects`` objects (None: as many as the template draws)."""
    if max_objects is not None and max_objects < 1:
        raise ArgumentError(f"max_objects must be >= 1, got {max_objects}")
    kind = ROOM_TYPES[room_type]
    if size is not None and min(size) <= 0:
        raise ValueError(f"{task_id}: room size must be positive, got {size}")
    room = Room(*(round(float(rng.uniform(lo, hi)), 2) for lo, hi in kind.size)) if size is None \
        else Room(*map(float, size))
    style, who = STYLES[rng.integers(len(STYLES))], OCCUPANTS[rng.integers(len(OCCUPANTS))]
    problem = "no object list drawn"
    for _ in range(_DRAWS):
        items = _draw_items(kind.items, rng)[:max_objects]
        preference = _preference(style, who, room_type, items, room, rng)
        for _ in range(_RESTARTS):
            placed = _place_all(items, room, rng)
            if placed is None:
                problem = "the greedy placement ran out of candidates"
                continue
            result = _finish(items, placed, room, rng, task_id, preference, style)
            if isinstance(result, GeneratedTask):
                return result
            problem = result
    raise GenerationError(f"{task_id}: no valid layout for a {room.length} x {room.width} x "
                          f"{room.height} m {room_type} ({problem})")


def _draw_items(items: tuple[Item, ...], rng) -> list[tuple[str, Item]]:
    """The object list: each item with its chance, if its target is present; ids numbered."""
    chosen, counts = [], Counter()
    for item in items:
        if rng.random() >= item.chance or (item.target and counts[item.target] == 0):
            continue
        counts[item.name] += 1
        chosen.append((f"{item.name}_{counts[item.name]}", item))
    return chosen


def _place_all(items, room: Room, rng) -> list[_Placed] | None:
    """Greedy placement in list order (targets come first); None when an object finds no spot."""
    placed: list[_Placed] = []
    first = {}
    for object_id, item in items:
        target = first.get(item.target)
        spot = None
        for _ in range(_TRIES):
            candidate = _candidate(item, target, room, rng)
            if candidate is not None and _fits(candidate, placed, room):
                spot = candidate
                break
        if spot is None:
            return None
        placed.append(spot)
        first.setdefault(item.name, spot)
    return placed


def _candidate(item: Item, t: _Placed | None, room: Room, rng) -> _Placed | None:
    """A random spot meeting the item's rule (see ``room_templates.Item``) by construction;
    None when the rule cannot apply (the object is longer than the wall, the target has none)."""
    size = tuple(round(float(rng.uniform(lo, hi)), 2) for lo, hi in item.size)
    if item.rule in ("wall", "corner", "wall_high", "opposite"):
        return _against_wall(item, size, t, room, rng)
    if item.rule == "centre":
        rot = 0.0 if room.length >= room.width else 90.0
        x, y = (v * (0.5 + rng.uniform(-0.12, 0.12)) for v in (room.length, room.width))
        return _Placed(x, y, size[2] / 2, rot, size)
    if item.rule == "ceiling":
        x, y = (t.x, t.y) if t else (room.length / 2, room.width / 2)
        return _Placed(x + rng.uniform(-0.1, 0.1), y + rng.uniform(-0.1, 0.1),
                       room.height - size[2] / 2, 0.0, size)
    if item.rule in ("left", "right", "front", "behind"):
        return _beside(item, size, t, rng)
    return _stacked(item, size, t, room, rng)


def _against_wall(item: Item, size, t: _Placed | None, room: Room, rng) -> _Placed | None:
    if item.rule == "opposite":
        if t is None or t.wall is None:
            return None
        wall = _OPPOSITE[t.wall]
    else:
        wall = list(_WALL_ROTATION)[rng.integers(4)]
    length = room.length if wall in ("south_wall", "north_wall") else room.width
    if size[0] > length:
        return None
    along = (size[0] / 2 if rng.random() < 0.5 else length - size[0] / 2) if item.rule == "corner" \
        else rng.uniform(size[0] / 2, length - size[0] / 2)
    depth = size[1] / 2
    x, y = {"south_wall": (along, depth), "north_wall": (along, room.width - depth),
            "west_wall": (depth, along), "east_wall": (room.length - depth, along)}[wall]
    z = size[2] / 2
    if item.rule == "wall_high":
        z = min(rng.uniform(1.3, 1.7), room.height - size[2] / 2 - 0.05)
    return _Placed(x, y, z, float(_WALL_ROTATION[wall]), size, wall, _OPPOSITE[wall])


def _beside(item: Item, size, t: _Placed, rng) -> _Placed:
    """Next to ``t`` in its frame (u right, v front). Facing the target, the subject turns towards
    it; otherwise it keeps the target's yaw and, left or right, lines its back up with the target's
    (so it shares the target's wall)."""
    side = item.rule
    turn = {"left": 270, "right": 90, "front": 180, "behind": 0}[side] if item.face_target else 0
    su, sv = (size[1] / 2, size[0] / 2) if turn % 180 else (size[0] / 2, size[1] / 2)
    tu, tv = t.size[0] / 2, t.size[1] / 2
    gap = rng.uniform(*(_ADJACENT_GAP if item.adjacent else _LOOSE_GAP))
    wall = None
    if side in ("left", "right"):
        u = (tu + gap + su) * (-1 if side == "left" else 1)
        v = _lateral(rng, tv, sv, abs(u), item.face_target)
        if not item.face_target:
            v, wall = -tv + sv, t.wall
    else:
        v = (tv + gap + sv) * (1 if side == "front" else -1)
        u = _lateral(rng, tu, su, abs(v), item.face_target)
    c, s = np.cos(np.radians(t.rot)), np.sin(np.radians(t.rot))
    facing = t.facing if item.faces and not item.face_target else None
    return _Placed(t.x + u * c - v * s, t.y + u * s + v * c, size[2] / 2, (t.rot + turn) % 360,
                   size, wall, facing)


def _lateral(rng, target_half: float, subject_half: float, distance: float, facing: bool) -> float:
    """An offset along the target's side that keeps the two overlapping along it, and within
    35 degrees of straight ahead when the subject must face the target."""
    span = max(0.0, target_half - 0.5 * subject_half)
    if facing:
        span = min(span, 0.7 * distance)
    return rng.uniform(-span, span)


def _stacked(item: Item, size, t: _Placed, room: Room, rng) -> _Placed | None:
    """``on`` (centre over the top), ``under`` (a rug: back edges lined up, kept inside the room)
    or ``above`` (hung on the target's wall over it); all keep the target's yaw."""
    tu, tv = t.size[0] / 2, t.size[1] / 2
    su, sv = size[0] / 2, size[1] / 2
    z = size[2] / 2
    if item.rule == "on":
        u = rng.uniform(-1, 1) * max(tu - su, 0.0)
        v = rng.uniform(-1, 1) * max(tv - sv, 0.0)
        z = t.z + t.size[2] / 2 + size[2] / 2
    elif item.rule == "under":
        u, v = rng.uniform(-0.1, 0.1), max(0.0, sv - tv)
    elif item.rule == "above":
        if t.wall is None:
            return None
        u, v = rng.uniform(-1, 1) * max(tu - su, 0.0), -tv + sv
        z = t.z + t.size[2] / 2 + rng.uniform(0.25, 0.55) + size[2] / 2
    else:
        raise ValueError(f"unknown placement rule {item.rule!r}")
    c, s = np.cos(np.radians(t.rot)), np.sin(np.radians(t.rot))
    x, y = t.x + u * c - v * s, t.y + u * s + v * c
    spot = _Placed(x, y, z, t.rot, size, t.wall if item.rule == "above" else None,
                   t.facing if item.faces else None)
    if item.rule == "under":  # slide back inside the room; the overlap with t stays large
        hx, hy, _ = spot.half
        spot = replace(spot, x=float(np.clip(x, hx, room.length - hx)),
                       y=float(np.clip(y, hy, room.width - hy)))
    return spot


def _fits(p: _Placed, placed: list[_Placed], room: Room) -> bool:
    """Inside the room and clear of every earlier object (thin ones such as rugs excepted)."""
    h = p.half
    centre = np.array([p.x, p.y, p.z])
    if np.any(centre - h < -1e-9) or np.any(centre + h > np.array([room.length, room.width,
                                                                     room.height]) + 1e-9):
        return False
    if _is_thin(p.size):
        return True
    for q in placed:
        if not _is_thin(q.size) and np.all(np.abs(centre - [q.x, q.y, q.z]) < h + q.half - 0.002):
            return False
    return True


def _is_thin(size) -> bool:
    return _THIN is not None and max(size) / min(size) >= _THIN


def _finish(items, placed, room: Room, rng, task_id: str, preference: str,
            style: str) -> GeneratedTask | str:
    """The task and its reference, or why ``check_layouts`` rejects the layout."""
    by_name = {}
    objects, reference = [], []
    for (object_id, item), p in zip(items, placed):
        target_id = by_name.get(item.target)
        by_name.setdefault(item.name, object_id)
        objects.append(ArrangeObject(
            id=object_id, size=p.size, on_floor=item.rule not in _OFF_FLOOR,
            facing=target_id if item.face_target else (p.facing if item.faces else None),
            relations=_relations(item, p, target_id), style=style,
            material=item.materials[rng.integers(len(item.materials))], rotation=p.rot))
        reference.append(Placement(object_id, *(round(float(v), 4) for v in (p.x, p.y, p.z)),
                                   p.rot))
    task = ArrangeTask(task_id, room, preference, tuple(objects))
    report = check_layouts(task, placements_to_boxes(task, reference))
    problems = [name for name, bad in (
        ("collision", report.collision_rate[0] > 0), ("out of bounds", report.out_of_bounds.any()),
        ("floating", report.floating.any()), ("relation", not report.satisfied.all())) if bad]
    return f"check_layouts found {', '.join(problems)}" if problems else \
        GeneratedTask(task, tuple(reference))


def _relations(item: Item, p: _Placed, target: str | None) -> tuple[Relation, ...]:
    rule = item.rule
    if rule in ("wall", "opposite", "wall_high"):
        return (Relation("against wall", p.wall),)
    if rule == "corner":
        return (Relation("in the corner", p.wall),)
    if rule == "centre":
        return (Relation("on", FLOOR),)
    if rule == "ceiling":
        return (Relation("on", CEILING),) + ((Relation("above", target),) if target else ())
    kind = {"left": "left of", "right": "right of", "front": "in front"}.get(rule, rule)
    own = (Relation(kind, target, item.adjacent and rule in ("left", "right", "front", "behind")),)
    return own + ((Relation("against wall", p.wall),) if p.wall else ())


def _preference(style: str, who: str, room_type: str, items, room: Room, rng) -> str:
    counts = Counter(item.name.replace("_", " ") for _, item in items)
    names = [name if k == 1 else f"{k} {name}s" for name, k in counts.items()]
    listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
    wishes = ROOM_TYPES[room_type].wishes
    wish = wishes[rng.integers(len(wishes))]
    article = "An" if style[0] in "aeiouAEIOU" else "A"
    return (f"{article} {style} {room_type.replace('_', ' ')} of {room.length:g} x "
            f"{room.width:g} m for {who}, with {listed}. {wish}")


def write_completions(path: str | os.PathLike, records: Iterable[CompletionRecord]) -> None:
    """Completions JSONL (``{"task_id", "completion"}`` per line), written atomically."""
    atomic_write_text(path, "".join(json.dumps({"task_id": r.task_id, "completion": r.completion},
                                               ensure_ascii=False) + "\n" for r in records))


def save_generated(generated: Iterable[GeneratedTask], tasks_path: str | os.PathLike,
                   reference_path: str | os.PathLike) -> None:
    """Tasks JSONL (``task.write_tasks``) and their reference completions JSONL."""
    generated = list(generated)
    write_tasks(tasks_path, (g.task for g in generated))
    write_completions(reference_path, (CompletionRecord(g.task.id, g.completion)
                                       for g in generated))
