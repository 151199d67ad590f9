"""Object label sets (NYU40, ScanNet-18, SpatialLM's 59 and 20) and the mappings between them.

The tables are plain TSV files in ``spacelm/scene/data`` so they can be read and corrected without
touching code; they are read once, on first use. Every name is compared after ``normalize_label``
(SpatialLM's evaluator also turns underscores into spaces before its lookup), so "dining_chair",
"Dining Chair" and "dining  chair" are one label.

NYU40 spellings differ between sources (VLA-3D's HM3D/3RScan rows write "book shelf", ScanNet and
Matterport keep "refridgerator" and "night stand", Structured3D writes "nightstand"). ``nyu40.tsv``
keeps one clean canonical name per id and lists the others as aliases; mappings from NYU40 accept
every spelling. Where a source gives the NYU40 id, prefer it over the name.

``spatiallm59_to_spatiallm20.tsv`` reconstructs SpatialLM's ``benchmark_categories.tsv``, which only
ships with their test set. Rows follow the class names: the chair kinds go to chair; the cabinet
kinds, sideboard and cupboard to cabinet, except tv_cabinet, which the 20 keep apart; dressing_table
to dresser; potted_bonsai to plants; the combination sofa/dining table/bed to sofa/dining table/bed.
Names with no counterpart among the 20 (pillow, desk, lighting other than chandelier, kitchen and
bathroom fixtures, wall_decoration, mirror, bookcase, ...) and the ambiguous
leisure_table_and_chair_combination stay unmapped, so the evaluator drops them. For exact
comparisons with SpatialLM's numbers, load their own file with ``load_label_mapping``.

``nyu40_to_spatiallm59.tsv`` maps only where an NYU40 class has one clear SpatialLM counterpart.
cabinet -> cupboard: cupboard is the one generic cabinet among the 59, and every cabinet kind but
tv_cabinet becomes "cabinet" among the 20, so the choice does not change NYU40 -> SpatialLM-20.
floor mat -> carpet, picture -> painting, television -> tv, bookshelf -> bookcase, bathtub -> tub,
sink -> sink (not hand_sink: NYU40 sinks include kitchen sinks). Left unmapped: the structure
classes (wall, floor, ceiling, door, window: SpatialLM writes these as layout, not boxes); table
(the 59 and the 20 split it into dining, coffee and side tables, which NYU40 cannot tell apart);
lamp (floor, table and ceiling lamps in one class); dresser (an NYU40 dresser is a chest of drawers,
SpatialLM's dressing_table is a vanity: same word, different furniture); shelves, counter, blinds,
shower curtain, the other* classes and small objects.
"""

from __future__ import annotations

import functools
import io
import operator
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files

from spacelm.errors import ArgumentError, decode_error
from spacelm.scene.table import TableError, read_rows

SETS = ("nyu40", "scannet18", "spatiallm59", "spatiallm20")
MAPPINGS = (
    ("spatiallm59", "spatiallm20"),
    ("nyu40", "spatiallm59"),
    ("nyu40", "scannet18"),
    ("nyu40", "spatiallm20"),
)


def normalize_label(name: str) -> str:
    """Lower-case, underscores to spaces, whitespace collapsed; hyphens are kept.

    >>> normalize_label("  Micro-wave_Oven ")
    'micro-wave oven'
    >>> normalize_label("night\\tstand")
    'night stand'
    """
    return " ".join(name.replace("_", " ").lower().split())


def category_names(set_name: str) -> tuple[str, ...]:
    """The normalised class names of a label set, in file order (NYU40: ids 1..40)."""
    try:
        return _tables().names[set_name]
    except KeyError:
        raise ArgumentError(f"unknown label set {set_name!r}; known: {', '.join(SETS)}") from None


def nyu40_name(class_id: int) -> str:
    """The canonical NYU40 name of an id (1..40); numpy integers are accepted."""
    names = _tables().names["nyu40"]
    index = operator.index(class_id)
    if not 1 <= index <= len(names):
        raise ValueError(f"unknown NYU40 id {class_id!r}: ids run 1..40 "
                         "(0 = void/unannotated is not a class)")
    return names[index - 1]


def nyu40_id(name: str) -> int:
    """The NYU40 id of a name or known spelling variant ("refridgerator", "night stand", ...)."""
    try:
        return _tables().nyu40_ids[normalize_label(name)]
    except KeyError:
        known = ", ".join(category_names("nyu40"))
        raise ValueError(f"unknown NYU40 class name {name!r}; known: {known}") from None


