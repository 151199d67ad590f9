"""Render-and-judge reward S: render a layout, ask a vision-language model to grade it (0-50).

MetaSpatial renders each layout in Blender (in a hard-coded 6 x 4 x 3 m room) and asks GPT-4o to
grade it 1-10 on five aspects with IDesign's evaluator prompt; S is the sum of the grades. Here:

- the built-in renderer draws the layout in its real room (``config.views``: a corner view and a
  labelled plan by default; boxes coloured by category, so "colour scheme and materials" grades
  what the boxes show, a part of the reward MetaSpatial also found fixed by its assets);
- any OpenAI-compatible chat-completions endpoint grades it, through the ``openai`` client
  (the ``arrange`` extra): GPT-4o, or a local vLLM or Ollama server (``JudgeConfig``; model, base
  URL and key fall back to ``SPACELM_JUDGE_MODEL``, ``SPACELM_JUDGE_BASE_URL`` and
  ``OPENAI_API_KEY``, read when a batch is judged);
- requests of a batch run in a thread pool of ``max_concurrency``, each attempt with a deadline
  (``timeout_s`` for the whole exchange, so a server dripping bytes cannot hold it longer) and
  exponential backoff on 408, 409, 429, 5xx, timeouts and connection errors;
- answers are cached on disk (``cache_dir``) under the sha256 of the request (images, rubric with
  the preference, model and sampling settings), written atomically;
- the answer is parsed leniently (a JSON object in a code fence or among prose) and every grade
  must be 1-10 or "unknown" (an aspect whose grade cannot be found fails the answer). S is the
  sum of the five grades, unknown ones counting as the mean of the known ones. A failure (outage,
  refusal, garbage, no readable layout) gives S = None with its reason logged and kept in the
  ``Judgement``: never MetaSpatial's 0 (total 0.5).

``Judge`` is a picklable callable with TRL's reward signature, the ``judge`` of ``ArrangeReward``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from spacelm.arrange.answer import Placement, to_layout
from spacelm.arrange.chat_http import open_client, post_chat
from spacelm.arrange.rewards import parse_all
from spacelm.arrange.task import ArrangeTask
from spacelm.errors import ArgumentError, SpacelmError
from spacelm.io import atomic_write_text
from spacelm.render import render

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# IDesign's aspects (its JSON keys) with the key prefixes accepted when parsing answers.
RUBRIC = (
    ("realism_and_3d_geometric_consistency", "Realism and 3D Geometric Consistency", ("realism",)),
    ("functionality_and_activity_based_alignment", "Functionality and Activity-based Alignment",
     ("functionality",)),
    ("layout_and_furniture", "Layout and furniture", ("layout",)),
    ("color_scheme_and_material_choices", "Color Scheme and Material Choices",
     ("color", "colour")),
    ("overall_aesthetic_and_atmosphere", "Overall Aesthetic and Atmosphere", ("overall",)),
)
MAX_SCORE = 10.0 * len(RUBRIC)
_VIEW_TEXT = {"top": "a top-down plan with each object's name",
              **{v: "a perspective view from above a corner of the room"
                 for v in ("corner", "corner_0", "corner_1", "corner_2", "corner_3")}}
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[\]}])")
_UNKNOWN = ("unknown", "n/a", "na", "none", "")
_MISSING = object()


@dataclass(frozen=True)
class JudgeConfig:
    """Where and how to ask. None for ``model``, ``base_url`` or ``api_key`` means the environment
    (``SPACELM_JUDGE_MODEL``, ``SPACELM_JUDGE_BASE_URL``, ``OPENAI_API_KEY``), then the defaults
    (gpt-4o on api.openai.com; no key, for local servers).

    views / image_size: rendered views and their square size in pixels.
    render_backend / render_engine: ``render``'s backend ("builtin", or "blender" after ``make blender``)
    and Blender engine ("workbench" or "cycles").
    timeout_s: deadline of one HTTP attempt, connection to last byte. max_retries: attempts
    after the first on the failures the ``openai`` client counts as transient (408, 409, 429, 5xx,
    timeouts, connection errors); the n-th retry waits ``backoff_s * 2**(n-1)`` seconds
    (jittered, at most ``max_backoff_s``, at least a server's ``Retry-After``).
    max_concurrency: requests in flight per batch.
    temperature: None leaves the server's default (MetaSpatial's choice); 0 makes caching sound.
    cache_dir: where answers are cached (None: no cache; the judge writes nowhere else).
    """

    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    views: tuple[str, ...] = ("corner", "top")
    image_size: int = 512
    render_backend: str = "builtin"
    render_engine: str = "workbench"
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_concurrency: int = 4
    temperature: float | None = 0.0
    max_tokens: int = 1000
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        checks = {"views": len(self.views) >= 1, "image_size": self.image_size >= 1,
                  "timeout_s": self.timeout_s > 0, "max_retries": self.max_retries >= 0,
                  "backoff_s": self.backoff_s >= 0, "max_concurrency": self.max_concurrency >= 1}
        bad = [f"{name}={getattr(self, name)!r}" for name, ok in checks.items() if not ok]
        if bad:
            raise ArgumentError(f"invalid JudgeConfig: {', '.join(bad)}")

    def resolved(self) -> JudgeConfig:
        """This config with the environment fallbacks filled in (read now, not at import)."""
        env = os.environ
        return replace(self, model=self.model or env.get("SPACELM_JUDGE_MODEL") or DEFAULT_MODEL,
                       base_url=self.base_url or env.get("SPACELM_JUDGE_BASE_URL")
                       or DEFAULT_BASE_URL,
                       api_key=self.api_key or env.get("OPENAI_API_KEY") or None)


@dataclass(frozen=True)
class Judgement:
    """One layout's grades: ``score`` S in [5, 50], or None with the ``reason`` it failed.

    ``grades`` maps each rubric key to its 1-10 grade (None: "unknown"); ``attempts`` counts HTTP
    attempts (0 when the answer came from the cache or no request was made)."""

    score: float | None
    grades: dict = field(default_factory=dict)
    comments: dict = field(default_factory=dict)
    reason: str | None = None
    cached: bool = False
    attempts: int = 0


class JudgeParseError(SpacelmError, ValueError):
    """The judge's answer holds no valid grades; the message says what is wrong."""


