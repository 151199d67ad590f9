"""The furniture catalogue of the synthetic rooms: sizes, colours, placement rules and room types.

Kept as data so the mix can be read and tuned in one place. Category names are SpatialLM's (the 59
names its ``--category`` option accepts), so boxes of synthetic rooms and of SpatialLM data share labels.

Box frame of every category: ``width`` is the box's own x extent (``Box.scale_x``), ``depth`` its own y
(``scale_y``), ``height`` its z (``scale_z``); all ranges are ``(min, max)`` in metres, sampled
uniformly. Objects placed against a wall have their own x along the wall and their front towards own +y,
i.e. into the room.

Placement rules:

- ``"wall"``: standing on the floor, back (own -y face) against a wall.
- ``"mounted"``: back against a wall, bottom at a height drawn from ``elevation`` (paintings, wall
  cabinets, air conditioners, mirrors, TVs).
- ``"window"``: hung in front of a window, covering it (curtains); skipped when the room has no window.
- ``"free"``: standing anywhere on the floor (tables, plants, lamps, carpets).
- ``"near"``: facing one side of the first box of category ``near`` (chairs at a table or desk); falls
  back to ``"free"`` when the room has none.

Heights are clipped to the room (top at least 5 cm below the ceiling).
"""

from __future__ import annotations

from dataclasses import dataclass

# Rules whose back face touches a wall: that face is hidden, so it gets no points.
WALL_BACKED = frozenset({"wall", "mounted", "window"})


@dataclass(frozen=True)
class Furniture:
    """One category: size ranges (metres), placement rule, base colour (RGB), bottom height range,
    the category it is placed at (rule ``"near"``) and how many one room may hold."""

    width: tuple[float, float]
    depth: tuple[float, float]
    height: tuple[float, float]
    rule: str
    colour: tuple[int, int, int]
    elevation: tuple[float, float] = (0.0, 0.0)
    near: str | None = None
    limit: int = 2  # most boxes of this category in one room


F = Furniture
CATALOGUE: dict[str, Furniture] = {
    # bedroom
    "bed": F((1.2, 1.9), (1.95, 2.2), (0.9, 1.2), "wall", (196, 170, 140), limit=1),
    "nightstand": F((0.4, 0.6), (0.35, 0.5), (0.45, 0.65), "wall", (140, 100, 70)),
    "wardrobe": F((0.8, 2.4), (0.55, 0.65), (1.9, 2.4), "wall", (225, 215, 195)),
    "dressing_table": F((0.8, 1.2), (0.4, 0.5), (0.7, 0.8), "wall", (235, 225, 215), limit=1),
    # living room
    "sofa": F((1.6, 2.8), (0.8, 1.0), (0.7, 0.9), "wall", (90, 110, 140), limit=1),
    "coffee_table": F((0.8, 1.4), (0.5, 0.8), (0.35, 0.5), "free", (120, 80, 50), limit=1),
    "side_table": F((0.4, 0.6), (0.4, 0.6), (0.45, 0.65), "free", (160, 120, 80), limit=3),
    "tv_cabinet": F((1.2, 2.4), (0.35, 0.5), (0.4, 0.6), "wall", (60, 60, 65), limit=1),
    "tv": F((0.9, 1.6), (0.05, 0.1), (0.55, 0.95), "mounted", (20, 20, 25), (1.0, 1.3), limit=1),
    "bookcase": F((0.6, 1.6), (0.28, 0.4), (1.6, 2.2), "wall", (170, 130, 90), limit=3),
    "sideboard": F((1.2, 2.0), (0.4, 0.5), (0.75, 0.95), "wall", (110, 75, 50)),
    "decorative_cabinet": F((0.8, 1.6), (0.35, 0.45), (0.8, 1.2), "wall", (200, 190, 170)),
    "floor-standing_lamp": F((0.3, 0.45), (0.3, 0.45), (1.4, 1.8), "free", (240, 230, 180)),
    "plants": F((0.3, 0.6), (0.3, 0.6), (0.5, 1.5), "free", (60, 130, 60), limit=4),
    "stool": F((0.3, 0.45), (0.3, 0.45), (0.4, 0.7), "free", (130, 90, 60), limit=4),
    "chair": F((0.45, 0.6), (0.45, 0.6), (0.8, 1.1), "near", (80, 80, 90), near="desk", limit=4),
    "carpet": F((1.2, 2.4), (1.6, 3.0), (0.01, 0.02), "free", (170, 60, 60), limit=1),
    # on walls
    "painting": F((0.4, 1.4), (0.02, 0.05), (0.3, 1.0), "mounted", (200, 160, 40), (1.2, 1.6),
                  limit=4),
    "mirror": F((0.5, 1.0), (0.02, 0.04), (0.6, 1.0), "mounted", (190, 210, 220), (1.0, 1.3)),
    "air_conditioner": F((0.75, 1.0), (0.2, 0.3), (0.25, 0.32), "mounted", (245, 245, 245),
                         (1.9, 2.05), limit=1),
    "curtain": F((1.0, 3.0), (0.05, 0.15), (2.0, 2.6), "window", (150, 130, 180), (0.02, 0.1),
                 limit=3),
    # dining room
    "dining_table": F((1.2, 2.0), (0.75, 1.0), (0.72, 0.78), "free", (150, 105, 65), limit=1),
    "dining_chair": F((0.42, 0.5), (0.45, 0.55), (0.8, 1.0), "near", (100, 70, 45),
                      near="dining_table", limit=8),
    "wine_cabinet": F((0.6, 1.2), (0.4, 0.5), (1.6, 2.0), "wall", (90, 50, 40)),
    # study
    "desk": F((1.0, 1.6), (0.5, 0.8), (0.72, 0.78), "wall", (185, 150, 110), limit=1),
    # kitchen
    "refrigerator": F((0.6, 0.9), (0.6, 0.75), (1.7, 1.95), "wall", (215, 220, 225), limit=1),
    "cupboard": F((0.8, 2.4), (0.55, 0.65), (0.85, 0.92), "wall", (230, 230, 225), limit=4),
    "wall_cabinet": F((0.6, 2.0), (0.3, 0.38), (0.6, 0.8), "mounted", (225, 225, 220), (1.45, 1.6),
                      limit=4),
    "washing_machine": F((0.58, 0.62), (0.55, 0.65), (0.84, 0.88), "wall", (250, 250, 250), limit=1),
    # bathroom
    "toilet": F((0.38, 0.45), (0.65, 0.75), (0.7, 0.8), "wall", (250, 250, 248), limit=1),
    "bathroom_cabinet": F((0.6, 1.2), (0.45, 0.55), (0.8, 0.9), "wall", (210, 200, 190)),
    "tub": F((1.5, 1.8), (0.7, 0.8), (0.55, 0.6), "wall", (245, 245, 240), limit=1),
    "shower_room": F((0.9, 1.2), (0.9, 1.2), (1.9, 2.0), "wall", (180, 200, 210), limit=1),
}
del F


