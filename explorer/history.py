"""History: a bounded, thread-safe record of one run's metrics and probe traces.

A Trainer stages each step's record on its device (`stage`, one packed tensor), and the
staged records come to the host in one transfer per block (`commit`): every RECORD_BLOCK
steps, before an eval or a probe, and whenever the history is read. So K-1 of every K steps
make no host synchronisation on a GPU.

Scalars are kept for every step, compactly (float32 columns that grow by doubling:
about 4 bytes per field per step). Traces are the big items, so at most `max_traces`
are kept, holding at most `max_trace_bytes` together (the newest two are always kept):
when one more would break either bound, every other trace of the older half is dropped,
which keeps the start of the run, thins its middle, and keeps the recent past dense.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from .trace import Trace

STEP_FIELDS = ("loss", "metric", "grad_norm", "grad_norm_clipped", "seconds")
EVAL_FIELDS = ("eval_loss", "eval_metric")
# Steps whose records stay on the device before they are moved to the host in one transfer:
# a GPU step takes a few milliseconds, so a block is tens of milliseconds behind at most.
RECORD_BLOCK = 16
MAX_TRACES = 48                 # the default bounds on a run's kept traces (the memory budget counts them)
MAX_TRACE_BYTES = 256 * 2**20


class _Columns:
    """Named float32 columns with amortised O(1) append."""

    def __init__(self, names: tuple[str, ...], width: dict[str, int] | None = None):
        self.names = names
        self.width = width or {}
        self.size = 0
        self._data = {n: np.zeros((16, self.width.get(n, 1)), np.float32) for n in names}
        self._steps = np.zeros(16, np.int64)

    def append(self, step: int, values: dict[str, object]) -> None:
        if self.size == len(self._steps):
            self._steps = np.resize(self._steps, 2 * self.size)
            for n in self.names:
                grown = np.zeros((2 * self.size, self._data[n].shape[1]), np.float32)
                grown[:self.size] = self._data[n]
                self._data[n] = grown
        self._steps[self.size] = step
        for n in self.names:
            self._data[n][self.size] = values[n]
        self.size += 1

    def add(self, step: int, name: str, value: float) -> None:
        """Add to a field of the last row, if it is that step's."""
        if self.size and self._steps[self.size - 1] == step:
            self._data[name][self.size - 1] += value

    def copy(self) -> dict[str, np.ndarray]:
        out = {"step": self._steps[:self.size].copy()}
        for n in self.names:
            column = self._data[n][:self.size]
            out[n] = column[:, 0].copy() if column.shape[1] == 1 else column.copy()
        return out

    @property
    def nbytes(self) -> int:
        return self._steps.nbytes + sum(a.nbytes for a in self._data.values())


@dataclass
class HistoryView:
    """A consistent copy of a History, safe to read while training goes on."""

    param_names: list[str]
    steps: dict[str, np.ndarray]      # "step", STEP_FIELDS (n,), "param_grad_norm"/"update_ratio" (n, params)
    evals: dict[str, np.ndarray]      # "step", EVAL_FIELDS (m,)
    traces: list[tuple[int, Trace]]   # (training step, trace), oldest first


# A staged record, one 1-D tensor: these scalars, the two finiteness flags, then the
# per-parameter gradient norms and update ratios (params each).
_SCALARS = ("loss", "metric", "grad_norm", "grad_norm_clipped")


def pack_step(record: dict, grads_finite, weights_finite):
    """One step's record (device tensors) and its flags as one tensor, so that a block moves
    to the host in one transfer."""
    scalars = [record[n].float().reshape(1) for n in _SCALARS]
    flags = [grads_finite.float().reshape(1), weights_finite.float().reshape(1)]
    return torch.cat(scalars + flags + [record["param_grad_norm"].float(), record["update_ratio"].float()])


