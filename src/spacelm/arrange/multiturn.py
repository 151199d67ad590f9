"""Multi-turn refinement for GRPO: write a layout, read feedback on it, revise, for ``turns`` turns.

MetaSpatial's released multi-turn loop cannot run (its issue #11); this one plugs into TRL's
``rollout_func`` hook. Per trajectory:

    prompt -> turn 1 (model) -> feedback 1 (env) -> turn 2 (model) -> ... -> turn T (model)

- Every turn is scored inside the rollout with ``ArrangeReward.breakdown`` (re-parsing TRL's
  ``completions`` would not work: it is the decode of all turns and feedback together).
- Feedback is the user turn of ``prompts.feedback_message`` (the scores and the readable problems:
  who collides with whom and by how much, what is out of bounds or floating, which relations fail),
  appended as token ids with ``env_mask`` 0 so it never enters the loss.
- The trajectory return is ``DiscountedReturn`` over the per-turn scores; TRL's group baseline is
  then over whole trajectories.
- With ``token_credit`` each model token also carries its object's physics penalty in that turn
  (``credit.token_penalties``), for the per-object credit of ``grpo.ArrangeGRPOTrainer``.

Generation uses the trainer's own backend: vLLM (colocate or server) when the trainer has it, else
``generate`` on the unwrapped model with the trainer's generation config (CPU, DDP, ZeRO-3, FSDP2).
Every rank runs the same number of turns on the same number of trajectories, as collective
generation needs.

Vision-language policies: the dataset image (the empty room) goes with the first prompt, expanded
into its image tokens by the processor exactly as TRL's training forward pass expands it, and stays
in the context of every turn; feedback is text. A render in a later turn would not reach TRL's
training forward pass (``shared/research/grpo-design.md`` section 2), so renders go to the judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spacelm.arrange.credit import token_penalties
from spacelm.arrange.prompts import feedback_message
from spacelm.arrange.rewards import ArrangeReward, task_column

_MARK = "\u2063SPACELM_TURN\u2063"  # a string no chat template or model writes


def feedback_suffix(tokenizer, messages: list[dict], feedback: str) -> str:
    """The chat-template text between a finished assistant turn and the next assistant turn.

    Rendered from the template itself (end of the assistant turn, the user turn with ``feedback``,
    the generation prompt), so any chat template works, including ones that add a default system
    message to a conversation that has none.
    """
    turn = {"role": "assistant", "content": _MARK}
    before = tokenizer.apply_chat_template(messages + [turn], tokenize=False)
    after = tokenizer.apply_chat_template(messages + [turn, {"role": "user", "content": feedback}],
                                          tokenize=False, add_generation_prompt=True)
    cut = before.index(_MARK) + len(_MARK)
    if after[:cut] != before[:cut]:
        raise ValueError("the chat template does not keep earlier turns unchanged when a turn is "
                         "added; multi-turn refinement needs a prefix-preserving template")
    return after[cut:]


@dataclass(frozen=True)
class DiscountedReturn:
    """The trajectory reward: ``sum_t gamma^t r_t``, divided by ``sum_t gamma^t`` when ``normalize``
    (MetaSpatial's code: gamma 0.9, normalised; its paper v2 sums). Turns without a score (a judge
    outage) are left out; a trajectory with none is None. Logs the first and last turn's scores."""

    gamma: float = 0.9
    normalize: bool = True
    __name__ = "arrange_return"

    def __post_init__(self) -> None:
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")

    def __call__(self, prompts, completions, completion_ids=None, *, turn_scores, **columns):
        out = [self.of(scores) for scores in turn_scores]
        log_metric = columns.get("log_metric")
        if log_metric is not None:
            for name, at in (("first", 0), ("last", -1)):
                values = [s[at] for s in turn_scores if s and s[at] is not None]
                if values:
                    log_metric(f"arrange/turn_{name}_reward", float(np.mean(values)))
            for name, values in _turn_terms(columns.get("turn_terms")).items():
                log_metric(name, values)
        return out

    def of(self, scores) -> float | None:
        pairs = [(self.gamma ** t, s) for t, s in enumerate(scores) if s is not None]
        if not pairs:
            return None
        total = sum(w * s for w, s in pairs)
        return total / sum(w for w, _ in pairs) if self.normalize else total


