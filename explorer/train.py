"""Trainer: one optimiser step at a time, recording everything; Run: a Trainer on a thread.

The Trainer knows nothing about who watches it. It writes into a thread-safe History;
a UI reads `Run.snapshot()`, which is a copy, and never calls into the worker thread.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .config import Config
from .history import History, HistoryView
from .models import SequenceModel, resolve_device
from .tasks import Task, task_for
from .trace import Trace, trace

EVAL_SIZE = 256   # held-out sequences behind the periodic eval_loss


def _optimizer(config: Config, params) -> torch.optim.Optimizer:
    wd = config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=wd)
    if config.optimizer == "momentum":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=wd)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=wd)


# A run in one of these states never trains again (Reset makes a new one).
ENDED = ("finished", "diverged", "stopped", "error")

class Trainer:
    """Trains config's model on config's task, one `step()` at a time."""

    def __init__(self, config: Config, task: Task | None = None, max_traces: int = 48):
        self.config = config
        self.device, self.device_warning = resolve_device(config.device)
        self.task = task if task is not None else task_for(config)
        torch.manual_seed(config.seed)
        self.model = SequenceModel(config, self.task.input_size, self.task.output_size,
                                   self.task.output_mode).to(self.device)
        self.optimizer = _optimizer(config, self.model.parameters())
        self.param_names = [n for n, _ in self.model.named_parameters()]
        self.history = History(self.param_names, max_traces=max_traces)
        self._batches = torch.Generator().manual_seed(config.seed)
        # Probe and eval sequences are held out and fixed for the whole run, so traces at
        # different steps show the same sequences.
        eval_x, eval_y = self.task.heldout(max(EVAL_SIZE, config.probe_count), config.seed)
        self.eval_set = (eval_x.to(self.device), eval_y.to(self.device))
        self.probe_set = (self.eval_set[0][:config.probe_count], self.eval_set[1][:config.probe_count])
        self.steps_done = 0
        self.diverged = False
        self.divergence_message = ""
        self.probe()                  # the untrained network's gates, before any step

    # -- training ---------------------------------------------------------------------
    def step(self) -> dict | None:
        """One optimiser step. Returns its record, or None when the run has diverged.

        A non-finite loss or gradient stops the run without applying the update, and
        weights made non-finite by an update are restored: the model keeps its last
        finite state.
        """
        if self.diverged:
            return None
        started = time.perf_counter()
        model, params = self.model, list(self.model.parameters())
        model.train()
        x, y = self.task.sample(self.config.batch_size, self._batches)
        x, y = x.to(self.device), y.to(self.device)
        output = model(x)
        task_loss = self.task.loss(output, y)
        loss = task_loss
        if self.config.l1 > 0:
            loss = loss + self.config.l1 * sum(p.abs().sum() for p in params)
        self.optimizer.zero_grad()
        loss.backward()
        grads = [p.grad for p in params]
        param_grad_norm = torch.stack(torch._foreach_norm(grads))             # (params,)
        grad_norm = param_grad_norm.norm()
        if not (torch.isfinite(task_loss) and torch.isfinite(grad_norm)):
            return self._diverge(f"the loss or its gradient became non-finite at step {self.steps_done + 1}")
        clipped = grad_norm
        if self.config.clip > 0 and grad_norm > self.config.clip:
            torch._foreach_mul_(grads, self.config.clip / (grad_norm + 1e-6))
            clipped = grad_norm.new_tensor(self.config.clip)
        before = [p.detach().clone() for p in params]
        self.optimizer.step()
        update = torch.stack(torch._foreach_norm(torch._foreach_sub([p.detach() for p in params], before)))
        weight = torch.stack(torch._foreach_norm([p.detach() for p in params]))
        if not torch.isfinite(weight).all():
            with torch.no_grad():
                torch._foreach_copy_(params, before)
            return self._diverge(f"the weights became non-finite at step {self.steps_done + 1}")
        metric = self.task.metric(output.detach(), y)
        self.steps_done += 1
        if self.steps_done % self.config.eval_every == 0:
            self.evaluate_and_record()
        if self.steps_done % self.config.probe_every == 0:
            self.probe()
        record = {
            "loss": task_loss.item(), "metric": metric, "grad_norm": grad_norm.item(),
            "grad_norm_clipped": clipped.item(),
            "param_grad_norm": param_grad_norm.cpu().numpy(),
            "update_ratio": (update / weight.clamp_min(1e-12)).cpu().numpy(),
            # Wall time of the whole step, its eval and probe included: what steps/s means.
            "seconds": time.perf_counter() - started,
        }
        self.history.record_step(self.steps_done, record)
        return record

    def _diverge(self, why: str) -> None:
        self.optimizer.zero_grad()
        self.diverged = True
        self.divergence_message = (f"Training diverged: {why}. The model keeps its last finite weights. "
                                   "Try a lower learning rate or gradient clipping.")
        return None

    # -- measuring --------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, x: Tensor | None = None, y: Tensor | None = None) -> tuple[float, float]:
        """Held-out (loss, metric) on the run's eval set, or on the given sequences."""
        if x is None:
            x, y = self.eval_set
        self.model.eval()
        output = self.model(x.to(self.device))
        y = y.to(self.device)
        return self.task.loss(output, y).item(), self.task.metric(output, y)

    def evaluate_and_record(self) -> None:
        self.history.record_eval(self.steps_done, *self.evaluate())

    def trace(self, x: Tensor, y: Tensor | None = None) -> Trace:
        """Trace the model on any sequences, the loss being the task's, summed over them."""
        model = self.model

        def loss_fn(hidden, target):
            return self.task.loss(model.readout(hidden), target, reduction="sum")

        y = y.to(self.device) if y is not None else None
        return trace(model.rnn, x.to(self.device), y, loss_fn if y is not None else None)

    def probe(self) -> Trace:
        """Trace the fixed probe sequences now and keep the trace in the history."""
        tr = self.trace(*self.probe_set)
        self.history.record_trace(self.steps_done, tr)
        return tr

    @property
    def finished(self) -> bool:
        return self.steps_done >= self.config.steps


