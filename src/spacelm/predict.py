"""Point cloud -> ``Layout``: SpatialLM's inference, used by ``spacelm predict`` and validation.

Clean-up (voxel down-sample + statistical outlier removal, as SpatialLM's ``cleanup_pcd``), the
processor's shift / colour / grid-sample path shared with training, generation with SpatialLM's
sampling defaults (temperature 0.6, top-p 0.95, top-k 10, up to 4096 new tokens), a guard that stops
a sequence as soon as it repeats an entity (the known failure on big scenes), lenient parsing, and
the shift back to the input frame.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from spacelm.model import SpatialLMForCausalLM
from spacelm.model.processing_spatiallm import SpatialLMProcessor
from spacelm.points import (
    PointCloud,
    check_alignment,
    remove_statistical_outliers,
    voxel_downsample,
)
from spacelm.points.transforms import WORLD_EXTENT
from spacelm.scene.language import Diagnostic
from spacelm.scene.layout import Layout


@dataclass(frozen=True)
class PredictConfig:
    task: str = "all"  # all | arch | object
    categories: tuple[str, ...] = ()  # replaces "boxes" in the request, e.g. ("bed", "nightstand")
    cleanup: bool = True
    do_sample: bool = True
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 10
    max_new_tokens: int = 4096
    stop_on_repeat: bool = True


@dataclass(frozen=True)
class Prediction:
    layout: Layout  # in the input cloud's frame
    diagnostics: tuple[Diagnostic, ...]  # lines of the model's text that were dropped, and why
    warnings: tuple[str, ...] = field(default_factory=tuple)  # e.g. the cloud looks unaligned
    text: str = ""  # the raw generated text (integer form)


def load_model(model_dir: str | Path, device: str = "auto", dtype: str | None = None):
    """Model and processor saved by ``save_pretrained``, or an upstream SpatialLM checkpoint folder
    (``spatiallm_qwen`` / ``spatiallm_llama``, read as it is); device ``auto`` picks CUDA when present."""
    from spacelm.model.spatiallm_checkpoint import (
        is_spatiallm_checkpoint,
        load_spatiallm_checkpoint,
    )

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if device.startswith("cuda") else None)
    if is_spatiallm_checkpoint(model_dir):
        model, processor = load_spatiallm_checkpoint(model_dir, dtype=torch_dtype)
        return model.to(device).eval(), processor
    model = SpatialLMForCausalLM.from_pretrained(model_dir, dtype=torch_dtype).to(device).eval()
    return model, SpatialLMProcessor.from_pretrained(model_dir)


def clean_cloud(cloud: PointCloud, num_bins: int) -> PointCloud:
    """SpatialLM's ``cleanup_pcd``: voxel down-sample at the grid size, then drop outliers (15 nn, 2 std)."""
    xyz, rgb = voxel_downsample(cloud.xyz, cloud.rgb, WORLD_EXTENT / num_bins)
    keep = remove_statistical_outliers(xyz)
    return PointCloud(xyz[keep], None if rgb is None else rgb[keep])


class RepeatedEntityStop(StoppingCriteria):
    """Stop a sequence once its newest complete line repeats an earlier entity's arguments.

    SpatialLM models sometimes loop on one wall forever on large scenes; without this a single
    file can burn the whole ``max_new_tokens`` budget. Checked only when a newline was generated.
    """

    _ARGS = re.compile(r"=\s*([A-Za-z]+\(.*\))\s*$")

    def __init__(self, tokenizer, prompt_length: int):
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        stop = torch.zeros(len(input_ids), dtype=torch.bool, device=input_ids.device)
        for row, ids in enumerate(input_ids):
            last = self.tokenizer.decode(ids[-1:])
            if "\n" in last:
                lines = self.tokenizer.decode(ids[self.prompt_length:], skip_special_tokens=True).split("\n")
                entities = [m[1] for line in lines[:-1] if (m := self._ARGS.search(line))]
                stop[row] = len(entities) > 1 and entities[-1] in entities[:-1]
        return stop


def _alignment_warnings(xyz) -> tuple[str, ...]:
    """``check_alignment``'s warnings; a cloud with too few planes to judge gets a warning of its own."""
    try:
        return tuple(check_alignment(xyz))
    except ValueError as e:
        return (f"could not check that the cloud is z-up and metric: {e}",)


def predict_clouds(model, processor: SpatialLMProcessor, clouds: list[PointCloud],
                   config: PredictConfig = PredictConfig(), *, seed: int | None = None) -> list[Prediction]:
    """Predict one layout per cloud (a batch); layouts come back in each cloud's own frame."""
    if seed is not None:
        torch.manual_seed(seed)
    warnings = [_alignment_warnings(c.xyz) for c in clouds]
    if config.cleanup:
        clouds = [clean_cloud(c, processor.num_bins) for c in clouds]
    batch = processor(clouds, config.task, list(config.categories) or None)
    inputs = {k: v.to(model.device) for k, v in batch.inputs.items()}
    prompt_length = inputs["input_ids"].shape[1]
    stopping = StoppingCriteriaList(
        [RepeatedEntityStop(processor.tokenizer, prompt_length)] if config.stop_on_repeat else [])
    sampling = dict(do_sample=True, temperature=config.temperature, top_p=config.top_p,
                    top_k=config.top_k) if config.do_sample else dict(do_sample=False)
    with torch.no_grad():
        # The point tokens belong to the prompt only: one emitted with the cache off would break the
        # forward's check that pads match the encoder's token count, so they are never sampled.
        output = model.generate(**inputs, max_new_tokens=config.max_new_tokens, use_cache=True,
                                stopping_criteria=stopping, num_beams=1, suppress_tokens=model.config.point_token_ids,
                                **sampling)
    predictions = []
    for row, offset in enumerate(batch.offsets):
        generated = output[row, prompt_length:]
        result = processor.decode_layout(generated, offset)
        text = processor.tokenizer.decode(generated, skip_special_tokens=True)
        predictions.append(Prediction(result.layout, result.diagnostics, warnings[row], text))
    return predictions


