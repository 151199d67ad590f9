"""Supervised training of SpatialLM models: two stages on the HF ``Trainer`` (``accelerate launch`` ready).

- ``args``: the typed run configuration (``TrainConfig``) and its YAML loader (``load_config``).
- ``data``: ``LayoutDataset``, rooms read from dataset folders or SpatialLM ShareGPT files on the fly.
- ``sft``: ``train(config, stage)``: stage 1 (encoder + projector + new token rows, LM frozen), stage 2
  (everything, or LoRA on the LM), resumable from the last checkpoint.

``import spacelm.train`` imports nothing heavy; ``data`` and ``sft`` import torch and transformers.
"""

from spacelm.train.args import ConfigError, TrainConfig, config_from_dict, load_config  # noqa: F401
