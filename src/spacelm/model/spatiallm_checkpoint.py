"""SpatialLM's own checkpoint folders (``spatiallm_qwen`` / ``spatiallm_llama``) in and out of spacelm's classes.

Upstream subclasses the LM: its ``config.json`` holds the LM keys flat next to ``point_backbone``,
``point_config``, ``projector`` and the three point-token ids, and its weights sit at ``model.*``,
``lm_head.*``, ``point_backbone.*``, ``point_proj.*``. We compose the LM instead (LLaVA's layout), so
loading is a config translation plus a key-rename table (``KEY_TABLES``, read both ways), with three
layout changes:

- Sonata's CPE conv: spconv's ``[Cout, kx, ky, kz, Cin]`` weight <-> our ``(27, Cin, Cout)`` kernel;
- SceneScript's torchsparse kernels ``[k^3, Cin, Cout]`` order odd kernels x fastest, ours z fastest
  (the offset sign convention is unverified: no torchsparse build here);
- SceneScript's ``extra_embedding`` (a vector added after ``input_proj``) is folded into its bias.

Every checkpoint key must map onto exactly one parameter of the right shape and every parameter must be
filled, else ``ValueError`` naming the key. A tied ``lm_head.weight`` may be absent, as upstream saves it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from transformers import AutoTokenizer, GenerationConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from spacelm.errors import SpacelmError, decode_error
from spacelm.model.configuration_spatiallm import SpatialLMConfig
from spacelm.model.modeling_spatiallm import SpatialLMForCausalLM
from spacelm.model.point_tokens import POINT_TOKENS
from spacelm.model.processing_spatiallm import DEFAULT_SYSTEM_PROMPT, SpatialLMProcessor
from spacelm.model.sparse_conv import from_spconv_weight, to_spconv_weight


class CheckpointError(SpacelmError, ValueError):
    """An upstream SpatialLM folder that cannot be read: the message names the file and the problem."""


# upstream model_type -> (text model_type, architecture, system prompt of its chat turn)
UPSTREAM_VARIANTS = {
    "spatiallm_qwen": ("qwen2", "SpatialLMQwenForCausalLM", DEFAULT_SYSTEM_PROMPT),
    "spatiallm_llama": ("llama", "SpatialLMLlamaForCausalLM", None),
}
POINT_CONFIG_KEYS = ("point_backbone", "point_config", "projector", "point_start_token_id",
                     "point_end_token_id", "point_token_id")
NOT_TEXT_KEYS = POINT_CONFIG_KEYS + ("architectures", "model_type", "transformers_version", "torch_dtype",
                                     "dtype", "auto_map", "_name_or_path")
# Sonata point_config keys that only matter in training or name upstream's only supported value.
SONATA_FIXED = {"enc_mode": True, "pre_norm": True, "enable_rpe": False, "qkv_bias": True, "qk_scale": None,
                "layer_scale": None, "enable_fourier_encode": True}
SONATA_TRAINING_ONLY = ("mask_token", "enable_flash", "drop_path", "attn_drop", "proj_drop", "upcast_attention",
                        "upcast_softmax", "shuffle_orders", "traceable")
SCENESCRIPT_KEYS = {"input_channels": "input_channels", "conv_layers": "channels", "embed_channels": "embed_dim",
                    "num_bins": "num_bins"}
WEIGHTS_FILE, WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"

_BLOCK = "point_encoder.stages.{s}.blocks.{b}"
_UP_BLOCK = "point_backbone.enc.enc{s}.block{b}"
# (upstream key, our key) templates, first match wins; {s} {b} are integers, {p} the rest of the key.
KEY_TABLES = {
    "sonata": (
        ("point_backbone.embedding.stem.{p}", "point_encoder.stem.{p}"),
        ("point_backbone.enc.enc{s}.down.norm.0.{p}", "point_encoder.stages.{s}.down.norm.{p}"),
        ("point_backbone.enc.enc{s}.down.proj.{p}", "point_encoder.stages.{s}.down.proj.{p}"),
        (_UP_BLOCK + ".cpe.0.weight", _BLOCK + ".cpe.kernel"),
        (_UP_BLOCK + ".cpe.0.bias", _BLOCK + ".cpe.bias"),
        (_UP_BLOCK + ".cpe.1.{p}", _BLOCK + ".cpe.linear.{p}"),
        (_UP_BLOCK + ".cpe.2.{p}", _BLOCK + ".cpe.norm.{p}"),
        (_UP_BLOCK + ".norm1.0.{p}", _BLOCK + ".norm1.{p}"),
        (_UP_BLOCK + ".norm2.0.{p}", _BLOCK + ".norm2.{p}"),
        (_UP_BLOCK + ".attn.{p}", _BLOCK + ".attn.{p}"),
        (_UP_BLOCK + ".mlp.0.{p}", _BLOCK + ".mlp.{p}"),
        ("point_backbone.input_proj.{p}", "point_encoder.input_proj.{p}"),
    ),
    "scenescript": (
        ("point_backbone.sparse_resnet.{p}", "point_encoder.sparse_resnet.{p}"),
        ("point_backbone.input_proj.{p}", "point_encoder.input_proj.{p}"),
    ),
}
COMMON_KEYS = (
    ("point_proj.{p}", "projector.{p}"),
    ("model.{p}", "language_model.model.{p}"),
    ("lm_head.{p}", "language_model.lm_head.{p}"),
)
EXTRA_EMBEDDING = "point_backbone.extra_embedding"
# Sonata's mask token (with point_config.mask_token) is only used by masked pre-training: skipped on load.
SONATA_MASK_TOKEN = "point_backbone.embedding.mask_token"


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{s\}", r"(?P<s>\d+)").replace(r"\{b\}", r"(?P<b>\d+)")
    return re.compile(pattern.replace(r"\{p\}", r"(?P<p>.+)") + "$")


class KeyMap:
    """Upstream key <-> our key for one backbone; ``None`` where no rule matches."""

    def __init__(self, point_backbone: str) -> None:
        self.rules = [(_compile(up), up, _compile(ours), ours) for up, ours in
                      KEY_TABLES[point_backbone] + COMMON_KEYS]

    def to_ours(self, key: str) -> str | None:
        for up_re, _, _, ours in self.rules:
            if m := up_re.match(key):
                return ours.format(**m.groupdict())
        return None

    def to_upstream(self, key: str) -> str | None:
        for _, up, ours_re, _ in self.rules:
            if m := ours_re.match(key):
                return up.format(**m.groupdict())
        return None


# ---- config ----------------------------------------------------------------------------------------


def is_spatiallm_checkpoint(folder: str | Path) -> bool:
    """True when ``folder/config.json`` names an upstream SpatialLM ``model_type``."""
    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        return False
    return _read_json(config_file).get("model_type") in UPSTREAM_VARIANTS


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    except UnicodeDecodeError as e:
        raise decode_error(path, e, CheckpointError) from None


def _point_config_from_upstream(backbone: str, upstream: dict, shuffle_orders: bool) -> dict:
    upstream = dict(upstream)
    if backbone == "scenescript":
        unknown = sorted(set(upstream) - set(SCENESCRIPT_KEYS))
        if unknown:
            raise ValueError(f"point_config: unknown SceneScript key(s) {unknown}; expected {list(SCENESCRIPT_KEYS)}")
        return {SCENESCRIPT_KEYS[k]: v for k, v in upstream.items()}
    for key, value in SONATA_FIXED.items():
        if key in upstream and upstream.pop(key) != value:
            raise ValueError(f"point_config.{key}: only {value!r} is supported (SpatialLM's encoder-only Sonata)")
    for key in SONATA_TRAINING_ONLY:
        upstream.pop(key, None)
    return {**upstream, "shuffle_orders": shuffle_orders}


def config_from_upstream(upstream: dict, *, shuffle_orders: bool = False) -> SpatialLMConfig:
    """Our config for an upstream ``config.json`` dict. ``shuffle_orders``: Sonata draws its order permutation
    from torch's RNG as upstream does (only to compare with upstream; off: the configured order)."""
    model_type = upstream.get("model_type")
    if model_type not in UPSTREAM_VARIANTS:
        raise ValueError(f"model_type must be one of {list(UPSTREAM_VARIANTS)}, got {model_type!r}")
    backbone = upstream.get("point_backbone", "scenescript")
    if backbone not in KEY_TABLES:
        raise ValueError(f"point_backbone must be one of {list(KEY_TABLES)}, got {backbone!r}")
    missing = [k for k in ("point_config", "point_token_id") if upstream.get(k) is None]
    if missing:
        raise ValueError(f"config lacks {missing}")
    text = {k: v for k, v in upstream.items() if k not in NOT_TEXT_KEYS}
    if text.get("rope_scaling", 0) is None:  # transformers 5 reads rope_theta alone; None only warns
        del text["rope_scaling"]
    text_config = CONFIG_MAPPING[UPSTREAM_VARIANTS[model_type][0]](**text)
    return SpatialLMConfig(
        text_config=text_config,
        point_backbone=backbone,
        point_config=_point_config_from_upstream(backbone, upstream["point_config"], shuffle_orders),
        projector=upstream.get("projector", "linear"),  # upstream's default when the key is absent
        point_start_token_id=upstream.get("point_start_token_id"),
        point_end_token_id=upstream.get("point_end_token_id"),
        point_token_id=upstream["point_token_id"],
        tie_word_embeddings=text_config.tie_word_embeddings,
    )