@dataclass(frozen=True)
class Judge:
    """The render-and-judge reward: S in [5, 50] per completion, None where it could not be had.

    Needs the ``task`` column, like the other rewards; completions whose layout cannot be read
    completely get None without a request.
    """

    config: JudgeConfig = field(default_factory=JudgeConfig)
    require_rotation: bool = True
    __name__ = "arrange_judge"

    def __call__(self, prompts, completions, completion_ids=None, **columns) -> list[float | None]:
        return [j.score for j in self.judge_completions(completions, **columns)]

    def breakdown(self, prompts, completions, completion_ids=None, **columns) -> list[dict]:
        """One dict per completion: score, grades, comments, reason, cached, attempts."""
        return [{"score": j.score, "grades": j.grades, "comments": j.comments, "reason": j.reason,
                 "cached": j.cached, "attempts": j.attempts}
                for j in self.judge_completions(completions, **columns)]

    def judge_completions(self, completions, **columns) -> list[Judgement]:
        """One ``Judgement`` per completion (the ``task`` column gives each one's task)."""
        tasks, answers = parse_all(completions, columns, self.require_rotation)
        readable = [i for i, a in enumerate(answers) if a.complete]
        out = [Judgement(None, reason="the layout could not be read: "
                         + (a.errors[0].message if a.errors else "incomplete"))
               for a in answers]
        judged = self.judge_layouts([(tasks[i], answers[i].placements) for i in readable])
        for i, judgement in zip(readable, judged):
            out[i] = judgement
        return out

    def judge_layouts(self, layouts: Sequence[tuple[ArrangeTask, Sequence[Placement]]]
                      ) -> list[Judgement]:
        """Judge ``(task, placements)`` pairs: renders here, requests in the pool, one per
        distinct request (identical layouts of a GRPO group are asked once)."""
        config = self.config.resolved()
        payloads = [request_payload(task, placements, config) for task, placements in layouts]
        keys = [cache_key(p) for p in payloads]
        unique = dict(zip(keys, payloads))
        results = {k: j for k in unique if (j := _cache_read(config, k)) is not None}
        todo = [k for k in unique if k not in results]
        if todo:
            with open_client(config.base_url, config.api_key, config.timeout_s) as client, \
                    ThreadPoolExecutor(max_workers=min(config.max_concurrency, len(todo))) as pool:
                done = pool.map(lambda k: _ask(client, config, unique[k], k), todo)
                results.update(zip(todo, done))
        for (task, _), key in zip(layouts, keys):
            if results[key].score is None:
                logger.warning("judge: no score for task %s: %s", task.id, results[key].reason)
        return [results[k] for k in keys]


