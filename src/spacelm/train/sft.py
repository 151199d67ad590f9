"""Two-stage supervised fine-tuning on the HF ``Trainer``; the same code runs plainly or under ``accelerate launch``.

- Stage 1 trains the point encoder, the projector and the embedding rows of the new point tokens
  (a gradient hook zeroes every other row; embeddings never get weight decay, so frozen rows stay
  bit-identical); the language model is frozen. It starts from a base LM (``from_base_lm``).
- Stage 2 starts from stage 1's saved model and trains everything, or LoRA adapters on the LM (peft)
  plus encoder, projector and new rows; adapters are merged into the saved model.

Each stage writes ``<output_dir>/stage{1,2}``: ``checkpoint-N`` folders (resumable: model, optimizer,
scheduler, RNG and data position), TensorBoard logs under ``runs/``, and at the end the model and
processor (``save_pretrained``) plus ``stage_complete.json``. A stage that has that file is skipped; one
that has checkpoints resumes from the last, so a crashed run is restarted with the same command.

Distribution is accelerate's: DDP, FSDP or DeepSpeed come from ``accelerate launch --config_file``
(see ``configs/accelerate``). One limit: the row mask of stage 1 (and of stage 2 with LoRA) is a gradient
hook on the embedding parameter, which FSDP's flattened or sharded parameters bypass, so those runs refuse
FSDP (``check_distribution``); use DDP for them (the LM is frozen, memory is small).

Only public Trainer APIs are used: ``TrainingArguments`` fields, ``create_optimizer`` /
``create_scheduler`` overrides and callbacks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import (
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

from spacelm.errors import ArgumentError
from spacelm.model import SpatialLMForCausalLM, SpatialLMProcessor
from spacelm.model.point_encoder import PointEncoderConfig
from spacelm.scene.metrics import LAYOUT_CLASSES, EvalResult, evaluate_scenes
from spacelm.train.args import STAGES, ConfigError, LoraArgs, StageArgs, TrainConfig, ValidationArgs
from spacelm.train.data import LayoutDataset, check_token_labels

logger = logging.getLogger(__name__)

COMPLETE_FILE = "stage_complete.json"
# token_head: None unless model.token_labels or model.token_extent_weight; token_branch and marks_projector:
# None unless model.token_head_input is branch.
ENCODER_MODULES = ("point_encoder", "projector", "token_head", "token_branch", "marks_projector")


def train(config: TrainConfig, stage: str = "both", *, callbacks: Sequence[TrainerCallback] = (),
          show_progress: bool = True) -> dict[str, Path]:
    """Run stage ``"1"``, ``"2"`` or ``"both"``; returns ``{stage: folder of its saved model}``."""
    if stage not in STAGES:
        raise ArgumentError(f"stage must be one of {STAGES}, got {stage!r}")
    stages = ("1", "2") if stage == "both" else (stage,)
    return {s: run_stage(config, s, callbacks=callbacks, show_progress=show_progress) for s in stages}


def train_from_yaml(path: str | Path, *, stage: str = "both", output_dir: str | Path | None = None,
                    show_progress: bool = True) -> dict[str, Path]:
    """``spacelm train``: load a YAML run config (``output_dir`` overrides its own) and ``train`` it."""
    from spacelm.train.args import load_config

    overrides = {} if output_dir is None else {"output_dir": str(output_dir)}
    return train(load_config(path, overrides), stage, show_progress=show_progress)


def stage_dir(config: TrainConfig, stage: str) -> Path:
    return Path(config.output_dir) / f"stage{stage}"


def run_stage(config: TrainConfig, stage: str, *, callbacks: Sequence[TrainerCallback] = (),
              show_progress: bool = True) -> Path:
    """Train one stage (resuming from its last checkpoint) and save its model; returns the folder."""
    directory = stage_dir(config, stage)
    if (directory / COMPLETE_FILE).is_file():
        logger.info("stage %s is complete in %s; skipping it", stage, directory)
        return directory
    settings: StageArgs = config.stage1 if stage == "1" else config.stage2
    set_seed(config.seed)
    model, processor = initial_model(config, stage)
    if settings.token_loss_weight is not None:  # saved with this stage's model
        model.config.token_loss_weight = settings.token_loss_weight
    configure_trainable(model, stage, settings.lora)
    data = config.data
    train_set = LayoutDataset(data.train, processor, split="train", task=data.task, augment=data.augment,
                              task_mix=data.task_mix, token_labels=model.config.token_labels,
                              seed=config.seed, out_of_range=data.out_of_range)
    if model.config.token_labels:
        check_token_labels(train_set.records, model.config.token_labels, data.train)
    time_limit = None if settings.time_limit_minutes is None else 60.0 * settings.time_limit_minutes
    trainer = SpatialLMTrainer(
        model=model, args=training_arguments(config, stage, show_progress=show_progress),
        train_dataset=train_set, data_collator=processor.collate, processing_class=processor,
        callbacks=list(callbacks), encoder_learning_rate=settings.encoder_learning_rate,
        time_limit_s=time_limit)
    check_distribution(trainer, stage, settings.lora)
    if settings.token_loss_start_step > 0 or settings.token_loss_stop_step is not None:
        trainer.add_callback(TokenLossWindowCallback(model.config, settings.token_loss_start_step,
                                                     settings.token_loss_stop_step))
    if not show_progress:  # no tqdm bar, and no printed log dicts in its place
        trainer.remove_callback(PrinterCallback)
    validation = config.validation
    if validation.every_steps > 0 or validation.at_end:
        val_set = LayoutDataset(data.val or data.train, processor, split="val", task=data.task)
        rooms = [val_set.room(i) for i in range(min(validation.num_rooms, len(val_set)))]
        trainer.add_callback(LayoutValidationCallback(trainer, rooms, validation, data.task))
    last = get_last_checkpoint(str(directory)) if config.resume and directory.is_dir() else None
    if last is not None:
        logger.info("stage %s resumes from %s", stage, last)
    result = trainer.train(resume_from_checkpoint=last)
    merge_lora(trainer.model)
    trainer.save_model(str(directory))  # model + processor, save_pretrained on the main process
    if trainer.is_world_process_zero():
        summary = {"stage": stage, "global_step": trainer.state.global_step, **result.metrics}
        (directory / COMPLETE_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    trainer.accelerator.wait_for_everyone()
    return directory


# ---- model -------------------------------------------------------------------------------------


def initial_model(config: TrainConfig, stage: str) -> tuple[SpatialLMForCausalLM, SpatialLMProcessor]:
    """Stage 1: a new SpatialLM around the base LM. Stage 2: stage 1's model, or ``model.init_from``."""
    m = config.model
    dtype = None if m.dtype == "auto" else getattr(torch, m.dtype)
    lm_kwargs = {} if m.attn_implementation is None else {"attn_implementation": m.attn_implementation}
    if stage == "1":
        return SpatialLMForCausalLM.from_base_lm(base_lm_path(config), point_config=m.point_encoder,
                                                 projector=m.projector, dtype=dtype,
                                                 token_labels=m.token_labels,
                                                 token_loss_weight=m.token_loss_weight,
                                                 token_extent_weight=m.token_extent_weight,
                                                 token_head_input=m.token_head_input,
                                                 token_branch=m.token_branch,
                                                 token_marks_scale=m.token_marks_scale,
                                                 processor_kwargs={"layout_decimals": m.layout_decimals,
                                                                   "reference_code": m.reference_code},
                                                 **lm_kwargs)
    first = stage_dir(config, "1")
    source = first if (first / COMPLETE_FILE).is_file() else m.init_from
    if source is None:
        raise FileNotFoundError(f"stage 2 starts from stage 1's model, but {first} holds no finished stage 1; "
                                "run stage 1 first or set model.init_from to a saved spacelm model")
    model = SpatialLMForCausalLM.from_pretrained(source, dtype=dtype, **lm_kwargs)
    return model, SpatialLMProcessor.from_pretrained(source)


