"""Training rooms read on the fly, as SpatialLM's collator does: PLY + layout -> augmented, tokenised example.

Sources are our dataset folders (``pcd/<id>.ply``, ``layout/<id>.txt``, ``split.csv`` with ``id,split``)
or SpatialLM's ShareGPT files (``spatiallm_train.json``: records with ``conversations`` and
``point_clouds``, paths relative to the file; the gpt turn holds a metric layout between
``<|layout_s|>`` and ``<|layout_e|>``).

Per item, with a random stream fixed by ``(seed, epoch, index)`` so that a resumed run sees exactly the
batches it would have seen:

1. read the cloud and its metric layout;
2. augment both together (rotation about z, scale, colour jitter: ``points.transforms.augment``);
3. keep what the task asks for, ``canonical_order`` and fold box yaws by their symmetry;
4. fit the layout to the quantisation ranges relative to the cloud's minimum (policy ``clip`` or
   ``error``: a wall a few centimetres below the lowest point is common in real scans);
5. ``processor.training_example``: positive shift, random point per voxel, prompt with one
   ``<|point_pad|>`` per encoder token, integer layout text, labels -100 outside the answer.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from spacelm.errors import SpacelmError, decode_error
from spacelm.model.processing_spatiallm import PointExtentError
from spacelm.model.token_targets import label_boxes
from spacelm.points import PointCloud, read_points
from spacelm.points.transforms import WORLD_EXTENT
from spacelm.points.transforms import augment as augment_cloud
from spacelm.scene.language import TASKS, parse_layout, read_layout
from spacelm.scene.layout import Layout, canonical_order, fold_box_yaws
from spacelm.scene.quantize import RANGES
from spacelm.scene.table import read_rows
from spacelm.train.args import AugmentArgs

logger = logging.getLogger(__name__)

LAYOUT_START, LAYOUT_END = "<|layout_s|>", "<|layout_e|>"
_REQUEST = re.compile(r"Detect (?P<what>.*?)\. The reference code")


class DataError(SpacelmError, ValueError):
    """A training source (dataset folder, ShareGPT file or room) that cannot be used; the message
    names the file, record or sample."""


@dataclass(frozen=True)
class RoomRecord:
    """One training room: where its cloud is, its layout (a file or inline metric text) and its request."""

    sample_id: str
    cloud_path: Path
    layout_path: Path | None = None
    layout_text: str | None = None
    task: str = "all"
    categories: tuple[str, ...] = ()

    def layout(self) -> Layout:
        if self.layout_path is not None:
            return read_layout(self.layout_path).layout
        return parse_layout(self.layout_text or "", strict=True, source=f"{self.sample_id} (ShareGPT)").layout


def list_records(source: str | Path, split: str, task: str = "all") -> list[RoomRecord]:
    """Rooms of one source: a dataset folder (rows of ``split.csv`` in ``split``) or a ShareGPT .json."""
    source = Path(source)
    if source.suffix == ".json":
        return _sharegpt_records(source)
    split_file = source / "split.csv"
    if not split_file.is_file():
        raise FileNotFoundError(f"{split_file}: not found; a dataset folder needs split.csv (id,split), "
                                "or pass a SpatialLM ShareGPT .json file")
    with split_file.open(newline="", encoding="utf-8") as f:
        ids = [row["id"] for _, row in read_rows(f, str(split_file), ("id", "split")) if row["split"] == split]
    return [RoomRecord(i, source / "pcd" / f"{i}.ply", source / "layout" / f"{i}.txt", task=task) for i in ids]


def _sharegpt_records(path: Path) -> list[RoomRecord]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    except UnicodeDecodeError as e:
        raise decode_error(path, e, DataError) from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a list of ShareGPT records (is this dataset_info.json? name the "
                        "records file it lists instead)")
    out = []
    for n, record in enumerate(records):
        where = f"{path}: record {n}"
        try:
            turns = {turn["from"]: turn["value"] for turn in record["conversations"]}
            cloud = record["point_clouds"][0]
            human, answer = turns["human"], turns["gpt"]
        except (KeyError, IndexError, TypeError):
            raise DataError(f"{where}: expected conversations with human and gpt turns and point_clouds")
        task, categories = parse_request(human, where)
        text = answer.replace(LAYOUT_START, "").replace(LAYOUT_END, "").strip()
        out.append(RoomRecord(Path(cloud).stem, path.parent / cloud, layout_text=text, task=task,
                              categories=categories))
    return out


def parse_request(text: str, where: str = "prompt") -> tuple[str, tuple[str, ...]]:
    """SpatialLM's request -> ``(task, categories)``.

    >>> parse_request("<point_cloud>Detect walls, doors, windows, bed, sofa. The reference code is ...")
    ('all', ('bed', 'sofa'))
    """
    match = _REQUEST.search(text)
    if match is None:
        raise DataError(f"{where}: no 'Detect ... . The reference code' request in {text[:80]!r}")
    what = match["what"]
    for task, names in TASKS.items():
        if what == names:
            return task, ()
    layout_part = TASKS["arch"] + ", "
    if what.startswith(layout_part):
        return "all", tuple(what[len(layout_part):].split(", "))
    return "object", tuple(what.split(", "))


def select_task(layout: Layout, task: str) -> Layout:
    """Keep what ``task`` asks for: ``arch`` drops boxes, ``object`` keeps boxes only."""
    if task == "arch":
        return replace(layout, boxes=())
    if task == "object":
        return Layout(boxes=layout.boxes)
    return layout


def fit_to_ranges(layout: Layout, origin: np.ndarray, *, policy: str = "clip",
                  sample_id: str = "") -> Layout:
    """Bring every value of ``layout`` into its quantisation range relative to ``origin`` (the cloud's
    minimum, where the processor's positive shift will put 0).

    ``policy="clip"`` clamps values and logs a warning naming the sample and the largest overshoot;
    ``"error"`` raises ``DataError`` (a ``ValueError``). Angles are folded beforehand, so only
    positions and sizes move.
    """
    offsets = {"x": origin[0], "y": origin[1], "z": origin[2], "ax": origin[0], "ay": origin[1],
               "az": origin[2], "bx": origin[0], "by": origin[1], "bz": origin[2]}
    worst, groups = 0.0, []
    for entities in (layout.walls, layout.doors, layout.windows, layout.boxes):
        fitted = []
        for entity in entities:
            changes = {}
            for name, kind in type(entity).FIELDS:
                if kind not in RANGES:
                    continue
                lo, hi = RANGES[kind]
                shift = float(offsets.get(name, 0.0)) if kind == "world" else 0.0
                value = getattr(entity, name) - shift
                if value < lo or value > hi:
                    worst = max(worst, lo - value, value - hi)
                    changes[name] = min(max(value, lo), hi) + shift
            fitted.append(replace(entity, **changes) if changes else entity)
        groups.append(fitted)
    if worst > 1e-6:  # less is float noise from the shifts, clamped without a word
        message = (f"{sample_id}: layout sticks out of the quantisation range by {worst:.3f} m (below the "
                   "cloud minimum or beyond 32 m)")
        if policy == "error":
            raise DataError(message + "; set data.out_of_range: clip to clamp it")
        logger.warning("%s; clipped", message)
    return Layout(*groups)


def check_token_labels(records: list[RoomRecord], labels: list[str], sources: list[str | Path]) -> None:
    """Refuse token labels that no room's layout has (a typo such as ``dor`` would otherwise train the
    head towards 0 everywhere without a word). Reads every room's layout once: small text files."""
    seen = set()
    for record in records:
        layout = record.layout()
        seen.update(kind for kind, group in (("wall", layout.walls), ("door", layout.doors),
                                              ("window", layout.windows)) if group)
        seen.update(box.label for box in layout.boxes)
    missing = [label for label in labels if label not in seen]
    if missing:
        raise DataError(f"model.token_labels: {', '.join(map(repr, missing))} in no training room of "
                        f"{', '.join(map(str, sources))}; the labels there: {', '.join(sorted(seen)) or 'none'}")


