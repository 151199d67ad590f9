"""Parse ``<think>...</think><answer>[...]</answer>`` completions into placements, with diagnostics.

An answer is a JSON list with one entry per task object::

    [{"id": "sofa_1", "x": 2.0, "y": 0.6, "z": 0.4, "rotation": 0}, ...]

``x, y, z`` are the centre of the object's bounding box in metres (room frame of ``task``), so a
floor-standing object has ``z = h / 2``; ``rotation`` is degrees counter-clockwise about +z, the
front facing +y at 0. MetaSpatial's key ``new_object_id`` is accepted for ``id``.

Parsing is lenient so that physics can score nearly-right answers: it takes the last ``<answer>``
block (or an unclosed one), strips Markdown code fences, drops trailing commas and wraps a bare
sequence of objects in a list, recording each repair. ``strict_json`` says whether the raw text
was valid JSON, which MetaSpatial's format tiers need. Every problem becomes an ``AnswerError``
with a code; nothing is dropped silently, and no text makes parsing raise: numbers too large for
a float, integers past Python's digit limit and nesting past the recursion limit are errors too.
Every step is linear in the length of the completion.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from spacelm.arrange.task import ArrangeTask, short_json
from spacelm.scene import Box, Layout, Wall

_THINK_THEN_ANSWER = re.compile(r"</think>\s*<answer>")
_FENCE_TAG = re.compile(r"[a-zA-Z]*")
_TRAILING_COMMA = re.compile(r",(\s*[\]}])")
ID_KEYS = ("id", "new_object_id")
_FIELDS = ("x", "y", "z", "rotation")
_MISSING = object()

# Error codes, in the order they are checked.
NO_ANSWER = "no_answer"
NOT_JSON = "not_json"
NOT_LIST = "not_list"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
NOT_NUMBER = "not_number"
NON_FINITE = "non_finite"
UNKNOWN_ID = "unknown_id"
DUPLICATE_ID = "duplicate_id"
MISSING_OBJECT = "missing_object"


class Placement(NamedTuple):
    """Where one object goes: box centre (m) and rotation (degrees CCW about +z).

    A named tuple rather than a dataclass: rewards build one per object per completion."""

    id: str
    x: float
    y: float
    z: float
    rotation: float


@dataclass(frozen=True)
class AnswerError:
    code: str
    message: str
    index: int | None = None  # position in the answer list, where the error has one


@dataclass(frozen=True)
class ParsedAnswer:
    """What could be read from one completion.

    ``placements`` holds one valid placement per task object that got one, in task order.
    ``entries`` is the length of the answer list (-1 when no list was read).
    """

    structure_ok: bool
    answer_text: str | None
    strict_json: bool
    repairs: tuple[str, ...]
    entries: int
    placements: tuple[Placement, ...]
    errors: tuple[AnswerError, ...]
    num_objects: int

    @property
    def complete(self) -> bool:
        """Every task object has a valid placement; physics can run (extra entries are ignored)."""
        return len(self.placements) == self.num_objects

    def has(self, *codes: str) -> bool:
        return any(e.code in codes for e in self.errors)


def completion_text(completion) -> str:
    """The text of a TRL completion: a string, or a list of chat messages (last one wins)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # multimodal message: join its text parts
            return "".join(p["text"] for p in content
                           if isinstance(p, dict) and isinstance(p.get("text"), str))
        return "" if content is None else str(content)
    raise TypeError(f"a completion must be a string or a list of messages, got {type(completion)}")


def structure_ok(text: str) -> bool:
    """MetaSpatial's structure check, ``^\\s*<think>.*?</think>\\s*<answer>.*?</answer>\\s*$``
    (DOTALL), in linear time: that regex backtracks quadratically on repeated tags.

    The text, stripped, starts with ``<think>`` and ends with ``</answer>``, and somewhere between
    them a ``</think>`` is followed (after whitespace) by an ``<answer>`` that closes before the
    final ``</answer>`` begins.

    >>> structure_ok(" <think>a</think>\\n<answer>[]</answer>\\n"), structure_ok("<answer>[]</answer>")
    (True, False)
    """
    start = len(text) - len(text.lstrip())
    end = len(text.rstrip())
    final = end - len("</answer>")
    if not (text.startswith("<think>", start) and final >= start and text.startswith("</answer>", final)):
        return False
    return _THINK_THEN_ANSWER.search(text, start + len("<think>"), final) is not None


