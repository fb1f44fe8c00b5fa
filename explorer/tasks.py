"""The seven sequence tasks: each makes batches from a seed and states its sizes, loss,
metric and the trivial baseline the plots draw as a reference line.

TASKS, at the end, is the registry the rest of the app reads: a task's name, help, the
Config fields it reads and how a Config builds it. The Task classes themselves say how a
person sees their sequences and builds one by hand (handmade()). Adding a task is a Task
subclass and one entry in TASKS."""
from __future__ import annotations

import inspect
import io
import math
import os
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from explorer.data import (CORPUS_MAX_CHARS, DataError, SHIPPED_SERIES, load_csv, load_digits, load_mnist,
                           load_series, stdlib_corpus)
from explorer.handmade import (adding_sequence, brackets_sequence, copy_sequence, digit_sequence,
                               text_sequence, wave_sequence)

if TYPE_CHECKING:  # config.py imports this module for the task names
    from explorer.config import Config

SERIES = ("sine", *SHIPPED_SERIES)
UNKNOWN = "\ufffd"  # the one symbol for every character outside printable ASCII + newline
_PRINTABLE = frozenset(map(chr, (10, *range(32, 127))))   # the characters TextTask keeps as themselves
# Held-out generators are seeded this far from the run seed, so a run's training stream
# (seeded with the run seed) and its held-out set are different streams. torch's CPU
# generator keeps only a seed's low 32 bits, and run seeds are below 2**31 (Config).
HELDOUT_SEED_OFFSET = 2**31
ADDING_TOLERANCE = 0.04  # Hochreiter & Schmidhuber (1997) count |error| < 0.04 as solved
MAX_TIME_LABELS = 80   # beyond this, per-step tick labels are unreadable anyway
DIGIT_SIDES = {"digits8": 8, "mnist": 28}   # a digit image's rows (its steps) and columns (its features)
MAX_DEPTH = 8   # the brackets task's deepest nesting


def _heldout_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + HELDOUT_SEED_OFFSET)


def _split(length: int, train_fraction: float) -> int:
    """Index where the held-out (later) part of a sequence of `length` items begins."""
    return int(length * train_fraction)


def _min_length(needed: int, train_fraction: float) -> int:
    """The shortest data whose held-out part still holds `needed` consecutive items."""
    length = needed
    while length - _split(length, train_fraction) < needed:
        length += 1
    return length


def _codepoints(text: str) -> np.ndarray:
    raw = text.encode("utf-32-le", "surrogatepass")
    return np.frombuffer(raw, dtype=np.uint32).astype(np.int64)  # (len,)


def _printable(char: str) -> str:
    return {"\n": "⏎", " ": "␣", "\t": "⇥"}.get(char, char)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}.")
    return int(value)


CONTROL_KINDS = ("number", "slider", "text", "textarea", "select")


@dataclass(frozen=True)
class Control:
    """One widget for building a sequence by hand, as data: a page draws it, and its value
    reaches HandMade.build under `name`."""

    name: str                        # the value's key; the page keys its widget hand_<name>
    label: str
    kind: str                        # one of CONTROL_KINDS
    default: Any
    lo: float | None = None          # number and slider bounds, inclusive
    hi: float | None = None
    step: float | None = None        # a slider's step (None: the widget's own)
    options: tuple | None = None     # a select's choices

    def __post_init__(self):
        if self.kind not in CONTROL_KINDS:
            raise ValueError(f"Control kind must be one of {', '.join(CONTROL_KINDS)}, got {self.kind!r}.")


@dataclass(frozen=True)
class HandMade:
    """How a person builds one sequence of a task: its controls, and build(task, values) that
    turns their values (name -> value) into (x, y), a batch of one laid out as sample() lays it
    out; input the task cannot take is a ValueError saying why."""

    kind: str                        # the builder's name, which explorer.handmade checks
    controls: tuple[Control, ...]
    build: Callable[[Task, dict], tuple[Tensor, Tensor]]


# A wave for the series and csv tasks; the sine task trains on frequencies 0.02 to 0.2.
_WAVE_CONTROLS = (
    Control("frequency", "frequency (cycles per step)", "slider", 0.05, lo=0.01, hi=0.5, step=0.01),
    Control("amplitude", "amplitude", "slider", 1.0, lo=0.1, hi=3.0, step=0.1),
)


