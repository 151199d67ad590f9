"""Structured3D scenes -> one ``RoomSample`` per room: walls, doors and windows, no object boxes.

Files read under ``root/scene_<id>/`` (Structured3D ``data_organization.md``; units are millimetres,
z up, converted to metres here):

- ``annotation_3d.json``: ``junctions[{ID, coordinate}]``, ``planes[{ID, type, normal, offset}]``,
  ``semantics[{ID, type, planeID}]``, ``planeLineMatrix`` (one row per plane, one column per line)
  and ``lineJunctionMatrix`` (one row per line, one column per junction). The official code indexes
  planes and junctions by position, so IDs must equal positions. A semantic whose type is not
  door, window or outwall is a room (``metadata/room_types.txt``: living room, kitchen, ...).
- ``point_cloud.ply``: Structured3D ships no point cloud. We read the per-scene cloud written by
  RoomFormer's ``data_preprocess/stru3d/generate_point_cloud_stru3d.py`` (panorama depth back-
  projected into the annotation frame; ASCII x y z in mm, red green blue; xy rounded to 10 mm and z
  to 100 mm by that script), which the Hugging Face Structured3D-SpatialLM card names as its source.
  Each room takes the points inside its floor polygon grown by ``CROP_MARGIN`` and within its
  height (plus the margin).
- ``bbox_3d.json`` (optional): object OBBs without a class (the class lives in the rendered
  ``semantic.png``/``instance.png`` pixels, which need an image decoder we do not depend on), so
  objects are not converted; each box whose centroid lies in a room is counted there as
  ``object_without_class``.

Geometry (inferred from the official ``visualize_3d.py``/``visualize_floorplan.py``, which draw
exactly these relations): a room's planes are its floor, ceiling and walls. A wall plane's junctions
span the wall: its segment runs between the extreme junctions along the plane's horizontal
direction, at the lowest junction's z, with the junctions' z span as height and thickness 0 (room
walls are interior faces; SpatialLM's Structured3D layouts also write 0). Door and window
semantics own the planes of the opening's reveal; the wall planes around a hole share its corner
junctions, which is how ``visualize_3d.py`` finds holes. So an opening belongs to the room wall
sharing most junctions with it; its width is the junctions' extent along that wall, its centre
their midpoint projected onto the wall, its height their z span. A door between two rooms appears
in both. The room's footprint is the polygon of its floor plane's edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon

from spacelm.datasets.rooms import LABEL_SETS, ConversionError, RoomSample
from spacelm.datasets.source_files import read_cloud, read_json, safe_id
from spacelm.scene.entities import Door, Wall, Window
from spacelm.scene.layout import Layout

SOURCE = "structured3d"
MM = 0.001  # metres per millimetre
POINT_CLOUD = "point_cloud.ply"
CROP_MARGIN = 0.05  # metres
NOT_ROOMS = frozenset({"door", "window", "outwall"})


@dataclass(frozen=True)
class Structure:
    """The annotation as arrays: junctions in metres, and each plane's junctions and edges."""

    junctions: np.ndarray  # (J, 3), metres
    plane_types: list[str]
    normals: np.ndarray  # (P, 3)
    plane_junctions: list[np.ndarray]  # per plane, sorted junction indices
    plane_edges: list[np.ndarray]  # per plane, (k, 2) junction index pairs
    semantics: list[dict]


def list_scenes(root: Path) -> list[str]:
    """Scene folders under ``root`` that hold ``annotation_3d.json``, sorted."""
    return sorted(p.name for p in Path(root).iterdir() if (p / "annotation_3d.json").is_file())


