"""Sonata (Point Transformer V3, encoder mode), SpatialLM 1.1's point backbone, in plain PyTorch.

Voxels (grid coords + 6 features: metric xyz after the positive shift, rgb in [-1, 1]) go through

- serialisation: each voxel gets one space-filling-curve code per order (``z``, ``hilbert`` and their
  ``-trans`` variants, which swap x and y first), at ``depth = bit_length(max grid coord + 1)`` bits per axis;
- stem: Linear -> LayerNorm -> GELU;
- five stages; stages 1-4 start with grid pooling (coords // 2; Linear, then max over each cell, LayerNorm,
  GELU; metric coords averaged) and a fresh serialisation. Each block is pre-norm:
  ``x += CPE(x)`` (3x3x3 submanifold conv with bias -> Linear -> LayerNorm),
  ``x += attn(LN(x))``, ``x += MLP(LN(x))``. Block i of a stage attends along order ``i % len(orders)``
  in patches of ``K = min(patch_size, N)`` consecutive voxels of that curve; the last partial patch is
  topped up with the voxels just before it;
- head: the stride-16 cells (lexicographic (x, y, z) order) ->
  ``[feature | Fourier(cell / (num_bins // 16 - 1))] -> Linear``, as SceneScript's.

Upstream permutes the order list at every serialisation with ``torch.randperm`` from torch's global RNG, in
eval mode too, so its outputs depend on the RNG state. ``shuffle_orders=True`` reproduces that (same draws,
same order: one before the stem, one per pooling, per cloud); the default keeps the configured order, so
the encoder is a pure function of its input. Attention is ``scaled_dot_product_attention`` in float32
(upstream's non-flash path; its GPU default runs flash-attn in fp16). Clouds of a batch are encoded one at a
time, as upstream does, so a cloud's tokens do not depend on its batch mates.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spacelm.model.point_encoder import (
    PointEncoderOutput,
    check_point_inputs,
    fourier_features,
)
from spacelm.model.sparse_conv import SparseTensor, submanifold_conv3d

ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")


@dataclass(frozen=True)
class SonataConfig:
    """Shape of the Sonata encoder; field names are upstream's ``point_config`` keys.

    Defaults are Sonata's constructor defaults (~108 M parameters). ``shuffle_orders`` draws the order
    permutation from torch's global RNG as upstream does (only to compare with upstream).
    """

    in_channels: int = 6
    order: tuple[str, ...] = ("z", "z-trans")
    stride: tuple[int, ...] = (2, 2, 2, 2)
    enc_depths: tuple[int, ...] = (3, 3, 3, 12, 3)
    enc_channels: tuple[int, ...] = (48, 96, 192, 384, 512)
    enc_num_head: tuple[int, ...] = (3, 6, 12, 24, 32)
    enc_patch_size: tuple[int, ...] = (1024, 1024, 1024, 1024, 1024)
    mlp_ratio: float = 4.0
    num_bins: int = 1280
    num_fourier_freqs: int = 10
    shuffle_orders: bool = False

    def __post_init__(self) -> None:
        for name in ("order", "stride", "enc_depths", "enc_channels", "enc_num_head", "enc_patch_size"):
            object.__setattr__(self, name, tuple(getattr(self, name)))  # from_dict hands us lists
        bad = [o for o in self.order if o not in ORDERS]
        if bad or not self.order:
            raise ValueError(f"order must be a non-empty list of {ORDERS}, got {list(self.order)}")
        n_stages = len(self.enc_depths)
        for name in ("enc_channels", "enc_num_head", "enc_patch_size"):
            if len(getattr(self, name)) != n_stages:
                raise ValueError(f"{name} needs {n_stages} entries (one per stage), got {getattr(self, name)}")
        if len(self.stride) != n_stages - 1 or any(s != 2 for s in self.stride):
            raise ValueError(f"stride must be {n_stages - 1} entries of 2, got {list(self.stride)}")
        for c, h in zip(self.enc_channels, self.enc_num_head):
            if c % h:
                raise ValueError(f"enc_channels {c} is not divisible by enc_num_head {h}")

    @property
    def token_stride(self) -> int:
        """Input voxels per token cell along each axis."""
        return math.prod(self.stride)

    @property
    def embed_dim(self) -> int:
        return self.enc_channels[-1]

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> SonataConfig:
        return cls(**data)


# ---- serialisation ---------------------------------------------------------------------------------


def interleave_bits(axes: tuple[Tensor, Tensor, Tensor], depth: int) -> Tensor:
    """Morton code of three (N,) int64 columns: bit b of axis a lands at ``3 b + 2 - a`` (axis 0 highest)."""
    code = torch.zeros_like(axes[0])
    for bit in range(depth):
        for a, values in enumerate(axes):
            code |= ((values >> bit) & 1) << (3 * bit + 2 - a)
    return code


def hilbert_transpose(axes: tuple[Tensor, Tensor, Tensor], depth: int) -> tuple[Tensor, Tensor, Tensor]:
    """Skilling's "axes to transpose" (AIP Conf. Proc. 707, 2004): the Hilbert index of each point, its bits
    spread over three columns the way ``interleave_bits`` reads them."""
    x = [values.clone() for values in axes]
    q = 1 << (depth - 1)
    while q > 1:  # undo the excess work of each level, from the top bit down
        low = q - 1
        for a in range(3):
            on = (x[a] & q) != 0
            if a == 0:
                x[0] = torch.where(on, x[0] ^ low, x[0])
                continue
            swap = torch.where(on, 0, (x[0] ^ x[a]) & low)  # exchange the low bits of axis 0 and a
            x[0] = torch.where(on, x[0] ^ low, x[0] ^ swap)
            x[a] = x[a] ^ swap
        q >>= 1
    for a in (1, 2):  # Gray decode: prefix xor over the interleaved bit string
        x[a] = x[a] ^ x[a - 1]
    toggle = torch.zeros_like(x[0])
    q = 1 << (depth - 1)
    while q > 1:
        toggle = torch.where((x[2] & q) != 0, toggle ^ (q - 1), toggle)
        q >>= 1
    return tuple(v ^ toggle for v in x)


def serialization_code(grid: Tensor, order: str, depth: int) -> Tensor:
    """(N,) int64 curve code of (N, 3) int64 grid coords; ``-trans`` swaps x and y before coding."""
    x, y, z = grid.unbind(1)
    axes = (y, x, z) if order.endswith("-trans") else (x, y, z)
    if order.startswith("hilbert"):
        axes = hilbert_transpose(axes, depth)
    return interleave_bits(axes, depth)


def serialize(grid: Tensor, orders: tuple[str, ...], shuffle: bool) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """Codes (O, N) int64, each order's argsort (O, N) and the order names, permuted by one
    ``torch.randperm(O)`` draw when ``shuffle`` (upstream's behaviour)."""
    if shuffle:
        orders = tuple(orders[i] for i in torch.randperm(len(orders)).tolist())
    depth = int(grid.max() + 1).bit_length()
    codes = torch.stack([serialization_code(grid, o, depth) for o in orders])  # (O, N)
    return codes, torch.argsort(codes, dim=1), orders


def patch_gather_index(n: int, patch_size: int) -> tuple[Tensor, int]:
    """Positions along the curve that fill ``ceil(n / K)`` patches of ``K = min(patch_size, n)``.

    The last partial patch is topped up with the ``K - n % K`` positions before it, so every patch holds K.

    >>> index, k = patch_gather_index(6, 4)
    >>> index.tolist(), k
    ([0, 1, 2, 3, 4, 5, 2, 3], 4)
    """
    k = min(patch_size, n)
    n_padded = -(-n // k) * k
    index = torch.arange(n_padded)
    if n_padded != n:
        index[n:] = torch.arange(n - k, n_padded - k)
    return index, k


# ---- layers ----------------------------------------------------------------------------------------


class StageState:
    """One cloud inside a stage: features (N, C), metric coords (N, 3) float, grid coords (N, 3) int64,
    order names, curve codes (O, N), their argsorts (O, N), and the sparse conv's shared kernel map."""

    def __init__(self, feat: Tensor, coord: Tensor, grid: Tensor, orders: tuple[str, ...], codes: Tensor,
                 serialized_order: Tensor) -> None:
        self.feat, self.coord, self.grid = feat, coord, grid
        self.orders, self.codes, self.serialized_order = orders, codes, serialized_order
        batch = torch.zeros(len(grid), 1, dtype=torch.long, device=grid.device)
        self.sparse = SparseTensor(feat, torch.cat([batch, grid], dim=1))  # shares one kernel map per stage


class PositionalConv(nn.Module):
    """Conditional positional encoding: 3x3x3 submanifold conv (with bias) -> Linear -> LayerNorm.

    ``kernel`` is (27, C, C), offsets z fastest (spacelm.model.sparse_conv's layout)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.empty(27, channels, channels))
        self.bias = nn.Parameter(torch.empty(channels))
        self.linear = nn.Linear(channels, channels)
        self.norm = nn.LayerNorm(channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(27 * self.kernel.shape[1])
        nn.init.uniform_(self.kernel, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, state: StageState, feat: Tensor) -> Tensor:
        conv = submanifold_conv3d(state.sparse.replace_features(feat), self.kernel).features + self.bias
        return self.norm(self.linear(conv))


class SerializedAttention(nn.Module):
    """Multi-head self-attention inside fixed-size patches of one curve order."""

    def __init__(self, channels: int, num_heads: int, patch_size: int, order_index: int) -> None:
        super().__init__()
        self.num_heads, self.patch_size, self.order_index = num_heads, patch_size, order_index
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, state: StageState, feat: Tensor) -> Tensor:
        n, c = feat.shape
        order = state.serialized_order[self.order_index % len(state.orders)]  # (N,) curve position -> voxel
        index, k = patch_gather_index(n, self.patch_size)
        qkv = self.qkv(feat)[order[index.to(order.device)]]  # (P, 3C), P = patches * K
        q, key, value = qkv.view(-1, k, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, key, value)  # (patches, H, K, C / H)
        out = out.transpose(1, 2).reshape(-1, c)[:n]  # (N, C) in curve order
        return self.proj(torch.empty_like(out).index_copy_(0, order, out))  # back to voxel order


class MLP(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SonataBlock(nn.Module):
    def __init__(self, channels: int, num_heads: int, patch_size: int, mlp_ratio: float,
                 order_index: int) -> None:
        super().__init__()
        self.cpe = PositionalConv(channels)
        self.norm1 = nn.LayerNorm(channels)
        self.attn = SerializedAttention(channels, num_heads, patch_size, order_index)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = MLP(channels, int(channels * mlp_ratio))

    def forward(self, state: StageState, feat: Tensor) -> Tensor:
        feat = feat + self.cpe(state, feat)
        feat = feat + self.attn(state, self.norm1(feat))
        return feat + self.mlp(self.norm2(feat))


class GridPooling(nn.Module):
    """Stride-2 pooling: Linear, max over each occupied cell of 2x2x2 voxels, LayerNorm, GELU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, out_channels)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, feat: Tensor, coord: Tensor, grid: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Pooled feat (M, C'), mean coord (M, 3), cells (M, 3) in lexicographic order, cell of each voxel."""
        parents = torch.div(grid - grid.amin(0), 2, rounding_mode="floor")  # (N, 3)
        side = parents.amax(0) + 1
        keys = (parents[:, 0] * side[1] + parents[:, 1]) * side[2] + parents[:, 2]  # sorts like (x, y, z)
        unique, cluster = torch.unique(keys, sorted=True, return_inverse=True)
        cells = torch.stack([unique // (side[1] * side[2]), unique // side[2] % side[1], unique % side[2]], 1)
        feat = self.proj(feat)
        m, c = len(unique), feat.shape[1]
        pooled = feat.new_empty(m, c).scatter_reduce_(0, cluster[:, None].expand(-1, c), feat, "amax",
                                                     include_self=False)
        mean = coord.new_zeros(m, 3).scatter_reduce_(0, cluster[:, None].expand(-1, 3), coord, "mean",
                                                    include_self=False)
        return F.gelu(self.norm(pooled)), mean, cells, cluster


class SonataStage(nn.Module):
    def __init__(self, config: SonataConfig, stage: int) -> None:
        super().__init__()
        c = config.enc_channels[stage]
        self.down = GridPooling(config.enc_channels[stage - 1], c) if stage else None
        self.blocks = nn.ModuleList(
            SonataBlock(c, config.enc_num_head[stage], config.enc_patch_size[stage], config.mlp_ratio, i)
            for i in range(config.enc_depths[stage]))

    def forward(self, state: StageState) -> StageState:
        feat = state.feat
        for block in self.blocks:
            feat = block(state, feat)
        state.feat = feat
        return state


class Sonata(nn.Module):
    """Voxelised point clouds -> stride-16 tokens with their coordinates (the ``PointEncoder`` interface).

    >>> cfg = SonataConfig(enc_depths=(1, 1, 1, 1, 1), enc_channels=(8,) * 5, enc_num_head=(1,) * 5,
    ...                    enc_patch_size=(16,) * 5, num_bins=64)
    >>> out = Sonata(cfg)(torch.tensor([[0, 0, 0, 0], [0, 40, 3, 2]]), torch.zeros(2, 6))
    >>> out.features.shape, out.coords.tolist(), out.counts.tolist()
    (torch.Size([2, 8]), [[0, 0, 0, 0], [0, 2, 0, 0]], [2])
    """

    def __init__(self, config: SonataConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SonataConfig()
        self.stem = nn.ModuleDict({"linear": nn.Linear(config.in_channels, config.enc_channels[0]),
                                   "norm": nn.LayerNorm(config.enc_channels[0])})
        self.stages = nn.ModuleList(SonataStage(config, s) for s in range(len(config.enc_depths)))
        n_fourier = 3 * (2 * config.num_fourier_freqs + 1)
        self.input_proj = nn.Linear(config.embed_dim + n_fourier, config.embed_dim)

    def forward(self, coords: Tensor, features: Tensor) -> PointEncoderOutput:
        """``coords``: (N, 4) int64 ``[batch, x, y, z]``; ``features``: (N, in_channels). Float32 out."""
        self._check_inputs(coords, features)
        batch_size = int(coords[:, 0].max()) + 1
        tokens, cells = [], []
        with torch.autocast(coords.device.type, enabled=False):
            for b in range(batch_size):
                rows = torch.nonzero(coords[:, 0] == b).squeeze(1)
                if len(rows):
                    feat, grid = self.encode_cloud(coords[rows, 1:], features[rows].float())
                    tokens.append(feat)
                    cells.append(F.pad(grid, (1, 0), value=b))  # (T_b, 4) [batch, x, y, z]
        cells = torch.cat(cells)
        return PointEncoderOutput(torch.cat(tokens), cells, torch.bincount(cells[:, 0], minlength=batch_size))

    def stage_states(self, grid: Tensor, features: Tensor) -> Iterator[StageState]:
        """Each stage's ``StageState`` after its blocks, for one cloud: (N, 3) int64 grid, (N, 6) features."""
        cfg = self.config
        codes, order, names = serialize(grid, cfg.order, cfg.shuffle_orders)
        sorted_codes = codes[0].gather(0, order[0])
        if bool((sorted_codes[1:] == sorted_codes[:-1]).any()):
            raise ValueError("coords holds duplicate voxel rows; Sonata needs one row per voxel "
                             "(grid_sample the cloud first)")
        feat = F.gelu(self.stem["norm"](self.stem["linear"](features)))
        state = StageState(feat, features[:, :3], grid, names, codes, order)
        for s, stage in enumerate(self.stages):
            if s:
                feat, coord, grid, _ = stage.down(state.feat, state.coord, state.grid)
                codes, order, names = serialize(grid, cfg.order, cfg.shuffle_orders)
                state = StageState(feat, coord, grid, names, codes, order)
            yield stage(state)

    def encode_cloud(self, grid: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        """(T, D) tokens and their (T, 3) int64 cells, lexicographic, for one cloud."""
        *_, state = self.stage_states(grid, features)
        cfg = self.config
        cells = state.grid.float() / (cfg.num_bins // cfg.token_stride - 1)  # (T, 3) in [0, 1]
        head_in = torch.cat([state.feat, fourier_features(cells, cfg.num_fourier_freqs)], dim=1)
        return self.input_proj(head_in), state.grid

    def _check_inputs(self, coords: Tensor, features: Tensor) -> None:
        check_point_inputs(coords, features, self.config.in_channels, self.config.num_bins)
        if self.input_proj.weight.dtype != torch.float32:
            raise TypeError(f"Sonata parameters are {self.input_proj.weight.dtype}; keep the encoder in float32")
