"""``spacelm``: one command line for every stage. Each command is a thin wrapper over a library call."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console
from rich.markup import escape

from spacelm.arrange.generate import SPLITS
from spacelm.distributed import launched_run
from spacelm.errors import ArgumentError, SpacelmError
from spacelm.render.images import BACKENDS as RENDER_BACKENDS
from spacelm.train.args import STAGES, TASKS

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="spacelm: spatial language models (SpatialLM and MetaSpatial reproductions).")
layout_app = typer.Typer(no_args_is_help=True, help="Work with layout text files.")
app.add_typer(layout_app, name="layout")
arrange_app = typer.Typer(no_args_is_help=True, help="Layout generation (MetaSpatial): tasks, evaluation.")
app.add_typer(arrange_app, name="arrange")
data_app = typer.Typer(no_args_is_help=True, help="Build training data: convert datasets, synthesise rooms.")
app.add_typer(data_app, name="data")

def _make_console(stderr: bool = False) -> Console:
    """Rich console; off a terminal (logs, pipes) 120 columns instead of 80, so tables stay whole."""
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=120 if wide else None)


console = _make_console()
err_console = _make_console(stderr=True)


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of input errors too "
                                        "(the same as SPACELM_DEBUG=1).")] = False,
) -> None:
    # Options of every command; the app's help text is Typer(help=...) above.
    if debug:
        os.environ["SPACELM_DEBUG"] = "1"  # read by main() once the command has failed


@layout_app.command("check")
def layout_check(
    files: Annotated[list[Path], typer.Argument(help="Layout .txt files to check.", exists=True,
                                                dir_okay=False)],
    bins: Annotated[Optional[int], typer.Option(help="Check the integer (quantised) form with this many bins.")] = None,
) -> None:
    """Parse layout files and print every problem with its line; exit 1 if any file has one."""
    from spacelm.errors import decode_error
    from spacelm.scene.language import parse_layout
    from spacelm.scene.quantize import Quantizer

    quantizer = Quantizer(bins) if bins else None
    failed = 0
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise decode_error(path, e) from None
        result = parse_layout(text, quantizer, source=str(path))
        layout = result.layout
        summary = (f"{len(layout.walls)} walls, {len(layout.doors)} doors, {len(layout.windows)} windows, "
                   f"{len(layout.boxes)} boxes")
        if result.diagnostics:
            failed += 1
            console.print(f"[red]✗[/red] {path}: {summary}, {len(result.diagnostics)} problem(s)")
            for d in result.diagnostics:
                console.print(f"    {escape(str(path))}:{d.line}: [yellow]{d.kind}[/yellow]: "
                              f"{escape(d.reason)}: {escape(repr(d.text))}", highlight=False, soft_wrap=True)
        else:
            console.print(f"[green]✓[/green] {path}: {summary}")
    if failed:
        raise typer.Exit(code=1)


@app.command("eval")
def eval_command(
    gt: Annotated[Path, typer.Option(help="Folder of ground-truth <id>.txt layouts (metric).")],
    pred: Annotated[Path, typer.Option(help="Folder of predicted <id>.txt layouts; missing ones count as empty.")],
    metadata: Annotated[Optional[Path], typer.Option(help="CSV with an 'id' column: the scenes to score.")] = None,
    label_mapping: Annotated[Optional[Path], typer.Option(help="TSV mapping box labels (e.g. "
                                                               "SpatialLM's benchmark_categories.tsv).")] = None,
    label_from: Annotated[str, typer.Option(help="Source column / label set.")] = "spatiallm59",
    label_to: Annotated[Optional[str], typer.Option(help="Target column / label set, e.g. "
                                                         "spatiallm20. Without --label-mapping a "
                                                         "built-in table is used.")] = None,
    compat: Annotated[bool, typer.Option(help="Reproduce SpatialLM eval.py's geometry bugs (to "
                                              "compare with published numbers).")] = False,
    output: Annotated[Optional[Path], typer.Option(help="Write per-class and per-scene figures to "
                                                        "this JSON file.")] = None,
) -> None:
    """Score predicted layouts against ground truth with SpatialLM's F1 metric (IoU 0.25 and 0.5)."""
    import warnings

    from spacelm.evaluate import evaluate_dirs
    from spacelm.scene.categories import label_mapping as builtin_mapping
    from spacelm.scene.categories import load_label_mapping

    if label_mapping is not None:
        mapping = load_label_mapping(label_mapping, label_from, label_to or "spatiallm20")
    elif label_to is not None:
        mapping = builtin_mapping(label_from, label_to)
    else:
        mapping = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, loaded = evaluate_dirs(gt, pred, metadata=metadata, label_map=mapping, compat=compat)
    for w in caught:
        err_console.print(f"[yellow]warning:[/yellow] {escape(str(w.message))}", soft_wrap=True)
    for scene_id, diagnostics in loaded.prediction_diagnostics.items():
        err_console.print(f"[yellow]warning:[/yellow] {scene_id}: {len(diagnostics)} bad line(s) in the "
                          f"prediction, first: {escape(str(diagnostics[0]))}", soft_wrap=True)
    _print_eval_table(result, len(loaded.scenes), compat)
    if output is not None:
        import json

        from spacelm.io import atomic_write_text

        atomic_write_text(output, json.dumps(result.to_dict(), indent=2) + "\n")
        console.print(f"wrote {output}")


