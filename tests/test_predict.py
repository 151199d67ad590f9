"""spacelm predict on a tiny random model: the pipeline runs end to end and writes parseable files."""

import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from spacelm.cli.app import app  # noqa: E402
from spacelm.datasets.synthetic import SynthConfig, synth_room  # noqa: E402
from spacelm.model import SpatialLMForCausalLM  # noqa: E402
from spacelm.model.tiny import save_tiny_base_lm  # noqa: E402
from spacelm.points import PointCloud, write_ply  # noqa: E402
from spacelm.predict import (  # noqa: E402
    PredictConfig,
    RepeatedEntityStop,
    load_model,
    predict_clouds,
    predict_files,
)
from spacelm.scene.language import read_layout  # noqa: E402

POINT_CONFIG = {"channels": [8, 8, 16, 16, 32], "embed_dim": 32, "num_bins": 640}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    base = save_tiny_base_lm(tmp_path_factory.mktemp("base"))
    torch.manual_seed(0)
    model, processor = SpatialLMForCausalLM.from_base_lm(base, point_config=POINT_CONFIG)
    out = tmp_path_factory.mktemp("model")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def room_dir(tmp_path_factory):
    room = synth_room(0, SynthConfig(density=200))
    folder = tmp_path_factory.mktemp("clouds")
    write_ply(folder / "room0.ply", PointCloud(room.xyz, room.rgb))
    return folder


class ScriptedHead(torch.nn.Module):
    """An LM head that makes every generate call write ``script`` (token ids, then end of text).

    A ``None`` entry is a free choice: the logits are flat over ``choices``, so sampling picks one from
    the seeded RNG. ``step`` must restart at 0 with each generate call (``script_model`` sees to it).
    """

    def __init__(self, head, script: list[int | None], choices: list[int], eos: int):
        super().__init__()
        self.head, self.script, self.choices, self.eos, self.step = head, script, choices, eos, 0

    def forward(self, hidden):
        logits = self.head(hidden)  # (B, L, V); the last position picks the next token
        token = self.script[self.step] if self.step < len(self.script) else self.eos
        forced = torch.full_like(logits[:, -1], -1e4)
        forced[:, self.choices if token is None else [token]] = 0.0
        logits[:, -1] = forced
        self.step += 1
        return logits


def script_model(model, processor, text: str):
    """Make ``model`` write ``text``; each ``?`` in it is a digit drawn by the sampler."""
    tok = processor.tokenizer
    tokens = tok.tokenize(text.replace("?", "0"))  # digits are single tokens
    pieces, at = [], 0  # the text each token stands for, "?" kept
    for token in tokens:
        length = len(tok.convert_tokens_to_string([token]))
        pieces.append(text[at:at + length])
        at += length
    script = [None if piece == "?" else tok.convert_tokens_to_ids(token) for piece, token in zip(pieces, tokens)]
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
    head = ScriptedHead(model.language_model.lm_head, script, digits, tok.eos_token_id)
    model.language_model.lm_head = head
    generate = model.generate

    def reset_then_generate(*args, **kwargs):
        head.step = 0
        return generate(*args, **kwargs)

    model.generate = reset_then_generate
    return model


BED = "bbox_0=Bbox(bed,105,120,10,0,20,20,10)\n"  # bins of 5 cm: centre (5.275, 6.025, 0.525) m


@pytest.fixture
def scripted(monkeypatch):
    """``predict_files`` loads models that write ``scripted["text"]`` (a test may change it)."""
    import spacelm.predict as predict_module

    load = predict_module.load_model
    state = {"text": BED}

    def load_scripted(*args, **kwargs):
        model, processor = load(*args, **kwargs)
        return script_model(model, processor, state["text"]), processor

    monkeypatch.setattr(predict_module, "load_model", load_scripted)
    return state


def test_predict_cli_writes_layouts_reports_bad_clouds_and_resumes(model_dir, room_dir, tmp_path, scripted):
    clouds = tmp_path / "clouds"
    clouds.mkdir()
    (clouds / "room0.ply").write_bytes((room_dir / "room0.ply").read_bytes())
    rng = np.random.default_rng(0)
    floor = np.c_[rng.uniform(0, 4, (3000, 2)), np.zeros(3000)]  # flat: check_alignment's height is 0
    write_ply(clouds / "flat.ply", PointCloud(floor))
    write_ply(clouds / "huge.ply", PointCloud(floor * [12.5, 1, 1]))  # 50 m long: beyond the 32 m grid
    (clouds / "empty.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\n"
                                       b"property float y\nproperty float z\nend_header\n")
    (clouds / "folder.ply").mkdir()  # unreadable: not a file
    out = tmp_path / "out"
    args = ["predict", "--model", str(model_dir), "--input", str(clouds), "--output", str(out),
            "--greedy", "--max-new-tokens", "60", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output  # three inputs failed, the run went on
    assert "predicted 2" in result.output and "failed 3" in result.output
    assert "folder.ply: [Errno 21] Is a directory" in result.output
    assert "empty.ply: empty point cloud" in result.output
    assert "huge.ply: point cloud spans" in result.output
    assert "flat.ply: the scan has no height" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["flat.txt", "room0.txt"]
    for name in ("flat", "room0"):
        (box,) = read_layout(out / f"{name}.txt", strict=True).layout.boxes
        assert box.label == "bed" and box.scale_x == pytest.approx(20.5 * 20 / 640, abs=1e-3)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "skipped 2" in again.output and "failed 3" in again.output


def test_predictions_come_back_in_the_input_frame(model_dir):
    model, processor = load_model(model_dir, "cpu")
    script_model(model, processor, BED)
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 3, size=(3000, 3)).astype(np.float32) + np.float32(100.0)  # far from origin
    cloud = PointCloud(xyz, rng.integers(0, 256, (3000, 3), dtype=np.uint8))
    config = PredictConfig(do_sample=False, max_new_tokens=30, cleanup=False)
    (pred,) = predict_clouds(model, processor, [cloud], config)
    assert pred.text == BED.strip()
    (box,) = pred.layout.boxes  # the scripted box, shifted back by the cloud's minimum corner
    low = xyz.min(axis=0).astype(np.float64)
    assert (box.x, box.y, box.z) == pytest.approx((low[0] + 5.275, low[1] + 6.025, low[2] + 0.525))