def base_lm_path(config: TrainConfig) -> str:
    """``model.base_lm``, or a tiny LM built offline once in ``<output_dir>/base_lm`` (main process first)."""
    tiny = config.model.tiny_lm
    if tiny is None:
        return config.model.base_lm
    from accelerate import PartialState

    from spacelm.datasets.synthetic import BOX_LABELS
    from spacelm.model.tiny import save_tiny_base_lm

    path = Path(config.output_dir) / "base_lm"
    point_config = PointEncoderConfig.from_dict(config.model.point_encoder)
    with PartialState().main_process_first():
        if not (path / "config.json").is_file():
            labels = list(BOX_LABELS) if tiny.labels is None else tiny.labels
            save_tiny_base_lm(path, hidden_size=tiny.hidden_size, num_layers=tiny.num_layers,
                              num_heads=tiny.num_heads, num_kv_heads=tiny.num_kv_heads,
                              intermediate_size=tiny.intermediate_size, labels=labels, seed=config.seed,
                              number_tokens=0 if tiny.numbers == "digits" else point_config.num_bins,
                              fourier_numbers=tiny.numbers == "fourier_bins")
    return str(path)


def configure_trainable(model: SpatialLMForCausalLM, stage: str, lora: LoraArgs | None = None) -> None:
    """Set ``requires_grad`` for a stage (see the module docstring); adds LoRA adapters when asked."""
    if stage == "2" and lora is None:
        model.requires_grad_(True)
        return
    if lora is not None:
        add_lora(model, lora)  # freezes the LM's own weights
    else:
        model.language_model.requires_grad_(False)
    for name in ENCODER_MODULES:
        if getattr(model, name) is not None:
            getattr(model, name).requires_grad_(True)
    train_embedding_rows(model.get_input_embeddings().weight, model.config.point_token_ids)


