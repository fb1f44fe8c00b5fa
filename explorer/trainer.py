"""Trainer: trains a config's model one optimiser step at a time, recording everything.

The Trainer knows nothing about who watches it. It writes into a thread-safe History;
explorer.run drives it on a thread for a UI.
"""
from __future__ import annotations

import copy
import time
from functools import cached_property

import torch
from torch import Tensor, nn

from .budget import EVAL_SIZE
from .config import Config
from .history import MAX_TRACES, History
from .models import SequenceModel, resolve_device
from .tasks import Task, task_for
from .trace import Trace, trace


def _optimizer(config: Config, params) -> torch.optim.Optimizer:
    wd = config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=wd)
    if config.optimizer == "momentum":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=wd)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=wd)


def _norms(tensors: list[Tensor]) -> Tensor:
    return torch.stack([torch.linalg.vector_norm(t) for t in tensors])        # (tensors,)


class Trainer:
    """Trains config's model on config's task, one `step()` at a time."""

    def __init__(self, config: Config, task: Task | None = None, max_traces: int = MAX_TRACES,
                 record_start: bool = True):
        self.config = config
        self.device, self.device_warning = resolve_device(config.device)
        self.task = task if task is not None else task_for(config)
        torch.manual_seed(config.seed)
        own = self.task.own_model()
        model = own if own is not None else SequenceModel(config, self.task.input_size, self.task.output_size,
                                                          self.task.output_mode)
        self.model = model.to(self.device)
        self.optimizer = _optimizer(config, self.model.parameters())
        self.param_names = [n for n, _ in self.model.named_parameters()]
        self.history = History(self.param_names, max_traces=max_traces)
        self.batch_generator = torch.Generator().manual_seed(config.seed)
        # Probe and eval sequences are held out and fixed for the whole run, so traces at
        # different steps show the same sequences.
        eval_x, eval_y = self.task.heldout(max(EVAL_SIZE, config.probe_count), config.seed)
        self.eval_set = (eval_x.to(self.device), eval_y.to(self.device))
        self.probe_set = (self.eval_set[0][:config.probe_count], self.eval_set[1][:config.probe_count])
        self.steps_done = 0
        self.diverged = False
        self.divergence_message = ""
        # (step, a copy of the model as of that step's probe): what a run's followers trace their
        # own sequences with, so they never wait for, or hold up, the training thread.
        self.probe_copy: tuple[int, nn.Module] | None = None
        if record_start:              # (a run restored from the store has its own record)
            self.probe()              # the untrained network's gates, before any step

    # -- training ---------------------------------------------------------------------
    def step(self) -> dict | None:
        """One optimiser step. Returns its record, or None when the run has diverged.

        A non-finite loss or gradient stops the run without applying the update, and
        weights made non-finite by an update are restored: the model keeps its last
        finite state.
        """
        if self.diverged:
            return None
        if not self.task.trainable:
            raise ValueError(f"the {self.task.name} task is looked at, not trained")
        started = time.perf_counter()
        model, params = self.model, list(self.model.parameters())
        model.train()
        x, y = self.task.sample(self.config.batch_size, self.batch_generator)
        x, y = x.to(self.device), y.to(self.device)
        output = model(x)
        task_loss = self.task.loss(output, y)
        loss = task_loss
        if self.config.l1 > 0:
            loss = loss + self.config.l1 * sum(p.abs().sum() for p in params)
        self.optimizer.zero_grad()
        loss.backward()
        param_grad_norm = _norms([p.grad for p in params])                    # (params,)
        # The norm of the per-parameter norms is the global norm (get_total_norm's own
        # formula), without measuring every gradient a second time.
        grad_norm = torch.linalg.vector_norm(param_grad_norm)
        if not (torch.isfinite(task_loss) and torch.isfinite(grad_norm)):
            return self._diverge(f"the loss or its gradient became non-finite at step {self.steps_done + 1}")
        clipped = grad_norm
        if self.config.clip > 0:
            # Scales by min(1, clip / norm) as a tensor, so clipping adds no branch on a device value.
            torch.nn.utils.clip_grads_with_norm_(params, self.config.clip, grad_norm)
            clipped = grad_norm.clamp(max=self.config.clip)
        before = [p.detach().clone() for p in params]
        self.optimizer.step()
        weights = [p.detach() for p in params]
        update = _norms([w - b for w, b in zip(weights, before)])             # (params,)
        weight = _norms(weights)                                               # (params,)
        if not torch.isfinite(weight).all():
            with torch.no_grad():
                for p, b in zip(params, before):
                    p.copy_(b)
            return self._diverge(f"the weights became non-finite at step {self.steps_done + 1}")
        record = {
            "loss": task_loss.item(), "metric": self.task.metric(output.detach(), y),
            "grad_norm": grad_norm.item(), "grad_norm_clipped": clipped.item(),
            "param_grad_norm": param_grad_norm.cpu().numpy(),
            "update_ratio": (update / weight.clamp_min(1e-12)).cpu().numpy(),
        }
        self.steps_done += 1
        try:
            if self.steps_done % self.config.eval_every == 0:
                self.evaluate_and_record()
            if self.steps_done % self.config.probe_every == 0:
                self.probe()
        finally:
            # The update is made: it is recorded even when its eval or probe fails (out of
            # memory, say), so a run saved after the failure is a whole step.
            # Wall time of the whole step, its eval and probe included: what steps/s means.
            record["seconds"] = time.perf_counter() - started
            self.history.record_step(self.steps_done, record)
        return record

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
        self.keep_probe_copy()
        return tr

    def keep_probe_copy(self) -> None:
        """Copy the model as it stands into `probe_copy` (call it where it is not stepping). A
        copy costs far less than the probe's trace; frozen and in eval mode, it is only traced."""
        model = copy.deepcopy(self.model).eval().requires_grad_(False)
        for p in model.parameters():
            p.grad = None
        self.probe_copy = (self.steps_done, model)

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