def parse_answer(completion, task: ArrangeTask, *, require_rotation: bool = True) -> ParsedAnswer:
    """Read the placements of ``task``'s objects from a completion.

    Without ``require_rotation`` a missing rotation falls back to the object's reference rotation
    (``ArrangeObject.rotation``, else 0), as in MetaSpatial where the model predicts only x, y, z.

    >>> from spacelm.arrange.task import task_from_dict
    >>> task = task_from_dict({"id": "t", "room": {"length": 4, "width": 3, "height": 2.5},
    ...     "preference": "", "objects": [{"id": "bed_1", "size": [2, 1.6, 0.5]}]})
    >>> a = parse_answer('<think>.</think><answer>[{"id": "bed_1", "x": 1, "y": 0.8, '
    ...                  '"z": 0.25, "rotation": 0}]</answer>', task)
    >>> a.complete, a.placements[0].x
    (True, 1.0)
    """
    text = completion_text(completion)
    structure = structure_ok(text)
    n = len(task.objects)
    start = text.rfind("<answer>")
    if start < 0:
        error = AnswerError(NO_ANSWER, "no <answer> block")
        return ParsedAnswer(structure, None, False, (), -1, (), (error,), n)
    end = text.find("</answer>", start)
    body = text[start + len("<answer>"):end if end >= 0 else len(text)].strip()
    value, strict, repairs = _load_json(body)
    if value is None:
        error = AnswerError(NOT_JSON, "the answer is not JSON, even after repairs")
        return ParsedAnswer(structure, body, False, repairs, -1, (), (error,), n)
    if not isinstance(value, list):
        error = AnswerError(NOT_LIST, f"the answer must be a JSON list, got {type(value).__name__}")
        return ParsedAnswer(structure, body, strict, repairs, -1, (), (error,), n)
    placements, errors = _read_entries(value, task, require_rotation)
    return ParsedAnswer(structure, body, strict, repairs, len(value), placements, errors, n)


def _load_json(body: str):
    """``(value or None, strict, repairs)``: json.loads, then the lenient repairs in turn."""
    value = _json_value(body)
    if value is not _MISSING:
        return value, True, ()
    repairs = []
    fenced = _fence_content(body)
    if fenced is not None:
        body = fenced
        repairs.append("stripped a code fence")
    if _TRAILING_COMMA.search(body):
        body = _TRAILING_COMMA.sub(r"\1", body)
        repairs.append("removed trailing commas")
    for candidate, note in ((body, None), (f"[{body}]", "wrapped the objects in a list")):
        value = _json_value(candidate)
        if value is not _MISSING:
            return value, False, tuple(repairs + ([note] if note else []))
    return None, False, tuple(repairs)


def _json_value(text: str):
    """``json.loads(text)``, or ``_MISSING`` when it is not JSON or nests past the recursion limit.

    Integers past Python's digit limit become floats (inf), so they are reported as too large
    rather than as broken JSON."""
    try:
        return json.loads(text, parse_int=_json_int)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return _MISSING


def _json_int(digits: str):
    try:
        return int(digits)
    except ValueError:  # more digits than sys.get_int_max_str_digits()
        return float(digits)


def _fence_content(body: str) -> str | None:
    """The text inside a Markdown code fence that is the whole of ``body`` (stripped), else None."""
    body = body.strip()
    if not (len(body) >= 6 and body.startswith("```") and body.endswith("```")):
        return None
    inner = body[3:-3]
    return inner[_FENCE_TAG.match(inner).end():].strip()


def _read_entries(entries: list, task: ArrangeTask, require_rotation: bool):
    objects = {o.id: o for o in task.objects}
    found: dict[str, Placement] = {}
    listed, errors = set(), []
    for i, entry in enumerate(entries):
        placement, error = _read_entry(entry, i, objects, require_rotation, listed)
        if error is not None:
            errors.append(error)
        elif placement.id in found:
            errors.append(AnswerError(DUPLICATE_ID, f"entry {i}: {placement.id!r} placed twice; "
                                      "the first placement is kept", i))
        else:
            found[placement.id] = placement
    errors += [AnswerError(MISSING_OBJECT, f"{o.id!r} is not placed")
               for o in task.objects if o.id not in listed]
    ordered = tuple(found[o.id] for o in task.objects if o.id in found)
    return ordered, tuple(errors)


