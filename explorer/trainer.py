"""Trainer: trains a config's model one optimiser step at a time, recording everything.

The Trainer knows nothing about who watches it. It writes into a thread-safe History;
explorer.run drives it on a thread for a UI.
"""
from __future__ import annotations

import copy
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn

from . import threads
from .budget import EVAL_SIZE, HELDOUT_SIZE
from .config import Config
from .history import MAX_TRACES, RECORD_BLOCK, History, pack_step
from .models import SequenceModel, resolve_device
from .tasks import Task, task_for
from .trace import Trace, trace


def _optimizer(config: Config, params, device: torch.device) -> torch.optim.Optimizer:
    """The config's optimiser, as one fused kernel where PyTorch has one for the device. Fused,
    its step counters live on the device, so a step never reads one back to the host (the
    default Adam reads each parameter's counter with .item()); measured on this CPU, the fused
    Adam's step takes 0.11 ms against 0.39 ms. RMSprop has no fused kernel: on a GPU it keeps
    its counters there (capturable), on the CPU they are host numbers anyway."""
    wd, fused = config.weight_decay, device.type in ("cpu", "cuda")
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=wd, fused=fused or None)
    if config.optimizer == "momentum":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=wd, fused=fused or None)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, weight_decay=wd, capturable=device.type == "cuda")
    return torch.optim.Adam(params, lr=config.lr, weight_decay=wd, fused=fused or None)


def _norms(tensors: list[Tensor]) -> Tensor:
    # One multi-tensor kernel on a GPU (a loop of norms on the CPU, as before).
    return torch.stack(torch._foreach_norm(tensors))                          # (tensors,)


@dataclass(frozen=True)
class FinalEval:
    """A run's held-out loss and metric: its weights after `step` steps on the task's held-out
    set of up to HELDOUT_SIZE sequences (`sequences`: fewer where the task has fewer, as the
    digits' 360). What every report of the run gives as its held-out numbers; the periodic
    evals on EVAL_SIZE sequences are its learning curve."""

    step: int
    loss: float
    metric: float
    sequences: int


