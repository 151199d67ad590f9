"""Arrangement tasks: a room, a preference text and the objects a model must place.

Conventions (shared by every file of ``spacelm.arrange``):
- The room spans ``[0, length] x [0, width] x [0, height]`` in metres; x runs along the length
  (west -> east), y along the width (south -> north), z up. An optional ``polygon`` (xy, metres,
  inside that box) makes the floor plan non-rectangular.
- An object's ``size`` is ``[l, w, h]``: full extents, ``l`` along x and ``w`` along y *before*
  rotation. Its front faces +y at rotation 0 (IDesign's convention, so "facing north_wall" is
  rotation 0). Rotations are degrees counter-clockwise about +z (``Box.angle_z`` in radians).
- Walls are named by the side of the room they close: ``south_wall`` (y = 0), ``north_wall``
  (y = W), ``west_wall`` (x = 0), ``east_wall`` (x = L); ``"wall"`` means any wall.

The JSONL format is one task per line; fields may be added, never renamed::

    {"id": str, "room": {"length": L, "width": W, "height": H}, "preference": str,
     "objects": [{"id": str, "size": [l, w, h], "on_floor": bool, "facing": str | null,
                  "relations": [{"type": str, "target": str, "adjacent": bool}]}]}

Optional fields: ``room.polygon`` ([[x, y], ...]), ``image`` (empty-room render path) and per
object ``style``, ``material`` and ``rotation`` (a reference yaw in degrees, e.g. IDesign's).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from spacelm.errors import SpacelmError

WALLS = ("south_wall", "north_wall", "west_wall", "east_wall")
ANY_WALL = "wall"
FLOOR = "middle of the room"
CEILING = "ceiling"
LAYOUT_ELEMENTS = WALLS + (FLOOR, CEILING)
DIRECTIONAL = ("left of", "right of", "in front", "behind")
RELATION_TYPES = ("on",) + DIRECTIONAL + ("under", "above", "against wall", "in the corner")

# Which targets each relation type accepts besides object ids ("object" marks object ids).
_TARGETS = {
    "on": ("object",) + LAYOUT_ELEMENTS,
    **{t: ("object",) for t in DIRECTIONAL + ("under", "above")},
    "against wall": WALLS + (ANY_WALL,),
    "in the corner": WALLS + (ANY_WALL,),
}


class TaskError(SpacelmError, ValueError):
    """A task or completion record that breaks the schema; the message names the field path."""


@dataclass(frozen=True)
class Relation:
    """``<object> <type> <target>``, e.g. chair_1 "left of" desk_1; ``adjacent`` asks for contact."""

    type: str
    target: str
    adjacent: bool = False


@dataclass(frozen=True)
class ArrangeObject:
    """One object to place: full extents ``size`` (l, w, h) in metres, l along x at rotation 0."""

    id: str
    size: tuple[float, float, float]
    on_floor: bool = True
    facing: str | None = None
    relations: tuple[Relation, ...] = ()
    style: str | None = None
    material: str | None = None
    rotation: float | None = None


@dataclass(frozen=True)
class Room:
    """The room box in metres; ``polygon`` (counter-clockwise or not) narrows the floor plan."""

    length: float
    width: float
    height: float
    polygon: tuple[tuple[float, float], ...] | None = None


@dataclass(frozen=True)
class ArrangeTask:
    """A room, a preference and the objects to place; hashable, so it can key caches.

    >>> t = task_from_dict({"id": "t", "room": {"length": 4, "width": 3, "height": 2.5},
    ...     "preference": "cosy", "objects": [{"id": "bed_1", "size": [2, 1.6, 0.5]}]})
    >>> t.objects[0].size, t.object_ids
    ((2.0, 1.6, 0.5), ('bed_1',))
    """

    id: str
    room: Room
    preference: str
    objects: tuple[ArrangeObject, ...]
    image: str | None = None

    @property
    def object_ids(self) -> tuple[str, ...]:
        return tuple(o.id for o in self.objects)


@dataclass(frozen=True)
class CompletionRecord:
    """One model output for a task, as stored in completions JSONL.

    ``where`` ("file, line N") says where it was read, for error messages; it is not compared."""

    task_id: str
    completion: str
    where: str | None = field(default=None, compare=False)


def task_from_dict(data, path: str = "") -> ArrangeTask:
    """Validate and build a task from its JSON form; errors name the field path."""
    _expect(data, dict, path or "task")
    objects = _get(data, "objects", list, path)
    if not objects:
        raise TaskError(f"{_join(path, 'objects')}: must list at least one object")
    built = tuple(_object(o, _join(path, f"objects[{i}]")) for i, o in enumerate(objects))
    task = ArrangeTask(
        id=_nonempty(_get(data, "id", str, path), _join(path, "id")),
        room=_room(_get(data, "room", dict, path), _join(path, "room")),
        preference=_get(data, "preference", str, path),
        objects=built,
        image=_optional(data, "image", str, path),
    )
    _check_references(task, path)
    return task


def task_to_dict(task: ArrangeTask) -> dict:
    """The JSON form of a task; optional fields appear only when set."""
    room = {"length": task.room.length, "width": task.room.width, "height": task.room.height}
    if task.room.polygon is not None:
        room["polygon"] = [list(p) for p in task.room.polygon]
    out = {"id": task.id, "room": room, "preference": task.preference,
           "objects": [_object_to_dict(o) for o in task.objects]}
    if task.image is not None:
        out["image"] = task.image
    return out


def read_tasks(path: str | os.PathLike) -> list[ArrangeTask]:
    """Read tasks JSONL; blank lines are skipped; an error names the file and line."""
    tasks, seen = [], {}
    for line_no, record in _jsonl(path):
        try:
            task = task_from_dict(record)
        except TaskError as e:
            raise TaskError(f"{os.fspath(path)}, line {line_no}: {e}") from None
        if task.id in seen:
            raise TaskError(f"{os.fspath(path)}, line {line_no}: id: {task.id!r} already used "
                            f"on line {seen[task.id]}")
        seen[task.id] = line_no
        tasks.append(task)
    return tasks


def write_tasks(path: str | os.PathLike, tasks: Iterable[ArrangeTask]) -> None:
    """Write tasks JSONL, one task per line, UTF-8."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(task_to_dict(t), ensure_ascii=False) + "\n" for t in tasks)


