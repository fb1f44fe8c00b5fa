"""Sequences built by hand for the Gates page: marker positions for adding, typed symbols,
brackets or text, a chosen digit, a wave. Each comes out exactly as the task's sample() lays
out a batch of one, so Trainer.trace takes it; input a task cannot take is a ValueError that
says what was wrong and what is allowed. Which builder a task takes, and the widgets that
feed it, each task says in its handmade() (explorer/tasks.py)."""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # tasks.py imports the builders for its handmade() specs
    from .tasks import AddingTask, BracketsTask, CopyTask, DigitsTask, Task, TextTask

# Typed brackets or text longer than the longest seq_len a run may have (Config caps it at
# 1000) would make one trace cost more than any probe does.
MAX_TYPED = 1000


def _require(task: Task, kind: str) -> None:
    """The builder `kind` fits the tasks whose handmade() names it."""
    spec = task.handmade()
    if spec is not None and spec.kind == kind:
        return
    columns = task.options.get("columns", [])
    if kind == "wave" and len(columns) > 1:
        raise ValueError(f"A hand-made wave fills one input column, but this {task.name} task reads "
                         f"{len(columns)} columns ({', '.join(columns)}); pick a sequence from the "
                         f"probe set instead.")
    raise ValueError(f"A hand-made {kind} sequence is for the {kind} task, not the {task.name} task.")


def _integer(name: str, value, low: int, high: int) -> int:
    """value as an int in [low, high]; ValueError naming the allowed range otherwise."""
    if isinstance(value, bool) or not isinstance(value, Integral) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}.")
    return int(value)


def _number(name: str, value, low: float = -math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < low:
        allowed = "a finite number" if low == -math.inf else f"a finite number ≥ {low:g}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}.")
    return float(value)


def adding_sequence(task: AddingTask, first: int, second: int, values: np.ndarray | None = None,
                    seed: int = 0, marked: tuple[float, float] | None = None) -> tuple[Tensor, Tensor]:
    """Markers at steps `first` and `second` (0-based); the values are U[0, 1] drawn from
    `seed` unless given (T numbers in [0, 1]), and `marked`, if given, replaces the values at
    the two markers. Target: the sum of the two marked values.

    The task itself puts one marker in each half; here any two distinct steps are allowed,
    so a student can also ask what the network does with both markers in one half.
    """
    _require(task, "adding")
    T = task.seq_len
    first = _integer("The first marker's step", first, 0, T - 1)
    second = _integer("The second marker's step", second, 0, T - 1)
    if first == second:
        raise ValueError(f"The two markers must be at different steps; both are at step {first}.")
    if values is None:
        values = torch.rand(T, generator=torch.Generator().manual_seed(seed)).double().numpy()  # (time,)
    values = np.array(values, dtype=np.float64)  # a copy, so `marked` leaves the caller's alone
    if values.shape != (T,):
        raise ValueError(f"values must hold one number per step, {T} in all; got shape {values.shape}.")
    if marked is not None:
        values[[first, second]] = marked
    if not (np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()):
        raise ValueError("Every value must be a number from 0 to 1, as the task draws them.")
    values = torch.from_numpy(values).float()  # (time,)
    markers = torch.zeros(T)  # (time,)
    markers[[first, second]] = 1.0
    x = torch.stack([values, markers], dim=-1)[None]  # (1, time, 2)
    y = (values[first] + values[second]).reshape(1, 1)  # (1, 1)
    return x, y


def copy_sequence(task: CopyTask, symbols: str) -> tuple[Tensor, Tensor]:
    """The 10 symbols to remember, typed as digits 1–8 (e.g. "1234567812"; spaces are ignored),
    then the task's blanks, delimiter and recall steps."""
    _require(task, "copy")
    typed = "".join(str(symbols).split())
    if len(typed) != task.symbols:
        raise ValueError(f"The copy task needs exactly {task.symbols} symbols, got {len(typed)} ({typed!r}).")
    wrong = [s for s in typed if s not in "12345678"]
    if wrong:
        raise ValueError(f"Each symbol must be a digit from 1 to 8; {wrong[0]!r} is not.")
    remembered = torch.tensor([int(s) for s in typed])  # (10,)
    tokens = torch.zeros(1, task.seq_len, dtype=torch.long)  # (1, time), 0 = blank
    tokens[0, :task.symbols] = remembered
    tokens[0, task.delay + task.symbols - 1] = task.delimiter
    x = F.one_hot(tokens, task.input_size).float()  # (1, time, 10)
    y = torch.zeros(1, task.seq_len, dtype=torch.long)  # (1, time)
    y[0, -task.symbols:] = remembered
    return x, y