class LayoutDataset(Dataset):
    """Rooms of several sources as training examples (dicts for ``processor.collate``).

    ``augment=None`` turns augmentation off (validation). ``set_epoch`` is called by accelerate's
    data loader each epoch; the random stream of item ``i`` is ``default_rng([seed, epoch, i])``.
    """

    def __init__(self, sources: list[str | Path], processor, *, split: str = "train", task: str = "all",
                 augment: AugmentArgs | None = None, seed: int = 0, out_of_range: str = "clip",
                 task_mix: dict[str, float] | None = None, token_labels: list[str] | None = None) -> None:
        if not sources:
            raise DataError(f"no {split} sources given")
        self.records = [r for source in sources for r in list_records(source, split, task)]
        if not self.records:
            raise DataError(f"no {split} rooms in {', '.join(map(str, sources))}")
        self.processor = processor
        self.augment = augment
        self.token_labels = token_labels
        self.seed = seed
        self.out_of_range = out_of_range
        self.epoch = 0
        # Requests drawn per example from rooms stored whole (task "all" of a dataset folder; ShareGPT
        # records carry their own request).
        self.task_mix = None if not task_mix else (list(task_mix), np.array(list(task_mix.values())) /
                                                    sum(task_mix.values()))

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def room(self, index: int) -> tuple[str, PointCloud, Layout]:
        """``(sample_id, cloud, metric layout)`` of a room as stored, without any transform."""
        record = self.records[index]
        cloud = read_points(record.cloud_path)
        return record.sample_id, cloud, select_task(record.layout(), record.task)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        cloud = read_points(record.cloud_path)
        layout = record.layout()  # the whole room: token targets see every element, the answer its request's
        task = record.task
        if self.task_mix is not None and record.task == "all" and record.layout_path is not None:
            tasks, weights = self.task_mix
            # Its own stream, so a mix leaves the augmentation of every example as it was.
            task = tasks[np.random.default_rng([self.seed, self.epoch, index, 1]).choice(len(tasks), p=weights)]
        xyz, rgb = cloud.xyz, cloud.rgb
        if self.augment is not None:
            a = self.augment
            xyz, rgb, layout = augment_cloud(
                xyz, rgb, layout, rng=rng, rotate=None if a.rotate == "none" else a.rotate,
                scale_range=None if a.scale_range is None else tuple(a.scale_range),
                color_jitter=a.color_jitter)
        layout = fold_box_yaws(canonical_order(layout))
        origin = np.array([xyz[:, i].min() for i in range(3)], dtype=np.float64)
        layout = fit_to_ranges(layout, origin, policy=self.out_of_range, sample_id=record.sample_id)
        try:
            example = self.processor.training_example(xyz, rgb, select_task(layout, task), task=task,
                                                      categories=list(record.categories) or None,
                                                      mode="train", rng=rng)
        except PointExtentError as e:
            raise DataError(f"{record.cloud_path}: {e}") from None
        if self.token_labels:
            example["token_boxes"] = label_boxes(layout, self.token_labels, origin,
                                                 WORLD_EXTENT / self.processor.num_bins)
        return example

