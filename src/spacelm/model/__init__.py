"""Neural parts of spacelm: the sparse point encoder and the transformers model classes.

Everything here imports torch and transformers; ``import spacelm`` alone imports neither. ``sparse_conv``
holds the sparse 3D convolution layers in plain PyTorch, ``point_encoder`` the SceneScript sparse ResNet
built from them, ``configuration_spatiallm`` / ``modeling_spatiallm`` / ``processing_spatiallm`` the
SpatialLM config, model and processor.

Importing this package registers the config and model with ``AutoConfig`` and ``AutoModelForCausalLM``,
so ``AutoModelForCausalLM.from_pretrained(saved_dir)`` works without ``trust_remote_code``.
"""

from transformers import AutoConfig, AutoModelForCausalLM

from spacelm.model.configuration_spatiallm import SpatialLMConfig
from spacelm.model.modeling_spatiallm import SpatialLMForCausalLM
from spacelm.model.processing_spatiallm import SpatialLMProcessor

AutoConfig.register(SpatialLMConfig.model_type, SpatialLMConfig, exist_ok=True)
AutoModelForCausalLM.register(SpatialLMConfig, SpatialLMForCausalLM, exist_ok=True)

__all__ = ["SpatialLMConfig", "SpatialLMForCausalLM", "SpatialLMProcessor"]
