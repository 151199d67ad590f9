import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from spacelm.scene import Box, Door, Layout, Wall, Window
from spacelm.scene.language import (
    BAD_NUMBER,
    DANGLING_WALL,
    DUPLICATE_ID,
    REPEATED,
    SYNTAX,
    TRUNCATED,
    UNKNOWN_ENTITY,
    WRONG_ARITY,
    LayoutParseError,
    format_layout,
    parse_layout,
    read_layout,
    write_layout,
)
from spacelm.scene.quantize import Quantizer, quantize_layout

# Real line shapes from SpatialLM-Dataset (spatiallm.md section 1).
SPATIALLM_TEXT = """wall_0=Wall(3.38,3.68,0.0,0.63,3.68,0.0,2.80,0.0)
wall_1=Wall(0.63,3.68,0.0,0.63,0.1,0.0,2.80,0.0)
door_0=Door(wall_1,0.63,0.945,1.15,0.80,2.30)
window_0=Window(wall_0,2.0,3.68,1.5,1.2,1.1)
bbox_0=Bbox(plants,3.19,3.17,1.70,-1.5708,0.18,0.14,0.16)
bbox_1=Bbox(coffee_table,1.5,2.0,0.2,0.0,1.2,0.6,0.4)
"""


def test_parses_spatiallm_text_into_entities():
    result = parse_layout(SPATIALLM_TEXT, strict=True)
    layout = result.layout
    assert result.diagnostics == ()
    assert layout.walls[0] == Wall(3.38, 3.68, 0.0, 0.63, 3.68, 0.0, 2.80, 0.0)
    assert layout.doors[0] == Door(1, 0.63, 0.945, 1.15, 0.80, 2.30)
    assert layout.windows[0].wall_id == 0
    assert layout.boxes[0] == Box("plants", 3.19, 3.17, 1.70, -1.5708, 0.18, 0.14, 0.16)
    assert layout.boxes[1].label == "coffee_table"


def test_metric_text_round_trips_exactly():
    layout = parse_layout(SPATIALLM_TEXT).layout
    text = format_layout(layout)
    assert text.splitlines()[2] == "door_0=Door(wall_1,0.63,0.945,1.15,0.8,2.3)"
    assert parse_layout(text).layout == layout


def test_integer_form_matches_spatiallm_bins():
    layout = Layout(walls=[Wall(0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 2.5, 0.0)],
                    doors=[Door(0, 1.0, 0.0, 1.05, 0.9, 2.1)],
                    boxes=[Box("bed", 2.0, 1.0, 0.3, -math.pi / 2, 2.0, 1.6, 0.6)])
    text = format_layout(layout, Quantizer(1280))
    # world 2.5 cm, height/width 2 cm, scale 1.5625 cm, angle 12.5664/1280 rad per bin
    assert text == ("wall_0=Wall(0,0,0,160,0,0,125,0)\n"
                    "door_0=Door(wall_0,40,0,42,45,105)\n"
                    "bbox_0=Bbox(bed,80,40,12,480,128,102,38)")


def test_integer_text_decodes_to_bin_centres():
    q = Quantizer(1280)
    result = parse_layout("wall_0=Wall(0,0,0,160,0,0,125,0)", q)
    wall = result.layout.walls[0]
    assert wall.bx == pytest.approx(4.0125)
    assert wall.height == pytest.approx(2.51)
    assert parse_layout("wall_0=Wall(0,0,0,160,0,0,125,0)", Quantizer(1280, compat=True)).layout.walls[0].bx == 4.0


@pytest.mark.parametrize("text, kind, line", [
    ("hello\nwall_0=Wall(0,0,0,1,0,0,2.5,0)", SYNTAX, 1),
    ("wall_0=Wall(0,0,0,1,0,0,2.5,0)\nwall_1=Wa", TRUNCATED, 2),
    ("wall_0=Wall(0,0,0,1,0,0,2.5,0)\nwall_1=Wall(0,0,0,1,0", TRUNCATED, 2),
    ("wall_0=Wall(0,0,0,1,0,0,2.5,0)\ntable_0=Table(1,2,3)", UNKNOWN_ENTITY, 2),
    ("door_0=Wall(0,0,0,1,0,0,2.5,0)", UNKNOWN_ENTITY, 1),
    ("wall_0=Wall(0,0,0,1,0,0,2.5)", WRONG_ARITY, 1),
    ("wall_0=Wall(0,0,0,1,0,zero,2.5,0)", BAD_NUMBER, 1),
    ("wall_0=Wall(0,0,0,1,0,nan,2.5,0)", BAD_NUMBER, 1),
    ("wall_0=Wall(0,0,0,1,0,0,2.5,0)\ndoor_0=Door(wall_4,0.5,0,1,0.8,2)", DANGLING_WALL, 2),
    ("wall_0=Wall(0,0,0,1,0,0,2.5,0)\nwall_0=Wall(0,0,0,2,0,0,2.5,0)", DUPLICATE_ID, 2),
    ("wall_0=Wall(0,0,0,1,0,0,2.5,0)\nwall_1=Wall(0,0,0,1,0,0,2.5,0)", REPEATED, 2),
    ("door_0=Door(3,0.5,0,1,0.8,2)", SYNTAX, 1),  # host wall must be written wall_N
])
def test_each_diagnostic_kind_names_line_and_reason(text, kind, line):
    result = parse_layout(text)
    assert [(d.kind, d.line) for d in result.diagnostics] == [(kind, line)]
    assert result.diagnostics[0].text == text.splitlines()[line - 1].strip()
    with pytest.raises(LayoutParseError, match=f"scene.txt:line {line}: {kind}"):
        parse_layout(text, strict=True, source="scene.txt")


