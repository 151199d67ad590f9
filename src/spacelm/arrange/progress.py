"""Trainer callbacks for arrange runs: a wall-clock budget, progress a person can follow, a curve.

``RunProgress`` draws a rich bar on a terminal and, when stdout is not a terminal (a log file, CI),
prints one line per ``every`` percent instead, so the log shows progress too. Each line and the bar
carry the step, the reward and the headline terms of the latest log.
"""

from __future__ import annotations

import math
import sys
import time

from transformers import TrainerCallback

_SHOWN = (("reward", "reward"), ("arrange/valid", "valid"), ("arrange/collision", "collision"),
          ("arrange/collision_rate", "colliding layouts"), ("loss", "loss"))


class TimeLimit(TrainerCallback):
    """Stop training after ``seconds`` of wall-clock time (checked after every step); the run ends
    as it does at ``max_steps``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self.start >= self.seconds:
            control.should_training_stop = True


class RunProgress(TrainerCallback):
    """Progress of one training run by steps, or by time when ``seconds`` is given; keeps every
    logged dict in ``history`` (the learning curve)."""

    def __init__(self, name: str, *, seconds: float | None = None, console=None, every: float = 5.0,
                 tty: bool | None = None) -> None:
        self.name, self.seconds, self.every = name, seconds, every
        self.console = console
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.history: list[dict] = []
        self.latest: dict = {}
        self.start, self.next_mark = 0.0, every
        self.progress, self.task = None, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()
        if self.tty:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                     TextColumn("{task.fields[info]}"), console=self.console)
            self.progress.start()
            self.task = self.progress.add_task(self.name, total=100.0, info="")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.latest = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
            self.history.append({"step": state.global_step,
                                 "seconds": round(time.monotonic() - self.start, 1), **self.latest})

    def on_step_end(self, args, state, control, **kwargs):
        done = self._percent(state)
        info = self._info(state)
        if self.progress is not None:
            self.progress.update(self.task, completed=done, info=info)
        elif done >= self.next_mark or done >= 100:
            print(f"{self.name}: {done:5.1f}%  {info}", flush=True)
            self.next_mark = (math.floor(done / self.every) + 1) * self.every

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=100.0, info=self._info(state))
            self.progress.stop()
            self.progress = None
        else:
            print(f"{self.name}: done  {self._info(state)}", flush=True)

    def _percent(self, state) -> float:
        if self.seconds:
            return min(100.0, 100.0 * (time.monotonic() - self.start) / self.seconds)
        return min(100.0, 100.0 * state.global_step / max(state.max_steps, 1))

    def _info(self, state) -> str:
        parts = [f"step {state.global_step}"]
        parts += [f"{label} {self.latest[key]:.3f}" for key, label in _SHOWN if key in self.latest]
        return "  ".join(parts)