def _print_eval_table(result, num_scenes: int, compat: bool) -> None:
    from rich.table import Table

    layout_classes = [c for c in result.classes if c in ("wall", "door", "window")]
    object_classes = [c for c in result.classes if c not in layout_classes]
    mode = "SpatialLM-compatible geometry" if compat else "correct geometry"
    for title, names in (("layout", layout_classes), ("objects", object_classes)):
        if not names:
            continue
        table = Table(title=f"{title}: F1 over {num_scenes} scenes ({mode})")
        table.add_column("class")
        for t in result.thresholds:
            table.add_column(f"F1@{t:.2f}", justify="right")
        table.add_column("scenes", justify="right")
        for name in names:
            scenes = sum(1 for counts in result.per_scene.values() if name in counts)
            table.add_row(name, *(_pct(result.scores[name][t]) for t in result.thresholds), str(scenes))
        table.add_section()
        table.add_row("mean", *(_pct(_nanmean([result.scores[n][t] for n in names]))
                                for t in result.thresholds), "")
        console.print(table)


def _pct(value: float) -> str:
    return "-" if value != value else f"{100 * value:.1f}"


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if v == v]
    return sum(kept) / len(kept) if kept else float("nan")


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise typer.BadParameter(f"expected I/N such as 3/64, got {text!r}") from None
    if not (count > 0 and 0 <= index < count):
        raise typer.BadParameter(f"need 0 <= I < N, got {text!r}")
    return index, count


def _print_summary(summary: dict, output: Path) -> None:
    parts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in summary.items())
    console.print(f"{output}: {parts}")
    if summary.get("failed"):
        err_console.print(f"[yellow]warning:[/yellow] {summary['failed']} scene(s) failed; reasons in "
                          f"{output}/errors*.jsonl (a re-run retries them)")


@data_app.command("convert")
def data_convert(
    source: Annotated[str, typer.Option(help="vla3d, scannet, arkitscenes, 3rscan, matterport, "
                                             "hm3d, structured3d or spatiallm.")],
    input: Annotated[Path, typer.Option(help="The source dataset's folder.")],
    output: Annotated[Path, typer.Option(help="Output dataset folder (SpatialLM format + manifest.jsonl).")],
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    shard: Annotated[Optional[str], typer.Option(help="I/N: convert only every N-th scene from I "
                                                      "(0-based), for many machines.")] = None,
    label_set: Annotated[str, typer.Option(help="Box class names: nyu40 (keep all) or spatiallm59 "
                                                "(map, drop the rest).")] = "nyu40",
    val_fraction: Annotated[float, typer.Option(help="Share of scenes put in the val split (by a "
                                                     "hash of the scene).")] = 0.1,
) -> None:
    """Convert a dataset into room-level samples; resumable (finished scenes are skipped)."""
    from spacelm.datasets.convert import convert_dataset

    summary = convert_dataset(source, input, output, workers=workers, shard=_parse_shard(shard),
                              label_set=label_set, val_fraction=val_fraction)
    _print_summary(summary, output)


