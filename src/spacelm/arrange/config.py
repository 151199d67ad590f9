"""Run configuration of arrange training: our ``ArrangeArgs`` plus TRL's own config classes.

A run YAML has up to three sections; every key of ``sft`` and ``grpo`` is a field of TRL's
``SFTConfig`` / ``GRPOConfig`` (so anything TRL can do, vLLM and DeepSpeed included, is one key
away and documented by TRL), and ``arrange`` holds what TRL does not know::

    arrange: {model: Qwen/Qwen2.5-VL-7B-Instruct, prompt_style: metaspatial, turns: 3}
    sft:  {output_dir: out/sft, learning_rate: 1.0e-5}
    grpo: {output_dir: out/grpo, learning_rate: 1.0e-6, beta: 0.01, num_generations: 8}

Errors name the section and key: unknown keys, wrong types, values out of range.
"""

from __future__ import annotations

import json
import math
import os
import typing
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path

from spacelm.arrange.prompts import PROMPT_STYLES
from spacelm.arrange.rewards import PRESETS
from spacelm.errors import SpacelmError

SECTIONS = ("arrange", "sft", "grpo")
POLICY_FILE = "spacelm_arrange.json"  # how a saved policy expects its prompts


class ArrangeConfigError(SpacelmError, ValueError):
    """A run config that cannot be used; the message names the file, section and key."""


