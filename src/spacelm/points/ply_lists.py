"""PLY rows that hold list properties (meshes): row sizes depend on the data.

We read them ourselves rather than through plyfile: its readers loop in Python over every value
(2 s per MB of ASCII, 1.2 s per MB of binary vertices with a list, measured), and for a list length
that the file cannot hold it first allocates the whole list (8 GiB for a length of 2**31).

- ASCII: each line is split once and walked property by property (0.15 s per MB).
- Binary: one ``np.frombuffer`` with a fixed row type when every row's lists have the first row's
  lengths (all-triangle faces, empty lists: the usual case); otherwise one pass over the rows to find
  where each starts, checking every length against the bytes left, then one gather per property.

A property is ``(name, code, item_code)``: numpy codes of the value, or of a list's length and items
(``item_code`` None for a scalar). Errors are ``ValueError``s without the file name; the caller adds it.
"""

from __future__ import annotations

import struct

import numpy as np

Property = tuple[str, str, "str | None"]
_STRUCT = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "f4": "f", "f8": "d"}


def read_ascii_rows(lines: list[bytes], properties: list[Property], first_line: int) -> np.ndarray:
    """``(N, S) float64`` values of the S scalar properties of ASCII ``lines``, one row per line.

    ``first_line`` is the file's line number of ``lines[0]``, for messages.
    """
    is_scalar = [item is None for _, _, item in properties]
    tokens: list[bytes] = []
    for number, line in enumerate(lines, start=first_line):
        words, at = line.split(), 0
        try:
            for scalar in is_scalar:
                if scalar:
                    tokens.append(words[at])
                    at += 1
                else:
                    length = int(words[at])
                    if length < 0:
                        raise ValueError
                    at += 1 + length
        except (IndexError, ValueError):
            raise ValueError(f"line {number}: too few values or a bad list length for the properties "
                             f"{[name for name, _, _ in properties]}") from None
        if at != len(words):
            raise ValueError(f"line {number}: {len(words)} values, the properties declare {at}")
    try:
        return np.array(tokens).astype(np.float64).reshape(len(lines), sum(is_scalar))
    except ValueError as err:
        raise ValueError(f"malformed ASCII vertex data: {err}") from None


def read_binary_rows(data: bytes, properties: list[Property], count: int,
                     byte_order: str) -> tuple[np.ndarray, int]:
    """``(scalar rows, bytes used)`` of ``count`` binary rows at the start of ``data``.

    The rows come back as a structured array of the scalar properties in native byte order.
    """
    for name, code, item in properties:
        if item is not None and np.dtype(code).kind not in "iu":
            raise ValueError(f"list {name!r} has a non-integer length type {code}")
    uniform = _uniform_row_type(data, properties, byte_order)
    if uniform is not None and uniform.itemsize == 0:  # an element without properties
        return _scalars(properties, [], count), 0
    if uniform is not None and count * uniform.itemsize <= len(data):
        rows = np.frombuffer(data, uniform, count=count)
        if all((rows[f"{i} length"] == uniform[f"{i} items"].shape[0]).all()
               for i, (_, _, item) in enumerate(properties) if item is not None):
            return _scalars(properties, [rows[name] for name, _, item in properties if item is None],
                            count), count * uniform.itemsize
    starts, used = _scalar_offsets(data, properties, count, byte_order)  # (count, S) byte offsets
    raw = np.frombuffer(data, np.uint8)
    columns = []
    for column, (_, code, _) in enumerate(p for p in properties if p[2] is None):
        dtype = np.dtype(byte_order + code)
        picked = raw[starts[:, column, None] + np.arange(dtype.itemsize)]  # (count, itemsize)
        columns.append(picked.view(dtype)[:, 0])
    return _scalars(properties, columns, count), used


def _uniform_row_type(data: bytes, properties: list[Property], byte_order: str) -> np.dtype | None:
    """The row type if every row were like the first (list lengths read from it); None if it is cut."""
    fields, at = [], 0
    for index, (name, code, item) in enumerate(properties):
        size = np.dtype(code).itemsize
        if item is None:
            fields.append((name, byte_order + code))
            at += size
            continue
        if at + size > len(data):
            return None
        length = int(np.frombuffer(data, byte_order + code, count=1, offset=at)[0])
        if length < 0 or at + size + length * np.dtype(item).itemsize > len(data):
            return None  # the row walk below reports it with its row
        fields += [(f"{index} length", byte_order + code), (f"{index} items", byte_order + item, (length,))]
        at += size + length * np.dtype(item).itemsize
    return np.dtype(fields)


def _scalar_offsets(data: bytes, properties: list[Property], count: int,
                    byte_order: str) -> tuple[np.ndarray, int]:
    """``((count, S) int64 byte offsets of each row's scalars, bytes used)``, walking row by row."""
    steps = []  # per property: (is scalar, its size or the length's struct format and size, item size)
    for _, code, item in properties:
        if item is None:
            steps.append((True, np.dtype(code).itemsize, None, 0))
        else:
            steps.append((False, np.dtype(code).itemsize, byte_order + _STRUCT[code], np.dtype(item).itemsize))
    offsets, at, end = [], 0, len(data)
    for row in range(count):
        for scalar, size, length_format, item_size in steps:
            if scalar:
                offsets.append(at)
                at += size
                continue
            if at + size > end:
                raise ValueError(f"truncated: row {row} of {count} is cut at byte {end}")
            (length,) = struct.unpack_from(length_format, data, at)
            if length < 0:
                raise ValueError(f"row {row}: a list has a negative length {length}")
            at += size + length * item_size
        if at > end:
            raise ValueError(f"truncated: row {row} of {count} ends at byte {at}, but only {end} bytes follow")
    return np.array(offsets, dtype=np.int64).reshape(count, sum(scalar for scalar, *_ in steps)), at


def _scalars(properties: list[Property], columns: list[np.ndarray], count: int) -> np.ndarray:
    names = [name for name, _, item in properties if item is None]
    out = np.empty(count, [(name, column.dtype.newbyteorder("=")) for name, column in zip(names, columns)])
    for name, column in zip(names, columns):
        out[name] = column
    return out
