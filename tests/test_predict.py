"""spacelm predict on a tiny random model: the pipeline runs end to end and writes parseable files."""

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
from spacelm.predict import PredictConfig, RepeatedEntityStop, load_model, predict_clouds  # noqa: E402
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


def test_predict_cli_writes_parseable_layouts_and_resumes(model_dir, room_dir, tmp_path):
    runner = CliRunner()
    args = ["predict", "--model", str(model_dir), "--input", str(room_dir), "--output", str(tmp_path),
            "--greedy", "--max-new-tokens", "40", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "predicted 1" in result.output
    read_layout(tmp_path / "room0.txt", strict=True)  # whatever a random model says, the file is valid
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "skipped 1" in again.output


def test_predictions_come_back_in_the_input_frame(model_dir):
    model, processor = load_model(model_dir, "cpu")
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 3, size=(3000, 3)).astype(np.float32) + np.float32(100.0)  # far from origin
    cloud = PointCloud(xyz, rng.integers(0, 256, (3000, 3), dtype=np.uint8))
    config = PredictConfig(do_sample=False, max_new_tokens=30, cleanup=False)
    (pred,) = predict_clouds(model, processor, [cloud], config)
    for box in pred.layout.boxes:  # whatever was parsed is shifted back by the cloud's minimum
        assert box.x >= 100.0 - 1e-6
    assert isinstance(pred.text, str)


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
