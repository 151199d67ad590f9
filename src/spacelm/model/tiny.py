"""A tiny base language model made offline: for tests, the CPU quickstart and smoke runs.

No model hub is needed: a byte-level BPE tokenizer is trained on the layout language itself (digits
split one per token, as Qwen2 does, and a ChatML template), and a randomly initialised Qwen2 of the
requested width is saved next to it. ``SpatialLMForCausalLM.from_base_lm`` then treats the folder
exactly like a real checkpoint such as Qwen2.5-0.5B-Instruct.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from spacelm.scene.entities import Box, Door, Wall, Window
from spacelm.scene.language import TASKS, format_layout, task_instruction
from spacelm.scene.layout import Layout
from spacelm.scene.quantize import Quantizer

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tiny_tokenizer(vocab_size: int = 1000, labels: list[str] | tuple[str, ...] = (),
                   corpus: Sequence[str] = (), number_tokens: int = 0) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on prompts and layout text (plus ``labels``) in seconds.

    The corpus holds every prompt and a few lines of each entity type and label, so the code template,
    keywords and labels become single tokens: a tiny model's step cost grows with sequence length.
    A non-empty ``corpus`` (e.g. arrange prompts and answers) replaces it.

    ``number_tokens=N`` makes each integer ``0..N-1`` one token (Pix2Seq's choice, N = the layout's bin
    count), so a coordinate is one prediction and an answer about half as long; 0 keeps one token per
    digit, as Qwen2 and every real LM here. The text is the same either way: only the ids differ.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\d"), behavior="isolated"),  # one token per digit, as Qwen2
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    example = Layout(walls=[Wall(0, 0, 0, 4, 0, 0, 2.5, 0)] * 3, doors=[Door(0, 1, 0, 1, 0.9, 2)] * 2,
                     windows=[Window(0, 3, 0, 1.5, 1, 1)] * 2,
                     boxes=[Box(label or "bed", 2, 1, 0.3, 0, 2, 1.6, 0.6) for label in labels or ["bed"]])
    texts = list(corpus) or [task_instruction(task) for task in TASKS] + [
        format_layout(example, Quantizer(1280))]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts if corpus else texts * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    if number_tokens:
        # Added tokens match longest-first before the BPE, so "345" is one token, never "3", "4", "5";
        # integers of the layout language are below the bin count, so no digit run is ever split.
        fast.add_tokens([str(i) for i in range(number_tokens)])
    return fast


def save_tiny_base_lm(path: str | os.PathLike, *, hidden_size: int = 64, num_layers: int = 2,
                      num_heads: int = 4, num_kv_heads: int | None = None, intermediate_size: int | None = None,
                      labels: list[str] | tuple[str, ...] = (), seed: int = 0,
                      corpus: Sequence[str] = (), vocab_size: int = 1000, number_tokens: int = 0,
                      fourier_numbers: bool = False) -> Path:
    """Write a random Qwen2 causal LM + tokenizer to ``path``, loadable with ``from_pretrained``.

    ``num_kv_heads`` defaults to half the heads (grouped-query attention, as Qwen2.5), ``intermediate_size``
    to twice the width; ``number_tokens`` as in ``tiny_tokenizer``. ``fourier_numbers`` starts the number
    tokens' (tied) embeddings as ``number_embeddings``: nearby bins alike instead of unrelated."""
    path = Path(path)
    tokenizer = tiny_tokenizer(vocab_size, labels=labels, corpus=corpus, number_tokens=number_tokens)
    torch.manual_seed(seed)
    num_kv_heads = max(1, num_heads // 2) if num_kv_heads is None else num_kv_heads
    intermediate_size = 2 * hidden_size if intermediate_size is None else intermediate_size
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                         num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
                         intermediate_size=intermediate_size, tie_word_embeddings=True,
                         max_position_embeddings=8192,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = Qwen2ForCausalLM(config)
    if fourier_numbers and number_tokens:
        ids = tokenizer.convert_tokens_to_ids([str(i) for i in range(number_tokens)])
        with torch.no_grad():
            weight = model.get_input_embeddings().weight  # (V, H), tied to the output head
            weight[ids] = number_embeddings(number_tokens, hidden_size, std=config.initializer_range)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def number_embeddings(count: int, width: int, *, std: float, num_freqs: int = 16) -> torch.Tensor:
    """``(count, width)`` rows for the integers ``0..count-1``: a random projection of their Fourier
    features (sin and cos at ``num_freqs`` octaves from one period over the range to ~2 bins), scaled
    to ``std`` per element like the other rows.

    With one token per bin, a random embedding per bin leaves the model to learn from data that bin 123
    is next to 124; here their rows start close (their dot product falls off with distance), so a
    prediction one bin off is a near miss from the first step. FoNE's idea (Fourier number embeddings),
    used here as an initialisation only.
    """
    values = torch.arange(count, dtype=torch.float64) / count  # (count,) in [0, 1)
    freqs = 2.0 ** torch.linspace(0, math.log2(count / 2), num_freqs, dtype=torch.float64)  # (F,)
    angles = 2 * math.pi * values[:, None] * freqs[None, :]  # (count, F)
    features = torch.cat([angles.sin(), angles.cos()], dim=1)  # (count, 2F)
    projection = torch.randn(2 * num_freqs, width, dtype=torch.float64)  # (2F, width)
    rows = features @ projection
    return (rows * (std / rows.std())).float()
