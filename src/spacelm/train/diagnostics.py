"""Does the model read the point cloud? The held-out answer loss with each room's own cloud against
the loss with another room's cloud.

A model that learned only the layout language (the grammar, typical room sizes, frequent labels) scores
the same either way; one that reads the cloud is surprised by the wrong one. The difference, in nats
per answer token, is a cheap, continuous signal of what F1 measures coarsely: F1 moves only when
whole entities cross the IoU threshold, and walls at the cloud's minimum (0 after the shift) match
even for a model that ignores the cloud.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from spacelm.model.processing_spatiallm import IGNORE_INDEX
from spacelm.scene.layout import canonical_order, fold_box_yaws, translate


@dataclass(frozen=True)
class CloudReliance:
    """``own``/``other``: mean answer loss (nats per token) with each room's own cloud / the next
    room's cloud; ``gain = other - own``."""

    own: float
    other: float
    rooms: int

    @property
    def gain(self) -> float:
        return self.other - self.own


@torch.no_grad()
def answer_loss(model, processor, rooms: Sequence, clouds: Sequence | None = None, *, task: str = "all",
                batch_size: int = 4) -> float:
    """Mean loss per answer token of each room's layout given ``clouds[i]`` (default: its own cloud).

    ``rooms``: ``(sample_id, cloud, layout)`` with the layout in the cloud's frame, as
    ``LayoutDataset.room`` returns. The answer is always room ``i``'s, written in room ``i``'s shifted
    frame, so only the conditioning changes between calls.
    """
    from spacelm.train.data import fit_to_ranges, select_task

    clouds = [cloud for _, cloud, _ in rooms] if clouds is None else list(clouds)
    if len(clouds) != len(rooms):
        raise ValueError(f"{len(clouds)} clouds for {len(rooms)} rooms")
    examples = []
    for (sid, cloud, layout), condition in zip(rooms, clouds):
        own = processor.preprocess_points(cloud.xyz, cloud.rgb, mode="test")
        layout = fit_to_ranges(fold_box_yaws(canonical_order(select_task(layout, task))), own.offset,
                               sample_id=sid)
        answer = processor.answer_ids(translate(layout, -own.offset))
        points = own if condition is cloud else processor.preprocess_points(condition.xyz, condition.rgb,
                                                                            mode="test")
        prompt = processor.prompt_ids(points.num_tokens, task)
        examples.append({"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer,
                         "point_coords": points.coords, "point_features": points.features})
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in processor.collate(examples[start:start + batch_size]).items()}
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1].float()
        targets = batch["labels"][:, 1:]
        losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                   ignore_index=IGNORE_INDEX, reduction="sum")
        total += float(losses)
        count += int((targets != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / max(count, 1)


def cloud_reliance(model, processor, rooms: Sequence, *, task: str = "all", batch_size: int = 4) -> CloudReliance:
    """Answer loss with the rooms' own clouds and with each room given the next room's cloud."""
    if len(rooms) < 2:
        raise ValueError("cloud_reliance needs at least two rooms (each is scored with another's cloud)")
    clouds = [cloud for _, cloud, _ in rooms]
    own = answer_loss(model, processor, rooms, task=task, batch_size=batch_size)
    other = answer_loss(model, processor, rooms, clouds[1:] + clouds[:1], task=task, batch_size=batch_size)
    return CloudReliance(own, other, len(rooms))