def brackets_sequence(task: BracketsTask, text: str) -> tuple[Tensor, Tensor]:
    """A typed string of '(' and ')', of any length up to MAX_TYPED; the target is the depth
    after each character. It need not end balanced, but may never close a bracket that is
    not open nor nest deeper than the task's max_depth (the network has no class for that)."""
    _require(task, "brackets")
    if not 1 <= len(text) <= MAX_TYPED:
        raise ValueError(f"Type from 1 to {MAX_TYPED} brackets; got {len(text)} characters.")
    depths, depth = [], 0
    for position, char in enumerate(text):
        if char not in "()":
            raise ValueError(f"Only '(' and ')' are allowed; character {position + 1} is {char!r}.")
        depth += 1 if char == "(" else -1
        if depth < 0:
            raise ValueError(f"Character {position + 1} closes a bracket that is not open.")
        if depth > task.max_depth:
            raise ValueError(f"Character {position + 1} opens depth {depth}, deeper than this task's "
                             f"max_depth {task.max_depth}.")
        depths.append(depth)
    is_open = torch.tensor([c == "(" for c in text])  # (time,)
    x = torch.stack([is_open, ~is_open], dim=-1).float()[None]  # (1, time, 2)
    y = torch.tensor(depths)[None]  # (1, time)
    return x, y


def text_sequence(task: TextTask, text: str) -> tuple[Tensor, Tensor]:
    """Typed text, 2 to MAX_TYPED characters: the input is every character but the last, the
    target every next character. Characters outside the task's vocabulary become its unknown
    symbol, as in the corpus; line endings are normalised to '\\n' as the corpus's are."""
    _require(task, "text")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not 2 <= len(text) <= MAX_TYPED:
        raise ValueError(f"Type from 2 to {MAX_TYPED} characters (each predicts the next); "
                         f"got {len(text)}.")
    tokens = task.encode(text)  # (len,)
    x = F.one_hot(tokens[:-1], len(task.vocab)).float()[None]  # (1, time, vocab)
    y = tokens[1:][None]  # (1, time)
    return x, y


def digit_sequence(task: DigitsTask, digit: int, index: int = 0) -> tuple[Tensor, Tensor]:
    """The index-th held-out image of `digit`, read row by row as the task reads it."""
    _require(task, "digits")
    digit = _integer("digit", digit, 0, 9)
    images, labels = task.test
    (found,) = torch.nonzero(labels == digit, as_tuple=True)
    if len(found) == 0:
        raise ValueError(f"The held-out set has no image of a {digit}.")
    index = _integer(f"index (the held-out set has {len(found)} images of a {digit})",
                     index, 0, len(found) - 1)
    chosen = found[index:index + 1]
    return task._pixels(images[chosen]), labels[chosen]  # (1, rows, columns), (1,)


def wave_sequence(task: Task, frequency: float, amplitude: float = 1.0, phase: float = 0.0,
                  noise: float = 0.0, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A sine wave over the window, amplitude·sin(2π·frequency·t + phase) at steps
    t = 0 .. seq_len−1, plus Gaussian noise of standard deviation `noise` drawn from `seed`;
    the target is the wave (noise included) `horizon` steps past the window, as SineTask
    makes its waves. frequency is in cycles per step, above 0 and at most 0.5 (two samples
    a cycle; faster waves alias into slower ones).

    The sine task trains on frequencies 0.02 to 0.2, amplitudes 0.5 to 1.5 and noise
    SineTask.noise (0.05): a wave in those ranges is one it has seen the like of. A real
    series is normalised to mean 0 and standard deviation 1, so there the wave's amplitude
    is in standard deviations.
    """
    _require(task, "wave")
    frequency = _number("frequency", frequency)
    if not 0 < frequency <= 0.5:
        raise ValueError(f"frequency must be above 0 and at most 0.5 cycles per step (two samples "
                         f"a cycle), got {frequency!r}.")
    amplitude = _number("amplitude", amplitude, 0.0)
    phase = _number("phase", phase)
    noise = _number("noise", noise, 0.0)
    t = torch.arange(task.seq_len + task.horizon)  # (time + horizon,)
    wave = amplitude * torch.sin(2 * math.pi * frequency * t + phase)  # (time + horizon,)
    wave = wave + noise * torch.randn(wave.shape, generator=torch.Generator().manual_seed(seed))
    x = wave[None, :task.seq_len, None]  # (1, time, 1)
    y = wave[None, -1:]  # (1, 1)
    return x, y
