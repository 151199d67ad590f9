"""SceneScript point encoder: token counts and order, batching, Fourier features, size, dtype, errors."""

import json
import math

import numpy as np
import pytest
import torch

from spacelm.model.point_encoder import (
    PointEncoder,
    PointEncoderConfig,
    ResNet3DSparse,
    count_tokens,
    fourier_features,
)

# Same strides and layer count as the default, narrow channels: token counts do not depend on width.
TINY = PointEncoderConfig(channels=(4, 8, 8, 8, 8), embed_dim=16, num_bins=128)


def random_cloud(n: int, extent: int, seed: int, batch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, 4) int64 unique voxels (M <= n) in [0, extent)**3 with batch index ``batch``, (M, 6) features."""
    gen = torch.Generator().manual_seed(seed)
    xyz = torch.unique(torch.randint(0, extent, (n, 3), generator=gen), dim=0)
    coords = torch.cat([torch.full((len(xyz), 1), batch), xyz], dim=1)
    return coords, torch.randn(len(xyz), 6, generator=gen)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def encoder() -> PointEncoder:
    torch.manual_seed(0)
    return PointEncoder().eval()


def test_default_sizes_match_scenescript():
    resnet = ResNet3DSparse(PointEncoderConfig())
    stages = [n_params(resnet.stem), *map(n_params, resnet.blocks), n_params(resnet.bottleneck)]
    # encoders.md 1.1: 46.8 K, 115 K, 459 K, 1.84 M, 7.34 M, 395 K -> 10.20 M.
    assert stages == [46_848, 115_008, 459_392, 1_836_288, 7_342_592, 395_264]
    assert n_params(resnet) == 10_195_392
    # + input_proj (575 -> 512); SceneScript's extra 512-vector is folded into its bias.
    assert n_params(PointEncoder()) == 10_195_392 + 575 * 512 + 512 == 10_490_304


def test_batch_of_two_equals_each_cloud_alone(encoder):
    a, fa = random_cloud(600, 70, seed=1)
    b, fb = random_cloud(300, 40, seed=2, batch=1)
    with torch.no_grad():
        both = encoder(torch.cat([a, b]), torch.cat([fa, fb]))
        alone = [encoder(a, fa), encoder(b - torch.tensor([1, 0, 0, 0]), fb)]
    assert both.counts.tolist() == [len(alone[0].coords), len(alone[1].coords)]
    sizes = both.counts.tolist()
    for sample, (feats, coords) in enumerate(zip(both.features.split(sizes), both.coords.split(sizes))):
        torch.testing.assert_close(feats, alone[sample].features, rtol=1e-4, atol=1e-5)
        assert torch.equal(coords[:, 1:], alone[sample].coords[:, 1:])
        assert (coords[:, 0] == sample).all()


@pytest.mark.parametrize("seed", range(4))
def test_count_tokens_equals_encoder_output(seed):
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 400, (3,), generator=gen).tolist()
    clouds = [random_cloud(n, 100, seed * 10 + b, batch=b) for b, n in enumerate(sizes)]
    coords, feats = map(torch.cat, zip(*clouds))
    with torch.no_grad():
        out = PointEncoder(TINY)(coords, feats)
    assert torch.equal(count_tokens(coords), out.counts)
    assert out.counts.sum() == len(out.features) == len(out.coords)
    # tokens are the occupied 16-cells in (batch, x, y, z) order
    cells = torch.cat([coords[:, :1], coords[:, 1:] // 16], dim=1)
    assert torch.equal(out.coords, torch.unique(cells, dim=0))


def test_count_tokens_takes_one_numpy_cloud():
    xyz = np.array([[0, 0, 0], [15, 15, 15], [16, 0, 0], [31, 0, 0], [0, 0, 47]], dtype=np.int32)
    assert count_tokens(xyz).tolist() == [3]  # cells (0,0,0), (1,0,0), (0,0,2)


def test_count_tokens_with_an_empty_sample_and_far_coords():
    coords = torch.tensor([[0, 0, 0, 0], [0, 17, 0, 0], [2, 600, 600, 600], [2, 607, 607, 607], [2, 616, 600, 600]])
    # sample 0: cells (0,0,0) and (1,0,0); sample 1 has no voxels; sample 2: cells (37,37,37) and (38,37,37)
    assert count_tokens(coords).tolist() == [2, 0, 2]


def test_fourier_features_layout():
    zero = fourier_features(torch.zeros(1, 3))[0]
    assert zero.shape == (63,)
    # [v (3)] then per frequency [sin (3), cos (3)]: at 0 that is 0, then (0, 0, 0, 1, 1, 1) ten times.
    assert zero.tolist() == [0.0] * 3 + [0.0, 0.0, 0.0, 1.0, 1.0, 1.0] * 10
    v = fourier_features(torch.tensor([[0.5, 0.25, 1.0]]))[0]
    h = math.sqrt(0.5)
    expected = [0.5, 0.25, 1.0, 1.0, h, 0.0, 0.0, h, -1.0]  # raw, sin(pi v), cos(pi v)
    torch.testing.assert_close(v[:9], torch.tensor(expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(v[-3], torch.tensor(-1.0))  # cos(30 pi * 0.5) = cos(15 pi)


def test_token_coords_are_normalised_by_cells_per_axis_minus_one():
    # 128 bins / 16 = 8 cells per axis -> divide by 7; voxel x = 127 is cell 7 -> 1.0.
    encoder = PointEncoder(TINY)
    seen = []
    encoder.input_proj.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    with torch.no_grad():
        encoder(torch.tensor([[0, 0, 20, 127], [0, 127, 0, 0]]), torch.zeros(2, 6))
    raw = seen[0][:, TINY.embed_dim : TINY.embed_dim + 3]
    torch.testing.assert_close(raw, torch.tensor([[0.0, 1 / 7, 1.0], [1.0, 0.0, 0.0]]))


def test_output_is_float32_under_bf16_autocast():
    encoder = PointEncoder(TINY)
    coords, feats = random_cloud(200, 60, seed=3)
    with torch.no_grad():
        ref = encoder(coords, feats).features
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = encoder(coords, feats.bfloat16()).features
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0.02, atol=0.02)  # input rounded to bf16, rest in fp32


def test_gradients_reach_every_parameter():
    encoder = PointEncoder(TINY)
    coords, feats = random_cloud(300, 60, seed=4)
    encoder(coords, feats).features.square().sum().backward()
    for name, param in encoder.named_parameters():
        assert param.grad is not None and param.grad.isfinite().all(), name


def test_config_round_trips_through_json():
    cfg = PointEncoderConfig(channels=[8, 16], num_bins=640)
    assert cfg.channels == (8, 16) and cfg.token_stride == 2
    assert PointEncoderConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_bad_inputs_fail_loudly():
    encoder = PointEncoder(TINY)
    coords, feats = random_cloud(20, 10, seed=5)
    with pytest.raises(ValueError, match="num_bins=128"):
        encoder(coords + torch.tensor([0, 128, 0, 0]), feats)
    with pytest.raises(ValueError, match="features must be"):
        encoder(coords, feats[:, :3])
    with pytest.raises(ValueError, match=r"\(N, 4\) int64"):
        encoder(coords.int(), feats)
    with pytest.raises(ValueError, match="empty"):
        encoder(coords[:0], feats[:0])
    with pytest.raises(ValueError, match="empty"):
        count_tokens(coords[:0])
    with pytest.raises(TypeError, match="float32"):
        encoder.to(torch.bfloat16)(coords, feats)
    with pytest.raises(ValueError, match="backend"):
        PointEncoderConfig(backend="minkowski")


def test_duplicate_voxel_rows_are_refused():
    encoder = PointEncoder(TINY)
    coords, feats = random_cloud(20, 10, seed=5)
    encoder(coords, feats)  # unique voxels: fine
    doubled = torch.cat([coords, coords[3:5]])  # two voxels given twice
    with pytest.raises(ValueError, match="2 duplicate voxel rows"):
        encoder(doubled, torch.cat([feats, feats[3:5]]))
    other_sample = torch.cat([coords, coords[:1] + torch.tensor([1, 0, 0, 0])])  # same xyz, batch 1
    encoder(other_sample, torch.cat([feats, feats[:1]]))


def test_count_tokens_refuses_spans_its_keys_cannot_hold():
    with pytest.raises(ValueError, match="too many to count"):
        count_tokens(torch.tensor([[0, 0, 0], [2**60, 0, 0]]))


def test_stem_kernel_is_configuration():
    config = PointEncoderConfig(channels=(4, 4, 4, 4, 4), embed_dim=8, num_bins=64, stem_kernel=3)
    encoder = PointEncoder(config)
    stem = encoder.sparse_resnet.stem[0][0]
    assert stem.kernel.shape[0] == 27  # 3^3 offsets against 7^3 = 343 for SceneScript's stem
    out = encoder(torch.tensor([[0, 0, 0, 0], [0, 40, 3, 2]]), torch.zeros(2, 6))
    assert out.features.shape == (2, 8)
    assert PointEncoderConfig.from_dict(config.to_dict()) == config
    assert PointEncoderConfig.from_dict({k: v for k, v in config.to_dict().items() if k != "stem_kernel"}
                                        ).stem_kernel == 7  # configs saved before the knob load as before
    with pytest.raises(ValueError, match="stem_kernel"):
        PointEncoderConfig(stem_kernel=4)


def test_a_second_encoder_reuses_the_first_ones_kernel_maps(monkeypatch):
    from spacelm.model import sparse_conv

    coords, feats = random_cloud(800, 60, seed=5)
    torch.manual_seed(0)
    first, second = PointEncoder(TINY), PointEncoder(TINY)
    with torch.no_grad():
        alone = second(coords, feats).features
    built = []
    real = sparse_conv.build_kernel_map
    monkeypatch.setattr(sparse_conv, "build_kernel_map", lambda c, k, *a: built.append(len(c)) or real(c, k, *a))
    kernel_maps: dict = {}
    with torch.no_grad():
        first(coords, feats, kernel_maps)
        maps_of_first = len(built)
        shared = second(coords.clone(), feats, kernel_maps).features
    assert maps_of_first == 6  # the k7 stem, and one k3 map per stride: 1, 2, 4, 8, 16
    assert len(built) == maps_of_first  # the second encoder built none
    torch.testing.assert_close(shared, alone, rtol=0, atol=0)
    other, other_feats = random_cloud(500, 60, seed=6)
    with pytest.raises(ValueError, match="filled for other coords"):
        second(other, other_feats, kernel_maps)
