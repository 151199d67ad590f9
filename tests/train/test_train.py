"""Two-stage training on tiny synthetic rooms: what each stage trains, resume, config errors, data, DDP."""

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("accelerate")

from safetensors.torch import load_file  # noqa: E402
from transformers import TrainerCallback, set_seed  # noqa: E402

from spacelm.datasets.synthetic import SynthConfig, room_seed, synth_room  # noqa: E402
from spacelm.model.tiny import save_tiny_base_lm  # noqa: E402
from spacelm.points import PointCloud, write_ply  # noqa: E402
from spacelm.scene import Layout, Wall  # noqa: E402
from spacelm.scene.language import read_layout, write_layout  # noqa: E402
from spacelm.train import data as data_module  # noqa: E402
from spacelm.train.args import ConfigError, TinyLMArgs, config_from_dict, load_config  # noqa: E402
from spacelm.train.data import DataError, LayoutDataset, fit_to_ranges  # noqa: E402
from spacelm.train.sft import (  # noqa: E402
    SpatialLMTrainer,
    initial_model,
    stage_dir,
    train,
    training_arguments,
)

REPO = Path(__file__).resolve().parents[2]
# Sparse rooms (150 points/m^2, 1-3 boxes) keep a step well under a second.
ROOMS = SynthConfig(density=150, boxes=(1, 3), windows=(0, 1))


