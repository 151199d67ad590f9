"""SceneScript's sparse ResNet point encoder (``ResNet3DSparse`` + Fourier token head), as in SpatialLM v1.0.

Voxels (grid coords + 6 features: metric xyz after the positive shift, rgb in [-1, 1]) go through

- stem: conv k7 (``stem_kernel``) -> GroupNorm -> ReLU, one ResBlock (stride 1);
- four stages: conv k2 stride 2 -> GroupNorm -> ReLU, two ResBlocks (strides 2, 4, 8, 16);
- bottleneck on each stride-16 token: Linear(C, 2C) -> GroupNorm(8, 2C) -> ReLU -> Linear(2C, D);
- head: ``[token (D) | Fourier features of its stride-16 coords (63)] -> Linear -> D``.

ResBlock = conv-GN-ReLU (k3) twice, plus the block input; no activation after the add. Convs are bias-free,
GroupNorm has ``min(8, C)`` groups. Module and parameter names follow SceneScript's (``sparse_resnet.stem``,
``sparse_resnet.blocks``, ``kernel``, ``input_proj``), so their checkpoint keys match ours after the prefix;
their kernels still need the offsets reordered (torchsparse orders odd kernels x fastest, ours z fastest; the
sign convention is unverified without a torchsparse run). SceneScript also adds a learned "legacy" vector to
every token after ``input_proj``; a constant after a biased Linear changes nothing, so we leave it out: fold
it into ``input_proj.bias`` when loading their weights.

The encoder always computes in float32, as SpatialLM forces its point backbone to; autocast is switched off
inside ``forward`` and the caller casts the output to the language model's dtype.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from spacelm.model.sparse_conv import (
    BACKENDS,
    DownConv3d,
    SparseGroupNorm,
    SparseTensor,
    SubmanifoldConv3d,
)


@dataclass(frozen=True)
class PointEncoderConfig:
    """Shape of the encoder. Plain and JSON-serialisable; the transformers config wraps it.

    ``num_bins`` is the voxel grid size per axis (SpatialLM: 640 at 5 cm for v1.0, 1280 at 2.5 cm for v1.1);
    stride-16 token coordinates are divided by ``num_bins // 16 - 1`` before the Fourier features.
    """

    input_channels: int = 6
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    embed_dim: int = 512
    num_bins: int = 1280
    num_fourier_freqs: int = 10
    backend: str = "torch"
    # SceneScript's stem is k7 (342 neighbour offsets, ~40% of a small encoder's CPU time); a cheaper
    # k3 or k5 stem is a configuration choice for models trained from scratch.
    stem_kernel: int = 7

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))  # from_dict hands us a list
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.stem_kernel not in (3, 5, 7):
            raise ValueError(f"stem_kernel must be 3, 5 or 7, got {self.stem_kernel}")
        if self.num_bins // self.token_stride < 2:
            raise ValueError(f"num_bins={self.num_bins} leaves fewer than 2 token cells per axis")

    @property
    def token_stride(self) -> int:
        """Input voxels per token cell along each axis: 2 ** (number of down-convs)."""
        return 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict) -> PointEncoderConfig:
        return cls(**data)


class PointEncoderOutput(NamedTuple):
    """Tokens of a batch, concatenated in (batch, x, y, z) order.

    ``features``: (T, D) float32. ``coords``: (T, 4) int64 ``[batch, x, y, z]`` in token cells (input grid
    coords // token_stride). ``counts``: (B,) int64 tokens per sample; ``features.split(counts.tolist())``
    gives each sample's tokens. ``backbone``: (T, D) the sparse ResNet's output before the cell's position
    is mixed in (``PointEncoder`` only; None for Sonata).
    """

    features: Tensor
    coords: Tensor
    counts: Tensor
    backbone: Tensor | None = None


def fourier_features(values: Tensor, num_freqs: int = 10) -> Tensor:
    """SceneScript's Fourier encoding: (T, A) values in [0, 1] -> (T, A * (2F + 1)).

    Frequencies are ``linspace(1, 30, F) * pi``. The layout is SceneScript's, axis fastest:
    ``[v, sin(f1 v), cos(f1 v), sin(f2 v), cos(f2 v), ...]`` where each entry holds all A axes.

    >>> fourier_features(torch.zeros(1, 3))[0, :12].tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    """
    freqs = (torch.linspace(1.0, 30.0, num_freqs) * math.pi).to(values)  # fp32 first, as SceneScript
    angles = freqs[:, None] * values[:, None, :]  # (T, F, A)
    waves = torch.stack([angles.sin(), angles.cos()], dim=2).flatten(1, 2)  # (T, 2F, A)
    return torch.cat([values[:, None, :], waves], dim=1).flatten(1)


def count_tokens(coords: Tensor | np.ndarray, token_stride: int = 16) -> Tensor:
    """(B,) int64 tokens the encoder will produce, without running it.

    ``coords``: (N, 4) ``[batch, x, y, z]`` or, for one cloud, (N, 3) ``[x, y, z]`` integer grid coords. A
    token is an occupied cell of ``token_stride`` voxels per axis, so this equals the encoder's ``counts``.

    >>> count_tokens(np.array([[0, 0, 0], [15, 15, 15], [16, 0, 0]])).tolist()
    [2]
    """
    coords = torch.as_tensor(coords).long()
    if coords.shape[0] == 0:
        raise ValueError("empty point cloud: coords has no rows")
    if coords.shape[1] == 3:
        coords = torch.cat([coords.new_zeros(len(coords), 1), coords], dim=1)
    cells = torch.cat([coords[:, :1], torch.div(coords[:, 1:], token_stride, rounding_mode="floor")], dim=1)
    # One int64 key per cell: unique on a vector is ~10x faster than torch.unique(dim=0) on CPU.
    cells[:, 1:] -= cells[:, 1:].amin(0)
    side = int(cells[:, 1:].max()) + 1
    if (int(cells[:, 0].max()) + 1) * side**3 >= 2**63:  # the int64 keys below would overflow
        raise ValueError(f"coords span {side} token cells per axis, too many to count; "
                         "the cloud is far larger than the voxel grid")
    keys = ((cells[:, 0] * side + cells[:, 1]) * side + cells[:, 2]) * side + cells[:, 3]
    occupied = torch.unique(keys) // side**3  # batch index of each occupied cell
    return torch.bincount(occupied, minlength=int(coords[:, 0].max()) + 1)


def _conv_norm_relu(conv: nn.Module) -> nn.Sequential:
    channels = conv.out_channels
    return nn.Sequential(conv, SparseGroupNorm(min(8, channels), channels), SparseReLU())


class SparseReLU(nn.Module):
    """In-place ReLU on the features. In place is safe after GroupNorm (its last op, the bias add, keeps no
    output) and saves one (N, C) activation per layer in training."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_features(torch.relu_(x.features))


class SparseResBlock(nn.Module):
    """Two conv-GN-ReLU (k3) layers plus the block input, no activation after the add: (N, C) -> (N, C)."""

    def __init__(self, channels: int, backend: str = "torch") -> None:
        super().__init__()
        self.block0 = _conv_norm_relu(SubmanifoldConv3d(channels, channels, 3, backend))
        self.block1 = _conv_norm_relu(SubmanifoldConv3d(channels, channels, 3, backend))

    def forward(self, x: SparseTensor) -> SparseTensor:
        out = self.block1(self.block0(x))
        return out.replace_features(x.features + out.features)


class ResNet3DSparse(nn.Module):
    """Stem, stride-2 stages, per-token bottleneck: (N, Cin) voxels -> (T, D) tokens at ``token_stride``."""

    def __init__(self, config: PointEncoderConfig) -> None:
        super().__init__()
        ch, backend = config.channels, config.backend
        self.stem = nn.Sequential(
            _conv_norm_relu(SubmanifoldConv3d(config.input_channels, ch[0], config.stem_kernel, backend)),
            SparseResBlock(ch[0], backend),
        )
        self.blocks = nn.Sequential(
            *(
                nn.Sequential(
                    _conv_norm_relu(DownConv3d(c_in, c_out, backend)),
                    SparseResBlock(c_out, backend),
                    SparseResBlock(c_out, backend),
                )
                for c_in, c_out in zip(ch[:-1], ch[1:])
            )
        )
        hidden = 2 * ch[-1]
        # nn.GroupNorm on a (T, hidden) matrix normalises each token over 8 channel groups.
        self.bottleneck = nn.Sequential(
            nn.Linear(ch[-1], hidden),
            nn.GroupNorm(8, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, config.embed_dim),
        )

    def forward(self, x: SparseTensor) -> SparseTensor:
        out = self.blocks(self.stem(x))
        return out.replace_features(self.bottleneck(out.features))


class PointEncoder(nn.Module):
    """Voxelised point clouds -> stride-16 tokens with their coordinates (SceneScript ``PointCloudEncoder``).

    >>> cfg = PointEncoderConfig(channels=(8, 8, 8, 8, 8), embed_dim=16, num_bins=64)
    >>> out = PointEncoder(cfg)(torch.tensor([[0, 0, 0, 0], [0, 40, 3, 2]]), torch.zeros(2, 6))
    >>> out.features.shape, out.coords.tolist(), out.counts.tolist()
    (torch.Size([2, 16]), [[0, 0, 0, 0], [0, 2, 0, 0]], [2])
    """

    def __init__(self, config: PointEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or PointEncoderConfig()
        n_fourier = 3 * (2 * self.config.num_fourier_freqs + 1)
        self.sparse_resnet = ResNet3DSparse(self.config)
        self.input_proj = nn.Linear(self.config.embed_dim + n_fourier, self.config.embed_dim)

    def forward(self, coords: Tensor, features: Tensor, kernel_maps: dict | None = None) -> PointEncoderOutput:
        """``coords``: (N, 4) int64 ``[batch, x, y, z]`` grid coords in ``[0, num_bins)``, one row per voxel.
        ``features``: (N, input_channels) float. Returns float32 tokens whatever the autocast state.

        ``kernel_maps``: a dict that holds the neighbour maps of these ``coords`` (``SparseTensor.cache``),
        filled here when empty; a second encoder on the same voxels passes the same dict and builds none.
        """
        self._check_inputs(coords, features)
        batch_size = int(coords[:, 0].max()) + 1
        cfg = self.config
        with torch.autocast(coords.device.type, enabled=False):
            cache = {} if kernel_maps is None else kernel_maps
            known = cache.setdefault(("coords", 1, 0), coords)
            if known is not coords and not torch.equal(known, coords):
                raise ValueError("kernel_maps was filled for other coords; pass a new dict for new voxels")
            out = self.sparse_resnet(SparseTensor(features.float(), coords, 1, cache))  # (T, D) at token_stride
            cells = out.coords[:, 1:].float() / (cfg.num_bins // cfg.token_stride - 1)  # (T, 3) in [0, 1]
            tokens = torch.cat([out.features, fourier_features(cells, cfg.num_fourier_freqs)], dim=1)
            tokens = self.input_proj(tokens)  # (T, D)
        counts = torch.bincount(out.coords[:, 0], minlength=batch_size)
        return PointEncoderOutput(tokens, out.coords, counts, out.features)

    def _check_inputs(self, coords: Tensor, features: Tensor) -> None:
        check_point_inputs(coords, features, self.config.input_channels, self.config.num_bins)
        if self.input_proj.weight.dtype != torch.float32:
            raise TypeError(
                f"PointEncoder parameters are {self.input_proj.weight.dtype}; keep the encoder in float32 "
                "(transformers: list it in _keep_in_fp32_modules)"
            )


def check_point_inputs(coords: Tensor, features: Tensor, channels: int, num_bins: int) -> None:
    """The input checks every point encoder makes: ``(N, 4)`` int64 ``(batch, x, y, z)`` voxel
    coordinates inside the grid, one row per voxel, and ``(N, channels)`` features."""
    if coords.ndim != 2 or coords.shape[1] != 4 or coords.dtype != torch.int64:
        raise ValueError(f"coords must be (N, 4) int64, got {tuple(coords.shape)} {coords.dtype}")
    if coords.shape[0] == 0:
        raise ValueError("empty point cloud: coords has no rows")
    if features.shape != (coords.shape[0], channels):
        raise ValueError(f"features must be {(coords.shape[0], channels)}, got {tuple(features.shape)}")
    if coords.min() < 0 or coords[:, 1:].max() >= num_bins:
        raise ValueError(f"coords must be non-negative with x, y, z < num_bins={num_bins}")
    # The kernel map's lookup keeps one row per voxel and the down-conv one child per slot, so a
    # second row on a voxel would silently get no neighbours and be dropped from its parent.
    nb = num_bins
    keys = ((coords[:, 0] * nb + coords[:, 1]) * nb + coords[:, 2]) * nb + coords[:, 3]  # (N,)
    unique = torch.unique(keys)
    if len(unique) != len(keys):
        raise ValueError(f"coords has {len(keys) - len(unique)} duplicate voxel rows; the encoder "
                         "needs one row per voxel (grid_sample the cloud first)")
