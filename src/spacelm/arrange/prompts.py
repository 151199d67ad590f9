"""Prompts for layout generation, after MetaSpatial's, and the feedback text of multi-turn revision.

The prompt keeps MetaSpatial's sections (task, room information, user preferences, placement
rules, output format, expected output, input JSON) with three fixes: the example answer is a
valid JSON list (theirs is not, and models copy it, scoring format 0.1), the coordinate frame is
spelt out, and the model also gives each object's rotation (``rotation=False`` restores their
x, y, z-only answers, with each object's fixed rotation listed in the input instead).
"""

from __future__ import annotations

import json

import numpy as np

from spacelm.arrange.answer import completion_text, parse_answer
from spacelm.arrange.physics import PhysicsReport
from spacelm.arrange.task import ArrangeTask, task_to_dict

SYSTEM_PROMPT = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the "
    "final answer. The reasoning process MUST BE enclosed within <think> </think> tags. The final "
    "answer MUST BE put in <answer> </answer>.")

# Illustrative only: ids that no task uses, numbers that are physically consistent.
_EXAMPLE = [{"id": "example_sofa_1", "x": 2.0, "y": 0.45, "z": 0.4, "rotation": 0},
            {"id": "example_side_table_1", "x": 3.3, "y": 0.3, "z": 0.25, "rotation": 0}]

_FRAMES = {
    "target": ('"left of", "right of", "in front" and "behind" are seen from the target object: '
               "its left when standing behind it and looking where it faces."),
    "room": ('"left of", "right of", "in front" and "behind" are in the room frame: left is west '
             "(-x), right is east (+x), in front is north (+y), behind is south (-y)."),
}


def example_answer(rotation: bool = True) -> str:
    """The expected-output example: a JSON list, one object per entry (always parseable).

    >>> json.loads(example_answer())[0]["id"]
    'example_sofa_1'
    """
    entries = _EXAMPLE if rotation else [{k: v for k, v in e.items() if k != "rotation"}
                                        for e in _EXAMPLE]
    return json.dumps(entries)


def build_prompt(task: ArrangeTask, *, rotation: bool = True, image: bool = True,
                 relation_frame: str = "target") -> str:
    """The user prompt for ``task`` (text only; ``image`` says whether an image comes with it)."""
    sections = [
        "## Task Description\n" + _task_text(rotation, image),
        "## Room Information\n" + _room_text(task),
        "## User Preferences\n" + task.preference,
        "## Placement Rules\n" + _rules_text(rotation, relation_frame),
        "## Output Format\n" + _output_text(len(task.objects), rotation),
        ("## Expected Output (format only; the ids and numbers are illustrative)\n"
         f"<think>\nThinking process here.\n</think>\n<answer>\n{example_answer(rotation)}\n</answer>"),
        "## Input JSON Data\n" + _objects_json(task, rotation),
    ]
    return "\n\n".join(sections)


PROMPT_STYLES = ("metaspatial", "compact")


def build_messages(task: ArrangeTask, *, rotation: bool = True, image: bool = True,
                   relation_frame: str = "target", style: str = "metaspatial") -> list[dict]:
    """Chat messages; with ``image`` the user turn starts with an image part, the form a
    vision-language processor's chat template expects.

    ``style="metaspatial"``: system + MetaSpatial's sectioned prompt (about 1,250 tokens with a
    small BPE). ``style="compact"``: one user turn with the room and one line per object (about
    10x shorter), for policies small enough to train on a CPU; the answer format is the same.
    """
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt style must be one of {PROMPT_STYLES}, got {style!r}")
    if style == "compact":
        text = compact_prompt(task, rotation=rotation)
    else:
        text = build_prompt(task, rotation=rotation, image=image, relation_frame=relation_frame)
    content = [{"type": "image"}, {"type": "text", "text": text}] if image else text
    user = {"role": "user", "content": content}
    return [user] if style == "compact" else [{"role": "system", "content": SYSTEM_PROMPT}, user]


