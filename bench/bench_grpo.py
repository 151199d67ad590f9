"""GRPO cost on this CPU for the demo policy: step time, completions per second, reward throughput
in the training path (one batched physics check per group), and the overhead of each added turn.

    python bench/bench_grpo.py [--policy FOLDER] [--steps 6] [--turns 1 2 3]

Without ``--policy`` the demo's random base policy is built (it seldom ends an answer, so every
completion runs to ``max_completion_length``: the worst case). Run alone: on 2 cores a second job
changes the figures.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def _policy(folder: str | None, tmp: Path, tasks) -> str:
    if folder:
        return folder
    from spacelm.arrange.prompts import compact_answer, compact_prompt
    from spacelm.arrange_demo import POLICY
    from spacelm.model.tiny import save_tiny_base_lm

    corpus = [compact_prompt(g.task) for g in tasks] + [compact_answer(g.reference) for g in tasks]
    return str(save_tiny_base_lm(tmp / "base", corpus=corpus, **POLICY))


def bench_steps(policy: str, tasks, turns: int, steps: int, tmp: Path) -> dict:
    """Seconds per GRPO step (after one warm-up step) and completions per second."""
    from transformers import TrainerCallback
    from trl import GRPOConfig

    from spacelm.arrange.config import ArrangeArgs, trl_config
    from spacelm.arrange.grpo import build_trainer
    from spacelm.arrange_demo import COMMON, GRPO

    class Clock(TrainerCallback):
        def __init__(self):
            self.times, self.lengths = [], []

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(logs["completions/mean_length"])

    clock = Clock()
    args = ArrangeArgs(model=policy, prompt_style="compact", feedback_style="compact", turns=turns)
    config = trl_config(GRPOConfig, {}, "", "grpo", output_dir=str(tmp / f"grpo{turns}"),
                        **{**COMMON, **GRPO, "max_steps": steps + 1, "logging_steps": 1})
    trainer = build_trainer(args, config, [g.task for g in tasks], callbacks=[clock])
    trainer.train()
    per_step = (clock.times[-1] - clock.times[0]) / (len(clock.times) - 1)
    batch = GRPO["per_device_train_batch_size"]
    return {"turns": turns, "s_per_step": per_step, "completions_per_s": batch / per_step,
            "mean_tokens_per_turn": sum(clock.lengths) / len(clock.lengths) / turns}


def bench_rewards(tasks, group: int = 8, repeats: int = 20) -> dict:
    """Reward calls on groups of ``group`` completions of one task: batched as in training, and one
    completion per call (the per-layout path)."""
    import numpy as np

    from spacelm.arrange.prompts import compact_answer
    from spacelm.arrange.rewards import ArrangeReward

    reward = ArrangeReward("default")
    rng = np.random.default_rng(0)
    groups = []
    for g in tasks[:repeats]:
        texts = [compact_answer([p._replace(x=p.x + float(rng.normal(0, 0.3)), y=p.y + float(rng.normal(0, 0.3)))
                                 for p in g.reference]) for _ in range(group)]
        groups.append((g.task, texts))
    start = time.perf_counter()
    for task, texts in groups:
        reward([None] * group, texts, task=[task] * group)
    batched = (time.perf_counter() - start) / (repeats * group)
    start = time.perf_counter()
    for task, texts in groups:
        for text in texts:
            reward([None], [text], task=[task])
    single = (time.perf_counter() - start) / (repeats * group)
    return {"batched_ms_per_completion": 1e3 * batched, "single_ms_per_completion": 1e3 * single}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", help="a policy folder (e.g. the demo's sft/); default: the random base")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--turns", type=int, nargs="+", default=[1, 2, 3])
    options = parser.parse_args()

    from transformers.utils import logging as hf_logging

    from spacelm.arrange.generate import generate_tasks

    hf_logging.set_verbosity_error()
    tasks = generate_tasks(64, seed=0, max_objects=4)
    print(f"torch threads: {__import__('torch').get_num_threads()}")
    print("reward (ArrangeReward('default'), 4-object tasks, groups of 8): "
          + ", ".join(f"{k} {v:.2f}" for k, v in bench_rewards(tasks).items()))
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        policy = _policy(options.policy, tmp, tasks)
        rows = [bench_steps(policy, tasks, turns, options.steps, tmp) for turns in options.turns]
    base = rows[0]["s_per_step"]
    print(f"{'turns':>5} {'s/step':>8} {'completions/s':>14} {'tokens/turn':>12} {'vs first':>9}")
    for row in rows:
        print(f"{row['turns']:>5} {row['s_per_step']:>8.2f} {row['completions_per_s']:>14.2f} "
              f"{row['mean_tokens_per_turn']:>12.1f} {row['s_per_step'] / base:>8.2f}x")


if __name__ == "__main__":
    main()
