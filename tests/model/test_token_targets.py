"""Token supervision: layout elements as voxel boxes, token cells' multi-hot targets, and the model's extra loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from spacelm.model import SpatialLMConfig, SpatialLMForCausalLM  # noqa: E402
from spacelm.model.spatiallm_checkpoint import save_spatiallm_checkpoint  # noqa: E402
from spacelm.model.tiny import save_tiny_base_lm  # noqa: E402
from spacelm.model.token_targets import label_boxes, token_extents, token_targets  # noqa: E402
from spacelm.points.transforms import WORLD_EXTENT  # noqa: E402
from spacelm.scene.entities import Box, Door, Wall  # noqa: E402
from spacelm.scene.layout import Layout  # noqa: E402

WALL = Wall(1.0, 2.0, 0.0, 5.0, 2.0, 0.0, 2.5, 0.0)  # along x at y = 2 m
DOOR = Door(0, 3.0, 2.0, 1.0, 1.0, 2.0)  # centre x = 3: 2.5..3.5 m along the wall, z 0..2 m
BED = Box("bed", 2.0, 3.0, 0.25, math.pi / 2, 2.0, 1.0, 0.5)  # turned 90 degrees: 1 m along x, 2 m along y
SOFA = Box("sofa", 4.0, 4.0, 0.5, 0.0, 1.0, 1.0, 1.0)


def test_label_boxes_are_each_asked_elements_bounds_in_voxels():
    layout = Layout(walls=[WALL], doors=[DOOR], boxes=[BED, SOFA])
    rows = label_boxes(layout, ["door", "bed", "wall"], origin=np.array([1.0, 1.0, 0.0]), voxel_size=0.5,
                       margin=0.0)
    # [label index, x0, y0, z0, x1, y1, z1]: (metres - origin) / 0.5; the sofa is not asked for.
    np.testing.assert_allclose(rows, [[2, 0, 2, 0, 8, 2, 5],   # wall: x 1..5, y 2, z 0..2.5
                                      [0, 3, 2, 0, 5, 2, 4],   # door: x 2.5..3.5, z 0..2
                                      [1, 1, 2, 0, 3, 6, 1]],  # bed: x 1.5..2.5, y 2..4, z 0..0.5
                               atol=1e-5)
    grown = label_boxes(layout, ["door", "bed", "wall"], origin=np.array([1.0, 1.0, 0.0]), voxel_size=0.5)
    np.testing.assert_allclose(grown[:, 1:4], rows[:, 1:4] - 1, atol=1e-5)  # one voxel on every side
    np.testing.assert_allclose(grown[:, 4:], rows[:, 4:] + 1, atol=1e-5)
    assert label_boxes(layout, ["window", "chair"], np.zeros(3), 0.5).shape == (0, 7)


def test_token_targets_mark_cells_whose_voxel_range_overlaps_a_box():
    cells = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 2, 0, 0], [1, 1, 0, 0]])  # stride 4: x 0-4, 4-8, 8-12
    box = torch.tensor([[0.0, 1, 3, 0, 0, 5, 2, 2]])  # sample 0, label 1, x 3..5
    assert token_targets(cells, 4, box, 2).tolist() == [[0, 1], [0, 1], [0, 0], [0, 0]]  # sample 1: no
    plane = torch.tensor([[0.0, 0, 4, 0, 0, 4, 2, 2]])  # a zero-thickness plane on a cell boundary...
    assert token_targets(cells, 4, plane, 1).sum() == 0
    plane[0, [2, 5]] += torch.tensor([-1.0, 1.0])  # ...needs label_boxes' margin to touch both sides
    assert token_targets(cells, 4, plane, 1)[:, 0].tolist() == [1, 1, 0, 0]
    both = torch.cat([box, torch.tensor([[0.0, 1, 0, 0, 0, 12, 2, 2]])])  # two boxes, one label: still 1
    assert token_targets(cells, 4, both, 2)[:, 1].tolist() == [1, 1, 1, 0]
    assert token_targets(cells, 4, torch.zeros(0, 8), 3).shape == (4, 3)


def test_token_extents_are_each_cells_lowest_and_highest_voxel_as_a_fraction_of_the_cell():
    # stride 10, two samples: cell (0, 0, 0, 0) of sample 0 holds voxels x 2 and 7; sample 1's cell (1, 0, 0)
    # one voxel at x 19 (offset 9); the tokens in the reverse of the voxels' order.
    voxels = torch.tensor([[0, 2, 4, 0], [0, 7, 5, 9], [1, 19, 0, 3]])
    tokens = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])
    extents = token_extents(voxels, tokens, 10)
    torch.testing.assert_close(extents, torch.tensor([[0.95, 0.05, 0.35, 0.95, 0.05, 0.35],
                                                      [0.25, 0.45, 0.05, 0.75, 0.55, 0.95]]))
    with pytest.raises(ValueError, match="miss cells"):  # a voxel whose cell is no token
        token_extents(voxels, tokens[1:], 10)


POINT_CONFIG = {"channels": [8, 8, 8, 8], "embed_dim": 16, "num_bins": 320}  # 10 cm voxels, 80 cm cells


@pytest.fixture(scope="module")
def base_lm_dir(tmp_path_factory):
    return save_tiny_base_lm(tmp_path_factory.mktemp("base_lm"), hidden_size=32, num_layers=1, num_heads=2)


def _batch(processor, layout: Layout, labels):
    rng = np.random.default_rng(0)
    wall_x = rng.uniform(1.0, 5.0, 3000)  # points on the wall's plane, and a floor
    xyz = np.concatenate([np.stack([wall_x, np.full(3000, 2.0), rng.uniform(0, 2.5, 3000)], 1),
                          np.stack([rng.uniform(1, 5, 3000), rng.uniform(2, 5, 3000), np.zeros(3000)], 1),
                          [[1.0, 2.0, 0.0]]])  # the layout's minimum: nothing below the positive shift
    example = processor.training_example(xyz, None, layout, task="all")
    origin = xyz.min(axis=0)
    example["token_boxes"] = label_boxes(layout, labels, origin, WORLD_EXTENT / processor.num_bins)
    return processor.collate([example, example])


def test_the_token_loss_is_added_to_the_lm_loss_with_its_weight(base_lm_dir):
    labels = ["wall", "door", "bed"]
    torch.manual_seed(0)
    model, processor = SpatialLMForCausalLM.from_base_lm(base_lm_dir, point_config=POINT_CONFIG,
                                                         token_labels=labels, token_loss_weight=0.5)
    batch = _batch(processor, Layout(walls=[WALL], doors=[DOOR], boxes=[BED]), labels)
    assert batch["token_boxes"][:, 0].tolist() == [0, 0, 0, 1, 1, 1]  # the collator's sample column
    with torch.no_grad():
        with_tokens = model(**batch).loss
        lm_only = model(**{k: v for k, v in batch.items() if k != "token_boxes"}).loss
        encoded, _ = model._encode_points(batch["point_coords"], batch["point_features"], batch["point_batch"], 2)
        targets = token_targets(encoded.coords, 8, batch["token_boxes"], 3)
        p = torch.sigmoid(model.token_head(encoded.features))
        bce = -(targets * p.log() + (1 - targets) * (1 - p).log()).mean()
    assert 0 < targets[:, 1].sum() < targets[:, 0].sum() < len(targets)  # door cells are some of the wall's
    assert float(with_tokens - lm_only) == pytest.approx(0.5 * float(bce), rel=1e-4)
    with_tokens = model(**batch).loss
    with_tokens.backward()
    assert model.token_head.weight.grad.abs().sum() > 0
    assert model.point_encoder.input_proj.weight.grad.abs().sum() > 0


def test_the_extent_loss_is_the_mse_of_the_heads_last_six_outputs(base_lm_dir):
    torch.manual_seed(0)
    model, processor = SpatialLMForCausalLM.from_base_lm(base_lm_dir, point_config=POINT_CONFIG,
                                                         token_labels=["door"], token_loss_weight=0.0,
                                                         token_extent_weight=2.0)
    assert model.token_head.weight.shape == (1 + 6, 16)
    batch = _batch(processor, Layout(walls=[WALL], doors=[DOOR]), ["door"])
    with torch.no_grad():
        total = model(**batch).loss
        model.config.token_extent_weight = 0.0
        lm_only = model(**batch).loss  # the label loss is at 0x
        model.config.token_extent_weight = 2.0
        encoded, _ = model._encode_points(batch["point_coords"], batch["point_features"], batch["point_batch"], 2)
        voxels = torch.cat([batch["point_batch"][:, None], batch["point_coords"]], dim=1)
        extents = token_extents(voxels, encoded.coords, 8)
        mse = (model.token_head(encoded.features)[:, 1:] - extents).pow(2).mean()
    # The wall's cells: points span y only in the wall's voxel row, so y_lo == y_hi there.
    assert ((extents > 0) & (extents < 1)).all() and (extents[:, :3] <= extents[:, 3:]).all()
    assert float(total - lm_only) == pytest.approx(2.0 * float(mse), rel=1e-4)
    unlabelled, _ = SpatialLMForCausalLM.from_base_lm(base_lm_dir, point_config=POINT_CONFIG, token_extent_weight=1.0)
    assert unlabelled.token_head.out_features == 6  # no labels: a head of the six outputs only
    loss = unlabelled(**{k: v for k, v in batch.items() if k != "token_boxes"}).loss
    loss.backward()
    assert unlabelled.point_encoder.input_proj.weight.grad.abs().sum() > 0


def test_a_head_on_the_backbone_reads_the_resnet_output_and_leaves_input_proj_to_the_lm(base_lm_dir, tmp_path):
    labels = ["wall", "door"]
    torch.manual_seed(0)
    model, processor = SpatialLMForCausalLM.from_base_lm(base_lm_dir, point_config=POINT_CONFIG, token_labels=labels,
                                                         token_head_input="backbone")
    batch = _batch(processor, Layout(walls=[WALL], doors=[DOOR]), labels)
    encoded, _ = model._encode_points(batch["point_coords"], batch["point_features"], batch["point_batch"], 2)
    assert encoded.backbone.shape == encoded.features.shape == (len(encoded.coords), 16)
    targets = token_targets(encoded.coords, 8, batch["token_boxes"], 2)
    loss = model.token_loss(encoded, None, batch["token_boxes"])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(model.token_head(encoded.backbone), targets)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    loss.backward()
    encoder = model.point_encoder
    assert encoder.input_proj.weight.grad is None  # the position mix gets only the LM's gradient
    assert encoder.sparse_resnet.bottleneck[-1].weight.grad.abs().sum() > 0
    model.save_pretrained(tmp_path)
    assert SpatialLMForCausalLM.from_pretrained(tmp_path).config.token_head_input == "backbone"


def test_a_head_on_its_own_branch_marks_the_tokens_and_leaves_the_point_encoder_to_the_lm(base_lm_dir, tmp_path):
    labels = ["wall", "door"]
    torch.manual_seed(0)
    model, processor = SpatialLMForCausalLM.from_base_lm(
        base_lm_dir, point_config=POINT_CONFIG, token_labels=labels, token_head_input="branch",
        token_branch={"channels": [4, 4, 4, 8], "embed_dim": 8}, token_marks_scale=2.0)
    assert model.token_branch.config.channels == (4, 4, 4, 8) and model.token_branch.config.num_bins == 320
    assert model.token_head.weight.shape == (2, 8) and model.marks_projector.weight.shape == (32, 2)
    batch = _batch(processor, Layout(walls=[WALL], doors=[DOOR]), labels)
    coords, feats, rows = batch["point_coords"], batch["point_features"], batch["point_batch"]
    with torch.no_grad():  # the LM's point tokens: projected encoder tokens + projected head probabilities x 2
        tokens, counts = model.get_point_features(coords, feats, rows, 2)
        encoded, _ = model._encode_points(coords, feats, rows, 2)
        voxels = torch.cat([rows[:, None], coords], dim=1)
        branch = model.token_branch(voxels, feats)
        marks = torch.sigmoid(model.token_head(branch.features))
        expected = model.projector(encoded.features) + model.marks_projector(2.0 * marks)
    torch.testing.assert_close(tokens, expected)
    assert counts.tolist() == [len(encoded.coords) // 2] * 2 and torch.equal(branch.coords, encoded.coords)

    def grads(inputs) -> dict[str, torch.Tensor | None]:
        model.zero_grad(set_to_none=True)
        model(**inputs).loss.backward()
        return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}

    full = grads(batch)
    lm_only = grads({k: v for k, v in batch.items() if k != "token_boxes"})
    # The head's loss trains the branch and the head, nothing else; the LM's loss never reaches them.
    for name, grad in full.items():
        if name.startswith(("token_branch.", "token_head.")):
            assert grad.abs().sum() > 0 and lm_only[name] is None, name
        elif grad is not None:
            torch.testing.assert_close(grad, lm_only[name], msg=name)
    assert full["marks_projector.weight"].abs().sum() > 0  # the LM learns to read the marks
    assert full["point_encoder.input_proj.weight"].abs().sum() > 0
    model.save_pretrained(tmp_path)
    loaded = SpatialLMForCausalLM.from_pretrained(tmp_path)
    assert loaded.config.token_branch["channels"] == [4, 4, 4, 8] and loaded.config.token_marks_scale == 2.0
    inference = {k: v for k, v in batch.items() if k not in ("labels", "token_boxes")}
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inference).logits, model(**inference).logits)
        loaded.marks_projector.weight.zero_()  # the marks are read at inference too
        assert not torch.allclose(loaded(**inference).logits, model(**inference).logits)
    with pytest.raises(ValueError, match="SpatialLM's architecture has no place for"):
        save_spatiallm_checkpoint(model, processor, tmp_path / "spatiallm")
    assert not (tmp_path / "spatiallm").exists()


def test_the_head_is_saved_and_loaded_and_only_used_in_training(base_lm_dir, tmp_path):
    model, processor = SpatialLMForCausalLM.from_base_lm(base_lm_dir, point_config=POINT_CONFIG,
                                                         token_labels=["door"])
    model.save_pretrained(tmp_path)
    loaded = SpatialLMForCausalLM.from_pretrained(tmp_path)
    assert loaded.config.token_labels == ["door"] and loaded.config.token_loss_weight == 1.0
    torch.testing.assert_close(loaded.token_head.weight, model.token_head.weight)
    batch = _batch(processor, Layout(walls=[WALL], doors=[DOOR]), ["door"])
    del batch["labels"]  # inference: no loss, so the boxes change nothing
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits,
                                   loaded(**{k: v for k, v in batch.items() if k != "token_boxes"}).logits)
    plain, _ = SpatialLMForCausalLM.from_base_lm(base_lm_dir, point_config=POINT_CONFIG)
    assert plain.token_head is None and plain.config.token_labels is None
    batch = _batch(processor, Layout(walls=[WALL], doors=[DOOR]), ["door"])
    with pytest.raises(ValueError, match="no token head; set config.token_labels"):
        plain(**batch)


@pytest.mark.parametrize("kwargs, message", [
    ({"token_labels": ["door", "door"]}, "token_labels has duplicates"),
    ({"token_labels": ["door"], "point_backbone": "sonata"}, "need the scenescript point backbone"),
    ({"token_extent_weight": 1.0, "point_backbone": "sonata"}, "need the scenescript point backbone"),
    ({"token_extent_weight": float("nan")}, "token_extent_weight must be >= 0"),
    ({"token_extent_weight": -1.0}, "token_extent_weight must be >= 0"),
    ({"token_head_input": "features"}, "token_head_input must be one of"),
    ({"token_head_input": "branch"}, "set token_labels too"),
    ({"token_labels": ["door"], "token_branch": {"embed_dim": 8}}, "set token_head_input to 'branch'"),
    ({"token_labels": ["door"], "token_head_input": "branch", "token_branch": {"channels": [8, 8, 8]}},
     "must keep point_config's num_bins"),
    ({"token_labels": ["door"], "token_head_input": "branch", "token_marks_scale": 0.0},
     "token_marks_scale must be finite and > 0"),
])
def test_bad_token_labels_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpatialLMConfig(**kwargs)