@dataclass(frozen=True)
class ArrangeArgs:
    """What to train on and how it is scored (the part of a run TRL's configs do not hold)."""

    model: str = ""  # the policy to start from: a base model, or the SFT output for GRPO
    tasks: str = ""  # a tasks JSONL (spacelm arrange generate/import); empty: generate tasks
    references: str = ""  # SFT with ``tasks``: their reference completions JSONL
    num_tasks: int = 512  # generated training tasks (when ``tasks`` is empty)
    seed: int = 0
    max_objects: int = 0  # generated tasks: at most this many objects (0: the templates' own)
    room_types: tuple[str, ...] = ()  # generated tasks: these room types (empty: all)
    prompt_style: str = "metaspatial"  # or "compact" (short prompts for tiny CPU policies)
    image: bool = False  # vision-language policy: an empty-room render comes with each prompt
    image_size: int = 256
    rotation: bool = True  # the answer gives rotations (False: fixed by the scene graph)
    reward: str = "default"  # a rewards.PRESETS name
    shaped_format: bool = False  # graded format score instead of MetaSpatial's tiers
    turns: int = 1  # refinement turns per trajectory (1: single-turn GRPO)
    gamma: float = 0.9  # discount of later turns' scores
    normalize_return: bool = True  # divide the discounted return by sum(gamma^t) (MetaSpatial)
    feedback_style: str = "metaspatial"  # or "compact" (problems only)
    token_credit: float = 0.0  # per-object credit lambda (0: off; 0.5-1 suggested)
    jitter: float = 0.0  # SFT: N(0, jitter) m noise on the references' x and y
    judge_model: str = ""  # render-and-judge reward (off when empty): the model name
    judge_base_url: str = ""  # an OpenAI-compatible endpoint, e.g. a local vLLM server
    judge_max_concurrency: int = 4
    judge_weight: float = 0.02  # weight of the judge's S (0-50) when the preset has none (1/50)
    judge_cache_dir: str = ""

    def __post_init__(self) -> None:
        _choice(self, "prompt_style", PROMPT_STYLES)
        _choice(self, "feedback_style", PROMPT_STYLES)
        _choice(self, "reward", tuple(PRESETS))
        for name in ("num_tasks", "image_size", "turns", "judge_max_concurrency"):
            _at_least(self, name, 1)
        for name in ("max_objects", "seed"):
            _at_least(self, name, 0)
        if not (math.isfinite(self.gamma) and 0 < self.gamma <= 1):
            raise ArrangeConfigError(f"arrange.gamma: must be in (0, 1], got {self.gamma}")
        for name in ("token_credit", "jitter", "judge_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ArrangeConfigError(f"arrange.{name}: must be finite and >= 0, got {value}")
        if bool(self.judge_model) != bool(self.judge_base_url):
            raise ArrangeConfigError("arrange.judge_model and arrange.judge_base_url go together")


def _choice(args, name: str, allowed: tuple[str, ...]) -> None:
    if getattr(args, name) not in allowed:
        raise ArrangeConfigError(f"arrange.{name}: must be one of {', '.join(allowed)}, "
                                 f"got {getattr(args, name)!r}")


def _at_least(args, name: str, low: int) -> None:
    value = getattr(args, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ArrangeConfigError(f"arrange.{name}: must be an integer >= {low}, got {value!r}")


def read_sections(path: str | os.PathLike) -> dict[str, dict]:
    """The YAML's sections (each a mapping), checked for unknown sections."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError) as error:
        raise ArrangeConfigError(f"{path}: cannot read the config ({error})") from None
    except (yaml.YAMLError, ValueError, RecursionError) as error:
        raise ArrangeConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ArrangeConfigError(f"{path}: a config is a mapping of sections {SECTIONS}")
    unknown = [k for k in data if k not in SECTIONS]
    if unknown:
        raise ArrangeConfigError(f"{path}: unknown sections {unknown}; expected {SECTIONS}")
    for name, section in data.items():
        if section is not None and not isinstance(section, dict):
            raise ArrangeConfigError(f"{path}: section {name!r} must be a mapping")
    return {k: dict(data.get(k) or {}) for k in SECTIONS}


def arrange_args(section: dict, source: str = "", **overrides) -> ArrangeArgs:
    """``ArrangeArgs`` from the ``arrange`` section (types checked per key), then ``overrides``."""
    known = {f.name: f for f in fields(ArrangeArgs)}
    hints = typing.get_type_hints(ArrangeArgs)
    values = {}
    for key, value in section.items():
        if key not in known:
            raise ArrangeConfigError(f"{source}arrange.{key}: unknown key; expected one of "
                                     f"{', '.join(known)}")
        values[key] = _typed(value, hints[key], f"{source}arrange.{key}")
    try:
        args = ArrangeArgs(**values)
        return replace(args, **{k: v for k, v in overrides.items() if v is not None})
    except ArrangeConfigError as error:
        raise ArrangeConfigError(f"{source}{error}") from None


def _typed(value, hint, where: str):
    if hint is bool:
        if not isinstance(value, bool):
            raise ArrangeConfigError(f"{where}: must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ArrangeConfigError(f"{where}: must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ArrangeConfigError(f"{where}: must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ArrangeConfigError(f"{where}: must be a string, got {value!r}")
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ArrangeConfigError(f"{where}: must be a list of strings, got {value!r}")
    return tuple(value)


def trl_config(cls, section: dict, source: str, name: str, **defaults):
    """A TRL config (``SFTConfig``/``GRPOConfig``) from its section over our ``defaults``, with
    unknown keys and non-finite or negative numbers named."""
    known = {f.name for f in fields(cls)}
    unknown = [k for k in section if k not in known]
    if unknown:
        raise ArrangeConfigError(f"{source}{name}.{unknown[0]}: not a field of TRL's {cls.__name__}")
    defaults_of = {f.name: f.default for f in fields(cls)}
    section = dict(section)
    for key, value in section.items():
        if isinstance(value, str) and isinstance(defaults_of[key], float):
            try:  # PyYAML reads 1e-6 (no dot) as a string
                section[key] = value = float(value)
            except ValueError:
                raise ArrangeConfigError(f"{source}{name}.{key}: must be a number, "
                                         f"got {value!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ArrangeConfigError(f"{source}{name}.{key}: must be finite, got {value}")
        if key in _NON_NEGATIVE and isinstance(value, (int, float)) and value < 0:
            raise ArrangeConfigError(f"{source}{name}.{key}: must be >= 0, got {value}")
    merged = {**defaults, **section}
    missing = [f.name for f in fields(cls) if f.name not in merged and f.default is MISSING
               and f.default_factory is MISSING]
    if missing:
        raise ArrangeConfigError(f"{source}{name}: needs {', '.join(missing)}")
    try:
        return cls(**merged)
    except (TypeError, ValueError) as error:
        raise ArrangeConfigError(f"{source}{name}: {error}") from None


_NON_NEGATIVE = {"learning_rate", "beta", "temperature", "num_generations", "max_completion_length",
                 "per_device_train_batch_size", "gradient_accumulation_steps", "max_steps",
                 "num_train_epochs", "weight_decay", "warmup_steps", "entropy_coef", "epsilon",
                 "save_steps", "logging_steps", "max_length"}


def save_policy_info(output_dir: str | os.PathLike, args: ArrangeArgs) -> None:
    """Record how the saved policy expects its prompts, for ``arrange eval --model`` and GRPO."""
    from spacelm.io import atomic_write_text

    info = {"prompt_style": args.prompt_style, "rotation": args.rotation, "image": args.image,
            "turns": args.turns, "feedback_style": args.feedback_style}
    atomic_write_text(Path(output_dir) / POLICY_FILE, json.dumps(info, indent=2) + "\n")


def read_policy_info(model_path: str | os.PathLike) -> dict:
    """The prompt settings a policy was trained with (empty for a model spacelm did not train)."""
    path = Path(model_path) / POLICY_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def training_tasks(args: ArrangeArgs, *, need_references: bool = False):
    """``(tasks, references)`` of a run: read from ``args.tasks`` (references from
    ``args.references``, when needed) or generated (train split, ``num_tasks``, ``seed``).
    ``references`` holds one placement tuple per task, or is None when not needed."""
    from spacelm.arrange.answer import parse_answer
    from spacelm.arrange.generate import generate_tasks
    from spacelm.arrange.task import read_completions, read_tasks

    if not args.tasks:
        generated = generate_tasks(args.num_tasks, args.seed, "train",
                                   room_types=args.room_types or None,
                                   max_objects=args.max_objects or None)
        return [g.task for g in generated], [g.reference for g in generated]
    tasks = read_tasks(args.tasks)
    if not need_references:
        return tasks, None
    if not args.references:
        raise ArrangeConfigError("arrange.references: SFT on arrange.tasks needs their reference "
                                 "completions (spacelm arrange generate writes <stem>.reference.jsonl)")
    by_task = {r.task_id: r.completion for r in read_completions(args.references)}
    references = []
    for task in tasks:
        if task.id not in by_task:
            raise ArrangeConfigError(f"{args.references}: no reference completion for task {task.id!r}")
        answer = parse_answer(by_task[task.id], task, require_rotation=args.rotation)
        if not answer.complete:
            raise ArrangeConfigError(f"{args.references}: the reference of {task.id!r} does not place "
                                     f"every object ({answer.errors[0].message})")
        references.append(answer.placements)
    return tasks, references
