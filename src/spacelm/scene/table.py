"""Delimited text with a header row (CSV, TSV), read into numbered rows with errors that name the line.

The one reader behind the dataset CSVs (VLA-3D) and the label tables (``scene/data/*.tsv``), so a bad
file gets the same messages whichever reads it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable

from spacelm.errors import SpacelmError

_KIND = {",": "comma-separated", "\t": "tab-separated"}


class TableError(SpacelmError, ValueError):
    """A delimited text file without the expected columns or with a malformed row."""


def read_rows(lines: Iterable[str], origin: str, columns: tuple[str, ...], *, delimiter: str = ",",
              cells_required: bool = False) -> list[tuple[int, dict[str, str]]]:
    """``(line number, {column: cell})`` for each non-blank row; header names and cells are stripped.

    Every name in ``columns`` must be in the header. A row may be shorter than the header (its missing
    trailing cells read ``""``: VLA-3D leaves out unused colour columns) but not longer; with
    ``cells_required`` it must still reach every column of ``columns``.

    >>> read_rows(["id,name\\n", "\\n", "7, bed\\n", "8\\n"], "t.csv", ("name",))
    [(3, {'id': '7', 'name': 'bed'}), (4, {'id': '8', 'name': ''})]
    """
    reader = csv.reader(lines, delimiter=delimiter)
    kind = _KIND.get(delimiter, f"{delimiter!r}-separated")
    try:
        header = next(reader, None)
        if header is None:
            raise TableError(f"{origin}: empty file, expected a header with {', '.join(columns)}")
        header = [h.strip() for h in header]
        missing = [c for c in columns if c not in header]
        if missing:
            raise TableError(f"{origin}, line {reader.line_num}: missing column(s) "
                             f"{', '.join(map(repr, missing))}; the header has {', '.join(map(repr, header))}")
        rows = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(header):
                raise TableError(f"{origin}, line {reader.line_num}: {len(cells)} {kind} fields, "
                                 f"the header has {len(header)}")
            if cells_required and (absent := [c for c in columns if header.index(c) >= len(cells)]):
                raise TableError(f"{origin}, line {reader.line_num}: {len(cells)} fields, "
                                 f"no value for {', '.join(map(repr, absent))}")
            cells = [c.strip() for c in cells] + [""] * (len(header) - len(cells))
            rows.append((reader.line_num, dict(zip(header, cells))))
    except csv.Error as err:
        raise TableError(f"{origin}, line {reader.line_num}: malformed {kind} text: {err}") from None
    return rows
