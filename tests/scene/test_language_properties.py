"""Hostile layout text: lenient parsing never raises, strict raises only ``LayoutParseError``, and
every layout the writer accepts reads back. The regressions are the reproducers of
research/reliability-2026-12.md (L1-L5) and the decimals=0 rounding bug."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacelm.errors import SpacelmError
from spacelm.scene import Box, Door, Layout, Wall
from spacelm.scene.language import (
    BAD_NUMBER,
    SYNTAX,
    LayoutParseError,
    LayoutWriteError,
    format_layout,
    label_problem,
    parse_layout,
    read_layout,
    write_layout,
)
from spacelm.scene.quantize import Quantizer

BIG = "9" * 4301  # one digit past Python's int() limit
GOOD = ("wall_0=Wall(0.0,0.0,0.0,4.0,0.0,0.0,2.5,0.0)\n"
        "door_0=Door(wall_0,1.0,0.0,1.0,0.9,2.0)\n"
        "bbox_0=Bbox(bed,2.0,1.5,0.25,0.0,2.0,1.6,0.5)\n")


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("text, quantizer, kind", [
    ("wall_" + BIG + "=Wall(0,0,0,1,0,0,2,0)", None, SYNTAX),  # L1: the id
    ("wall_0=Wall(0,0,0,1,0,0,2,0)\ndoor_0=Door(wall_" + BIG + ",1,0,1,1,2)", None, SYNTAX),  # L2
    ("wall_0=Wall(" + "1" * 4301 + ",0,0,1,0,0,2,0)", Quantizer(1280), BAD_NUMBER),  # L3: a bin
])
def test_numbers_past_the_int_digit_limit_are_diagnostics(text, quantizer, kind, strict):
    if strict:
        with pytest.raises(LayoutParseError) as error:
            parse_layout(text, quantizer, strict=True, source="room.txt")
        assert [d.kind for d in error.value.diagnostics] == [kind]
        assert "room.txt:line" in str(error.value) and len(str(error.value)) < 1000
    else:
        result = parse_layout(text, quantizer)
        assert [d.kind for d in result.diagnostics] == [kind]
        assert len(result.layout.walls) == (1 if "\n" in text else 0)


@pytest.mark.parametrize("label", ["shelf (wall)", "desk,chair", "a\x0bb", " padded ", "", "a\nb",
                                   "x\u2028y"])
def test_writer_refuses_labels_it_could_not_read_back(tmp_path, label):
    layout = Layout(boxes=[Box(label, 1, 1, 0.5, 0, 1, 1, 1)])
    assert label_problem(label) is not None
    with pytest.raises(LayoutWriteError, match=r"bbox_0 \(Box\) label"):
        write_layout(tmp_path / "x.txt", layout)
    assert not (tmp_path / "x.txt").exists()  # nothing half-written


def test_writer_refuses_non_finite_values_and_dangling_walls():
    with pytest.raises(LayoutWriteError, match=r"wall_0 \(Wall\) ax: nan is not finite"):
        format_layout(Layout(walls=[Wall(float("nan"), 0, 0, 1, 0, 0, 2)]))
    with pytest.raises(LayoutWriteError, match="wall index 3 is not one of the layout's 1 walls"):
        format_layout(Layout(walls=[Wall(0, 0, 0, 1, 0, 0, 2)], doors=[Door(3, 0.5, 0, 1, 0.8, 2)]))


def test_decimals_zero_keeps_whole_numbers():
    # The bug: trailing-zero stripping turned 10.0 into "1" and 0.3 into "".
    text = format_layout(Layout(boxes=[Box("bed", 10.0, 0.3, 2.6, 0, 1.0, 1.0, 1.0)]), decimals=0)
    assert text == "bbox_0=Bbox(bed,10.0,0.0,3.0,0.0,1.0,1.0,1.0)"
    assert parse_layout(text, strict=True).layout.boxes[0].x == 10.0
    assert format_layout(Layout(boxes=[Box("b", -0.00001, 100, 4, 0, 1, 1, 1)]), decimals=4) == \
        "bbox_0=Bbox(b,0.0,100.0,4.0,0.0,1.0,1.0,1.0)"
    with pytest.raises(ValueError, match="decimals must be an integer >= 0"):
        format_layout(Layout(), decimals=-1)


def test_read_layout_names_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "room.txt"
    path.write_bytes(b"wall_0=Wall(0,0,0,1,0,0,2,0)\n\xff\n")
    with pytest.raises(SpacelmError, match=r"room.txt: not UTF-8 text \(byte 0xff at offset 29\)"):
        read_layout(path)


def test_every_reader_error_is_a_spacelm_error_and_still_a_value_error():
    from spacelm.scene.quantize import QuantizationError

    for cls in (LayoutParseError, LayoutWriteError, QuantizationError):
        assert issubclass(cls, SpacelmError) and issubclass(cls, ValueError)


def test_scalar_decode_equals_the_array_decode():
    import numpy as np

    for q in (Quantizer(1280), Quantizer(640, compat=True), Quantizer(7)):
        bins = np.arange(q.num_bins)
        for kind in ("world", "height", "angle"):
            assert [q.decode(int(b), kind) for b in bins] == q.decode(bins, kind).tolist()


# --- properties ---------------------------------------------------------------------------------

_PIECES = st.sampled_from(["(", ")", ",", "=", "_", "\n", "\x0b", "\u2028", " ", "-", ".", "e",
                           "nan", "inf", "wall_", "Wall", "Bbox", "door_0", BIG, "1" * 40, "0"])


@st.composite
def mutated_texts(draw):
    """The good layout with a few pieces inserted, deleted or replaced at random places."""
    text = draw(st.sampled_from([GOOD, format_layout(parse_layout(GOOD).layout, Quantizer(1280))]))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(_PIECES | st.text(max_size=3))
        if action == "insert":
            text = text[:at] + piece + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 5)):]
        else:
            text = text[:at] + piece + text[at + len(piece):]
    return text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_texts(), st.sampled_from([None, Quantizer(1280)]))
def test_lenient_never_raises_and_strict_raises_only_layout_parse_error(text, quantizer):
    lenient = parse_layout(text, quantizer)
    try:
        strict = parse_layout(text, quantizer, strict=True, source="m.txt")
    except LayoutParseError as e:
        assert e.diagnostics == lenient.diagnostics and e.diagnostics
    else:
        assert strict == lenient and not lenient.diagnostics


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(max_size=8), min_size=1, max_size=4))
def test_every_written_layout_reads_back(labels):
    layout = Layout(walls=[Wall(0, 0, 0, 4, 0, 0, 2.5)],
                    boxes=[Box(label, 1.0 + i, 1, 0.5, 0, 1, 1, 1) for i, label in enumerate(labels)])
    if any(label_problem(label) for label in labels):
        with pytest.raises(LayoutWriteError):
            format_layout(layout)
        return
    assert parse_layout(format_layout(layout), strict=True).layout == layout