@data_app.command("synth")
def data_synth(
    rooms: Annotated[int, typer.Option(help="Number of rooms.")],
    output: Annotated[Path, typer.Option(help="Output dataset folder.")],
    seed: Annotated[int, typer.Option(help="Room i is generated from (seed, i): reproducible one by one.")] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    val_fraction: Annotated[float, typer.Option(help="Share of rooms put in the val split.")] = 0.1,
    density: Annotated[Optional[float], typer.Option(help="Points per m^2 of surface (default 1000).")] = None,
    categories: Annotated[Optional[str], typer.Option(
        help="Comma-separated furniture classes the rooms may hold (default: all 33), e.g. the quickstart's "
             "bed,sofa,wardrobe,bookcase,dining_table,desk,refrigerator,cupboard.")] = None,
    boxes: Annotated[Optional[str], typer.Option(help="Boxes per room as MIN-MAX (default 3-15).")] = None,
) -> None:
    """Synthesise procedural rooms (rectangular and L-shaped, doors, windows, furniture) with points."""
    from spacelm.datasets.convert import synthesize_dataset
    from spacelm.datasets.synthetic import SynthConfig

    knobs = {}
    if categories is not None:
        knobs["categories"] = tuple(name.strip() for name in categories.split(",") if name.strip())
    if boxes is not None:
        low, _, high = boxes.partition("-")
        if not (low.strip().isdigit() and high.strip().isdigit() and int(low) <= int(high)):
            raise ArgumentError(f"--boxes must be MIN-MAX with 0 <= MIN <= MAX, got {boxes!r}")
        knobs["boxes"] = (int(low), int(high))
    try:
        synth = SynthConfig(**knobs)
    except ValueError as e:
        raise ArgumentError(f"--categories: {e}") from None
    summary = synthesize_dataset(output, rooms, seed=seed, workers=workers, val_fraction=val_fraction,
                                 density=density, synth=synth)
    _print_summary(summary, output)


