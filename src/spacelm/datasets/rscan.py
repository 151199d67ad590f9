"""3RScan (v2) -> one ``RoomSample`` per scan; references and rescans alike, each in its own frame.

Files per scan folder ``root/<scan_id>/``:

- ``mesh.refined.v2.obj`` + the ``mtllib`` it names (``mesh.refined.mtl``) + that file's
  ``map_Kd`` texture (``mesh.refined_0.png``): the textured mesh, metres, +z up. Its vertices are
  the points; a vertex's colour is the mean texture colour at the UVs of the face corners that use
  it (vertices no face uses have no colour and are dropped, as ``vertex_without_texture``).
  Reading the PNG needs Pillow.
- ``labels.instances.annotated.v2.ply`` (ASCII; same vertices as the OBJ in v2): per vertex
  ``objectId`` and ``NYU40``. Its red/green/blue are *instance colours* for visualisation, not
  the scene's colours (3DSSG rebuilds real colours from the texture too), so they are not used:
  they would leak the annotation into the input.
- ``semseg.v2.json``: ``segGroups[{objectId, label, obb: {centroid, axesLengths,
  normalizedAxes}}]``; the OBB is read like ARKitScenes' (rows of the 3x3 are the axes), as
  SceneVerse's 3RScan preprocessing reads it.

An object's class is the NYU40 id most of its vertices carry in the PLY: that column is 3RScan's
own label -> NYU40 mapping, applied per vertex, so no table of its 528 labels is needed here. Boxes
are the annotated OBBs (``boxfit.yaw_box_from_obb``; a box tilted more than 1 degree is replaced
by the yaw-only box around it and counted as ``tilted_obb_enclosed``); wall, door and window
objects become the layout's walls and openings through ``layout_from_boxes``.

Rescans stay in their own frame, as in VLA-3D: 3RScan.json's rescan-to-reference transforms (with
millimetre translations) are not applied, since a sample only needs its points and layout to share
a frame. 3RScan has no room types.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from spacelm.datasets.boxfit import yaw_box_from_obb
from spacelm.datasets.rooms import (
    ConversionError,
    LabelledBox,
    RoomSample,
    layout_from_boxes,
)
from spacelm.datasets.source_files import read_json, safe_id
from spacelm.points.ply import PointFileError, read_ply

SOURCE = "3rscan"
SCAN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MESH_NAME = "mesh.refined.v2.obj"
LABELS_NAME = "labels.instances.annotated.v2.ply"
SEMSEG_NAME = "semseg.v2.json"


def list_scenes(root: Path) -> list[str]:
    """Scan folders (UUID scan ids) directly under ``root``, sorted."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and SCAN_ID.fullmatch(p.name))


def convert_scene(root: Path, scene: str, *, label_set: str = "nyu40") -> list[RoomSample]:
    """The scan's textured mesh vertices and its layout; ``ConversionError`` names a bad file."""
    folder = Path(root) / scene
    classes = object_classes(folder / LABELS_NAME)
    objects, dropped = object_boxes(folder / SEMSEG_NAME, classes)
    xyz, rgb, unused = read_textured_vertices(folder / MESH_NAME)
    layout, more = layout_from_boxes(objects, label_set=label_set)
    dropped.update(vertex_without_texture=unused)
    sample_id = safe_id(SOURCE, scene)
    return [RoomSample(sample_id, SOURCE, scene, "0", xyz, rgb, layout, dict(dropped + more))]


def object_classes(path: Path) -> dict[int, int]:
    """objectId -> the NYU40 id most of its vertices carry (ties: the smaller id); 0 = none."""
    if not path.is_file():
        raise ConversionError(f"{path}: missing file")
    try:
        extra = read_ply(path).extra
    except PointFileError as err:
        raise ConversionError(str(err)) from None
    if "objectId" not in extra or "NYU40" not in extra:
        raise ConversionError(f"{path}: vertices lack the objectId and NYU40 properties")
    objects, nyu40 = extra["objectId"].astype(np.int64), extra["NYU40"].astype(np.int64)
    annotated = objects > 0
    pairs, counts = np.unique(np.stack([objects[annotated], nyu40[annotated]], axis=1), axis=0,
                              return_counts=True)
    best = np.lexsort((pairs[:, 1], -counts, pairs[:, 0]))  # by object, most votes, smaller id
    first = np.unique(pairs[best, 0], return_index=True)[1]
    return {int(o): int(c) for o, c in pairs[best][first]}


def object_boxes(path: Path, classes: dict[int, int]) -> tuple[list[LabelledBox], Counter]:
    """A labelled yaw-only box per segGroup whose object has vertices; counts of the rest."""
    groups = read_json(path).get("segGroups")
    if not isinstance(groups, list):
        raise ConversionError(f"{path}: no 'segGroups' list")
    objects, dropped = [], Counter()
    for k, group in enumerate(groups):
        try:
            object_id, label, obb = int(group["objectId"]), str(group["label"]), group["obb"]
            box, tilted = yaw_box_from_obb(obb["centroid"], obb["axesLengths"],
                                           obb["normalizedAxes"], label)
        except (KeyError, TypeError, ValueError) as err:
            raise ConversionError(f"{path}: segGroups[{k}] lacks a usable objectId, label or obb: "
                                  f"{type(err).__name__} {err}") from None
        if object_id not in classes:
            dropped["object_without_points"] += 1
            continue
        dropped["tilted_obb_enclosed"] += tilted
        objects.append(LabelledBox(classes[object_id], box))
    return objects, +dropped


