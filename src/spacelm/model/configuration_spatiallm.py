"""``SpatialLMConfig``: a composite transformers config, point encoder + projector + any causal LM.

The language model is described by ``text_config`` (any ``AutoConfig`` causal LM: Qwen2 by default,
Llama, ...), the encoder by ``point_config`` (a ``PointEncoderConfig.to_dict()``; its ``num_bins`` is
the voxel grid of the point transforms and the bin count of the layout text). The three point-token
ids are those of ``<|point_start|>``, ``<|point_pad|>`` and ``<|point_end|>`` in the tokenizer;
``SpatialLMForCausalLM.from_base_lm`` adds the tokens and fills them in.

``model_type`` is ``spacelm_spatiallm``, distinct from SpatialLM's own ``spatiallm_qwen`` /
``spatiallm_llama`` (whose configs subclass the LM config and store the LM keys flat).

>>> cfg = SpatialLMConfig(text_config={"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2,
...                                    "num_attention_heads": 4, "num_key_value_heads": 2,
...                                    "intermediate_size": 128, "vocab_size": 300})
>>> type(cfg.text_config).__name__, cfg.point_encoder_config.num_bins, cfg.projector
('Qwen2Config', 1280, 'linear')
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from spacelm.model.point_encoder import PointEncoderConfig
from spacelm.model.sonata import SonataConfig

PROJECTORS = ("linear", "mlp")
TOKEN_HEAD_INPUTS = ("tokens", "backbone", "branch")
# point_backbone -> the dataclass its point_config holds: SceneScript's sparse ResNet (SpatialLM 1.0) or
# Sonata (SpatialLM 1.1).
POINT_BACKBONES = {"scenescript": PointEncoderConfig, "sonata": SonataConfig}
DEFAULT_TEXT_MODEL_TYPE = "qwen2"


class SpatialLMConfig(PreTrainedConfig):
    """Configuration of ``SpatialLMForCausalLM``.

    ``text_config``: a causal-LM config or its dict (``model_type`` defaults to ``qwen2``).
    ``point_backbone``: ``"scenescript"`` or ``"sonata"``. ``point_config``: that encoder's config fields
    as a dict (``PointEncoderConfig`` / ``SonataConfig``; defaults: SpatialLM v1.0 encoder shape at 1280
    bins). ``projector``: ``"linear"`` (Linear(D, hidden), SpatialLM v1.0) or ``"mlp"``
    (Linear(D, D) -> GELU -> Linear(D, hidden)); D is the encoder's ``embed_dim``.
    ``token_labels``: labels (``wall``, ``door``, ``window``, box categories) of an optional linear head on
    the encoder tokens, trained with ``token_loss_weight`` x a per-token binary cross-entropy on which of
    them each token's cell touches (``spacelm.model.token_targets``); None (SpatialLM): no head.
    ``token_extent_weight``: > 0 gives the head six more outputs, trained with that weight x a mean squared
    error against where in its cell each token's voxels lie (``token_extents``), so that the label loss
    does not wipe the within-cell position out of the features; 0: none.
    ``token_head_input``: what the head reads: ``"tokens"``, the encoder's output that the projector also
    reads, or ``"backbone"``, the sparse ResNet's output before the position mix (``input_proj``), so the
    head's gradient shapes what a cell holds and leaves how tokens carry their position to the LM's loss,
    or ``"branch"``: a second encoder of its own (``token_branch``: ``PointEncoderConfig`` fields that
    differ from ``point_config``'s; the grid and token stride must match), trained by the head's loss
    only; the head's label probabilities, detached, go through ``marks_projector`` (Linear(C, hidden))
    and are added to the point tokens, so the LM reads the marks while its own encoder is shaped by the
    LM's loss alone (the head on the shared encoder blurs the walls: docs/training.md).
    ``token_marks_scale``: the probabilities are multiplied by this before ``marks_projector``, so that C
    marks among D features move the tokens as fast as the head on the shared encoder does (Adam's step is
    the same whatever an input's scale, so the marks' share of a token grows with it).
    """

    model_type = "spacelm_spatiallm"
    # The classic dict form: recent 5.x releases wrap it in ``SubConfigSpec`` objects, older ones read it
    # as is; we build ``text_config`` ourselves in ``__post_init__`` so both behave the same.
    sub_configs = {"text_config": AutoConfig}

    text_config: dict | PreTrainedConfig | None = None
    point_backbone: str = "scenescript"
    point_config: dict | None = None
    projector: str = "linear"
    point_start_token_id: int | None = None
    point_end_token_id: int | None = None
    point_token_id: int | None = None
    token_labels: list[str] | None = None
    token_loss_weight: float = 1.0
    token_extent_weight: float = 0.0
    token_head_input: str = "tokens"
    token_branch: dict | None = None
    token_marks_scale: float = 1.0

    def __post_init__(self, **kwargs):
        if self.text_config is None:
            self.text_config = CONFIG_MAPPING[DEFAULT_TEXT_MODEL_TYPE]()
        elif isinstance(self.text_config, dict):
            text = dict(self.text_config)
            model_type = text.pop("model_type", DEFAULT_TEXT_MODEL_TYPE)
            self.text_config = CONFIG_MAPPING[model_type](**text)
        # Round-trip through the dataclass: fills defaults and rejects unknown keys or a bad backend.
        if self.point_backbone not in POINT_BACKBONES:
            raise ValueError(f"point_backbone must be one of {tuple(POINT_BACKBONES)}, got {self.point_backbone!r}")
        self.point_config = POINT_BACKBONES[self.point_backbone].from_dict(self.point_config or {}).to_dict()
        if self.projector not in PROJECTORS:
            raise ValueError(f"projector must be one of {PROJECTORS}, got {self.projector!r}")
        if self.token_labels:
            self.token_labels = [str(label) for label in self.token_labels]
            if len(set(self.token_labels)) != len(self.token_labels):
                raise ValueError(f"token_labels has duplicates: {self.token_labels}")
        else:
            self.token_labels = None
        if not (self.token_extent_weight >= 0):  # also refuses NaN
            raise ValueError(f"token_extent_weight must be >= 0, got {self.token_extent_weight}")
        if self.token_head_input not in TOKEN_HEAD_INPUTS:
            raise ValueError(f"token_head_input must be one of {TOKEN_HEAD_INPUTS}, got {self.token_head_input!r}")
        if self.token_head_input == "branch":
            if not self.token_labels:
                raise ValueError("token_head_input 'branch' adds the head's label marks to the tokens: "
                                 "set token_labels too")
            branch = PointEncoderConfig.from_dict({**self.point_config, **(self.token_branch or {})})
            main = PointEncoderConfig.from_dict(self.point_config)
            if (branch.num_bins, branch.token_stride) != (main.num_bins, main.token_stride):
                raise ValueError(f"token_branch must keep point_config's num_bins ({main.num_bins}) and "
                                 f"number of down-convs ({len(main.channels) - 1}), so that its tokens are "
                                 "the same cells")
            self.token_branch = branch.to_dict()
            if not (0 < self.token_marks_scale < float("inf")):  # also refuses NaN
                raise ValueError(f"token_marks_scale must be finite and > 0, got {self.token_marks_scale}")
        elif self.token_branch:
            raise ValueError("token_branch is the head's own encoder: set token_head_input to 'branch'")
        else:
            self.token_branch = None
        if (self.token_labels or self.token_extent_weight) and self.point_backbone != "scenescript":
            raise ValueError("token_labels and token_extent_weight need the scenescript point backbone "
                             "(its tokens are grid cells)")
        super().__post_init__(**kwargs)

    @property
    def point_encoder_config(self) -> PointEncoderConfig | SonataConfig:
        """``point_config`` as the encoder's dataclass."""
        return POINT_BACKBONES[self.point_backbone].from_dict(self.point_config)

    @property
    def token_branch_config(self) -> PointEncoderConfig | None:
        """``token_branch`` as the encoder's dataclass (None unless ``token_head_input`` is ``branch``)."""
        return None if self.token_branch is None else PointEncoderConfig.from_dict(self.token_branch)

    @property
    def point_token_ids(self) -> list[int]:
        """Ids of ``<|point_start|>``, ``<|point_pad|>`` and ``<|point_end|>`` (those that are set)."""
        ids = (self.point_start_token_id, self.point_token_id, self.point_end_token_id)
        return [i for i in ids if i is not None]

    @property
    def num_bins(self) -> int:
        """Voxel grid size per axis, shared by the point transforms and the layout quantizer."""
        return self.point_config["num_bins"]