def test_resumed_sampled_run_writes_what_an_uninterrupted_one_does(model_dir, tmp_path, scripted):
    scripted["text"] = "bbox_0=Bbox(bed,1??,120,10,0,20,20,10)\n"  # x bin sampled: 100-199
    rng = np.random.default_rng(0)
    inputs = []
    for i in range(4):
        inputs.append(tmp_path / f"room{i}.ply")
        write_ply(inputs[-1], PointCloud(rng.uniform(0, 3, (500, 3))))
    config = PredictConfig(max_new_tokens=60, cleanup=False)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    predict_files(model_dir, inputs, whole, config, device="cpu", seed=7)
    predict_files(model_dir, inputs[:2], resumed, config, device="cpu", seed=7)  # "killed" after 2
    summary = predict_files(model_dir, inputs, resumed, config, device="cpu", seed=7)
    assert summary["skipped"] == 2 and summary["predicted"] == 2
    texts = {name: (whole / f"room{name}.txt").read_text() for name in range(4)}
    assert len(set(texts.values())) > 1  # the seed decides the sampled bins
    assert all((resumed / f"room{name}.txt").read_text() == text for name, text in texts.items())


def test_repeated_entity_stop(model_dir):
    _, processor = load_model(model_dir, "cpu")
    tok = processor.tokenizer
    prompt = tok("<|im_start|>assistant\n")["input_ids"]

    def stops(text: str) -> bool:
        ids = torch.tensor([prompt + tok(text)["input_ids"]])
        return bool(RepeatedEntityStop(tok, len(prompt))(ids, None)[0])

    assert stops("wall_0=Wall(1,2,3,4,5,6,7,0)\nwall_1=Wall(1,2,3,4,5,6,7,0)\n")
    assert not stops("wall_0=Wall(1,2,3,4,5,6,7,0)\nwall_1=Wall(1,2,3,4,5,9,7,0)\n")
    assert not stops("wall_0=Wall(1,2,3,4,5,6,7,0)\nwall_1=Wall(1,2,3,4,5,6,7,0")  # no newline yet


class FavourToken(torch.nn.Module):
    """An LM head that adds a large logit to one token, so greedy decoding would pick it every step."""

    def __init__(self, head, token_id):
        super().__init__()
        self.head, self.token_id = head, token_id

    def forward(self, hidden):
        logits = self.head(hidden)
        logits[..., self.token_id] += 1e4
        return logits


def test_point_tokens_are_never_generated(model_dir, monkeypatch):
    model, processor = load_model(model_dir, "cpu")
    monkeypatch.setattr(model.language_model, "lm_head",
                        FavourToken(model.language_model.lm_head, processor.point_token_id))
    rng = np.random.default_rng(1)
    cloud = PointCloud(rng.uniform(0, 3, (2000, 3)).astype(np.float32), None)
    config = PredictConfig(do_sample=False, max_new_tokens=12, cleanup=False)
    (pred,) = predict_clouds(model, processor, [cloud], config)
    generated = processor.tokenizer(pred.text, add_special_tokens=False)["input_ids"]
    # Point tokens are special (dropped from the text): unsuppressed, the text would be empty.
    assert generated and processor.point_token_id not in generated


def test_generation_emits_no_future_warning(model_dir):
    # transformers renamed the LM's ``past_key_values`` argument to ``cache``; passing the old name
    # printed a FutureWarning on every decoding step (shown once per predicted batch).
    model, processor = load_model(model_dir, "cpu")
    rng = np.random.default_rng(2)
    clouds = [PointCloud(rng.uniform(0, 3, (2000, 3)).astype(np.float32), None) for _ in range(2)]
    config = PredictConfig(do_sample=False, max_new_tokens=6, cleanup=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_clouds(model, processor, clouds, config)
    assert [str(w.message) for w in caught if issubclass(w.category, FutureWarning)] == []
