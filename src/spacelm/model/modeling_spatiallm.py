"""``SpatialLMForCausalLM``: point encoder + projector + any causal LM, merged LLaVA-style.

The processor writes one ``<|point_pad|>`` token per encoder token into the prompt; ``forward`` embeds
the text, runs the encoder on the batch's point clouds, projects the tokens to the LM width and
``masked_scatter``s them into the pad positions, in order (sample 0's tokens first). The sequence
length never changes inside ``forward``, so masks, labels and the KV cache are the LM's own business.
SpatialLM instead splices the features in place of a single pad token and re-pads the batch, which is
why it pins transformers <= 4.46.

Point clouds are batched Pointcept-style, without padding: ``point_coords (N, 3) int64`` voxel coords of
all clouds concatenated, ``point_batch (N,) int64`` the sample each row belongs to, ``point_features
(N, 6) float`` (xyz metres after the positive shift, rgb in [-1, 1]). ``SpatialLMProcessor`` builds them.

The encoder always holds and computes float32, also in a bf16 model (SpatialLM does the same). The
language model is composed, not subclassed: ``language_model = AutoModelForCausalLM.from_config(...)``,
so Qwen2, Llama or any other causal LM works unchanged; its keys sit under ``language_model.``.
"""

from __future__ import annotations

import copy
import functools
import inspect

import torch
from torch import Tensor, nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationMixin,
    PreTrainedModel,
)
from transformers.utils import logging

from spacelm.model.configuration_spatiallm import PROJECTORS, SpatialLMConfig
from spacelm.model.point_encoder import PointEncoder, PointEncoderOutput
from spacelm.model.point_tokens import (  # noqa: F401  (POINT_*_TOKEN re-exported for callers)
    POINT_END_TOKEN,
    POINT_INPUTS,
    POINT_PAD_TOKEN,
    POINT_START_TOKEN,
    POINT_TOKENS,
)
from spacelm.model.sonata import Sonata
from spacelm.model.token_targets import EXTENT_OUTPUTS, token_extents, token_targets

logger = logging.get_logger(__name__)


def build_projector(kind: str, in_dim: int, hidden_size: int) -> nn.Module:
    """SpatialLM's ``point_proj``: ``linear`` = Linear(D, H);
    ``mlp`` = Linear(D, D) -> GELU -> Linear(D, H)."""
    if kind == "linear":
        return nn.Linear(in_dim, hidden_size)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, hidden_size))
    raise ValueError(f"projector must be one of {PROJECTORS}, got {kind!r}")


