"""Runs side by side, as the Compare page shows them: one record per run (saved or live), the
probe steps they all recorded, the settings that differ, whether their losses can share an
axis (the same task: as they are; different tasks: each relative to its own task's baseline),
and each run's held-out numbers: its final eval as the store keeps it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .analysis import gate_saturation
from .cells import CELLS
from .config import Config
from .history import HistoryView
from .run import Run
from .store import RunNotFound, RunStore
from .tasks import TASKS, Task
from .trace import Trace
from .trainer import FinalEval

MAX_RUNS = 4
NOT_READ = "—"                                   # a setting this run's task or cell does not read
TASK_FIELDS = {name for spec in TASKS.values() for name in spec.fields}


@dataclass(frozen=True)
class Compared:
    """One run as the comparison sees it: who it is, what it learns, and what it recorded."""

    id: str
    name: str
    config: Config
    task: str                    # the task's registry name (config.task)
    loss_name: str
    baseline_loss: float         # the task's trivial baseline, in the task's loss
    baseline_name: str
    metric_name: str
    history: HistoryView         # its learning curve: the periodic evals, on 256 sequences
    final: FinalEval | None      # its held-out numbers as last saved (None: not saved, or saved before them)

    @property
    def steps(self) -> int:
        return int(self.history.steps["step"][-1]) if len(self.history.steps["step"]) else 0

    def trace_at(self, step: int) -> Trace | None:
        """The probe trace recorded at training step `step`, if the run kept one."""
        return next((trace for s, trace in self.history.traces if s == step), None)


def compared(run_id: str, name: str, config: Config, task: Task, history: HistoryView,
             final: FinalEval | None) -> Compared:
    return Compared(run_id, name, config, config.task, task.loss_name, float(task.baseline_loss),
                    task.baseline_name, task.metric_name, history, final)


def from_run(run: Run) -> Compared:
    """A run in this process's memory, as it stands (a snapshot: training may go on). Its held-out
    numbers are those of its last save, read from the store: measuring them here would wait
    for the model its thread trains."""
    final = None
    if run.store is not None and run.id:
        try:
            final = run.store.info(run.id).final
        except RunNotFound:
            pass                      # not saved yet: it has trained no step
    return compared(run.id, run.name or run.id, run.trainer.config, run.trainer.task, run.snapshot().history, final)


def from_store(store: RunStore, run_id: str) -> Compared:
    """A saved run, read. Nothing trains or saves it; loading seeds torch's global random
    generator, which is put back as it was, so a run training beside it is not disturbed."""
    info = store.info(run_id)
    with torch.random.fork_rng(devices=[]):
        trainer = store.load(run_id)
    return compared(run_id, info.name, trainer.config, trainer.task, trainer.history.view(), info.final)


def labels(runs: list[Compared]) -> dict[str, str]:
    """Run id -> a name for legends and columns: the run's name, with the start of its id
    where two runs share a name."""
    names = [run.name for run in runs]
    return {run.id: run.name if names.count(run.name) == 1 else f"{run.name} ({run.id[:6]})" for run in runs}


# -- what can be compared ---------------------------------------------------------------------

@dataclass(frozen=True)
class Comparability:
    scale: str | None        # "absolute", "relative" (loss ÷ baseline), or None: no common axis
    message: str             # one sentence for the page


def comparability(runs: list[Compared]) -> Comparability:
    """Whether the runs' held-out losses can share an axis, and how, said in one sentence."""
    kinds = list(dict.fromkeys((run.task, run.loss_name) for run in runs))
    if len(kinds) == 1:
        task, loss = kinds[0]
        several = len({run.baseline_loss for run in runs}) > 1
        return Comparability("absolute", f"All on the {task} task: held-out {loss} on one axis, with "
                             + ("each run's baseline (dashed; their settings change it)." if several
                                else "the task's baseline (dashed)."))
    tasks = ", ".join(task if [t for t, _ in kinds].count(task) == 1 else f"{task} ({loss})" for task, loss in kinds)
    lacking = [run.name for run in runs if not (math.isfinite(run.baseline_loss) and run.baseline_loss > 0)]
    if lacking:
        return Comparability(None, f"These runs learn different tasks ({tasks}) and {', '.join(lacking)} has no "
                             "positive baseline loss to measure against, so their losses cannot share an axis.")
    return Comparability("relative", f"Different tasks ({tasks}), different losses: each run's held-out loss is "
                         "divided by its own task's baseline, so 1 is no better than the trivial guess and "
                         "lower is better.")