class Trainer:
    """Trains config's model on config's task, one `step()` at a time."""

    def __init__(self, config: Config, task: Task | None = None, max_traces: int = MAX_TRACES,
                 record_start: bool = True, background_probe: bool = False):
        threads.settle()         # one torch thread per run, unless someone chose (explorer/threads.py)
        self.config = config
        # Probes traced on a CPU copy of the model in a thread of their own (probe()), so that
        # a GPU keeps training meanwhile. Off by default: on the CPU the two share the cores,
        # and on a GPU it is to be measured against the in-line probe (docs/PERFORMANCE.md).
        self.background_probe = background_probe
        self._probing: Future | None = None
        self._probe_set_cpu: tuple[Tensor, Tensor] | None = None
        self.device, self.device_warning = resolve_device(config.device)
        self.task = task if task is not None else task_for(config)
        torch.manual_seed(config.seed)
        own = self.task.own_model()
        model = own if own is not None else SequenceModel(config, self.task.input_size, self.task.output_size,
                                                          self.task.output_mode)
        self.model = model.to(self.device)
        self.optimizer = _optimizer(config, self.model.parameters(), self.device)
        self.param_names = [n for n, _ in self.model.named_parameters()]
        self.history = History(self.param_names, max_traces=max_traces)
        self.batch_generator = torch.Generator().manual_seed(config.seed)
        # Probe and eval sequences are held out and fixed for the whole run, so traces at
        # different steps show the same sequences.
        eval_x, eval_y = self.task.heldout(max(EVAL_SIZE, config.probe_count), config.seed)
        self.eval_set = (eval_x.to(self.device), eval_y.to(self.device))
        self.probe_set = (self.eval_set[0][:config.probe_count], self.eval_set[1][:config.probe_count])
        self.steps_done = 0
        self._params = list(self.model.parameters())
        # What step() copies the weights into before each update: the update's norm, and the
        # weights it puts back when the update went wrong.
        self._before = [torch.empty_like(p) for p in self._params]
        self._halted = torch.zeros((), dtype=torch.bool, device=self.device)   # () bool, on the device
        self.diverged = False
        self.divergence_message = ""
        self._final: FinalEval | None = None     # final_eval()'s, for the step it was made at
        # (step, a copy of the model as of that step's probe): what a run's followers trace their
        # own sequences with, so they never wait for, or hold up, the training thread.
        self.probe_copy: tuple[int, nn.Module] | None = None
        if record_start:              # (a run restored from the store has its own record)
            self.probe()              # the untrained network's gates, before any step

    # -- training ---------------------------------------------------------------------
    def step(self) -> dict | None:
        """One optimiser step. Returns its record, or None when the run has diverged.

        The record's values stay on the device (0-d tensors, and (params,) for the two
        per-parameter norms): reading one, with float() say, waits for the device. The
        History gets the records in blocks of RECORD_BLOCK steps (and whenever it is read),
        so K-1 of every K steps make no host synchronisation on a GPU.

        A non-finite loss or gradient, or weights an update made non-finite, is flagged on the
        device, and that update and every later one are undone on the device (the weights are
        put back from their copy before the update). The host learns it at the block's end: a
        step at or within RECORD_BLOCK steps of the divergence returns None, the run stops
        naming the step, and the model keeps its last finite weights.
        """
        # (a reader of the History may have committed the block, and found it gone wrong)
        if self.diverged or (self.history.halted is not None and not self.flush()):
            return None
        if not self.task.trainable:
            raise ValueError(f"the {self.task.name} task is looked at, not trained")
        started = time.perf_counter()
        model, params = self.model, self._params
        model.train()
        x, y = self.task.sample(self.config.batch_size, self.batch_generator)
        # (pageable host memory: non_blocking only skips the wait, the copy is still staged)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        output = model(x)
        task_loss = self.task.loss(output, y)
        loss = task_loss
        if self.config.l1 > 0:
            loss = loss + self.config.l1 * sum(p.abs().sum() for p in params)
        self.optimizer.zero_grad()
        loss.backward()
        grads = [p.grad for p in params]
        param_grad_norm = _norms(grads)                                        # (params,)
        # The norm of the per-parameter norms is the global norm (get_total_norm's own
        # formula), without measuring every gradient a second time.
        grad_norm = torch.linalg.vector_norm(param_grad_norm)
        grads_finite = torch.isfinite(task_loss) & torch.isfinite(grad_norm)   # () bool, on the device
        clipped = grad_norm
        if self.config.clip > 0:
            # Scales by min(1, clip / norm) as a tensor, so clipping adds no branch on a device value.
            torch.nn.utils.clip_grads_with_norm_(params, self.config.clip, grad_norm)
            clipped = grad_norm.clamp(max=self.config.clip)
        before = self._before
        with torch.no_grad():
            torch._foreach_copy_(before, params)     # one fused copy into kept buffers, not a clone
        self.optimizer.step()
        with torch.no_grad():
            update = _norms(torch._foreach_sub(params, before))              # (params,)
            weight = _norms(params)                                           # (params,)
            weights_finite = torch.isfinite(weight).all()
            # Sticky: once a step has gone wrong, this one and every later update of the block
            # are undone, so the weights stay the last finite ones until the host reads the flag.
            self._halted = self._halted | ~(grads_finite & weights_finite)
            for p, b in zip(params, before):
                torch.where(self._halted, b, p, out=p)
        record = {"loss": task_loss.detach(), "metric": self.task.metric_tensor(output.detach(), y),
                  "grad_norm": grad_norm, "grad_norm_clipped": clipped,
                  "param_grad_norm": param_grad_norm, "update_ratio": update / weight.clamp_min(1e-12)}
        self.steps_done += 1
        self.history.stage(self.steps_done, pack_step(record, grads_finite, weights_finite),
                           time.perf_counter() - started)
        due_eval, due_probe = self.measures_at(self.steps_done)
        if due_eval or due_probe or self.steps_done % RECORD_BLOCK == 0 or self.finished:
            if not self.flush():
                return None
        if due_eval or due_probe:
            started = time.perf_counter()
            try:
                if due_eval:
                    self.evaluate_and_record()
                if due_probe:
                    self.probe()
            finally:
                # The update is made: its record stands even when its eval or probe fails (out of
                # memory, say), so a run saved after the failure is a whole step. The step's
                # seconds include its eval and probe: what steps/s means.
                self.history.add_seconds(self.steps_done, time.perf_counter() - started)
        if self.finished:
            self.wait_for_probe()     # a finished run's history is whole
        return record

    def measures_at(self, step: int) -> tuple[bool, bool]:
        """Whether step `step` ends with (a held-out eval, a probe)."""
        return step % self.config.eval_every == 0, step % self.config.probe_every == 0

    def flush(self) -> bool:
        """Move the staged step records to the History (one transfer from the device), and learn
        whether the run diverged among them. False when it has diverged (now or before)."""
        if self.diverged:
            return False
        halted = self.history.commit()
        if halted is None:
            return True
        step, weights_went = halted
        self.steps_done = step - 1          # the steps from the bad one on were undone
        what = "the weights became non-finite" if weights_went else "the loss or its gradient became non-finite"
        self._diverge(f"{what} at step {step}")
        return False

    def free_memory(self) -> None:
        """Let go of what a failed step left: the gradients, and on a GPU its cached blocks."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _diverge(self, why: str) -> None:
        self.optimizer.zero_grad()
        self.diverged = True
        self.divergence_message = (f"Training diverged: {why}. The model keeps its last finite weights. "
                                   "Try a lower learning rate or gradient clipping.")
        return None

    # -- measuring --------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, x: Tensor | None = None, y: Tensor | None = None) -> tuple[float, float]:
        """Held-out (loss, metric) on the run's eval set, or on the given sequences, EVAL_SIZE
        at a time: the memory budget counts one forward pass over that many."""
        if x is None:
            x, y = self.eval_set
        self.model.eval()
        loss = metric = 0.0
        for start in range(0, len(x), EVAL_SIZE):
            # Both are means over equally long sequences: weighted by each part's share.
            xs, ys = x[start:start + EVAL_SIZE].to(self.device), y[start:start + EVAL_SIZE].to(self.device)
            output = self.model(xs)
            loss += self.task.loss(output, ys).item() * len(xs)
            metric += self.task.metric(output, ys) * len(xs)
        return loss / len(x), metric / len(x)

    def evaluate_and_record(self) -> None:
        self.history.record_eval(self.steps_done, *self.evaluate())

    def final_eval(self, measure: bool = True) -> FinalEval | None:
        """The run's held-out loss and metric as it stands (FinalEval), the one set of numbers
        `train` prints, the store keeps and sweeps report; None for a model that is looked at,
        not trained. Made once per step: within a trainer the weights are a function of the
        step (a divergence puts back the weights of the step it goes back to), so the save
        after `train`'s report, or a sweep's record after its row, reuses it. Call it where the
        trainer is not stepping. With measure False it only looks: the numbers if they were made
        at this step, else None (a save while the run trains: see Run._save_now)."""
        if not self.task.trainable:
            return None
        self.flush()                   # (steps_done names the weights only once the block is read)
        if not measure:
            return self._final if self._final is not None and self._final.step == self.steps_done else None
        if self._final is None or self._final.step != self.steps_done:
            # The same sequences for every report, and the same for every run of this seed.
            x, y = self.task.heldout(HELDOUT_SIZE, self.config.seed)     # (n, T, inputs), n <= HELDOUT_SIZE
            self._final = FinalEval(self.steps_done, *self.evaluate(x, y), len(x))
        return self._final

    def trace(self, x: Tensor, y: Tensor | None = None) -> Trace:
        """Trace the model on any sequences, the loss being the task's, summed over them."""
        return self.trace_model(self.model, x, y)

    def trace_model(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> Trace:
        """Trace `model`, this run's or a copy of it (on any device), as trace() does."""
        device = next(model.parameters()).device

        def loss_fn(hidden, target):
            return self.task.loss(model.readout(hidden), target, reduction="sum")

        y = y.to(device) if y is not None else None
        return trace(model.rnn, x.to(device), y, loss_fn if y is not None else None)

    def probe(self) -> Trace | None:
        """Trace the fixed probe sequences now and keep the trace in the history.

        With `background_probe`, the trace is made from a CPU copy of the model, taken now, in a
        thread of its own, and reaches the history (and `probe_copy`) when it is done: this
        returns None at once. One probe runs at a time; `wait_for_probe()` waits for it, and
        raises what it raised."""
        if self.background_probe:
            self.wait_for_probe()
            if self._probe_set_cpu is None:
                self._probe_set_cpu = tuple(t.cpu() for t in self.probe_set)
            step, model = self.steps_done, self._frozen_copy(torch.device("cpu"))
            self._probing = _probe_thread().submit(self._probe_copy, step, model)
            return None
        tr = self.trace(*self.probe_set)
        self.history.record_trace(self.steps_done, tr)
        self.keep_probe_copy()
        return tr

    def _probe_copy(self, step: int, model: nn.Module) -> Trace:
        """(In the probe thread.) Trace a copy of the model, as probe() does the model."""
        tr = self.trace_model(model, *self._probe_set_cpu)
        self.history.record_trace(step, tr)
        self.probe_copy = (step, model)
        return tr

    def wait_for_probe(self) -> None:
        """Wait for a probe traced in the background, if one is; raise its error, if it failed."""
        probing, self._probing = self._probing, None
        if probing is not None:
            probing.result()

    def keep_probe_copy(self) -> None:
        """Copy the model as it stands into `probe_copy` (call it where it is not stepping). A
        copy costs far less than the probe's trace; frozen and in eval mode, it is only traced."""
        self.probe_copy = (self.steps_done, self._frozen_copy())

    def _frozen_copy(self, device: torch.device | None = None) -> nn.Module:
        model = copy.deepcopy(self.model).eval().requires_grad_(False)
        for p in model.parameters():
            p.grad = None
        return model if device is None else model.to(device)

    @cached_property
    def probe_labels(self) -> list[str]:
        """Each probe sequence in words (Task.describe_sequence), made once: the pickers of
        every page that shows the run list them at every refresh."""
        x, y = self.probe_set
        return [self.task.describe_sequence(x[b].cpu(), y[b].cpu()) for b in range(len(x))]

    @property
    def finished(self) -> bool:
        return self.steps_done >= self.config.steps or not self.task.trainable

    def retrace(self, config: Config) -> None:
        """Your model with another traced loss (config differs from the run's in trace_loss
        only): the probe is traced again. ValueError, and nothing changed, if it does not fit."""
        if not hasattr(self.task, "set_loss"):
            raise ValueError("only your own model's traced loss can be changed")
        self.task.set_loss(config.trace_loss)
        self.config = config
        self.__dict__.pop("probe_labels", None)     # described again, under the new loss
        self.history = History(self.param_names, max_traces=self.history.max_traces)
        self.probe()
        self.wait_for_probe()


_PROBES: ThreadPoolExecutor | None = None
_PROBES_LOCK = threading.Lock()


def _probe_thread() -> ThreadPoolExecutor:
    """The process's one probe thread (Trainer.probe with background_probe), made when first
    needed: probes are a few per second at most, and one at a time keeps the cores for training."""
    global _PROBES
    with _PROBES_LOCK:
        if _PROBES is None:
            _PROBES = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe")
        return _PROBES