def convert_scene(root: Path, scene: str, *, label_set: str = "nyu40") -> list[RoomSample]:
    """One sample per room with points; ``label_set`` is checked but unused (no object boxes)."""
    if label_set not in LABEL_SETS:
        raise ValueError(f"label_set must be one of {LABEL_SETS}, got {label_set!r}")
    folder = Path(root) / scene
    path = folder / "annotation_3d.json"
    structure = read_structure(path)
    cloud = read_cloud(folder / POINT_CLOUD)
    xyz = (cloud.xyz.astype(np.float64) * MM).astype(np.float32)
    boxes = read_box_centroids(folder / "bbox_3d.json")
    openings = [s for s in structure.semantics if s["type"] in ("door", "window")]
    samples = []
    for room in structure.semantics:
        if room["type"] in NOT_ROOMS:
            continue
        planes = room["planeID"]
        footprint = room_footprint(structure, planes, f"{path}: room {room['ID']}")
        z_range = _z_range(structure, planes)
        inside = _in_room(xyz, footprint.buffer(CROP_MARGIN), z_range, CROP_MARGIN)
        if not inside.any():
            continue
        layout = room_layout(structure, planes, openings)
        dropped = {"object_without_class": int(_in_room(boxes, footprint, z_range, 0.0).sum())}
        samples.append(RoomSample(
            safe_id(SOURCE, scene, room["ID"]), SOURCE, scene, str(room["ID"]), xyz[inside],
            cloud.rgb[inside], layout, {k: v for k, v in dropped.items() if v}, room["type"]))
    return samples


def read_structure(path: Path) -> Structure:
    """Parse and check ``annotation_3d.json``; any inconsistency raises naming the file."""
    data = read_json(path, dict)
    try:
        junctions = np.array([j["coordinate"] for j in data["junctions"]], np.float64).reshape(-1, 3) * MM
        planes = data["planes"]
        normals = np.array([p["normal"] for p in planes], np.float64).reshape(-1, 3)
        plane_lines = np.asarray(data["planeLineMatrix"], dtype=np.int64)
        line_junctions = np.asarray(data["lineJunctionMatrix"], dtype=np.int64)
        semantics = [{"ID": s["ID"], "type": str(s["type"]), "planeID": [int(p) for p in s["planeID"]]}
                     for s in data["semantics"]]
        _check_ids(path, "junctions", data["junctions"])
        _check_ids(path, "planes", planes)
    except (KeyError, TypeError, ValueError) as err:
        raise ConversionError(f"{path}: malformed annotation ({type(err).__name__}: {err})") from None
    shape = (len(planes), line_junctions.shape[0] if line_junctions.ndim == 2 else -1)
    if plane_lines.shape != shape or line_junctions.shape[1:] != (len(junctions),):
        raise ConversionError(f"{path}: planeLineMatrix is {plane_lines.shape} and lineJunctionMatrix "
                              f"{line_junctions.shape}, expected (planes, lines) and (lines, "
                              f"junctions) with {len(planes)} planes and {len(junctions)} junctions")
    used = [p for s in semantics for p in s["planeID"]]
    if any(not 0 <= p < len(planes) for p in used):
        raise ConversionError(f"{path}: a semantic refers to a plane outside 0..{len(planes) - 1}")
    edges = _line_edges(line_junctions)
    plane_edges = [edges[np.flatnonzero(row)] for row in plane_lines]
    return Structure(junctions, [str(p["type"]) for p in planes], normals,
                     [np.unique(e[e >= 0]) for e in plane_edges], plane_edges, semantics)


def _check_ids(path: Path, name: str, items: list[dict]) -> None:
    if [item["ID"] for item in items] != list(range(len(items))):
        raise ConversionError(f"{path}: {name} IDs are not 0, 1, 2, ... in order (the official "
                              "code indexes them by position)")


def _line_edges(line_junctions: np.ndarray) -> np.ndarray:
    """(lines, 2) junction pairs; a line that does not join exactly two junctions gets (-1, -1)."""
    counts = (line_junctions != 0).sum(axis=1)
    order = np.argsort(line_junctions == 0, axis=1, kind="stable")[:, :2]  # nonzero columns first
    return np.where((counts == 2)[:, None], order, -1)