def heldout_loss(run: Compared) -> tuple[np.ndarray, np.ndarray]:
    """(steps, held-out loss) of the periodic evals: the run's learning curve."""
    return run.history.evals["step"], run.history.evals["eval_loss"]


def final_evals(runs: list[Compared], names: dict[str, str]) -> pd.DataFrame:
    """The runs' held-out numbers, one row per run (its label): the step of the save they are
    of, the held-out loss and metric, and how many held-out sequences they are over. None
    where a run has none (not saved yet, or last saved before the store kept them)."""
    def row(run: Compared) -> dict:
        final = run.final
        step, loss, metric, sequences = (final.step, final.loss, final.metric, final.sequences) if final else [None] * 4
        return {"step": step, "held-out loss": loss, "loss": run.loss_name, "metric": metric,
                "metric name": run.metric_name, "sequences": sequences}
    return pd.DataFrame.from_dict({names[run.id]: row(run) for run in runs}, orient="index").rename_axis("run")


def relative_losses(run: Compared) -> tuple[np.ndarray, np.ndarray]:
    """(steps, held-out loss ÷ the task's baseline loss): 1 is the trivial guess, lower is better."""
    steps, loss = heldout_loss(run)
    return steps, (loss.astype(np.float64) / run.baseline_loss).astype(np.float32)


def baselines(runs: list[Compared], scale: str) -> list[tuple[float, str]]:
    """The dashed reference lines of the loss chart: (value, label), one per distinct baseline."""
    if scale == "relative":
        return [(1.0, "each task's baseline = 1")]
    lines: dict[float, str] = {}
    for run in runs:
        lines.setdefault(run.baseline_loss, f"baseline: {run.baseline_name} ({run.baseline_loss:.3g})")
    return list(lines.items())


def same_probes(runs: list[Compared]) -> bool:
    """Whether probe sequence b is the same sequence in every run: the same task, the same
    task settings and T, and the same seed (which draws the held-out sequences)."""
    def probes(config: Config):
        return (config.task, config.seed, config.seq_len,
                tuple(getattr(config, name) for name in TASKS[config.task].fields))
    return len({probes(run.config) for run in runs}) == 1


def common_steps(runs: list[Compared]) -> list[int]:
    """The training steps at which every run kept a probe trace, in order."""
    if not runs:
        return []
    kept = [{step for step, _ in run.history.traces} for run in runs]
    return sorted(set.intersection(*kept))


# -- gates and settings ---------------------------------------------------------------------

def gate_summary(trace: Trace, layer: int = 0) -> dict[str, tuple[float, float, float]]:
    """Per sigmoid gate of one layer, over every probe sequence, time step and unit: its mean
    value and the fractions below 0.1 (shut) and above 0.9 (open), as analysis.gate_saturation
    counts them. A plain RNN has no gates: {}."""
    lt = trace.layers[layer]
    return {gate: (float(lt.gates[gate].mean(dtype=np.float64)), float(low.mean()), float(high.mean()))
            for gate, (low, high) in gate_saturation(lt, trace.cell).items()}


def differing_fields(configs: dict[str, Config]) -> pd.DataFrame:
    """The settings that differ between the configs: one row per setting, one column per run
    (the dict's keys), values as text. A setting a run's task or cell does not read shows as
    "—", so two runs that differ only where it does not matter are not listed as different."""
    shown = {label: {name: _shown(name, config) for name in config.to_dict()} for label, config in configs.items()}
    names = list(Config().to_dict())
    rows = [name for name in names if len({values[name] for values in shown.values()}) > 1]
    return pd.DataFrame({label: [values[name] for name in rows] for label, values in shown.items()},
                        index=pd.Index(rows, name="setting"), dtype=object)


def _shown(name: str, config: Config) -> str:
    if name in TASK_FIELDS and name not in TASKS[config.task].fields:
        return NOT_READ
    if name == "forget_bias" and CELLS[config.cell].forget_block is None:
        return NOT_READ
    if name == "dropout" and config.layers == 1:
        return NOT_READ
    value = getattr(config, name)
    if name == "csv_path":
        return Path(value).name
    if name == "text":
        return "(Python's source)" if not value else (value[:40] + "…" if len(value) > 40 else value)
    return f"{value:g}" if isinstance(value, float) else str(value)
