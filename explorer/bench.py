"""The benchmark suite: what watching costs, every figure a ratio of loops measured side by side.

    python -m explorer bench [--device cpu|cuda] [--size small|all] [--short] [--out FILE]

This machine is shared and noisy, so loops never run one after the other: within a round they
take turns in chunks of a few steps, in rotating order, on the same batches, so a slow spell of
the machine hits them alike. Each figure is the median over rounds of that round's ratio. A
round is `probe_every` steps long (the Config's default, 100), so every round of the Trainer
pays for exactly one probe and one held-out eval, as a run does.

Figures (docs/PERFORMANCE.md says what limits each):
* trainer_over_bare[cell][size]: the Trainer (default instrumentation) ÷ the loop a PyTorch user
  writes (the same recurrent module and head, default Adam, nothing recorded);
* trainer_over_hand_written[size]: the Trainer ÷ an nn.LSTMCell looped in Python that keeps
  its gates (what users write today to see them);
* probe_in_bare_steps[cell][size]: one probe ÷ one bare step (median of alternating timings);
* peephole_over_lstm[size]: the peephole LSTM's Trainer ÷ the fused LSTM's Trainer;
* cifg_over_lstm[size]: the same for the CIFG LSTM;
* compiled_over_pytorch[cell][size]: the peephole or CIFG LSTM's Trainer with its compiled
  step (cells/native.py) ÷ the same with PyTorch's loop (CPU, where a C compiler built it);
* background_probe_over_inline[size]: an LSTM Trainer probing every PROBE_OFTEN steps in a
  thread of its own, on a CPU copy (Trainer(background_probe=True)) ÷ the same probing in line:
  above 1, the background probe is the better choice on that device;
* rss_20000_over_1000: a Trainer's resident memory after 20,000 steps ÷ after 1,000 (tiny
  model): the History's bound.
"""
from __future__ import annotations

import gc
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from .cells import native
from .config import Config
from .models import build_recurrent, resolve_device
from .tasks import make_task
from .trainer import Trainer

SIZES = {"small": dict(seq_len=100, hidden=64, batch_size=64),
         "medium": dict(seq_len=200, hidden=256, batch_size=128),
         "large": dict(seq_len=100, hidden=512, batch_size=256)}
CELLS = ("lstm", "gru", "rnn", "peephole")
BASE = dict(task="adding", optimizer="adam", lr=0.003, steps=200_000)
# --short (CI): everything small and quick; it must not crash, and its numbers mean little.
PROBE_OFTEN = 10       # steps between probes where the probe's placement is compared
SHORT = dict(sizes={"small": dict(seq_len=20, hidden=16, batch_size=8)}, round_steps=6, chunk=3, rounds=2,
             rss_steps=(50, 200))


