"""``SpatialLMProcessor``: point cloud + task -> model inputs, the same way for training and inference.

``preprocess_points`` is the one point pipeline (SpatialLM's, step for step):

1. ``positive_shift``: subtract the per-axis minimum; the offset is returned so a predicted layout can
   be moved back (``decode_layout`` does it);
2. ``normalize_color``: rgb uint8 -> [-1, 1] (a cloud without colour gets -1, SpatialLM's zeros);
3. grid sampling at ``32 / num_bins`` metres: one point per voxel, the first in ``mode="test"``, a
   random one in ``mode="train"``; integer voxel coords in ``[0, num_bins)`` (a cloud wider than 32 m
   raises instead of being squashed against the border as in SpatialLM);
4. encoder features = ``[xyz (metres, shifted), rgb]`` (M, 6) float32; encoder coords = voxel coords.

The prompt is SpatialLM's user turn ``<|point_start|><|point_pad|><|point_end|>{task_instruction}`` in the
tokenizer's chat template (system "You are a helpful assistant." unless ``system_prompt=None``), with the
single ``<|point_pad|>`` expanded to ``count_tokens(coords)`` pads: exactly the encoder's token count.
``reference_code=False`` drops the ~260-token code template from the request (a model trained from
scratch learns nothing from a constant text, and on a CPU it is a quarter of each sequence).

Batches are padded text (left for generation, right for training) plus concatenated point rows with a
``point_batch`` column: no padding of point clouds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from transformers import AutoTokenizer

from spacelm.errors import SpacelmError
from spacelm.model.point_encoder import count_tokens
from spacelm.model.point_tokens import (
    POINT_END_TOKEN,
    POINT_PAD_TOKEN,
    POINT_START_TOKEN,
)
from spacelm.points.transforms import (
    WORLD_EXTENT,
    grid_sample_coords,
    normalize_color,
    positive_shift,
)
from spacelm.scene.language import (
    ParseResult,
    format_layout,
    parse_layout,
    task_instruction,
)
from spacelm.scene.layout import Layout, translate
from spacelm.scene.quantize import Quantizer

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
PROCESSOR_FILE = "spacelm_processor.json"
IGNORE_INDEX = -100  # label of tokens that carry no loss


class PointExtentError(SpacelmError, ValueError):
    """A cloud wider than the processor's grid: the input's fault, not a bug (the caller names the file)."""


@dataclass(frozen=True)
class PointInputs:
    """One preprocessed cloud. ``coords``: (M, 3) int64 voxel coords; ``features``: (M, 6) float32
    ``[x, y, z, r, g, b]``; ``offset``: (3,) float64 metres subtracted by the positive shift;
    ``num_tokens``: encoder tokens (= ``<|point_pad|>`` tokens in the prompt)."""

    coords: np.ndarray
    features: np.ndarray
    offset: np.ndarray
    num_tokens: int


class SpatialLMBatch(NamedTuple):
    """``inputs``: keyword arguments for the model (``model.generate(**batch.inputs)``);
    ``offsets``: (B, 3) float64 positive-shift offsets, for ``decode_layout``."""

    inputs: dict[str, torch.Tensor]
    offsets: np.ndarray


class SpatialLMProcessor:
    """Tokenizer + SpatialLM's point preprocessing and prompt.

    ``num_bins``: voxel grid per axis over 32 m (1280 -> 2.5 cm); also the layout's bin count.
    ``token_stride``: voxels per encoder token along an axis (16 for the 5-stage encoder).
    ``layout_decimals``: None (SpatialLM) writes the answer as integer bins; a number writes metric floats
    with that many decimals instead (the discretisation ablation, ``bench/ablate_discretisation.py``).
    ``reference_code``: SpatialLM's request with its code template (True), or the bare request
    ("Detect walls, doors, windows, boxes.").
    """

    def __init__(self, tokenizer, *, num_bins: int = 1280, token_stride: int = 16,
                 system_prompt: str | None = DEFAULT_SYSTEM_PROMPT, layout_decimals: int | None = None,
                 reference_code: bool = True) -> None:
        self.tokenizer = tokenizer
        self.num_bins = int(num_bins)
        self.token_stride = int(token_stride)
        self.system_prompt = system_prompt
        self.reference_code = bool(reference_code)
        if layout_decimals is not None and layout_decimals < 0:
            raise ValueError(f"layout_decimals must be None or >= 0, got {layout_decimals}")
        self.layout_decimals = layout_decimals
        # The answer's number format: integer bins, or metric floats when layout_decimals is set.
        self.quantizer = Quantizer(self.num_bins) if layout_decimals is None else None
        self.point_token_id = self._token_id(POINT_PAD_TOKEN)
        self._prompt_cache: dict[tuple, tuple[list[int], list[int]]] = {}

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {token} token; build it with "
                             "SpatialLMForCausalLM.from_base_lm")
        return token_id

    # ---- points ----------------------------------------------------------------------------------

    def preprocess_points(self, xyz: np.ndarray, rgb: np.ndarray | None = None, *, mode: str = "test",
                          rng: np.random.Generator | None = None) -> PointInputs:
        """``xyz (N, 3)`` metres (z up) and ``rgb (N, 3) uint8`` (or None) -> ``PointInputs``.

        ``mode="train"`` keeps a random point per voxel (drawn from ``rng``), ``"test"`` the first.
        """
        xyz = np.asarray(xyz, dtype=np.float64)
        if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) == 0:
            raise ValueError(f"xyz must be a non-empty (N, 3) array, got shape {xyz.shape}")
        if rgb is None:
            rgb = np.zeros(xyz.shape, dtype=np.uint8)
        elif np.shape(rgb) != xyz.shape:
            raise ValueError(f"rgb must be (N, 3) like xyz {xyz.shape}, got {np.shape(rgb)}")
        shifted, offset = positive_shift(xyz)
        colors = normalize_color(rgb)
        index, coords = grid_sample_coords(shifted, WORLD_EXTENT / self.num_bins, mode=mode, rng=rng)
        if coords.max() >= self.num_bins:
            extent = np.round(shifted.max(axis=0), 2).tolist()
            raise PointExtentError(f"point cloud spans {extent} m, beyond the {WORLD_EXTENT:g} m grid of "
                                   f"{self.num_bins} bins; crop it or split it into rooms")
        features = np.concatenate([shifted[index], colors[index]], axis=1).astype(np.float32)
        num_tokens = int(count_tokens(coords, self.token_stride)[0])
        return PointInputs(coords, features, offset, num_tokens)

    # ---- text ------------------------------------------------------------------------------------

    def prompt_ids(self, num_point_tokens: int, task: str = "all",
                   categories: Sequence[str] | None = None) -> list[int]:
        """Chat-formatted prompt ids, ending with the assistant header, holding ``num_point_tokens`` pads."""
        key = (task, tuple(categories or ()))
        if key not in self._prompt_cache:
            self._prompt_cache[key] = self._split_prompt(task, categories)
        before, after = self._prompt_cache[key]
        return before + [self.point_token_id] * num_point_tokens + after

    def _split_prompt(self, task: str, categories: Sequence[str] | None) -> tuple[list[int], list[int]]:
        instruction = task_instruction(task, list(categories or []), reference_code=self.reference_code)
        user = f"{POINT_START_TOKEN}{POINT_PAD_TOKEN}{POINT_END_TOKEN}{instruction}"
        messages = [{"role": "user", "content": user}]
        if self.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]  # the template holds any BOS
        pads = [i for i, token in enumerate(ids) if token == self.point_token_id]
        if len(pads) != 1:
            raise ValueError(f"the chat-formatted prompt holds {len(pads)} {POINT_PAD_TOKEN} tokens, "
                             "expected 1")
        return ids[: pads[0]], ids[pads[0] + 1:]

    def answer_ids(self, layout: Layout) -> list[int]:
        """Layout (in the shifted frame) -> integer-bin (or metric) text ids + the end-of-turn (EOS) token."""
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token; set it to the chat template's "
                             "end-of-turn token")
        text = format_layout(layout, self.quantizer, decimals=self.layout_decimals or 0)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]

    # ---- batches ---------------------------------------------------------------------------------

    def __call__(self, clouds: Sequence, task: str | Sequence[str] = "all",
                 categories: Sequence[str] | None = None, *, mode: str = "test",
                 rng: np.random.Generator | None = None, padding_side: str = "left") -> SpatialLMBatch:
        """Inference inputs for a batch of clouds, each a ``PointCloud`` or an ``(xyz, rgb)`` pair.

        ``task`` is one task for all or one per cloud. Left padding suits ``generate``.
        """
        tasks = [task] * len(clouds) if isinstance(task, str) else list(task)
        if len(tasks) != len(clouds):
            raise ValueError(f"{len(tasks)} tasks for {len(clouds)} clouds")
        examples, offsets = [], []
        for cloud, cloud_task in zip(clouds, tasks):
            xyz, rgb = (cloud.xyz, cloud.rgb) if hasattr(cloud, "xyz") else cloud
            points = self.preprocess_points(xyz, rgb, mode=mode, rng=rng)
            ids = self.prompt_ids(points.num_tokens, cloud_task, categories)
            examples.append({"input_ids": ids, "point_coords": points.coords,
                             "point_features": points.features})
            offsets.append(points.offset)
        return SpatialLMBatch(self.collate(examples, padding_side=padding_side), np.stack(offsets))

    def training_example(self, xyz: np.ndarray, rgb: np.ndarray | None, layout: Layout, *, task: str = "all",
                         categories: Sequence[str] | None = None, mode: str = "train",
                         rng: np.random.Generator | None = None) -> dict:
        """One supervised example: prompt + answer ids, labels -100 except on the answer and its EOS.

        ``layout`` is in the cloud's frame and must hold what ``task`` asks for; it is shifted with the
        cloud. Augment both beforehand (``spacelm.points.transforms.augment``). Returns lists/arrays;
        ``collate`` batches them.
        """
        points = self.preprocess_points(xyz, rgb, mode=mode, rng=rng)
        prompt = self.prompt_ids(points.num_tokens, task, categories)
        answer = self.answer_ids(translate(layout, -points.offset))
        return {
            "input_ids": prompt + answer,
            "labels": [IGNORE_INDEX] * len(prompt) + answer,
            "point_coords": points.coords,
            "point_features": points.features,
        }

    def collate(self, examples: Sequence[dict], *, padding_side: str = "right") -> dict[str, torch.Tensor]:
        """Pad ``input_ids`` (and ``labels`` with -100) and concatenate point rows with a batch index (and
        any ``token_boxes`` of ``LayoutDataset``'s token targets, as ``(K, 8)`` rows led by the sample index).

        Padding uses the tokenizer's pad token (EOS if none); its rows get attention 0.
        """
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        pad_id = self.tokenizer.pad_token_id
        pad_id = self.tokenizer.eos_token_id if pad_id is None else pad_id
        length = max(len(ex["input_ids"]) for ex in examples)
        has_labels = "labels" in examples[0]
        input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
        labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
        for row, ex in enumerate(examples):
            n = len(ex["input_ids"])
            cols = slice(length - n, length) if padding_side == "left" else slice(0, n)
            input_ids[row, cols] = torch.as_tensor(ex["input_ids"])
            attention_mask[row, cols] = 1
            if has_labels:
                labels[row, cols] = torch.as_tensor(ex["labels"])
        sizes = [len(ex["point_coords"]) for ex in examples]
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "point_coords": torch.from_numpy(np.concatenate([ex["point_coords"] for ex in examples])).long(),
            "point_features": torch.from_numpy(
                np.concatenate([ex["point_features"] for ex in examples])).float(),
            "point_batch": torch.arange(len(examples)).repeat_interleave(torch.tensor(sizes)),
        }
        if has_labels:
            batch["labels"] = labels
        if "token_boxes" in examples[0]:  # (K, 8): the sample index, then label_boxes' row
            batch["token_boxes"] = torch.cat([
                torch.nn.functional.pad(torch.as_tensor(ex["token_boxes"], dtype=torch.float32), (1, 0), value=row)
                for row, ex in enumerate(examples)])
        return batch

    # ---- output ----------------------------------------------------------------------------------

    def decode_layout(self, token_ids: Sequence[int] | torch.Tensor, offset: np.ndarray) -> ParseResult:
        """Generated answer ids (prompt removed) -> layout in the input cloud's frame, with diagnostics."""
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        result = parse_layout(text, self.quantizer)
        return ParseResult(translate(result.layout, offset), result.diagnostics)

    # ---- save / load -----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"num_bins": self.num_bins, "token_stride": self.token_stride,
                "system_prompt": self.system_prompt, "layout_decimals": self.layout_decimals,
                "reference_code": self.reference_code}

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the tokenizer files and ``spacelm_processor.json`` (the settings above) to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(directory)
        (directory / PROCESSOR_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **tokenizer_kwargs) -> SpatialLMProcessor:
        directory = Path(directory)
        settings_file = directory / PROCESSOR_FILE
        if not settings_file.is_file():
            raise FileNotFoundError(f"{settings_file} not found; save the processor with save_pretrained")
        settings = json.loads(settings_file.read_text(encoding="utf-8"))
        return cls(AutoTokenizer.from_pretrained(directory, **tokenizer_kwargs), **settings)