def test_a_mid_file_unclosed_line_is_syntax_not_truncation():
    result = parse_layout("wall_0=Wall(0,0,0,1,0\nwall_1=Wall(0,0,0,1,0,0,2.5,0)\n")
    assert [d.kind for d in result.diagnostics] == [SYNTAX]
    assert len(result.layout.walls) == 1


def test_integer_form_rejects_floats_and_out_of_range_bins():
    q = Quantizer(640)
    result = parse_layout("wall_0=Wall(0,0,0,1.5,0,0,2,0)\nwall_1=Wall(0,0,0,640,0,0,2,0)", q)
    assert [d.kind for d in result.diagnostics] == [BAD_NUMBER, BAD_NUMBER]
    assert "integer bin" in result.diagnostics[0].reason
    assert "bin 640 outside [0, 639]" in result.diagnostics[1].reason


def test_repeated_wall_lines_keep_door_references_valid():
    # An LM stuck in a loop re-emits wall_0 as wall_1; a door on wall_1 must land on the kept wall.
    text = ("wall_0=Wall(0,0,0,4,0,0,2.5,0)\nwall_1=Wall(0,0,0,4,0,0,2.5,0)\n"
            "wall_2=Wall(4,0,0,4,3,0,2.5,0)\ndoor_0=Door(wall_1,1,0,1,0.8,2)\n"
            "door_1=Door(wall_2,4,1,1,0.8,2)")
    result = parse_layout(text)
    assert len(result.layout.walls) == 2
    assert [d.wall_id for d in result.layout.doors] == [0, 1]
    assert [d.kind for d in result.diagnostics] == [REPEATED]


def test_text_ids_need_not_be_contiguous():
    result = parse_layout("wall_3=Wall(0,0,0,4,0,0,2.5,0)\nwall_7=Wall(4,0,0,4,3,0,2.5,0)\n"
                          "window_0=Window(wall_7,4,1,1.5,1,1)")
    assert result.diagnostics == ()
    assert result.layout.windows[0] == Window(1, 4.0, 1.0, 1.5, 1.0, 1.0)


def test_tolerates_spaces_and_blank_lines():
    result = parse_layout("\n  wall_0 = Wall( 0, 0, 0, 4, 0, 0, 2.5, 0 )  \n\n")
    assert result.diagnostics == ()
    assert result.layout.walls[0].bx == 4.0


def test_file_helpers_are_strict_and_atomic(tmp_path):
    layout = parse_layout(SPATIALLM_TEXT).layout
    path = tmp_path / "sub" / "scene.txt"
    write_layout(path, layout)
    assert read_layout(path).layout == layout
    assert [p.name for p in path.parent.iterdir()] == ["scene.txt"]  # no temp file left behind
    path.write_text(SPATIALLM_TEXT + "bbox_2=Bbox(bed,1,2)\n")
    with pytest.raises(LayoutParseError, match=r"scene.txt:line 7: wrong_arity"):
        read_layout(path)


# -- properties ---------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("wall_door_Bbox=Wall(Door)Window,0123456789.-e \n")),
               max_size=200))
def test_lenient_parsing_never_raises(text):
    result = parse_layout(text)
    assert all(d.line >= 1 for d in result.diagnostics)
    parse_layout(text, Quantizer(64))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_lenient_parsing_never_raises_on_any_unicode(text):
    parse_layout(text)


coord = st.floats(0.0, 31.9, allow_nan=False)
size = st.floats(0.0, 19.9, allow_nan=False)


@st.composite
def layouts(draw):
    walls = draw(st.lists(st.builds(Wall, coord, coord, coord, coord, coord, coord,
                                    st.floats(0, 25.5), st.floats(0, 1)), max_size=5))
    opening = st.builds(Door, st.integers(0, max(len(walls) - 1, 0)), coord, coord, coord,
                        st.floats(0, 25.5), st.floats(0, 25.5))
    doors = draw(st.lists(opening, max_size=3)) if walls else []
    windows = [Window(*(getattr(d, f) for f, _ in Door.FIELDS)) for d in doors]
    boxes = draw(st.lists(st.builds(Box, st.sampled_from(["bed", "dining_chair", "tv"]), coord, coord,
                                    coord, st.floats(-6.28, 6.28), size, size, size), max_size=5))
    return Layout(walls, doors, windows, boxes)


def _distinct(layout):
    groups = (layout.walls, layout.doors, layout.windows, layout.boxes)
    return all(len(set(g)) == len(g) for g in groups)


@settings(max_examples=150, deadline=None)
@given(layouts(), st.sampled_from([640, 1280]))
def test_write_then_parse_is_identity_up_to_quantisation(layout, num_bins):
    q = Quantizer(num_bins)
    snapped = quantize_layout(layout, q)
    assume(_distinct(snapped))  # entities that collapse onto the same bins are (rightly) repeats
    parsed = parse_layout(format_layout(layout, q), q, strict=True)
    assert parsed.layout == snapped


@settings(max_examples=150, deadline=None)
@given(layouts())
def test_metric_write_then_parse_is_identity_up_to_rounding(layout):
    assume(_distinct(layout))
    parsed = parse_layout(format_layout(layout, decimals=9), strict=True).layout
    assert parsed.num_entities == layout.num_entities
    for group_a, group_b in zip((parsed.walls, parsed.boxes), (layout.walls, layout.boxes)):
        for a, b in zip(group_a, group_b):
            for (name, kind) in type(a).FIELDS:
                if kind == "label":
                    assert getattr(a, name) == getattr(b, name)
                else:
                    assert getattr(a, name) == pytest.approx(getattr(b, name), abs=1e-9)