@data_app.command("stats")
def data_stats(folder: Annotated[Path, typer.Argument(help="A dataset folder.", exists=True, file_okay=False)]) -> None:
    """Samples, entities, classes and drop reasons of a dataset folder."""
    from rich.table import Table

    from spacelm.datasets.store import dataset_stats

    stats = dataset_stats(folder)
    table = Table(title=f"{folder}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("samples", "points", "walls", "doors", "windows", "boxes", "failed_scenes"):
        table.add_row(key.replace("_", " "), f"{stats[key]:,}")
    for group in ("by_source", "by_split", "dropped"):
        for name, count in stats[group].items():
            table.add_row(f"{group.replace('_', ' ')}: {name}", f"{count:,}")
    console.print(table)
    top = ", ".join(f"{name} {count}" for name, count in list(stats["classes"].items())[:25])
    console.print(f"classes ({len(stats['classes'])}): {top}", soft_wrap=True)


@data_app.command("finalize")
def data_finalize(
    folder: Annotated[Path, typer.Argument(help="A dataset folder.", exists=True, file_okay=False)],
    val_fraction: Annotated[float, typer.Option(help="Share of scenes put in the val split.")] = 0.1,
) -> None:
    """Rewrite split.csv and the ShareGPT JSON files from every shard's manifest."""
    from spacelm.datasets.store import finalize

    counts = finalize(folder, val_fraction=val_fraction)
    console.print(f"{folder}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def _check_device(value: str) -> str:
    """``--device``: a fixed word or ``cuda:N``, refused at parse time (exit 2) listing what is allowed."""
    if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise typer.BadParameter(f"{value!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:N'")


@app.command("predict")
def predict_command(
    model: Annotated[Path, typer.Option(help="A trained model folder (save_pretrained output), or a SpatialLM "
                                        "checkpoint folder (spatiallm_qwen / spatiallm_llama) as it is.")],
    input: Annotated[Path, typer.Option(help="A point cloud (.ply/.npy/.bin) or a folder of them.")],
    output: Annotated[Path, typer.Option(help="Folder for <name>.txt layouts (metric, input frame).")],
    task: Annotated[Literal[TASKS], typer.Option(help="all, arch (walls, doors, windows) or object (boxes).")] = "all",
    categories: Annotated[Optional[list[str]], typer.Option(help="Detect only these box classes (repeatable).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.", callback=_check_device)] = "auto",
    batch_size: Annotated[int, typer.Option(help="Clouds per generate call.")] = 1,
    seed: Annotated[Optional[int], typer.Option(help="Seed for sampling (reproducible outputs).")] = None,
    greedy: Annotated[bool, typer.Option(help="Greedy decoding instead of SpatialLM's sampling.")] = False,
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget per cloud.")] = 4096,
    cleanup: Annotated[bool, typer.Option(help="SpatialLM's voxel down-sample + outlier removal first.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Redo inputs whose output exists (default: resume).")] = False,
    save_raw: Annotated[bool, typer.Option(help="Also write the generated text to <name>.raw.txt.")] = False,
) -> None:
    """Predict layouts from point clouds with a trained model (SpatialLM's sampling by default)."""
    from spacelm.predict import PredictConfig, find_inputs, predict_files

    config = PredictConfig(task=task, categories=tuple(categories or ()), cleanup=cleanup,
                           do_sample=not greedy, max_new_tokens=max_new_tokens)
    summary = predict_files(model, find_inputs(input), output, config, device=device,
                            batch_size=batch_size, seed=seed, overwrite=overwrite, save_raw=save_raw,
                            report=lambda text: err_console.print(f"[yellow]warning:[/yellow] {escape(text)}",
                                                                  soft_wrap=True))
    console.print(f"{output}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items()))
    if summary["failed"]:
        raise typer.Exit(code=1)


@app.command("train")
def train_command(
    config: Annotated[Path, typer.Argument(help="YAML run config (see configs/).", exists=True, dir_okay=False)],
    stage: Annotated[Literal[STAGES], typer.Option(help="1 (encoder, LM frozen), 2 (everything) or both.")] = "both",
    output_dir: Annotated[Optional[Path], typer.Option(help="Override the config's output_dir.")] = None,
) -> None:
    """Train a SpatialLM model in two stages (resumes from the last checkpoint). For several GPUs or
    nodes: accelerate launch --config_file configs/accelerate/ddp.yaml -m spacelm.train CONFIG."""
    import logging

    from spacelm.train.sft import train_from_yaml

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with launched_run():
        folders = train_from_yaml(config, stage=stage, output_dir=output_dir)
    for name, folder in folders.items():
        console.print(f"stage {name}: model in {folder}")


@app.command("quickstart")
def quickstart_command(
    output: Annotated[Path, typer.Option(help="Run folder: data, model, predictions, figures.")] = Path(
        "out/quickstart"),
    minutes: Annotated[float, typer.Option(help="Wall-clock budget for everything; more time, better model.")
                       ] = 25.0,
    rooms: Annotated[int, typer.Option(help="Synthetic training rooms.")] = 1000,
    val_rooms: Annotated[int, typer.Option(help="Held-out rooms scored at the end.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of data, model and training.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Delete a model trained in OUTPUT before and train again.")
                         ] = False,
    token_branch: Annotated[bool, typer.Option(
        help="Add the token branch (opening and box-class marks from a second encoder): every target after "
             "about 65 minutes on 2 cores (all four met with --minutes 90), behind the default in 25.")] = False,
) -> None:
    """Train a tiny SpatialLM on synthetic rooms on this CPU (both stages), predict held-out rooms, score."""
    from spacelm.quickstart import run_quickstart

    run_quickstart(output, minutes=minutes, rooms=rooms, val_rooms=val_rooms, seed=seed,
                   overwrite=overwrite, token_branch=token_branch, console=console)


@app.command("viz")
def viz_command(
    points: Annotated[Path, typer.Option(help="Point cloud (.ply, .npy or .bin).")],
    layout: Annotated[Path, typer.Option(help="Ground-truth (or any) layout .txt.")],
    out: Annotated[Path, typer.Option(help="Output .html (self-contained viewer) or .rrd (rerun recording).")],
    pred: Annotated[Optional[Path], typer.Option(help="A predicted layout, drawn in a second colour.")] = None,
) -> None:
    """Write a viewer of a point cloud with its layout (and a prediction) as HTML or a rerun recording."""
    from spacelm.viz import visualize

    path = visualize(points, layout, pred, out_path=out)
    console.print(f"wrote {path}")


@arrange_app.command("generate")
def arrange_generate(
    n: Annotated[int, typer.Option(help="Number of tasks.")],
    output: Annotated[Path, typer.Option(help="Tasks JSONL; reference solutions go to <stem>.reference.jsonl.")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    split: Annotated[Literal[SPLITS], typer.Option(
        help="train or test (a hash of each task decides; never overlapping).")] = "train",
) -> None:
    """Generate solvable arrangement tasks from room templates, with reference solutions."""
    from spacelm.arrange.generate import generate_tasks, save_generated

    generated = generate_tasks(n, seed, split)
    reference = output.with_name(output.stem + ".reference.jsonl")
    save_generated(generated, output, reference)
    console.print(f"wrote {len(generated)} tasks to {output} and reference completions to {reference}")


@arrange_app.command("import")
def arrange_import(
    input: Annotated[Path, typer.Option(help="MetaSpatial's HF parquet file.")],
    output: Annotated[Path, typer.Option(help="Tasks JSONL to write.")],
    source: Annotated[str, typer.Option(help="Only 'metaspatial' for now.")] = "metaspatial",
    image_dir: Annotated[Optional[Path], typer.Option(help="Write each row's room image here.")] = None,
) -> None:
    """Convert MetaSpatial's data into spacelm tasks; rows that cannot be converted are listed with the reason."""
    from spacelm.arrange.metaspatial_import import read_parquet
    from spacelm.arrange.task import write_tasks

    if source != "metaspatial":
        raise ArgumentError(f"--source: unknown source {source!r}; only 'metaspatial' is supported")
    result = read_parquet(input, image_dir=image_dir)
    for failure in result.failures:
        err_console.print(f"[yellow]skipped[/yellow] {escape(failure.where)}: {escape(failure.reason)}",
                          soft_wrap=True)
    write_tasks(output, result.tasks)
    console.print(f"wrote {len(result.tasks)} tasks to {output} ({len(result.failures)} rows skipped)")


@arrange_app.command("eval")
def arrange_eval(
    tasks: Annotated[Path, typer.Option(help="Tasks JSONL.")],
    completions: Annotated[Optional[Path], typer.Option(help="Completions JSONL: {task_id, completion} per line.")
                           ] = None,
    model: Annotated[Optional[Path], typer.Option(help="Instead of --completions: generate with this HF causal LM "
                                                       "folder (text prompts, its chat template).")] = None,
    samples: Annotated[int, typer.Option(help="--model: completions per task.")] = 1,
    temperature: Annotated[float, typer.Option(help="--model: sampling temperature; 0 is greedy.")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(help="--model: generation budget per completion.")] = 1024,
    save_completions: Annotated[Optional[Path], typer.Option(help="--model: also write the completions here.")
                                ] = None,
    judge: Annotated[bool, typer.Option(help="Render and ask a vision judge (OpenAI-compatible; key "
                                             "from OPENAI_API_KEY).")] = False,
    judge_model: Annotated[Optional[str], typer.Option(help="Judge model (default: "
                                                            "SPACELM_JUDGE_MODEL or gpt-4o).")] = None,
    judge_base_url: Annotated[Optional[str], typer.Option(help="Judge endpoint, e.g. a local vLLM server.")] = None,
    judge_cache: Annotated[Optional[Path], typer.Option(help="Cache judge answers here.")] = None,
    judge_concurrency: Annotated[int, typer.Option(help="Judge requests in flight at once.")] = 4,
    judge_render: Annotated[Literal[RENDER_BACKENDS], typer.Option(help="Renderer for the judge: builtin, or blender "
                                                   "(after `make blender`).")] = "builtin",
    per_task: Annotated[bool, typer.Option(help="Also print one row per task.")] = False,
    output: Annotated[Optional[Path], typer.Option(help="Write the figures to this JSON file.")] = None,
    fixed_rotation: Annotated[bool, typer.Option(help="Rotation is fixed by the scene graph: answers "
                                                     "give x, y, z only (MetaSpatial's own), a missing "
                                                     "rotation is the object's reference one.")] = False,
) -> None:
    """MetaSpatial's table (format, judge, collision, constraint, overall) plus bounds/floating/relations."""
    import json

    from spacelm.arrange.evaluate import evaluate_completions, print_table
    from spacelm.arrange.task import read_completions, read_tasks
    from spacelm.io import atomic_write_text

    the_judge = None
    if judge:
        from spacelm.arrange.judge import Judge, JudgeConfig

        the_judge = Judge(JudgeConfig(model=judge_model, base_url=judge_base_url,
                                      cache_dir=str(judge_cache) if judge_cache else None,
                                      max_concurrency=judge_concurrency, render_backend=judge_render),
                          require_rotation=not fixed_rotation)
    if (completions is None) == (model is None):
        raise ArgumentError("give exactly one of --completions FILE (score them) and --model DIR (generate)")
    task_list = read_tasks(tasks)
    if model is not None:
        records = _generate_arrange(model, task_list, samples, temperature, max_new_tokens)
        if save_completions is not None:
            from spacelm.arrange.sampling import write_completions

            write_completions(save_completions, records)
            console.print(f"wrote {len(records)} completions to {save_completions}")
    else:
        records = read_completions(completions)
    result = evaluate_completions(task_list, records, judge=the_judge,
                                  require_rotation=not fixed_rotation)
    print_table(result, per_task=per_task, console=console)
    if output is not None:
        atomic_write_text(output, json.dumps(result.to_dict(), indent=2) + "\n")
        console.print(f"wrote {output}")


@arrange_app.command("sft")
def arrange_sft(
    config: Annotated[Path, typer.Option(help="Run YAML: sections 'arrange' and 'sft' (TRL's SFTConfig).",
                                         exists=True, dir_okay=False)],
    model: Annotated[Optional[str], typer.Option(help="Override arrange.model: the policy to fine-tune.")] = None,
    output_dir: Annotated[Optional[Path], typer.Option(help="Override sft.output_dir.")] = None,
    resume: Annotated[bool, typer.Option(help="Resume from the newest checkpoint in the output folder.")] = True,
) -> None:
    """Supervised baseline: fine-tune a policy on reference solutions (optionally jittered)."""
    from spacelm.arrange.run import run_sft

    with launched_run():
        folder = run_sft(config, model=model, output_dir=output_dir, resume=resume, console=console)
    console.print(f"SFT policy saved to {folder}")


@arrange_app.command("train")
def arrange_train(
    config: Annotated[Path, typer.Option(help="Run YAML: sections 'arrange' and 'grpo' (TRL's GRPOConfig).",
                                         exists=True, dir_okay=False)],
    model: Annotated[Optional[str], typer.Option(help="Override arrange.model: the policy to start from.")] = None,
    output_dir: Annotated[Optional[Path], typer.Option(help="Override grpo.output_dir.")] = None,
    resume: Annotated[bool, typer.Option(help="Resume from the newest checkpoint in the output folder.")] = True,
) -> None:
    """GRPO on format and physics rewards (optional judge), single- or multi-turn; runs under accelerate launch."""
    from spacelm.arrange.run import run_grpo

    with launched_run():
        folder = run_grpo(config, model=model, output_dir=output_dir, resume=resume, console=console)
    console.print(f"GRPO policy saved to {folder}")


@arrange_app.command("demo")
def arrange_demo(
    output: Annotated[Path, typer.Option(help="Output folder.")] = Path("out/arrange_demo"),
    minutes: Annotated[float, typer.Option(help="Wall-clock budget for the whole demo.")] = 30.0,
    train_tasks: Annotated[int, typer.Option(help="Generated training tasks.")] = 2000,
    test_tasks: Annotated[int, typer.Option(help="Generated held-out tasks.")] = 100,
    multiturn: Annotated[bool, typer.Option(help="Also train GRPO with 2-turn refinement from the SFT start.")
                         ] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Delete OUTPUT first if it is not empty.")] = False,
) -> None:
    """SFT then GRPO of a tiny policy on this CPU; scores base, SFT and GRPO on held-out tasks."""
    from spacelm.arrange_demo import run_demo

    run_demo(output, minutes=minutes, train_tasks=train_tasks, test_tasks=test_tasks, multiturn=multiturn,
             seed=seed, overwrite=overwrite, console=console)


def _generate_arrange(model: Path, tasks, samples: int, temperature: float, max_new_tokens: int):
    from rich.progress import Progress

    from spacelm.arrange.sampling import generate_completions

    with Progress(console=console) as progress:
        bar = progress.add_task(f"generating with {model.name}", total=len(tasks) * samples)
        return generate_completions(model, tasks, samples=samples, temperature=temperature,
                                    max_new_tokens=max_new_tokens,
                                    on_batch=lambda n: progress.advance(bar, n))


# Errors that mean "your input is wrong": shown as one line naming the file/field, exit code 2.
# SpacelmError is what spacelm's readers and argument checks raise. The OSErrors are about a path
# the user named (a missing input, an output that exists, no permission) and name it; spacelm
# raises FileNotFoundError/FileExistsError for those on purpose. Anything else, plain ValueError
# included, is a bug and shows its traceback.
USER_ERRORS = (SpacelmError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError, PermissionError)


def main() -> None:
    """The ``spacelm`` entry point; ``--debug`` or ``SPACELM_DEBUG=1`` re-raises input errors too."""
    try:
        app()
    except USER_ERRORS as e:
        if os.environ.get("SPACELM_DEBUG") == "1":
            raise
        err_console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
        raise SystemExit(2) from None
