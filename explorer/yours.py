"""Your model as a run: a module trained elsewhere (explorer.loading) and the sequences to
look at it on, shown by every page exactly as a trained run, and saved like one with no
training history.

`ModelTask` stands where a task stands in a training run: its sequences are the probe set,
its loss is the one whose gradient is traced (the top layer's last step, or one unit at one
step), and it brings its own model. It is never trained (`trainable` is False).
"""
from __future__ import annotations

import json
import math
import re

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import Tensor, nn

from .config import FIELDS, MAX_PROBE_TRACE_MB, Config
from .loading import ModelFileError, build_module, cell_name, check_inputs, parse_loss, unit_loss
from .tasks import Control, HandMade, Task

MAX_PROBES = int(FIELDS["probe_count"].hi)          # sequences traced and shown (the probe set)
MAX_STEPS = int(FIELDS["seq_len"].hi)
MAX_HIDDEN, MAX_LAYERS = int(FIELDS["hidden"].hi), int(FIELDS["layers"].hi)
WAVE_COUNT = 8                                      # the probe set made when no sequences are given


class YourModel(nn.Module):
    """The uploaded module where a run has SequenceModel: `rnn`, with no head (the traced loss
    reads the top layer's h directly)."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn

    def readout(self, hidden: Tensor) -> Tensor:
        return hidden

    def forward(self, x: Tensor) -> Tensor:
        return self.rnn(x)[0]


class ModelTask(Task):
    """Your model's sequences and traced loss, in a task's place (never trained)."""

    name, output_mode, regression = "model", "all", True
    trainable = False
    metric_name, higher_is_better = "none (not trained here)", False
    baseline_name, baseline_loss, baseline_metric = "none", 0.0, 0.0

    def __init__(self, module: nn.Module, x: np.ndarray, loss: str = "last",
                 features: list[str] | None = None, source: str = "your sequences"):
        check_inputs(x, module)
        self.module = module
        self.x = torch.as_tensor(x, dtype=next(module.parameters()).dtype)   # (batch, time, features)
        self.input_size, self.output_size = module.input_size, module.hidden_size
        self.seq_len = self.x.shape[1]
        self.features = features
        self.options = {"source": source, "sequences": len(self.x), "features": features}
        self.set_loss(loss)

    def set_loss(self, loss: str) -> None:
        """The traced loss: 'last' or UNIT@STEP, checked against the model and the sequences."""
        chosen = parse_loss(loss)
        if chosen is not None:
            unit_loss(*chosen, hidden=self.module.hidden_size, steps=self.seq_len)   # range checks
        self._chosen = chosen
        self.options["loss"] = loss

    @property
    def loss_name(self) -> str:
        if self._chosen is None:
            return "sum of the top layer's h at the last step"
        unit, step = self._chosen
        return f"h of top-layer unit {unit} at step {step}"

    def own_model(self) -> nn.Module:
        return YourModel(self.module)

    def sample(self, n, generator):
        raise ValueError("your model is looked at here, not trained")

    def heldout(self, n, seed):
        x = self.x[:n]
        return x, torch.zeros(len(x))                # (batch, time, features), no targets

    def loss(self, output: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
        """The traced loss per sequence, from the top layer's h (batch, time, hidden)."""
        if self._chosen is None:
            per_sequence = output[:, -1].sum(dim=-1)                          # (batch,)
        else:
            unit, step = self._chosen
            per_sequence = output[:, step, unit]                              # (batch,)
        if reduction == "none":
            return per_sequence
        return per_sequence.sum() if reduction == "sum" else per_sequence.mean()

    def metric_tensor(self, output, y):
        return output.new_zeros(())

    def feature_names(self):
        return list(self.features) if self.features else super().feature_names()

    def describe_sequence(self, x, y):
        return f"{len(x)} steps, from {float(x[0].mean()):.2f} to {float(x[-1].mean()):.2f}"

    def handmade(self):
        return HandMade("model", _CONTROLS, _by_hand)

    # -- kept with the run -----------------------------------------------------------------
    def kept_bytes(self) -> bytes:
        """The module and the sequences, so the run reopens after the upload is gone."""
        tensors = {f"rnn.{k}": v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        tensors["inputs"] = self.x.contiguous()
        meta = {"features": json.dumps(self.features), "source": self.options["source"]}
        return save_tensors(tensors, metadata=meta)

    @classmethod
    def from_bytes(cls, raw: bytes, config: Config) -> "ModelTask":
        tensors = load_tensors(raw)
        meta = _metadata(raw)
        x = tensors.pop("inputs").numpy()
        module = build_module(tensors, "relu" if config.cell == "rnn-relu" else "tanh", True, prefix="rnn.")
        return cls(module, x, config.trace_loss, json.loads(meta.get("features", "null")),
                   meta.get("source", "your sequences"))


def _metadata(raw: bytes) -> dict:
    """A safetensors file's __metadata__ (its JSON header)."""
    size = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + size]).get("__metadata__", {}) or {}