def config_to_upstream(config: SpatialLMConfig) -> dict:
    """The upstream ``config.json`` dict for our config (the inverse of ``config_from_upstream``)."""
    text = config.text_config.to_dict()
    variant = {v[0]: k for k, v in UPSTREAM_VARIANTS.items()}.get(text.pop("model_type"))
    if variant is None:
        raise ValueError(f"SpatialLM's layout exists for {[v[0] for v in UPSTREAM_VARIANTS.values()]} LMs only, "
                         f"not {config.text_config.model_type!r}")
    if config.token_branch is not None:
        raise ValueError("this model adds its token branch's marks to the point tokens "
                         "(token_head_input: branch), which SpatialLM's architecture has no place for")
    point = dict(config.point_config)
    if point.pop("num_fourier_freqs") != 10:
        raise ValueError("SpatialLM's encoders use 10 Fourier frequencies")
    if config.point_backbone == "sonata":
        point.pop("shuffle_orders")
        point.update(enc_mode=True, mask_token=False)
    else:
        point.pop("backend")
        point = {up: point[ours] for up, ours in SCENESCRIPT_KEYS.items()}
    dtype = text.pop("dtype", None) or text.pop("torch_dtype", None) or "float32"
    for key in ("architectures", "transformers_version", "_name_or_path", "torch_dtype"):
        text.pop(key, None)
    return {**text, "architectures": [UPSTREAM_VARIANTS[variant][1]], "model_type": variant,
            "torch_dtype": str(dtype).replace("torch.", ""), "point_backbone": config.point_backbone,
            "point_config": point, "projector": config.projector,
            **{k: getattr(config, k) for k in POINT_CONFIG_KEYS[3:]}}


