"""Sparse 3D convolution in plain PyTorch, exact on CPU and unchanged on CUDA.

Why our own: no library has a correct CPU path. torchsparse (used by SceneScript and SpatialLM v1.0) is not
on PyPI and builds only with CUDA; MinkowskiEngine does not build with current setuptools; spconv's CPU
backward crashes (it asks for a CUDA stream) and its CPU results are silently wrong with more than one torch
thread. Everything below uses only ops that have CUDA kernels; on CUDA ``index_add_`` uses atomics, so
results there are exact but not bit-reproducible.

Semantics are torchsparse's, so a network built from these layers behaves like SceneScript's:

- a stride-1 conv is *submanifold*: the output coordinates are the input coordinates;
- the kernel-2 stride-2 conv is a non-overlapping "patchify" conv: voxel ``c`` feeds parent ``floor(c / 2)``,
  and parents come out sorted in lexicographic ``(batch, x, y, z)`` order;
- GroupNorm statistics are taken per sample over all of its voxels.

Convolution is cross-correlation, as in ``torch.nn.functional.conv3d``: output voxel ``p`` reads input voxel
``p + d_j``, ``d_j`` in ``{-(k//2) .. k//2}**3`` (``{0, 1}**3`` for the stride-2 conv). Kernels are stored as
``(K, Cin, Cout)``, ``K = k**3``, offsets ordered z fastest, x slowest: the order of spconv's
``(Cout, kx, ky, kz, Cin)`` weights, so :func:`to_spconv_weight` is a permute.

``backend="spconv"`` swaps in spconv's CUDA kernels for the convs (GPU only, not exercised in CI).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

BACKENDS = ("torch", "spconv")
# Above this many cells (int32: 1.6 GB) the dense index volume gives way to a sorted-key lookup.
MAX_DENSE_CELLS = 400_000_000

# One entry per non-empty, non-centre offset j: (j, in_idx (P,) int64, out_idx (P,) int64), meaning
# out[out_idx] += x[in_idx] @ kernel[j].
KernelMap = tuple[tuple[int, Tensor, Tensor], ...]


@dataclass(frozen=True, eq=False)
class SparseTensor:
    """Features on the occupied voxels of a batch of grids.

    ``features``: (N, C) float. ``coords``: (N, 4) int64 ``[batch, x, y, z]`` in units of ``stride`` input
    voxels (torchsparse v2 convention: a stride-16 tensor holds ``floor(c / 16)``). ``cache`` holds kernel
    maps keyed by ``(kind, stride, kernel size)``; every tensor derived from one input shares it, so the two
    convs of a ResBlock build their neighbour map once. Leave it at its default when building a tensor,
    or pass the cache of a tensor on the same coords (a second encoder on the same voxels).

    >>> x = SparseTensor(torch.ones(2, 3), torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1]]))
    >>> x.replace_features(torch.zeros(2, 5)).features.shape
    torch.Size([2, 5])
    """

    features: Tensor
    coords: Tensor
    stride: int = 1
    cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        c = self.coords
        if c.ndim != 2 or c.shape[1] != 4 or c.dtype != torch.int64:
            raise ValueError(f"coords must be (N, 4) int64, got {tuple(c.shape)} {c.dtype}")
        if self.features.ndim != 2 or self.features.shape[0] != c.shape[0]:
            raise ValueError(f"features must be ({c.shape[0]}, C), got {tuple(self.features.shape)}")

    def replace_features(self, features: Tensor) -> SparseTensor:
        """Same voxels (and cache), new (N, C') features."""
        return SparseTensor(features, self.coords, self.stride, self.cache)

    def batch_counts(self) -> Tensor:
        """(B,) int64: voxels per sample, B = largest batch index + 1."""
        key = ("counts", self.stride, 0)
        if key not in self.cache:
            self.cache[key] = torch.bincount(self.coords[:, 0])
        return self.cache[key]


def kernel_offsets(kernel_size: int) -> Tensor:
    """(k**3, 3) int64 offsets ``d_j`` in kernel order (z fastest): centred for odd k, ``{0, 1}`` for k 2."""
    low = -(kernel_size // 2) if kernel_size % 2 else 0
    axis = torch.arange(low, low + kernel_size)
    return torch.cartesian_prod(axis, axis, axis)


def _box_keys(coords: Tensor, margin: int) -> tuple[Tensor, tuple[int, int], int]:
    """Linear keys of voxels in their common bounding box grown by ``margin``, stacked per batch.

    Returns (N,) int64 keys, the (x, y) key strides (z stride is 1) and the number of cells. Keys sort
    like lexicographic (batch, x, y, z), and the margin keeps ``key + offset`` inside each sample's block.
    """
    xyz = coords[:, 1:]
    low = xyz.amin(0) - margin
    ex, ey, ez = (xyz.amax(0) - low + margin + 1).tolist()
    rel = xyz - low
    keys = coords[:, 0] * (ex * ey * ez) + rel[:, 0] * (ey * ez) + rel[:, 1] * ez + rel[:, 2]
    n_cells = (int(coords[:, 0].max()) + 1) * ex * ey * ez
    return keys, (ey * ez, ez), n_cells


def _neighbour_finder(keys: Tensor, n_cells: int, max_dense_cells: int) -> Callable[[Tensor], Tensor]:
    """Function mapping query keys to voxel indices (-1 where empty): one gather into a dense volume,
    or a binary search in the sorted keys when the volume would be too large (4-8x slower)."""
    n = keys.shape[0]
    if n_cells <= max_dense_cells:
        volume = torch.full((n_cells,), -1, dtype=torch.int32, device=keys.device)
        volume[keys] = torch.arange(n, dtype=torch.int32, device=keys.device)
        return lambda query: volume.index_select(0, query)  # 5x faster than volume[query] on CPU
    sorted_keys, order = torch.sort(keys)

    def find(query: Tensor) -> Tensor:
        pos = torch.searchsorted(sorted_keys, query).clamp_(max=n - 1)
        return torch.where(sorted_keys[pos] == query, order[pos], -1)

    return find


def build_kernel_map(coords: Tensor, kernel_size: int, max_dense_cells: int = MAX_DENSE_CELLS) -> KernelMap:
    """Neighbour pairs of a submanifold conv over (N, 4) int64 ``coords``, centre offset left out.

    Pairs are symmetric: if ``q = p + d_j`` then ``p = q + d_{K-1-j}`` (the mirrored offset), so only the
    first half of the offsets is looked up and each result serves twice with its index tensors swapped.

    >>> kmap = build_kernel_map(torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1]]), 3)
    >>> [(j, i.tolist(), o.tolist()) for j, i, o in kmap]
    [(12, [0], [1]), (14, [1], [0])]
    """
    if kernel_size % 2 != 1:
        raise ValueError(f"submanifold convs need an odd kernel size, got {kernel_size}")
    keys, (sx, sy), n_cells = _box_keys(coords, kernel_size // 2)
    find = _neighbour_finder(keys, n_cells, max_dense_cells)
    deltas = (kernel_offsets(kernel_size) @ torch.tensor([sx, sy, 1])).tolist()
    n_offsets = len(deltas)
    pairs = []
    for j in range(n_offsets // 2):
        found = find(keys + deltas[j])  # (N,) neighbour at p + d_j, or -1
        out_idx = torch.nonzero(found >= 0).squeeze(1)
        if out_idx.numel():
            in_idx = found.index_select(0, out_idx).long()
            pairs += [(j, in_idx, out_idx), (n_offsets - 1 - j, out_idx, in_idx)]
    return tuple(pairs)


def kernel_map(x: SparseTensor, kernel_size: int) -> KernelMap:
    """:func:`build_kernel_map` of ``x.coords``, cached in ``x.cache``."""
    key = ("subm", x.stride, kernel_size)
    if key not in x.cache:
        x.cache[key] = build_kernel_map(x.coords, kernel_size)
    return x.cache[key]


def down_map(x: SparseTensor) -> tuple[Tensor, Tensor]:
    """Parents of the stride-2 conv: (M, 4) int64 coords sorted (batch, x, y, z), and (N,) int64 ``slots``.

    ``slots[i] = 8 * parent(i) + child(i)`` places voxel i in the (M, 8) child table flattened row-major,
    child = ``(x & 1) * 4 + (y & 1) * 2 + (z & 1)``, the kernel order.
    """
    key = ("down", x.stride, 2)
    if key not in x.cache:
        c = x.coords
        parents = torch.cat([c[:, :1], torch.div(c[:, 1:], 2, rounding_mode="floor")], dim=1)  # (N, 4)
        child = (c[:, 1] & 1) * 4 + (c[:, 2] & 1) * 2 + (c[:, 3] & 1)  # (N,)
        keys = _box_keys(parents, 0)[0]
        unique, inverse = torch.unique(keys, sorted=True, return_inverse=True)
        # Duplicate writes below all carry the same parent coords, so which one lands does not matter.
        out_coords = parents.new_empty(unique.shape[0], 4).index_copy_(0, inverse, parents)
        x.cache[key] = (out_coords, inverse * 8 + child)
    return x.cache[key]


class _SubmanifoldConv(torch.autograd.Function):
    """out = x @ K[centre] + sum_j scatter(out_idx_j, x[in_idx_j] @ K[j]); saves only x and the kernel."""

    @staticmethod
    def forward(ctx, x: Tensor, kernel: Tensor, kmap: KernelMap) -> Tensor:
        ctx.save_for_backward(x, kernel)
        ctx.kmap = kmap
        out = x @ kernel[kernel.shape[0] // 2]  # (N, Cout)
        for j, in_idx, out_idx in kmap:
            out.index_add_(0, out_idx, x.index_select(0, in_idx) @ kernel[j])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x, kernel = ctx.saved_tensors
        need_x, need_k = ctx.needs_input_grad[:2]
        centre = kernel.shape[0] // 2
        grad_x = grad @ kernel[centre].T if need_x else None  # (N, Cin)
        grad_k = torch.zeros_like(kernel) if need_k else None  # (K, Cin, Cout)
        if need_k:
            grad_k[centre] = x.T @ grad
        for j, in_idx, out_idx in ctx.kmap:
            g = grad.index_select(0, out_idx)  # (P, Cout)
            if need_x:
                grad_x.index_add_(0, in_idx, g @ kernel[j].T)
            if need_k:
                grad_k[j] = x.index_select(0, in_idx).T @ g
        return grad_x, grad_k, None


class _DownConv(torch.autograd.Function):
    """Stride-2 patchify conv: scatter children into an (M, 8 * Cin) child table, then one GEMM.

    The table is rebuilt in backward instead of saved (it is 2-7 times the size of x on surface data), and
    the input gradient is a gather, so backward needs no atomics.
    """

    @staticmethod
    def forward(ctx, x: Tensor, kernel: Tensor, slots: Tensor, n_out: int) -> Tensor:
        ctx.save_for_backward(x, kernel, slots)
        ctx.n_out = n_out
        return _child_table(x, slots, n_out) @ kernel.reshape(-1, kernel.shape[2])  # (M, Cout)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, kernel, slots = ctx.saved_tensors
        flat = kernel.reshape(-1, kernel.shape[2])  # (8 * Cin, Cout)
        grad_x = grad_k = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad @ flat.T).view(-1, x.shape[1]).index_select(0, slots)  # (N, Cin)
        if ctx.needs_input_grad[1]:
            grad_k = (_child_table(x, slots, ctx.n_out).T @ grad).view_as(kernel)
        return grad_x, grad_k, None, None


def _child_table(x: Tensor, slots: Tensor, n_out: int) -> Tensor:
    """(M, 8 * Cin): row m holds the features of parent m's 8 children, zeros where a child is empty."""
    return x.new_zeros(n_out * 8, x.shape[1]).index_copy_(0, slots, x).view(n_out, -1)


def submanifold_conv3d(x: SparseTensor, kernel: Tensor) -> SparseTensor:
    """Stride-1 submanifold conv of x with a (k**3, Cin, Cout) kernel; output voxels = input voxels."""
    kmap = kernel_map(x, _kernel_side(kernel.shape[0]))
    return x.replace_features(_SubmanifoldConv.apply(x.features, kernel, kmap))


def down_conv3d(x: SparseTensor, kernel: Tensor) -> SparseTensor:
    """Kernel-2 stride-2 conv of x with an (8, Cin, Cout) kernel; output at stride ``2 * x.stride``."""
    coords, slots = down_map(x)
    features = _DownConv.apply(x.features, kernel, slots, coords.shape[0])
    return SparseTensor(features, coords, x.stride * 2, x.cache)


def _kernel_side(n_offsets: int) -> int:
    side = round(n_offsets ** (1 / 3))
    if side**3 != n_offsets:
        raise ValueError(f"kernel has {n_offsets} offsets, not a cube")
    return side


def to_spconv_weight(kernel: Tensor) -> Tensor:
    """Our (k**3, Cin, Cout) kernel as spconv's (Cout, k, k, k, Cin) weight."""
    k = _kernel_side(kernel.shape[0])
    return kernel.permute(2, 0, 1).reshape(kernel.shape[2], k, k, k, kernel.shape[1])


def from_spconv_weight(weight: Tensor) -> Tensor:
    """spconv's (Cout, k, k, k, Cin) weight as our (k**3, Cin, Cout) kernel."""
    return weight.reshape(weight.shape[0], -1, weight.shape[-1]).permute(1, 2, 0).contiguous()


class _SparseConv(nn.Module):
    """Bias-free sparse conv with a (k**3, Cin, Cout) ``kernel`` (torchsparse's name and init)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, backend: str) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.backend = kernel_size, backend
        self.kernel = nn.Parameter(torch.empty(kernel_size**3, in_channels, out_channels))
        bound = 1 / math.sqrt(in_channels * kernel_size**3)
        nn.init.uniform_(self.kernel, -bound, bound)
        self._spconv: dict = {}  # the spconv layer, built on first use; a dict keeps it out of state_dict

    def extra_repr(self) -> str:
        k = self.kernel_size
        return f"{self.in_channels}, {self.out_channels}, kernel_size={k}, backend={self.backend!r}"


class SubmanifoldConv3d(_SparseConv):
    """Stride-1 submanifold conv (odd kernel): ``(N, Cin) -> (N, Cout)`` on the same voxels.

    >>> x = SparseTensor(torch.ones(2, 3), torch.tensor([[0, 5, 5, 5], [1, 0, 0, 0]]))
    >>> SubmanifoldConv3d(3, 8, kernel_size=3)(x).features.shape
    torch.Size([2, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, backend: str = "torch") -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"submanifold convs need an odd kernel size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, backend)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if self.backend == "spconv":
            return _spconv_forward(self, x)
        return submanifold_conv3d(x, self.kernel)


class DownConv3d(_SparseConv):
    """Kernel-2 stride-2 conv: ``(N, Cin)`` at stride s -> ``(M, Cout)`` at stride 2s, M parents.

    >>> x = SparseTensor(torch.ones(3, 2), torch.tensor([[0, 3, 0, 0], [0, 0, 0, 1], [0, 2, 1, 0]]))
    >>> y = DownConv3d(2, 4)(x)
    >>> y.coords.tolist(), y.stride, y.features.shape
    ([[0, 0, 0, 0], [0, 1, 0, 0]], 2, torch.Size([2, 4]))
    """

    def __init__(self, in_channels: int, out_channels: int, backend: str = "torch") -> None:
        super().__init__(in_channels, out_channels, 2, backend)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if self.backend == "spconv":
            return _spconv_forward(self, x)
        return down_conv3d(x, self.kernel)


class SparseGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per sample over all of its voxels (torchsparse), vectorised over samples."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        feats, batch = x.features, x.coords[:, 0]
        # Two passes (mean, then variance of the centred values) as F.group_norm: no cancellation.
        centred = feats - self._group_mean(x, feats).index_select(0, batch)  # (N, C)
        scale = torch.rsqrt(self._group_mean(x, centred.square()) + self.eps)  # (B, C)
        if self.affine:
            scale = scale * self.weight
        out = centred * scale.index_select(0, batch)
        return x.replace_features(out + self.bias if self.affine else out)

    def _group_mean(self, x: SparseTensor, values: Tensor) -> Tensor:
        """(N, C) -> (B, C): mean over each sample's voxels and the channel's group, per channel.

        Reduces (N, C) rows straight to (B, C): index_add keeps nothing for backward, and summing over the
        tiny group axis only after that avoids slow (N, G, C / G) reductions (it halved the layer's time).
        """
        counts = x.batch_counts()
        n_batch, c = counts.shape[0], values.shape[1]
        per_channel = values.new_zeros(n_batch, c).index_add(0, x.coords[:, 0], values)
        per_group = per_channel.view(n_batch, self.num_groups, -1).sum(2, keepdim=True)  # (B, G, 1)
        denom = (counts.clamp(min=1) * (c // self.num_groups)).to(values.dtype)[:, None, None]
        return (per_group / denom).expand(-1, -1, c // self.num_groups).reshape(n_batch, c)


# --- spconv backend: GPU only; CI has no GPU, so this path is untested there. -------------------------


def _spconv_forward(conv: _SparseConv, x: SparseTensor) -> SparseTensor:
    """Run ``conv`` through spconv with our kernel permuted into its layout (gradients flow to ours)."""
    if x.features.device.type != "cuda":
        raise RuntimeError(
            "backend='spconv' runs on CUDA only: spconv's CPU backward crashes and its CPU results are wrong "
            "with more than one torch thread; use backend='torch' on CPU"
        )
    try:
        import spconv.pytorch as spconv
    except ImportError as err:
        raise ImportError("backend='spconv' needs spconv built for your CUDA, e.g. spconv-cu126") from err
    subm = conv.kernel_size % 2 == 1
    if "layer" not in conv._spconv:
        args = (conv.in_channels, conv.out_channels, conv.kernel_size)
        conv._spconv["layer"] = (
            spconv.SubMConv3d(*args, padding=conv.kernel_size // 2, bias=False, indice_key=f"k{args[2]}")
            if subm
            else spconv.SparseConv3d(*args, stride=2, bias=False)
        )
    key = ("spconv", x.stride, 0)
    if key not in x.cache:
        # Every axis must be a multiple of 16, or spconv's stride-2 convs drop border voxels.
        shape = ((x.coords[:, 1:].amax(0) + 16) // 16 * 16).tolist()
        x.cache[key] = spconv.SparseConvTensor(x.features, x.coords.int(), shape, len(x.batch_counts()))
    params = {"weight": to_spconv_weight(conv.kernel)}
    inputs = (x.cache[key].replace_feature(x.features),)
    out = torch.func.functional_call(conv._spconv["layer"], params, inputs)
    if subm:
        return x.replace_features(out.features)
    coords = out.indices.long()
    order = torch.argsort(_box_keys(coords, 0)[0])  # spconv's order is not (batch, x, y, z); torchsparse's is
    return SparseTensor(out.features[order], coords[order], x.stride * 2, x.cache)
