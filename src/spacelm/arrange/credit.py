"""Per-object credit (MetaSpatial v2's 3D-SPO idea): which generated tokens place which object.

GRPO gives every token of a completion the same advantage ``A``. 3D-SPO lowers it on the tokens
that wrote an object's coordinates by that object's own physics penalty, so a layout with one
colliding chair teaches "move the chair", not "change everything". We use

    A[t] = A - credit * p_k   on the x, y, z and rotation value tokens of object k,

with ``p_k = PhysicsReport.object_penalty()[k] / weights.total`` in [0, 1]. MetaSpatial scales the
reward instead (``r * (m * pi_k + 1 - m)``), which flips the direction of the correction when r < 0,
as our physics rewards are (see ``shared/research/grpo-design.md`` section 3).

Tokens are mapped on the generated ids themselves, not on a re-tokenisation: a token's character
end is the length of the decoded prefix that ends with it, so a token that spans a value's
boundary still belongs to the value it touches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from spacelm.arrange.answer import parse_answer, placements_to_boxes
from spacelm.arrange.physics import PhysicsConfig, PhysicsWeights, check_layouts
from spacelm.arrange.task import ArrangeTask

_ENTRY = re.compile(r"\{[^{}]*\}")  # one answer entry (entries hold no nested objects)
_ID = re.compile(r'"(?:id|new_object_id)"\s*:\s*"([^"\\]*)"')
_VALUE = re.compile(r'"(?:x|y|z|rotation)"\s*:\s*(-?[0-9][0-9.eE+\-]*)')


def char_ends(ids: Sequence[int], decode: Callable[[list[int]], str]) -> np.ndarray:
    """``(T,) int``: the end (exclusive) in the decoded text of each token's characters."""
    ids = list(ids)
    return np.asarray([len(decode(ids[:j + 1])) for j in range(len(ids))], dtype=np.int64)


def value_spans(text: str, object_ids: Sequence[str]) -> list[tuple[int, int, int]]:
    """``(start, end, object index)`` of each coordinate value in the last ``<answer>`` block.

    Entries whose id is not an object of the task are left out (they place nothing).
    """
    index = {object_id: k for k, object_id in enumerate(object_ids)}
    start = text.rfind("<answer>")
    if start < 0:
        return []
    spans = []
    for entry in _ENTRY.finditer(text, start):
        found = _ID.search(entry.group(0))
        if found is None or found.group(1) not in index:
            continue
        k = index[found.group(1)]
        spans += [(entry.start() + m.start(1), entry.start() + m.end(1), k)
                  for m in _VALUE.finditer(entry.group(0))]
    return spans


def coord_token_owner(ids: Sequence[int], decode: Callable[[list[int]], str],
                      object_ids: Sequence[str]) -> np.ndarray:
    """``(T,) int``: for each token, the index of the object whose coordinate it writes, else -1."""
    ends = char_ends(ids, decode)
    starts = np.concatenate([[0], ends[:-1]])
    owner = np.full(len(ends), -1, dtype=np.int64)
    text = decode(list(ids))
    for lo, hi, k in value_spans(text, object_ids):
        owner[(starts < hi) & (ends > lo)] = k  # (T,) tokens overlapping [lo, hi)
    return owner


def token_penalties(ids: Sequence[int], decode: Callable[[list[int]], str], task: ArrangeTask, *,
                    physics: PhysicsConfig = PhysicsConfig(),
                    weights: PhysicsWeights = PhysicsWeights(),
                    require_rotation: bool = True) -> np.ndarray:
    """``(T,) float`` in [0, 1]: each token's object penalty ``p_k`` (0 off coordinates, and
    everywhere when the answer cannot be read completely: then no object is to blame alone)."""
    penalty = np.zeros(len(ids))
    text = decode(list(ids))
    answer = parse_answer(text, task, require_rotation=require_rotation)
    if not answer.complete or not ids:
        return penalty
    report = check_layouts(task, placements_to_boxes(task, answer.placements), physics)
    per_object = report.object_penalty(weights)[0] / weights.total  # (N,)
    owner = coord_token_owner(ids, decode, task.object_ids)
    placed = owner >= 0
    penalty[placed] = per_object[owner[placed]]
    return penalty


def credit_advantages(advantages: np.ndarray, penalties: Sequence[np.ndarray], credit: float,
                      length: int) -> np.ndarray:
    """``(B, length)`` token advantages ``A[i] - credit * p[i, t]`` from ``(B,)`` advantages and
    per-completion token penalties (shorter rows are padded with 0 penalty)."""
    out = np.repeat(np.asarray(advantages, dtype=np.float64)[:, None], length, axis=1)
    for i, p in enumerate(penalties):
        n = min(len(p), length)
        out[i, :n] -= credit * np.asarray(p[:n], dtype=np.float64)
    return out
