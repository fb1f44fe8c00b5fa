"""One unit of one layer at one time step, worked through its cell's equations with the
real numbers: the input and recurrent terms of every pre-activation, every gate, c_t, h_t.

The numbers come from the module's own weights and the trace of the sequence (its input to
the layer, h_{t-1}, c_{t-1}); each gate is recomputed here from them in float64, so a page
can print every term of an equation and the terms add up to what it prints. PyTorch's
conventions: gate blocks (i, f, g, o) and (r, z, n), biases b_ih + b_hh, and a GRU whose
update gate near 1 keeps the old state: h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from .cells import GATE_NAMES
from .trace import Trace

SYMBOL = {"input": "i", "forget": "f", "candidate": "g", "output": "o",
          "reset": "r", "update": "z"}


@dataclass
class Gate:
    """One pre-activation and what the nonlinearity makes of it."""

    name: str                 # "input", "forget", "candidate", "output", "reset", "update", "hidden"
    input_term: float         # (W_ih x_t)_u, x_t being the layer's input
    recurrent_term: float     # (W_hh h_{t-1})_u
    bias: float               # b_ih,u + b_hh,u (GRU candidate: b_in only, b_hn is inside the reset product)
    peephole_term: float = 0.0  # w_c,u · c (peephole LSTM; c_{t-1} for i and f, c_t for o)
    recurrent_bias: float = 0.0  # GRU candidate only: b_hn,u, multiplied by r_t with the recurrent term
    pre_activation: float = 0.0
    value: float = 0.0


@dataclass
class StepThrough:
    cell: str
    layer: int
    t: int
    unit: int
    h_previous: float                         # h_{t-1,u} (0 at t = 0)
    c_previous: float | None                  # c_{t-1,u}, LSTMs only
    gates: dict[str, Gate] = field(default_factory=dict)
    cell_state: float | None = None           # c_t,u
    hidden: float = 0.0                       # h_t,u as recomputed here
    traced_hidden: float = 0.0                # h_t,u as the trace recorded it
    input_norm: float = 0.0                   # ‖x_t‖ of the layer's input, for orientation


def _sigmoid(a: float) -> float:
    return float(1.0 / (1.0 + np.exp(-a)))


def _parameter(module: nn.Module, name: str, k: int) -> np.ndarray | None:
    p = getattr(module, f"{name}_l{k}", None)
    return None if p is None else p.detach().cpu().double().numpy()


def step_through(module: nn.Module, trace: Trace, x: np.ndarray, sequence: int, layer: int, t: int,
                 unit: int) -> StepThrough:
    """Work unit `unit` of layer `layer` at step t of sequence `sequence` of trace through the
    equations, with module's weights (those the trace was made with). x: (time, features),
    that sequence's input."""
    kind, lt = trace.cell, trace.layers[layer]
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
    w_ih, w_hh = _parameter(module, "weight_ih", layer), _parameter(module, "weight_hh", layer)       # (G*H, in), (G*H, H)
    b_ih, b_hh = _parameter(module, "bias_ih", layer), _parameter(module, "bias_hh", layer)
    if b_ih is None:
        b_ih = b_hh = np.zeros(w_ih.shape[0])

    def terms(block: int) -> tuple[float, float, float, float]:
        row = block * H + unit
        return float(w_ih[row] @ layer_input), float(w_hh[row] @ h_prev), float(b_ih[row]), float(b_hh[row])

    out = StepThrough(kind, layer, t, unit, float(h_prev[unit]), None if c_prev is None else float(c_prev[unit]),
                      traced_hidden=float(lt.hidden[sequence, t, unit]), input_norm=float(np.linalg.norm(layer_input)))
    if kind in ("lstm", "peephole"):
        peep = {g: _parameter(module, f"weight_c{g[0]}", layer) for g in ("input", "forget", "output")}
        for block, name in enumerate(GATE_NAMES[kind]):
            wx, wh, bi, bh = terms(block)
            gate = Gate(name, wx, wh, bi + bh)
            if kind == "peephole" and name in ("input", "forget"):
                gate.peephole_term = float(peep[name][unit] * c_prev[unit])
            out.gates[name] = gate
        for name in ("input", "forget"):
            g = out.gates[name]
            g.pre_activation = g.input_term + g.recurrent_term + g.bias + g.peephole_term
            g.value = _sigmoid(g.pre_activation)
        g = out.gates["candidate"]
        g.pre_activation = g.input_term + g.recurrent_term + g.bias
        g.value = float(np.tanh(g.pre_activation))
        out.cell_state = out.gates["forget"].value * out.c_previous + out.gates["input"].value * g.value
        o = out.gates["output"]
        if kind == "peephole":                     # the output gate looks at c_t, not c_{t-1}
            o.peephole_term = float(peep["output"][unit] * out.cell_state)
        o.pre_activation = o.input_term + o.recurrent_term + o.bias + o.peephole_term
        o.value = _sigmoid(o.pre_activation)
        out.hidden = o.value * float(np.tanh(out.cell_state))
    elif kind == "gru":
        for block, name in enumerate(("reset", "update")):
            wx, wh, bi, bh = terms(block)
            g = Gate(name, wx, wh, bi + bh)
            g.pre_activation = wx + wh + bi + bh
            g.value = _sigmoid(g.pre_activation)
            out.gates[name] = g
        wx, wh, bi, bh = terms(2)
        n = Gate("candidate", wx, wh, bi, recurrent_bias=bh)
        n.pre_activation = wx + bi + out.gates["reset"].value * (wh + bh)
        n.value = float(np.tanh(n.pre_activation))
        out.gates["candidate"] = n
        z = out.gates["update"].value
        out.hidden = (1.0 - z) * n.value + z * out.h_previous
    else:
        wx, wh, bi, bh = terms(0)
        g = Gate("hidden", wx, wh, bi + bh)
        g.pre_activation = wx + wh + bi + bh
        g.value = float(np.tanh(g.pre_activation)) if kind == "rnn_tanh" else max(g.pre_activation, 0.0)
        out.gates["hidden"] = g
        out.hidden = g.value
    return out
