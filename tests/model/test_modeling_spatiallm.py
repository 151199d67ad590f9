"""SpatialLM config, model and processor on a tiny random model built offline.

The base LM is a 2-layer Qwen2 (hidden 64) with a byte-level BPE tokenizer trained here on the layout
alphabet, digits split one per token as in Qwen2, and a ChatML template; ``from_base_lm`` turns it into
a SpatialLM with a small encoder at 640 bins (5 cm voxels, 80 cm token cells).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

from transformers import (  # noqa: E402
    AutoModelForCausalLM,
)

from spacelm.model import SpatialLMConfig, SpatialLMForCausalLM, SpatialLMProcessor  # noqa: E402
from spacelm.model.modeling_spatiallm import POINT_PAD_TOKEN  # noqa: E402
from spacelm.model.tiny import save_tiny_base_lm  # noqa: E402
from spacelm.scene.entities import Box, Wall  # noqa: E402
from spacelm.scene.language import format_layout  # noqa: E402
from spacelm.scene.layout import Layout, translate  # noqa: E402
from spacelm.scene.quantize import Quantizer  # noqa: E402

POINT_CONFIG = {"channels": [8, 8, 16, 16, 32], "embed_dim": 32, "num_bins": 640}
# Positions at 5 cm bin centres, so shifting there and back cannot cross a bin edge.
LAYOUT = Layout(walls=[Wall(0.025, 0.025, 0.025, 4.025, 0.025, 0.025, 2.5, 0.0)],
                boxes=[Box("bed", 2.025, 1.525, 0.325, 0.0, 2.0, 1.6, 0.6)])


@pytest.fixture(scope="module")
def base_lm_dir(tmp_path_factory):
    """A tiny random Qwen2 checkpoint + tokenizer, as from_base_lm expects of Qwen2.5-0.5B-Instruct."""
    return save_tiny_base_lm(tmp_path_factory.mktemp("base_lm"))


@pytest.fixture(scope="module")
def model_and_processor(base_lm_dir):
    torch.manual_seed(0)
    model, processor = SpatialLMForCausalLM.from_base_lm(base_lm_dir, point_config=POINT_CONFIG)
    return model.eval(), processor


def _room(n: int, size, seed: int):
    """A uniform cloud in a box away from the origin (the positive shift must move it back)."""
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(0.0, size, size=(n, 3)).astype(np.float32) + np.float32(5.0)
    rgb = rng.integers(0, 256, size=(n, 3)).astype(np.uint8)
    return xyz, rgb


BIG, SMALL = _room(1000, (4.0, 3.0, 2.5), seed=1), _room(300, (1.5, 1.0, 1.0), seed=2)


def _greedy(model, inputs, n: int = 6, **kwargs) -> torch.Tensor:
    out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False, **kwargs)
    return out[:, inputs["input_ids"].shape[1]:]


def test_config_round_trip_and_validation(tmp_path):
    cfg = SpatialLMConfig(text_config={"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 40},
                          point_config=POINT_CONFIG, projector="mlp", point_token_id=7)
    cfg.save_pretrained(tmp_path)
    loaded = SpatialLMConfig.from_pretrained(tmp_path)
    assert type(loaded.text_config).__name__ == "LlamaConfig"  # any causal LM, not only Qwen2
    assert (loaded.num_bins, loaded.projector, loaded.point_token_id) == (640, "mlp", 7)
    assert loaded.point_config["channels"] == [8, 8, 16, 16, 32]
    # Any causal LM composes: a Llama LM with the MLP projector runs on a one-cloud batch.
    model = SpatialLMForCausalLM(loaded)
    assert [type(m).__name__ for m in model.projector] == ["Linear", "GELU", "Linear"]
    points = {"point_coords": torch.tensor([[0, 0, 0], [40, 3, 2]]), "point_features": torch.zeros(2, 6),
              "point_batch": torch.tensor([0, 0])}  # cells (0,0,0) and (2,0,0): two tokens
    out = model(input_ids=torch.tensor([[1, 7, 7, 2]]), **points)
    assert out.logits.shape == (1, 4, 40)
    with pytest.raises(ValueError, match="projector"):
        SpatialLMConfig(projector="conv")
    with pytest.raises(TypeError):  # a typo in the encoder config is not dropped silently
        SpatialLMConfig(point_config={"num_binz": 640})


def test_pad_tokens_equal_encoder_tokens(model_and_processor):
    model, processor = model_and_processor
    batch = processor([BIG, SMALL])
    inputs = batch.inputs
    coords = torch.cat([inputs["point_batch"][:, None], inputs["point_coords"]], dim=1)
    counts = model.point_encoder(coords, inputs["point_features"]).counts
    pads = (inputs["input_ids"] == model.config.point_token_id).sum(dim=1)
    assert pads.tolist() == counts.tolist()
    # 640 bins over 32 m: 5 cm voxels, 80 cm token cells; the shifted 4 x 3 x 2.5 m room spans at most
    # 5 x 4 x 4 = 80 cells (its thin top layer, 10 cm, may miss a few).
    assert 70 <= counts[0] <= 80 and counts[1] < counts[0]
    # The shift offset is the cloud minimum (about 5 m on every axis).
    np.testing.assert_allclose(batch.offsets[0], BIG[0].min(axis=0), rtol=0, atol=1e-6)
    # One <|point_start|> ... <|point_end|> span, pads contiguous inside it, prompt in the chat template.
    ids = inputs["input_ids"][0][inputs["attention_mask"][0].bool()].tolist()
    start, end = ids.index(model.config.point_start_token_id), ids.index(model.config.point_end_token_id)
    assert set(ids[start + 1:end]) == {model.config.point_token_id} and end - start - 1 == counts[0]
    text = processor.tokenizer.decode(ids[:start + 1])
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\n<|point_start|>")


def test_save_load_round_trip_same_logits(model_and_processor, tmp_path):
    model, processor = model_and_processor
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    # No trust_remote_code: importing spacelm.model registered the classes with the Auto factories.
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    loaded_processor = SpatialLMProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, SpatialLMForCausalLM)
    inputs = processor([BIG]).inputs
    reloaded_inputs = loaded_processor([BIG]).inputs
    for key in inputs:
        assert torch.equal(inputs[key], reloaded_inputs[key]), key
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, loaded(**inputs).logits)


def test_generation_with_and_without_cache_agree(model_and_processor):
    model, processor = model_and_processor
    inputs = processor([SMALL]).inputs
    cached = _greedy(model, inputs, use_cache=True)
    uncached = _greedy(model, inputs, use_cache=False)
    assert cached.shape == (1, 6)
    assert torch.equal(cached, uncached)


def test_decoding_step_with_points_reuses_the_cache(model_and_processor):
    model, processor = model_and_processor
    inputs = processor([SMALL]).inputs
    points = {key: inputs[key] for key in ("point_coords", "point_features", "point_batch")}
    with torch.no_grad():
        prefill = model(**inputs, use_cache=True)
        step = {"input_ids": prefill.logits[:, -1:].argmax(-1),
                "attention_mask": torch.ones(1, inputs["input_ids"].shape[1] + 1, dtype=torch.long)}
        cache = prefill.past_key_values
        # Points passed again on a decoding step (a resumed generate) are already in the cache: no error,
        # same logits as without them.
        with_points = model(**step, **points, past_key_values=copy.deepcopy(cache)).logits
        without = model(**step, past_key_values=cache).logits
    torch.testing.assert_close(with_points, without)


def test_encoder_runs_only_on_prefill(model_and_processor, monkeypatch):
    model, processor = model_and_processor
    calls = []
    original = model.point_encoder.forward
    monkeypatch.setattr(model.point_encoder, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    _greedy(model, processor([SMALL]).inputs, n=4)
    assert len(calls) == 1


def test_batch_matches_single_samples(model_and_processor):
    model, processor = model_and_processor
    # Right padding (training layout): per-sample logits over the real tokens match each cloud alone.
    batch = processor([BIG, SMALL], padding_side="right").inputs
    with torch.no_grad():
        logits = model(**batch).logits
        for row, cloud in enumerate([BIG, SMALL]):
            alone = processor([cloud]).inputs
            n = alone["input_ids"].shape[1]
            torch.testing.assert_close(logits[row, :n], model(**alone).logits[0], atol=1e-4, rtol=1e-4)
    # Left padding (generation): generate derives positions from the mask, so tokens match too.
    together = _greedy(model, processor([BIG, SMALL], padding_side="left").inputs)
    for row, cloud in enumerate([BIG, SMALL]):
        assert torch.equal(together[row], _greedy(model, processor([cloud]).inputs)[0])


def test_mismatched_pad_count_raises(model_and_processor):
    model, processor = model_and_processor
    inputs = processor([SMALL]).inputs
    ids = inputs["input_ids"]
    first_pad = int((ids[0] == model.config.point_token_id).nonzero()[0])
    short = {**inputs, "input_ids": torch.cat([ids[:, :first_pad], ids[:, first_pad + 1:]], dim=1),
             "attention_mask": inputs["attention_mask"][:, 1:]}
    with pytest.raises(ValueError, match="point_pad"):
        model(**short)
    # Points for a sample index the text batch does not have.
    with pytest.raises(ValueError, match="sample index"):
        model(**{**inputs, "point_batch": torch.ones_like(inputs["point_batch"])})


def test_labels_cover_only_the_answer(model_and_processor):
    model, processor = model_and_processor
    # The layout lives in the cloud's frame (cloud minimum ~5 m); the answer is written after the shift.
    layout = translate(LAYOUT, BIG[0].min(axis=0))
    example = processor.training_example(*BIG, layout, mode="train", rng=np.random.default_rng(0))
    ids, labels = example["input_ids"], example["labels"]
    n_prompt = sum(label == -100 for label in labels)
    assert all(label == -100 for label in labels[:n_prompt]) and labels[n_prompt:] == ids[n_prompt:]
    answer = processor.tokenizer.decode(ids[n_prompt:-1])
    assert answer == format_layout(LAYOUT, Quantizer(640))  # shifted back to the room's own frame
    assert ids[-1] == processor.tokenizer.eos_token_id
    assert ids[:n_prompt].count(model.config.point_token_id) > 0

    batch = processor.collate([example, processor.training_example(*SMALL, Layout(), mode="train")])
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    with torch.no_grad():
        out = model(**batch)
    logits, targets = out.logits[:, :-1], batch["labels"][:, 1:]  # next-token prediction
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    torch.testing.assert_close(out.loss, expected)


def test_decode_layout_undoes_the_shift(model_and_processor):
    _, processor = model_and_processor
    offset = processor([BIG]).offsets[0]  # about (5, 5, 5) m: the cloud's minimum
    # The model answers in the shifted frame; LAYOUT stands for that answer here.
    result = processor.decode_layout(processor.answer_ids(LAYOUT), offset)
    assert not result.diagnostics
    # Decoding returns bin centres (at most half a 5 cm bin off) moved back by the offset.
    wall, box = result.layout.walls[0], result.layout.boxes[0]
    np.testing.assert_allclose([wall.ax, wall.bx, box.x, box.y], [0.025 + offset[0], 4.025 + offset[0],
                               2.025 + offset[0], 1.525 + offset[1]], atol=0.025 + 1e-6, rtol=0)
    assert box.label == "bed"


def test_bf16_keeps_encoder_float32(model_and_processor, tmp_path):
    model, processor = model_and_processor
    model.save_pretrained(tmp_path)
    inputs = processor([SMALL]).inputs
    for bf16 in (SpatialLMForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16),
                 SpatialLMForCausalLM.from_pretrained(tmp_path).to(torch.bfloat16)):
        assert {p.dtype for p in bf16.point_encoder.parameters()} == {torch.float32}
        assert bf16.language_model.dtype == torch.bfloat16
        with torch.no_grad():
            logits = bf16(**inputs).logits
        assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


def test_sampling_several_sequences_repeats_clouds(model_and_processor):
    model, processor = model_and_processor
    inputs = processor([BIG, SMALL]).inputs
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=True, num_return_sequences=2)
    assert out.shape == (4, inputs["input_ids"].shape[1] + 3)


def test_processor_rejects_bad_clouds(model_and_processor):
    _, processor = model_and_processor
    wide = np.array([[0.0, 0.0, 0.0], [40.0, 1.0, 1.0]])  # 40 m: beyond 640 bins x 5 cm
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="32 m"):
        processor.preprocess_points(wide)
    with pytest.raises(ValueError, match="rgb"):
        processor.preprocess_points(np.zeros((4, 3)), np.zeros((3, 3), np.uint8))
    assert processor.tokenizer.convert_tokens_to_ids(POINT_PAD_TOKEN) == processor.point_token_id


def test_request_without_reference_code_is_short_and_saved(model_and_processor, tmp_path):
    _, processor = model_and_processor
    short = SpatialLMProcessor(processor.tokenizer, num_bins=640, reference_code=False)
    long_ids, short_ids = processor.prompt_ids(3), short.prompt_ids(3)
    text = short.tokenizer.decode(short_ids)
    assert text.count(POINT_PAD_TOKEN) == 3
    assert "Detect walls, doors, windows, boxes.<|im_end|>" in text and "dataclass" not in text
    assert "dataclass" in processor.tokenizer.decode(long_ids)
    assert len(long_ids) - len(short_ids) > 200  # the code template is most of SpatialLM's prompt
    short.save_pretrained(tmp_path)
    loaded = SpatialLMProcessor.from_pretrained(tmp_path)
    assert loaded.reference_code is False and loaded.prompt_ids(3) == short_ids
