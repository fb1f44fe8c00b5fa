"""The memory budget: a run's peak memory estimated from its settings alone, so that Config can
refuse a run too big for this server before anything is allocated.

Every part is an upper bound, measured rather than derived: `python tests/memory_bench.py`
trains a handful of configs, each in a fresh process, and prints the estimate beside the peak
RSS it grew by. The estimate must never be under the measurement, nor more than twice it.
"""
from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import TYPE_CHECKING

from .cells import CELLS
from .data import env_number
from .history import MAX_TRACE_BYTES, MAX_TRACES, STEP_FIELDS
from .tasks import TASKS, TaskSizes

if TYPE_CHECKING:  # config.py imports this module for its check
    from .config import Config

EVAL_SIZE = 256        # held-out sequences behind a run's periodic evals: its learning curve (explorer.trainer)
HELDOUT_SIZE = 1000    # held-out sequences behind a run's held-out loss and metric (Trainer.final_eval)
MAX_RUN_ENV = "GATE_EXPLORER_MAX_RUN_MB"
# Up to 8 runs admitted at once (GATE_EXPLORER_MAX_RUNS) at 2 GB each is 16 GB of a 24 GB
# server, leaving a third of it for the OS, Streamlit and its sessions, the allocator, and the
# app's worker processes (explorer.worker: about 250 MB each beyond the run itself, one per slot).
DEFAULT_MAX_RUN_MB = 2048.0
MB, GB = 2**20, 2**30
FLOAT = 4              # bytes: everything trains in float32


@dataclass(frozen=True)
class CellCost:
    """Floats a cell holds at its peak per sequence, step and unit: while a training step's
    forward and backward pass run, `train_per_layer` × layers + `train_once`; in a forward pass
    without gradients, `infer_one_layer` plus `infer_per_more_layer` for each further layer.
    Measured on PyTorch's CPU kernels with one thread; the cells with no fused kernel train
    through a Python unroll, whose autograd graph keeps every gate."""

    train_per_layer: float
    train_once: float
    infer_per_more_layer: float
    infer_one_layer: float


COSTS = {
    "lstm": CellCost(8.5, 11.0, 0.8, 2.3),
    "gru": CellCost(8.5, 7.5, 0.4, 6.2),
    "rnn": CellCost(5.0, 2.5, 1.6, 3.2),
    "rnn-relu": CellCost(5.0, 2.5, 1.6, 3.2),
    "peephole": CellCost(21.0, 5.0, 3.5, 8.2),
    "cifg": CellCost(9.0, 8.5, 3.4, 6.2),
}
OPTIMIZER_COPIES = {"sgd": 0, "momentum": 1, "rmsprop": 1, "adam": 2}   # state per weight
# PyTorch's kernels paged in and its allocator's pools once a run trains: 88 to 104 MB measured
# for a run of one sequence of two steps, whatever the cell.
BASELINE = 120 * MB

# What each part is, and what lowers it: the refusal names the biggest.
PARTS = {
    "activations": ("the activations kept for backward (batch_size × seq_len × hidden × layers)",
                    "lower batch_size, seq_len, hidden or layers"),
    "parameters": ("the weights, their gradients and the optimiser's state (layers × hidden²)",
                   "lower hidden or layers"),
    "eval": (f"the held-out evaluation ({EVAL_SIZE} sequences × seq_len × hidden × layers)",
             "lower seq_len, hidden or layers"),
    "probe": ("the probe trace (probe_count × seq_len × hidden × layers)",
              "lower probe_count, seq_len, hidden or layers"),
    "history": (f"the probe traces the run keeps (up to {MAX_TRACES}, about {MAX_TRACE_BYTES // MB} MB)",
                "raise probe_every, or lower probe_count, seq_len, hidden or layers"),
    "data": ("the task's own data", "choose a smaller data set"),
    "baseline": ("PyTorch itself", f"raise {MAX_RUN_ENV}"),
}