def _read_entry(entry, i: int, objects: dict, require_rotation: bool, listed: set):
    """``(Placement, None)`` or ``(None, AnswerError)`` for answer entry ``i``; records its id."""
    if not isinstance(entry, dict):
        return None, AnswerError(NOT_OBJECT, f"entry {i}: must be a JSON object", i)
    object_id = next((entry[k] for k in ID_KEYS if isinstance(entry.get(k), str)), None)
    if object_id is None:
        return None, AnswerError(MISSING_FIELD, f"entry {i}: missing \"id\"", i)
    listed.add(object_id)
    if object_id not in objects:
        return None, AnswerError(UNKNOWN_ID, f"entry {i}: {object_id!r} is not an object of "
                                 "the task", i)
    values = [entry.get(key, _MISSING) for key in _FIELDS]
    if values[3] is _MISSING and not require_rotation:
        values[3] = objects[object_id].rotation or 0.0
    numbers = []
    for key, value in zip(_FIELDS, values):
        where = f"entry {i} ({object_id}): {key!r}"
        if type(value) not in (int, float):  # bool is neither
            if value is _MISSING:
                return None, AnswerError(MISSING_FIELD, f"entry {i} ({object_id}): missing {key!r}", i)
            return None, AnswerError(NOT_NUMBER, f"{where} must be a number, got {short_json(value, 40)}",
                                     i)
        number = _as_finite_float(value)
        if number is None:
            return None, AnswerError(NON_FINITE, f"{where} is not a finite number that fits a float "
                                     f"({short_json(value, 40)})", i)
        numbers.append(number)
    return Placement(object_id, *numbers), None


def _as_finite_float(value: int | float) -> float | None:
    """``float(value)`` when that is finite; None for inf, NaN and ints too large for a float."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None



def placements_to_boxes(task: ArrangeTask, placements) -> np.ndarray:
    """Box rows ``(N, 7) float64`` ``[x, y, z, yaw_rad, l, w, h]`` in task object order.

    ``placements`` must hold one placement per task object (any order).
    """
    by_id = {p.id: p for p in placements}
    missing = [o.id for o in task.objects if o.id not in by_id]
    if missing:
        raise ValueError(f"no placement for {', '.join(missing)}")
    rows = [(by_id[o.id].x, by_id[o.id].y, by_id[o.id].z, math.radians(by_id[o.id].rotation),
             *o.size) for o in task.objects]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 7)


def to_layout(task: ArrangeTask, placements, *, label: str = "id", walls: bool = True) -> Layout:
    """A scene ``Layout`` of the placed objects, so the scene geometry, renderer and viewer apply.

    ``label="id"`` labels boxes with the object ids (``sofa_1``); ``label="name"`` strips the
    numeric suffix (``sofa``), the category a renderer or retriever wants. With ``walls`` the
    room's walls (box sides or polygon edges, counter-clockwise, full height) come too.
    """
    if label not in ("id", "name"):
        raise ValueError(f"label must be 'id' or 'name', got {label!r}")
    rows = placements_to_boxes(task, placements)
    names = [o.id if label == "id" else object_name(o.id) for o in task.objects]
    boxes = [Box(name, *map(float, row)) for name, row in zip(names, rows)]
    return Layout(walls=room_walls(task) if walls else (), boxes=boxes)


def room_walls(task: ArrangeTask) -> tuple[Wall, ...]:
    """The room's walls as scene ``Wall`` entities, counter-clockwise seen from above."""
    room = task.room
    corners = room.polygon or ((0, 0), (room.length, 0), (room.length, room.width), (0, room.width))
    area2 = sum(ax * by - bx * ay for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1]))
    corners = corners if area2 > 0 else corners[::-1]
    return tuple(Wall(float(ax), float(ay), 0.0, float(bx), float(by), 0.0, room.height)
                 for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1]))


def object_name(object_id: str) -> str:
    """``"dining_chair_2"`` -> ``"dining chair"``: drop a trailing number, underscores to spaces."""
    return re.sub(r"[_\s]*\d+$", "", object_id).replace("_", " ").strip() or object_id