class Task:
    """A task's interface; subclasses set the attributes and implement sample()."""

    name: str
    input_size: int
    output_size: int
    seq_len: int
    output_mode: str  # "last": one prediction per sequence; "all": one per time step
    regression: bool  # MSE on real targets, else cross-entropy on class indices
    loss_name: str
    metric_name: str
    higher_is_better: bool
    baseline_name: str
    baseline_loss: float
    baseline_metric: float
    options: dict  # the task's own parameters, JSON-able
    trainable = True  # False: a model to look at, not to train (your uploaded model)
    step_target_name: str | None = None  # what a per-step numeric target measures ("depth"), if it has one

    def own_model(self):
        """The model this task brings (your uploaded model); None: the Trainer builds one."""
        return None

    def kept_bytes(self) -> bytes | None:
        """What a saved run must keep to rebuild this task once its source is gone; None:
        its Config is enough (a CSV's file is kept by the store itself)."""
        return None

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def heldout(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        return self.sample(n, _heldout_generator(seed))

    def loss(self, output: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
        """Per-sequence loss (mean over its steps), then "mean" or "sum" over sequences, or
        "none" for the (batch,) vector; "sum" keeps each sequence's gradient its own."""
        if self.regression:
            if output.shape != y.shape:  # broadcasting (batch,) against (batch, 1) is silent
                raise ValueError(f"output shape {tuple(output.shape)} != target {tuple(y.shape)}.")
            per_step = (output - y) ** 2
        else:
            per_step = F.cross_entropy(output.reshape(-1, self.output_size), y.reshape(-1),
                                       reduction="none")
        per_sequence = per_step.reshape(len(y), -1).mean(dim=1)  # (batch,)
        if reduction == "mean":
            return per_sequence.mean()
        if reduction == "sum":
            return per_sequence.sum()
        if reduction == "none":
            return per_sequence
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")

    def metric(self, output: Tensor, y: Tensor) -> float:
        """The metric as a number (waits for the device)."""
        return self.metric_tensor(output, y).item()

    def metric_tensor(self, output: Tensor, y: Tensor) -> Tensor:
        """The metric as a 0-d tensor on the output's device, so a training step need not wait
        for it. Accuracy over every prediction; tasks with another metric override this."""
        return (output.argmax(dim=-1) == y).float().mean()

    def baseline_predict(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        return {
            "name": self.name, "input_size": self.input_size, "output_size": self.output_size,
            "seq_len": self.seq_len, "output_mode": self.output_mode,
            "loss_name": self.loss_name, "metric_name": self.metric_name,
            "higher_is_better": self.higher_is_better, "baseline_name": self.baseline_name,
            "baseline_loss": self.baseline_loss, "baseline_metric": self.baseline_metric,
            "options": dict(self.options),
        }

    # How a person sees a sequence: input pictures and sequence pickers read in its terms.
    def feature_names(self) -> list[str] | None:
        """Names of the input's channels, in order (None where plain indices say as much)."""
        return ["value"] if self.input_size == 1 else None

    def time_labels(self, x: Tensor | np.ndarray) -> list[str] | None:
        """One label per step of one sequence x (time, features) where the task has symbols."""
        x = torch.as_tensor(np.asarray(x))
        if len(x) > MAX_TIME_LABELS:
            return None
        return self._symbol_labels(x.argmax(dim=-1).tolist())

    def _symbol_labels(self, indices: list[int]) -> list[str] | None:
        """The symbol each step's one-hot index stands for; None where steps are values."""
        return None

    def handmade(self) -> HandMade | None:
        """How a person builds a sequence of this task by hand; None where no builder fits."""
        return None

    def salient_steps(self, x: Tensor | np.ndarray) -> dict[int, str]:
        """The steps of one sequence x (time, features) its answer hangs on, named (the adding
        problem's markers), for time axes to mark; {} where no step stands out."""
        return {}

    def describe_sequence(self, x: Tensor, y: Tensor) -> str:
        """A short description of one sequence x (time, features) with target y, for a picker."""
        symbols = self.time_labels(x[:40])
        if symbols is not None:
            text = "".join(symbols)
            return f"“{text}…”" if len(x) > 40 else f"“{text}”"
        if self.regression:
            return f"window ending {float(x[-1, -1]):.2f}; target {float(y.flatten()[0]):.2f}"
        return f"{len(x)} steps"

    def _measure_baseline(self, x: Tensor, y: Tensor) -> None:
        """State the baseline as measured by the trivial predictor on (x, y)."""
        prediction = self.baseline_predict(x)
        self.baseline_loss = self.loss(prediction, y).item()
        self.baseline_metric = self.metric(prediction, y)


class AddingTask(Task):
    """Sum the two values whose marker is 1 (Arjovsky et al. 2016 form of Hochreiter &
    Schmidhuber 1997): one marker in each half, so the answer needs the distant past."""

    name, output_mode, regression = "adding", "last", True
    input_size, output_size = 2, 1
    loss_name, higher_is_better = "MSE", True
    metric_name = f"accuracy (|error| < {ADDING_TOLERANCE})"
    baseline_name = "predict 1"
    baseline_loss = 1 / 6  # the variance of the sum of two U[0, 1] values
    baseline_metric = 2 * ADDING_TOLERANCE - ADDING_TOLERANCE**2  # P(|sum − 1| < tolerance)

    def __init__(self, seq_len: int):
        self.seq_len = _check_int("seq_len", seq_len, 2)
        self.options = {}

    def sample(self, n, generator):
        values = torch.rand(n, self.seq_len, generator=generator)  # (batch, time)
        half = self.seq_len // 2
        first = torch.randint(0, half, (n,), generator=generator)
        second = torch.randint(half, self.seq_len, (n,), generator=generator)
        markers = torch.zeros(n, self.seq_len)  # (batch, time)
        markers[torch.arange(n), first] = 1.0
        markers[torch.arange(n), second] = 1.0
        x = torch.stack([values, markers], dim=-1)  # (batch, time, 2)
        y = (values * markers).sum(dim=1, keepdim=True)  # (batch, 1)
        return x, y

    def metric_tensor(self, output, y):
        return ((output - y).abs() < ADDING_TOLERANCE).float().mean()

    def baseline_predict(self, x):
        return torch.ones(len(x), 1)  # (batch, 1)

    def feature_names(self):
        return ["value", "marker"]

    def describe_sequence(self, x, y):
        marked = torch.nonzero(x[:, 1] > 0.5).flatten().tolist()
        return f"markers at t = {', '.join(map(str, marked))}; target {float(y.flatten()[0]):.2f}"

    def salient_steps(self, x):
        marked = np.flatnonzero(np.asarray(x)[:, 1] > 0.5)
        return {int(t): "marker" for t in marked}

    def handmade(self):
        T = self.seq_len
        return HandMade("adding", (
            Control("first", "first marker at t", "number", min(5, T // 2 - 1), lo=0, hi=T - 1),
            Control("second", "second marker at t", "number", T - 10 if T > 20 else T - 1, lo=0, hi=T - 1),
            Control("a", "value at the first marker", "slider", 0.8, lo=0.0, hi=1.0),
            Control("b", "value at the second marker", "slider", 0.3, lo=0.0, hi=1.0),
        ), _adding_by_hand)


class CopyTask(Task):
    """Remember 10 symbols across a delay of T blanks and replay them after the delimiter
    (Arjovsky et al. 2016). Input channels: blank, 8 symbols, delimiter."""

    name, output_mode, regression = "copy", "all", False
    input_size, output_size = 10, 9  # outputs: blank + 8 symbols
    loss_name, metric_name, higher_is_better = "cross-entropy (nats)", "copy accuracy", True
    baseline_name = "blanks, then a uniform guess"
    symbols, delimiter = 10, 9

    def __init__(self, seq_len: int):
        self.delay = _check_int("seq_len", seq_len, 1)
        self.seq_len = self.delay + 2 * self.symbols
        self.baseline_loss = self.symbols * math.log(8) / self.seq_len
        self.baseline_metric = 1 / 8
        self.options = {"delay": self.delay}

    def sample(self, n, generator):
        symbols = torch.randint(1, 9, (n, self.symbols), generator=generator)  # (batch, 10)
        tokens = torch.zeros(n, self.seq_len, dtype=torch.long)  # (batch, time), 0 = blank
        tokens[:, :self.symbols] = symbols
        tokens[:, self.delay + self.symbols - 1] = self.delimiter
        x = F.one_hot(tokens, self.input_size).float()  # (batch, time, 10)
        y = torch.zeros(n, self.seq_len, dtype=torch.long)  # (batch, time)
        y[:, -self.symbols:] = symbols
        return x, y

    def metric_tensor(self, output, y):
        recalled = output[:, -self.symbols:].argmax(dim=-1)  # (batch, 10)
        return (recalled == y[:, -self.symbols:]).float().mean()

    def baseline_predict(self, x):
        log_probs = torch.full((len(x), self.seq_len, self.output_size), -math.inf)
        log_probs[:, :-self.symbols, 0] = 0.0  # certain blank while nothing is recalled
        log_probs[:, -self.symbols:, 1:] = -math.log(8)  # then any of the 8 symbols
        return log_probs  # (batch, time, 9)

    def feature_names(self):
        return ["blank", *map(str, range(1, 9)), "delimiter"]

    def _symbol_labels(self, indices):
        return ["·" if i == 0 else ":" if i == self.delimiter else str(i) for i in indices]

    def handmade(self):
        return HandMade("copy", (Control("symbols", "10 symbols, each 1–8", "text", "1234567812"),),
                        lambda task, values: copy_sequence(task, values["symbols"]))


class DigitsTask(Task):
    """Classify a handwritten digit read one pixel row per time step: the shipped 8×8 digits
    (8 steps × 8 pixels) or real MNIST (28 × 28) when its files are present."""

    name, output_mode, regression = "digits", "last", False
    output_size = 10
    loss_name, metric_name, higher_is_better = "cross-entropy (nats)", "accuracy", True
    baseline_name = "uniform guess"
    baseline_loss, baseline_metric = math.log(10), 0.1
    train_fraction, split_seed = 0.8, 0  # the 8×8 split is fixed, whatever the run seed

    def __init__(self, seq_len: int | None = None, source: str = "digits8", mnist_dir=None):
        # seq_len is fixed by the images; the argument exists for make_task's uniform call
        if source == "digits8":
            images, labels = (torch.tensor(a) for a in load_digits())
            fixed = torch.Generator().manual_seed(self.split_seed)
            order = torch.randperm(len(images), generator=fixed)
            cut = _split(len(images), self.train_fraction)
            self.train = images[order[:cut]], labels[order[:cut]]
            self.test = images[order[cut:]], labels[order[cut:]]
        elif source == "mnist":
            splits = load_mnist(mnist_dir)
            self.train, self.test = ((torch.tensor(images), torch.tensor(labels, dtype=torch.long))
                                     for images, labels in (splits["train"], splits["test"]))
        else:
            raise ValueError(f"digits source must be 'digits8' or 'mnist', got {source!r}.")
        self.seq_len = self.input_size = self.train[0].shape[1]
        self.options = {"source": source, "train_size": len(self.train[0]),
                        "heldout_size": len(self.test[0])}

    @staticmethod
    def _pixels(images: Tensor) -> Tensor:
        # MNIST stays uint8 in memory (47 MB instead of 188 MB) and is scaled per batch
        return images.float() / 255.0 if images.dtype == torch.uint8 else images

    def sample(self, n, generator):
        index = torch.randint(len(self.train[0]), (n,), generator=generator)
        # (batch, rows, columns), (batch,)
        return self._pixels(self.train[0][index]), self.train[1][index]

    def heldout(self, n, seed):
        index = torch.randperm(len(self.test[0]), generator=_heldout_generator(seed))[:n]
        return self._pixels(self.test[0][index]), self.test[1][index]

    def baseline_predict(self, x):
        return torch.full((len(x), 10), -math.log(10))  # (batch, 10) uniform log-probabilities

    def feature_names(self):
        return [f"column {i}" for i in range(self.input_size)]

    def describe_sequence(self, x, y):
        return f"digit {int(y)}"

    def handmade(self):
        return HandMade("digits", (
            Control("digit", "digit", "select", 7, options=tuple(range(10))),
            Control("index", "which example of it", "number", 0, lo=0, hi=200),
        ), lambda task, values: digit_sequence(task, values["digit"], values["index"]))


class SineTask(Task):
    """Forecast a noisy sine wave `horizon` steps past a window; every sequence has its own
    random frequency, phase and amplitude, so the net must infer them from the window.
    The waves are already of unit scale, so unlike real series they are not normalised."""

    name, output_mode, regression = "series", "last", True
    input_size, output_size = 1, 1
    loss_name, metric_name, higher_is_better = "MSE", "MAE", False
    baseline_name = "repeat last value"
    noise = 0.05

    def __init__(self, seq_len: int, horizon: int = 1):
        self.seq_len = _check_int("seq_len", seq_len, 1)
        self.horizon = _check_int("horizon", horizon, 1)
        self.options = {"series": "sine", "horizon": self.horizon}
        self._measure_baseline(*self.heldout(4096, seed=0))

    def sample(self, n, generator):
        def uniform(low, high):
            return low + (high - low) * torch.rand(n, 1, generator=generator)  # (batch, 1)
        period, phase, amplitude = uniform(5.0, 50.0), uniform(0.0, 2 * math.pi), uniform(0.5, 1.5)
        t = torch.arange(self.seq_len + self.horizon)  # (time + horizon,)
        wave = amplitude * torch.sin(2 * math.pi * t / period + phase)  # (batch, time + horizon)
        wave = wave + self.noise * torch.randn(wave.shape, generator=generator)
        x = wave[:, :self.seq_len, None]  # (batch, time, 1)
        y = wave[:, -1:]  # (batch, 1)
        return x, y

    def metric_tensor(self, output, y):
        return (output - y).abs().mean()

    def baseline_predict(self, x):
        return x[:, -1, :].clone()  # (batch, 1)

    def handmade(self):
        # with the noise the task trains on, so the wave looks like the ones it has seen
        return HandMade("wave", _WAVE_CONTROLS, lambda task, values: wave_sequence(
            task, values["frequency"], values["amplitude"], noise=task.noise))


class WindowTask(Task):
    """Forecast one column `horizon` rows past a window of rows: a shipped series or a user's
    CSV. Time split: first 80% of rows train, last 20% held out; inputs and target are
    normalised with the training rows' mean and standard deviation."""

    output_mode, regression = "last", True
    output_size = 1
    loss_name, higher_is_better = "MSE (normalised units)", False
    baseline_name = "repeat last value"
    train_fraction = 0.8

    def __init__(self, name: str, values: np.ndarray, columns: list[str], target: str,
                 seq_len: int, horizon: int, label: str):
        self.name = name
        self.seq_len = _check_int("seq_len", seq_len, 1)
        self.horizon = _check_int("horizon", horizon, 1)
        needed = self.seq_len + self.horizon
        shortest = _min_length(needed, self.train_fraction)
        if len(values) < shortest:
            rows = f"{len(values)} row{'s' * (len(values) != 1)}"
            raise DataError(f"{label} has {rows}; window {self.seq_len} + horizon {self.horizon} "
                            f"needs at least {shortest} (the last 20% is held out and must hold a "
                            f"full window and its target too). Shorten the window or the horizon.")
        cut = _split(len(values), self.train_fraction)
        with np.errstate(over="ignore", invalid="ignore"):   # checked just below
            mean, std = values[:cut].mean(axis=0), values[:cut].std(axis=0)
            std[std == 0] = 1.0  # a constant column carries no signal; leave it at zero
            normalised = (values - mean) / std  # (rows, columns)
        if not (np.isfinite(normalised).all() and np.isfinite(std).all()):
            largest = np.abs(values).max(axis=0)  # (columns,)
            column = int(np.argmax(largest))
            raise DataError(f"Column {columns[column]!r} of {label} holds numbers too large to normalise "
                            f"(up to {largest[column]:.3g}): their sum overflows. Divide the column by "
                            f"a power of ten.")
        normalised = torch.tensor(normalised, dtype=torch.float32)
        self.train, self.test = normalised[:cut], normalised[cut:]
        self.target_index = columns.index(target)
        self.target_std = float(std[self.target_index])
        self.input_size = len(columns)
        self.metric_name = "MAE (original units)"
        self.options = {"source": label, "columns": list(columns), "target": target,
                        "horizon": self.horizon, "mean": mean.tolist(), "std": std.tolist()}
        every_window = torch.arange(len(self.test) - needed + 1)
        self._measure_baseline(*self._windows(self.test, every_window))

    def _windows(self, rows: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        steps = starts[:, None] + torch.arange(self.seq_len)  # (batch, time)
        x = rows[steps]  # (batch, time, columns)
        y = rows[starts + self.seq_len - 1 + self.horizon, self.target_index, None]  # (batch, 1)
        return x, y

    def sample(self, n, generator):
        starts = torch.randint(len(self.train) - self.seq_len - self.horizon + 1, (n,),
                               generator=generator)
        return self._windows(self.train, starts)

    def heldout(self, n, seed):
        count = len(self.test) - self.seq_len - self.horizon + 1
        starts = torch.randperm(count, generator=_heldout_generator(seed))[:n]
        return self._windows(self.test, starts)

    def metric_tensor(self, output, y):
        return (output - y).abs().mean() * self.target_std

    def baseline_predict(self, x):
        return x[:, -1, self.target_index, None].clone()  # (batch, 1)

    def feature_names(self):
        return list(self.options["columns"])

    def handmade(self):
        if self.input_size > 1:  # a wave fills one column; the others would be made up
            return None
        return HandMade("wave", _WAVE_CONTROLS, lambda task, values: wave_sequence(
            task, values["frequency"], values["amplitude"]))


def _series(seq_len: int, name: str = "sine", horizon: int = 1) -> Task:
    if name == "sine":
        return SineTask(seq_len, horizon)
    if name not in SERIES:
        raise ValueError(f"Unknown series {name!r}; choose one of {', '.join(SERIES)}.")
    return WindowTask("series", load_series(name)[:, None], ["value"], "value",
                      seq_len, horizon, f"series {name!r}")


def _csv(seq_len: int, source=None, columns: list[str] | None = None, target: str | None = None,
         horizon: int = 1) -> Task:
    if source is None:
        raise ValueError("The csv task needs source=<path or file object>.")
    table = load_csv(source, columns, target)
    # By its name: an upload's path is a server folder the user never chose.
    label = Path(source if isinstance(source, (str, Path)) else getattr(source, "name", "the CSV")).name
    return WindowTask("csv", table.frame.to_numpy(), list(table.frame.columns), table.target,
                      seq_len, horizon, str(label))


class BracketsTask(Task):
    """Read a balanced bracket string and output the nesting depth after each character:
    solving it needs a counter in the state."""

    name, output_mode, regression = "brackets", "all", False
    step_target_name = "depth"  # y is the nesting depth after each bracket: units can follow it
    input_size = 2  # one-hot '(' and ')'
    loss_name, metric_name, higher_is_better = "cross-entropy (nats)", "accuracy", True
    baseline_name = "depth frequencies (majority depth)"

    def __init__(self, seq_len: int, max_depth: int = MAX_DEPTH):
        self.seq_len = _check_int("seq_len", seq_len, 2)
        if self.seq_len % 2:
            raise ValueError(f"brackets needs an even seq_len (every '(' closes), got {seq_len}.")
        self.max_depth = _check_int("max_depth", max_depth, 1)
        self.output_size = self.max_depth + 1  # depths 0..max_depth
        self.options = {"max_depth": self.max_depth}
        # The trivial predictor outputs the held-out depth frequencies at every step: its
        # accuracy is the majority depth's share, its loss the depths' entropy.
        _, depths = self.heldout(1024, seed=0)
        counts = torch.bincount(depths.flatten(), minlength=self.output_size).double() + 1.0
        self.log_frequencies = (counts / counts.sum()).log().float()  # (classes,)
        self._measure_baseline(*self.heldout(1024, seed=1))

    def sample(self, n, generator):
        depth = torch.zeros(n, dtype=torch.long)  # (batch,)
        opens, depths = [], []
        for t in range(self.seq_len):
            left = self.seq_len - t - 1  # characters after this one, each can close one level
            can_open = (depth + 1 <= left) & (depth < self.max_depth)
            can_close = depth > 0
            coin = torch.rand(n, generator=generator) < 0.5
            is_open = can_open & (coin | ~can_close)
            depth = depth + torch.where(is_open, 1, -1)
            opens.append(is_open)
            depths.append(depth)
        is_open = torch.stack(opens, dim=1)  # (batch, time)
        x = torch.stack([is_open, ~is_open], dim=-1).float()  # (batch, time, 2)
        return x, torch.stack(depths, dim=1)  # (batch, time)

    def baseline_predict(self, x):
        # (batch, time, classes)
        return self.log_frequencies.expand(len(x), self.seq_len, -1).clone()

    def feature_names(self):
        return ["(", ")"]

    def _symbol_labels(self, indices):
        return ["(" if i == 0 else ")" for i in indices]

    def handmade(self):
        return HandMade("brackets", (
            Control("brackets", "brackets", "text", ("(()(()))" * self.seq_len)[:self.seq_len]),),
            lambda task, values: brackets_sequence(task, values["brackets"]))


class TextTask(Task):
    """Character-level language model: predict the next character at every step, on Python
    standard-library source or a pasted text. First 90% trains, last 10% is held out."""

    name, output_mode, regression = "text", "all", False
    loss_name, metric_name, higher_is_better = "cross-entropy (nats)", "bits per char", False
    baseline_name = "unigram frequencies"
    train_fraction = 0.9

    def __init__(self, seq_len: int, text: str | None = None):
        self.seq_len = _check_int("seq_len", seq_len, 1)
        corpus = stdlib_corpus() if text is None else text
        corpus = corpus.replace("\r\n", "\n").replace("\r", "\n")
        shortest = _min_length(self.seq_len + 1, self.train_fraction)
        if len(corpus) < shortest:
            raise DataError(f"The text has {len(corpus)} characters; seq_len {self.seq_len} needs "
                            f"at least {shortest} (the last 10% is held out and must hold one "
                            f"window of {self.seq_len + 1} characters). Paste more text or "
                            f"shorten seq_len.")
        codes = _codepoints(corpus)
        printable = np.unique(codes[(codes == 10) | ((codes >= 32) & (codes <= 126))])
        if not len(printable):
            raise DataError("The text has no printable ASCII character: the text task models letters, "
                            "digits, punctuation, spaces and newlines, and reads every other character "
                            "(accents, emoji, control characters) as one unknown symbol, so there would "
                            "be nothing to learn. Paste a text written mostly in ASCII.")
        self.vocab = "".join(map(chr, printable)) + UNKNOWN
        self._lookup = np.full(128, len(self.vocab) - 1, dtype=np.int64)  # ASCII -> index
        self._lookup[printable] = np.arange(len(printable))
        self.input_size = self.output_size = len(self.vocab)
        tokens = self.encode(corpus)
        cut = _split(len(tokens), self.train_fraction)
        self.train, self.test = tokens[:cut], tokens[cut:]
        # Add-one smoothing keeps characters unseen in training finite on held-out text;
        # the stated loss is this predictor's cross-entropy on the training text, which is
        # its unigram entropy up to the smoothing.
        counts = torch.bincount(self.train, minlength=len(self.vocab)).double()  # (vocab,)
        log_q = ((counts + 1.0) / (counts + 1.0).sum()).log()
        self.log_frequencies = log_q.float()
        self.baseline_loss = -(counts / counts.sum() * log_q).sum().item()
        self.baseline_metric = self.baseline_loss / math.log(2)
        self.options = {"corpus": "python stdlib" if text is None else "pasted text",
                        "chars": len(corpus), "vocab_size": len(self.vocab)}

    def encode(self, text: str) -> Tensor:
        """Character indices (len,) int64; characters outside the vocabulary become UNKNOWN."""
        codes = _codepoints(text)
        index = self._lookup[np.minimum(codes, 127)]
        index[codes > 127] = len(self.vocab) - 1
        return torch.from_numpy(index)

    def decode(self, indices) -> str:
        return "".join(self.vocab[i] for i in torch.as_tensor(indices).flatten().tolist())

    def _windows(self, tokens: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        steps = starts[:, None] + torch.arange(self.seq_len)  # (batch, time)
        x = F.one_hot(tokens[steps], len(self.vocab)).float()  # (batch, time, vocab)
        return x, tokens[steps + 1]  # next characters (batch, time)

    def sample(self, n, generator):
        starts = torch.randint(len(self.train) - self.seq_len, (n,), generator=generator)
        return self._windows(self.train, starts)

    def heldout(self, n, seed):
        # non-overlapping windows, so the held-out set covers the held-out text once
        chunks = (len(self.test) - 1) // self.seq_len
        order = torch.randperm(chunks, generator=_heldout_generator(seed))[:n]
        return self._windows(self.test, order * self.seq_len)

    def metric_tensor(self, output, y):
        return self.loss(output, y) / math.log(2)

    def baseline_predict(self, x):
        # (batch, time, vocab)
        return self.log_frequencies.expand(len(x), self.seq_len, -1).clone()

    def feature_names(self):
        return [_printable(c) for c in self.vocab]

    def _symbol_labels(self, indices):
        return [_printable(self.vocab[i]) for i in indices]

    def handmade(self):
        return HandMade("text", (
            Control("text", "text", "textarea", "def forward(self, x):\n    return self.head(x)\n"),),
            lambda task, values: text_sequence(task, values["text"]))


def _adding_by_hand(task: AddingTask, values: dict) -> tuple[Tensor, Tensor]:
    # The unmarked steps' values stay fixed, so moving a marker or a slider changes only that.
    background = np.random.default_rng(0).random(task.seq_len)  # (time,)
    return adding_sequence(task, values["first"], values["second"], background,
                           marked=(values["a"], values["b"]))


class TaskSizes(NamedTuple):
    """A task's shapes as its settings fix them, known without building it or reading its data:
    what the memory budget (explorer/budget.py) estimates a run from."""

    seq_len: int          # steps per sequence
    input_size: int       # features per step (at most: a CSV's header may name text columns)
    output_size: int
    output_mode: str      # "last" or "all", as Task.output_mode
    data_bytes: int = 0   # about what the task's own data holds in memory (MNIST, a corpus, a CSV)
    heldout: int | None = None   # the most held-out sequences it has (None: as many as asked for)


@dataclass(frozen=True)
class TaskSpec:
    """One task as the app sees it. Config's fields stay flat (CLI flags and URL keys keep
    their names); `fields` says which of them this task reads, so the sidebar shows only those."""

    name: str
    help: str                                   # one line, for someone choosing a task
    fields: tuple[str, ...]                     # the Config fields it reads, besides task
    make: Callable[..., Task]                   # make(seq_len, **options)
    options: Callable[[Config], dict] = lambda config: {}   # make's options from a Config
    # A task whose Config alone cannot rebuild it: from the bytes its saved run kept.
    restore: Callable[[Config, bytes], Task] | None = None
    trainable: bool = True                      # offered as a task to train (the sidebar)
    sizes: Callable[[Config], TaskSizes] = field(kw_only=True)   # cheap: no data is read


def _digits_options(config: Config) -> dict:
    return {"source": config.digits_source, "mnist_dir": os.environ.get("GATE_EXPLORER_MNIST")}


def _csv_options(config: Config) -> dict:
    if not config.csv_path:
        raise ValueError("the csv task needs a CSV file (csv_path), and none is chosen yet")
    columns = [c.strip() for c in config.csv_columns.split(",") if c.strip()]
    return {"source": config.csv_path, "horizon": config.horizon, "columns": columns or None,
            "target": config.csv_target or None}


def _csv_restore(config: Config, data: bytes) -> Task:
    """A CSV run's task from the file's kept bytes (the upload may be long gone)."""
    source = io.BytesIO(data)
    source.name = Path(config.csv_path).name
    return TASKS["csv"].make(config.seq_len, **{**_csv_options(config), "source": source})


def _digits_sizes(config: Config) -> TaskSizes:
    side = DIGIT_SIDES[config.digits_source]
    # MNIST's 70,000 images as uint8, once as read and once as tensors.
    return TaskSizes(side, side, 10, "last", 2 * 70_000 * 28 * 28 if config.digits_source == "mnist" else 0)


def _text_sizes(config: Config) -> TaskSizes:
    # The vocabulary TextTask builds: the text's printable ASCII characters and UNKNOWN; the
    # standard-library corpus uses nearly all of them, so all of them are assumed.
    text = config.text.replace("\r", "\n")
    vocab = sum(char in text for char in _PRINTABLE) + 1 if text else len(_PRINTABLE) + 1
    chars = len(text) or CORPUS_MAX_CHARS
    # The text as a str, its code points and its tokens (int64 each); its held-out tenth, in windows.
    windows = max(1, (chars // 10 + 1) // config.seq_len)
    return TaskSizes(config.seq_len, vocab, vocab, "all", 20 * chars, windows)


def _csv_sizes(config: Config) -> TaskSizes:
    """The CSV's inputs at most: the chosen columns and the target, else the header's fields
    (its first line only is read; the file is parsed when the task is built)."""
    chosen = [c for c in config.csv_columns.split(",") if c.strip()]
    try:
        # Opened without waiting for a writer, should it be a FIFO; what is wrong with a path
        # that is not a regular file, read_user_file (the task's reader) says.
        with open(config.csv_path, "rb", opener=lambda path, flags: os.open(path, flags | os.O_NONBLOCK)) as source:
            header, size = source.readline(2**16), os.fstat(source.fileno()).st_size
    except OSError:                    # the task will say what is wrong with the path
        header, size = b"", 0
    columns = len(chosen) + 1 if chosen else header.count(b",") + 1
    # Its text, the parsed table (float64) and the normalised rows (float32): a few copies.
    return TaskSizes(config.seq_len, columns, 1, "last", 8 * size)


def _model_options(config: Config) -> dict:
    raise ValueError("the model task is your own model, looked at and never trained: upload it on the "
                     "Runs page (Look inside your own model), or trace it with `python -m explorer trace`")


def _model_restore(config: Config, data: bytes) -> Task:
    from explorer.yours import ModelTask    # yours.py builds on this module
    return ModelTask.from_bytes(data, config)


TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("adding", "Add the two marked values among T random ones: a memory across the sequence.",
             ("seq_len",), AddingTask,
             sizes=lambda config: TaskSizes(config.seq_len, 2, 1, "last")),
    TaskSpec("copy", "Replay 10 symbols after a delay of T blanks.", ("seq_len",), CopyTask,
             sizes=lambda config: TaskSizes(config.seq_len + 2 * CopyTask.symbols, 10, 9, "all")),
    TaskSpec("digits", "Name a handwritten digit read one pixel row per step.",
             ("digits_source",), DigitsTask, _digits_options,   # no seq_len: the images fix it
             sizes=_digits_sizes),
    TaskSpec("series", "Forecast a sine wave or a real series a few steps past a window of T.",
             ("seq_len", "series", "horizon"), _series,
             lambda config: {"name": config.series, "horizon": config.horizon},
             sizes=lambda config: TaskSizes(config.seq_len, 1, 1, "last")),
    TaskSpec("brackets", "Output the nesting depth after each bracket: a counter in the state.",
             ("seq_len",), BracketsTask,
             sizes=lambda config: TaskSizes(config.seq_len, 2, MAX_DEPTH + 1, "all")),
    TaskSpec("text", "Predict each next character of Python's source or a pasted text.",
             ("seq_len", "text"), TextTask, lambda config: {"text": config.text or None}, sizes=_text_sizes),
    TaskSpec("csv", "Forecast a column of your own CSV file a few rows past a window of T rows.",
             ("seq_len", "horizon", "csv_path", "csv_columns", "csv_target"), _csv, _csv_options, _csv_restore,
             sizes=_csv_sizes),
    # Your model's input size is in its file, not its settings: the budget assumes `hidden`.
    TaskSpec("model", "Your own model, uploaded on the Runs page: its gates and gradients on your sequences.",
             ("trace_loss",), _model_options, _model_options, _model_restore, trainable=False,
             sizes=lambda config: TaskSizes(config.seq_len, config.hidden, config.hidden, "all")),
)}


def make_task(name: str, seq_len: int, /, **options) -> Task:
    """Build a task by name; ValueError for an unknown task or option, DataError for data."""
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; choose one of {', '.join(TASKS)}.")
    make = TASKS[name].make
    valid = [p for p in inspect.signature(make).parameters if p != "seq_len"]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"Task {name!r} has no option {', '.join(unknown)}; its options are "
                         f"{', '.join(valid) or 'none'}.")
    return make(seq_len, **options)


def task_for(config: Config) -> Task:
    """The task a config asks for (ValueError / DataError when it cannot be built)."""
    return make_task(config.task, config.seq_len, **TASKS[config.task].options(config))
