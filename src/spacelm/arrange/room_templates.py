"""Room-type templates of the task generator (``generate.py``), as data.

Each room type lists object kinds in placement order (a target before the objects placed relative
to it), with plausible size ranges in metres, a placement rule, a chance of appearing and the
materials to pick from; plus the room size ranges ``(L, W, H)`` and a few preference wishes.
Sizes are ``(l, w, h)``: l side to side, w front to back, h up (``task`` conventions).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Item:
    """One object kind: size ranges ``(lo, hi)`` for l, w, h in metres, a placement ``rule``,
    the earlier item ``target`` it is placed against (its first instance), its ``chance`` of being
    in a task (only when its target is), and the ``materials`` to pick from.

    Rules: ``wall`` / ``corner`` / ``wall_high`` (back to a wall; in a corner; hung at 1.3-1.7 m),
    ``opposite`` (against the wall opposite the target's), ``centre`` (near the room centre),
    ``ceiling`` (hung from it, over the target if any), ``left`` / ``right`` / ``front`` /
    ``behind`` (beside the target, in its frame), ``on``, ``under`` and ``above`` the target.
    ``adjacent``: beside within 10 cm (else 25-50 cm). ``face_target``: turned to face the target
    (chairs). ``faces``: whether the object has a front that faces something (not a plant).
    """

    name: str
    size: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    rule: str
    target: str | None = None
    chance: float = 1.0
    adjacent: bool = True
    face_target: bool = False
    faces: bool = True
    materials: tuple[str, ...] = ("wood",)


@dataclass(frozen=True)
class RoomType:
    size: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    items: tuple[Item, ...]
    wishes: tuple[str, ...]


_PLANT = Item("plant", ((0.3, 0.45), (0.3, 0.45), (0.6, 1.2)), "corner", chance=0.4, faces=False,
              materials=("ceramic", "terracotta"))
_ART = Item("wall_art", ((0.6, 1.1), (0.03, 0.04), (0.4, 0.7)), "wall_high", chance=0.4,
            materials=("canvas", "wood"))
_LIGHT = Item("ceiling_light", ((0.3, 0.5), (0.3, 0.5), (0.1, 0.2)), "ceiling", chance=0.3,
              faces=False, materials=("glass", "metal"))
_RUG = ((1.6, 2.4), (1.2, 1.8), (0.01, 0.02))
_CHAIR = Item("dining_chair", ((0.42, 0.5), (0.45, 0.52), (0.85, 1.0)), "front", "dining_table",
              face_target=True, materials=("wood", "fabric"))
_SHELF = Item("bookshelf", ((0.8, 1.2), (0.3, 0.4), (1.8, 2.1)), "wall", chance=0.6)

ROOM_TYPES: dict[str, RoomType] = {
    "bedroom": RoomType(((3.4, 5.0), (3.2, 4.5), (2.5, 3.0)), (
        Item("bed", ((1.4, 1.8), (1.95, 2.1), (0.45, 0.6)), "wall", materials=("wood", "fabric")),
        Item("nightstand", ((0.4, 0.55), (0.35, 0.45), (0.45, 0.6)), "left", "bed"),
        Item("nightstand", ((0.4, 0.55), (0.35, 0.45), (0.45, 0.6)), "right", "bed", 0.7),
        Item("table_lamp", ((0.2, 0.3), (0.2, 0.3), (0.35, 0.55)), "on", "nightstand", 0.7,
             faces=False, materials=("ceramic", "brass")),
        Item("wardrobe", ((1.0, 1.6), (0.55, 0.65), (1.9, 2.2)), "wall", chance=0.9),
        Item("dresser", ((0.9, 1.4), (0.45, 0.55), (0.75, 0.95)), "wall", chance=0.5),
        Item("desk", ((1.0, 1.3), (0.55, 0.65), (0.72, 0.76)), "wall", chance=0.4),
        Item("desk_chair", ((0.45, 0.55), (0.45, 0.55), (0.8, 1.0)), "front", "desk",
             face_target=True, materials=("fabric", "plastic")),
        Item("rug", ((1.6, 2.2), (2.0, 2.4), (0.01, 0.02)), "under", "bed", 0.6, faces=False,
             materials=("wool", "cotton")),
        replace(_ART, rule="above", target="bed"), _PLANT, _LIGHT),
        ("Keep a clear path around the bed.", "I like to read in bed at night.")),
    "living_room": RoomType(((4.2, 7.0), (3.6, 6.0), (2.6, 3.2)), (
        Item("sofa", ((1.8, 2.4), (0.85, 1.0), (0.75, 0.9)), "wall",
             materials=("fabric", "leather")),
        Item("coffee_table", ((0.9, 1.3), (0.5, 0.7), (0.4, 0.48)), "front", "sofa", adjacent=False,
             materials=("wood", "glass")),
        Item("tv_stand", ((1.2, 1.8), (0.4, 0.5), (0.45, 0.6)), "opposite", "sofa", 0.9),
        Item("tv", ((0.9, 1.4), (0.08, 0.12), (0.55, 0.85)), "on", "tv_stand",
             materials=("plastic",)),
        Item("side_table", ((0.4, 0.55), (0.4, 0.55), (0.5, 0.6)), "left", "sofa", 0.7),
        Item("armchair", ((0.75, 0.9), (0.75, 0.9), (0.8, 1.0)), "right", "sofa", 0.6,
             adjacent=False, materials=("fabric", "leather")),
        Item("floor_lamp", ((0.3, 0.4), (0.3, 0.4), (1.5, 1.8)), "corner", chance=0.6, faces=False,
             materials=("metal", "brass")),
        _SHELF, Item("rug", _RUG, "under", "coffee_table", 0.7, faces=False, materials=("wool",)),
        replace(_ART, rule="above", target="sofa"), _PLANT),
        ("We watch films together in the evening.", "Make it easy to talk across the room.")),
    "dining_room": RoomType(((3.6, 5.5), (3.2, 5.0), (2.6, 3.0)), (
        Item("dining_table", ((1.4, 2.0), (0.85, 1.0), (0.73, 0.77)), "centre", faces=False),
        _CHAIR, replace(_CHAIR, rule="behind"), replace(_CHAIR, chance=0.7),
        replace(_CHAIR, rule="behind", chance=0.7), replace(_CHAIR, rule="left", chance=0.5),
        replace(_CHAIR, rule="right", chance=0.5),
        Item("sideboard", ((1.4, 1.9), (0.4, 0.5), (0.8, 0.9)), "wall", chance=0.8),
        Item("display_cabinet", ((0.8, 1.1), (0.4, 0.5), (1.8, 2.0)), "corner", chance=0.5,
             materials=("wood", "glass")),
        replace(_LIGHT, name="pendant_light", target="dining_table", chance=0.7),
        Item("rug", ((2.0, 2.8), (1.6, 2.2), (0.01, 0.02)), "under", "dining_table", 0.5,
             faces=False, materials=("wool",)), _PLANT),
        ("We host dinners for friends.", "Leave room to pull the chairs out.")),
    "office": RoomType(((3.0, 4.5), (2.8, 4.0), (2.5, 3.0)), (
        Item("desk", ((1.2, 1.6), (0.6, 0.8), (0.72, 0.76)), "wall", materials=("wood", "metal")),
        Item("office_chair", ((0.55, 0.65), (0.55, 0.65), (0.9, 1.2)), "front", "desk",
             face_target=True, materials=("mesh", "leather")),
        Item("monitor", ((0.5, 0.7), (0.18, 0.25), (0.4, 0.55)), "on", "desk", 0.8,
             materials=("plastic",)),
        Item("filing_cabinet", ((0.4, 0.5), (0.5, 0.6), (0.6, 0.75)), "right", "desk", 0.6,
             materials=("metal",)),
        replace(_SHELF, chance=0.8),
        Item("armchair", ((0.75, 0.9), (0.75, 0.9), (0.8, 1.0)), "corner", chance=0.4,
             materials=("fabric",)), _PLANT, _ART, _LIGHT),
        ("I work from home all day and take video calls.", "I need space for my books.")),
    "kitchen": RoomType(((3.6, 5.0), (3.0, 4.5), (2.5, 3.0)), (
        Item("kitchen_counter", ((1.6, 2.2), (0.6, 0.65), (0.88, 0.92)), "wall",
             materials=("wood", "stone")),
        Item("refrigerator", ((0.6, 0.8), (0.65, 0.75), (1.7, 1.9)), "left", "kitchen_counter",
             materials=("steel",)),
        Item("stove", ((0.6, 0.76), (0.6, 0.65), (0.88, 0.92)), "right", "kitchen_counter", 0.8,
             materials=("steel",)),
        Item("microwave", ((0.45, 0.55), (0.35, 0.4), (0.26, 0.32)), "on", "kitchen_counter", 0.7,
             materials=("steel",)),
        Item("wall_cabinet", ((1.0, 1.6), (0.32, 0.36), (0.6, 0.75)), "above", "kitchen_counter",
             0.7),
        Item("kitchen_table", ((0.8, 1.2), (0.7, 0.8), (0.73, 0.77)), "centre", chance=0.6,
             faces=False),
        replace(_CHAIR, name="chair", target="kitchen_table"),
        replace(_CHAIR, name="chair", target="kitchen_table", rule="behind", chance=0.8),
        Item("trash_bin", ((0.3, 0.4), (0.3, 0.4), (0.5, 0.7)), "corner", chance=0.5, faces=False,
             materials=("steel", "plastic")), _LIGHT),
        ("I cook every day.", "Keep the fridge, stove and counter close together.")),
    "bathroom": RoomType(((2.4, 3.4), (2.2, 3.0), (2.4, 2.8)), (
        Item("bathtub", ((1.5, 1.7), (0.7, 0.8), (0.5, 0.6)), "corner", chance=0.7,
             materials=("ceramic", "acrylic")),
        Item("bath_mat", ((0.7, 0.9), (0.45, 0.55), (0.01, 0.02)), "front", "bathtub", 0.7,
             faces=False, materials=("cotton",)),
        Item("toilet", ((0.36, 0.42), (0.65, 0.75), (0.75, 0.85)), "wall", materials=("ceramic",)),
        Item("vanity", ((0.6, 1.0), (0.45, 0.55), (0.8, 0.9)), "wall", materials=("wood", "stone")),
        Item("mirror", ((0.5, 0.9), (0.03, 0.04), (0.6, 0.9)), "above", "vanity",
             materials=("glass",)),
        Item("towel_rack", ((0.5, 0.7), (0.1, 0.15), (0.1, 0.3)), "wall_high", chance=0.6,
             materials=("chrome",)),
        Item("laundry_basket", ((0.35, 0.45), (0.35, 0.45), (0.5, 0.65)), "corner", chance=0.4,
             faces=False, materials=("wicker",))),
        ("Make it easy to clean.", "It should feel like a spa.")),
}
STYLES = ("modern", "cosy", "minimalist", "Scandinavian", "rustic", "industrial", "mid-century",
          "bohemian")
OCCUPANTS = ("a young couple", "a student", "a family of four", "a retired teacher",
             "a remote worker", "two flatmates")
