"""The layout language: SpatialLM's text format, written and parsed in one place.

One entity per line, byte-compatible with SpatialLM::

    wall_0=Wall(ax,ay,az,bx,by,bz,height,thickness)
    door_0=Door(wall_3,x,y,z,width,height)
    window_0=Window(wall_1,x,y,z,width,height)
    bbox_0=Bbox(class_name,x,y,z,angle_z,scale_x,scale_y,scale_z)

Files on disk hold metric floats; the language model writes integer bins (pass a ``Quantizer``).
The argument lists come from each entity's ``FIELDS`` table, so the grammar is defined once.

Parsing is lenient by default (model output): it never raises, drops bad lines and reports each as a
``Diagnostic`` with the line number, text and reason. ``strict=True`` (files) raises
``LayoutParseError`` carrying the same diagnostics. SpatialLM's parser silently skips bad lines and
drops doors whose wall is unknown; ours says so. No text makes parsing raise anything else (ids or
bins past Python's integer digit limit are diagnostics too).

Writing refuses what it could not read back (``LayoutWriteError``): a label that is empty, has
surrounding spaces, a line break or one of ``( ) ,``; a non-finite value; a door or window whose
wall is not in the layout. So every written layout parses back to itself (up to rounding).
"""

from __future__ import annotations

import math
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path

from spacelm.errors import SpacelmError, decode_error
from spacelm.scene.entities import (
    ENTITY_BY_KEYWORD,
    ENTITY_TYPES,
    Box,
    Door,
    Wall,
    Window,
)
from spacelm.scene.layout import Layout
from spacelm.scene.quantize import Quantizer

# Diagnostic kinds, in the order a line is checked.
SYNTAX = "syntax"  # not of the form name_id=Type(args)
TRUNCATED = "truncated"  # the last line stops before its closing parenthesis
UNKNOWN_ENTITY = "unknown_entity"  # Type is not Wall/Door/Window/Bbox, or the id prefix disagrees
WRONG_ARITY = "wrong_arity"
BAD_NUMBER = "bad_number"  # not a finite number, or (integer form) not an integer bin in range
DUPLICATE_ID = "duplicate_id"  # the same id twice with different arguments: the first one is kept
REPEATED = "repeated"  # the same entity again (a known LM failure on big scenes): dropped
DANGLING_WALL = "dangling_wall"  # a door/window whose host wall does not exist
DIAGNOSTIC_KINDS = (SYNTAX, TRUNCATED, UNKNOWN_ENTITY, WRONG_ARITY, BAD_NUMBER, DUPLICATE_ID,
                    REPEATED, DANGLING_WALL)

_LINE = re.compile(r"^(?P<prefix>[A-Za-z]+)_(?P<id>\d+)\s*=\s*(?P<keyword>[A-Za-z]+)\s*\((?P<args>[^()]*)\)$")
_WALL_REF = re.compile(r"^wall_(\d+)$")
_INT = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class Diagnostic:
    """One problem found while parsing: 1-based line number, the line's text, kind and reason."""

    line: int
    text: str
    kind: str
    reason: str

    def __str__(self) -> str:
        shown = self.text if len(self.text) <= 120 else f"{self.text[:80]}...{self.text[-30:]}"
        return f"line {self.line}: {self.kind}: {self.reason}: {shown!r}"


class LayoutParseError(SpacelmError, ValueError):
    """Raised by strict parsing; ``diagnostics`` lists every problem, ``source`` names the file."""

    def __init__(self, source: str, diagnostics: list[Diagnostic]):
        self.source = source
        self.diagnostics = tuple(diagnostics)
        shown = "\n".join(f"  {source}:{d}" for d in diagnostics[:20])
        more = f"\n  ... and {len(diagnostics) - 20} more" if len(diagnostics) > 20 else ""
        super().__init__(f"{source}: {len(diagnostics)} layout error(s)\n{shown}{more}")


class LayoutWriteError(SpacelmError, ValueError):
    """A layout that cannot be written so that it reads back: the message names the entity and field."""


@dataclass(frozen=True)
class ParseResult:
    layout: Layout
    diagnostics: tuple[Diagnostic, ...]


# ---------------------------------------------------------------------------------------------
# Writing