def train_embedding_rows(weight: nn.Parameter, rows: Sequence[int]):
    """Make ``weight`` trainable but zero the gradient of every row not in ``rows``; returns the hook.

    With a zero gradient and no weight decay, AdamW leaves a row exactly unchanged.
    """
    weight.requires_grad_(True)
    mask = torch.zeros(weight.shape[0], 1, dtype=torch.float32)
    mask[list(rows)] = 1.0
    return weight.register_hook(lambda grad: grad * mask.to(grad.device, grad.dtype))


def uses_row_mask(stage: str, lora: LoraArgs | None) -> bool:
    """Whether ``configure_trainable`` trains the new token rows through the gradient hook (not the whole table)."""
    return stage == "1" or lora is not None


def check_distribution(trainer: Trainer, stage: str, lora: LoraArgs | None) -> None:
    """Refuse FSDP where the row mask is needed: FSDP trains flattened (FSDP1) or sharded DTensor (FSDP2)
    copies of the parameters, so the hook on the original embedding never fires and every row would train."""
    if trainer.is_fsdp_enabled and uses_row_mask(stage, lora):
        what = "stage 1" if stage == "1" else "stage 2 with LoRA"
        raise ConfigError(f"{what} trains only the point-token rows of the embedding through a gradient hook, "
                          "which FSDP bypasses; launch it with DDP (configs/accelerate/ddp.yaml) or, for "
                          "stage 2, drop stage2.lora to train the whole model under FSDP")


def add_lora(model: SpatialLMForCausalLM, lora: LoraArgs) -> None:
    from peft import LoraConfig, get_peft_model

    peft_config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
    model.language_model = get_peft_model(model.language_model, peft_config)


def merge_lora(model: nn.Module) -> None:
    """Fold LoRA adapters into the LM weights so the saved model is a plain SpatialLM."""
    language_model = getattr(model, "language_model", None)
    if language_model is not None and hasattr(language_model, "merge_and_unload"):
        model.language_model = language_model.merge_and_unload()


# ---- trainer -----------------------------------------------------------------------------------


def training_arguments(config: TrainConfig, stage: str, *, show_progress: bool = True) -> TrainingArguments:
    s: StageArgs = config.stage1 if stage == "1" else config.stage2
    scheduler, scheduler_kwargs = s.lr_scheduler, {}
    if scheduler == "cosine" and s.min_lr_ratio > 0:
        scheduler, scheduler_kwargs = "cosine_with_min_lr", {"min_lr_rate": s.min_lr_ratio}
    max_steps = s.max_steps
    if max_steps <= 0 and s.time_limit_minutes is not None:
        max_steps = 10**9  # the clock stops the stage (TimeLimitCallback)
    reporters = [r for r in config.logging.report_to if r != "none"] or ["none"]
    return TrainingArguments(
        output_dir=str(stage_dir(config, stage)),
        per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=s.grad_accum,
        learning_rate=s.learning_rate,
        weight_decay=s.weight_decay,
        adam_beta2=s.adam_beta2,
        num_train_epochs=s.num_epochs,
        max_steps=max_steps,
        lr_scheduler_type=scheduler,
        lr_scheduler_kwargs=scheduler_kwargs,
        warmup_steps=s.warmup_ratio,  # transformers 5: a float in [0, 1) is a fraction of the steps
        max_grad_norm=s.max_grad_norm,
        bf16=config.bf16,
        # Without an accelerator, bf16 is CPU autocast; transformers refuses bf16 there unless use_cpu is set.
        use_cpu=config.bf16 and not torch.accelerator.is_available(),
        seed=config.seed,
        logging_steps=config.logging.logging_steps,
        save_strategy="steps",
        save_steps=config.logging.save_steps,
        save_total_limit=config.logging.save_total_limit,
        report_to=reporters,
        run_name=config.logging.run_name or f"{Path(config.output_dir).name}-stage{stage}",
        dataloader_num_workers=config.data.num_workers,
        remove_unused_columns=False,  # the collator's point tensors are model inputs
        ddp_find_unused_parameters=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=not show_progress,
        **{checkpointing_argument(): s.gradient_checkpointing},
    )