class BareLoop:
    """The loop a PyTorch user writes: the same recurrent module (fused where PyTorch has one),
    a linear head, the default Adam; nothing recorded."""

    def __init__(self, config: Config, input_size: int, device: torch.device):
        torch.manual_seed(config.seed)
        self.rnn = build_recurrent(config, input_size).to(device)
        self.head = nn.Linear(config.hidden, 1).to(device)
        self.optimizer = torch.optim.Adam([*self.rnn.parameters(), *self.head.parameters()], lr=config.lr)

    def step(self, x, y) -> None:
        loss = nn.functional.mse_loss(self.head(self.rnn(x)[0][:, -1]), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


class HandWrittenLoop(BareLoop):
    """What users write today to see the gates: an LSTM cell looped in Python, gates kept."""

    def __init__(self, config: Config, input_size: int, device: torch.device):
        super().__init__(config, input_size, device)
        self.cell = nn.LSTMCell(input_size, config.hidden).to(device)
        self.optimizer = torch.optim.Adam([*self.cell.parameters(), *self.head.parameters()], lr=config.lr)

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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fed_trainer(config: Config, batches: list, background_probe: bool = False) -> Trainer:
    """A Trainer whose batches are `batches`, in turn (so it trains on what the other loops do)."""
    trainer = Trainer(config, background_probe=background_probe)   # its step-0 probe is start-up, not timed
    turns = itertools.cycle(batches)
    trainer.task.sample = lambda n, generator: next(turns)
    return trainer


def side_by_side(loops: dict, batches: list, device: torch.device, rounds: int, round_steps: int,
                 chunk: int) -> list[dict[str, float]]:
    """Seconds per loop in each round: the loops take turns, `chunk` steps each, rotating."""
    out, order = [], list(loops)
    for _ in range(rounds):
        seconds = dict.fromkeys(loops, 0.0)
        for start in range(0, round_steps, chunk):
            part = batches[start:min(start + chunk, round_steps)]
            for name in order:
                _sync(device)
                began = time.perf_counter()
                for x, y in part:
                    loops[name](x, y)
                _sync(device)
                seconds[name] += time.perf_counter() - began
            order = order[1:] + order[:1]
        out.append(seconds)
    return out


def _ratio(rounds: list[dict[str, float]], numerator: str, denominator: str) -> float:
    """Median over rounds of numerator's steps/s ÷ denominator's (the inverse of their times)."""
    return statistics.median(r[denominator] / r[numerator] for r in rounds)


def _probe_cost(trainer: Trainer, bare: BareLoop, batch, device: torch.device, times: int = 5) -> float:
    """One probe ÷ one bare step, timed alternately, median of each."""
    probe, step = [], []
    x, y = batch
    for _ in range(times):
        _sync(device)
        began = time.perf_counter()
        bare.step(x, y)
        _sync(device)
        step.append(time.perf_counter() - began)
        began = time.perf_counter()
        trainer.probe()
        _sync(device)
        probe.append(time.perf_counter() - began)
    return statistics.median(probe) / statistics.median(step)


def _batches(config: Config, count: int, device: torch.device) -> list:
    task = make_task(config.task, config.seq_len)
    g = torch.Generator().manual_seed(0)
    return [tuple(t.to(device) for t in task.sample(config.batch_size, g)) for _ in range(count)]


def cpu_name() -> str:
    """The CPU's model name (Linux), else what the platform says."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rss_mb() -> float | None:
    """This process's resident memory (Linux), in MB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_readings(steps: tuple[int, int], device: str) -> list[float | None]:
    """This process's RSS after steps[0] and after steps[1] steps of a tiny model."""
    trainer = Trainer(Config(task="adding", seq_len=10, hidden=8, batch_size=8, steps=steps[1], device=device))
    readings = []
    while trainer.steps_done < steps[1]:
        trainer.step()
        if trainer.steps_done in steps:
            gc.collect()
            readings.append(rss_mb())
    return readings


def history_bound(steps: tuple[int, int], device: str) -> dict:
    """RSS after steps[1] steps ÷ after steps[0], of a tiny model trained in a fresh process (so
    the figure is the History's growth, not what the rest of the suite left in this one)."""
    code = ("import json, sys; from explorer.bench import rss_readings; "
            "from explorer.memory import settle_for_training; settle_for_training(); "
            "print(json.dumps(rss_readings((int(sys.argv[1]), int(sys.argv[2])), sys.argv[3])))")
    done = subprocess.run([sys.executable, "-c", code, str(steps[0]), str(steps[1]), device],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"the RSS measurement failed: {done.stderr.strip().splitlines()[-1:]}")
    first, last = json.loads(done.stdout.strip().splitlines()[-1])
    return {"steps": list(steps), "rss_mb": [first, last],
            "ratio": last / first if first and last else None}


def run_suite(device: str = "cpu", size: str = "small", short: bool = False, cells: tuple = CELLS,
              rounds: int = 3, chunk: int = 10, progress=None) -> dict:
    """Every figure of the suite, as one JSON-ready dict."""
    dev, warning = resolve_device(device)
    if warning:
        raise ValueError(warning)
    sizes = dict(SIZES) if size == "all" else {"small": SIZES["small"]}
    rss_steps, round_steps = (1000, 20_000), Config().probe_every
    if short:
        sizes, round_steps, chunk, rounds, rss_steps = (SHORT[k] for k in
                                                        ("sizes", "round_steps", "chunk", "rounds", "rss_steps"))
    say = progress or (lambda text: None)
    result: dict = {"trainer_over_bare": {}, "probe_in_bare_steps": {}, "trainer_over_hand_written": {},
                    "peephole_over_lstm": {}, "cifg_over_lstm": {}, "compiled_over_pytorch": {},
                    "background_probe_over_inline": {},
                    "steps_per_second": {}}
    for size_name, shape in sizes.items():
        trainers = {}
        for cell in cells:
            say(f"{cell}, {size_name}: Trainer and bare loop")
            config = Config(**BASE, **shape, cell=cell, device=device,
                            **({"probe_every": round_steps, "eval_every": round_steps} if short else {}))
            batches = _batches(config, round_steps, dev)
            trainer = _fed_trainer(config, batches)
            bare = BareLoop(config, trainer.task.input_size, dev)
            loops = {"bare": bare.step, "trainer": lambda x, y, t=trainer: t.step()}
            if cell == "lstm":
                hand = HandWrittenLoop(config, trainer.task.input_size, dev)
                loops["hand_written"] = hand.step
            timed = side_by_side(loops, batches, dev, rounds, round_steps, chunk)
            result["trainer_over_bare"].setdefault(cell, {})[size_name] = _ratio(timed, "trainer", "bare")
            result["steps_per_second"].setdefault(cell, {})[size_name] = {
                name: round_steps * len(timed) / sum(r[name] for r in timed) for name in loops}
            if cell == "lstm":
                result["trainer_over_hand_written"][size_name] = _ratio(timed, "trainer", "hand_written")
            result["probe_in_bare_steps"].setdefault(cell, {})[size_name] = _probe_cost(trainer, bare, batches[0], dev)
            trainers[cell] = (trainer, batches)
        if "lstm" in trainers and "peephole" in trainers:
            say(f"the peephole and CIFG LSTMs against the LSTM, {size_name}")
            (lstm, batches), (peephole, _) = trainers["lstm"], trainers["peephole"]
            unfused = {"peephole": peephole, "cifg": _fed_trainer(replace(peephole.config, cell="cifg"), batches)}
            timed = side_by_side({"lstm": lambda x, y: lstm.step(),
                                  **{name: (lambda x, y, t=t: t.step()) for name, t in unfused.items()}},
                                 batches, dev, rounds, round_steps, chunk)
            for name in unfused:
                result[f"{name}_over_lstm"][size_name] = _ratio(timed, name, "lstm")
            if native.usable(next(peephole.model.parameters())):
                for name, trainer in unfused.items():
                    say(f"{name}, the compiled step against PyTorch's loop, {size_name}")
                    plain = _fed_trainer(trainer.config, batches)

                    def plain_step(x, y, plain=plain):
                        with native.pytorch_loop():
                            plain.step()
                    timed = side_by_side({"compiled": lambda x, y, t=trainer: t.step(), "pytorch": plain_step},
                                         batches, dev, rounds, round_steps, chunk)
                    result["compiled_over_pytorch"].setdefault(name, {})[size_name] = _ratio(
                        timed, "compiled", "pytorch")
        if "lstm" in trainers:
            say(f"lstm, {size_name}: the probe in a thread against in line")
            _, batches = trainers["lstm"]
            often = Config(**BASE, **shape, cell="lstm", device=device, probe_every=PROBE_OFTEN)
            inline, background = _fed_trainer(often, batches), _fed_trainer(often, batches, background_probe=True)

            def background_step(x, y):
                background.step()
                if background.steps_done % round_steps == 0:
                    background.wait_for_probe()          # a round's probes are in its time
            timed = side_by_side({"inline": lambda x, y: inline.step(), "background": background_step},
                                 batches, dev, rounds, round_steps, chunk)
            background.wait_for_probe()
            result["background_probe_over_inline"][size_name] = _ratio(timed, "background", "inline")
        del trainers
    say(f"RSS after {rss_steps[1]} steps against {rss_steps[0]}")
    result["rss_history_bound"] = history_bound(rss_steps, device)
    result["setting"] = {
        "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
        "cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "sizes": {name: sizes[name] for name in sizes}, "task": BASE["task"], "optimizer": BASE["optimizer"],
        "rounds": rounds, "round_steps": round_steps, "chunk": chunk, "short": short,
        "unfused_step": "compiled" if native.library() is not None else "pytorch",   # peephole, CIFG
    }
    result["targets"] = {"cpu": {"trainer_over_bare": ">= 0.95", "probe_in_bare_steps": "<= 1",
                                 "peephole_over_lstm": ">= 0.5"},
                         "cuda": {"trainer_over_bare": ">= 0.9", "probe_in_bare_steps": "<= 2 (hidden 64)"}}
    return result