def format_layout(layout: Layout, quantizer: Quantizer | None = None, *, decimals: int = 4) -> str:
    """Layout -> text, one entity per line, ids renumbered 0..n-1 per type in the layout's order.

    Metric floats (rounded to ``decimals``) without a quantizer, integer bins with one. Raises
    ``LayoutWriteError`` for an entity that would not read back (see the module docstring).

    >>> print(format_layout(Layout(walls=[Wall(0, 0, 0, 4, 0, 0, 2.5)])))
    wall_0=Wall(0.0,0.0,0.0,4.0,0.0,0.0,2.5,0.0)
    >>> print(format_layout(Layout(walls=[Wall(0, 0, 0, 4, 0, 0, 2.5)]), Quantizer(1280)))
    wall_0=Wall(0,0,0,160,0,0,125,0)
    """
    if not (isinstance(decimals, int) and decimals >= 0):
        raise ValueError(f"decimals must be an integer >= 0, got {decimals!r}")
    lines = []
    for etype, entities in zip(ENTITY_TYPES, _groups(layout)):
        for i, entity in enumerate(entities):
            _check_writable(entity, f"{etype.prefix}_{i}", len(layout.walls))
            args = ",".join(_format_arg(entity, name, kind, quantizer, decimals)
                            for name, kind in etype.FIELDS)
            lines.append(f"{etype.prefix}_{i}={etype.keyword}({args})")
    return "\n".join(lines)


def _groups(layout: Layout):
    return layout.walls, layout.doors, layout.windows, layout.boxes


def _check_writable(entity, where: str, num_walls: int) -> None:
    """Raise ``LayoutWriteError`` unless every field of ``entity`` survives a trip through text."""
    for name, kind in type(entity).FIELDS:
        value = getattr(entity, name)
        problem = None
        if kind == "label":
            problem = label_problem(value)
        elif kind == "wall_ref":
            if not (_is_index(value) and 0 <= value < num_walls):
                problem = f"wall index {value!r} is not one of the layout's {num_walls} walls"
        elif not math.isfinite(value):
            problem = f"{value!r} is not finite"
        if problem:
            raise LayoutWriteError(f"{where} ({type(entity).__name__}) {name}: {problem}")


def _is_index(value) -> bool:
    """An integer (Python or numpy), not a float or a bool."""
    try:
        operator.index(value)
    except TypeError:
        return False
    return not isinstance(value, bool)


def label_problem(label) -> str | None:
    """Why ``label`` cannot be written as a layout label, or None when it can.

    >>> label_problem("coffee_table"), label_problem("desk,chair")
    (None, "contains ',' (labels cannot hold '(', ')', ',' or line breaks)")
    """
    if not isinstance(label, str) or not label:
        return f"must be a non-empty string, got {label!r}"
    if label != label.strip():
        return f"{label!r} has leading or trailing whitespace"
    bad = next((c for c in label if c in "()," or len(f"a{c}b".splitlines()) > 1), None)
    if bad is not None:
        return f"contains {bad!r} (labels cannot hold '(', ')', ',' or line breaks)"
    return None


def _format_arg(entity, name: str, kind: str, quantizer: Quantizer | None, decimals: int) -> str:
    value = getattr(entity, name)
    if kind == "label":
        return str(value)
    if kind == "wall_ref":
        return f"wall_{value}"
    if quantizer is not None:
        return str(quantizer.encode(value, kind))
    return _format_float(value, decimals)


