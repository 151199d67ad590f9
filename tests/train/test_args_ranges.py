"""Run-config values out of range, duplicated keys and hostile YAML: a ``ConfigError`` naming the
file and the key, never another exception. The regressions are C1-C6 of
research/reliability-2026-12.md."""

import pytest

from spacelm.errors import SpacelmError
from spacelm.train.args import (
    ConfigError,
    StageArgs,
    TrainConfig,
    config_from_dict,
    load_config,
)


def _load(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path, lambda: load_config(path)


@pytest.mark.parametrize("text, message", [
    ("model: {tiny_lm: {num_heads: 0}}", "model.tiny_lm.num_heads: must be >= 1, got 0"),  # C1
    ("model: {tiny_lm: {num_heads: -4}}", "model.tiny_lm.num_heads: must be >= 1"),
    ("model: {tiny_lm: {hidden_size: -128}}", "model.tiny_lm.hidden_size: must be >= 1"),
    ("model: {tiny_lm: {hidden_size: 0}}", "model.tiny_lm.hidden_size: must be >= 1"),
    ("stage1: {learning_rate: 1" + "0" * 400 + "}",  # C2
     "stage1.learning_rate: expected a finite number, got an integer of about 401 digits"),
    ("seed: " + "1" * 4301, "a number has more digits than can be read"),  # C3
    ("{" * 2000 + "}" * 2000, "nested too deeply to read"),  # C4
    ("stage1: {learning_rate: 1e400}", "stage1.learning_rate: expected a finite number, got '1e400'"),
    ("stage2: {learning_rate: .inf}", "stage2.learning_rate: expected a finite number, got inf"),
    ("stage1: {time_limit_minutes: .inf}", "stage1.time_limit_minutes: expected a finite number"),
    ("stage1: {max_grad_norm: -1}", "stage1.max_grad_norm: must be >= 0"),
    ("stage2: {lora: {rank: 0}}", "stage2.lora.rank: must be >= 1, got 0"),
    ("stage2: {lora: {dropout: 5.0}}", "stage2.lora.dropout: must be in [0, 1)"),
    ("seed: -1", "seed: must be in [0, 2**32), got -1"),
    ("model: {point_encoder: {num_bins: .nan}}", "model.point_encoder.num_bins: expected an integer >= 1"),
    ("model: {point_encoder: {channels: [16, .inf]}}", r"model.point_encoder.channels[1]: expected an"),
    ("model: {point_encoder: {embed_dim: -3}}", "model.point_encoder.embed_dim: expected an integer >= 1"),
    ("model: {point_encoder: {input_channels: .nan}}", "model.point_encoder.input_channels: expected"),
    ("model: {point_encoder: {num_fourier_freqs: .inf}}", "model.point_encoder.num_fourier_freqs: expec"),
    ("model: {token_extent_weight: -0.5}", "model.token_extent_weight: must be finite and >= 0, got -0.5"),
    ("model: {token_head_input: resnet}", "model.token_head_input: must be one of ('tokens', 'backbone', 'branc"),
    ("model: {token_head_input: branch}", "model.token_head_input: branch adds the head's label marks to the poi"),
    ("model: {token_branch: {embed_dim: 8}}", "model.token_branch: is the head's own encoder: set model.token_head"),
    ("model: {token_labels: [door], token_head_input: branch, token_branch: {embed_dim: -1}}",
     "model.token_branch.embed_dim: expected an integer >= 1"),
    ("model: {token_marks_scale: 0}", "model.token_marks_scale: must be finite and > 0, got 0"),
    ("model: {token_labels: [door], token_head_input: branch, point_encoder: {channels: [8, 8, 16, 32]},\n"
     "        token_branch: {channels: [4, 8, 16]}}", "model.token_branch: must keep model.point_encoder's num_bins"),
    ("stage2: {token_loss_weight: 0.5}", "stage2.token_loss_weight: weighs the token head's label loss: set"),
    ("model: {token_labels: [door]}\nstage1: {token_loss_weight: -1}", "stage1.token_loss_weight: must be null"),
    ("model: {token_labels: [door]}\nstage2: {token_loss_start_step: -5}", "stage2.token_loss_start_step: must be"),
    ("stage2: {token_loss_start_step: 100}", "stage2.token_loss_start_step: delays the token head's label loss"),
    ("model: {token_labels: [door]}\nstage2: {token_loss_start_step: 10, token_loss_stop_step: 10}",
     "stage2.token_loss_stop_step: must be null or > token_loss_start_step (10), got 10"),
    ("stage2: {token_loss_stop_step: 100}", "stage2.token_loss_stop_step: ends the token head's label loss"),
    ("logging: {save_steps: 0}", "logging.save_steps: must be >= 1"),
    ("validation: {num_rooms: -1}", "validation.num_rooms: must be >= 0"),
    ("data: {augment: {scale_range: [0.75, .inf]}}", r"data.augment.scale_range[1]: expected a finite"),
    ("stage1: {batch_size: 2}\nseed: 1\nstage1: {batch_size: 3}", "line 3: stage1: duplicate key"),
    ("stage2:\n  lora: {rank: 4, rank: 8}", "line 2: rank: duplicate key"),
    (b"seed: 1\n# caf\xe9\n", "not UTF-8 text (byte 0xe9 at offset 13)"),
])
def test_bad_values_name_the_file_and_key(tmp_path, text, message):
    path, load = _load(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
    assert len(str(error.value)) < 400


def test_a_partial_stage2_keeps_stage2_defaults():  # C5
    config = config_from_dict({"stage2": {"batch_size": 2}, "stage1": {"grad_accum": 4}})
    assert (config.stage2.batch_size, config.stage2.learning_rate) == (2, 2e-5)
    assert (config.stage1.grad_accum, config.stage1.learning_rate) == (4, 1e-4)
    assert config.stage2 == StageArgs(learning_rate=2e-5, batch_size=2)
    assert config_from_dict({"stage2": None}).stage2.learning_rate == 2e-5
    assert config_from_dict({}) == TrainConfig()


def test_sections_left_out_and_valid_edges_still_load(tmp_path):
    config = config_from_dict({"stage1": {"max_grad_norm": 0, "max_steps": -1},
                               "data": {"augment": {"color_jitter": 0.0}},
                               "model": {"tiny_lm": {"hidden_size": 64, "num_heads": 2}},
                               "validation": {"num_rooms": 0}, "seed": 2**32 - 1})
    assert config.model.tiny_lm.num_layers == 4 and config.data.augment.scale_range == [0.75, 1.25]
    assert issubclass(ConfigError, SpacelmError) and issubclass(ConfigError, ValueError)
