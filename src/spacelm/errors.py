"""The one base class of every error that means "the input is wrong", not "spacelm has a bug".

Parsers and readers raise a subclass (``LayoutParseError``, ``PointFileError``, ``TaskError``,
``ConfigError``, ``JudgeParseError``, ...) whose message names the file, line or key and what was
expected. Each subclass also keeps its historical base (``ValueError``), so existing
``except ValueError`` code still works. The command line prints these as one line (exit code 2) and
shows a traceback for anything else, since anything else is a bug.
"""

from __future__ import annotations


class SpacelmError(Exception):
    """Bad input: a file, line, field or option that breaks its documented format."""


class ArgumentError(SpacelmError, ValueError):
    """An argument or option outside what it accepts (``--shard 3/2``, an unknown ``--source``, a budget
    too small); the message names the argument and what is allowed."""


class InputDecodeError(SpacelmError, ValueError):
    """A text file that is not UTF-8; the message names the file and the byte offset."""


def decode_error(path, error: UnicodeDecodeError, cls: type[SpacelmError] = InputDecodeError
                 ) -> SpacelmError:
    """A ``cls`` error naming ``path`` for a ``UnicodeDecodeError`` raised while reading it.

    >>> try:
    ...     b"ok \\xff".decode("utf-8")
    ... except UnicodeDecodeError as e:
    ...     print(decode_error("a.txt", e))
    a.txt: not UTF-8 text (byte 0xff at offset 3)
    """
    byte = error.object[error.start:error.start + 1].hex()
    return cls(f"{path}: not UTF-8 text (byte 0x{byte} at offset {error.start})")
