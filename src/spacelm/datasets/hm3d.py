"""HM3D-Semantics v0.2 scenes -> one ``RoomSample`` per annotated region.

Files read under ``root/<NNNNN-hash>/`` (the ``hm3d-*-semantic-annots-v0.2`` layout):

- ``<hash>.semantic.txt``: first line ``HM3D Semantic Annotations``, then one object per line,
  ``<id>,<HEXCOLOR>,"<raw label>",<region id>`` (datasets.md §2.5; the label may hold commas inside
  its quotes, as habitat-sim's ``buildHM3DHouse`` notes). Regions carry no names.
- ``<hash>.semantic.ply``: a PLY export of the semantic mesh, because the released
  ``.semantic.glb`` paints objects into a texture, and reading it needs a glTF loader, an image
  decoder and UV lookup (heavy dependencies we avoid). Any points or vertices sampled from it with
  nearest-texel colours will do, e.g. (not run here) ``m = trimesh.load(glb, force="mesh");
  m.visual = m.visual.to_color(); m.export(ply)``; points whose colour matches no listed object
  are unannotated, so a bad export shows up as rooms with few points. Its ``red green blue`` are
  the semantic colours; a PLY that
  also holds the textured mesh's colours (sampled at the same points, as VLA-3D does) stores the
  semantic ones as ``semantic_red semantic_green semantic_blue`` and the appearance in ``red green
  blue``. Without appearance colours the points are grey (``GREY``), never the label colours, which
  would give the labels away to a model. Coordinates: metres, z up (habitat's config: up [0,0,1]).
- ``Per_Scene_Region_Weighted_Votes.csv`` (optional; HM3DSem statistics, in ``root`` or its
  parent): ``Scene Name, Region #, ..., Weighted Room Proposal`` gives room types; a ``Tie: ...``
  proposal becomes ``unknown room`` (as VLA-3D does). Without it room types are "".

A point belongs to the object whose colour it has exactly (no match: unannotated, in no room), and
through it to the object's region; a room's points are its objects' points. Each object with at
least ``MIN_OBJECT_POINTS`` points (VLA-3D's threshold) gets the yaw-only minimum-area box of its
points (``boxfit``); smaller ones count as ``object_too_few_points``, and objects of region -1 as
``object_without_region`` in the room whose points' centre is nearest. Walls thicker than
``matterport.MAX_WALL_THICKNESS`` (a wall mesh around a corner or a whole room) count as
``wall_not_straight``. Regions without points give no sample.

NYU40 classes come from ``NAME_TO_NYU40`` and the NYU40 names themselves (with their spelling
variants), tried on the whole label, then on its last word (``office chair`` -> chair, ``kitchen
cabinet`` -> cabinet), then on that word without a plural ``s``. The last-word rule never yields
wall, floor, ceiling, door or window, so ``cabinet door`` or ``shower door`` never become a wall
opening; those need the whole label. Coverage: the common furniture and structure labels of HM3DSem
(the NYU40 names, plus couch, armchair, tv, fridge, painting, poster, rug, carpet, cushion, shelf,
bookcase, bedside table, chest of drawers, ...); anything else stays unmapped and is counted as
``unknown_class`` by ``layout_from_boxes``. Thin (door frame, window frame), generic (decoration,
object) and ambiguous (stool, wardrobe, monitor) labels are deliberately left out.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spacelm.datasets.boxfit import fit_yaw_box
from spacelm.datasets.matterport import drop_thick_walls
from spacelm.datasets.rooms import (
    CEILING,
    DOOR,
    FLOOR,
    LABEL_SETS,
    WALL,
    WINDOW,
    ConversionError,
    LabelledBox,
    RoomSample,
    layout_from_boxes,
)
from spacelm.datasets.source_files import read_cloud, safe_id
from spacelm.scene.categories import normalize_label, nyu40_id

SOURCE = "hm3d"
HEADER = "HM3D Semantic Annotations"
VOTES_NAME = "Per_Scene_Region_Weighted_Votes.csv"
SEMANTIC_COLOR = ("semantic_red", "semantic_green", "semantic_blue")
GREY = 128
MIN_OBJECT_POINTS = 10
STRUCTURE = frozenset({WALL, FLOOR, CEILING, DOOR, WINDOW})
NAME_TO_NYU40 = {
    "couch": 6, "sofa chair": 6, "armchair": 5, "office chair": 5, "tv": 25, "tv screen": 25,
    "fridge": 24, "painting": 11, "poster": 11, "photo": 11, "picture frame": 11, "rug": 20,
    "carpet": 20, "mat": 20, "doormat": 20, "cushion": 18, "shelf": 15, "shelving": 15,
    "bookcase": 10, "bedside table": 32, "night table": 32, "chest of drawers": 17, "drawers": 17,
    "tub": 36, "blind": 13, "drape": 16, "book": 23, "countertop": 12, "worktop": 12,
    "cupboard": 3, "front door": DOOR, "entrance door": DOOR, "sliding door": DOOR,
    "glass door": DOOR, "door": DOOR, "window": WINDOW, "wall": WALL, "floor": FLOOR,
    "ceiling": CEILING,
}


@dataclass(frozen=True)
class SemanticObject:
    colour: int  # 0xRRGGBB
    name: str
    region: int  # -1: none


def list_scenes(root: Path) -> list[str]:
    """Scene folders under ``root`` that hold a ``*.semantic.txt``, sorted."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and any(p.glob("*.semantic.txt")))


