"""``spacelm arrange sft|train``: a run YAML (``config.py``) to a trained policy, with progress.

Also the entry point under ``accelerate launch``::

    accelerate launch --config_file configs/accelerate/zero3.yaml -m spacelm.arrange.run \\
        train configs/arrange/qwen2.5-vl-7b.yaml
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from spacelm.arrange.config import (
    ArrangeConfigError,
    arrange_args,
    read_sections,
    training_tasks,
    trl_config,
)


def _config(path, section: str, cls, model, output_dir):
    sections = read_sections(path)
    source = f"{path}: "
    args = arrange_args(sections["arrange"], source, model=model)
    if not args.model:
        raise ArrangeConfigError(f"{source}arrange.model: the policy to start from is not set "
                         "(a model folder or hub name; or pass --model)")
    values = dict(sections[section])
    if output_dir is not None:
        values["output_dir"] = str(output_dir)
    if "output_dir" not in values:
        raise ArrangeConfigError(f"{source}{section}.output_dir: where to write the policy is not set")
    defaults = {"report_to": [], "use_cpu": not _has_accelerator()}
    return args, trl_config(cls, values, source, section, **defaults)


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()


def _callbacks(name: str, console):
    from spacelm.arrange.progress import RunProgress

    return [RunProgress(name, console=console)]


def run_sft(path, *, model=None, output_dir=None, resume: bool = True, console=None) -> Path:
    """Fine-tune ``arrange.model`` on the run's reference solutions; returns the saved folder."""
    from trl import SFTConfig

    from spacelm.arrange.sft import train_sft

    args, config = _config(path, "sft", SFTConfig, model, output_dir)
    tasks, references = training_tasks(args, need_references=True)
    return train_sft(args, config, tasks, references, callbacks=_callbacks("sft", console),
                     resume=resume)


def run_grpo(path, *, model=None, output_dir=None, resume: bool = True, console=None) -> Path:
    """GRPO from ``arrange.model`` on the run's tasks; returns the saved folder."""
    from trl import GRPOConfig

    from spacelm.arrange.grpo import train_grpo

    args, config = _config(path, "grpo", GRPOConfig, model, output_dir)
    tasks, _ = training_tasks(args)
    return train_grpo(args, config, tasks, callbacks=_callbacks("grpo", console),
                      resume=resume)


def main(argv: list[str] | None = None) -> None:
    """``python -m spacelm.arrange.run sft|train CONFIG.yaml`` (what ``accelerate launch`` runs)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("sft", "train"):
        raise SystemExit("usage: python -m spacelm.arrange.run sft|train CONFIG.yaml")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    (run_sft if argv[0] == "sft" else run_grpo)(argv[1])


if __name__ == "__main__":
    main()