def compact_prompt(task: ArrangeTask, *, rotation: bool = True) -> str:
    """The room, one line per object (size, support, relations, facing) and the answer format.

    >>> from spacelm.arrange.task import task_from_dict
    >>> print(compact_prompt(task_from_dict({"id": "t", "room": {"length": 4, "width": 3,  # doctest: +ELLIPSIS
    ...     "height": 2.5}, "preference": "", "objects": [{"id": "bed_1", "size": [2, 1.6, 0.5],
    ...     "relations": [{"type": "against wall", "target": "south_wall"}]}]})))
    Room 4 x 3 x 2.5 m: x 0-4 west to east, y 0-3 south to north, z up.
    bed_1 2x1.6x0.5 floor; against wall south_wall
    Answer <think></think><answer>[{"id","x","y","z","rotation"} per object, ...]</answer>
    """
    r = task.room
    lines = [f"Room {r.length:g} x {r.width:g} x {r.height:g} m: x 0-{r.length:g} west to east, "
             f"y 0-{r.width:g} south to north, z up."]
    if r.polygon is not None:
        lines.append("Floor polygon " + json.dumps([list(p) for p in r.polygon]))
    for obj in task.objects:
        parts = ["x".join(f"{v:g}" for v in obj.size) + (" floor" if obj.on_floor else "")]
        parts += [f"{rel.type} {rel.target}" + (" adjacent" if rel.adjacent else "")
                  for rel in obj.relations]
        if obj.facing:
            parts.append(f"facing {obj.facing}")
        if not rotation:
            parts.append(f"rotation {obj.rotation or 0:g}")
        lines.append(f"{obj.id} " + "; ".join(parts))
    fields = '"id","x","y","z","rotation"' if rotation else '"id","x","y","z"'
    what = "box centres in m, rotation in degrees" if rotation else "box centres in m"
    lines.append(f"Answer <think></think><answer>[{{{fields}}} per object, {what}]</answer>")
    return "\n".join(lines)


def compact_answer(placements, *, rotation: bool = True, decimals: int = 2) -> str:
    """A completion for ``placements`` in the compact style: empty think, rounded numbers.

    >>> from spacelm.arrange.answer import Placement
    >>> compact_answer([Placement("bed_1", 1.234, 0.8, 0.25, 90.0)])
    '<think></think><answer>[{"id":"bed_1","x":1.23,"y":0.8,"z":0.25,"rotation":90}]</answer>'
    """
    entries = []
    for p in placements:
        entry = {"id": p.id, **{k: _rounded(v, decimals) for k, v in zip("xyz", (p.x, p.y, p.z))}}
        if rotation:
            entry["rotation"] = _rounded(p.rotation, 0)
        entries.append(entry)
    return f"<think></think><answer>{json.dumps(entries, separators=(',', ':'))}</answer>"


def _rounded(value: float, decimals: int):
    """``value`` rounded, as an int when it has no fraction left (shorter text, same JSON number)."""
    value = round(float(value), decimals)
    return int(value) if value == int(value) else value


def _task_text(rotation: bool, image: bool) -> str:
    what = "position and rotation" if rotation else "position"
    shown = " The given image shows the empty room." if image else ""
    return (f"You are an intelligent assistant for arranging objects in a room based on JSON "
            f"data.{shown} Your task is to:\n"
            f"1. Compute the {what} of each object, respecting the room layout and each object's "
            "relations.\n"
            "2. Prevent collisions between objects and keep every object inside the room.\n"
            "3. Respect the user preferences.")


def _room_text(task: ArrangeTask) -> str:
    r = task.room
    text = (f"- Room dimensions: length {r.length:g} m (x) x width {r.width:g} m (y) x height "
            f"{r.height:g} m (z).\n"
            "- Coordinates in metres: the origin is the south-west corner of the floor; x runs east "
            "along the length, y runs north along the width, z points up.\n"
            f"- Room layout elements: south_wall (y = 0), north_wall (y = {r.width:g}), west_wall "
            f"(x = 0), east_wall (x = {r.length:g}), middle of the room (the floor, z = 0), "
            f"ceiling (z = {r.height:g}).")
    if r.polygon is not None:
        corners = json.dumps([list(p) for p in r.polygon])
        text += f"\n- Floor plan polygon (x, y corners, m): {corners}; the room is inside it."
    return text


def _output_text(n: int, rotation: bool) -> str:
    fields = '"id", "x", "y", "z" and "rotation"' if rotation else '"id", "x", "y" and "z"'
    return ("First reason about the placement step by step within <think> </think> tags. Then "
            "give the final answer within <answer> </answer> tags: a JSON list with exactly "
            f"{n} entries, one per input object, each with only {fields}. Do not repeat size, "
            "style, material or relations.")


def _rules_text(rotation: bool, relation_frame: str) -> str:
    rules = [("Give each object's position (x, y, z): the centre of its bounding box, so an "
              "object standing on the floor has z = height / 2. Sizes are [length, width, "
              "height] in metres.")]
    if rotation:
        rules.append("Give each object's rotation in degrees counter-clockwise seen from above: at "
                     "0 its length runs along x and its front faces north (+y); at 90 it faces "
                     "west, at 180 south, at 270 east.")
    rules += ["Objects must not overlap and must stay inside the room.",
              "Objects on the floor stand on it; an object \"on\" another rests on its top.",
              "Respect each object's relations and facing. " + _FRAMES[relation_frame]]
    return "\n".join(f"{i}. {rule}" for i, rule in enumerate(rules, 1))


def _objects_json(task: ArrangeTask, rotation: bool) -> str:
    """One object per line, in the task schema (l along x at rotation 0)."""
    lines = []
    for obj in task_to_dict(task)["objects"]:
        if rotation:
            obj.pop("rotation", None)
        elif "rotation" not in obj:
            obj["rotation"] = 0.0
        lines.append(json.dumps(obj, ensure_ascii=False))
    return "[\n" + ",\n".join(lines) + "\n]"


