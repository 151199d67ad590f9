"""Matterport3D houses (original release) -> one ``RoomSample`` per region of the ``.house`` file.

Files read under ``root/<house>/`` (the unzipped ``v1/scans/<house>/`` layout):

- ``house_segmentations/<house>.house``: ASCII, first line ``ASCII 1.1``, then one record per line,
  fields split on whitespace (datasets.md §2.2, checked against ``MPHouse::ReadAsciiFile`` in
  niessner/Matterport ``code/gaps/apps/mpview/mp.cpp``). We use three record types::

      H name label #images #panoramas #vertices #surfaces #segments #objects #categories #regions ...
      R region_index level_index 0 0 label px py pz xlo ylo zlo xhi yhi zhi height 0 0 0 0
      C category_index category_mapping_index category_mapping_name mpcat40_index mpcat40_name 0 0 0 0 0
      O object_index region_index category_index px py pz a0x a0y a0z a1x a1y a1z r0 r1 r2 0 0 0 0 0 0 0 0

  Records refer to each other by position (the reader's ``regions.Kth(index)``), so indices must
  equal positions. Only the first ``#regions`` R lines are regions: mp.cpp's writer also tags
  portals ``R`` (its reader expects ``P``), and it writes them after the regions.
- ``category_mapping.tsv`` (``v1/metadata/`` of the release; looked up in ``root``, ``root/metadata``
  and ``root/../metadata``): ``index`` (= a C line's ``category_mapping_index``) -> ``nyu40id``. The
  chain is O -> C -> tsv row (VLA-3D skips the C line, a bug). A row whose ``nyu40class`` names
  another NYU40 class than its ``nyu40id`` trusts the name: rug/carpet rows say 40 but ``floor mat``
  (20), an upstream bug (datasets.md §1.9). An empty ``nyu40id`` is 0 (void).
- Points: ``region_segmentations/region<i>.ply`` (one mesh per region; exact room extent) when that
  folder exists, else the vertices of ``house_segmentations/<house>.ply``, each given to the R-line
  box it lies deepest inside (boxes overlap; a vertex outside every box is dropped and counted as
  ``point_outside_region`` in the nearest region). Vertex colours are required.

Objects: an O line is an OBB (centre, axes a0 and a1, a2 = a0 x a1, half-sizes r); ``boxfit`` turns
it into a yaw-only box (a tilted one becomes the yaw box around its corners). An object belongs to
its ``region_index``; one with region -1 is dropped as ``object_without_region`` in the region
whose box centre is nearest, one with a degenerate OBB (zero axis, negative radius) as
``object_without_box``. Walls thicker than ``MAX_WALL_THICKNESS`` are not single straight walls (an
OBB around a corner) and are dropped as ``wall_not_straight``; the rest, with doors and windows,
go through ``layout_from_boxes``. Regions without points give no sample. Room types come from the
R line's one-character code (``ROOM_TYPES``). The habitat ``mp3d`` release (GLB + ``_semantic.ply``)
is not read.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spacelm.datasets.boxfit import yaw_box_from_obb
from spacelm.datasets.rooms import (
    LABEL_SETS,
    WALL,
    ConversionError,
    LabelledBox,
    RoomSample,
    layout_from_boxes,
)
from spacelm.datasets.source_files import read_cloud, safe_id
from spacelm.scene.categories import nyu40_id

SOURCE = "matterport"
MAPPING_NAME = "category_mapping.tsv"
MAX_WALL_THICKNESS = 0.5  # metres
ROOM_TYPES = {
    "a": "bathroom", "b": "bedroom", "c": "closet", "d": "dining room", "e": "entryway",
    "f": "family room", "g": "garage", "h": "hallway", "i": "library", "j": "laundry room",
    "k": "kitchen", "l": "living room", "m": "meeting room", "n": "lounge", "o": "office",
    "p": "porch", "r": "rec room", "s": "stairs", "t": "toilet", "u": "utility room", "v": "tv room",
    "w": "workout room", "x": "outdoor", "y": "balcony", "z": "other room", "B": "bar",
    "C": "classroom", "D": "dining booth", "S": "spa", "Z": "junk", "-": "",
}
# Fewest fields a record must have for what we read (the documented lines have 20, 11 and 24).
_MIN_FIELDS = {"H": 13, "R": 15, "C": 4, "O": 16}


@dataclass(frozen=True)
class Region:
    index: int
    code: str  # one-character room label, "-" for none
    lo: np.ndarray  # (3,) AABB corner, metres
    hi: np.ndarray


@dataclass(frozen=True)
class HouseObject:
    region: int  # -1: none
    category: int  # position of a C line, -1: none
    centre: np.ndarray  # (3,)
    axes: np.ndarray  # (3, 3), rows a0, a1, a0 x a1
    radii: np.ndarray  # (3,) half-sizes


@dataclass(frozen=True)
class House:
    regions: list[Region]
    categories: list[int]  # C line position -> category_mapping index
    objects: list[HouseObject]


def list_scenes(root: Path) -> list[str]:
    """Houses under ``root`` that have ``house_segmentations/<house>.house``, sorted."""
    return sorted(p.name for p in Path(root).iterdir()
                  if (p / "house_segmentations" / f"{p.name}.house").is_file())


def convert_scene(root: Path, scene: str, *, label_set: str = "nyu40") -> list[RoomSample]:
    """One sample per region with points; see the module docstring."""
    if label_set not in LABEL_SETS:
        raise ValueError(f"label_set must be one of {LABEL_SETS}, got {label_set!r}")
    root, folder = Path(root), Path(root) / scene
    house = read_house(folder / "house_segmentations" / f"{scene}.house")
    mapping_path = find_category_mapping(root)
    classes = house_classes(house, read_category_mapping(mapping_path), mapping_path)
    points, outside = region_points(folder, scene, house.regions)
    by_region, drops = _objects_by_region(house, classes)
    samples = []
    for region, (xyz, rgb) in zip(house.regions, points):
        if len(xyz) == 0:
            continue
        objects, thick = drop_thick_walls(by_region[region.index])
        layout, dropped = layout_from_boxes(objects, label_set=label_set)
        dropped.update(drops[region.index], wall_not_straight=thick,
                       point_outside_region=int(outside[region.index]))
        samples.append(RoomSample(
            safe_id(SOURCE, scene, region.index), SOURCE, scene, str(region.index), xyz, rgb,
            layout, {k: v for k, v in dropped.items() if v}, ROOM_TYPES.get(region.code, region.code)))
    return samples


def read_house(path: Path) -> House:
    """The H, R, C and O records of a ``.house`` file, checked against the H line's counts."""
    if not path.is_file():
        raise ConversionError(f"{path}: missing file")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines or not lines[0].startswith("ASCII"):
        raise ConversionError(f"{path}, line 1: expected 'ASCII 1.1' (not a .house file?)")
    records: dict[str, list[tuple[int, list[str]]]] = {kind: [] for kind in _MIN_FIELDS}
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if words and words[0] in records:
            if len(words) < _MIN_FIELDS[words[0]]:
                raise ConversionError(f"{path}, line {number}: {words[0]} record has {len(words)} "
                                      f"fields, expected at least {_MIN_FIELDS[words[0]]}")
            records[words[0]].append((number, words))
    if len(records["H"]) != 1:
        raise ConversionError(f"{path}: expected one H line, found {len(records['H'])}")
    n_objects, n_categories, n_regions = _parse(path, *records["H"][0], lambda w: [int(v) for v in w[8:11]])
    found = {"R": len(records["R"]), "C": len(records["C"]), "O": len(records["O"])}
    if found["R"] < n_regions or found["C"] != n_categories or found["O"] != n_objects:
        raise ConversionError(f"{path}: the H line declares {n_regions} regions, {n_categories} "
                              f"categories and {n_objects} objects; found {found['R']} R, "
                              f"{found['C']} C and {found['O']} O lines (truncated file?)")
    regions = [_parse(path, n, w, _region) for n, w in records["R"][:n_regions]]
    categories = [_parse(path, n, w, lambda w: (int(w[1]), int(w[2]))) for n, w in records["C"]]
    objects = [_parse(path, n, w, _object) for n, w in records["O"]]
    for kind, indices in (("R", [r.index for r in regions]), ("C", [c[0] for c in categories]),
                          ("O", [o[0] for o in objects])):
        if indices != list(range(len(indices))):
            raise ConversionError(f"{path}: {kind} records are not numbered 0, 1, 2, ... in order")
    objects = [o for _, o in objects]
    for o in objects:
        if not (-1 <= o.region < n_regions and -1 <= o.category < n_categories):
            raise ConversionError(f"{path}: an O record refers to region {o.region} or category "
                                  f"{o.category}, outside the file's {n_regions} regions and "
                                  f"{n_categories} categories")
    return House(regions, [c[1] for c in categories], objects)


