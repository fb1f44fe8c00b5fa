"""What instrumentation costs: the Trainer against a bare PyTorch loop and a hand-written cell loop.

All three train the same LSTM (adding problem, T=100, hidden 64, batch 64, Adam) on the
same batches. This machine is shared and noisy, so they run interleaved in chunks of a
few steps, in rotating order: a slow spell of the machine hits all three alike, and the
ratios compare numbers measured side by side.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from .config import Config
from .tasks import make_task
from .trainer import Trainer

SETTING = dict(task="adding", seq_len=100, hidden=64, batch_size=64, cell="lstm", optimizer="adam",
               lr=0.003, device="cpu")


class _BareLoop:
    """The loop a PyTorch user writes: fused nn.LSTM, linear head, Adam."""

    def __init__(self, input_size: int, hidden: int):
        torch.manual_seed(0)
        self.rnn = nn.LSTM(input_size, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        self.optimizer = torch.optim.Adam([*self.rnn.parameters(), *self.head.parameters()], lr=SETTING["lr"])

    def step(self, x, y) -> None:
        loss = nn.functional.mse_loss(self.head(self.rnn(x)[0][:, -1]), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


class _HandWrittenLoop(_BareLoop):
    """What users write today to see the gates: an LSTM cell looped in Python."""

    def __init__(self, input_size: int, hidden: int):
        super().__init__(input_size, hidden)
        self.cell = nn.LSTMCell(input_size, hidden)
        self.optimizer = torch.optim.Adam([*self.cell.parameters(), *self.head.parameters()], lr=SETTING["lr"])

    def step(self, x, y) -> None:
        cell = self.cell
        h = x.new_zeros(x.shape[0], cell.hidden_size)   # (batch, hidden)
        c = x.new_zeros(x.shape[0], cell.hidden_size)
        self.gates = []
        for t in range(x.shape[1]):
            pre = x[:, t] @ cell.weight_ih.t() + cell.bias_ih + h @ cell.weight_hh.t() + cell.bias_hh
            i, f, g, o = pre.chunk(4, dim=1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = f * c + i * g
            h = o * torch.tanh(c)
            self.gates.append((i.detach(), f.detach(), o.detach()))
        loss = nn.functional.mse_loss(self.head(h), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run_benchmark(steps: int = 300, chunk: int = 10, probes: int = 7) -> dict:
    """Steps/s of the three loops over `steps` identical batches, and one probe's cost."""
    config = Config(**SETTING, steps=200_000)
    task = make_task(config.task, config.seq_len)
    g = torch.Generator().manual_seed(0)
    batches = [task.sample(config.batch_size, g) for _ in range(steps)]

    trainer = Trainer(config)                 # includes the step-0 probe: start-up, not timed
    feed = iter(batches)
    trainer.task.sample = lambda n, generator: next(feed)
    bare = _BareLoop(task.input_size, config.hidden)
    hand = _HandWrittenLoop(task.input_size, config.hidden)
    loops = {
        "bare": lambda part: [bare.step(x, y) for x, y in part],
        "trainer": lambda part: [trainer.step() for _ in part],
        "hand_written": lambda part: [hand.step(x, y) for x, y in part],
    }
    seconds = dict.fromkeys(loops, 0.0)
    order = list(loops)
    for start in range(0, steps, chunk):
        part = batches[start:start + chunk]
        for name in order:
            seconds[name] += _timed(lambda: loops[name](part))
        order = order[1:] + order[:1]

    # One probe against one bare step, alternately, median of each.
    probe_times, step_times = [], []
    x, y = batches[0]
    for _ in range(probes):
        step_times.append(_timed(lambda: bare.step(x, y)))
        probe_times.append(_timed(trainer.probe))
    rate = {name: steps / s for name, s in seconds.items()}
    probe, bare_step = statistics.median(probe_times), statistics.median(step_times)
    return {
        "setting": dict(SETTING, probe_every=config.probe_every, probe_count=config.probe_count,
                        eval_every=config.eval_every, steps=steps, chunk=chunk,
                        threads=torch.get_num_threads(), torch=torch.__version__),
        "bare_steps_per_s": rate["bare"],
        "trainer_steps_per_s": rate["trainer"],
        "hand_written_steps_per_s": rate["hand_written"],
        "trainer_over_bare": rate["trainer"] / rate["bare"],
        "hand_written_over_bare": rate["hand_written"] / rate["bare"],
        "probe_seconds": probe,
        "bare_step_seconds": bare_step,
        "probe_in_bare_steps": probe / bare_step,
        "goals": {"trainer_over_bare": ">= 0.9", "probe_in_bare_steps": "<= 2"},
    }