def look_inside(module: nn.Module, x: np.ndarray | None, loss: str = "last", features: list[str] | None = None,
                source: str = "your sequences", steps: int = 50) -> tuple[Config, ModelTask, str | None]:
    """The Config and task of a run that shows `module` on x (batch, time, features): the
    first sequences that fit the trace cap are its probe set. Without x, waves of `steps`
    steps. Returns (config, task, a note on what was left out or None); a model or sequences
    over the caps is a ModelFileError saying which cap and what fits."""
    if module.hidden_size > MAX_HIDDEN or module.num_layers > MAX_LAYERS:
        raise ModelFileError(f"this model has {module.num_layers} layer(s) × {module.hidden_size} units; "
                             f"this server looks inside models of up to {MAX_LAYERS} layers × {MAX_HIDDEN} "
                             "units (the same caps as a run trained here)")
    if x is None:
        x, features, source = waves(module.input_size, steps), None, f"{WAVE_COUNT} sine waves"
    check_inputs(x, module)
    n, T = x.shape[:2]
    if not 2 <= T <= MAX_STEPS:
        raise ModelFileError(f"the sequences have {T} step(s); between 2 and {MAX_STEPS} can be traced here")
    per_sequence = 4 * 7 * T * module.hidden_size * module.num_layers      # as Config.probe_trace_bytes
    fits = min(n, MAX_PROBES, MAX_PROBE_TRACE_MB * 2**20 // per_sequence)
    if fits < 1:
        raise ModelFileError(f"one sequence of {T} steps through {module.num_layers} × {module.hidden_size} "
                             f"units would be a trace over {MAX_PROBE_TRACE_MB} MB; give shorter sequences")
    note = None if fits == n else (f"{n} sequences were given; the first {fits} are traced and shown "
                                   f"(at most {MAX_PROBES}, and at most {MAX_PROBE_TRACE_MB} MB of trace)")
    task = ModelTask(module, x[:fits], loss, features, source)
    config = Config(task="model", cell=cell_name(module), hidden=module.hidden_size, layers=module.num_layers,
                    seq_len=T, probe_count=fits, trace_loss=loss, device="cpu")
    return config, task, note


def waves(features: int, steps: int) -> np.ndarray:
    """WAVE_COUNT sine waves of rising frequency in every feature: (batch, time, features)."""
    t = np.arange(steps)[None, :, None]
    frequency = np.linspace(0.02, 0.2, WAVE_COUNT)[:, None, None]
    return np.broadcast_to(np.sin(2 * math.pi * frequency * t), (WAVE_COUNT, steps, features)).astype(np.float32)


_CONTROLS = (
    Control("shape", "sequence", "select", "wave", options=("wave", "numbers")),
    Control("frequency", "wave: frequency (cycles per step)", "slider", 0.05, lo=0.01, hi=0.5, step=0.01),
    Control("amplitude", "wave: amplitude", "slider", 1.0, lo=0.1, hi=3.0, step=0.1),
    Control("numbers", "numbers: one line per step, a number per feature (commas or spaces)", "textarea",
            "0\n1\n0\n0\n1"),
)


def _by_hand(task: ModelTask, values: dict) -> tuple[Tensor, Tensor]:
    """A wave of the model's sequence length in every feature, or typed numbers."""
    dtype = task.x.dtype
    if values["shape"] == "wave":
        wave = values["amplitude"] * np.sin(2 * math.pi * values["frequency"] * np.arange(task.seq_len))
        x = np.broadcast_to(wave[None, :, None], (1, task.seq_len, task.input_size))   # (1, time, features)
        return torch.as_tensor(x.copy(), dtype=dtype), torch.zeros(1)
    rows = [line for line in str(values["numbers"]).splitlines() if line.strip()]
    if task.input_size == 1 and len(rows) == 1:
        rows = re.split(r"[,\s]+", rows[0].strip())          # one feature: a single line is fine
    if not 1 <= len(rows) <= MAX_STEPS:
        raise ValueError(f"type between 1 and {MAX_STEPS} steps, one line each (got {len(rows)})")
    steps = []
    for i, line in enumerate(rows, 1):
        try:
            numbers = [float(v) for v in re.split(r"[,\s]+", line.strip()) if v]
        except ValueError:
            raise ValueError(f"line {i} ({line.strip()[:40]!r}) is not a list of numbers") from None
        if len(numbers) != task.input_size or not all(math.isfinite(v) for v in numbers):
            raise ValueError(f"line {i} has {len(numbers)} number(s); the model reads {task.input_size} "
                             "finite number(s) per step")
        steps.append(numbers)
    x = torch.tensor([steps], dtype=dtype)                          # (1, time, features)
    if task._chosen is not None:
        unit, step = task._chosen
        if not -len(steps) <= step < len(steps):
            raise ValueError(f"the loss reads step {step}, but this sequence has {len(steps)} steps")
    return x, torch.zeros(1)