def convert_scene(root: Path, scene: str, *, label_set: str = "nyu40") -> list[RoomSample]:
    """One sample per region with points; see the module docstring."""
    if label_set not in LABEL_SETS:
        raise ValueError(f"label_set must be one of {LABEL_SETS}, got {label_set!r}")
    root, folder = Path(root), Path(root) / scene
    txt = _semantic_txt(folder)
    objects = read_semantic_txt(txt)
    xyz, rgb, owner = _labelled_points(txt.with_name(txt.name[: -len(".txt")] + ".ply"), objects)
    room_types = read_region_votes(root).get(scene, {})
    members = _members(owner, len(objects))
    regions = np.where(owner >= 0, np.array([o.region for o in objects])[owner], -1)
    room_ids = np.unique(regions[regions >= 0]).tolist()
    homeless = _nearest_rooms(xyz, regions, room_ids, [xyz[m].mean(axis=0) for o, m in
                                                       zip(objects, members) if o.region < 0 and len(m)])
    samples = []
    for room, lost in zip(room_ids, homeless):
        boxes, small = _room_boxes(xyz, objects, members, room)
        boxes, thick = drop_thick_walls(boxes)
        layout, dropped = layout_from_boxes(boxes, label_set=label_set)
        dropped.update(object_too_few_points=small, wall_not_straight=thick, object_without_region=lost)
        mask = regions == room
        samples.append(RoomSample(safe_id(SOURCE, scene, room), SOURCE, scene, str(room), xyz[mask],
                                  rgb[mask], layout, {k: v for k, v in dropped.items() if v},
                                  room_types.get(room, "")))
    return samples


def _semantic_txt(folder: Path) -> Path:
    found = sorted(folder.glob("*.semantic.txt"))
    if len(found) != 1:
        raise ConversionError(f"{folder}: expected one *.semantic.txt, found {len(found)}")
    return found[0]


def read_semantic_txt(path: Path) -> list[SemanticObject]:
    """The objects of a ``.semantic.txt``, in file order; bad lines raise naming file and line."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines or HEADER not in lines[0]:
        raise ConversionError(f"{path}, line 1: expected {HEADER!r} (not an HM3D semantic file?)")
    objects, seen = [], {}
    for number, row in enumerate(csv.reader(lines[1:]), start=2):
        if not row:
            continue
        try:
            _, colour, name, region = row
            obj = SemanticObject(int(colour, 16), name.strip(), int(region))
        except ValueError:
            raise ConversionError(f"{path}, line {number}: expected id,HEXCOLOR,\"label\",region, "
                                  f"got {','.join(row)!r}") from None
        if obj.colour in seen:
            raise ConversionError(f"{path}, line {number}: colour {colour} repeats line {seen[obj.colour]}")
        seen[obj.colour] = number
        objects.append(obj)
    if not objects:
        raise ConversionError(f"{path}: no objects after the header line")
    return objects


def _labelled_points(path: Path, objects: list[SemanticObject]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xyz, appearance colours (grey if absent) and the index of each point's object (-1: none)."""
    cloud = read_cloud(path)
    if all(c in cloud.extra for c in SEMANTIC_COLOR):
        semantic, rgb = np.stack([cloud.extra[c] for c in SEMANTIC_COLOR], axis=1), cloud.rgb
    else:
        semantic, rgb = cloud.rgb, np.full_like(cloud.rgb, GREY)
    code = semantic.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    colours = np.array([o.colour for o in objects], np.int64)
    order = np.argsort(colours)
    slot = np.minimum(np.searchsorted(colours[order], code), len(colours) - 1)
    return cloud.xyz, rgb, np.where(colours[order][slot] == code, order[slot], -1)