class SpatialLMForCausalLM(PreTrainedModel, GenerationMixin):
    """Point cloud + prompt -> layout text.

    >>> from spacelm.model.configuration_spatiallm import SpatialLMConfig
    >>> cfg = SpatialLMConfig(text_config={"hidden_size": 32, "num_hidden_layers": 1,
    ...     "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 64, "vocab_size": 50},
    ...     point_config={"channels": [8, 8, 8, 8, 8], "embed_dim": 16, "num_bins": 64}, point_token_id=3)
    >>> model = SpatialLMForCausalLM(cfg)
    >>> out = model(input_ids=torch.tensor([[1, 3, 3, 2]]),  # two pads for two token cells
    ...             point_coords=torch.tensor([[0, 0, 0], [40, 3, 2]]), point_features=torch.zeros(2, 6),
    ...             point_batch=torch.tensor([0, 0]))
    >>> out.logits.shape
    torch.Size([1, 4, 50])
    """

    config: SpatialLMConfig
    config_class = SpatialLMConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    # bf16/fp16 loads keep the encoder in float32 (the non-strict list only covers fp16).
    _keep_in_fp32_modules = ["point_encoder", "token_branch"]
    _keep_in_fp32_modules_strict = ["point_encoder", "token_branch"]
    _skip_keys_device_placement = ["cache", "past_key_values"]
    # Attention lives in the language model; these only let its implementation be chosen through us.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: SpatialLMConfig, *, language_model: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        encoder_config = config.point_encoder_config
        # Built float32 whatever the default dtype (from_config(dtype=bf16) sets it while we are built).
        encoder_class = Sonata if config.point_backbone == "sonata" else PointEncoder
        self.point_encoder = encoder_class(encoder_config).float()
        self.projector = build_projector(config.projector, encoder_config.embed_dim,
                                         config.text_config.hidden_size)
        # Head of the token-supervision loss (spacelm.model.token_targets); not SpatialLM's. Training-only,
        # except with token_head_input "branch", where its marks feed the LM at inference too.
        head_outputs = len(config.token_labels or ()) + (EXTENT_OUTPUTS if config.token_extent_weight else 0)
        branch_config = config.token_branch_config
        # token_head_input "branch": the head's own encoder, and the projection of its marks into the LM.
        self.token_branch = PointEncoder(branch_config).float() if branch_config else None
        self.marks_projector = (nn.Linear(len(config.token_labels), config.text_config.hidden_size)
                                if branch_config else None)
        head_width = (branch_config or encoder_config).embed_dim
        self.token_head = nn.Linear(head_width, head_outputs) if head_outputs else None
        if language_model is None:
            language_model = AutoModelForCausalLM.from_config(config.text_config)
        elif language_model.config is not config.text_config:
            raise ValueError("language_model.config must be the config's text_config object")
        self.language_model = language_model
        self.post_init()

    # ---- embeddings: all owned by the language model -------------------------------------------

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module | None:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def resize_token_embeddings(self, *args, **kwargs) -> nn.Embedding:
        # config.text_config is the language model's config object, so its vocab_size follows.
        return self.language_model.resize_token_embeddings(*args, **kwargs)

    def get_decoder(self) -> nn.Module:
        return self.language_model.get_decoder()

    # ---- dtype policy ----------------------------------------------------------------------------

    def _apply(self, fn, *args, **kwargs):
        # ``_keep_in_fp32_modules`` covers loading only; ``model.to(torch.bfloat16)`` / ``.half()`` after it
        # (a DeepSpeed ZeRO engine with bf16 does this) would cast the encoder too. It must stay float32, so
        # undo that after any cast, and say so once. Device moves are unaffected.
        super()._apply(fn, *args, **kwargs)
        encoders = [getattr(self, name, None) for name in ("point_encoder", "token_branch")]
        encoders = [e for e in encoders if e is not None]  # absent while __init__ runs, or no branch
        if any(p.dtype != torch.float32 for e in encoders for p in e.parameters()):
            for encoder in encoders:
                encoder.float()
            logger.warning_once("the point encoder stays float32 (as SpatialLM's point backbone); the "
                                "cast applies to the language model and projector")
        return self

    def _init_weights(self, module: nn.Module) -> None:
        # transformers re-draws Linear/GroupNorm weights from N(0, 0.02); the encoder keeps PyTorch's own
        # initialisation (its sparse kernels are drawn in their constructor).
        encoders = [self.point_encoder] + ([self.token_branch] if self.token_branch is not None else [])
        if any(module is m for e in encoders for m in e.modules()):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            return
        super()._init_weights(module)

    # ---- forward ---------------------------------------------------------------------------------

    def get_point_features(self, point_coords: Tensor, point_features: Tensor, point_batch: Tensor,
                           batch_size: int) -> tuple[Tensor, Tensor]:
        """Encode and project a batch of clouds: ``(T, hidden)`` in the projector's dtype, ``(B,)`` counts.

        Tokens come sample by sample (sample 0's first), the order ``masked_scatter`` fills pad tokens in.
        """
        kernel_maps: dict = {}
        encoded, counts = self._encode_points(point_coords, point_features, point_batch, batch_size, kernel_maps)
        branch = self._encode_branch(encoded, point_coords, point_features, point_batch, kernel_maps)
        return self._project(encoded, branch), counts

    def _encode_branch(self, encoded: PointEncoderOutput, point_coords: Tensor, point_features: Tensor,
                       point_batch: Tensor, kernel_maps: dict | None = None) -> PointEncoderOutput | None:
        """The head's own encoder on the same voxels (``token_head_input: branch``), else None.
        ``kernel_maps``: the point encoder's, filled by ``_encode_points`` (the same voxels and strides)."""
        if self.token_branch is None:
            return None
        device = self.token_branch.input_proj.weight.device
        coords = torch.cat([point_batch.long()[:, None], point_coords.long()], dim=1).to(device)  # (N, 4)
        branch = self.token_branch(coords, point_features.to(device), kernel_maps)
        if not torch.equal(branch.coords, encoded.coords):  # same grid and stride: checked in the config
            raise RuntimeError("the token branch's cells differ from the point encoder's")
        return branch

    def _project(self, encoded: PointEncoderOutput, branch: PointEncoderOutput | None) -> Tensor:
        """``(T, hidden)`` point tokens for the LM: the projected encoder tokens, plus with a token branch
        the projection of its head's label probabilities. Those are detached: the LM's loss reaches the
        marks' projection, never the branch, whose only teacher is the head's label loss."""
        proj_dtype = next(self.projector.parameters()).dtype
        tokens = self.projector(encoded.features.to(proj_dtype))  # (T, hidden)
        if branch is None:
            return tokens
        logits = self.token_head(branch.features.to(self.token_head.weight.dtype))[:, :len(self.config.token_labels)]
        marks = self.config.token_marks_scale * torch.sigmoid(logits).detach().to(proj_dtype)  # (T, C)
        return tokens + self.marks_projector(marks)

    def _encode_points(self, point_coords: Tensor, point_features: Tensor, point_batch: Tensor,
                       batch_size: int, kernel_maps: dict | None = None) -> tuple[PointEncoderOutput, Tensor]:
        """The encoder's output for a batch, and its ``(B,)`` token counts padded to ``batch_size``.
        ``kernel_maps``: a dict the encoder fills with its neighbour maps, for the token branch to reuse."""
        if point_features is None or point_batch is None:
            raise ValueError("point_coords needs point_features and point_batch as well")
        device = self.point_encoder.input_proj.weight.device
        coords = torch.cat([point_batch.long()[:, None], point_coords.long()], dim=1).to(device)  # (N, 4)
        # Sonata has no kernel maps to share (the token branch needs the SceneScript encoder).
        shared = (kernel_maps,) if isinstance(self.point_encoder, PointEncoder) and kernel_maps is not None else ()
        encoded = self.point_encoder(coords, point_features.to(device), *shared)
        counts = encoded.counts
        if len(counts) > batch_size:
            raise ValueError(f"point_batch holds sample index {len(counts) - 1} but the text batch has "
                             f"{batch_size} rows")
        return encoded, nn.functional.pad(counts, (0, batch_size - len(counts)))  # text-only rows at the end

    def token_loss(self, encoded: PointEncoderOutput, voxel_coords: Tensor, token_boxes: Tensor | None,
                   branch: PointEncoderOutput | None = None) -> Tensor:
        """The token head's weighted loss: ``token_loss_weight`` x the mean binary cross-entropy of its
        label outputs against ``token_targets`` of ``token_boxes (K, 8)`` (when given), plus
        ``token_extent_weight`` x the mean squared error of its last six outputs against ``token_extents``.
        ``branch``: the token branch's output, which the head then reads (``token_head_input: branch``)."""
        if self.token_head is None:
            raise ValueError("token_boxes given but the model has no token head; set config.token_labels")
        config, stride = self.config, self.config.point_encoder_config.token_stride
        if config.token_head_input == "branch":
            if branch is None:
                raise ValueError("token_head_input 'branch' needs the branch's output")
            features = branch.features  # (T, D of the branch)
        else:
            features = encoded.backbone if config.token_head_input == "backbone" else encoded.features  # (T, D)
        outputs = self.token_head(features.to(self.token_head.weight.dtype))  # (T, C [+ 6])
        num_labels = len(config.token_labels or ())
        loss = outputs.new_zeros(())
        if token_boxes is not None and num_labels:
            logits = outputs[:, :num_labels]
            targets = token_targets(encoded.coords, stride, token_boxes, num_labels)
            loss = loss + config.token_loss_weight * nn.functional.binary_cross_entropy_with_logits(logits, targets)
        if config.token_extent_weight:
            extents = token_extents(voxel_coords, encoded.coords, stride)
            loss = loss + config.token_extent_weight * nn.functional.mse_loss(outputs[:, num_labels:], extents)
        return loss

    def _scatter_points(self, input_ids: Tensor, inputs_embeds: Tensor, features: Tensor,
                        counts: Tensor) -> Tensor:
        """Put ``features (T, H)`` into the ``<|point_pad|>`` rows of ``inputs_embeds (B, L, H)``."""
        pad_mask = input_ids == self.config.point_token_id  # (B, L)
        n_pads = pad_mask.sum(dim=1)
        if not torch.equal(n_pads.cpu(), counts.cpu()):
            raise ValueError(
                f"<|point_pad|> tokens per sample {n_pads.tolist()} differ from point features per sample "
                f"{counts.tolist()}; build the prompt with SpatialLMProcessor so that each cloud's pad count "
                "equals count_tokens(its grid coords)"
            )
        mask = pad_mask.unsqueeze(-1).expand_as(inputs_embeds).to(inputs_embeds.device)
        return inputs_embeds.masked_scatter(mask, features.to(inputs_embeds.device, inputs_embeds.dtype))

    def _points_in_cache(self, input_ids: Tensor | None, cache) -> bool:
        """True when a filled cache already holds the point tokens and ``input_ids`` has no pads: a
        continuation step (``generate`` resuming from a cache). Any pad token means prefill."""
        if cache is None or cache.get_seq_length() == 0 or input_ids is None:
            return False
        return not bool((input_ids == self.config.point_token_id).any())

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache=None,
        inputs_embeds: Tensor | None = None,
        point_coords: Tensor | None = None,
        point_features: Tensor | None = None,
        point_batch: Tensor | None = None,
        labels: Tensor | None = None,
        token_boxes: Tensor | None = None,
        logits_to_keep: int | Tensor = 0,
        past_key_values=None,
        **kwargs,
    ):
        """Causal-LM forward. ``input_ids (B, L)``; point inputs as in the module docstring.

        The encoder runs when point inputs are given, unless a filled cache already holds them and
        ``input_ids`` has no ``<|point_pad|>`` (a decoding step). The pads of each sample must number
        exactly its encoder tokens, else ``ValueError``.

        The KV cache comes as ``cache`` (what ``generate`` passes from transformers 5.2x on) or as
        ``past_key_values`` (the older name); it goes to the language model under the name its forward
        takes, since passing the old name there is deprecated (a ``FutureWarning`` per call).

        Returns the language model's output (``loss`` when ``labels`` are given, -100 = ignored). With
        ``token_boxes`` (the collator's, when ``config.token_labels`` is set) and ``labels``, the loss also
        holds ``config.token_loss_weight`` x the token head's label loss; with ``labels`` and
        ``config.token_extent_weight`` > 0, that weight x its extent loss (``token_loss``).
        """
        cache = cache if cache is not None else past_key_values
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)  # (B, L, H)
        token_loss = None
        if point_coords is not None and not self._points_in_cache(input_ids, cache):
            if input_ids is None:
                raise ValueError("point inputs need input_ids to find the <|point_pad|> tokens")
            if self.config.point_token_id is None:
                raise ValueError("config.point_token_id is not set; build the model with from_base_lm")
            kernel_maps: dict = {}
            encoded, counts = self._encode_points(point_coords, point_features, point_batch, len(input_ids),
                                                  kernel_maps)
            branch = self._encode_branch(encoded, point_coords, point_features, point_batch, kernel_maps)
            if labels is not None and (token_boxes is not None or self.config.token_extent_weight):
                voxel_coords = torch.cat([point_batch.long()[:, None], point_coords.long()], dim=1)  # (N, 4)
                token_loss = self.token_loss(encoded, voxel_coords, token_boxes, branch)
            features = self._project(encoded, branch)
            inputs_embeds = self._scatter_points(input_ids, inputs_embeds, features, counts)
        if labels is not None and cache is None:
            kwargs.setdefault("use_cache", False)  # a loss needs no KV cache (nor does checkpointing allow one)
        output = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            labels=labels,
            logits_to_keep=logits_to_keep,
            **{_cache_keyword(type(self.language_model)): cache},
            **kwargs,
        )
        if token_loss is not None and output.loss is not None:
            output.loss = output.loss + token_loss.to(output.loss.dtype)
        return output

    # ---- generation ------------------------------------------------------------------------------

    def prepare_inputs_for_generation(self, *args, is_first_iteration: bool | None = False, **kwargs):
        model_inputs = super().prepare_inputs_for_generation(
            *args, is_first_iteration=is_first_iteration, **kwargs)
        # With a cache only the prefill sees the pad tokens; later steps feed one new token each.
        if not is_first_iteration and kwargs.get("use_cache", True):
            for key in POINT_INPUTS:
                model_inputs.pop(key, None)
        return model_inputs

    def _expand_inputs_for_generation(self, expand_size: int = 1, is_encoder_decoder: bool = False,
                                      input_ids: Tensor | None = None, **model_kwargs):
        # The generic expansion repeats every tensor along dim 0, which for (N, ...) point rows would
        # duplicate points inside each cloud instead of duplicating clouds.
        points = {key: model_kwargs.pop(key, None) for key in POINT_INPUTS}
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size=expand_size, is_encoder_decoder=is_encoder_decoder, input_ids=input_ids,
            **model_kwargs)
        if points["point_coords"] is not None and expand_size > 1:
            points = expand_point_batch(**points, expand_size=expand_size)
        model_kwargs.update({key: value for key, value in points.items() if value is not None})
        return input_ids, model_kwargs

    # ---- construction from a plain LM ------------------------------------------------------------

    @classmethod
    def from_base_lm(cls, name_or_path: str, *, point_config: dict | None = None, projector: str = "linear",
                     point_backbone: str = "scenescript", token_labels: list[str] | None = None,
                     token_loss_weight: float = 1.0, token_extent_weight: float = 0.0,
                     token_head_input: str = "tokens", token_branch: dict | None = None,
                     token_marks_scale: float = 1.0,
                     dtype: torch.dtype | str | None = None,
                     processor_kwargs: dict | None = None,
                     **lm_kwargs):
        """A fresh SpatialLM around a pretrained causal LM: ``(model, processor)``.

        Loads the LM and its tokenizer, adds ``<|point_start|>``, ``<|point_pad|>``, ``<|point_end|>`` as
        special tokens (growing the embeddings only if the vocabulary has no spare rows: Qwen2.5's does),
        and builds a new float32 encoder (``point_backbone`` ``"scenescript"`` or ``"sonata"``) and a
        projector in the LM's dtype. ``dtype=None`` keeps the
        checkpoint's dtype (transformers' ``"auto"``: bf16 for Qwen2.5). ``lm_kwargs`` go to
        ``AutoModelForCausalLM.from_pretrained``; ``processor_kwargs`` to ``SpatialLMProcessor`` (e.g.
        ``{"system_prompt": None}`` for SpatialLM's Llama variant, which has no system turn).
        ``token_labels``, ``token_loss_weight``, ``token_extent_weight``, ``token_head_input``,
        ``token_branch``, ``token_marks_scale``: the optional token-supervision head (``SpatialLMConfig``).

        ``SpatialLMForCausalLM.from_base_lm("Qwen/Qwen2.5-0.5B-Instruct", point_config={"num_bins": 1280})``
        """
        from spacelm.model.processing_spatiallm import SpatialLMProcessor

        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        tokenizer.add_tokens(list(POINT_TOKENS), special_tokens=True)
        language_model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype, **lm_kwargs)
        if len(tokenizer) > language_model.get_input_embeddings().num_embeddings:
            # Only LMs without spare rows get here (Qwen2.5 has 271): the three new rows start like the
            # LM's own initialisation (mean_resizing=False, which also skips transformers' notice).
            language_model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        point_start, point_pad, point_end = tokenizer.convert_tokens_to_ids(list(POINT_TOKENS))
        config = SpatialLMConfig(
            text_config=language_model.config,
            point_backbone=point_backbone,
            point_config=point_config,
            projector=projector,
            token_labels=token_labels,
            token_loss_weight=token_loss_weight,
            token_extent_weight=token_extent_weight,
            token_head_input=token_head_input,
            token_branch=token_branch,
            token_marks_scale=token_marks_scale,
            point_start_token_id=point_start,
            point_end_token_id=point_end,
            point_token_id=point_pad,
            # A new composite config would otherwise reset the LM config's attention choice to None.
            attn_implementation=language_model.config._attn_implementation,
        )
        model = cls(config, language_model=language_model)
        model.projector.to(language_model.dtype)
        if model.marks_projector is not None:
            model.marks_projector.to(language_model.dtype)
        model.generation_config = copy.deepcopy(language_model.generation_config)
        processor = SpatialLMProcessor(tokenizer, num_bins=config.num_bins,
                                       token_stride=config.point_encoder_config.token_stride,
                                       **(processor_kwargs or {}))
        return model, processor


