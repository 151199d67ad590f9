"""SpatialLM-Dataset and SpatialLM-Testset: validate every sample, then pass it through unchanged.

A root holds (spatiallm.md §0 and §6, as published on the Hugging Face hub)::

    pcd/<id>.ply      points with colours, z up, metres
    layout/<id>.txt   SpatialLM layout text, metric floats in scene coordinates
    split.csv         SpatialLM-Dataset: id, room_type, scene_id, room_id, sample, split
    test.csv          SpatialLM-Testset: id, pcd, layout (paths relative to the root)

``split.csv`` wins when both CSVs exist; with neither, the ids are the stems of ``pcd/*.ply``.
Each id is one "scene" for the conversion driver and gives one ``RoomSample``. The layout is parsed
strictly (a bad line raises ``ConversionError`` naming the file and line, where SpatialLM's own
parser would skip it silently) and the PLY must be readable and coloured; nothing else is changed.
The data is already filtered by its authors, hence ``APPLY_FILTERS = False``; class names are
SpatialLM's own, so ``label_set`` is accepted for the common converter signature and ignored.

``scene`` is the CSV's ``scene_id`` when given, so the driver's train/val split keeps every room
and sample of a scene together; the official ``split`` column is not carried over (RoomSample has
no field for it). The CSV index is cached per root and process: one read serves every id.

``read_cloud`` and ``safe_id`` are shared by the other native-format converters.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

from spacelm.datasets.rooms import ConversionError, RoomSample
from spacelm.datasets.source_files import read_cloud, safe_id
from spacelm.scene.language import LayoutParseError, read_layout

SOURCE = "spatiallm"
APPLY_FILTERS = False


@dataclass(frozen=True)
class Entry:
    """Where one sample's files are, and the CSV facts we keep about it."""

    pcd: Path
    layout: Path
    scene: str
    region: str
    room_type: str = ""


def list_scenes(root: Path) -> list[str]:
    """Sample ids in CSV order (or sorted PLY stems when the root has no CSV)."""
    return list(_index(Path(root)))


def convert_scene(root: Path, scene: str, *, label_set: str = "nyu40") -> list[RoomSample]:
    """The validated sample ``scene`` (an id of the index), unchanged."""
    index = _index(Path(root))
    if scene not in index:
        raise ConversionError(f"{root}: no sample {scene!r} in the index")
    entry = index[scene]
    cloud = read_cloud(entry.pcd)
    if not entry.layout.is_file():
        raise ConversionError(f"{entry.layout}: missing layout file for sample {scene!r}")
    try:
        layout = read_layout(entry.layout, strict=True).layout
    except LayoutParseError as err:  # names the file and each bad line
        raise ConversionError(str(err)) from err
    return [RoomSample(safe_id(SOURCE, scene), SOURCE, entry.scene, entry.region, cloud.xyz,
                       cloud.rgb, layout, {}, entry.room_type)]


@functools.lru_cache(maxsize=8)
def _index(root: Path) -> dict[str, Entry]:
    if (root / "split.csv").is_file():
        return _index_split(root, root / "split.csv")
    if (root / "test.csv").is_file():
        return _index_test(root, root / "test.csv")
    stems = sorted(p.stem for p in (root / "pcd").glob("*.ply"))
    return {s: Entry(root / "pcd" / f"{s}.ply", root / "layout" / f"{s}.txt", s, "0") for s in stems}


def _index_split(root: Path, path: Path) -> dict[str, Entry]:
    """SpatialLM-Dataset: files named by id; region = ``<room_id>_<sample>`` when those columns exist."""
    index = {}
    for line, row in _rows(path, ("id",)):
        sample_id = row["id"]
        region = "_".join(row[c] for c in ("room_id", "sample") if row.get(c)) or "0"
        index[sample_id] = Entry(root / "pcd" / f"{sample_id}.ply",
                                 root / "layout" / f"{sample_id}.txt",
                                 row.get("scene_id") or sample_id, region, row.get("room_type", ""))
    return index


def _index_test(root: Path, path: Path) -> dict[str, Entry]:
    """SpatialLM-Testset: the CSV names each sample's files (relative to the root)."""
    return {row["id"]: Entry(root / row["pcd"], root / row["layout"], row["id"], "0")
            for _, row in _rows(path, ("id", "pcd", "layout"))}


def _rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line, row) pairs; a missing column, an empty required cell or a repeated id raises."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise ConversionError(f"{path}: missing column(s) {', '.join(missing)} "
                                  f"(header: {', '.join(header) or 'empty'})")
        rows, first_line = [], {}
        for row in reader:
            line = reader.line_num
            row = {k: (v or "").strip() for k, v in row.items() if k is not None}
            empty = [c for c in required if not row[c]]
            if empty:
                raise ConversionError(f"{path}, line {line}: empty {', '.join(empty)}")
            if row["id"] in first_line:
                raise ConversionError(f"{path}, line {line}: id {row['id']!r} repeats line "
                                      f"{first_line[row['id']]}")
            first_line[row["id"]] = line
            rows.append((line, row))
    return rows