def read_textured_vertices(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """OBJ vertices ``(N, 3) float32`` with texture colours ``(N, 3) uint8``; and how many
    vertices were dropped for lying on no face."""
    if not path.is_file():
        raise ConversionError(f"{path}: missing file")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    vertices = _numbers(path, [ln[2:] for ln in lines if ln.startswith("v ")], 3, "v")
    uvs = _numbers(path, [ln[3:] for ln in lines if ln.startswith("vt ")], 2, "vt")
    corner_vertex, corner_uv = _face_corners(path, [ln[2:] for ln in lines if ln.startswith("f ")],
                                             len(vertices), len(uvs))
    texture = read_texture(_texture_path(path, lines))
    height, width = texture.shape[:2]
    uv = np.clip(uvs[corner_uv], 0.0, 1.0)
    column = np.minimum((uv[:, 0] * width).astype(np.int64), width - 1)
    row = np.minimum(((1.0 - uv[:, 1]) * height).astype(np.int64), height - 1)
    colour = texture[row, column].astype(np.float64)
    uses = np.bincount(corner_vertex, minlength=len(vertices))
    sums = np.stack([np.bincount(corner_vertex, colour[:, c], len(vertices)) for c in range(3)], 1)
    used = uses > 0
    rgb = np.rint(sums[used] / uses[used, None]).astype(np.uint8)
    return vertices[used].astype(np.float32), rgb, int((~used).sum())


def read_texture(path: Path) -> np.ndarray:
    """A texture image as ``(H, W, 3) uint8`` (Pillow, imported here: only 3RScan needs it)."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("3RScan colours come from the mesh's PNG texture; reading it needs "
                          "Pillow (pip install pillow)") from None
    if not path.is_file():
        raise ConversionError(f"{path}: missing file (the mesh texture)")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as err:
        raise ConversionError(f"{path}: unreadable texture image ({err})") from None


def _texture_path(obj_path: Path, lines: list[str]) -> Path:
    """The ``map_Kd`` image of the OBJ's ``mtllib``; 3RScan meshes have one textured material."""
    libraries = [ln.split(None, 1)[1].strip() for ln in lines if ln.startswith("mtllib ")]
    if not libraries:
        raise ConversionError(f"{obj_path}: no 'mtllib' line naming the material file")
    mtl = obj_path.parent / libraries[0]
    if not mtl.is_file():
        raise ConversionError(f"{mtl}: missing file (named by {obj_path.name})")
    text = mtl.read_text(encoding="utf-8", errors="replace")
    maps = [ln.split(None, 1)[1].strip() for ln in text.splitlines()
            if ln.strip().startswith("map_Kd ")]
    if len(set(maps)) != 1:
        raise ConversionError(f"{mtl}: expected one 'map_Kd' texture, found {len(set(maps))}")
    return mtl.parent / maps[0]


def _numbers(path: Path, rows: list[str], width: int, kind: str) -> np.ndarray:
    """The first ``width`` numbers of each row as ``(len(rows), width) float64``."""
    try:
        values = [row.split()[:width] for row in rows]
        array = np.array(values, dtype=np.float64).reshape(len(rows), width)
    except ValueError:
        raise ConversionError(f"{path}: malformed '{kind}' lines (expected {width} numbers each)") \
            from None
    if len(array) == 0:
        raise ConversionError(f"{path}: no '{kind}' lines")
    return array


def _face_corners(path: Path, rows: list[str], n_vertices: int, n_uvs: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """0-based (vertex, uv) index of every corner of the triangles ``v/vt`` or ``v/vt/vn``."""
    corners = " ".join(rows).split()
    if not corners or "//" in corners[0] or "/" not in corners[0]:
        raise ConversionError(f"{path}: faces have no texture coordinates (expected v/vt corners)")
    fields = corners[0].count("/") + 1
    numbers = " ".join(corners).replace("/", " ").split()
    try:
        if len(numbers) != fields * len(corners):
            raise ValueError
        index = np.array(numbers, dtype=np.int64).reshape(-1, fields)
    except ValueError:
        raise ConversionError(f"{path}: malformed 'f' lines (every corner must be written like "
                              f"the first, {corners[0]!r})") from None
    if len(index) != 3 * len(rows):
        raise ConversionError(f"{path}: faces must be triangles ({len(index)} corners for "
                              f"{len(rows)} faces)")
    vertex, uv = index[:, 0] - 1, index[:, 1] - 1
    if vertex.min() < 0 or vertex.max() >= n_vertices or uv.min() < 0 or uv.max() >= n_uvs:
        raise ConversionError(f"{path}: a face refers to a vertex or uv that does not exist "
                              "(only positive 1-based indices are supported)")
    return vertex, uv

