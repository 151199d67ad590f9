"""The offline tiny tokenizer: digits one per token by default, or one token per layout bin."""

from spacelm.datasets.synthetic import BOX_LABELS, room_seed, synth_layout
from spacelm.model.tiny import tiny_tokenizer
from spacelm.scene.language import format_layout
from spacelm.scene.layout import translate
from spacelm.scene.quantize import Quantizer


def test_bin_tokens_make_each_integer_one_token_and_keep_the_text():
    digits = tiny_tokenizer(labels=BOX_LABELS)
    bins = tiny_tokenizer(labels=BOX_LABELS, number_tokens=640)
    assert len(bins) - len(digits) == 630  # "0".."9" were already tokens
    for value in (0, 7, 10, 99, 345, 639):
        assert len(bins.encode(str(value))) == 1
    assert [digits.decode([i]) for i in digits.encode("345")] == ["3", "4", "5"]
    text = format_layout(translate(synth_layout(room_seed(2, 0)).layout, (3.0, 3.0, 0.0)), Quantizer(640))
    ids = bins.encode(text)
    assert bins.decode(ids) == text  # the same layout language, other ids
    numbers = sum(part.isdigit() for line in text.splitlines() for part in line.replace("(", ",").split(","))
    # one token less per extra digit of every number: at least a quarter shorter on a furnished room
    assert len(ids) <= 0.8 * len(digits.encode(text)) and numbers > 20


def test_fourier_number_rows_start_alike_for_nearby_bins(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from spacelm.model.tiny import number_embeddings, save_tiny_base_lm

    rows = torch.nn.functional.normalize(number_embeddings(640, 64, std=0.02), dim=1)
    cosine = rows @ rows.T  # (640, 640)
    near, far = cosine.diagonal(1).mean(), cosine.diagonal(100).mean()
    assert near > 0.5 and abs(far) < 0.2
    path = save_tiny_base_lm(tmp_path, hidden_size=64, num_layers=1, number_tokens=64, fourier_numbers=True)
    weight = AutoModelForCausalLM.from_pretrained(path).get_input_embeddings().weight.detach()
    ids = AutoTokenizer.from_pretrained(path).convert_tokens_to_ids(["10", "11", "40"])
    row = torch.nn.functional.normalize(weight[ids], dim=1)
    assert row[0] @ row[1] > row[0] @ row[2] + 0.3  # saved as built: 10 is closer to 11 than to 40