# ---- weights ---------------------------------------------------------------------------------------


def _weight_files(folder: Path) -> list[Path]:
    if (folder / WEIGHTS_INDEX).is_file():
        index = _read_json(folder / WEIGHTS_INDEX)
        return [folder / name for name in sorted(set(index["weight_map"].values()))]
    if (folder / WEIGHTS_FILE).is_file():
        return [folder / WEIGHTS_FILE]
    raise FileNotFoundError(f"{folder}: no {WEIGHTS_FILE} or {WEIGHTS_INDEX} (only safetensors are read)")


def _to_our_layout(key: str, tensor: Tensor, backbone: str) -> Tensor:
    if backbone == "sonata" and key.endswith(".cpe.kernel"):
        return from_spconv_weight(tensor)
    if backbone == "scenescript" and key.endswith(".kernel") and tensor.ndim == 3:
        return _torchsparse_offsets(tensor)
    return tensor


def _to_upstream_layout(key: str, tensor: Tensor, backbone: str) -> Tensor:
    if backbone == "sonata" and key.endswith(".cpe.kernel"):
        return to_spconv_weight(tensor).contiguous()
    return _to_our_layout(key, tensor, backbone)  # the torchsparse reorder is its own inverse


def _torchsparse_offsets(kernel: Tensor) -> Tensor:
    """Swap the x-fastest offset order of odd torchsparse kernels with our z-fastest one (both ways)."""
    side = round(kernel.shape[0] ** (1 / 3))
    if side % 2 == 0:
        return kernel
    return kernel.view(side, side, side, *kernel.shape[1:]).permute(2, 1, 0, 3, 4).reshape(kernel.shape)


