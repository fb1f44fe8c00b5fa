"""Config: every setting of a run in one validated, serialisable dataclass.

The same rules serve the sidebar, the URL and the CLI: values arrive as strings or
numbers, `Config.from_dict` coerces them, and any value out of range raises a ValueError
that names the field and what it accepts. The caps keep a shared server safe, and so does the
memory budget (explorer/budget.py): a run whose estimated peak memory is over this server's
GATE_EXPLORER_MAX_RUN_MB is refused here, before anything is allocated.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .budget import MB, estimate, max_run_mb
from .cells import CELLS
from .loading import parse_loss
from .tasks import TASKS

TASK_NAMES = tuple(TASKS)
CELL_NAMES = tuple(CELLS)
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
INITS = ("default", "orthogonal", "xavier")
DEVICES = ("auto", "cpu", "cuda", "mps")
DIGIT_SOURCES = ("digits8", "mnist")
MAX_PROBE_TRACE_MB = 64   # one trace; History also caps all of a run's traces together


@dataclass(frozen=True)
class Field:
    """What a field accepts and what it does (the help text the app shows)."""

    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    help: str = ""


# Ranges are inclusive. Where a field is off at 0 (clip, dropout...), 0 is in range.
FIELDS: dict[str, Field] = {
    "task": Field(choices=TASK_NAMES, help="What the network learns; each task has a trivial baseline to beat."),
    "seq_len": Field(2, 1000, help="Time steps per sequence (the delay for copy, the window for series/csv). "
                                   "Longer sequences make the gradient travel further back."),
    "series": Field(help="Series task: 'sine' (generated waves) or a real series shipped with the app."),
    "horizon": Field(1, 100, help="Series/CSV: how many steps ahead to forecast."),
    "text": Field(help="Text task: the text to model; empty uses Python's own standard-library source."),
    "digits_source": Field(choices=DIGIT_SOURCES, help="Digits task: the shipped 8x8 digits, or real MNIST "
                                                       "(28x28) read from GATE_EXPLORER_MNIST."),
    "csv_path": Field(help="CSV task: path of the CSV file."),
    "csv_columns": Field(help="CSV task: input columns (comma-separated); empty uses every numeric column."),
    "csv_target": Field(help="CSV task: the column to forecast; empty uses the last numeric column."),
    "cell": Field(choices=CELL_NAMES, help="; ".join(f"{c.name}: {c.help}" for c in CELLS.values()) + "."),
    "hidden": Field(1, 512, help="Units per layer: rows of every gate heatmap."),
    "layers": Field(1, 4, help="Stacked recurrent layers; each has its own gates."),
    "dropout": Field(0.0, 0.9, help="Dropout between stacked layers while training (not inside the recurrence)."),
    "optimizer": Field(choices=OPTIMIZERS, help="sgd: plain gradient steps; momentum: SGD with momentum 0.9; "
                                                "adam and rmsprop scale each parameter's step by its gradient history."),
    "lr": Field(1e-6, 10.0, help="Learning rate. Too high and the loss explodes (the run stops as diverged)."),
    "batch_size": Field(1, 1024, help="Sequences per training step."),
    "steps": Field(1, 200_000, help="Training steps in the run."),
    "clip": Field(0.0, 1000.0, help="Clip the global gradient norm to this value (0: off). Tames exploding gradients."),
    "weight_decay": Field(0.0, 1.0, help="L2 penalty, applied by the optimiser."),
    "l1": Field(0.0, 1.0, help="L1 penalty on every weight, added to the loss."),
    "forget_bias": Field(-10.0, 10.0, help="Forget-gate bias at initialisation (LSTMs). 1 or more starts the gate "
                                           "open, so the cell remembers by default (Gers et al. 2000; "
                                           "Jozefowicz et al. 2015). Ignored by GRU and RNN."),
    "init": Field(choices=INITS, help="Weight initialisation: PyTorch's default uniform, orthogonal recurrent "
                                      "weights, or Xavier uniform."),
    "seed": Field(0, 2**31 - 1, help="Seeds the weights, the data and the probe sequences: the same seed "
                                     "gives the same run."),
    "device": Field(choices=DEVICES, help="auto uses a GPU when there is one; a device that is missing falls "
                                          "back to the CPU with a warning."),
    "probe_every": Field(1, 100_000, help="Trace the gates of the probe sequences every this many steps."),
    "probe_count": Field(1, 64, help="How many fixed held-out sequences are traced at each probe."),
    "eval_every": Field(1, 100_000, help="Measure the held-out loss every this many steps."),
    "trace_loss": Field(help="Your model: the loss whose gradient is traced, 'last' (the top layer's h at "
                             "the last step, summed) or UNIT@STEP (one unit of the top layer at one step, "
                             "e.g. 3@10)."),
}


@dataclass(frozen=True)
class Config:
    task: str = "adding"
    seq_len: int = 50
    series: str = "sine"
    horizon: int = 1
    text: str = ""
    digits_source: str = "digits8"
    csv_path: str = ""
    csv_columns: str = ""
    csv_target: str = ""
    cell: str = "lstm"
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.0
    optimizer: str = "adam"
    lr: float = 0.003
    batch_size: int = 64
    steps: int = 2000
    clip: float = 0.0
    weight_decay: float = 0.0
    l1: float = 0.0
    forget_bias: float = 1.0
    init: str = "default"
    seed: int = 0
    device: str = "auto"
    probe_every: int = 100
    probe_count: int = 8
    eval_every: int = 100
    trace_loss: str = "last"

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _check(f.name, getattr(self, f.name), f.type)
        megabytes = self.probe_trace_bytes / 2**20
        if megabytes > MAX_PROBE_TRACE_MB:
            raise ValueError(
                f"probe_count x seq_len x hidden x layers is too large: one probe trace would hold "
                f"about {megabytes:.0f} MB (at most {MAX_PROBE_TRACE_MB} MB). Lower probe_count, "
                f"seq_len, hidden or layers.")
        needed, limit = estimate(self), max_run_mb()
        if needed.total > limit * MB:
            raise ValueError(needed.refusal(limit))

    @property
    def probe_trace_bytes(self) -> int:
        """About what one probe trace holds: per layer, step and unit up to 4 gates, h_t and
        c_t (plus the output), float32."""
        return 4 * 7 * self.probe_count * self.seq_len * self.hidden * self.layers

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        """Build from untrusted values (strings from a URL or CLI welcome); unknown keys are an error."""
        known = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r}; known settings: {', '.join(known)}")
        return cls(**{k: _coerce(k, v, known[k]) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_value(name: str, value: Any) -> Any:
    """One setting from an untrusted value, as Config would hold it, checked by its own field's
    rules alone (parsed, in range); the rules between settings are Config's, checked once all
    of them are known. A link reads each of its settings so (pages/link.py)."""
    kind = next((f.type for f in dataclasses.fields(Config) if f.name == name), None)
    if kind is None:
        raise ValueError(f"unknown setting {name!r}")
    value = _coerce(name, value, kind)
    _check(name, value, kind)
    return value


def _coerce(name: str, value: Any, kind: str) -> Any:
    if kind == "int" and isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"{name} must be a whole number, got {value!r}") from None
        if not number.is_integer():
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        return int(number)
    if kind == "float" and isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    if kind == "str" and not isinstance(value, str):
        return str(value)
    return value


def _check(name: str, value: Any, kind: str) -> None:
    spec = FIELDS[name]
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    elif not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise ValueError(f"{name} must be one of {', '.join(spec.choices)}; got {value!r}")
    if spec.lo is not None and not spec.lo <= value <= spec.hi:
        raise ValueError(f"{name} must be between {spec.lo:g} and {spec.hi:g}; got {value!r}")
    if name == "trace_loss":
        parse_loss(value)
    if kind == "str" and len(value) > 200_000:
        raise ValueError(f"{name} is too long ({len(value)} characters; at most 200000)")
