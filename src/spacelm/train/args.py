"""Typed run configuration for ``spacelm train``: dataclasses (a comment on each field says what it
sets), read from a small YAML.

A run has one model, one data section, two stages and shared logging/validation settings::

    output_dir: runs/qwen
    model: {base_lm: Qwen/Qwen2.5-0.5B-Instruct, point_encoder: {num_bins: 1280}}
    data: {train: [data/spatiallm], task: all}
    stage1: {learning_rate: 1.0e-4, num_epochs: 1, batch_size: 4}
    stage2: {learning_rate: 2.0e-5, num_epochs: 3, batch_size: 1, grad_accum: 8}

Every key is checked: an unknown or duplicated key, a value of the wrong type or out of its range
(every number must be finite; sizes, counts and rates positive where they must be) raises
``ConfigError`` naming the file and the dotted key (``stage2.lora.rank``). Fields left out keep the
defaults below, including a section's own defaults (``stage2: {batch_size: 2}`` keeps stage 2's
learning rate of 2e-5).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from spacelm.errors import SpacelmError, decode_error
from spacelm.scene.language import TASKS as LAYOUT_TASKS

ROTATIONS = ("uniform", "right_angles", "none")
TASKS = tuple(LAYOUT_TASKS)  # the requests the layout language defines: all, arch, object
STAGES = ("1", "2", "both")  # what `spacelm train --stage` runs
OUT_OF_RANGE_POLICIES = ("clip", "error")
DTYPES = ("auto", "float32", "bfloat16", "float16")
REPORTERS = ("tensorboard", "wandb", "none")


class ConfigError(SpacelmError, ValueError):
    """A YAML run config names an unknown key or holds a value of the wrong type or range."""


NUMBER_TOKENS = ("digits", "bins", "fourier_bins")


@dataclass
class TinyLMArgs:
    """A random Qwen2 with a tokenizer trained on the layout language, built offline (no hub)."""

    hidden_size: int = 128  # Width of the tiny LM.
    num_layers: int = 4  # Transformer layers.
    num_heads: int = 4  # Attention heads.
    num_kv_heads: int | None = None  # Key/value heads; None: half of num_heads.
    intermediate_size: int | None = None  # MLP width; None: 2 x hidden_size.
    # Box labels the tokenizer learns as words; None: the synthetic generator's categories.
    labels: list[str] | None = None
    # digits: one token per digit, as Qwen2; bins: one token per layout bin (point_encoder.num_bins
    # integers, Pix2Seq), a quarter to a half shorter answers; fourier_bins: bins whose embeddings start
    # from Fourier features of the value (spacelm.model.tiny.number_embeddings), nearby bins alike.
    numbers: str = "digits"


@dataclass
class ModelArgs:
    base_lm: str = "Qwen/Qwen2.5-0.5B-Instruct"  # Causal LM to start from: a hub name or a local folder.
    # Build a tiny random LM offline instead of loading base_lm (saved to <output_dir>/base_lm).
    tiny_lm: TinyLMArgs | None = None
    # A saved spacelm model (save_pretrained folder) to start stage 2 from when stage 1 was not run in
    # this output_dir.
    init_from: str | None = None
    # PointEncoderConfig fields: input_channels, channels, embed_dim, num_bins, num_fourier_freqs,
    # backend.
    point_encoder: dict = field(default_factory=dict)
    projector: str = "linear"  # linear (SpatialLM v1.0) or mlp.
    # dtype of the LM weights while training: float32 (with bf16 autocast when bf16: true), bfloat16,
    # float16 or auto (the checkpoint's).
    dtype: str = "float32"
    attn_implementation: str | None = "sdpa"  # sdpa, eager, flash_attention_2, ...; None: transformers' choice.
    # None: the answer is integer bins (SpatialLM); N: metric floats with N decimals (the discretisation
    # ablation).
    layout_decimals: int | None = None
    # Put SpatialLM's code template (~260 tokens) in the request; false: just 'Detect walls, doors,
    # windows, boxes.' (cheaper for a model trained from scratch; SpatialLM checkpoints expect true).
    reference_code: bool = True
    # Labels (wall, door, window, box categories) of a training-only head on the encoder tokens that
    # learns which of them each token's cell touches (not in SpatialLM; spacelm.model.token_targets);
    # None: no head. Its loss is added to the LM's, times token_loss_weight.
    token_labels: list[str] | None = None
    token_loss_weight: float = 1.0
    # > 0: the head also regresses where in its cell each token's voxels lie, with this weight (keeps the
    # within-cell position that the label loss alone wipes out; spacelm.model.token_targets.token_extents).
    token_extent_weight: float = 0.0
    # What the head reads: tokens (the encoder's output, which the projector reads too) or backbone (the
    # sparse ResNet's output before the cell position is mixed in: the head leaves input_proj to the LM).
    token_head_input: str = "tokens"
    # With token_head_input branch: the head reads a second encoder of its own, trained by its loss only,
    # and its label marks are added to the point tokens. These are the PointEncoderConfig fields in which
    # that encoder differs from point_encoder (e.g. {channels: [4, 4, 8, 16], embed_dim: 32}); num_bins
    # and the number of down-convs must stay. None: the same shape as point_encoder.
    token_branch: dict | None = None
    # With branch: the head's probabilities are multiplied by this before they are projected and added to
    # the point tokens (a few marks among the encoder's features: a larger scale makes them move faster).
    token_marks_scale: float = 1.0


@dataclass
class AugmentArgs:
    # Rotation about z through the cloud's centre: uniform (any angle, as SpatialLM), right_angles
    # (0/90/180/270 degrees) or none.
    rotate: str = "uniform"
    # Uniform scale factor range, e.g. [0.75, 1.25]; None: off.
    scale_range: list[float] | None = field(default_factory=lambda: [0.75, 1.25])
    color_jitter: float = 0.0  # Std of per-point colour noise as a fraction of 255; 0: off.


@dataclass
class DataArgs:
    # Training sources: dataset folders (rows of split.csv with split 'train') or SpatialLM ShareGPT .json
    # files (point clouds relative to the file).
    train: list[str] = field(default_factory=list)
    # Validation sources, as train (folders: split 'val'); empty: the 'val' split of the train folders.
    val: list[str] = field(default_factory=list)
    # all, arch (walls, doors, windows) or object (boxes), for dataset folders; ShareGPT records carry
    # their own request.
    task: str = "all"
    # Training only: draw each example's request from these weights, e.g. {arch: 1, all: 1} (the arch
    # answers are short and lean on the cloud); None: always data.task.
    task_mix: dict[str, float] | None = None
    augment: AugmentArgs | None = field(default_factory=AugmentArgs)  # Training augmentation; None: off.
    # Layout values outside the quantisation ranges after the shift to the cloud minimum (e.g. a wall
    # below the lowest point): clip (with a logged warning naming the sample) or error.
    out_of_range: str = "clip"
    num_workers: int = 2  # DataLoader worker processes.


@dataclass
class LoraArgs:
    rank: int = 16  # LoRA rank.
    alpha: int = 32  # LoRA alpha (scale = alpha / rank).
    dropout: float = 0.05  # LoRA dropout.
    # LM module names that get adapters.
    target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


@dataclass
class StageArgs:
    learning_rate: float = 1e-4  # Peak learning rate of the LM parameters (and new token rows).
    # Peak learning rate of the point encoder and projector; None: learning_rate.
    encoder_learning_rate: float | None = None
    num_epochs: float = 1.0  # Epochs over the training sources (ignored when max_steps > 0).
    max_steps: int = -1  # Optimiser steps; > 0 overrides num_epochs.
    lr_scheduler: str = "cosine"  # transformers scheduler name: cosine, linear, constant_with_warmup, ...
    min_lr_ratio: float = 0.0  # cosine only: final learning rate as a fraction of the peak.
    warmup_ratio: float = 0.03  # Fraction of the steps (or of time_limit_minutes) spent warming up.
    weight_decay: float = 0.0  # AdamW weight decay (never applied to embeddings, biases, norms).
    adam_beta2: float = 0.999  # AdamW beta2 (0.98 or 0.95 adapts faster than the default 0.999).
    batch_size: int = 1  # Rooms per device per micro-batch.
    grad_accum: int = 1  # Micro-batches per optimiser step.
    max_grad_norm: float = 1.0  # Gradient clipping norm.
    gradient_checkpointing: bool = False  # Recompute LM activations in backward to save memory.
    # Stage 2 only: train LoRA adapters (peft) instead of the whole LM; merged into the saved model at the
    # end.
    lora: LoraArgs | None = None
    # Stop after this much training time; the schedule then runs on the clock instead of the step count.
    time_limit_minutes: float | None = None
    # This stage's weight of the token head's label loss (model.token_labels); None: model.token_loss_weight.
    # E.g. the head in stage 1 only: the encoder learns to mark openings, then the LM's loss alone trains it.
    token_loss_weight: float | None = None
    # The token head's label loss counts from this optimiser step of the stage on (0x before): the LM
    # learns the walls from an encoder the head has not shaped yet, then the head teaches the openings.
    token_loss_start_step: int = 0
    # ... and until this step (0x from then on; None: to the end): the head shapes the encoder's first
    # steps, then the LM's loss alone refines it.
    token_loss_stop_step: int | None = None


@dataclass
class ValidationArgs:
    every_steps: int = 0  # Generate on val rooms every N optimiser steps and log per-class F1; 0: off.
    at_end: bool = True  # Also validate when a stage ends.
    num_rooms: int = 8  # Val rooms to generate on (the first ones of the val sources).
    batch_size: int = 4  # Rooms per generate call.
    max_new_tokens: int = 1024  # Generation length cap (greedy).
    cleanup: bool = True  # Voxel down-sample + outlier removal before predicting, as spacelm predict.


@dataclass
class LoggingArgs:
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # tensorboard, wandb or none.
    logging_steps: int = 10  # Log loss and learning rate every N steps.
    save_steps: int = 500  # Write a resumable checkpoint every N steps.
    save_total_limit: int | None = 2  # Keep at most this many checkpoints per stage.
    run_name: str | None = None  # Run name shown by the loggers.


@dataclass
class TrainConfig:
    # Run folder: <output_dir>/stage1 and <output_dir>/stage2 hold checkpoints, logs and the final model
    # of each stage.
    output_dir: str = "runs/spacelm"
    seed: int = 0  # Seed of model initialisation, data order and augmentation.
    bf16: bool = False  # bf16 mixed precision (GPU).
    resume: bool = True  # Resume a stage from its last checkpoint when there is one.
    model: ModelArgs = field(default_factory=ModelArgs)  # Model to build.
    data: DataArgs = field(default_factory=DataArgs)  # Training and validation data.
    # Stage 1: point encoder, projector and new token rows; LM frozen.
    stage1: StageArgs = field(default_factory=lambda: StageArgs(learning_rate=1e-4))
    # Stage 2: everything (or LoRA on the LM), from stage 1's model.
    stage2: StageArgs = field(default_factory=lambda: StageArgs(learning_rate=2e-5))
    validation: ValidationArgs = field(default_factory=ValidationArgs)  # Generation-based validation during training.
    logging: LoggingArgs = field(default_factory=LoggingArgs)  # Loggers and checkpoints.

    def __post_init__(self) -> None:
        check_config(self)


# ---- checks ---------------------------------------------------------------------------------------


def check_config(config: TrainConfig) -> None:
    """Value checks that types cannot express; raises ``ConfigError`` naming the key."""
    def need(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise ConfigError(f"{key}: {message}")

    need(config.data.task in TASKS, "data.task", f"must be one of {TASKS}, got {config.data.task!r}")
    mix = config.data.task_mix
    if mix is not None:
        need(bool(mix) and all(task in TASKS for task in mix), "data.task_mix",
             f"must map tasks of {TASKS} to weights, got {mix!r}")
        need(all(math.isfinite(w) and w >= 0 for w in mix.values()) and sum(mix.values()) > 0,
             "data.task_mix", f"weights must be finite, >= 0 and not all 0, got {mix!r}")
    need(config.data.out_of_range in OUT_OF_RANGE_POLICIES, "data.out_of_range",
         f"must be one of {OUT_OF_RANGE_POLICIES}, got {config.data.out_of_range!r}")
    need(0 <= config.seed < 2**32, "seed", f"must be in [0, 2**32), got {config.seed}")
    need(config.data.num_workers >= 0, "data.num_workers", "must be >= 0")
    augment = config.data.augment
    if augment is not None:
        need(augment.rotate in ROTATIONS, "data.augment.rotate",
             f"must be one of {ROTATIONS}, got {augment.rotate!r}")
        scale = augment.scale_range
        need(scale is None or (len(scale) == 2 and 0 < scale[0] <= scale[1]), "data.augment.scale_range",
             f"must be [low, high] with 0 < low <= high, got {scale}")
        need(augment.color_jitter >= 0, "data.augment.color_jitter", "must be >= 0")
    from spacelm.model.configuration_spatiallm import PROJECTORS, TOKEN_HEAD_INPUTS
    from spacelm.model.point_encoder import PointEncoderConfig

    need(config.model.projector in PROJECTORS, "model.projector",
         f"must be one of {PROJECTORS}, got {config.model.projector!r}")
    need(config.model.layout_decimals is None or config.model.layout_decimals >= 0, "model.layout_decimals",
         "must be null or >= 0")
    need(config.model.dtype in DTYPES, "model.dtype", f"must be one of {DTYPES}, got {config.model.dtype!r}")
    _check_point_encoder(config.model.point_encoder)
    labels = config.model.token_labels
    need(labels is None or (all(isinstance(x, str) and x for x in labels) and len(set(labels)) == len(labels)),
         "model.token_labels", f"must be null or distinct label names, got {labels!r}")
    need(math.isfinite(config.model.token_loss_weight) and config.model.token_loss_weight >= 0,
         "model.token_loss_weight", f"must be finite and >= 0, got {config.model.token_loss_weight}")
    need(math.isfinite(config.model.token_extent_weight) and config.model.token_extent_weight >= 0,
         "model.token_extent_weight", f"must be finite and >= 0, got {config.model.token_extent_weight}")
    need(config.model.token_head_input in TOKEN_HEAD_INPUTS, "model.token_head_input",
         f"must be one of {TOKEN_HEAD_INPUTS}, got {config.model.token_head_input!r}")
    is_branch = config.model.token_head_input == "branch"
    need(not is_branch or config.model.token_labels, "model.token_head_input",
         "branch adds the head's label marks to the point tokens: set model.token_labels too")
    need(config.model.token_branch is None or is_branch, "model.token_branch",
         "is the head's own encoder: set model.token_head_input to branch")
    need(math.isfinite(config.model.token_marks_scale) and config.model.token_marks_scale > 0,
         "model.token_marks_scale", f"must be finite and > 0, got {config.model.token_marks_scale}")
    if is_branch:
        branch = {**config.model.point_encoder, **(config.model.token_branch or {})}
        _check_point_encoder(branch, "model.token_branch")
        main, own = (PointEncoderConfig.from_dict(d) for d in (config.model.point_encoder, branch))
        need(own.num_bins == main.num_bins and own.token_stride == main.token_stride, "model.token_branch",
             f"must keep model.point_encoder's num_bins ({main.num_bins}) and number of down-convs "
             f"({len(main.channels) - 1}, i.e. {len(main.channels)} channels), so its tokens are the same cells")
    tiny = config.model.tiny_lm
    if tiny is not None:
        for name in ("hidden_size", "num_layers", "num_heads"):
            need(getattr(tiny, name) >= 1, f"model.tiny_lm.{name}", f"must be >= 1, got {getattr(tiny, name)}")
        need(tiny.hidden_size % tiny.num_heads == 0, "model.tiny_lm.num_heads",
             f"must divide hidden_size={tiny.hidden_size}, got {tiny.num_heads}")
        need(tiny.num_kv_heads is None or (tiny.num_kv_heads >= 1 and tiny.num_heads % tiny.num_kv_heads == 0),
             "model.tiny_lm.num_kv_heads", f"must be null or divide num_heads={tiny.num_heads}, "
             f"got {tiny.num_kv_heads}")
        need(tiny.intermediate_size is None or tiny.intermediate_size >= 1, "model.tiny_lm.intermediate_size",
             "must be null or >= 1")
        need(tiny.numbers in NUMBER_TOKENS, "model.tiny_lm.numbers",
             f"must be one of {NUMBER_TOKENS}, got {tiny.numbers!r}")
    for reporter in config.logging.report_to:
        need(reporter in REPORTERS, "logging.report_to", f"entries must be in {REPORTERS}, got {reporter!r}")
    _check_counts(config, need)
    need(config.stage1.lora is None, "stage1.lora", "LoRA applies to stage 2 only (stage 1 freezes the LM)")
    for name in ("stage1", "stage2"):
        stage: StageArgs = getattr(config, name)
        need(stage.learning_rate > 0, f"{name}.learning_rate", "must be > 0")
        need(stage.batch_size >= 1, f"{name}.batch_size", "must be >= 1")
        need(stage.grad_accum >= 1, f"{name}.grad_accum", "must be >= 1")
        need(0 <= stage.warmup_ratio < 1, f"{name}.warmup_ratio", "must be in [0, 1)")
        need(0 <= stage.min_lr_ratio <= 1, f"{name}.min_lr_ratio", "must be in [0, 1]")
        need(0 <= stage.adam_beta2 < 1, f"{name}.adam_beta2", "must be in [0, 1)")
        need(stage.max_steps > 0 or stage.num_epochs > 0 or stage.time_limit_minutes is not None,
             f"{name}.max_steps", "set max_steps > 0, num_epochs > 0 or time_limit_minutes")
        need(stage.time_limit_minutes is None or stage.time_limit_minutes > 0,
             f"{name}.time_limit_minutes", "must be > 0")
        need(stage.encoder_learning_rate is None or stage.encoder_learning_rate > 0,
             f"{name}.encoder_learning_rate", "must be null or > 0")
        need(stage.num_epochs >= 0, f"{name}.num_epochs", "must be >= 0")
        need(stage.token_loss_weight is None or (math.isfinite(stage.token_loss_weight)
                                                 and stage.token_loss_weight >= 0),
             f"{name}.token_loss_weight", f"must be null or finite and >= 0, got {stage.token_loss_weight}")
        need(stage.token_loss_weight is None or config.model.token_labels,
             f"{name}.token_loss_weight", "weighs the token head's label loss: set model.token_labels too")
        need(stage.token_loss_start_step >= 0, f"{name}.token_loss_start_step",
             f"must be >= 0, got {stage.token_loss_start_step}")
        need(stage.token_loss_start_step == 0 or config.model.token_labels, f"{name}.token_loss_start_step",
             "delays the token head's label loss: set model.token_labels too")
        need(stage.token_loss_stop_step is None or stage.token_loss_stop_step > stage.token_loss_start_step,
             f"{name}.token_loss_stop_step", f"must be null or > token_loss_start_step "
             f"({stage.token_loss_start_step}), got {stage.token_loss_stop_step}")
        need(stage.token_loss_stop_step is None or config.model.token_labels, f"{name}.token_loss_stop_step",
             "ends the token head's label loss: set model.token_labels too")
        need(stage.max_steps >= -1, f"{name}.max_steps", "must be -1 (off) or >= 0")
        need(stage.weight_decay >= 0, f"{name}.weight_decay", "must be >= 0")
        need(stage.max_grad_norm >= 0, f"{name}.max_grad_norm", "must be >= 0 (0: no clipping)")
        if stage.lora is not None:
            need(stage.lora.rank >= 1, f"{name}.lora.rank", f"must be >= 1, got {stage.lora.rank}")
            need(stage.lora.alpha > 0, f"{name}.lora.alpha", f"must be > 0, got {stage.lora.alpha}")
            need(0 <= stage.lora.dropout < 1, f"{name}.lora.dropout", "must be in [0, 1)")
            need(len(stage.lora.target_modules) >= 1, f"{name}.lora.target_modules", "must name a module")


def _check_counts(config: TrainConfig, need) -> None:
    """Step counts and sizes of the validation and logging sections."""
    validation, logging = config.validation, config.logging
    need(validation.every_steps >= 0, "validation.every_steps", "must be >= 0 (0: off)")
    need(validation.num_rooms >= 0, "validation.num_rooms", "must be >= 0")
    need(validation.batch_size >= 1, "validation.batch_size", "must be >= 1")
    need(validation.max_new_tokens >= 1, "validation.max_new_tokens", "must be >= 1")
    need(logging.logging_steps >= 1, "logging.logging_steps", "must be >= 1")
    need(logging.save_steps >= 1, "logging.save_steps", "must be >= 1")
    need(logging.save_total_limit is None or logging.save_total_limit >= 1, "logging.save_total_limit",
         "must be null or >= 1")


def _check_point_encoder(point_encoder: dict, name: str = "model.point_encoder") -> None:
    from spacelm.model.point_encoder import PointEncoderConfig

    known = [f.name for f in dataclasses.fields(PointEncoderConfig)]
    for key, value in point_encoder.items():
        where = f"{name}.{key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown key (known: {', '.join(known)})")
        if key == "backend":
            if not isinstance(value, str):
                raise ConfigError(f"{where}: expected a string, got {value!r}")
        elif key == "channels":
            if not (isinstance(value, (list, tuple)) and value):
                raise ConfigError(f"{where}: expected a non-empty list of integers >= 1, got {value!r}")
            for i, width in enumerate(value):
                _positive_int(width, f"{where}[{i}]")
        else:
            _positive_int(value, where)
    try:
        PointEncoderConfig.from_dict(point_encoder)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name}: {e}") from None


def _positive_int(value, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: expected an integer >= 1, got {value!r}")


# ---- YAML -> dataclasses ------------------------------------------------------------------------


def load_config(path: str | os.PathLike, overrides: dict | None = None) -> TrainConfig:
    """Read a YAML run config; ``overrides`` (nested dict) is merged on top (e.g. from the CLI).

    Raises ``ConfigError`` naming the file and the key on an unknown key or a wrongly typed value.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_key_loader()) or {}
    except UnicodeDecodeError as e:
        raise decode_error(path, e, ConfigError) from None
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    except ValueError:  # PyYAML's int(): a number past Python's digit limit
        raise ConfigError(f"{path}: a number has more digits than can be read") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return config_from_dict(_merge(data, overrides or {}))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _unique_key_loader():
    """PyYAML's safe loader, but a key given twice in one mapping is a ``ConfigError`` (PyYAML
    silently keeps the last one)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: PyYAML reports it below
                    continue
                if duplicate:
                    raise ConfigError(f"line {key_node.start_mark.line + 1}: {key}: duplicate key")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def config_from_dict(data: dict) -> TrainConfig:
    """Build a ``TrainConfig`` from nested dicts, checking every key and type.

    >>> config_from_dict({"stage2": {"lora": {"rank": 8}}}).stage2.lora.rank
    8
    >>> config_from_dict({"stage1": {"lr": 1}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    spacelm.train.args.ConfigError: stage1.lr: unknown key (known: learning_rate, encoder_learning_rate, ...)
    """
    return _build(TrainConfig, data, "")


def config_to_dict(config: TrainConfig) -> dict:
    """Plain nested dict (YAML/JSON-serialisable) of a config."""
    return dataclasses.asdict(config)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def _build(cls, data, key: str, base=None):
    """``cls`` from the mapping ``data``; keys left out come from ``base`` (the enclosing field's
    default, e.g. ``TrainConfig.stage2``'s), else from the class defaults."""
    if not isinstance(data, dict):
        raise ConfigError(f"{key or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in data:
        if name not in fields:
            raise ConfigError(f"{_join(key, name)}: unknown key (known: {', '.join(fields)})")
    values = {name: _convert(hints[name], data[name], _join(key, name), _default(fields[name]))
              for name in data}
    return dataclasses.replace(base, **values) if base is not None else cls(**values)


def _default(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _convert(hint, value, key: str, default=None):
    """Check ``value`` against the type hint ``hint`` (dataclasses, Optional, list, dict, scalars);
    ``default`` is the field's default, the base of a nested dataclass section."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _convert(options[0] if len(options) == 1 else Any, value, key, default)
    if dataclasses.is_dataclass(hint):
        base = default if isinstance(default, hint) else None
        return _build(hint, {} if value is None else value, key, base)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_short(value)}")
        return value
    if hint is float:
        # YAML reads 1e-4 (no dot) as a string: accept numeric strings for floats.
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an int too large for a float
            raise ConfigError(f"{key}: expected a finite number, got {_short(value)}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {_short(value)}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _short(value) -> str:
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else \
        f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return text if len(text) <= 80 else text[:77] + "..."
