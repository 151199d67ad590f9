"""Sonata encoder: curve codes by their defining properties, then every stage against upstream's numbers.

The reference is ../shared/fixtures/spatiallm11_tiny (upstream SpatialLM code on a tiny random checkpoint;
its README gives the tolerances used here). Those tests skip when the fixture is absent.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spacelm.model.point_encoder import fourier_features
from spacelm.model.sonata import (
    GridPooling,
    Sonata,
    SonataConfig,
    patch_gather_index,
    serialization_code,
)

FIXTURE = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "spatiallm11_tiny"
needs_fixture = pytest.mark.skipif(not (FIXTURE / "reference.npz").is_file(), reason="fixture not present")
TINY = SonataConfig(enc_depths=(1, 1, 1, 2, 1), enc_channels=(8, 8, 16, 16, 16), enc_num_head=(1, 1, 2, 2, 2),
                    enc_patch_size=(16,) * 5, order=("z", "hilbert"), num_bins=128)


def all_cells(side: int) -> torch.Tensor:
    axis = torch.arange(side)
    return torch.cartesian_prod(axis, axis, axis)  # (side**3, 3)


def test_z_order_codes_by_hand():
    cells = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 0, 1]])
    assert serialization_code(cells, "z", 2).tolist() == [4, 2, 1, 4 + 32 + 1]
    assert serialization_code(cells, "z-trans", 2).tolist() == [2, 4, 1, 2 + 16 + 1]


@pytest.mark.parametrize("order", ["hilbert", "hilbert-trans"])
def test_hilbert_codes_walk_a_path_of_unit_steps(order):
    cells = all_cells(8)
    codes = serialization_code(cells, order, 3)
    assert sorted(codes.tolist()) == list(range(512))  # a bijection onto 0..511
    path = cells[torch.argsort(codes)]
    steps = (path[1:] - path[:-1]).abs()
    assert (steps.sum(1) == 1).all()  # each step moves to a face neighbour: a Hilbert curve
    assert path[0].tolist() == [0, 0, 0]


def test_patch_index_tops_up_the_last_patch():
    index, k = patch_gather_index(308, 64)
    assert k == 64 and len(index) == 320
    assert index[:308].tolist() == list(range(308)) and index[308:].tolist() == list(range(244, 256))
    assert patch_gather_index(40, 64)[1] == 40  # fewer points than a patch: one patch of all of them


def test_default_is_deterministic_and_leaves_the_rng_alone():
    torch.manual_seed(0)
    encoder = Sonata(TINY).eval()
    gen = torch.Generator().manual_seed(1)
    grid = torch.unique(torch.randint(0, 100, (400, 3), generator=gen), dim=0)
    coords = torch.cat([torch.zeros(len(grid), 1, dtype=torch.long), grid], 1)
    feats = torch.randn(len(grid), 6, generator=gen)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    with torch.no_grad():
        first = encoder(coords, feats).features
        assert torch.equal(torch.get_rng_state(), state)
        torch.manual_seed(6)
        assert torch.equal(encoder(coords, feats).features, first)


def test_batch_matches_each_cloud_alone():
    torch.manual_seed(0)
    encoder = Sonata(TINY).eval()
    gen = torch.Generator().manual_seed(2)
    clouds = [torch.unique(torch.randint(0, n, (300, 3), generator=gen), dim=0) for n in (60, 90)]
    feats = [torch.randn(len(c), 6, generator=gen) for c in clouds]
    coords = torch.cat([torch.nn.functional.pad(c, (1, 0), value=b) for b, c in enumerate(clouds)])
    with torch.no_grad():
        both = encoder(coords, torch.cat(feats))
        alone = [encoder(torch.nn.functional.pad(c, (1, 0)), f) for c, f in zip(clouds, feats)]
    assert both.counts.tolist() == [len(a.features) for a in alone]
    torch.testing.assert_close(both.features, torch.cat([a.features for a in alone]), rtol=0, atol=1e-5)


def test_duplicate_voxels_are_rejected():
    encoder = Sonata(TINY)
    coords = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])
    with pytest.raises(ValueError, match="duplicate voxel"):
        encoder(coords, torch.zeros(2, 6))


# ---- against upstream ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    return np.load(FIXTURE / "reference.npz")


@pytest.fixture(scope="module")
def upstream_encoder():
    from spacelm.model.spatiallm_checkpoint import load_spatiallm_checkpoint

    model, _ = load_spatiallm_checkpoint(FIXTURE / "checkpoint", shuffle_orders=True)
    return model.point_encoder


def bb_inputs(reference):
    grid = torch.from_numpy(reference["bb_in_grid_coord"]).long()
    return grid, torch.from_numpy(reference["bb_in_feat"])


def max_abs(a: torch.Tensor, b: np.ndarray) -> float:
    return float((a - torch.from_numpy(b)).abs().max())


@needs_fixture
def test_every_stage_matches_upstream(reference, upstream_encoder):
    meta = json.loads((FIXTURE / "reference_meta.json").read_text())
    grid, feats = bb_inputs(reference)
    torch.set_num_threads(1)
    torch.manual_seed(1234)  # upstream's five randperm draws come from here
    with torch.no_grad():
        stem = upstream_encoder.stem
        assert max_abs(torch.nn.functional.gelu(stem.norm(stem.linear(feats))), reference["embedding_feat"]) < 1e-5
        states = list(upstream_encoder.stage_states(grid, feats))
    for s, state in enumerate(states):
        assert list(state.orders) == meta["stages"][s]["order_names_by_index_after_shuffle"]
        for name, ours in (("grid_coord", state.grid), ("serialized_code", state.codes),
                           ("serialized_order", state.serialized_order)):
            assert np.array_equal(ours.numpy(), reference[f"stage{s}_{name}"]), f"stage {s} {name}"
        index, k = patch_gather_index(len(state.grid), 64)
        assert np.array_equal(index.numpy(), reference[f"stage{s}_attn_pad"])
        assert np.array_equal(np.arange(0, len(index) + 1, k), reference[f"stage{s}_attn_cu_seqlens"])
        assert max_abs(state.feat, reference[f"stage{s}_feat"]) < 2e-4, f"stage {s} feat"
        assert max_abs(state.coord, reference[f"stage{s}_coord"]) < 1e-5, f"stage {s} coord"


@needs_fixture
@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_pooling_clusters_match_upstream(reference, stage):
    pool = GridPooling(4, 4)
    prev = {k: torch.from_numpy(reference[f"stage{stage - 1}_{k}"]) for k in ("coord", "grid_coord")}
    _, _, cells, cluster = pool(torch.zeros(len(prev["coord"]), 4), prev["coord"], prev["grid_coord"].long())
    assert np.array_equal(cells.numpy(), reference[f"stage{stage}_grid_coord"])
    assert np.array_equal(cluster.numpy(), reference[f"stage{stage}_pooling_inverse"])


@needs_fixture
@pytest.mark.parametrize("threads", [1, 2])
def test_output_matches_upstream_on_any_thread_count(reference, upstream_encoder, threads):
    grid, feats = bb_inputs(reference)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(1234)
        with torch.no_grad():
            out = upstream_encoder(torch.nn.functional.pad(grid, (1, 0)), feats)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(out.coords[:, 1:].numpy(), reference["bb_out_grid_coord"])
    assert max_abs(out.features, reference["bb_out"]) < 3e-4
    if threads == 1:  # the head's input: stage-4 features and the Fourier terms of the cells / 79
        cells = torch.from_numpy(reference["bb_out_grid_coord"]).float() / 79
        head_in = torch.cat([torch.from_numpy(reference["stage4_feat"]), fourier_features(cells)], dim=1)
        assert torch.equal(head_in, torch.from_numpy(reference["bb_input_proj_in"]))


@needs_fixture
def test_another_draw_changes_the_output(reference, upstream_encoder):
    """The order shuffle matters (README: up to 7.8 on bb_out), so the match above is not by accident."""
    grid, feats = bb_inputs(reference)
    torch.manual_seed(1235)
    with torch.no_grad():
        out = upstream_encoder(torch.nn.functional.pad(grid, (1, 0)), feats)
    assert max_abs(out.features, reference["bb_out"]) > 0.1


@needs_fixture
def test_two_threads_give_the_same_bits(reference, upstream_encoder):
    """spconv's CPU conv changes bb_out by up to 3.3 with 2 threads (README); ours does not move a bit."""
    grid, feats = bb_inputs(reference)
    coords = torch.nn.functional.pad(grid, (1, 0))
    before = torch.get_num_threads()
    outputs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(1234)
            with torch.no_grad():
                outputs.append(upstream_encoder(coords, feats).features)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outputs[0], outputs[1])