def read_completions(path: str | os.PathLike) -> list[CompletionRecord]:
    """Read ``{"task_id": str, "completion": str}`` JSONL; errors name the file and line."""
    records = []
    for line_no, record in _jsonl(path):
        try:
            _expect(record, dict, "record")
            records.append(CompletionRecord(_get(record, "task_id", str, ""),
                                            _get(record, "completion", str, ""),
                                            f"{os.fspath(path)}, line {line_no}"))
        except TaskError as e:
            raise TaskError(f"{os.fspath(path)}, line {line_no}: {e}") from None
    return records


def _jsonl(path) -> Iterable[tuple[int, object]]:
    """``(line number, value)`` per non-blank line; any unreadable line is a ``TaskError``."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            where = f"{os.fspath(path)}, line {line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TaskError(f"{where}: not UTF-8 text (byte 0x{raw[e.start:e.start + 1].hex()} "
                                f"at column {e.start + 1})") from None
            if not line.strip():
                continue
            yield line_no, _json_line(line, where)


def _json_line(line: str, where: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise TaskError(f"{where}: not JSON: {e.msg} (column {e.colno})") from None
    except ValueError:  # an integer past Python's digit limit (sys.get_int_max_str_digits)
        raise TaskError(f"{where}: a number has more digits than can be read") from None
    except RecursionError:
        raise TaskError(f"{where}: nested too deeply to read") from None


def _room(data: dict, path: str) -> Room:
    dims = [_positive(_get(data, k, (int, float), path), _join(path, k))
            for k in ("length", "width", "height")]
    polygon = data.get("polygon")
    if polygon is not None:
        polygon = _polygon(polygon, dims[0], dims[1], _join(path, "polygon"))
    return Room(*dims, polygon=polygon)


def _polygon(data, length: float, width: float, path: str) -> tuple[tuple[float, float], ...]:
    import shapely  # local: only polygon rooms need it at load time

    _expect(data, list, path)
    if len(data) < 3:
        raise TaskError(f"{path}: needs at least 3 points, got {len(data)}")
    points = []
    for i, p in enumerate(data):
        where = f"{path}[{i}]"
        _expect(p, list, where)
        if len(p) != 2:
            raise TaskError(f"{where}: must be [x, y], got {len(p)} numbers")
        x, y = (_finite(v, f"{where}[{k}]") for k, v in enumerate(p))
        if not (-1e-6 <= x <= length + 1e-6 and -1e-6 <= y <= width + 1e-6):
            raise TaskError(f"{where}: ({x}, {y}) lies outside the room box "
                            f"[0, {length}] x [0, {width}]")
        points.append((x, y))
    shape = shapely.Polygon(points)
    if not shape.is_valid or shape.area <= 0:
        raise TaskError(f"{path}: not a simple polygon with an area ({shapely.is_valid_reason(shape)})")
    return tuple(points)


def _object(data, path: str) -> ArrangeObject:
    _expect(data, dict, path)
    size = _get(data, "size", list, path)
    if len(size) != 3:
        raise TaskError(f"{_join(path, 'size')}: must be [l, w, h], got {len(size)} numbers")
    relations = data.get("relations") or []
    _expect(relations, list, _join(path, "relations"))
    return ArrangeObject(
        id=_nonempty(_get(data, "id", str, path), _join(path, "id")),
        size=tuple(_positive(v, f"{_join(path, 'size')}[{k}]") for k, v in enumerate(size)),
        on_floor=_optional(data, "on_floor", bool, path, default=True),
        facing=_optional(data, "facing", str, path),
        relations=tuple(_relation(r, _join(path, f"relations[{i}]")) for i, r in enumerate(relations)),
        style=_optional(data, "style", str, path),
        material=_optional(data, "material", str, path),
        rotation=None if data.get("rotation") is None
        else _finite(data["rotation"], _join(path, "rotation")),
    )


def _relation(data, path: str) -> Relation:
    _expect(data, dict, path)
    kind = _get(data, "type", str, path)
    if kind not in RELATION_TYPES:
        raise TaskError(f"{_join(path, 'type')}: {kind!r} is not one of {', '.join(RELATION_TYPES)}")
    return Relation(kind, _nonempty(_get(data, "target", str, path), _join(path, "target")),
                    _optional(data, "adjacent", bool, path, default=False))


def _check_references(task: ArrangeTask, path: str) -> None:
    """Object ids are unique and not reserved; facings and relation targets exist."""
    ids: dict[str, int] = {}
    for i, obj in enumerate(task.objects):
        where = _join(path, f"objects[{i}]")
        if obj.id in LAYOUT_ELEMENTS or obj.id == ANY_WALL:
            raise TaskError(f"{where}.id: {obj.id!r} is a reserved room element name")
        if obj.id in ids:
            raise TaskError(f"{where}.id: {obj.id!r} already used by objects[{ids[obj.id]}]")
        ids[obj.id] = i
    for i, obj in enumerate(task.objects):
        where = _join(path, f"objects[{i}]")
        if obj.facing is not None and obj.facing not in LAYOUT_ELEMENTS and obj.facing not in ids:
            raise TaskError(f"{where}.facing: {obj.facing!r} is neither an object id nor one of "
                            f"{', '.join(LAYOUT_ELEMENTS)}")
        if obj.facing == obj.id:
            raise TaskError(f"{where}.facing: an object cannot face itself")
        for k, rel in enumerate(obj.relations):
            allowed = _TARGETS[rel.type]
            is_object = rel.target in ids and rel.target != obj.id
            if not (rel.target in allowed or ("object" in allowed and is_object)):
                options = [a for a in allowed if a != "object"]
                kinds = (["another object's id"] if "object" in allowed else []) + options
                raise TaskError(f"{where}.relations[{k}].target: {rel.target!r} is not valid for "
                                f"{rel.type!r}; expected {' or '.join(map(str, kinds))}")


def _object_to_dict(obj: ArrangeObject) -> dict:
    out = {"id": obj.id, "size": list(obj.size), "on_floor": obj.on_floor, "facing": obj.facing,
           "relations": [{"type": r.type, "target": r.target, "adjacent": r.adjacent}
                         for r in obj.relations]}
    for key in ("style", "material", "rotation"):
        if getattr(obj, key) is not None:
            out[key] = getattr(obj, key)
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path and not key.startswith("[") else f"{path}{key}"


def _type_name(kind) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true or false"}
    return names.get(kind, "a number")


def _expect(value, kind, path: str) -> None:
    is_bool = isinstance(value, bool)
    numeric = isinstance(kind, tuple)
    if not isinstance(value, kind) or (numeric and is_bool):
        raise TaskError(f"{path}: must be {_type_name(kind)}, got {short_json(value)}")


def _get(data: dict, key: str, kind, path: str):
    where = _join(path, key)
    if key not in data:
        raise TaskError(f"{where}: missing")
    _expect(data[key], kind, where)
    return data[key]


def _optional(data: dict, key: str, kind, path: str, default=None):
    if data.get(key) is None:
        return default
    return _get(data, key, kind, path)


def _finite(value, path: str) -> float:
    _expect(value, (int, float), path)
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise TaskError(f"{path}: must be finite (and fit a float), got {short_json(value)}")
    return number


def short_json(value, limit: int = 60) -> str:
    """A bounded description of a JSON value for messages: containers by size, never in full.

    >>> short_json([[1, 2]] * 1000), short_json("x" * 100, 10)
    ('a list of 1000 entries', '"xxxxxx...')
    """
    if isinstance(value, (list, dict)):
        return f"{'a list' if isinstance(value, list) else 'an object'} of {len(value)} entries"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
        return f"an integer of {len(str(abs(value)))} digits"
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _positive(value, path: str) -> float:
    value = _finite(value, path)
    if value <= 0:
        raise TaskError(f"{path}: must be > 0, got {value}")
    return value


def _nonempty(value: str, path: str) -> str:
    if not value.strip():
        raise TaskError(f"{path}: must not be empty")
    return value