@dataclass
class Snapshot:
    """A copy of a Run's state for a UI; nothing in it changes after it is taken."""

    status: str                 # idle, running, paused, finished, diverged, stopped, error
    step: int
    total_steps: int
    steps_per_second: float
    message: str
    history: HistoryView
    latest: dict = field(default_factory=dict)


class Run:
    """A Trainer on its own thread, driven by start/pause/resume/step(n)/stop.

    The thread ends when training finishes or diverges, on stop(), or when nobody has
    called snapshot() for `idle_timeout` seconds (a closed browser tab); in that last case
    the run is paused, and start() or resume() starts a new thread that carries on.
    """

    def __init__(self, config: Config, idle_timeout: float = 300.0, trainer: Trainer | None = None):
        self.trainer = trainer if trainer is not None else Trainer(config)
        self.idle_timeout = idle_timeout
        self._cond = threading.Condition()
        self._status = "idle"
        self._message = self.trainer.device_warning or ""
        self._pending = 0            # steps still to do before pausing
        self._free = False           # run until paused, finished or stopped
        self._stepping = False       # a step is in flight
        self._stop = False
        self._last_poll = time.monotonic()
        self._thread: threading.Thread | None = None
        # Held by the worker for each step, so a trace the UI asks for never reads
        # weights halfway through an optimiser update.
        self._model_lock = threading.Lock()

    # -- controls (any thread) ----------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            self._free = True
            self._ensure_thread()

    def pause(self) -> None:
        with self._cond:
            self._free = False
            self._pending = 0
            if self._status == "running":
                self._status = "paused"
            self._cond.notify_all()

    def resume(self) -> None:
        self.start()

    def step(self, n: int = 1) -> None:
        """Do exactly n more steps, then pause."""
        if n < 1:
            raise ValueError("step(n) needs n >= 1")
        with self._cond:
            self._free = False
            self._pending += n
            self._ensure_thread()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self.join()

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wait_until_idle(self, timeout: float = 60.0) -> bool:
        """Block until the thread has nothing to do (paused, finished, stopped...)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy() and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return not self._busy()

    def snapshot(self) -> Snapshot:
        with self._cond:
            self._last_poll = time.monotonic()
            status, message = self._status, self._message
        view = self.trainer.history.view()
        recent = view.steps["seconds"][-50:]
        latest = {k: float(v[-1]) for k, v in view.steps.items() if v.ndim == 1 and len(v)}
        latest.update({k: float(v[-1]) for k, v in view.evals.items() if len(v)})
        return Snapshot(status=status, step=int(view.steps["step"][-1]) if len(view.steps["step"]) else 0,
                        total_steps=self.trainer.config.steps,
                        steps_per_second=float(len(recent) / recent.sum()) if len(recent) else 0.0,
                        message=message, history=view, latest=latest)

    def trace(self, x: Tensor, y: Tensor | None = None) -> Trace:
        """Trace the current model on any sequences (e.g. built by hand), between steps."""
        with self._model_lock:
            return self.trainer.trace(x, y)

    def inspect(self, fn):
        """Call fn(model) between steps, e.g. to read weights that are not half-updated."""
        with self._model_lock:
            return fn(self.trainer.model)

    # -- the worker ----------------------------------------------------------------------
    def _busy(self) -> bool:
        alive = self._thread is not None and self._thread.is_alive()
        return alive and (self._stepping or (not self._stop and (self._free or self._pending > 0)))

    def _ensure_thread(self) -> None:
        if self._status in ENDED:
            return
        self._status = "running"
        self._message = self.trainer.device_warning or ""   # an idle pause's note no longer holds
        self._last_poll = time.monotonic()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="gate-explorer-run", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _work(self) -> None:
        trainer = self.trainer
        try:
            while True:
                with self._cond:
                    while not (self._stop or self._free or self._pending > 0 or self._idle()):
                        self._status = "paused" if trainer.steps_done else "idle"
                        self._cond.notify_all()
                        self._cond.wait(0.25)
                    if self._stop:
                        self._end("stopped", "Stopped.")
                        return
                    if self._idle():
                        # A closed tab: free the thread, but keep the run resumable, since
                        # a paused lesson may simply have been left alone for a while.
                        self._end("paused", f"Paused: nobody looked at this run for {self.idle_timeout:g} s. "
                                            "Resume continues it.")
                        return
                    if trainer.finished:
                        self._end("finished", f"Finished {trainer.steps_done} steps.")
                        return
                    self._status = "running"
                    self._stepping = True
                with self._model_lock:
                    record = trainer.step()
                with self._cond:
                    self._stepping = False
                    if record is None:
                        self._end("diverged", trainer.divergence_message)
                        return
                    if self._pending > 0:
                        self._pending -= 1
                        if self._pending == 0 and not self._free:
                            self._status = "paused"
                    self._cond.notify_all()
        except Exception as error:  # noqa: BLE001 - a UI must see why its run stopped
            with self._cond:
                self._stepping = False
                self._end("error", f"Training stopped with an error: {error}")

    def _idle(self) -> bool:
        return time.monotonic() - self._last_poll > self.idle_timeout

    def _end(self, status: str, message: str) -> None:
        self._status, self._message = status, message
        self._free, self._pending = False, 0
        self._cond.notify_all()

