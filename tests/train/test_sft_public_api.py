"""What ``SpatialLMTrainer`` takes from transformers through public APIs only: the warmup fraction, the
clock schedule and its restart on resume, the activation-checkpointing switch, and the FSDP refusal of
the embedding-row mask. Each test pins the behaviour that a private hook used to provide."""

import math
import time
import warnings

import pytest
import torch
from torch import nn

pytest.importorskip("accelerate")

from transformers import TrainerControl, TrainerState  # noqa: E402

from spacelm.train.args import LoraArgs, config_from_dict  # noqa: E402
from spacelm.train.sft import (  # noqa: E402
    ClockCosine,
    SpatialLMTrainer,
    TimeLimitCallback,
    check_distribution,
    training_arguments,
)


class EncoderAndHead(nn.Module):
    """Stands in for SpatialLM: a ``projector`` (encoder learning rate) and an LM-side layer."""

    def __init__(self) -> None:
        super().__init__()
        self.projector = nn.Linear(2, 2)
        self.head = nn.Linear(2, 2)

    def forward(self, x):
        return self.head(self.projector(x))


def arguments(tmp_path, **stage1):
    config = config_from_dict({"output_dir": str(tmp_path), "logging": {"report_to": ["none"]},
                               "stage1": {"learning_rate": 1e-2, "max_steps": 20, **stage1}})
    return training_arguments(config, "1", show_progress=False)


def learning_rates(scheduler, steps: int) -> list[list[float]]:
    """The learning rate of every param group before each of ``steps`` optimiser steps."""
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr())
        scheduler.optimizer.step()
        scheduler.step()
    return out


def test_warmup_ratio_is_a_fraction_of_the_steps_and_the_encoder_keeps_its_own_rate(tmp_path):
    # warmup_ratio 0.1 of 20 steps: 2 warmup steps (0, half, full), then cosine over the other 18.
    args = arguments(tmp_path, warmup_ratio=0.1, lr_scheduler="cosine")
    trainer = SpatialLMTrainer(model=EncoderAndHead(), args=args, encoder_learning_rate=3e-2)
    trainer.create_optimizer()
    lrs = learning_rates(trainer.create_scheduler(num_training_steps=20), 4)
    factors = [0.0, 0.5, 1.0, 0.5 * (1 + math.cos(math.pi / 18))]
    by_group = {group["lr"] for group in trainer.optimizer.param_groups}
    assert len(by_group) == 2  # one group per learning rate
    for step, factor in enumerate(factors):
        assert sorted(lrs[step]) == pytest.approx(sorted([1e-2 * factor, 3e-2 * factor])), step


def test_clock_cosine_warms_up_then_decays_to_the_floor_on_the_clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    clock = ClockCosine(100.0, warmup=0.1, min_ratio=0.2)
    assert clock(0) == pytest.approx(1e-3)  # the first call starts the clock: f = 0
    expected = {5.0: 0.5, 10.0: 1.0, 55.0: 0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 0.5)), 100.0: 0.2,
                250.0: 0.2}
    for elapsed, factor in expected.items():
        now[0] = 1000.0 + elapsed
        assert clock(1) == pytest.approx(factor), elapsed


def test_a_resumed_time_limited_stage_restarts_the_schedule_clock(tmp_path):
    args = arguments(tmp_path, warmup_ratio=0.1)
    first = SpatialLMTrainer(model=EncoderAndHead(), args=args, time_limit_s=100.0)
    first.create_optimizer()
    scheduler = first.create_scheduler(num_training_steps=10**9)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR) and scheduler.lr_lambdas == [first.clock]
    saved = scheduler.state_dict()
    saved["lr_lambdas"][0]["start"] = time.monotonic() - 50.0  # written half-way through the budget

    resumed = SpatialLMTrainer(model=EncoderAndHead(), args=args, time_limit_s=100.0)
    resumed.create_optimizer()
    resumed.create_scheduler(num_training_steps=10**9).load_state_dict(saved)
    assert resumed.clock.start == saved["lr_lambdas"][0]["start"]  # torch restores the stale start
    assert resumed.clock(1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.4 / 0.9)), abs=1e-3)
    # The Trainer fires on_train_begin after it has built and reloaded the scheduler.
    callback = resumed.pop_callback(TimeLimitCallback)
    callback.on_train_begin(args, TrainerState(), TrainerControl())
    assert resumed.clock.start == callback.start
    assert resumed.clock(1) < 0.01  # back at the start of the warmup of a fresh budget


def test_time_limit_callback_stops_before_one_more_mean_step_would_cross_the_limit(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    callback, control = TimeLimitCallback(10.0), TrainerControl()
    callback.on_train_begin(None, TrainerState(), control)
    for step_end in (3.0, 6.0):  # 3 s per step: after 6 s, a third step would end at 9 s < 10 s
        now[0] = step_end
        callback.on_step_end(None, TrainerState(), control)
        assert not control.should_training_stop, step_end
    now[0] = 7.6  # mean 2.53 s: a fourth step would end at 10.1 s
    callback.on_step_end(None, TrainerState(), control)
    assert control.should_training_stop


def test_activation_checkpointing_switch_reaches_the_arguments_without_a_deprecation_warning(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        on = arguments(tmp_path, gradient_checkpointing=True)
        off = arguments(tmp_path)
    assert on.gradient_checkpointing is True and off.gradient_checkpointing is False
    assert not [w for w in caught if "checkpointing" in str(w.message)], [str(w.message) for w in caught]


def test_fsdp_is_refused_where_the_embedding_row_mask_is_needed(tmp_path):
    trainer = SpatialLMTrainer(model=EncoderAndHead(), args=arguments(tmp_path))
    for stage, lora in (("1", None), ("2", LoraArgs()), ("2", None)):
        check_distribution(trainer, stage, lora)  # DDP or one process: every stage runs
    # FSDP cannot start on CPU (accelerate and transformers refuse it there), so set the public flag the
    # Trainer derives from accelerate's state under `accelerate launch --config_file fsdp.yaml`.
    trainer.is_fsdp_enabled = True
    with pytest.raises(ValueError, match=r"stage 1 .* FSDP bypasses; launch it with DDP"):
        check_distribution(trainer, "1", None)
    with pytest.raises(ValueError, match="stage 2 with LoRA"):
        check_distribution(trainer, "2", LoraArgs())
    check_distribution(trainer, "2", None)  # the whole model trains: no mask, FSDP is fine


@pytest.mark.skipif(torch.accelerator.is_available(), reason="checks the CPU-only case")
def test_bf16_on_a_cpu_only_machine_is_cpu_autocast_not_a_refusal(tmp_path):
    config = config_from_dict({"output_dir": str(tmp_path), "bf16": True, "logging": {"report_to": ["none"]},
                               "stage2": {"max_steps": 2}})
    args = training_arguments(config, "2", show_progress=False)  # transformers refused this before use_cpu
    assert args.bf16 and args.use_cpu
    assert not training_arguments(config_from_dict({"output_dir": str(tmp_path)}), "2", show_progress=False).use_cpu