def _format_float(value: float, decimals: int) -> str:
    """Fixed point, trailing zeros dropped but one decimal kept: 2.5, 4.0 (decimals=0: 10.0, 0.0)."""
    text = f"{value:.{decimals}f}"
    if "." not in text:
        text += ".0"
    text = text.rstrip("0")
    text = text + "0" if text.endswith(".") else text
    return "0.0" if float(text) == 0 else text


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_layout(text: str, quantizer: Quantizer | None = None, *, strict: bool = False,
                 source: str = "<text>") -> ParseResult:
    """Text -> ``ParseResult(layout, diagnostics)``.

    With a ``quantizer`` the numbers must be integer bins and are decoded to metres. Lenient mode
    never raises; ``strict`` raises ``LayoutParseError`` if there is any diagnostic.

    >>> r = parse_layout("wall_0=Wall(0,0,0,4,0,0,2.5,0)\\ndoor_0=Door(wall_7,1,0,1,0.9,2)")
    >>> len(r.layout.walls), len(r.layout.doors), r.diagnostics[0].kind
    (1, 0, 'dangling_wall')
    """
    diagnostics: list[Diagnostic] = []
    rows = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    ends_cleanly = text.endswith(("\n", ")")) or not rows
    parsed: dict[type, list[tuple[int, int, str, tuple]]] = {t: [] for t in ENTITY_TYPES}
    seen_ids: dict[tuple[type, int], tuple] = {}
    seen_values: dict[tuple[type, tuple], int] = {}  # (type, values) -> text id kept
    wall_alias: dict[int, int] = {}  # text id of a dropped repeated wall -> text id kept

    for index, (line_no, line) in enumerate(rows):
        def report(kind: str, reason: str) -> None:
            diagnostics.append(Diagnostic(line_no, line, kind, reason))

        is_last = index == len(rows) - 1
        entry = _parse_line(line, quantizer, report, truncated_ok=is_last and not ends_cleanly)
        if entry is None:
            continue
        etype, text_id, values = entry
        if (etype, text_id) in seen_ids:
            if seen_ids[(etype, text_id)] == values:
                report(REPEATED, f"repeats {etype.prefix}_{text_id}")
            else:
                report(DUPLICATE_ID, f"{etype.prefix}_{text_id} was already defined; keeping the first")
            continue
        if (etype, values) in seen_values:
            kept = seen_values[(etype, values)]
            report(REPEATED, f"same {etype.keyword} as {etype.prefix}_{kept}")
            if etype is Wall:
                wall_alias[text_id] = kept
            continue
        seen_ids[(etype, text_id)] = values
        seen_values[(etype, values)] = text_id
        parsed[etype].append((line_no, text_id, line, values))

    layout = _build_layout(parsed, wall_alias, diagnostics)
    diagnostics.sort(key=lambda d: d.line)
    if strict and diagnostics:
        raise LayoutParseError(source, diagnostics)
    return ParseResult(layout, tuple(diagnostics))


def _parse_line(line: str, quantizer: Quantizer | None, report, *, truncated_ok: bool):
    """One line -> (entity type, text id, converted argument tuple), or None after a report."""
    match = _LINE.match(line)
    if match is None:
        if truncated_ok and ")" not in line:
            report(TRUNCATED, "the last line ends before its closing parenthesis")
        else:
            report(SYNTAX, "expected name_id=Type(arguments)")
        return None
    text_id = _small_int(match["id"])
    if text_id is None:
        report(SYNTAX, f"id {match['id'][:20]}... has too many digits")
        return None
    etype = ENTITY_BY_KEYWORD.get(match["keyword"])
    if etype is None:
        known = ", ".join(ENTITY_BY_KEYWORD)
        report(UNKNOWN_ENTITY, f"unknown entity type {match['keyword']!r} (expected one of {known})")
        return None
    if match["prefix"] != etype.prefix:
        report(UNKNOWN_ENTITY, f"id prefix {match['prefix']!r} does not match {etype.keyword} "
                               f"(expected {etype.prefix}_N)")
        return None
    args = [a.strip() for a in match["args"].split(",")]
    if len(args) != len(etype.FIELDS):
        report(WRONG_ARITY, f"{etype.keyword} takes {len(etype.FIELDS)} arguments "
                            f"({', '.join(n for n, _ in etype.FIELDS)}), got {len(args)}")
        return None
    values = []
    for arg, (name, kind) in zip(args, etype.FIELDS):
        value, problem = _convert(arg, kind, quantizer)
        if problem:
            report(BAD_NUMBER if kind not in ("label", "wall_ref") else SYNTAX, f"{name}: {problem}")
            return None
        values.append(value)
    return etype, text_id, tuple(values)


