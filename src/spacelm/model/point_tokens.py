"""The three point tokens SpatialLM's prompt holds, and the point inputs of the model's ``forward``.

Their own module so that the processor imports them without the model (and the model without the
processor): ``<|point_start|>`` and ``<|point_end|>`` frame the cloud, one ``<|point_pad|>`` per encoder
token stands in for its features.
"""

POINT_START_TOKEN = "<|point_start|>"
POINT_PAD_TOKEN = "<|point_pad|>"
POINT_END_TOKEN = "<|point_end|>"
POINT_TOKENS = (POINT_START_TOKEN, POINT_PAD_TOKEN, POINT_END_TOKEN)
POINT_INPUTS = ("point_coords", "point_features", "point_batch")
