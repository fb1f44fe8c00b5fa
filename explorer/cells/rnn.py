"""The plain RNN as PyTorch's nn.RNN computes it: h_t = φ(W_ih x + b_ih + W_hh h_{t-1} + b_hh),
φ being tanh or ReLU. No gates: nothing decides what to keep."""
from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import nn

from .base import (Cell, LayerGradients, LayerUnroll, StepContext, Worked, activate, input_projection, num,
                   previous_line, stacked, steps_backwards, term)

NONLINEARITY = {"tanh": torch.tanh, "relu": torch.relu}


def unroll(x, w, h, c=None, keep_gates=True, nonlinearity="tanh") -> LayerUnroll:
    """One layer over x (batch, time, input) from state h (batch, hidden)."""
    phi = NONLINEARITY[nonlinearity]
    proj = input_projection(x, w, fold_hh_bias=True)  # (batch, time, hidden)
    w_hh_t = w.weight_hh.t()                           # (hidden, hidden)
    out = LayerUnroll(hidden=[], cell=None)
    for proj_t in proj.unbind(1):
        h = phi(torch.addmm(proj_t, h, w_hh_t))
        out.hidden.append(h)
    return out


def backprop(u, w, grad_output, h0, c0=None, nonlinearity="tanh") -> LayerGradients:
    """BPTT by hand; see lstm.backprop."""
    h = u.hidden                                          # (batch, time, hidden)
    slope = 1 - h ** 2 if nonlinearity == "tanh" else (h > 0).to(h.dtype)
    grad_h, grad_pre = [], []
    dh_rec = h.new_zeros(h.shape[0], h.shape[2])
    for ext, slope_t in steps_backwards(grad_output, slope):
        dh = ext + dh_rec
        d_pre = dh * slope_t
        dh_rec = d_pre @ w.weight_hh
        grad_h.append(dh)
        grad_pre.append(d_pre)
    grad_pre = stacked(grad_pre)                          # (batch, time, hidden)
    return LayerGradients(stacked(grad_h), None, grad_pre @ w.weight_ih, grad_pre)


def step(ctx: StepContext, nonlinearity="tanh") -> Worked:
    h_prev = float(ctx.h_previous[ctx.unit])
    act = r"\tanh" if nonlinearity == "tanh" else r"\mathrm{ReLU}"
    g = activate(ctx.gate("hidden", 0), (lambda a: float(np.tanh(a))) if nonlinearity == "tanh"
                 else (lambda a: max(a, 0.0)))
    lines = [
        previous_line(h_prev),
        rf"h_t = {act}(W_{{xh}}x_t + W_{{hh}}h_{{t-1}} + b) = {act}({term(g.input_term)} + "
        rf"{term(g.recurrent_term)} + {term(g.bias)}) = {act}({num(g.pre_activation)}) = \mathbf{{{num(g.value)}}}",
    ]
    return Worked({"hidden": g}, g.value, lines)


def _entry(name: str, nonlinearity: str, help: str, note: str) -> Cell:
    return Cell(
        name=name, title="RNN" if nonlinearity == "tanh" else "ReLU RNN", module="nn.RNN", help=help,
        gates=(), blocks=("W_hh",), roles={"W_hh": nonlinearity, "hidden": nonlinearity}, has_cell=False,
        build=lambda input_size, hidden_size, num_layers, batch_first, dropout: nn.RNN(
            input_size, hidden_size, num_layers, nonlinearity=nonlinearity, batch_first=batch_first,
            dropout=dropout),
        matches=lambda module: isinstance(module, nn.RNN) and module.nonlinearity == nonlinearity,
        unroll=partial(unroll, nonlinearity=nonlinearity), backprop=partial(backprop, nonlinearity=nonlinearity),
        step=partial(step, nonlinearity=nonlinearity), note=note)


TANH = _entry("rnn", "tanh", "no gates, tanh (PyTorch's nn.RNN)",
              "A plain RNN: no gates, so nothing decides what to keep; b is b_ih + b_hh.")
RELU = _entry("rnn-relu", "relu", "no gates, ReLU (nn.RNN with nonlinearity='relu')",
              "A plain RNN with ReLU: no gates; b is b_ih + b_hh.")