class History:
    def __init__(self, param_names: list[str], max_traces: int = MAX_TRACES,
                 max_trace_bytes: int = MAX_TRACE_BYTES):
        if max_traces < 2:
            raise ValueError("max_traces must be at least 2")
        self.param_names = list(param_names)
        self.max_traces = max_traces
        self.max_trace_bytes = max_trace_bytes
        P = len(param_names)
        self._lock = threading.Lock()
        self._steps = _Columns(STEP_FIELDS + ("param_grad_norm", "update_ratio"),
                               {"param_grad_norm": P, "update_ratio": P})
        self._evals = _Columns(EVAL_FIELDS)
        self._traces: list[tuple[int, Trace]] = []
        self._trace_bytes: list[int] = []
        self._staged: list[tuple[int, object, float]] = []   # (step, packed record on the device, seconds)
        self._commit_lock = threading.Lock()                  # one commit at a time, rows in order
        self.halted: tuple[int, bool] | None = None          # (step, the weights went) once a staged step went wrong

    @classmethod
    def from_view(cls, view: HistoryView, max_traces: int = MAX_TRACES,
                  max_trace_bytes: int = MAX_TRACE_BYTES) -> "History":
        """A History holding what a view (of a saved run, say) holds, ready to record on."""
        history = cls(view.param_names, max_traces, max_trace_bytes)
        for columns, table in ((history._steps, view.steps), (history._evals, view.evals)):
            for i, step in enumerate(table["step"]):
                columns.append(int(step), {n: table[n][i] for n in columns.names})
        for step, trace in view.traces:
            history.record_trace(step, trace)
        return history

    def record_step(self, step: int, values: dict[str, object]) -> None:
        with self._lock:
            self._steps.append(step, values)

    def stage(self, step: int, packed, seconds: float) -> None:
        """A step's record still on the device (pack_step), kept until the next commit."""
        with self._lock:
            self._staged.append((step, packed, seconds))

    def commit(self) -> tuple[int, bool] | None:
        """Move the staged records to the host, in one transfer. The first step flagged as gone
        wrong, and every one after it, is not recorded: it returns (that step, whether it was
        the weights) then and at every later call; None while every step was sound."""
        with self._commit_lock:
            with self._lock:
                staged, self._staged = self._staged, []
            if staged and self.halted is None:
                block = torch.stack([packed for _, packed, _ in staged]).cpu().numpy()   # (steps, 6 + 2*params)
                P = len(self.param_names)
                for (step, _, seconds), row in zip(staged, block):
                    grads_finite, weights_finite = row[4] > 0, row[5] > 0
                    if not (grads_finite and weights_finite):
                        self.halted = (step, bool(grads_finite))
                        break
                    values = dict(zip(_SCALARS, row[:4]), seconds=seconds,
                                  param_grad_norm=row[6:6 + P], update_ratio=row[6 + P:])
                    self.record_step(step, values)
            return self.halted

    def add_seconds(self, step: int, seconds: float) -> None:
        """Time spent on a recorded step after its record was made (its eval and probe)."""
        with self._lock:
            self._steps.add(step, "seconds", seconds)

    def record_eval(self, step: int, loss: float, metric: float) -> None:
        with self._lock:
            self._evals.append(step, {"eval_loss": loss, "eval_metric": metric})

    def record_trace(self, step: int, trace: Trace) -> None:
        with self._lock:
            self._traces.append((step, trace))
            self._trace_bytes.append(trace_nbytes(trace))
            while len(self._traces) > 2 and (len(self._traces) > self.max_traces
                                             or sum(self._trace_bytes) > self.max_trace_bytes):
                half = (len(self._traces) + 1) // 2
                self._traces = self._traces[:half:2] + self._traces[half:]
                self._trace_bytes = self._trace_bytes[:half:2] + self._trace_bytes[half:]

    def latest_trace(self) -> tuple[int, Trace] | None:
        with self._lock:
            return self._traces[-1] if self._traces else None

    def view(self) -> HistoryView:
        self.commit()
        with self._lock:
            return HistoryView(self.param_names, self._steps.copy(), self._evals.copy(), list(self._traces))

    def __len__(self) -> int:
        self.commit()
        return self._steps.size

    @property
    def nbytes(self) -> int:
        """Memory held: the scalar columns plus every kept trace's arrays."""
        with self._lock:
            return self._steps.nbytes + self._evals.nbytes + sum(self._trace_bytes)


def trace_nbytes(trace: Trace) -> int:
    arrays = [trace.output, trace.grad_input]
    for layer in trace.layers:
        arrays += list(layer.gates.values()) + [layer.hidden, layer.grad_hidden]
        arrays += [a for a in (layer.cell, layer.grad_cell) if a is not None]
        arrays += list(layer.weight_grad_share.values())
    return sum(a.nbytes for a in arrays)