def _members(owner: np.ndarray, count: int) -> list[np.ndarray]:
    """Indices of each object's points, by one sort of the owner array."""
    order = np.argsort(owner, kind="stable")
    ids = np.arange(count)
    starts = np.searchsorted(owner[order], ids, side="left")
    ends = np.searchsorted(owner[order], ids, side="right")
    return [order[s:e] for s, e in zip(starts, ends)]


def _room_boxes(xyz: np.ndarray, objects: list[SemanticObject], members: list[np.ndarray],
                room: int) -> tuple[list[LabelledBox], int]:
    """Fitted boxes of the room's objects with enough points, and how many had too few."""
    boxes, small = [], 0
    for obj, points in zip(objects, members):
        if obj.region != room:
            continue
        if len(points) < MIN_OBJECT_POINTS:
            small += 1
        else:
            boxes.append(LabelledBox(hm3d_nyu40(obj.name), fit_yaw_box(xyz[points])))
    return boxes, small


def _nearest_rooms(xyz: np.ndarray, regions: np.ndarray, room_ids: list[int],
                   centres: list[np.ndarray]) -> list[int]:
    """Per room, how many of ``centres`` (region-less objects) lie nearest its points' centre."""
    counts = [0] * len(room_ids)
    if room_ids and centres:
        room_centres = np.array([xyz[regions == r].mean(axis=0) for r in room_ids])
        for c in centres:
            counts[int(np.argmin(np.linalg.norm(room_centres - c, axis=1)))] += 1
    return counts


@functools.cache
def hm3d_nyu40(name: str) -> int:
    """NYU40 id of an HM3D label (0: unmapped); see the module docstring for the rules.

    >>> hm3d_nyu40("Kitchen Cabinet"), hm3d_nyu40("couch"), hm3d_nyu40("towels")
    (3, 6, 27)
    >>> hm3d_nyu40("cabinet door"), hm3d_nyu40("door"), hm3d_nyu40("door frame")
    (0, 8, 0)
    """
    key = normalize_label(name)
    found = _lookup(key)
    if found or not key:
        return found
    head = key.split()[-1]
    found = _lookup(head) or (_lookup(head[:-1]) if head.endswith("s") else 0)
    return 0 if found in STRUCTURE else found


def _lookup(key: str) -> int:
    if key in NAME_TO_NYU40:
        return NAME_TO_NYU40[key]
    try:
        return nyu40_id(key)
    except ValueError:
        return 0


@functools.lru_cache(maxsize=4)
def read_region_votes(root: Path) -> dict[str, dict[int, str]]:
    """scene -> region -> room type from the HM3DSem statistics CSV, if present in root or its parent."""
    path = next((p for p in (root / VOTES_NAME, root.parent / VOTES_NAME) if p.is_file()), None)
    if path is None:
        return {}
    votes: dict[str, dict[int, str]] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if "Scene Name" not in header or "Region #" not in header:
            raise ConversionError(f"{path}: expected 'Scene Name' and 'Region #' columns")
        scene_at, region_at = header.index("Scene Name"), header.index("Region #")
        for row in reader:
            try:
                region = int(row[region_at])
            except (IndexError, ValueError):
                raise ConversionError(f"{path}, line {reader.line_num}: bad 'Region #'") from None
            label = row[-1].strip()
            votes.setdefault(row[scene_at].strip(), {})[region] = (
                "unknown room" if label.startswith("Tie:") else normalize_label(label))
    return votes