def describe_violations(report: PhysicsReport, task: ArrangeTask, b: int = 0) -> list[str]:
    """Readable problems of layout ``b``: collisions, out of bounds, floating, unmet relations."""
    ids = task.object_ids
    out = []
    i, j = np.nonzero(np.triu(report.colliding[b], 1))
    out += [f"{ids[p]} and {ids[q]} overlap by {report.penetration[b, p, q]:.2f} m"
            for p, q in zip(i, j)]
    out += [f"{ids[p]} reaches {report.outside[b, p]:.2f} m outside the room"
            for p in np.flatnonzero(report.out_of_bounds[b])]
    out += [f"{ids[p]} is {report.support_gap[b, p]:.2f} m away from {_support(task, p)}"
            for p in np.flatnonzero(report.floating[b])]
    out += [_relation_text(ids[c.subject], c) for c, ok in zip(report.constraints, report.satisfied[b])
            if not ok]
    return out


def _support(task: ArrangeTask, p: int) -> str:
    obj = task.objects[p]
    targets = [r.target for r in obj.relations if r.type == "on"]
    if obj.on_floor:
        return "the floor it should stand on"
    return f"{' or '.join(targets)}, its support" if targets else "any support"


def _relation_text(subject: str, c) -> str:
    if c.kind == "facing":
        return f"{subject} does not face {c.target}"
    if c.kind == "in the corner":
        return f"{subject} is not in a corner at {c.target}"
    if c.kind == "against wall":
        return f"{subject} is not against {c.target}"
    adjacent = "right next to and " if c.adjacent else ""
    of = " of" if c.kind in ("in front",) else ""
    return f"{subject} is not {adjacent}{c.kind}{of} {c.target}"


def feedback_message(task: ArrangeTask, completion, breakdown: dict, *,
                     require_rotation: bool = True, style: str = "metaspatial") -> str:
    """The user turn that shows the model its previous layout, reward and problems.

    ``breakdown`` is one entry of ``ArrangeReward.breakdown`` or ``PhysicsReward.breakdown``
    (keys ``score``, optional ``terms``, ``violations``, ``format``). ``style="compact"`` leaves
    out the layout (the previous answer is already in the conversation) and the section titles.
    """
    answer = parse_answer(completion, task, require_rotation=require_rotation)
    if style == "compact":
        return _compact_feedback(answer, breakdown)
    if answer.placements:
        layout = json.dumps([{"id": p.id, "x": round(p.x, 3), "y": round(p.y, 3), "z": round(p.z, 3),
                              **({"rotation": round(p.rotation, 1)} if require_rotation else {})}
                             for p in answer.placements])
    else:
        layout = "(no layout could be read)"
    problems = [e.message for e in answer.errors] + list(breakdown.get("violations", []))
    score = breakdown.get("score")
    terms = {k: v for k, v in breakdown.get("terms", {}).items() if v is not None and k != "tier"}
    lines = ["## Previous Layout", layout, "## Previous Reward",
             "unavailable" if score is None else f"{score:.3f}"]
    if terms:
        lines.append(", ".join(f"{k}: {v:.3f}" for k, v in terms.items()))
    lines += ["## Problems"] + ([f"- {p}" for p in problems] or ["- none found"])
    lines += ["## Current Step", ("Revise the layout to fix these problems while respecting the "
                                  "user preferences. Answer in the same format: <think> </think> "
                                  "then <answer> </answer> with the full JSON list.")]
    return "\n".join(lines)


def _compact_feedback(answer, breakdown: dict) -> str:
    score = breakdown.get("score")
    problems = [e.message for e in answer.errors] + list(breakdown.get("violations", []))
    lines = ["Reward " + ("unavailable" if score is None else f"{score:.2f}") + ". Problems:"]
    lines += [f"- {p}" for p in problems] or ["- none found"]
    lines.append("Revise the layout; answer in the same format.")
    return "\n".join(lines)


def revision_messages(task: ArrangeTask, turns, *, rotation: bool = True, image: bool = True,
                      relation_frame: str = "target", style: str = "metaspatial",
                      feedback_style: str = "metaspatial") -> list[dict]:
    """The conversation for the next turn: the prompt, then per earlier turn the model's
    completion (assistant) and its feedback (user). ``turns`` holds ``(completion, breakdown)``."""
    messages = build_messages(task, rotation=rotation, image=image, relation_frame=relation_frame,
                              style=style)
    for completion, breakdown in turns:
        messages.append({"role": "assistant", "content": completion_text(completion)})
        messages.append({"role": "user", "content": feedback_message(
            task, completion, breakdown, require_rotation=rotation, style=feedback_style)})
    return messages