def rubric_prompt(preference: str, views: Sequence[str]) -> str:
    """IDesign's evaluator prompt (as MetaSpatial uses it), asking for strict JSON."""
    aspects = "\n".join(f"- {title}" for _, title, _ in RUBRIC)
    shown = "; ".join(f"image {i}: {_VIEW_TEXT.get(v, v)}" for i, v in enumerate(views, 1))
    example = json.dumps({key: {"grade": 7, "comment": "..."} for key, _, _ in RUBRIC})
    return ("Give a grade from 1 to 10 or unknown to the following room renders based on how "
            "well they correspond together to the user preference (in triple backquotes) in the "
            f"following aspects:\n{aspects}\n\nUser Preference:\n```{preference}```\n\n"
            f"The images show the same room ({shown}); each object is drawn as a coloured box.\n"
            "Return only a JSON object, with no other text, in exactly this format (grades are "
            f"integers from 1 to 10, or \"unknown\"):\n{example}")


def request_payload(task: ArrangeTask, placements: Sequence[Placement], config: JudgeConfig
                    ) -> dict:
    """The chat-completions request body: the rubric and one PNG data URL per view.

    Object centres further than one room size (its longest side) outside the room are drawn at
    that distance, so that a wild answer still shows the room at a readable scale (and stays
    finite for the renderer); the physics terms measure how far out they really are.
    """
    room = task.room
    margin = max(room.length, room.width, room.height)
    framed = [p._replace(x=min(max(p.x, -margin), room.length + margin),
                         y=min(max(p.y, -margin), room.width + margin),
                         z=min(max(p.z, -margin), room.height + margin)) for p in placements]
    layout = to_layout(task, framed, label="name")
    images = render(layout, views=config.views, size=(config.image_size, config.image_size),
                    room_size=(room.length, room.width, room.height), backend=config.render_backend,
                    engine=config.render_engine)
    content = [{"type": "text", "text": rubric_prompt(task.preference, config.views)}]
    content += [{"type": "image_url", "image_url": {"url": png_data_url(images[v])}}
                for v in config.views]
    payload = {"model": config.model, "messages": [{"role": "user", "content": content}],
               "max_tokens": config.max_tokens}
    if config.temperature is not None:
        payload["temperature"] = config.temperature
    return payload


