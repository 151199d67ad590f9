"""Completions of arrange tasks from a Hugging Face causal LM: what ``spacelm arrange eval --model`` scores.

Text only: the prompt is ``build_messages(task, image=False)`` through the tokenizer's chat template.
Vision-language models with their room images are generated with their own stack and scored with
``--completions``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

from spacelm.arrange.config import read_policy_info
from spacelm.arrange.prompts import build_messages
from spacelm.arrange.task import ArrangeTask, CompletionRecord
from spacelm.errors import ArgumentError
from spacelm.io import atomic_write_text


def generate_completions(model_path: str | os.PathLike, tasks: Sequence[ArrangeTask], *, samples: int = 1,
                         max_new_tokens: int = 1024, temperature: float = 1.0, top_p: float = 1.0,
                         batch_size: int = 4, seed: int = 0, device: str = "auto",
                         on_batch: Callable[[int], None] | None = None) -> list[CompletionRecord]:
    """``samples`` completions per task (sampled at ``temperature``; 0: greedy, then ``samples`` must be 1).

    A policy trained by ``spacelm arrange sft|train`` gets the prompt style it was trained with.

    ``on_batch(n)`` is called after each generate call with the number of completions it made.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if samples < 1 or batch_size < 1:
        raise ArgumentError(f"samples and batch_size must be >= 1, got {samples} and {batch_size}")
    if temperature == 0 and samples > 1:
        raise ArgumentError("greedy decoding (temperature 0) gives the same completion every time; use samples=1")
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    if not tokenizer.chat_template:
        raise ArgumentError(f"{model_path}: the tokenizer has no chat template; arrange prompts are chat "
                            "messages")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype="auto").to(device).eval()
    torch.manual_seed(seed)
    info = read_policy_info(model_path)  # a policy spacelm trained: its prompt style
    style, rotation = info.get("prompt_style", "metaspatial"), info.get("rotation", True)
    prompts = [(task.id, tokenizer.apply_chat_template(
                    build_messages(task, image=False, style=style, rotation=rotation), tokenize=False,
                    add_generation_prompt=True))
               for task in tasks for _ in range(samples)]
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else \
        {"do_sample": False}
    records = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        inputs = tokenizer([text for _, text in batch], return_tensors="pt", padding=True,
                           add_special_tokens=False).to(device)
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                    **sampling)
        texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        records += [CompletionRecord(task_id, text) for (task_id, _), text in zip(batch, texts)]
        if on_batch is not None:
            on_batch(len(batch))
    return records


def write_completions(path: str | os.PathLike, records: Sequence[CompletionRecord]) -> None:
    """Completions JSONL (``{"task_id", "completion"}`` a line), written atomically."""
    atomic_write_text(path, "".join(json.dumps({"task_id": r.task_id, "completion": r.completion},
                                               ensure_ascii=False) + "\n" for r in records))


def policy_completions(model, tokenizer, tasks: Sequence[ArrangeTask], *, style: str = "metaspatial",
                       rotation: bool = True, turns: int = 1, reward=None,
                       feedback_style: str = "metaspatial", max_new_tokens: int = 1024,
                       temperature: float = 0.0, batch_size: int = 16,
                       on_batch: Callable[[int], None] | None = None) -> list[list[str]]:
    """Each task's completion per turn from a loaded model, greedy at ``temperature`` 0.

    With ``turns`` > 1 each later turn sees the conversation so far plus the feedback on its last
    answer (``prompts.revision_messages``), as in multi-turn training; ``reward`` (default:
    ``ArrangeReward("default")``) scores the turns the feedback reports on. Text prompts only.
    """
    import torch

    from spacelm.arrange.prompts import revision_messages
    from spacelm.arrange.rewards import ArrangeReward

    reward = reward or ArrangeReward("default", require_rotation=rotation)
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    history: list[list[tuple[str, dict]]] = [[] for _ in tasks]
    out: list[list[str]] = [[] for _ in tasks]
    device = next(model.parameters()).device
    for _ in range(turns):
        for start in range(0, len(tasks), batch_size):
            rows = range(start, min(start + batch_size, len(tasks)))
            texts = [tokenizer.apply_chat_template(
                revision_messages(tasks[i], history[i], rotation=rotation, image=False, style=style,
                                  feedback_style=feedback_style),
                tokenize=False, add_generation_prompt=True) for i in rows]
            inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():
                output = model.generate(**inputs, max_new_tokens=max_new_tokens,
                                        pad_token_id=tokenizer.pad_token_id, **sampling)
            answers = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            scores = reward.breakdown([None] * len(answers), answers, task=[tasks[i] for i in rows])
            for i, answer, breakdown in zip(rows, answers, scores):
                history[i].append((answer, breakdown))
                out[i].append(answer)
            if on_batch is not None:
                on_batch(len(answers))
    return out