@dataclass(frozen=True)
class Estimate:
    """A run's peak memory in bytes, by what holds it (PARTS says what each is)."""

    activations: int
    parameters: int
    eval: int
    probe: int
    history: int
    data: int
    baseline: int

    @property
    def total(self) -> int:
        return sum(astuple(self))

    @property
    def biggest(self) -> str:
        return max((f.name for f in fields(self)), key=lambda name: getattr(self, name))

    def refusal(self, limit_mb: float) -> str:
        """Why a run over `limit_mb` is refused, and what to lower."""
        what, lower = PARTS[self.biggest]
        share = "most of it" if 2 * getattr(self, self.biggest) > self.total else "the biggest part"
        return (f"this run needs an estimated {_size(self.total)}, over this server's {limit_mb:g} MB per run "
                f"({MAX_RUN_ENV}); {share} is {what}: {lower}.")


def max_run_mb() -> float:
    """This server's memory per run: GATE_EXPLORER_MAX_RUN_MB, else 2048 (also when invalid)."""
    return env_number(MAX_RUN_ENV, DEFAULT_MAX_RUN_MB)


def estimate(config: Config, sizes: TaskSizes | None = None) -> Estimate:
    """The peak memory of training `config` (the CLI's final report included), from its
    settings and its task's sizes (by default the task's own `TaskSpec.sizes`)."""
    spec = TASKS[config.task]
    T, inputs, outputs, mode, data, most = sizes if sizes is not None else spec.sizes(config)
    B, H, L = config.batch_size, config.hidden, config.layers
    cell, cost = CELLS[config.cell], COSTS[config.cell]
    every_step = mode == "all"

    # Each layer's W_ih, W_hh and biases, a few per-unit weights (peepholes), and the head; with
    # their gradients, the optimiser's state, the step's copy of them and its update, and the
    # fused kernel's own copies.
    layer_inputs = [inputs] + [H] * (L - 1)
    weights = sum(len(cell.blocks) * H * (n + H + 2) + 4 * H for n in layer_inputs) + (H + 1) * outputs
    copies = 6 + OPTIMIZER_COPIES[config.optimizer]

    # Floats per sequence and step: the cell's, dropout's mask and copy between layers, the
    # input (a one-hot is made as int64 first), and for a prediction at every step the logits,
    # the loss's log-softmax, their gradients and the int64 targets.
    head = 6 * outputs + 2 if every_step else 0
    dropout = 2 * (L - 1) if config.dropout > 0 else 0
    per_step = H * (cost.train_per_layer * L + cost.train_once + dropout) + 5 * inputs + head

    # The held-out inputs (the periodic eval's and the final eval's) and one forward
    # pass without gradients over EVAL_SIZE of them (Trainer.evaluate goes that many at a time).
    evaluated = min(EVAL_SIZE, most or EVAL_SIZE)
    held = evaluated + min(HELDOUT_SIZE, most or HELDOUT_SIZE)
    infer = H * (cost.infer_per_more_layer * (L - 1) + cost.infer_one_layer) + 4 * outputs * every_step
    held_out = T * (held * (3 * inputs + 2 * every_step) + evaluated * infer)

    # A trace keeps per layer, step and unit the gates, h (and c), and the top layer's output
    # (Config.probe_trace_bytes counts an LSTM's seven); taking one holds a few times that.
    trace = FLOAT * (len(cell.gates) + 2 + cell.has_cell) * config.probe_count * T * H * L
    probe = round(4.5 * trace) + FLOAT * config.probe_count * T * head
    # History keeps at most MAX_TRACES of them in about MAX_TRACE_BYTES, and a record per step
    # (whose columns grow by doubling: three times its size while one grows).
    traces = min(1 + config.steps // config.probe_every, MAX_TRACES) * trace
    records = 3 * config.steps * (8 + FLOAT * (len(STEP_FIELDS) + 2 * (7 * L + 2)))

    if not spec.trainable:             # looked at, never trained: its weights and one trace
        return Estimate(activations=0, parameters=FLOAT * weights, eval=0, probe=probe, history=trace,
                        data=data, baseline=BASELINE)
    return Estimate(
        activations=round(FLOAT * B * T * per_step),
        parameters=FLOAT * weights * copies,
        eval=round(FLOAT * held_out),
        probe=probe,
        history=min(traces, max(MAX_TRACE_BYTES, trace) + trace) + records,
        data=data,
        baseline=BASELINE,
    )


def _size(n: int) -> str:
    return f"{n / GB:.1f} GB" if n >= GB else f"{n / MB:.0f} MB"
