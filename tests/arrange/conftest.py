"""Shared builders for the arrange tests, as fixtures (tests import no helper modules)."""

import json
from pathlib import Path

import pytest

from spacelm.arrange.task import task_from_dict

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata" / "metaspatial"


def _make_task(objects, room=(6.0, 6.0, 3.0), task_id="t", **extra):
    """A task from short object dicts; ``size`` defaults to a unit cube, ``on_floor`` to True."""
    full = [{"size": [1, 1, 1], **o} for o in objects]
    length, width, height = room
    return task_from_dict({"id": task_id, "preference": "a test room", "objects": full,
                           "room": {"length": length, "width": width, "height": height}, **extra})


def _completion(entries, think="placing things") -> str:
    """A well-formed completion around a JSON answer (a list or any JSON value)."""
    return f"<think>{think}</think>\n<answer>{json.dumps(entries)}</answer>"


@pytest.fixture
def make_task():
    return _make_task


@pytest.fixture
def completion():
    return _completion


@pytest.fixture
def real_dir():
    if not REAL.exists():
        pytest.skip(f"MetaSpatial samples not present at {REAL}")
    return REAL