def room_footprint(structure: Structure, planes: list[int], where: str) -> Polygon:
    """The outline of the room's floor plane(s), holes (columns) filled."""
    edges = [e for p in planes if structure.plane_types[p] == "floor" for e in structure.plane_edges[p]]
    segments = [LineString(structure.junctions[e, :2]) for e in edges if e[0] >= 0]
    polygons = list(shapely.polygonize(segments).geoms) if segments else []
    if not polygons:
        raise ConversionError(f"{where}: no closed floor outline")
    return Polygon(max(polygons, key=lambda p: p.area).exterior)


def room_layout(structure: Structure, planes: list[int], openings: list[dict]) -> Layout:
    """The room's walls, and the doors and windows that share junctions with them."""
    wall_planes = [p for p in planes if structure.plane_types[p] == "wall"]
    walls = [wall_from_plane(structure.junctions[structure.plane_junctions[p]], structure.normals[p])
             for p in wall_planes]
    found: dict[type, list] = {Door: [], Window: []}
    for semantic in openings:
        corners = np.unique(np.concatenate([structure.plane_junctions[p] for p in semantic["planeID"]]
                                           + [np.zeros(0, np.int64)]))
        shared = [np.intersect1d(corners, structure.plane_junctions[p]).size for p in wall_planes]
        if not shared or max(shared) == 0:
            continue
        host = int(np.argmax(shared))
        kind = Door if semantic["type"] == "door" else Window
        found[kind].append(opening_on_wall(kind, host, walls[host], structure.junctions[corners]))
    return Layout(walls, found[Door], found[Window])


def wall_from_plane(points: np.ndarray, normal: np.ndarray) -> Wall:
    """Segment between the extreme junctions along the wall, at its lowest z; thickness 0."""
    direction = _along(normal)
    t = points[:, :2] @ direction
    a, b = points[np.argmin(t)], points[np.argmax(t)]
    bottom = float(points[:, 2].min())
    return Wall(float(a[0]), float(a[1]), bottom, float(b[0]), float(b[1]), bottom,
                float(np.ptp(points[:, 2])), 0.0)


def opening_on_wall(kind: type, wall_id: int, wall: Wall, corners: np.ndarray) -> Door | Window:
    """The opening spanned by ``corners`` (metres), centred on the host wall's line."""
    start = np.array([wall.ax, wall.ay])
    direction = np.array([wall.bx - wall.ax, wall.by - wall.ay])
    direction /= np.linalg.norm(direction)
    t = (corners[:, :2] - start) @ direction
    x, y = start + direction * (t.min() + t.max()) / 2
    z_low, z_high = corners[:, 2].min(), corners[:, 2].max()
    return kind(wall_id, float(x), float(y), float(z_low + z_high) / 2, float(np.ptp(t)),
                float(z_high - z_low))


def _along(normal: np.ndarray) -> np.ndarray:
    direction = np.array([-normal[1], normal[0]], np.float64)
    length = np.linalg.norm(direction)
    return direction / length if length > 0 else np.array([1.0, 0.0])


def _z_range(structure: Structure, planes: list[int]) -> tuple[float, float]:
    z = structure.junctions[np.concatenate([structure.plane_junctions[p] for p in planes]), 2]
    return float(z.min()), float(z.max())


def _in_room(xyz: np.ndarray, area: Polygon, z_range: tuple[float, float], margin: float) -> np.ndarray:
    """Points inside ``area`` (xy) and within ``z_range`` grown by ``margin``."""
    if len(xyz) == 0:
        return np.zeros(0, bool)
    in_height = (xyz[:, 2] >= z_range[0] - margin) & (xyz[:, 2] <= z_range[1] + margin)
    return in_height & shapely.contains_xy(area, xyz[:, 0], xyz[:, 1])


def read_box_centroids(path: Path) -> np.ndarray:
    """Centroids (metres) of ``bbox_3d.json``'s boxes; none when the file is absent."""
    if not path.is_file():
        return np.zeros((0, 3))
    boxes = read_json(path, list)
    try:
        return np.array([b["centroid"] for b in boxes], np.float64).reshape(-1, 3) * MM
    except (KeyError, TypeError, ValueError) as err:
        raise ConversionError(f"{path}: every box needs a 3-number 'centroid' ({err})") from None