@functools.cache
def _cache_keyword(lm_class: type) -> str:
    """The keyword ``lm_class.forward`` takes the KV cache by: ``cache``, or ``past_key_values`` in
    transformers releases before the rename (``inspect`` sees through ``deprecate_kwarg``'s wrapper)."""
    return "cache" if "cache" in inspect.signature(lm_class.forward).parameters else "past_key_values"


def expand_point_batch(point_coords: Tensor, point_features: Tensor, point_batch: Tensor,
                       expand_size: int) -> dict[str, Tensor]:
    """Repeat each cloud ``expand_size`` times, cloud ``b`` becoming samples ``b*E .. b*E + E-1``.

    Matches ``input_ids.repeat_interleave(E, dim=0)``, which ``generate`` uses for beams and
    ``num_return_sequences``.

    >>> out = expand_point_batch(torch.zeros(3, 3), torch.zeros(3, 6), torch.tensor([0, 1, 1]), 2)
    >>> out["point_batch"].tolist()
    [0, 2, 2, 1, 3, 3]
    """
    replica = torch.arange(expand_size, device=point_batch.device).repeat_interleave(len(point_batch))
    return {
        "point_coords": point_coords.repeat(expand_size, 1),  # (E*N, 3)
        "point_features": point_features.repeat(expand_size, 1),
        "point_batch": point_batch.repeat(expand_size) * expand_size + replica,
    }
