"""Qwen2.5-VL's processor for images only, so vision-language policies run on CPU torch.

transformers' ``Qwen2_5_VLProcessor`` needs a video processor, and Qwen's video processor needs
torchvision, whose PyPI wheels are CUDA builds that break CPU torch (see
``shared/research/grpo-design.md`` section 4). Arranging needs images, never videos, so this
subclass accepts ``video_processor=None`` and saves / loads the tokenizer, the Pillow image
processor and the chat template only. ``load_policy_processor`` uses it only where
``AutoProcessor`` cannot load the folder; on a GPU machine with torchvision the stock class is used.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoProcessor, AutoTokenizer, Qwen2_5_VLProcessor

TEMPLATE_FILE = "chat_template.jinja"


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` with no video processor (see the module docstring)."""

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument_name == "video_processor" and argument is None:
            return None
        return super().check_argument_for_proper_class(argument_name, argument)

    def save_pretrained(self, save_directory, **kwargs):
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(save_directory)
        self.image_processor.save_pretrained(save_directory)
        if self.chat_template:
            (save_directory / TEMPLATE_FILE).write_text(self.chat_template, encoding="utf-8")
        return [str(save_directory)]

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil,
        )

        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        template = Path(path) / TEMPLATE_FILE
        return cls(image_processor=Qwen2VLImageProcessorPil.from_pretrained(path), tokenizer=tokenizer,
                   video_processor=None,
                   chat_template=template.read_text(encoding="utf-8") if template.is_file() else None)


def load_policy_processor(path: str | os.PathLike, **kwargs):
    """``AutoProcessor`` for the policy folder, or the image-only Qwen2.5-VL processor where the
    stock one cannot be built (no torchvision) and the folder is a Qwen2.5-VL model."""
    try:
        return AutoProcessor.from_pretrained(path, **kwargs)
    except (ImportError, AttributeError, TypeError, ValueError, OSError):
        config = Path(path) / "config.json"
        if config.is_file() and '"qwen2_5_vl"' in config.read_text(encoding="utf-8"):
            return ImageOnlyQwen2_5_VLProcessor.from_pretrained(path, **kwargs)
        raise


VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def save_tiny_vl_policy(path: str | os.PathLike, tokenizer, *, hidden_size: int = 64, num_layers: int = 2,
                        seed: int = 0) -> Path:
    """A random Qwen2.5-VL of the given text width with a 2-block vision tower, its image-only
    processor (56-112 px images) and TRL's Qwen2.5-VL chat template, saved to ``path``: a
    vision-language policy for CPU tests, built offline from any byte-level ``tokenizer``."""
    from importlib import resources

    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    path = Path(path)
    tokenizer.add_special_tokens({"additional_special_tokens": list(VISION_TOKENS)})
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in VISION_TOKENS}
    template = (resources.files("trl") / "chat_templates" / "qwen2_5_vl.jinja").read_text(encoding="utf-8")
    processor = ImageOnlyQwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112),
        tokenizer=tokenizer, video_processor=None, chat_template=template)
    heads = max(1, hidden_size // 16)
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": hidden_size, "num_hidden_layers": num_layers,
                     "num_attention_heads": heads, "num_key_value_heads": heads,
                     "intermediate_size": 2 * hidden_size, "tie_word_embeddings": True,
                     "rope_scaling": {"type": "mrope", "mrope_section": [2, 2, hidden_size // heads // 2 - 4]},
                     "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"depth": 2, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64,
                       "out_hidden_size": hidden_size, "patch_size": 14, "spatial_merge_size": 2,
                       "window_size": 56, "fullatt_block_indexes": [1]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True)
    torch.manual_seed(seed)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path