def write_rooms(root: Path, n_train: int, n_val: int, seed: int = 0) -> Path:
    """A dataset folder in our format: pcd/<id>.ply, layout/<id>.txt, split.csv."""
    (root / "pcd").mkdir(parents=True)
    (root / "layout").mkdir()
    rows = ["id,split"]
    for i in range(n_train + n_val):
        room = synth_room(room_seed(seed, i), ROOMS)
        write_ply(root / "pcd" / f"room{i}.ply", PointCloud(room.xyz, room.rgb))
        write_layout(root / "layout" / f"room{i}.txt", room.layout)
        rows.append(f"room{i},{'train' if i < n_train else 'val'}")
    (root / "split.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_rooms(tmp_path_factory.mktemp("rooms"), n_train=4, n_val=2)


@pytest.fixture(scope="module")
def base_lm(tmp_path_factory):
    return save_tiny_base_lm(tmp_path_factory.mktemp("base"), hidden_size=32, num_layers=1, num_heads=2,
                             labels=["bed", "sofa", "chair"])


def make_config(output_dir, dataset, base_lm, **stages):
    stage = {"learning_rate": 1e-2, "max_steps": 3, "batch_size": 2, "warmup_ratio": 0.0}
    return config_from_dict({
        "output_dir": str(output_dir),
        "model": {"base_lm": str(base_lm),
                  "point_encoder": {"channels": [8, 8, 8, 8, 8], "embed_dim": 16, "num_bins": 640}},
        "data": {"train": [str(dataset)], "num_workers": 0, "augment": {"rotate": "right_angles"}},
        "stage1": {**stage, **stages.get("stage1", {})},
        "stage2": {**stage, **stages.get("stage2", {})},
        "validation": {"at_end": False},
        "logging": {"report_to": ["none"], "logging_steps": 1, "save_steps": 100},
    })


def saved_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def two_stage_run(tmp_path_factory, dataset, base_lm):
    """Stage 1 (with weight decay, which must not touch frozen rows) then stage 2, 3 steps each."""
    config = make_config(tmp_path_factory.mktemp("run"), dataset, base_lm,
                         stage1={"weight_decay": 0.1, "encoder_learning_rate": 3e-2})
    set_seed(config.seed)  # the same draw run_stage makes for stage 1's new encoder and projector
    initial, _ = initial_model(config, "1")
    before = {k: v.detach().clone() for k, v in initial.state_dict().items()}
    train(config, "both", show_progress=False)
    return config, initial, before


def test_stage1_changes_only_encoder_projector_and_new_token_rows(two_stage_run):
    config, initial, before = two_stage_run
    after = saved_weights(stage_dir(config, "1"))
    embed_key = next(k for k in before if k.endswith("embed_tokens.weight"))
    new_rows = [initial.config.point_start_token_id, initial.config.point_end_token_id]
    others = [r for r in range(before[embed_key].shape[0]) if r not in initial.config.point_token_ids]
    assert not torch.equal(after[embed_key][new_rows], before[embed_key][new_rows])
    assert torch.equal(after[embed_key][others], before[embed_key][others])  # bit-identical
    for key, value in before.items():
        if key not in after:  # the tied lm_head is stored once
            continue
        if key.startswith(("point_encoder.", "projector.")):
            continue
        if key != embed_key:
            assert torch.equal(after[key], value), f"{key} changed in stage 1"
    changed = [k for k in before if k.startswith(("point_encoder.", "projector."))
               and not torch.equal(after[k], before[k])]
    assert "projector.weight" in changed and any(k.startswith("point_encoder.") for k in changed)


def test_stage2_starts_from_stage1_and_changes_the_lm(two_stage_run):
    config, _, before = two_stage_run
    first, second = saved_weights(stage_dir(config, "1")), saved_weights(stage_dir(config, "2"))
    start, _ = initial_model(config, "2")  # what run_stage trains in stage 2
    start = start.state_dict()
    assert all(torch.equal(start[k], first[k]) for k in first)  # stage 1's saved weights, every one
    trained_in_stage1 = [k for k in first if k.startswith(("point_encoder.", "projector."))
                         and not torch.equal(first[k], before[k])]
    assert trained_in_stage1  # so a start from the base LM (a fresh encoder) would have failed above
    lm_keys = [k for k in first if k.startswith("language_model.") and "layers.0.self_attn.q_proj" in k]
    assert lm_keys and all(not torch.equal(first[k], second[k]) for k in lm_keys)
    assert (stage_dir(config, "2") / "spacelm_processor.json").is_file()  # loadable by spacelm predict


class CrashAfterSave(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("simulated crash")


def run_recording(config, monkeypatch, seen, callbacks=()):
    """Train stage 1, appending the (epoch, index) of every room loaded to ``seen``, in order."""
    original = data_module.LayoutDataset.__getitem__

    def recording(self, index):
        seen.append((self.epoch, index))
        return original(self, index)

    monkeypatch.setattr(data_module.LayoutDataset, "__getitem__", recording)
    try:
        train(config, "1", callbacks=callbacks, show_progress=False)
    finally:
        monkeypatch.setattr(data_module.LayoutDataset, "__getitem__", original)


def test_resume_after_crash_continues_at_the_right_step_and_data(tmp_path, dataset, base_lm, monkeypatch):
    # batch 1 over 4 rooms: 4 steps per epoch, so the crash at step 3 lands mid-epoch.
    stage = {"stage1": {"max_steps": 6, "batch_size": 1}}
    straight = make_config(tmp_path / "straight", dataset, base_lm, **stage)
    order, before_crash, after_crash = [], [], []
    run_recording(straight, monkeypatch, order)
    crashed = make_config(tmp_path / "crashed", dataset, base_lm, **stage)
    crashed.logging.save_steps = 3
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_recording(crashed, monkeypatch, before_crash, callbacks=[CrashAfterSave(3)])
    # The loader reads one batch ahead, so the crashed run had read the room of step 4 too.
    assert before_crash[:3] == order[:3] and before_crash[3] == order[3]
    run_recording(crashed, monkeypatch, after_crash)  # the same call again: resumes from checkpoint-3
    assert after_crash == order[3:], (order, after_crash)  # no room lost or repeated
    done = json.loads((stage_dir(crashed, "1") / "stage_complete.json").read_text())
    assert done["global_step"] == 6
    a, b = saved_weights(stage_dir(straight, "1")), saved_weights(stage_dir(crashed, "1"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_yaml_errors_name_file_and_key(tmp_path):
    cases = {
        "stage2:\n  lora:\n    rnk: 4\n": "stage2.lora.rnk: unknown key",
        "stage1:\n  batch_size: two\n": "stage1.batch_size: expected an integer",
        "model:\n  point_encoder:\n    chanels: [8]\n": "model.point_encoder.chanels: unknown key",
        "data:\n  task: rooms\n": "data.task: must be one of",
        "stage1:\n  lora: {}\n": "stage1.lora: LoRA applies to stage 2 only",
        "learning_rate: 1\n": "learning_rate: unknown key",
        "model:\n  tiny_lm: {num_heads: 4, num_kv_heads: 3}\n": "model.tiny_lm.num_kv_heads: must be null or divide",
        "stage2:\n  adam_beta2: 1.0\n": "stage2.adam_beta2: must be in [0, 1)",
    }
    for text, message in cases.items():
        path = tmp_path / "run.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as error:
            load_config(path)
        assert str(path) in str(error.value) and message in str(error.value), text


def test_shipped_configs_load_and_fit_the_style_limit():
    for name in ("quickstart.yaml", "quickstart-token-branch.yaml", "qwen2.5-0.5b.yaml"):
        path = REPO / "configs" / name
        config = load_config(path)
        assert config.stage1.learning_rate > 0
        assert len(path.read_text().splitlines()) <= 60


def test_quickstart_yaml_matches_the_quickstart_defaults(tmp_path):
    from spacelm.quickstart import quickstart_config

    from_yaml = load_config(REPO / "configs" / "quickstart.yaml")
    in_code = quickstart_config(tmp_path, train_dir="data/quickstart/train", val_dir="data/quickstart/val",
                                stage1_minutes=from_yaml.stage1.time_limit_minutes,
                                stage2_minutes=from_yaml.stage2.time_limit_minutes)
    for part in ("model", "stage1", "stage2", "data", "validation"):
        assert getattr(from_yaml, part) == getattr(in_code, part), part


def test_the_token_branch_yaml_is_the_quickstart_with_token_branch_on_a_step_budget(tmp_path):
    from spacelm.quickstart import quickstart_config

    from_yaml = load_config(REPO / "configs" / "quickstart-token-branch.yaml")
    in_code = quickstart_config(tmp_path, train_dir="data/quickstart/train", val_dir="data/quickstart/val",
                                stage1_minutes=1.0, stage2_minutes=1.0, token_branch=True)
    for part in ("model", "data", "validation"):
        assert getattr(from_yaml, part) == getattr(in_code, part), part
    assert from_yaml.model.token_head_input == "branch" and "door" in from_yaml.model.token_labels
    for stage, steps in (("stage1", 258), ("stage2", 8000)):  # the run docs/training.md reports
        assert dataclasses.replace(getattr(from_yaml, stage), max_steps=-1, time_limit_minutes=1.0) == \
            getattr(in_code, stage), stage
        assert getattr(from_yaml, stage).max_steps == steps and getattr(from_yaml, stage).time_limit_minutes is None


def test_dataset_labels_only_the_answer_and_is_repeatable(dataset, base_lm):
    config = make_config("unused", dataset, base_lm)
    _, processor = initial_model(config, "1")
    rooms = LayoutDataset([dataset], processor, split="train", augment=config.data.augment, seed=3)
    example = rooms[1]
    ids, labels = example["input_ids"], example["labels"]
    start = next(i for i, label in enumerate(labels) if label != -100)
    assert all(label == -100 for label in labels[:start])
    assert labels[start:] == ids[start:]  # the whole answer and its end-of-turn token
    assert processor.point_token_id in ids[:start] and processor.point_token_id not in ids[start:]
    answer = processor.tokenizer.decode(ids[start:], skip_special_tokens=True)
    assert answer.startswith("wall_0=Wall(")
    assert rooms[1]["input_ids"] == ids  # the same (seed, epoch, index) gives the same example
    rooms.set_epoch(1)
    assert not np.array_equal(rooms[1]["point_features"], example["point_features"])
    assert len(LayoutDataset([dataset], processor, split="val")) == 2


def test_stage1_trains_the_token_head_and_stage2_keeps_it(tmp_path, dataset, base_lm):
    config = make_config(tmp_path, dataset, base_lm, stage1={"max_steps": 2}, stage2={"max_steps": 1})
    config.model.token_labels = ["wall", "door", "window"]
    set_seed(config.seed)
    initial, _ = initial_model(config, "1")
    train(config, "both", show_progress=False)
    first, second = saved_weights(stage_dir(config, "1")), saved_weights(stage_dir(config, "2"))
    assert first["token_head.weight"].shape == (3, 16)
    assert not torch.equal(first["token_head.weight"], initial.token_head.weight.detach())
    assert not torch.equal(second["token_head.weight"], first["token_head.weight"])


def test_a_stages_token_loss_weight_replaces_the_models_and_is_saved(tmp_path, dataset, base_lm):
    config = make_config(tmp_path, dataset, base_lm, stage1={"max_steps": 1}, stage2={"max_steps": 2})
    config.model.token_labels = ["wall", "door"]
    config.stage2.token_loss_weight = 0.0  # the head in stage 1 only
    train(config, "both", show_progress=False)
    first, second = (json.loads((stage_dir(config, s) / "config.json").read_text()) for s in "12")
    assert first["token_loss_weight"] == 1.0 and second["token_loss_weight"] == 0.0
    # At 0x the head gets a zero gradient, so AdamW (no weight decay) leaves it exactly as stage 1 saved it.
    head = "token_head.weight"
    assert torch.equal(saved_weights(stage_dir(config, "2"))[head], saved_weights(stage_dir(config, "1"))[head])


def test_a_stages_token_loss_window_holds_the_head_at_0x_outside_it(tmp_path, dataset, base_lm):
    config = make_config(tmp_path, dataset, base_lm, stage1={"max_steps": 1}, stage2={"max_steps": 4})
    config.model.token_labels = ["wall", "door"]
    config.stage2.token_loss_start_step = 1  # step 0 at 0x, steps 1 and 2 at the model's 1x, step 3 at 0x
    config.stage2.token_loss_stop_step = 3
    seen = []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen.append((model.config.token_loss_weight, model.token_head.weight.detach().clone()))

    train(config, "1", show_progress=False)
    stage1_head = saved_weights(stage_dir(config, "1"))["token_head.weight"]
    train(config, "2", callbacks=[Record()], show_progress=False)
    assert [weight for weight, _ in seen] == [0.0, 1.0, 1.0, 0.0]
    # At 0x the head gets a zero gradient, so AdamW (no weight decay) leaves it as stage 1 saved it.
    assert torch.equal(seen[0][1], stage1_head)
    assert not torch.equal(seen[1][1], stage1_head)
    assert json.loads((stage_dir(config, "2") / "config.json").read_text())["token_loss_weight"] == 1.0


def test_a_token_branch_trains_with_the_encoder_in_stage_1_and_is_saved(tmp_path, dataset, base_lm):
    config = make_config(tmp_path, dataset, base_lm, stage1={"max_steps": 1}, stage2={"max_steps": 1})
    config.model.token_labels = ["wall", "door"]
    config.model.token_head_input = "branch"
    config.model.token_branch = {"embed_dim": 8}
    set_seed(config.seed)  # as run_stage does before it builds stage 1's model
    initial = {k: v.clone() for k, v in initial_model(config, "1")[0].state_dict().items()}
    train(config, "1", show_progress=False)
    saved = saved_weights(stage_dir(config, "1"))
    assert json.loads((stage_dir(config, "1") / "config.json").read_text())["token_branch"]["embed_dim"] == 8
    lm_key = next(k for k in saved if k.startswith("language_model.") and k.endswith("q_proj.weight"))
    assert torch.equal(saved[lm_key], initial[lm_key])  # the same start, and stage 1 keeps the LM frozen...
    for key in ("token_branch.input_proj.weight", "marks_projector.weight", "token_head.weight",
                "point_encoder.input_proj.weight"):  # ...and trains the encoder side, the branch included
        assert not torch.equal(saved[key], initial[key]), key
    assert saved["token_branch.input_proj.weight"].shape == (8, 8 + 63)


def test_a_token_label_that_no_training_room_has_is_refused_before_a_step(tmp_path, dataset, base_lm):
    config = make_config(tmp_path, dataset, base_lm, stage1={"max_steps": 1})
    config.model.token_labels = ["wall", "dor"]  # a typo: the head would learn 0 for it everywhere
    stored = {box.label for i in range(4) for box in read_layout(dataset / "layout" / f"room{i}.txt").layout.boxes}
    with pytest.raises(DataError, match=r"model.token_labels: 'dor' in no training room of .*; the labels there") as e:
        train(config, "1", show_progress=False)
    assert all(label in str(e.value) for label in ["door", "wall", *stored])
    assert not (stage_dir(config, "1") / "stage_complete.json").exists()


def test_token_boxes_hold_the_whole_augmented_room_whatever_the_request(dataset, base_lm):
    config = make_config("unused", dataset, base_lm)
    _, processor = initial_model(config, "1")
    stored = read_layout(dataset / "layout" / "room0.txt").layout
    categories = sorted({box.label for box in stored.boxes})
    labels = ["wall", "door", "window", *categories]
    rooms = LayoutDataset([dataset], processor, split="train", task="arch", augment=config.data.augment, seed=3,
                          token_labels=labels)
    example = rooms[0]
    start = next(i for i, label in enumerate(example["labels"]) if label != -100)
    assert "=Bbox(" not in processor.tokenizer.decode(example["input_ids"][start:])  # an arch answer...
    kinds = example["token_boxes"][:, 0].astype(int)
    assert np.bincount(kinds, minlength=len(labels)).tolist() == [  # ...but targets for every element
        len(stored.walls), len(stored.doors), len(stored.windows),
        *[sum(box.label == c for box in stored.boxes) for c in categories]]
    # In the frame of the augmented cloud: every wall's box holds many of the cloud's voxels.
    voxels = example["point_coords"] + 0.5  # voxel centres, in voxel units
    for row in example["token_boxes"][kinds == 0]:
        inside = ((voxels > row[1:4]) & (voxels < row[4:7])).all(axis=1)
        assert inside.sum() > 50
    assert "token_boxes" not in LayoutDataset([dataset], processor, split="train")[0]


def test_fit_to_ranges_clips_with_a_warning_or_raises(caplog):
    layout = Layout(walls=[Wall(0.0, -0.05, 0.0, 4.0, -0.05, 0.0, 2.5, 0.0)])  # 5 cm below the cloud
    with caplog.at_level(logging.WARNING):
        fitted = fit_to_ranges(layout, np.array([0.0, 0.0, 0.0]), sample_id="room7")
    assert fitted.walls[0].ay == 0.0 and fitted.walls[0].by == 0.0
    assert "room7" in caplog.text and "0.050 m" in caplog.text
    with pytest.raises(ValueError, match="room7"):
        fit_to_ranges(layout, np.zeros(3), policy="error", sample_id="room7")


DDP_SCRIPT = textwrap.dedent("""
    import hashlib, sys
    import torch
    from transformers import TrainerCallback
    from spacelm.distributed import launched_run
    from spacelm.train.args import config_from_dict
    from spacelm.train.sft import train

    class Digest(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            h = hashlib.sha256()
            for name, p in sorted(model.state_dict().items()):
                h.update(name.encode()); h.update(p.detach().float().numpy().tobytes())
            rank = torch.distributed.get_rank()
            open(f"{sys.argv[1]}/rank{rank}.txt", "w").write(f"{h.hexdigest()} {state.global_step}")

    stage = {"learning_rate": 1e-2, "max_steps": 2, "batch_size": 1}
    config = config_from_dict({
        "output_dir": sys.argv[1],
        "model": {"base_lm": sys.argv[2],
                  "point_encoder": {"channels": [8, 8, 8, 8, 8], "embed_dim": 16, "num_bins": 640}},
        "data": {"train": [sys.argv[3]], "num_workers": 0},
        "stage1": stage, "stage2": stage, "validation": {"at_end": False},
        "logging": {"report_to": ["none"], "save_steps": 100}})
    with launched_run():  # as our entry points end a launched run
        train(config, "2" if len(sys.argv) > 4 else "1", callbacks=[Digest()], show_progress=False)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path, dataset, base_lm):
    # The slowest test here (two fresh interpreters, gloo): about 20-30 s on 2 cores.
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               str(script), str(tmp_path), str(base_lm), str(dataset)]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = ((tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1))
    assert rank0 == rank1 and rank0[1] == "2"
    assert (tmp_path / "stage1" / "model.safetensors").is_file()


def test_tiny_lm_shape_and_adam_beta2_reach_the_model_and_the_optimizer(tmp_path, dataset):
    config = make_config(tmp_path, dataset, "unused", stage1={"adam_beta2": 0.98})
    config.model.tiny_lm = TinyLMArgs(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2,
                                      intermediate_size=96, labels=["bed"])
    model, _ = initial_model(config, "1")
    layer = model.get_decoder().layers[0]
    assert layer.self_attn.k_proj.out_features == 32  # 2 kv heads of 16: no grouped-query attention
    assert layer.mlp.up_proj.out_features == 96
    args = training_arguments(config, "1", show_progress=False)
    optimizer = SpatialLMTrainer(model=model, args=args).create_optimizer()
    assert {group["betas"] for group in optimizer.param_groups} == {(0.9, 0.98)}
    default = save_tiny_base_lm(tmp_path / "default", hidden_size=32, num_layers=1, num_heads=2)
    lm_config = json.loads((default / "config.json").read_text())
    assert (lm_config["num_key_value_heads"], lm_config["intermediate_size"]) == (1, 64)


def test_stage2_lora_is_merged_into_a_plain_saved_model(tmp_path, dataset, base_lm):
    pytest.importorskip("peft")
    config = make_config(tmp_path, dataset, base_lm, stage2={"lora": {"rank": 4, "alpha": 8, "dropout": 0.0}})
    train(config, "both", show_progress=False)
    first, second = saved_weights(stage_dir(config, "1")), saved_weights(stage_dir(config, "2"))
    assert set(first) == set(second)  # no lora_A / lora_B / base_layer keys: the adapters were merged
    q_proj = next(k for k in first if "layers.0.self_attn.q_proj.weight" in k)
    assert not torch.equal(first[q_proj], second[q_proj])  # the merged update is in the LM weights
    norm = next(k for k in first if k.endswith("layers.0.input_layernorm.weight"))
    assert torch.equal(first[norm], second[norm])  # LoRA leaves the rest of the LM frozen


def test_cli_train_runs_one_stage_of_a_yaml_config(tmp_path, dataset, base_lm):
    import yaml
    from typer.testing import CliRunner

    from spacelm.cli.app import app
    from spacelm.train.args import config_to_dict

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(make_config(tmp_path / "unused", dataset, base_lm))))
    result = CliRunner().invoke(app, ["train", str(path), "--stage", "1", "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    done = json.loads((tmp_path / "run" / "stage1" / "stage_complete.json").read_text())
    assert done["global_step"] == 3
    assert not (tmp_path / "run" / "stage2").exists() and not (tmp_path / "unused").exists()


class LogRecorder(TrainerCallback):
    def __init__(self) -> None:
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_validation_logs_f1_and_the_cloud_gain_of_the_saved_model(tmp_path, dataset, base_lm):
    from spacelm.predict import load_model
    from spacelm.train.diagnostics import answer_loss

    config = make_config(tmp_path, dataset, base_lm)
    config.validation.at_end, config.validation.num_rooms, config.validation.max_new_tokens = True, 2, 4
    config.validation.cleanup = False
    recorder = LogRecorder()
    folder = train(config, "1", callbacks=[recorder], show_progress=False)["1"]
    logged = next(log for log in recorder.logs if "val/cloud_gain" in log)
    assert "val/f1@0.25/wall" in logged  # 4 tokens cannot close a wall: F1 0, but it is logged
    model, processor = load_model(folder, "cpu")
    val = LayoutDataset([dataset], processor, split="val")
    rooms = [val.room(i) for i in range(2)]
    own = answer_loss(model, processor, rooms)
    other = answer_loss(model, processor, rooms, [rooms[1][1], rooms[0][1]])
    assert logged["val/loss_own_cloud"] == pytest.approx(own, rel=1e-4)
    assert logged["val/cloud_gain"] == pytest.approx(other - own, abs=1e-4)


def test_answer_loss_is_the_models_loss_and_a_same_cloud_swap_changes_nothing(dataset, base_lm):
    from spacelm.model import SpatialLMForCausalLM
    from spacelm.train.diagnostics import answer_loss, cloud_reliance

    set_seed(0)
    model, processor = SpatialLMForCausalLM.from_base_lm(
        str(base_lm), point_config={"channels": [8, 8, 8, 8, 8], "embed_dim": 16, "num_bins": 640})
    rooms = [LayoutDataset([dataset], processor, split="train").room(i) for i in range(3)]
    # One batch of all three: the per-token mean equals the model's own loss on test-mode examples.
    examples = [processor.training_example(c.xyz, c.rgb, data_module.fit_to_ranges(
        data_module.fold_box_yaws(data_module.canonical_order(lay)), c.xyz.min(axis=0)), mode="test")
        for _, c, lay in rooms]
    with torch.no_grad():
        expected = model.eval()(**processor.collate(examples)).loss.item()
    assert answer_loss(model, processor, rooms, batch_size=3) == pytest.approx(expected, rel=1e-5)
    # Two rooms sharing one cloud: the swap hands each room the very cloud it had, so no gain at all.
    shared = [rooms[0], (rooms[1][0], rooms[0][1], rooms[1][2])]
    reliance = cloud_reliance(model, processor, shared)
    assert reliance.gain == pytest.approx(0.0, abs=1e-6) and reliance.rooms == 2
    assert cloud_reliance(model, processor, rooms).gain != pytest.approx(0.0, abs=1e-6)


def test_task_mix_draws_a_request_per_example_and_leaves_augmentation_alone(dataset, base_lm):
    config = make_config("unused", dataset, base_lm)
    _, processor = initial_model(config, "1")
    plain = LayoutDataset([dataset], processor, split="train", augment=config.data.augment, seed=3)
    mixed = LayoutDataset([dataset], processor, split="train", augment=config.data.augment, seed=3,
                          task_mix={"arch": 1.0, "all": 1.0})
    arch_only = LayoutDataset([dataset], processor, split="train", augment=config.data.augment, seed=3,
                              task_mix={"arch": 1.0})

    def request_and_answer(example):
        """(the request asks for boxes, the answer holds one)"""
        start = next(i for i, label in enumerate(example["labels"]) if label != -100)
        request = processor.tokenizer.decode(example["input_ids"][:start]).split("Detect ")[-1].split(".")[0]
        return "boxes" in request, "=Bbox(" in processor.tokenizer.decode(example["input_ids"][start:])

    seen = set()
    for epoch in range(4):
        for rooms in (plain, mixed, arch_only):
            rooms.set_epoch(epoch)
        for i in range(len(plain)):
            example, arch = mixed[i], arch_only[i]
            np.testing.assert_array_equal(example["point_features"], plain[i]["point_features"])
            assert request_and_answer(arch) == (False, False)  # walls, doors, windows asked and answered
            asks_boxes, has_boxes = request_and_answer(example)
            assert asks_boxes == has_boxes  # the answer holds what the request asks for
            seen.add(asks_boxes)
            assert mixed[i]["input_ids"] == example["input_ids"]  # repeatable per (seed, epoch, index)
    assert seen == {True, False}
    with pytest.raises(ConfigError, match="data.task_mix"):
        config_from_dict({"data": {"task_mix": {"arch": 1.0, "walls": 1.0}}})