def _parse(path: Path, number: int, words: list[str], build):
    try:
        return build(words)
    except ValueError as err:
        raise ConversionError(f"{path}, line {number}: malformed {words[0]} record ({err})") from None


def _region(w: list[str]) -> Region:
    return Region(int(w[1]), w[5], np.array(w[9:12], dtype=np.float64),
                  np.array(w[12:15], dtype=np.float64))


def _object(w: list[str]) -> tuple[int, HouseObject]:
    a0, a1 = np.array(w[7:10], dtype=np.float64), np.array(w[10:13], dtype=np.float64)
    return int(w[1]), HouseObject(int(w[2]), int(w[3]), np.array(w[4:7], dtype=np.float64),
                                  np.stack([a0, a1, np.cross(a0, a1)]), np.array(w[13:16], dtype=np.float64))


def find_category_mapping(root: Path) -> Path:
    """``category_mapping.tsv`` in ``root``, ``root/metadata`` or ``root/../metadata``."""
    for folder in (root, root / "metadata", root.parent / "metadata"):
        if (folder / MAPPING_NAME).is_file():
            return folder / MAPPING_NAME
    raise ConversionError(f"{root / MAPPING_NAME}: missing file (also looked in {root / 'metadata'} "
                          f"and {root.parent / 'metadata'}); it ships in the release's v1/metadata")


