"""Sparse conv layers against dense ``conv3d`` references, gradcheck, kernel maps and GroupNorm."""

import pytest
import torch
import torch.nn.functional as F

from spacelm.model.sparse_conv import (
    DownConv3d,
    SparseGroupNorm,
    SparseTensor,
    SubmanifoldConv3d,
    build_kernel_map,
    down_conv3d,
    from_spconv_weight,
    kernel_map,
    kernel_offsets,
    submanifold_conv3d,
    to_spconv_weight,
)


def random_grid(batch: int, size: int, density: float, seed: int) -> torch.Tensor:
    """(N, 4) int64 occupied cells of ``batch`` random size**3 grids, in (batch, x, y, z) order."""
    gen = torch.Generator().manual_seed(seed)
    return torch.nonzero(torch.rand(batch, size, size, size, generator=gen) < density)


def random_tensor(batch, size, density, channels, seed, dtype=torch.float32) -> SparseTensor:
    coords = random_grid(batch, size, density, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    return SparseTensor(torch.randn(len(coords), channels, generator=gen, dtype=dtype), coords)


def to_dense(x: SparseTensor, batch: int, size: int) -> torch.Tensor:
    """(B, C, S, S, S) with zeros at empty cells: the dense twin of x."""
    dense = x.features.new_zeros(batch, size, size, size, x.features.shape[1])
    b, i, j, k = x.coords.T
    dense[b, i, j, k] = x.features
    return dense.permute(0, 4, 1, 2, 3)


def dense_weight(kernel: torch.Tensor) -> torch.Tensor:
    """Our (k**3, Cin, Cout) kernel as conv3d's (Cout, Cin, k, k, k)."""
    k = round(kernel.shape[0] ** (1 / 3))
    return kernel.permute(2, 1, 0).reshape(kernel.shape[2], kernel.shape[1], k, k, k)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("k", [3, 7])
def test_submanifold_equals_dense_conv3d_at_occupied_sites(k, threads):
    x = random_tensor(batch=2, size=12, density=0.2, channels=3, seed=k)
    conv = SubmanifoldConv3d(3, 4, k)
    out = conv(x)
    ref = F.conv3d(to_dense(x, 2, 12), dense_weight(conv.kernel), padding=k // 2)
    b, x_, y_, z_ = x.coords.T
    assert torch.equal(out.coords, x.coords)
    torch.testing.assert_close(out.features, ref.permute(0, 2, 3, 4, 1)[b, x_, y_, z_], rtol=1e-5, atol=1e-5)


def test_down_conv_equals_strided_dense_conv3d(threads):
    x = random_tensor(batch=2, size=10, density=0.1, channels=3, seed=5)
    conv = DownConv3d(3, 4)
    out = conv(x)
    dense_in = to_dense(x, 2, 10)
    ref = F.conv3d(dense_in, dense_weight(conv.kernel), stride=2)
    # Parents are the cells with any occupied child, in (batch, x, y, z) order: what nonzero returns.
    occupied = F.max_pool3d(dense_in.abs().sum(1, keepdim=True), 2)[:, 0] > 0
    assert torch.equal(out.coords, torch.nonzero(occupied))
    assert out.stride == 2
    b, x_, y_, z_ = out.coords.T
    torch.testing.assert_close(out.features, ref.permute(0, 2, 3, 4, 1)[b, x_, y_, z_], rtol=1e-5, atol=1e-5)


def test_down_conv_floors_negative_coords():
    x = random_tensor(batch=1, size=6, density=0.3, channels=2, seed=7)
    kernel = torch.randn(8, 2, 3)
    shift = torch.tensor([0, 4, 4, 4])  # even, so every voxel keeps its child slot
    ref = down_conv3d(x, kernel)
    out = down_conv3d(SparseTensor(x.features, x.coords - shift), kernel)
    assert torch.equal(out.coords, ref.coords - shift // 2)
    torch.testing.assert_close(out.features, ref.features)


# fast_mode checks random projections of the Jacobian; full mode for k7 would perturb 2 058 kernel
# entries one by one (11 s).
@pytest.mark.parametrize("k, size, density, fast", [(3, 6, 0.25, False), (7, 4, 0.4, True)])
def test_submanifold_gradcheck(k, size, density, fast):
    x = random_tensor(batch=1, size=size, density=density, channels=2, seed=11, dtype=torch.float64)
    kernel = torch.randn(k**3, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
    kernel.requires_grad_()
    feats = x.features.requires_grad_()

    def conv(f, w):
        return submanifold_conv3d(x.replace_features(f), w).features

    assert torch.autograd.gradcheck(conv, (feats, kernel), fast_mode=fast)


def test_down_conv_gradcheck():
    x = random_tensor(batch=2, size=6, density=0.2, channels=2, seed=13, dtype=torch.float64)
    kernel = torch.randn(8, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    kernel.requires_grad_()
    feats = x.features.requires_grad_()

    def conv(f, w):
        return down_conv3d(x.replace_features(f), w).features

    assert torch.autograd.gradcheck(conv, (feats, kernel))


def test_sorted_key_fallback_gives_the_dense_volume_map():
    coords = random_grid(batch=2, size=9, density=0.3, seed=17)
    coords[:, 1:] -= 4  # negative coordinates must work too
    for k in (3, 5):
        dense = build_kernel_map(coords, k)
        fallback = build_kernel_map(coords, k, max_dense_cells=0)
        assert [j for j, _, _ in dense] == [j for j, _, _ in fallback]
        for (_, i1, o1), (_, i2, o2) in zip(dense, fallback):
            assert torch.equal(i1, i2) and torch.equal(o1, o2)


def test_kernel_map_pairs_point_at_their_offset():
    coords = random_grid(batch=2, size=7, density=0.3, seed=19)
    offsets = kernel_offsets(3)
    for j, in_idx, out_idx in build_kernel_map(coords, 3):
        assert torch.equal(coords[in_idx, 0], coords[out_idx, 0])  # never across samples
        assert torch.equal(coords[in_idx, 1:] - coords[out_idx, 1:], offsets[j].expand(len(in_idx), 3))


def test_kernel_map_is_built_once_per_resolution():
    x = random_tensor(batch=1, size=6, density=0.3, channels=2, seed=23)
    y = x.replace_features(x.features * 2)
    assert kernel_map(x, 3) is kernel_map(y, 3)


def test_spconv_weight_round_trip_and_layout():
    kernel = torch.randn(27, 4, 5)
    weight = to_spconv_weight(kernel)  # (Cout, kx, ky, kz, Cin)
    assert weight.shape == (5, 3, 3, 3, 4)
    # offset (dx, dy, dz) = (1, -1, 0) is kernel index (1+1)*9 + (-1+1)*3 + (0+1) = 19
    assert torch.equal(weight[:, 2, 0, 1, :], kernel[19].T)
    assert torch.equal(from_spconv_weight(weight), kernel)
    down = torch.randn(8, 3, 2)
    assert torch.equal(from_spconv_weight(to_spconv_weight(down)), down)


def test_group_norm_per_sample_equals_each_sample_alone():
    x = random_tensor(batch=3, size=6, density=0.3, channels=8, seed=29)
    x = SparseTensor(x.features * 3 + 1, x.coords)  # non-trivial mean and variance
    norm = SparseGroupNorm(4, 8)
    nn_init = torch.Generator().manual_seed(0)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(8, generator=nn_init))
        norm.bias.copy_(torch.randn(8, generator=nn_init))
    out = norm(x).features
    for b in range(3):
        rows = x.coords[:, 0] == b
        alone = norm(SparseTensor(x.features[rows], x.coords[rows])).features
        torchsparse_ref = F.group_norm(x.features[rows].T[None], 4, norm.weight, norm.bias, norm.eps)[0].T
        torch.testing.assert_close(out[rows], alone)
        torch.testing.assert_close(out[rows], torchsparse_ref)


def test_bad_arguments_fail_loudly():
    with pytest.raises(ValueError, match="odd kernel"):
        SubmanifoldConv3d(2, 2, 4)
    with pytest.raises(ValueError, match="backend"):
        SubmanifoldConv3d(2, 2, 3, backend="torchsparse")
    with pytest.raises(ValueError, match=r"\(N, 4\) int64"):
        SparseTensor(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.int64))


def test_spconv_backend_refuses_cpu():
    x = random_tensor(batch=1, size=4, density=0.5, channels=2, seed=31)
    with pytest.raises(RuntimeError, match="CUDA only"):
        SubmanifoldConv3d(2, 2, 3, backend="spconv")(x)