POINT_SUFFIXES = (".ply", ".npy", ".bin")


def find_inputs(path: str | Path) -> list[Path]:
    """A point file, or every point file in a folder (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in POINT_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{path}: no {', '.join(POINT_SUFFIXES)} files")
    return files


def predict_files(model_dir: str | Path, inputs: list[Path], output_dir: str | Path,
                  config: PredictConfig = PredictConfig(), *, device: str = "auto", batch_size: int = 1,
                  seed: int | None = None, overwrite: bool = False, save_raw: bool = False,
                  report=print) -> dict[str, int]:
    """Write ``output_dir/<stem>.txt`` for every input; existing outputs are kept (a re-run resumes).
    ``save_raw`` also writes the model's generated text (integer bins, its frame) to ``<stem>.raw.txt``.

    A file that cannot be read or predicted is reported with its name and counted in ``failed``; the
    rest go on. With a ``seed``, each batch samples from ``input_seed(seed, first input's name)``, and
    batches are cut from ``inputs`` as given, done or not (a batch with an unfinished input is predicted
    whole, its finished ones left as they are), so a resumed run writes what an uninterrupted one would
    have, whatever the batch size.
    """
    from rich.progress import Progress

    from spacelm.datasets.store import remove_stale_temp_files
    from spacelm.io import atomic_write_text
    from spacelm.points import read_points
    from spacelm.scene.language import write_layout

    output_dir = Path(output_dir)
    remove_stale_temp_files(output_dir, ".*.txt.*.tmp")  # left by a killed run's atomic writes
    done = {p for p in inputs if not overwrite and (output_dir / f"{p.stem}.txt").exists()}
    batches = [inputs[i:i + batch_size] for i in range(0, len(inputs), batch_size)]
    batches = [batch for batch in batches if not done.issuperset(batch)]
    todo = [p for batch in batches for p in batch if p not in done]
    summary = {"predicted": 0, "skipped": len(done), "failed": 0, "bad_lines": 0}
    model, processor = load_model(model_dir, device)
    with Progress(disable=len(todo) < 2) as progress:
        task = progress.add_task("predicting", total=len(todo))
        for batch in batches:
            paths, clouds = [], []
            for path in batch:
                try:
                    clouds.append(read_points(path))
                    paths.append(path)
                except (ValueError, OSError) as e:  # PointFileError names the file and the problem
                    report(f"failed {path}: {e}")
                    summary["failed"] += 1
            if clouds:
                predictions = _predict_or_report(model, processor, paths, clouds, config, seed, report)
                summary["failed"] += len(paths) - len(predictions)
                for path, pred in predictions:
                    if path in done:  # predicted again only to keep the batch as it was
                        continue
                    for warning in pred.warnings:
                        report(f"{path}: {warning}")
                    for d in pred.diagnostics:
                        report(f"{path}: model output {d}")
                    summary["bad_lines"] += len(pred.diagnostics)
                    if save_raw:  # before the layout, whose presence marks the input done
                        atomic_write_text(output_dir / f"{path.stem}.raw.txt", pred.text)
                    write_layout(output_dir / f"{path.stem}.txt", pred.layout)
                    summary["predicted"] += 1
            progress.advance(task, sum(p not in done for p in batch))
    return summary


def input_seed(seed: int, name: str) -> int:
    """A sampling seed for one input from the run's seed and the input's file name (not its position
    in the run, which changes when a run resumes).

    >>> input_seed(0, "room0.ply") == input_seed(0, "room0.ply") != input_seed(1, "room0.ply")
    True
    """
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "big")


def _predict_or_report(model, processor, paths: list[Path], clouds: list[PointCloud], config: PredictConfig,
                       seed: int | None, report) -> list[tuple[Path, Prediction]]:
    """Predictions for the clouds that can be predicted; each one that cannot is reported by name.

    A batch that fails is retried cloud by cloud, so one bad cloud costs only its own prediction.
    """
    batch_seed = None if seed is None else input_seed(seed, paths[0].name)
    try:
        return list(zip(paths, predict_clouds(model, processor, clouds, config, seed=batch_seed)))
    except ValueError as e:  # the processor's input checks (extent, grid size), naming no file
        if len(clouds) == 1:
            report(f"failed {paths[0]}: {e}")
            return []
    return [pair for path, cloud in zip(paths, clouds)
            for pair in _predict_or_report(model, processor, [path], [cloud], config, seed, report)]