def label_mapping(source: str, target: str) -> dict[str, str]:
    """A built-in mapping, normalised name -> normalised name; unmapped names are absent.

    Mappings from NYU40 also accept its spelling variants as keys. A fresh dict each call.
    """
    try:
        return dict(_tables().mappings[source, target])
    except KeyError:
        known = ", ".join(f"{s}->{t}" for s, t in MAPPINGS)
        raise ArgumentError(f"no built-in label mapping {source}->{target}; known: {known}") from None


def load_label_mapping(path: str | os.PathLike, source_column: str,
                       target_column: str) -> dict[str, str]:
    """Read a user TSV with a header row (e.g. SpatialLM's ``benchmark_categories.tsv``).

    Names are normalised. Rows with an empty source or target cell are skipped (unmapped; such
    files often hold several label sets side by side). A row with more fields than the header, or a
    source mapped to two different targets, is an error that names the file and line.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return _read_mapping(f, os.fspath(path), source_column, target_column)
    except UnicodeDecodeError as e:
        raise decode_error(path, e, TableError) from None


def map_label(name: str, mapping: Mapping[str, str]) -> str | None:
    """``name`` through a normalised mapping (as returned above); None when unmapped.

    >>> map_label("Dining_Chair", label_mapping("spatiallm59", "spatiallm20"))
    'chair'
    >>> map_label("pillow", label_mapping("spatiallm59", "spatiallm20")) is None
    True
    """
    return mapping.get(normalize_label(name))


@dataclass(frozen=True)
class _Tables:
    names: dict[str, tuple[str, ...]]
    nyu40_ids: dict[str, int]  # every accepted spelling -> id
    mappings: dict[tuple[str, str], dict[str, str]]


@functools.cache
def _tables() -> _Tables:
    nyu40 = _builtin("nyu40.tsv", ("id", "name", "aliases"))
    nyu40_by_id = {int(row["id"]): normalize_label(row["name"]) for _, row in nyu40}
    spellings = {}  # id -> every accepted normalised spelling, canonical first
    nyu40_ids = {}
    for _, row in nyu40:
        i = int(row["id"])
        aliases = [normalize_label(a) for a in row["aliases"].split("|") if a.strip()]
        spellings[i] = [nyu40_by_id[i], *aliases]
        nyu40_ids.update((s, i) for s in spellings[i])
    scannet18 = {int(row["nyu40_id"]): normalize_label(row["name"])
                 for _, row in _builtin("scannet18.tsv", ("nyu40_id", "name"))}
    names = {
        "nyu40": tuple(nyu40_by_id.values()),
        "scannet18": tuple(scannet18.values()),
        "spatiallm59": _builtin_names("spatiallm59.tsv"),
        "spatiallm20": _builtin_names("spatiallm20.tsv"),
    }
    to_20 = _read_mapping(_data("spatiallm59_to_spatiallm20.tsv"), "spatiallm59_to_spatiallm20.tsv",
                          "spatiallm59", "spatiallm20")
    to_59_by_id = {int(row["nyu40_id"]): normalize_label(row["spatiallm59"])
                   for _, row in _builtin("nyu40_to_spatiallm59.tsv", ("nyu40_id", "spatiallm59"))}

    def from_nyu40(by_id: dict[int, str]) -> dict[str, str]:
        return {s: target for i, target in by_id.items() for s in spellings[i]}

    mappings = {
        ("spatiallm59", "spatiallm20"): to_20,
        ("nyu40", "spatiallm59"): from_nyu40(to_59_by_id),
        ("nyu40", "scannet18"): from_nyu40(scannet18),
        ("nyu40", "spatiallm20"): from_nyu40(
            {i: to_20[name] for i, name in to_59_by_id.items() if name in to_20}),
    }
    return _Tables(names, nyu40_ids, mappings)


def _data(filename: str) -> io.StringIO:
    return io.StringIO(files("spacelm.scene").joinpath("data", filename).read_text(encoding="utf-8"))


def _builtin(filename: str, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    return read_rows(_data(filename), filename, columns, delimiter="\t")


def _builtin_names(filename: str) -> tuple[str, ...]:
    return tuple(normalize_label(row["name"]) for _, row in _builtin(filename, ("name",)))


def _read_mapping(lines: Iterable[str], origin: str, source_column: str,
                  target_column: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, row in read_rows(lines, origin, (source_column, target_column), delimiter="\t"):
        source, target = normalize_label(row[source_column]), normalize_label(row[target_column])
        if not source or not target:
            continue
        if mapping.get(source, target) != target:
            raise TableError(f"{origin}, line {line}: {source!r} maps to {target!r}, but line "
                             f"{first_line[source]} maps it to {mapping[source]!r}")
        mapping[source] = target
        first_line.setdefault(source, line)
    return mapping