def checkpointing_argument() -> str:
    """The ``TrainingArguments`` field for activation checkpointing: 5.16 has only ``gradient_checkpointing``;
    later 5.x releases call it ``activation_checkpointing`` and warn on the old name until v6."""
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


class SpatialLMTrainer(Trainer):
    """``Trainer`` with a separate learning rate for encoder + projector, no weight decay on embeddings,
    and an optional time budget (``time_limit_s``): the schedule then runs on the clock instead of the
    step count, and a ``TimeLimitCallback`` on the same clock stops training in time."""

    def __init__(self, *args, encoder_learning_rate: float | None = None,
                 time_limit_s: float | None = None, **kwargs) -> None:
        self.encoder_learning_rate = encoder_learning_rate
        super().__init__(*args, **kwargs)
        self.clock: ClockCosine | None = None
        if time_limit_s is not None:
            min_ratio = float((self.args.lr_scheduler_kwargs or {}).get("min_lr_rate", 0.0))
            self.clock = ClockCosine(time_limit_s, self.args.warmup_steps, min_ratio)
            self.add_callback(TimeLimitCallback(time_limit_s, self.clock))

    def create_optimizer(self, model=None):
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        embeddings = {id(p) for m in opt_model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, param in opt_model.named_parameters():
            if not param.requires_grad:
                continue
            is_encoder = any(part in ENCODER_MODULES for part in name.split("."))
            lr = self.encoder_learning_rate if is_encoder and self.encoder_learning_rate else self.args.learning_rate
            wd = self.args.weight_decay if name in decay and id(param) not in embeddings else 0.0
            groups.setdefault((lr, wd), []).append(param)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls([{"params": params, "lr": lr, "weight_decay": wd}
                                        for (lr, wd), params in groups.items()], **optimizer_kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and self.clock is not None:
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, self.clock)
            return self.lr_scheduler
        return super().create_scheduler(num_training_steps, optimizer)


class ClockCosine:
    """Learning-rate factor from the elapsed fraction ``f`` of a time budget: linear warmup over
    ``warmup`` of it, then cosine from 1 down to ``min_ratio`` at ``f = 1``. The clock starts at the
    first call (when the scheduler is built) and restarts with ``TimeLimitCallback`` when training
    begins, resumed or not: a resumed stage gets a fresh budget, whatever start its checkpoint held
    (``LambdaLR`` saves and restores a callable object's attributes)."""

    def __init__(self, seconds: float, warmup: float, min_ratio: float = 0.0) -> None:
        self.seconds, self.warmup, self.min_ratio = seconds, warmup if warmup < 1 else 0.0, min_ratio
        self.start: float | None = None

    def __call__(self, step: int) -> float:
        now = time.monotonic()
        self.start = now if self.start is None else self.start
        f = min(1.0, (now - self.start) / self.seconds)
        if f < self.warmup:
            return max(f / self.warmup, 1e-3)
        progress = (f - self.warmup) / max(1e-9, 1.0 - self.warmup)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class TimeLimitCallback(TrainerCallback):
    """Stop training before ``seconds`` have passed since it began: after a step, stop when one more
    step of the mean duration so far would cross the limit. ``clock``'s budget starts with it."""

    def __init__(self, seconds: float, clock: ClockCosine | None = None) -> None:
        self.seconds, self.clock = seconds, clock
        self.start, self.steps = 0.0, 0

    def on_train_begin(self, args, state, control, **kwargs):
        # The Trainer builds (and on resume reloads) its scheduler before this event.
        self.start, self.steps = time.monotonic(), 0
        if self.clock is not None:
            self.clock.start = self.start

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1
        elapsed = time.monotonic() - self.start
        if elapsed + elapsed / self.steps >= self.seconds:
            control.should_training_stop = True
        return control


class TokenLossWindowCallback(TrainerCallback):
    """Hold the token head's label weight (``config.token_loss_weight``) at its stage value from optimiser
    step ``start_step`` of the stage until ``stop_step`` (None: the end) and at 0 outside; a resumed run
    picks up where it was."""

    def __init__(self, config, start_step: int, stop_step: int | None) -> None:
        self.config, self.weight = config, config.token_loss_weight
        self.start_step, self.stop_step = start_step, stop_step

    def on_step_begin(self, args, state, control, **kwargs):
        on = state.global_step >= self.start_step and (self.stop_step is None or state.global_step < self.stop_step)
        self.config.token_loss_weight = self.weight if on else 0.0

    def on_train_end(self, args, state, control, **kwargs):
        self.config.token_loss_weight = self.weight  # saved with the stage's model


class LayoutValidationCallback(TrainerCallback):
    """Every ``settings.every_steps`` steps (and at the end), predict a few val rooms greedily and log
    per-class F1 at IoU 0.25 and 0.5 (``val/f1@0.25/wall``, ..., ``val/f1@0.5/objects``), and the answer
    loss with each room's own cloud and with another's (``val/cloud_gain``: is the cloud read at all?).

    Rooms are split over the processes and gathered, so DDP/FSDP ranks generate in step.
    """

    def __init__(self, trainer: Trainer, rooms: list, settings: ValidationArgs, task: str = "all") -> None:
        self.trainer, self.rooms, self.settings, self.task = trainer, rooms, settings, task
        self.last_step = -1

    def on_step_end(self, args, state, control, **kwargs):
        every = self.settings.every_steps
        if every > 0 and state.global_step % every == 0:
            self.validate(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.settings.at_end and state.global_step != self.last_step:
            self.validate(state.global_step)

    def validate(self, step: int) -> dict[str, float]:
        from accelerate.utils import gather_object

        from spacelm.predict import PredictConfig, predict_clouds
        from spacelm.train.diagnostics import cloud_reliance

        self.last_step = step
        accelerator = self.trainer.accelerator
        model = accelerator.unwrap_model(self.trainer.model)
        processor = self.trainer.processing_class
        rank, world = accelerator.process_index, accelerator.num_processes
        share = [self.rooms[i % len(self.rooms)] for i in range(rank, math.ceil(len(self.rooms) / world) * world,
                                                               world)]
        predict = PredictConfig(task=self.task, do_sample=False, max_new_tokens=self.settings.max_new_tokens,
                                cleanup=self.settings.cleanup)
        was_training = model.training
        model.eval()
        scenes = []
        for start in range(0, len(share), self.settings.batch_size):
            batch = share[start:start + self.settings.batch_size]
            predictions = predict_clouds(model, processor, [cloud for _, cloud, _ in batch], predict)
            scenes += [(sid, gt, p.layout) for (sid, _, gt), p in zip(batch, predictions)]
        # Answer loss with each room's own cloud against another room's (spacelm.train.diagnostics).
        reliance = [cloud_reliance(model, processor, share, task=self.task)] if len(share) > 1 else []
        model.train(was_training)
        if world > 1:
            scenes, reliance = gather_object(scenes), gather_object(reliance)
        unique = list({sid: (sid, gt, pred) for sid, gt, pred in scenes}.values())
        metrics = {f"val/f1@{t}/{name}": value for name, by_t in f1_by_class(evaluate_scenes(unique)).items()
                   for t, value in by_t.items() if not math.isnan(value)}
        if reliance:
            rooms = sum(r.rooms for r in reliance)
            metrics["val/loss_own_cloud"] = sum(r.own * r.rooms for r in reliance) / rooms
            metrics["val/loss_other_cloud"] = sum(r.other * r.rooms for r in reliance) / rooms
            metrics["val/cloud_gain"] = metrics["val/loss_other_cloud"] - metrics["val/loss_own_cloud"]
        if accelerator.is_main_process:
            self.trainer.log(dict(metrics))
        return metrics


def f1_by_class(result: EvalResult) -> dict[str, dict[float, float]]:
    """Scene-averaged F1 of wall, door, window and each box class, plus ``objects`` (mean over box classes)
    and ``objects_pooled`` (every box of every class counted once)."""
    out = {name: dict(result.scores[name]) for name in result.classes}
    boxes = [name for name in result.classes if name not in LAYOUT_CLASSES]
    if boxes:
        for key in ("objects", "objects_pooled"):
            out[key] = {}
        for t in result.thresholds:
            values = [result.scores[name][t] for name in boxes if not math.isnan(result.scores[name][t])]
            out["objects"][t] = sum(values) / len(values) if values else math.nan
            pooled = sum((result.pooled[name][t] for name in boxes[1:]), result.pooled[boxes[0]][t])
            out["objects_pooled"][t] = pooled.f1
    return out