@dataclass(frozen=True)
class RoomType:
    """How likely a room type is, the boxes it always tries first, and draw weights for the rest."""

    probability: float
    anchors: tuple[str, ...]
    weights: dict[str, float]


ROOM_TYPES: dict[str, RoomType] = {
    "bedroom": RoomType(0.30, ("bed",), {
        "nightstand": 3, "wardrobe": 2, "painting": 1.5, "curtain": 1.5, "dressing_table": 1,
        "desk": 1, "chair": 1, "carpet": 1, "floor-standing_lamp": 0.5, "plants": 0.5, "tv": 0.5,
        "tv_cabinet": 0.5, "air_conditioner": 0.5, "bookcase": 0.5, "mirror": 0.5, "side_table": 0.5}),
    "living_room": RoomType(0.25, ("sofa",), {
        "coffee_table": 2, "tv_cabinet": 1.5, "side_table": 1.5, "painting": 1.5, "curtain": 1.5,
        "plants": 1.5, "tv": 1, "bookcase": 1, "carpet": 1, "floor-standing_lamp": 1, "chair": 1,
        "sideboard": 0.5, "stool": 0.5, "air_conditioner": 0.5, "decorative_cabinet": 0.5}),
    "dining_room": RoomType(0.10, ("dining_table",), {
        "dining_chair": 5, "sideboard": 1, "wine_cabinet": 1, "painting": 1, "curtain": 1,
        "plants": 1, "carpet": 0.5, "cupboard": 0.5}),
    "study": RoomType(0.15, ("desk", "chair"), {
        "bookcase": 2, "side_table": 1, "plants": 1, "painting": 1, "floor-standing_lamp": 1,
        "curtain": 1, "chair": 0.5, "sofa": 0.5, "decorative_cabinet": 0.5, "air_conditioner": 0.5}),
    "kitchen": RoomType(0.10, ("refrigerator", "cupboard"), {
        "cupboard": 2, "wall_cabinet": 2, "dining_chair": 1.5, "washing_machine": 0.5,
        "dining_table": 0.5, "stool": 0.5, "curtain": 0.5, "plants": 0.5}),
    "bathroom": RoomType(0.10, ("toilet",), {
        "bathroom_cabinet": 1.5, "mirror": 1.5, "tub": 1, "shower_room": 1, "washing_machine": 1,
        "plants": 0.3, "painting": 0.3}),
}

# Shell colours (RGB): one of each is drawn per room.
WALL_COLOURS = ((235, 232, 225), (220, 215, 200), (200, 210, 215), (230, 220, 205), (190, 185, 180))
FLOOR_COLOURS = ((160, 120, 85), (190, 160, 120), (120, 90, 65), (200, 200, 195), (150, 150, 150))
CEILING_COLOUR = (245, 245, 245)
GLASS_COLOUR = (170, 200, 220)
