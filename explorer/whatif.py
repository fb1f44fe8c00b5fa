"""What-if: the same sequences traced twice with the same weights, once as trained and once with
some gates clamped (explorer/clamp.py), and what the model then outputs, loses and scores.

The Gates page's what-if panel and the lesson "What is the forget gate for?" read it. Plain
library: no Streamlit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from .clamp import describe
from .tasks import Task
from .trace import Trace, trace

VARIANTS = ("as trained", "clamped")


@dataclass
class WhatIf:
    """Both traces of the same sequences, and what the model's head makes of them."""

    clamp: dict                         # the clamp, in explorer.clamp's normal form
    traces: dict[str, Trace]            # VARIANTS -> trace
    predictions: dict[str, np.ndarray]  # VARIANTS -> the head's output (batch, out) or (batch, time, out)
    losses: dict[str, np.ndarray]       # VARIANTS -> the task's loss of each sequence (batch,)
    correct: dict[str, np.ndarray] | None  # VARIANTS -> (batch, time) right or wrong, classification only

    def summary(self, loss_name: str = "loss") -> str:
        """What the clamp did over all the sequences traced, in one line."""
        loss = {v: float(self.losses[v].mean()) for v in VARIANTS}
        text = f"{describe(self.clamp)}: {loss_name} {loss['as trained']:.4g} → {loss['clamped']:.4g}"
        if self.correct is not None:
            accuracy = {v: float(self.correct[v].mean()) for v in VARIANTS}
            text += f", accuracy {accuracy['as trained']:.1%} → {accuracy['clamped']:.1%}"
        return text

    def series(self, task: Task, y: torch.Tensor, sequence: int) -> tuple[str, np.ndarray, dict[str, np.ndarray]]:
        """(what is plotted, the target, each variant's output) for one sequence, one value a
        step ("all" tasks) or one in all ("last" tasks): the prediction itself for a regression
        of one value, the predicted class for a per-step target (the bracket depth), else the probability given to
        the right answer (whose target is then 1). Your own model has no head and no target: its
        top layer's h_t summed over units, the target all NaN."""
        target = y[sequence].cpu().numpy()
        out = {v: self.predictions[v][sequence] for v in VARIANTS}   # (out,) or (time, out)
        if not task.trainable:          # your model: no head, no target; its top layer's h_t, summed
            T = out["as trained"].shape[0]
            return "Σ over units of the top layer's h_t", np.full(T, np.nan), {v: o.sum(-1) for v, o in out.items()}
        if task.regression:
            return "output", target.reshape(-1), {v: o.reshape(-1) for v, o in out.items()}
        if task.step_target_name is not None:            # an ordinal class a step: the bracket depth
            return task.step_target_name, target.reshape(-1), {v: o.argmax(-1).reshape(-1) for v, o in out.items()}
        index = target.reshape(-1).astype(int)
        shown = {}
        for v, o in out.items():
            logits = torch.from_numpy(np.asarray(o, dtype=np.float64)).reshape(len(index), -1)
            shown[v] = logits.softmax(-1)[torch.arange(len(index)), index].numpy()
        return "probability of the right answer", np.ones(len(index)), shown

    def frame(self, task: Task, y: torch.Tensor, sequence: int, layer: int) -> pd.DataFrame:
        """One sequence's what-if as a table, for download: per step, the target and each
        variant's output and ‖∂L/∂h_t‖ of the layer."""
        quantity, target, outputs = self.series(task, y, sequence)
        T = self.traces["as trained"].layers[layer].grad_hidden.shape[1]
        at_end = len(target) == 1 and T > 1                   # one prediction, at the last step
        columns = {"t": np.arange(T)}
        for label, values in (("target", target), *((f"{quantity} {v}", outputs[v]) for v in VARIANTS)):
            column = np.full(T, np.nan)
            column[-len(values):] = values if not at_end else values[-1:]
            columns[label] = column
        for v in VARIANTS:
            columns[f"grad_hidden {v}"] = self.traces[v].layers[layer].grad_hidden[sequence]
        return pd.DataFrame(columns)


def compare(model: nn.Module, task: Task, x: torch.Tensor, y: torch.Tensor, clamp) -> WhatIf:
    """Trace the model's recurrent stack on (x, y) with and without the clamp, the loss being
    the task's summed over sequences (as the probes'), and apply its head to both. model: a
    SequenceModel (or your model), with `.rnn` and `.readout`. ValueError for a bad clamp."""
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)

    def loss_fn(hidden, target):
        return task.loss(model.readout(hidden), target, reduction="sum")

    traces = {"clamped": trace(model.rnn, x, y, loss_fn, clamp=clamp)}   # a bad clamp fails first
    traces["as trained"] = trace(model.rnn, x, y, loss_fn)
    predictions, losses, correct = {}, {}, {}
    with torch.no_grad():
        for v in VARIANTS:
            output = model.readout(torch.from_numpy(traces[v].output).to(device))
            predictions[v] = output.cpu().numpy()
            losses[v] = task.loss(output, y, reduction="none").cpu().numpy()
            if not task.regression:
                correct[v] = (output.argmax(-1) == y).reshape(len(y), -1).cpu().numpy()
    return WhatIf(traces["clamped"].clamp, {v: traces[v] for v in VARIANTS}, predictions, losses,
                  correct if not task.regression else None)
