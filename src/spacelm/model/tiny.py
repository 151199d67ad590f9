"""A tiny base language model made offline: for tests, the CPU quickstart and smoke runs.

No model hub is needed: a byte-level BPE tokenizer is trained on the layout language itself (digits
split one per token, as Qwen2 does, and a ChatML template), and a randomly initialised Qwen2 of the
requested width is saved next to it. ``SpatialLMForCausalLM.from_base_lm`` then treats the folder
exactly like a real checkpoint such as Qwen2.5-0.5B-Instruct.
"""

from __future__ import annotations

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
                   corpus: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on prompts and layout text (plus ``labels``) in seconds.

    The corpus holds every prompt and a few lines of each entity type and label, so the code template,
    keywords and labels become single tokens: a tiny model's step cost grows with sequence length.
    A non-empty ``corpus`` (e.g. arrange prompts and answers) replaces it.
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
    return fast


def save_tiny_base_lm(path: str | os.PathLike, *, hidden_size: int = 64, num_layers: int = 2,
                      num_heads: int = 4, num_kv_heads: int | None = None, intermediate_size: int | None = None,
                      labels: list[str] | tuple[str, ...] = (), seed: int = 0,
                      corpus: Sequence[str] = (), vocab_size: int = 1000) -> Path:
    """Write a random Qwen2 causal LM + tokenizer to ``path``, loadable with ``from_pretrained``.

    ``num_kv_heads`` defaults to half the heads (grouped-query attention, as Qwen2.5), ``intermediate_size``
    to twice the width."""
    path = Path(path)
    tokenizer = tiny_tokenizer(vocab_size, labels=labels, corpus=corpus)
    torch.manual_seed(seed)
    num_kv_heads = max(1, num_heads // 2) if num_kv_heads is None else num_kv_heads
    intermediate_size = 2 * hidden_size if intermediate_size is None else intermediate_size
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                         num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
                         intermediate_size=intermediate_size, tie_word_embeddings=True,
                         max_position_embeddings=8192,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
