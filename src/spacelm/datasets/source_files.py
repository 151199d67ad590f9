"""Reading a source dataset's files with errors that name the file: shared by every converter."""

from __future__ import annotations

import json
import re
from pathlib import Path

from spacelm.datasets.rooms import ConversionError
from spacelm.points.ply import PointCloud, PointFileError, read_ply

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_id(*parts: object) -> str:
    """Parts joined by ``_`` with every character outside ``[A-Za-z0-9_.-]`` replaced by ``_``.

    >>> safe_id("hm3d", "00800-TEEsavR23oF", 3)
    'hm3d_00800-TEEsavR23oF_3'
    >>> safe_id("spatiallm", "a b/c")
    'spatiallm_a_b_c'
    """
    return _UNSAFE.sub("_", "_".join(str(p) for p in parts))


def read_json(path: Path, kind: type = dict):
    """A JSON file whose top level must be a ``kind`` (dict or list)."""
    if not path.is_file():
        raise ConversionError(f"{path}: missing file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConversionError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, kind):
        raise ConversionError(f"{path}: expected a JSON {kind.__name__}, found {type(data).__name__}")
    return data


def read_cloud(path: Path) -> PointCloud:
    """A coloured PLY (points or mesh vertices); missing, unreadable or colourless raises."""
    if not path.is_file():
        raise ConversionError(f"{path}: missing file")
    try:
        cloud = read_ply(path)
    except PointFileError as err:  # its message already names the file
        raise ConversionError(str(err)) from None
    if cloud.rgb is None:
        raise ConversionError(f"{path}: no red/green/blue vertex colours")
    return cloud
