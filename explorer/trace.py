"""trace(): the exact, instrumented re-computation of a recurrent module on given sequences.

Training uses the fused kernels, which hide the gates; `trace` unrolls the same
parameters step by step, keeps every gate, and back-propagates through the unroll to
get the gradient's norm at every step. docs/ARCHITECTURE.md's "instrumentation contract" is
the spec; each cell's equations are in explorer/cells/.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from . import clamp as clamps
from .cells import Cell, cell_of, layer_weights
from .cells.base import LayerGradients, LayerStates, previous


@dataclass
class LayerTrace:
    """One layer's recorded quantities; arrays batch-first, float32 (float64 for a float64 module)."""

    gates: dict[str, np.ndarray]      # name -> (batch, time, hidden)
    hidden: np.ndarray                # (batch, time, hidden) h_t
    cell: np.ndarray | None           # (batch, time, hidden) c_t, LSTMs only
    grad_hidden: np.ndarray           # (batch, time) ||dL/dh_t||, total derivative
    grad_cell: np.ndarray | None      # (batch, time) ||dL/dc_t||, LSTMs only
    # Where the recurrent weights' gradient comes from in time: block (a gate's, the candidate's;
    # a plain RNN's "W_hh") -> (batch, time), ‖δᵃ_t h_{t−1}ᵀ‖_F over its sum over t (rows sum to 1).
    weight_grad_share: dict[str, np.ndarray] = field(default_factory=dict)


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
        no unit, and grad_input belongs to no layer, so those cells are <NA>. (The table's
        quantities are a contract of `python -m explorer trace`; the weight-gradient share is
        exported by the Gradients page's own download.)
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
    run = _unroll_and_backprop(module, x, target, loss_fn, clamp)
    layers = [LayerTrace(
        gates={name: _numpy(v) for name, v in u.gates.items()},
        hidden=_numpy(u.hidden),
        cell=_numpy(u.cell) if u.cell is not None else None,
        grad_hidden=_numpy(g.hidden.norm(dim=-1)),
        grad_cell=_numpy(g.cell.norm(dim=-1)) if g.cell is not None else None,
        weight_grad_share={name: _numpy(v) for name, v in _weight_grad_share(run.cell, u, g, run.h0).items()},
    ) for u, g in zip(run.states, run.grads)]
    grad_input = _numpy(run.grad_input.norm(dim=-1))    # (batch, time)
    return Trace(cell=run.cell.name, output=_numpy(run.output), loss=run.loss,
                 grad_input=grad_input, layers=layers, clamp=run.clamp)


@dataclass
class _Unrolled:
    """trace()'s working tensors, before they become numpy: each layer's unroll and gradients."""

    cell: Cell
    states: list[LayerStates]
    grads: list[LayerGradients]
    h0: Tensor                        # (batch, hidden) the initial state, zeros
    output: Tensor                    # (batch, time, hidden) the top layer's h_t
    loss: float
    grad_input: Tensor                # (batch, time, input) dL/dx_t
    clamp: dict | None


def _unroll_and_backprop(module, x, target, loss_fn, clamp) -> _Unrolled:
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
    return _Unrolled(cell, states, grads, h0, output.detach(), float(loss.detach()), grad_output, clamp)


def _weight_grad_share(cell: Cell, u: LayerStates, g: LayerGradients, h0: Tensor) -> dict[str, Tensor]:
    """Each recurrent block's per-step share of its weight gradient: ‖δᵃ_t h_{t−1}ᵀ‖_F, which
    for an outer product is ‖δᵃ_t‖ ‖h_{t−1}‖, over its sum over t; (batch, time) per block.
    A sequence whose gradient is zero at every step has no share anywhere: its row is 0."""
    delta, h_previous = _recurrent_factors(cell, u, g, h0)
    terms = delta.norm(dim=-1) * h_previous.norm(dim=-1).unsqueeze(-1)  # (batch, time, blocks)
    total = terms.sum(dim=1, keepdim=True)                              # (batch, 1, blocks)
    share = torch.where(total > 0, terms / total.clamp_min(torch.finfo(terms.dtype).tiny), 0.0)
    return {name: share[..., j] for j, name in enumerate(cell.blocks)}


def recurrent_weight_terms(module: nn.Module, x, target=None, loss_fn=None, clamp=None) -> list[dict[str, Tensor]]:
    """The per-step terms of each layer's recurrent weight gradient, as matrices: for block a,
    δᵃ_t[b] h_{t−1}[b]ᵀ, (batch, time, hidden, hidden), whose sum over batch and time is
    dL/dW_hh's block a. What LayerTrace.weight_grad_share takes the norms of; for tests and
    notebooks (it is (time × hidden) times the size of the share)."""
    run = _unroll_and_backprop(module, x, target, loss_fn, clamp)
    terms = []
    for u, g in zip(run.states, run.grads):
        delta, h_previous = _recurrent_factors(run.cell, u, g, run.h0)
        terms.append({name: delta[..., j, :, None] * h_previous[..., None, :]
                      for j, name in enumerate(run.cell.blocks)})
    return terms


def _recurrent_factors(cell: Cell, u: LayerStates, g: LayerGradients, h0: Tensor) -> tuple[Tensor, Tensor]:
    """The two factors of each step's term δᵃ_t h_{t−1}ᵀ of dL/dW_hh: δ block by block
    (batch, time, blocks, hidden) and h_{t−1} (batch, time, hidden)."""
    H = u.hidden.shape[-1]
    return g.recurrent_delta.unflatten(-1, (len(cell.blocks), H)), previous(u.hidden, h0)


def _numpy(t: Tensor) -> np.ndarray:
    # float32 for display and export; a float64 module keeps float64, because whoever
    # asks for double precision wants to check the numbers at that precision.
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    return t.detach().to("cpu", dtype).contiguous().numpy()
