"""Import MetaSpatial's data: IDesign scene graphs, HF parquet rows and room descriptions.

A scene graph (``scene_graph-backtracked.json``, also embedded in each prompt after
``## Input JSON Data:``) is a list of objects followed by 6 room priors (south, north, east, west
wall, "middle of the room", ceiling). Each object becomes an ``ArrangeObject``:

- ``new_object_id``, ``size_in_meters`` {length (x), width (y), height}, ``is_on_the_floor``,
  ``facing``, ``style`` and ``material`` carry over;
- ``rotation.z_angle`` (IDesign: clockwise from north, so facing east is 90) becomes
  ``rotation = -z_angle mod 360`` (counter-clockwise, facing east is 270);
- ``placement.room_layout_elements``: (wall, "on") -> "against wall" wall (IDesign's "on a wall"
  is a back-to-the-wall constraint), (wall, "in the corner") -> "in the corner" wall,
  ("middle of the room" or "ceiling", "on" or "in the corner") -> "on" that element (IDesign
  turns floor/ceiling corners into "on");
- ``placement.objects_in_room``: preposition, ``object_id`` and ``is_adjacent`` carry over. As in
  IDesign's own preprocessing, a reference to "middle of the room" here is dropped and an id that
  names no object resolves to the first object whose id contains it ("sofa" -> "sofa_1").

MetaSpatial's constraint check knows nine prepositions: IDesign's seven object relations (on,
left of, right of, in front, behind, under, above), "in the corner", and "in the middle of",
which its reward checks with the very function of "on" (``func_map`` in ``metaverse_utils.py``).
So "in the middle of" imports as "on", wherever it appears, and is checked as "on" is.

Task ids (``room_name``) name image files, so one that is not a plain file name (a path, ``..``,
a leading dot) is a failure of its row rather than a path outside ``image_dir``.

Anything else (unknown prepositions, references to nothing, missing fields) is an error naming
the object, collected as an ``ImportFailure`` by the readers; nothing is dropped silently.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from spacelm.arrange.task import (
    CEILING,
    FLOOR,
    WALLS,
    ArrangeObject,
    ArrangeTask,
    Relation,
    Room,
    TaskError,
    task_from_dict,
    task_to_dict,
)

ROOM_PRIORS = ("south_wall", "north_wall", "east_wall", "west_wall", FLOOR, CEILING)
INPUT_MARKER = "## Input JSON Data:"
MIDDLE_OF = "in the middle of"  # MetaSpatial checks it as "on"
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True)
class ImportFailure:
    where: str  # e.g. "data.parquet, row 3"
    reason: str


@dataclass(frozen=True)
class ImportResult:
    tasks: tuple[ArrangeTask, ...]
    failures: tuple[ImportFailure, ...]


@dataclass(frozen=True)
class RoomDescription:
    """One entry of ``generated_room_descriptions.json``: GPT-4o text and room size (m)."""

    index: int
    description: str
    length: float
    width: float
    height: float


def task_from_scene_graph(graph: list, *, task_id: str, preference: str,
                          room: tuple[float, float, float] | None = None,
                          image: str | None = None) -> ArrangeTask:
    """An ``ArrangeTask`` from an IDesign scene graph (objects + trailing room priors).

    ``room`` (length, width, height) defaults to the size read from the priors; when both exist
    they must agree. Raises ``TaskError`` naming the offending object.
    """
    if not isinstance(graph, list):
        raise TaskError(f"scene graph: must be a JSON list, got {type(graph).__name__}")
    objects, priors = graph[:-6], graph[-6:]
    prior_ids = [p.get("new_object_id") if isinstance(p, dict) else None for p in priors]
    if prior_ids != list(ROOM_PRIORS):
        raise TaskError(f"scene graph: expected the 6 room priors {', '.join(ROOM_PRIORS)} at the "
                        f"end of the list, got {prior_ids}")
    room = _room_size(priors, room)
    ids = [o.get("new_object_id") if isinstance(o, dict) else None for o in objects]
    built = [_object(o, i, ids) for i, o in enumerate(objects)]
    task = ArrangeTask(task_id, Room(*room), preference, tuple(built), image)
    return task_from_dict(task_to_dict(task))  # one validation path for every source


def _room_size(priors: list, given) -> tuple[float, float, float]:
    try:
        south, east = priors[0]["size_in_meters"], priors[2]["size_in_meters"]
        from_priors = (float(south["length"]), float(east["length"]), float(south["height"]))
    except (KeyError, TypeError, ValueError) as e:
        raise TaskError(f"scene graph: room priors lack wall sizes ({e})") from None
    except OverflowError:
        raise TaskError("scene graph: a room prior size is too large for a float") from None
    if given is None:
        return from_priors
    try:
        given = tuple(float(v) for v in given)
    except (TypeError, ValueError, OverflowError):
        raise TaskError(f"size_of_room: expected three numbers, got {str(given)[:80]}") from None
    if any(abs(a - b) > 1e-6 for a, b in zip(given, from_priors)):
        raise TaskError(f"scene graph: room size {given} disagrees with the priors' {from_priors}")
    return given


def _object(obj, i: int, ids: list) -> ArrangeObject:
    where = f"scene graph object {i}"
    if not isinstance(obj, dict):
        raise TaskError(f"{where}: must be a JSON object")
    try:
        object_id = obj["new_object_id"]
        size = obj["size_in_meters"]
        placement = obj["placement"]
        relations = [_element_relation(e, f"{where} ({object_id})")
                     for e in placement.get("room_layout_elements", [])]
        relations += [r for e in placement.get("objects_in_room", [])
                      if (r := _object_relation(e, ids, f"{where} ({object_id})")) is not None]
        z_angle = (obj.get("rotation") or {}).get("z_angle")
        return ArrangeObject(
            id=object_id, size=(size["length"], size["width"], size["height"]),
            on_floor=obj.get("is_on_the_floor", True), facing=obj.get("facing"),
            relations=tuple(relations), style=obj.get("style"), material=obj.get("material"),
            rotation=None if z_angle is None else float(-z_angle % 360))
    except (KeyError, TypeError, AttributeError) as e:
        raise TaskError(f"{where}: missing or malformed field {e}") from None


def _element_relation(entry: dict, where: str) -> Relation:
    element, preposition = entry["layout_element_id"], entry["preposition"]
    preposition = "on" if preposition == MIDDLE_OF else preposition
    if element in WALLS and preposition in ("on", "in the corner"):
        return Relation("against wall" if preposition == "on" else "in the corner", element)
    if element in (FLOOR, CEILING) and preposition in ("on", "in the corner"):
        return Relation("on", element)
    raise TaskError(f"{where}: unsupported room layout relation {preposition!r} {element!r}")


def _object_relation(entry: dict, ids: list, where: str) -> Relation | None:
    target, preposition = entry["object_id"], entry["preposition"]
    adjacent = bool(entry.get("is_adjacent", False))
    if target == FLOOR:
        return None  # IDesign's preprocess_scene_graph drops these too
    if target in WALLS or target == CEILING:
        return _element_relation({"layout_element_id": target, "preposition": preposition}, where)
    if target not in ids:
        resolved = next((i for i in ids if isinstance(i, str) and target in i), None)
        if resolved is None:
            raise TaskError(f"{where}: relation {preposition!r} refers to {target!r}, which is not "
                            "in the scene graph")
        target = resolved
    return Relation("on" if preposition == MIDDLE_OF else preposition, target, adjacent)


def task_from_row(row: Mapping, *, image: str | None = None) -> ArrangeTask:
    """An ``ArrangeTask`` from one HF row (``problem``, ``answer``, ``images``).

    The room size, preference and id (``room_name``) come from ``answer``; the objects from the
    scene graph after ``## Input JSON Data:`` in ``problem``.
    """
    try:
        meta = json.loads(row["answer"])
        size = meta["size_of_room"]
        room = (size["x"], size["y"], size["z"])
        task_id, preference = meta["room_name"], meta["user_preference"]
    except (KeyError, TypeError, ValueError, RecursionError) as e:  # ValueError: JSONDecodeError
        raise TaskError(f"answer: not MetaSpatial's room JSON ({str(e)[:200]})") from None
    problem = row.get("problem")
    if not isinstance(problem, str):
        raise TaskError(f"problem: expected a string, got {type(problem).__name__}")
    if INPUT_MARKER not in problem:
        hint = (" (it holds a token-id tensor repr: a turn-2 prompt from MetaSpatial's multi-turn"
                " debugging run, whose turn-1 prompt text is lost)" if "tensor([" in problem else "")
        raise TaskError(f"problem: no {INPUT_MARKER!r} section, so no scene graph{hint}")
    try:
        graph = json.loads(problem.split(INPUT_MARKER, 1)[1])
    except json.JSONDecodeError as e:
        raise TaskError(f"problem: the scene graph is not JSON ({e.msg}, line {e.lineno})") from None
    except (ValueError, RecursionError):  # a 4300+ digit number, nesting past the recursion limit
        raise TaskError("problem: the scene graph JSON cannot be read (a huge number or deep "
                        "nesting)") from None
    return task_from_scene_graph(graph, task_id=task_id, preference=preference, room=room,
                                 image=image)


def read_parquet(path: str | os.PathLike, *, image_dir: str | os.PathLike | None = None
                 ) -> ImportResult:
    """Convert every row of a MetaSpatial HF parquet file; failures name the row and reason.

    With ``image_dir`` each row's first image is written there as ``{task id}.png`` and the task
    records that path; without it, images are not read.
    """
    try:
        import pyarrow
        import pyarrow.parquet as pq  # optional: only this reader needs it
    except ImportError as e:
        raise ImportError("reading MetaSpatial parquet files needs pyarrow (pip install pyarrow)") from e

    tasks, failures = [], []
    name = os.path.basename(os.fspath(path))
    columns = ["problem", "answer"] + (["images"] if image_dir is not None else [])
    try:
        parquet = pq.ParquetFile(path)
    except pyarrow.ArrowException as e:  # ArrowInvalid is a ValueError, but names no file
        raise TaskError(f"{path}: not a parquet file ({e})") from None
    missing = [c for c in columns if c not in parquet.schema_arrow.names]
    if missing:
        raise TaskError(f"{path}: no {', '.join(missing)} column; MetaSpatial's files have {', '.join(columns)}")
    rows = (r for batch in parquet.iter_batches(batch_size=64, columns=columns) for r in batch.to_pylist())
    for index, row in enumerate(rows):
        try:
            task = task_from_row(row)
            if image_dir is not None:
                task = _with_image(task, row, image_dir)
            tasks.append(task)
        except TaskError as e:
            failures.append(ImportFailure(f"{name}, row {index}", str(e)))
    return ImportResult(tuple(tasks), tuple(failures))


def _with_image(task: ArrangeTask, row: Mapping, image_dir) -> ArrangeTask:
    images = row.get("images") or []
    if not images or not isinstance(images[0], Mapping) or not images[0].get("bytes"):
        raise TaskError("images: the row has no image bytes")
    if _FILE_NAME.fullmatch(task.id) is None:
        raise TaskError(f"room_name: {task.id[:80]!r} cannot name an image file (expected letters, "
                        "digits, '.', '_' or '-', not starting with '.')")
    os.makedirs(image_dir, exist_ok=True)
    target = os.path.join(os.fspath(image_dir), f"{task.id}.png")
    with open(target, "wb") as f:
        f.write(images[0]["bytes"])
    return ArrangeTask(task.id, task.room, task.preference, task.objects, target)


def read_room_descriptions(path: str | os.PathLike
                           ) -> tuple[list[RoomDescription], list[ImportFailure]]:
    """Read ``generated_room_descriptions.json`` (``[{description, size: {x, y, z}}]``).

    Entries with a missing or non-positive size (the file has rooms of height 0) are failures.
    """
    try:
        with open(path, "rb") as f:
            entries = json.loads(f.read().decode("utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise TaskError(f"{os.fspath(path)}: not a readable JSON file ({str(e)[:120]})") from None
    if not isinstance(entries, list):
        raise TaskError(f"{os.fspath(path)}: expected a JSON list of rooms, got {type(entries).__name__}")
    rooms, failures = [], []
    name = os.path.basename(os.fspath(path))
    for index, entry in enumerate(entries):
        try:
            size = entry["size"]
            dims = [size[k] for k in "xyz"]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf
                       for v in dims):
                raise ValueError(f"size {str(size)[:80]} must have finite x, y, z > 0")
            rooms.append(RoomDescription(index, str(entry["description"]), *map(float, dims)))
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            failures.append(ImportFailure(f"{name}, entry {index}", str(e)))
    return rooms, failures
