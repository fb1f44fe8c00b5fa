"""One unit of one layer at one time step, worked through its cell's equations with the
real numbers: the input and recurrent terms of every pre-activation, every gate, c_t, h_t,
as LaTeX lines a page lays out, and a note on the cell's conventions.

The numbers come from the module's own weights and the trace of the sequence (its input to
the layer, h_{t-1}, c_{t-1}); each gate is recomputed from them in float64 by the cell's
`step` (explorer/cells/), so every term printed adds up to what is printed after it.
PyTorch's conventions: gate blocks (i, f, g, o) and (r, z, n), biases b_ih + b_hh.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from .cells import CELLS, layer_weights
from .cells.base import Gate, StepContext
from .trace import Trace

__all__ = ["Gate", "StepThrough", "step_through"]


@dataclass
class StepThrough:
    cell: str
    layer: int
    t: int
    unit: int
    h_previous: float                         # h_{t-1,u} (0 at t = 0)
    c_previous: float | None                  # c_{t-1,u}, cells with a cell state only
    gates: dict[str, Gate] = field(default_factory=dict)
    cell_state: float | None = None           # c_t,u
    hidden: float = 0.0                       # h_t,u as recomputed here
    traced_hidden: float = 0.0                # h_t,u as the trace recorded it
    input_norm: float = 0.0                   # ‖x_t‖ of the layer's input, for orientation
    lines: list[str] = field(default_factory=list)   # the equations with the numbers, LaTeX
    note: str = ""                            # the cell's conventions and where the tutorial differs


def step_through(module: nn.Module, trace: Trace, x: np.ndarray, sequence: int, layer: int, t: int,
                 unit: int) -> StepThrough:
    """Work unit `unit` of layer `layer` at step t of sequence `sequence` of trace through the
    equations, with module's weights (those the trace was made with). x: (time, features),
    that sequence's input."""
    cell, lt = CELLS[trace.cell], trace.layers[layer]
    T, H = lt.hidden.shape[1], lt.hidden.shape[2]
    if not 0 <= t < T:
        raise ValueError(f"t must be from 0 to {T - 1}, got {t}")
    if not 0 <= unit < H:
        raise ValueError(f"unit must be from 0 to {H - 1}, got {unit}")
    layer_input = np.asarray(x if layer == 0 else trace.layers[layer - 1].hidden[sequence], np.float64)[t]  # (features,)
    h_prev = np.asarray(lt.hidden[sequence, t - 1], np.float64) if t else np.zeros(H)                  # (hidden,)
    c_prev = None
    if lt.cell is not None:
        c_prev = np.asarray(lt.cell[sequence, t - 1], np.float64) if t else np.zeros(H)                # (hidden,)
    w = layer_weights(module, layer)
    weights = {name: p.detach().cpu().double().numpy()
               for name, p in (("weight_ih", w.weight_ih), ("weight_hh", w.weight_hh), *w.extra.items())}
    rows = weights["weight_ih"].shape[0]
    for name, bias in (("bias_ih", w.bias_ih), ("bias_hh", w.bias_hh)):
        weights[name] = np.zeros(rows) if bias is None else bias.detach().cpu().double().numpy()
    worked = cell.step(StepContext(unit, layer_input, h_prev, c_prev, weights))
    return StepThrough(cell.name, layer, t, unit, float(h_prev[unit]), None if c_prev is None else float(c_prev[unit]),
                       gates=worked.gates, cell_state=worked.cell_state, hidden=worked.hidden,
                       traced_hidden=float(lt.hidden[sequence, t, unit]),
                       input_norm=float(np.linalg.norm(layer_input)), lines=worked.lines, note=cell.note)