def _turn_terms(turn_terms) -> dict[str, float]:
    """Mean last-turn reward terms, for the logs (``arrange/<term>``)."""
    if not turn_terms:
        return {}
    last = [terms[-1] for terms in turn_terms if terms]
    out = {}
    for name in last[0] if last else ():
        if name == "tier":  # the format term already reports it
            continue
        values = [t[name] for t in last if t.get(name) is not None]
        if values:
            out[f"arrange/{name}"] = float(np.mean(values))
    return out


@dataclass
class ArrangeRollout:
    """TRL ``rollout_func`` for ``turns``-turn refinement (see the module docstring).

    ``trainer.current_rows`` (set by ``ArrangeGRPOTrainer``) gives each prompt's dataset row, whose
    ``task`` column says what is being arranged.
    """

    reward: ArrangeReward = field(default_factory=lambda: ArrangeReward("default"))
    turns: int = 2
    feedback_style: str = "metaspatial"
    token_credit: bool = False
    require_rotation: bool = True

    def __post_init__(self) -> None:
        if self.turns < 1:
            raise ValueError(f"turns must be >= 1, got {self.turns}")

    def __call__(self, prompts: list, trainer) -> dict:
        processing = trainer.processing_class
        tokenizer = _text_tokenizer(processing)
        rows = trainer.current_rows
        tasks = task_column({"task": [row["task"] for row in rows]}, len(prompts))
        conversations = [list(p) for p in prompts]
        images = [row.get("image") for row in rows]
        vision = processing is not tokenizer and any(image is not None for image in images)
        renderer = processing if vision else tokenizer  # whose chat template reads image parts
        if vision:
            prompt_ids, vision_inputs = _vision_prompts(processing, prompts, images)
        else:
            prompt_ids = [tokenizer.apply_chat_template(p, tokenize=True, add_generation_prompt=True,
                                                        return_dict=False) for p in prompts]
            vision_inputs = None
        n = len(prompts)
        completion_ids = [[] for _ in range(n)]
        env_mask = [[] for _ in range(n)]
        logprobs = [[] for _ in range(n)]
        penalties = [[] for _ in range(n)]
        turn_scores = [[] for _ in range(n)]
        turn_terms = [[] for _ in range(n)]
        truncated = 0
        eos = set(_eos_ids(trainer, tokenizer))
        for turn in range(self.turns):
            contexts = [p + c for p, c in zip(prompt_ids, completion_ids)]
            new_ids, new_logprobs = generate(trainer, contexts, vision_inputs,
                                             images=[[image] for image in images] if vision else None)
            texts = tokenizer.batch_decode(new_ids, skip_special_tokens=True)
            breakdown = self.reward.breakdown([None] * n, texts, task=tasks)
            for i in range(n):
                turn_scores[i].append(breakdown[i]["score"])
                turn_terms[i].append(breakdown[i]["terms"])
                completion_ids[i] += new_ids[i]
                env_mask[i] += [1] * len(new_ids[i])
                logprobs[i] += new_logprobs[i] if new_logprobs is not None else [0.0] * len(new_ids[i])
                if self.token_credit:
                    penalties[i] += token_penalties(
                        new_ids[i], lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
                        tasks[i], physics=self.reward.physics,
                        require_rotation=self.require_rotation).tolist()
                ended = bool(new_ids[i]) and new_ids[i][-1] in eos
                truncated += not ended
                if turn == self.turns - 1:
                    continue
                message = feedback_message(tasks[i], texts[i], breakdown[i],
                                           require_rotation=self.require_rotation,
                                           style=self.feedback_style)
                suffix = feedback_suffix(renderer, conversations[i], message)
                conversations[i] = conversations[i] + [{"role": "assistant", "content": texts[i]},
                                                       {"role": "user", "content": message}]
                ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
                if ended and ids and ids[0] == new_ids[i][-1]:
                    ids = ids[1:]  # the turn's own end-of-turn token is already there
                completion_ids[i] += ids
                env_mask[i] += [0] * len(ids)
                logprobs[i] += [0.0] * len(ids)
                penalties[i] += [0.0] * len(ids)
        out = {"prompt_ids": prompt_ids, "completion_ids": completion_ids,
               "logprobs": logprobs if trainer.use_vllm else None, "env_mask": env_mask,
               "turn_scores": turn_scores, "turn_terms": turn_terms,
               "truncated_turns": [truncated / (n * self.turns)] * n}
        if self.token_credit:
            out["token_penalty"] = penalties
        return out


