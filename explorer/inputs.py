"""How to show a task's input to a person: feature names, per-step labels and a one-line
description of a sequence, so input pictures and sequence pickers read in the task's terms.
"""
from __future__ import annotations

import numpy as np
import torch

from .tasks import Task

MAX_TIME_LABELS = 80   # beyond this, per-step tick labels are unreadable anyway


def _printable(char: str) -> str:
    return {"\n": "⏎", " ": "␣", "\t": "⇥"}.get(char, char)


def feature_names(task: Task) -> list[str] | None:
    """Names of the input's channels, in order (None where plain indices say as much)."""
    if task.name == "adding":
        return ["value", "marker"]
    if task.name == "copy":
        return ["blank", *map(str, range(1, 9)), "delimiter"]
    if task.name == "brackets":
        return ["(", ")"]
    if task.name == "text":
        return [_printable(c) for c in task.vocab]
    if task.name == "digits":
        return [f"column {i}" for i in range(task.input_size)]
    columns = task.options.get("columns")
    if columns:
        return list(columns)
    if task.input_size == 1:
        return ["value"]
    return None


def time_labels(task: Task, x: torch.Tensor | np.ndarray) -> list[str] | None:
    """One label per step of one sequence x (time, features) where the task has symbols."""
    x = torch.as_tensor(np.asarray(x))
    if len(x) > MAX_TIME_LABELS:
        return None
    symbols = x.argmax(dim=-1).tolist()
    if task.name == "text":
        return [_printable(task.vocab[i]) for i in symbols]
    if task.name == "brackets":
        return ["(" if i == 0 else ")" for i in symbols]
    if task.name == "copy":
        return ["·" if i == 0 else ":" if i == task.delimiter else str(i) for i in symbols]
    return None


def describe(task: Task, x: torch.Tensor, y: torch.Tensor) -> str:
    """A short description of one sequence x (time, features) with target y, for a picker."""
    if task.name == "adding":
        marked = torch.nonzero(x[:, 1] > 0.5).flatten().tolist()
        return f"markers at t = {', '.join(map(str, marked))}; target {float(y.flatten()[0]):.2f}"
    if task.name == "digits":
        return f"digit {int(y)}"
    if task.name in ("text", "brackets", "copy"):
        text = "".join(time_labels(task, x[:40]) or [])
        return f"“{text}…”" if len(x) > 40 else f"“{text}”"
    if task.regression:
        return f"window ending {float(x[-1, -1]):.2f}; target {float(y.flatten()[0]):.2f}"
    return f"{len(x)} steps"
