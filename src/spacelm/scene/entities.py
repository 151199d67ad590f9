"""Layout entities: walls, doors, windows and oriented boxes, in metres.

Conventions (shared by every stage of spacelm, and identical to SpatialLM's):
- z is up; x, y span the floor; units are metres.
- ``Wall``: two bottom endpoints ``a`` and ``b``, a height and a thickness.
- ``Door`` / ``Window``: the *centre* of the opening (z is the centre height), its width along the
  host wall and its height; ``wall_id`` is the index of the host wall in ``Layout.walls``.
- ``Box``: centre, yaw ``angle_z`` in radians counter-clockwise about +z, and *full* extents
  (``scale_x`` along the box's own x axis before rotation).

Each entity type carries a field table (SceneScript's PARAMS_DEFINITION idea): one ordered tuple of
``(field, kind)`` that drives the text grammar, quantisation and anything else that walks fields, so
the grammar is defined exactly once. ``kind`` names a quantisation range in ``quantize.RANGES`` or is
``"wall_ref"`` / ``"label"`` for the two non-numeric arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Wall:
    ax: float
    ay: float
    az: float
    bx: float
    by: float
    bz: float
    height: float
    thickness: float = 0.0

    keyword: ClassVar[str] = "Wall"
    prefix: ClassVar[str] = "wall"
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("ax", "world"), ("ay", "world"), ("az", "world"),
        ("bx", "world"), ("by", "world"), ("bz", "world"),
        ("height", "height"), ("thickness", "height"),
    )


@dataclass(frozen=True)
class Opening:
    """Fields shared by doors and windows; use ``Door`` or ``Window`` (they never compare equal)."""

    wall_id: int
    x: float
    y: float
    z: float
    width: float
    height: float

    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("wall_id", "wall_ref"), ("x", "world"), ("y", "world"), ("z", "world"),
        ("width", "width"), ("height", "height"),
    )


@dataclass(frozen=True)
class Door(Opening):
    keyword: ClassVar[str] = "Door"
    prefix: ClassVar[str] = "door"


@dataclass(frozen=True)
class Window(Opening):
    keyword: ClassVar[str] = "Window"
    prefix: ClassVar[str] = "window"


@dataclass(frozen=True)
class Box:
    label: str
    x: float
    y: float
    z: float
    angle_z: float
    scale_x: float
    scale_y: float
    scale_z: float

    # SpatialLM's keyword and id prefix for oriented boxes.
    keyword: ClassVar[str] = "Bbox"
    prefix: ClassVar[str] = "bbox"
    FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("label", "label"), ("x", "world"), ("y", "world"), ("z", "world"),
        ("angle_z", "angle"), ("scale_x", "scale"), ("scale_y", "scale"), ("scale_z", "scale"),
    )


Entity = Wall | Door | Window | Box
# Serialisation order of a layout file: walls, then doors, then windows, then boxes.
ENTITY_TYPES: tuple[type, ...] = (Wall, Door, Window, Box)
ENTITY_BY_KEYWORD: dict[str, type] = {t.keyword: t for t in ENTITY_TYPES}
ENTITY_BY_PREFIX: dict[str, type] = {t.prefix: t for t in ENTITY_TYPES}