def _vision_prompts(processor, prompts: list, images: list):
    """Prompt ids with each image expanded into its tokens, and each prompt's vision inputs
    (``pixel_values``, ``image_grid_thw``), as TRL's forward pass will compute them."""
    ids, inputs = [], []
    for prompt, image in zip(prompts, images):
        text = processor.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        encoded = processor(text=[text], images=[image], return_tensors="pt")
        ids.append(encoded["input_ids"][0].tolist())
        rest = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask")}
        length = len(ids[-1])
        inputs.append({"per_token": {k: v[0] for k, v in rest.items() if tuple(v.shape) == (1, length)},
                       "per_image": {k: v for k, v in rest.items() if tuple(v.shape) != (1, length)}})
    return ids, inputs


def generate(trainer, contexts: list[list[int]], vision_inputs: list[dict] | None = None, *,
             images: list | None = None) -> tuple[list[list[int]], list[list[float]] | None]:
    """One completion per context with the trainer's backend and sampling settings: the new ids
    (up to and including the first end-of-sequence token) and, with vLLM, their log-probs.

    ``vision_inputs`` (one dict per context, batched along their first axis) go to ``generate``;
    vLLM gets the ``images`` themselves."""
    if trainer.use_vllm:
        _, ids, logprobs, _ = trainer.vllm_generation.generate(prompts=contexts, images=images,
                                                               num_generations=1)
        return [list(c) for c in ids], [[lp[0] for lp in row] for row in logprobs]
    import torch
    from trl.distributed import DistributedBackend
    from trl.models import unwrap_model_for_generation

    tokenizer = _text_tokenizer(trainer.processing_class)
    device = trainer.accelerator.device
    width = max(len(c) for c in contexts)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(c)) + c for c in contexts], device=device)
    attention = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=device)
    extra = {}
    for key in vision_inputs[0]["per_token"] if vision_inputs else ():  # e.g. mm_token_type_ids:
        rows = [[0] * (width - len(c)) + v["per_token"][key].tolist()  # left-padded like the ids,
                + [0] * (len(c) - len(v["per_token"][key])) for c, v in zip(contexts, vision_inputs)]
        extra[key] = torch.tensor(rows, device=device)  # and text (0) after the prompt
    for key in vision_inputs[0]["per_image"] if vision_inputs else ():  # (patches, dim), (images, 3)
        extra[key] = torch.cat([v["per_image"][key] for v in vision_inputs]).to(device)
    with (unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                      gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                                      generation_kwargs=trainer.generation_kwargs) as model,
          torch.no_grad(),
          DistributedBackend(trainer.accelerator).summon_full_params(trainer.model_wrapped,
                                                                     recurse=False)):
        output = model.generate(input_ids=input_ids, attention_mask=attention,
                                generation_config=trainer.generation_config, **extra)
    new = output[:, width:].tolist()
    eos = set(_eos_ids(trainer, tokenizer))
    return [_until_eos(row, eos) for row in new], None


def _until_eos(row: list[int], eos: set[int]) -> list[int]:
    for j, token in enumerate(row):
        if token in eos:
            return row[:j + 1]
    return row


def _eos_ids(trainer, tokenizer) -> list[int]:
    ids = getattr(trainer, "eos_token_ids", None) or [tokenizer.eos_token_id]
    return [int(i) for i in ids if i is not None]


def _text_tokenizer(processing_class):
    """The tokenizer of a tokenizer or of a (vision-language) processor."""
    return getattr(processing_class, "tokenizer", processing_class)