def read_category_mapping(path: Path) -> dict[int, int]:
    """tsv ``index`` -> NYU40 id (0 when empty; the ``nyu40class`` name wins when it disagrees)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t")
        missing = {"index", "nyu40id", "nyu40class"} - set(rows.fieldnames or ())
        if missing:
            raise ConversionError(f"{path}: no {', '.join(sorted(missing))} column")
        mapping = {}
        for row in rows:
            try:
                index = int(row["index"])
            except (TypeError, ValueError):
                raise ConversionError(f"{path}, line {rows.line_num}: index {row['index']!r} is "
                                      "not an integer") from None
            number = (row["nyu40id"] or "").strip()
            mapping[index] = _by_name(row["nyu40class"], int(number) if number.isdigit() else 0)
    return mapping


def _by_name(name: str | None, given: int) -> int:
    try:
        return nyu40_id(name or "")
    except ValueError:
        return given


def house_classes(house: House, mapping: dict[int, int], mapping_path: Path) -> list[int]:
    """NYU40 id of each object through O -> C -> tsv; no category is 0 (void)."""
    missing = sorted({house.categories[o.category] for o in house.objects
                      if o.category >= 0 and house.categories[o.category] not in mapping})
    if missing:
        raise ConversionError(f"{mapping_path}: no row for category_mapping index "
                              f"{', '.join(map(str, missing[:10]))} used by the .house file "
                              "(a different release of the tsv?)")
    return [mapping[house.categories[o.category]] if o.category >= 0 else 0 for o in house.objects]


def _objects_by_region(house: House, classes: list[int]
                       ) -> tuple[dict[int, list[LabelledBox]], dict[int, Counter]]:
    """Labelled boxes per region index, and per region what was dropped before the layout.

    ``object_without_region`` (region -1) is counted in the region whose box centre is nearest;
    ``object_without_box`` is an O line whose OBB is degenerate (zero axis, negative radius).
    """
    by_region: dict[int, list[LabelledBox]] = {r.index: [] for r in house.regions}
    drops = {r.index: Counter() for r in house.regions}
    if not house.regions:
        return by_region, drops
    centres = np.array([(r.lo + r.hi) / 2 for r in house.regions]).reshape(-1, 3)
    for o, nyu40 in zip(house.objects, classes):
        region = o.region if o.region >= 0 else int(np.argmin(np.linalg.norm(centres - o.centre, axis=1)))
        try:
            box, _ = yaw_box_from_obb(o.centre, 2 * o.radii, o.axes)
        except ValueError:
            drops[region]["object_without_box"] += 1
            continue
        if o.region >= 0:
            by_region[o.region].append(LabelledBox(nyu40, box))
        else:
            drops[region]["object_without_region"] += 1
    return by_region, drops


def drop_thick_walls(objects: list[LabelledBox], max_thickness: float = MAX_WALL_THICKNESS
                     ) -> tuple[list[LabelledBox], int]:
    """Objects without the wall boxes thicker than ``max_thickness``, and how many those were.

    A straight wall's box is thin; a thick "wall" box wraps a corner or a whole room, and
    ``wall_from_box`` would draw a wall through the middle of it.
    """
    kept = [o for o in objects
            if o.nyu40_id != WALL or min(o.box.scale_x, o.box.scale_y) <= max_thickness]
    return kept, len(objects) - len(kept)


def region_points(folder: Path, scene: str, regions: list[Region]
                  ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Per region (xyz, rgb), and per region the vertices dropped near it; see the module docstring."""
    if (folder / "region_segmentations").is_dir():
        clouds = [read_cloud(folder / "region_segmentations" / f"region{r.index}.ply") for r in regions]
        return [(c.xyz, c.rgb) for c in clouds], np.zeros(len(regions), np.int64)
    mesh = read_cloud(folder / "house_segmentations" / f"{scene}.ply")
    owner, depth = _deepest_box(mesh.xyz, regions)
    inside = depth <= 0
    points = [(mesh.xyz[inside & (owner == k)], mesh.rgb[inside & (owner == k)])
              for k in range(len(regions))]
    return points, np.bincount(owner[~inside], minlength=len(regions))


def _deepest_box(xyz: np.ndarray, regions: list[Region]) -> tuple[np.ndarray, np.ndarray]:
    """Per point, the region box it lies deepest inside (or nearest to), and that signed distance.

    The distance is Chebyshev-style: <= 0 inside, else the largest excess over a face. A loop over
    regions, not points, keeps memory O(N) for houses of millions of vertices.
    """
    owner = np.zeros(len(xyz), np.int64)
    best = np.full(len(xyz), np.inf)
    for k, r in enumerate(regions):
        distance = np.maximum(r.lo - xyz, xyz - r.hi).max(axis=1)
        closer = distance < best
        owner[closer], best[closer] = k, distance[closer]
    return owner, best
