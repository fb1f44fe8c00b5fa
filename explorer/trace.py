"""trace(): the exact, instrumented re-computation of a recurrent module on given sequences.

Training uses the fused kernels, which hide the gates; `trace` unrolls the same
parameters step by step, keeps every gate, and back-propagates through the unroll to
get the gradient's norm at every step. docs/ARCHITECTURE.md's "instrumentation contract" is
the spec; each cell's equations are in explorer/cells/.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from . import clamp as clamps
from .cells import cell_of, layer_weights


@dataclass
class LayerTrace:
    """One layer's recorded quantities; arrays batch-first, float32 (float64 for a float64 module)."""

    gates: dict[str, np.ndarray]      # name -> (batch, time, hidden)
    hidden: np.ndarray                # (batch, time, hidden) h_t
    cell: np.ndarray | None           # (batch, time, hidden) c_t, LSTMs only
    grad_hidden: np.ndarray           # (batch, time) ||dL/dh_t||, total derivative
    grad_cell: np.ndarray | None      # (batch, time) ||dL/dc_t||, LSTMs only


@dataclass
class Trace:
    cell: str                         # the cell's registry name (explorer.cells.CELLS): "lstm", "gru"...
    output: np.ndarray                # (batch, time, hidden) == module(x)[0], batch-first
    loss: float
    grad_input: np.ndarray            # (batch, time) ||dL/dx_t||
    layers: list[LayerTrace]
    clamp: dict | None = None         # the what-if it was made with (explorer.clamp's normal form); None: none

    def to_frame(self) -> pd.DataFrame:
        """Long table (layer, sequence, t, unit, quantity, value) for export.

        Per-unit quantities (gates, hidden, cell) fill every column; gradient norms have
        no unit, and grad_input belongs to no layer, so those cells are <NA>.
        """
        parts = []
        for k, layer in enumerate(self.layers):
            per_unit = dict(layer.gates, hidden=layer.hidden)
            if layer.cell is not None:
                per_unit["cell"] = layer.cell
            for name, arr in per_unit.items():
                parts.append(_long(arr, name, layer=k))
            parts.append(_long(layer.grad_hidden, "grad_hidden", layer=k))
            if layer.grad_cell is not None:
                parts.append(_long(layer.grad_cell, "grad_cell", layer=k))
        parts.append(_long(self.grad_input, "grad_input", layer=None))
        frame = pd.concat(parts, ignore_index=True)
        for col in ("layer", "unit"):
            frame[col] = frame[col].astype("Int64")
        return frame[["layer", "sequence", "t", "unit", "quantity", "value"]]


def _long(arr: np.ndarray, quantity: str, layer: int | None) -> pd.DataFrame:
    index = np.indices(arr.shape).reshape(arr.ndim, -1)
    return pd.DataFrame({
        "layer": pd.array([layer] * index.shape[1], dtype="Int64"),
        "sequence": index[0],
        "t": index[1],
        "unit": pd.array(index[2] if arr.ndim == 3 else [None] * index.shape[1], dtype="Int64"),
        "quantity": quantity,
        "value": arr.reshape(-1),
    })


def trace(module: nn.Module, x, target=None,
          loss_fn: Callable[[Tensor, object], Tensor] | None = None, clamp=None) -> Trace:
    """Unroll `module` on x exactly, keeping every gate and the gradient norm at every step.

    x is laid out as the module expects (batch_first or time-first), or unbatched 2-D
    (time, input). loss_fn(output, target) gets the output exactly as module(x)[0] would
    return it and must give a scalar; by default the loss is the sum of the last layer's
    output at the last step. The loss should be summed, not averaged, over the sequences
    so that each sequence's gradients are its own. Dropout is not applied (as in eval mode).

    clamp (a what-if, explorer/clamp.py) maps gate names to a value, or to dict(value=...,
    units=None or [...], steps=None or (start, stop), layers=None or [...]): those gates are
    held at the value, as constants (no gradient into their pre-activations), and everything
    downstream follows. None or empty: no clamp.
    """
    cell = cell_of(module)
    param = next(module.parameters())
    x = torch.as_tensor(x).to(device=param.device, dtype=param.dtype)
    if x.dim() not in (2, 3):
        raise ValueError(f"x must be 2-D (time, input) or 3-D, got shape {tuple(x.shape)}")
    if x.shape[-1] != module.input_size:
        raise ValueError(f"x has {x.shape[-1]} features per step but the module expects {module.input_size}")
    unbatched = x.dim() == 2
    xb = x.unsqueeze(0) if unbatched else (x if module.batch_first else x.transpose(0, 1))
    if xb.shape[1] == 0:
        raise ValueError("x has no time steps")
    xb = xb.detach()                                    # (batch, time, input)
    clamp = clamps.check(clamp, cell, module.num_layers, module.hidden_size, xb.shape[1])
    fixed = clamps.layer_clamps(clamp, cell, module.num_layers, module.hidden_size, xb.shape[1], xb.device)
    # Passed only to a layer with a clamp: without one, every cell takes its fastest unroll.
    clamped = [{"clamp": c} if c is not None else {} for c in fixed]

    h0 = xb.new_zeros(xb.shape[0], module.hidden_size)   # (batch, hidden)
    c0 = h0 if cell.has_cell else None
    weights = [layer_weights(module, k) for k in range(module.num_layers)]
    with torch.no_grad():
        layer_input, states = xb, []
        for w, extra in zip(weights, clamped):
            states.append(cell.unroll(layer_input, w, h0, c0, True, **extra).stack())
            layer_input = states[-1].hidden                  # (batch, time, hidden)
    # Autograd only for the loss itself: dL/d(output), whatever loss_fn computes.
    output = layer_input.detach().requires_grad_(True)
    with torch.enable_grad():
        shown = output.squeeze(0) if unbatched else (output if module.batch_first else output.transpose(0, 1))
        # The default is defined on the batch-first output, whatever the module's layout:
        # the last step of every sequence, not the last sequence of a time-first output.
        loss = output[:, -1].sum() if loss_fn is None else loss_fn(shown, target)
        if loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        (grad_output,) = torch.autograd.grad(loss, output, allow_unused=True)
    if grad_output is None:                             # a loss that ignores the output
        grad_output = torch.zeros_like(output)
    # Then back through time and down the layers by hand (cells.backprop).
    grads = [None] * len(states)
    with torch.no_grad():
        for k in reversed(range(len(states))):
            grads[k] = cell.backprop(states[k], weights[k], grad_output, h0, c0, **clamped[k])
            grad_output = grads[k].input                 # dL/dh of the layer below, or dL/dx

    layers = [LayerTrace(
        gates={name: _numpy(v) for name, v in u.gates.items()},
        hidden=_numpy(u.hidden),
        cell=_numpy(u.cell) if u.cell is not None else None,
        grad_hidden=_numpy(g.hidden.norm(dim=-1)),
        grad_cell=_numpy(g.cell.norm(dim=-1)) if g.cell is not None else None,
    ) for u, g in zip(states, grads)]
    grad_input = _numpy(grad_output.norm(dim=-1))       # (batch, time)
    return Trace(cell=cell.name, output=_numpy(output), loss=float(loss.detach()),
                 grad_input=grad_input, layers=layers, clamp=clamp)


def _numpy(t: Tensor) -> np.ndarray:
    # float32 for display and export; a float64 module keeps float64, because whoever
    # asks for double precision wants to check the numbers at that precision.
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    return t.detach().to("cpu", dtype).contiguous().numpy()