def expected_keys(model: SpatialLMForCausalLM) -> dict[str, Tensor]:
    """Our state-dict entries with tied tensors listed once (the first name: the input embedding)."""
    seen, out = set(), {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            out[key] = tensor
    return out


def load_upstream_weights(model: SpatialLMForCausalLM, folder: str | Path) -> None:
    """Copy an upstream checkpoint's tensors into ``model`` (in its dtypes), strictly."""
    folder = Path(folder)
    backbone = model.config.point_backbone
    key_map = KeyMap(backbone)
    targets = expected_keys(model)
    tied_head = "language_model.lm_head.weight" not in targets
    filled, extra_embedding = set(), None
    with torch.no_grad():
        for path in _weight_files(folder):
            with safe_open(path, framework="pt") as f:
                for key in f.keys():
                    if backbone == "scenescript" and key == EXTRA_EMBEDDING:
                        extra_embedding = f.get_tensor(key)
                        continue
                    if backbone == "sonata" and key == SONATA_MASK_TOKEN:
                        continue
                    ours = key_map.to_ours(key)
                    if ours == "language_model.lm_head.weight" and tied_head:
                        continue  # tied to the embedding, which is read under its own key
                    if ours is None or ours not in targets:
                        raise CheckpointError(f"{path}: unexpected key {key!r} (no parameter of a {backbone} "
                                              "SpatialLM matches it)")
                    tensor = _to_our_layout(ours, f.get_tensor(key), backbone)
                    target = targets[ours]
                    if tensor.shape != target.shape:
                        raise CheckpointError(f"{path}: {key!r} has shape {list(tensor.shape)}, expected "
                                              f"{list(_to_upstream_layout(ours, target, backbone).shape)}")
                    target.copy_(tensor)
                    filled.add(ours)
        if extra_embedding is not None:
            model.point_encoder.input_proj.bias.add_(extra_embedding.to(torch.float32))
    missing = [key_map.to_upstream(k) or k for k in targets if k not in filled]
    if backbone == "scenescript" and extra_embedding is None:
        missing.append(EXTRA_EMBEDDING)
    if missing:
        raise CheckpointError(f"{folder}: checkpoint lacks {len(missing)} key(s): {missing[:8]}")


def upstream_state_dict(model: SpatialLMForCausalLM) -> dict[str, Tensor]:
    """``model``'s tensors under upstream's keys and layouts (a tied ``lm_head`` left out, as upstream)."""
    backbone = model.config.point_backbone
    key_map = KeyMap(backbone)
    out = {}
    for key, tensor in expected_keys(model).items():
        up = key_map.to_upstream(key)
        if up is None:
            raise ValueError(f"no upstream key for {key!r}")
        out[up] = _to_upstream_layout(key, tensor.detach(), backbone).contiguous()
    if backbone == "scenescript":
        out[EXTRA_EMBEDDING] = torch.zeros_like(model.point_encoder.input_proj.bias.detach())
    return out


# ---- folders ---------------------------------------------------------------------------------------


def load_spatiallm_checkpoint(folder: str | Path, *, dtype: torch.dtype | None = None,
                              shuffle_orders: bool = False) -> tuple[SpatialLMForCausalLM, SpatialLMProcessor]:
    """``(model, processor)`` from an upstream SpatialLM folder; the prompt is upstream's (its code template,
    and the system turn for Qwen only). ``dtype`` casts the LM; the encoder stays float32."""
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found")
    upstream = _read_json(config_file)
    try:
        config = config_from_upstream(upstream, shuffle_orders=shuffle_orders)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{config_file}: {e}") from e
    model = SpatialLMForCausalLM(config)
    if dtype is not None:
        for part in (model.language_model, model.projector):  # the encoder stays float32
            part.to(dtype)
    load_upstream_weights(model, folder)
    if (folder / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(folder)
    model.eval()
    system_prompt = UPSTREAM_VARIANTS[upstream["model_type"]][2]
    # Passing the LM config keeps AutoTokenizer from reading config.json, whose model_type it does not know.
    tokenizer = AutoTokenizer.from_pretrained(folder, config=config.text_config)
    processor = SpatialLMProcessor(tokenizer, num_bins=config.num_bins,
                                   token_stride=config.point_encoder_config.token_stride,
                                   system_prompt=system_prompt)
    ids = processor.tokenizer.convert_tokens_to_ids(list(POINT_TOKENS))
    expected = [config.point_start_token_id, config.point_token_id, config.point_end_token_id]
    if ids != expected:
        raise CheckpointError(f"{folder}: the tokenizer's point tokens have ids {ids}, config.json says "
                              f"{expected}")
    return model, processor


def save_spatiallm_checkpoint(model: SpatialLMForCausalLM, processor: SpatialLMProcessor,
                              folder: str | Path) -> Path:
    """Write ``model`` in upstream's folder layout: ``config.json``, ``model.safetensors``, tokenizer files."""
    config = config_to_upstream(model.config)
    # Upstream's folder has no processor settings: its prompt is fixed, so the model must expect that one.
    upstream_prompt = dict(layout_decimals=None, reference_code=True,
                           system_prompt=UPSTREAM_VARIANTS[config["model_type"]][2])
    differing = {k: getattr(processor, k) for k, v in upstream_prompt.items() if getattr(processor, k) != v}
    if differing:
        raise ValueError(f"SpatialLM's layout fixes the prompt to {upstream_prompt}; this processor has "
                         f"{differing}, which a SpatialLM folder cannot record")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    save_file(upstream_state_dict(model), folder / WEIGHTS_FILE, metadata={"format": "pt"})
    model.generation_config.save_pretrained(folder)
    processor.tokenizer.save_pretrained(folder)
    return folder