def _convert(arg: str, kind: str, quantizer: Quantizer | None):
    """One argument -> (value, None) or (None, what is wrong)."""
    if kind == "label":
        return (arg, None) if arg else (None, "empty class name")
    if kind == "wall_ref":
        ref = _WALL_REF.match(arg)
        wall = None if ref is None else _small_int(ref[1])
        return (wall, None) if wall is not None else (None, f"expected wall_N, got {arg[:40]!r}")
    if quantizer is not None:
        if not _INT.match(arg):
            return None, f"expected an integer bin, got {arg[:40]!r}"
        value = _small_int(arg)
        if value is None or not 0 <= value < quantizer.num_bins:
            return None, f"bin {arg[:40]} outside [0, {quantizer.num_bins - 1}]"
        return quantizer.decode(value, kind), None
    try:
        value = float(arg)
    except ValueError:
        return None, f"expected a number, got {arg[:40]!r}"
    return (value, None) if math.isfinite(value) else (None, f"not finite: {arg[:40]!r}")


def _small_int(digits: str) -> int | None:
    """``int(digits)``, or None past Python's integer digit limit (no id or bin is that long)."""
    try:
        return int(digits)
    except ValueError:
        return None


def _build_layout(parsed, wall_alias: dict[int, int], diagnostics: list[Diagnostic]) -> Layout:
    """Create entities and resolve door/window wall references to wall indices."""
    wall_index = {text_id: i for i, (_, text_id, _, _) in enumerate(parsed[Wall])}
    groups = {}
    for etype in ENTITY_TYPES:
        entities = []
        for line_no, _, line, values in parsed[etype]:
            if etype in (Door, Window):
                ref = wall_alias.get(values[0], values[0])
                if ref not in wall_index:
                    diagnostics.append(Diagnostic(line_no, line, DANGLING_WALL,
                                                  f"wall_{values[0]} is not defined"))
                    continue
                values = (wall_index[ref],) + values[1:]
            entities.append(etype(*values))
        groups[etype] = entities
    return Layout(groups[Wall], groups[Door], groups[Window], groups[Box])


# ---------------------------------------------------------------------------------------------
# Prompt text

# SpatialLM's prompt names some fields differently from our dataclasses.
_PROMPT_FIELD_NAMES = {"x": "position_x", "y": "position_y", "z": "position_z", "label": "class"}
TASKS = {"all": "walls, doors, windows, boxes", "arch": "walls, doors, windows", "object": "boxes"}


def code_template() -> str:
    """The "reference code" shown to the model: one ``@dataclass`` per entity, SpatialLM's text exactly.

    >>> print(code_template().split("\\n\\n")[1])
    @dataclass
    class Door:
        wall_id: str
        position_x: int
        position_y: int
        position_z: int
        width: int
        height: int
    """
    blocks = []
    for etype in ENTITY_TYPES:
        lines = [f"    {_PROMPT_FIELD_NAMES.get(name, name)}: {'str' if kind in ('label', 'wall_ref') else 'int'}"
                 for name, kind in etype.FIELDS]
        blocks.append("@dataclass\n" + f"class {etype.keyword}:\n" + "\n".join(lines))
    return "\n\n".join(blocks)


def task_instruction(task: str = "all", categories: list[str] | None = None, *,
                     reference_code: bool = True) -> str:
    """SpatialLM's request: ``Detect walls, doors, windows, boxes. The reference code is as followed: ...``.

    ``task`` is ``all``, ``arch`` or ``object``; ``categories`` replaces "boxes" by a list of labels
    (``["bed", "nightstand"]`` -> "Detect bed, nightstand."). ``reference_code=False`` stops after the
    request (no code template).

    >>> task_instruction("arch", reference_code=False)
    'Detect walls, doors, windows.'
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    what = TASKS[task]
    if categories:
        what = what.replace("boxes", ", ".join(categories))
    if not reference_code:
        return f"Detect {what}."
    return f"Detect {what}. The reference code is as followed: {code_template()}"


# ---------------------------------------------------------------------------------------------
# Files


def read_layout(path: str | os.PathLike, *, strict: bool = True) -> ParseResult:
    """Read a metric layout file. Strict by default: a bad file raises naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise decode_error(path, e) from None
    return parse_layout(text, strict=strict, source=str(path))


def write_layout(path: str | os.PathLike, layout: Layout, *, decimals: int = 4) -> None:
    """Write a metric layout file atomically (a crash never leaves a half-written file).

    Raises ``LayoutWriteError`` (before writing anything) for a layout that would not read back."""
    from spacelm.io import atomic_write_text

    text = format_layout(layout, decimals=decimals)
    atomic_write_text(path, text + "\n" if text else "")