def png_data_url(image) -> str:
    """A base64 PNG data URL. Level 1 compression: 30% faster than the default on flat-shaded
    renders, for files about 40% larger (some 13 KB at 512 px), which a request barely notices."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def cache_key(payload: dict) -> str:
    """sha256 of the request body (model, rubric, images, sampling): the answer's cache key."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def parse_grades(text: str) -> tuple[dict, dict]:
    """``(grades, comments)`` from a judge's answer; raises ``JudgeParseError``.

    >>> grades, _ = parse_grades('Sure! ```json\\n{"realism": {"grade": 8}, "functionality": 7, '
    ...     '"layout_and_furniture": "6", "colour_scheme": {"grade": "unknown"}, '
    ...     '"overall": {"grade": 9, "comment": "nice"},}\\n```')
    >>> list(grades.values())
    [8.0, 7.0, 6.0, None, 9.0]
    """
    data = _json_object(text)
    normalised = {re.sub(r"[^a-z0-9]+", "_", str(k).lower()).strip("_"): v for k, v in data.items()}
    grades, comments, missing = {}, {}, []
    for key, _, prefixes in RUBRIC:
        found = next((v for k, v in normalised.items() if k.startswith(prefixes)), _MISSING)
        if found is _MISSING:
            missing.append(key)
            continue
        if isinstance(found, dict):
            value = next((found[k] for k in ("grade", "score") if k in found), _MISSING)
            if value is _MISSING:
                raise JudgeParseError(f"{key}: no \"grade\" in {sorted(map(str, found))[:5]}")
        else:
            value = found
        grades[key] = _grade(value, key)
        if isinstance(found, dict) and isinstance(found.get("comment"), str):
            comments[key] = found["comment"]
    if missing:
        raise JudgeParseError(f"no grade for {', '.join(missing)}")
    if all(g is None for g in grades.values()):
        raise JudgeParseError("every grade is unknown")
    return grades, comments


def score_of(grades: dict) -> float:
    """S: the sum of the grades, an unknown one counting as the mean of the known ones."""
    known = [g for g in grades.values() if g is not None]
    return len(RUBRIC) * sum(known) / len(known)


def _json_object(text: str) -> dict:
    """The first JSON object in a fenced block, else between the first ``{`` and last ``}``."""
    candidates = _FENCE.findall(text)
    first, last = text.find("{"), text.rfind("}")
    if 0 <= first < last:
        candidates.append(text[first:last + 1])
    for candidate in candidates:
        for attempt in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
            try:
                value = json.loads(attempt)
            except (ValueError, RecursionError):  # not JSON, a 4300+ digit number, deep nesting
                continue
            if isinstance(value, dict):
                return value
    raise JudgeParseError(f"no JSON object in the answer: {text[:120]!r}")


def _grade(value, key: str) -> float | None:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _UNKNOWN:
            return None
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(?:/\s*10)?", word)
        if match is None:
            raise JudgeParseError(f"{key}: grade {value!r} is not a number")
        value = float(match.group(1))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JudgeParseError(f"{key}: grade {json.dumps(value)[:40]} is not a number")
    if not 1 <= value <= 10:
        raise JudgeParseError(f"{key}: grade {value} is outside 1-10")
    return float(value)


def _ask(client, config: JudgeConfig, payload: dict, key: str) -> Judgement:
    """One request with retries, parsed; cached when it gave a score."""
    text, reason, attempts = post_chat(client, payload, timeout_s=config.timeout_s,
                                       max_retries=config.max_retries, backoff_s=config.backoff_s,
                                       max_backoff_s=config.max_backoff_s)
    if text is None:
        return Judgement(None, reason=reason, attempts=attempts)
    try:
        grades, comments = parse_grades(text)
    except JudgeParseError as e:
        return Judgement(None, reason=f"unusable answer: {e}", attempts=attempts)
    _cache_write(config, key, text, grades)
    return Judgement(score_of(grades), grades, comments, attempts=attempts)


def _cache_path(config: JudgeConfig, key: str) -> Path | None:
    return None if config.cache_dir is None else Path(config.cache_dir) / key[:2] / f"{key}.json"


def _cache_read(config: JudgeConfig, key: str) -> Judgement | None:
    path = _cache_path(config, key)
    if path is None or not path.exists():
        return None
    try:
        grades, comments = parse_grades(json.loads(path.read_text("utf-8"))["answer"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        logger.warning("judge: ignoring unreadable cache entry %s: %s", path, e)
        return None
    return Judgement(score_of(grades), grades, comments, cached=True)


def _cache_write(config: JudgeConfig, key: str, text: str, grades: dict) -> None:
    path = _cache_path(config, key)
    if path is not None:
        atomic_write_text(path, json.dumps({"model": config.model, "answer": text,
                                            "grades": grades, "score": score_of(grades)}))

