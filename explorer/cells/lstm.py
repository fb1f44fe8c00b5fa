"""The LSTM as PyTorch's nn.LSTM computes it, gate blocks (i, f, g, o):

    i = σ(W_ii x + W_hi h + b_i)    f = σ(W_if x + W_hf h + b_f)    g = tanh(W_ig x + W_hg h + b_g)
    o = σ(W_io x + W_ho h + b_o)    c_t = f ⊙ c_{t-1} + i ⊙ g       h_t = o ⊙ tanh(c_t)

The peephole LSTM (peephole.py) is the same cell with the cell state added to the gates'
pre-activations, so its unroll, backward pass and equations are these with `peephole=True`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import (Cell, Gate, LayerGradients, LayerUnroll, StepContext, Worked, activate, input_projection, kept,
                   num, previous, previous_line, sigma_line, sigmoid, term)

GATES = ("input", "forget", "candidate", "output")
ROLES = {"input": "gate", "forget": "gate", "candidate": "tanh", "output": "gate", "hidden": "tanh"}


def unroll(x, w, h, c, keep_gates=True, peephole=False) -> LayerUnroll:
    """One layer over x (batch, time, input) from state h, c (batch, hidden)."""
    keep = kept()
    H = h.shape[-1]
    proj = input_projection(x, w, fold_hh_bias=True)  # (batch, time, 4*hidden)
    w_hh_t = w.weight_hh.t()                           # (hidden, 4*hidden)
    if peephole:
        w_ci, w_cf, w_co = (w.extra[f"weight_c{g}"] for g in "ifo")   # each (hidden,)
        w_cif = torch.stack([w_ci, w_cf])                               # (2, hidden): both see c_{t-1}
    out = LayerUnroll(hidden=[], cell=[], gates={g: [] for g in GATES} if keep_gates else {})
    for proj_t in proj.unbind(1):                      # one view per step, taken once
        pre = torch.addmm(proj_t, h, w_hh_t)           # (batch, 4*hidden)
        if peephole:
            # i and f at once: W h + W x + b + w_c ⊙ c_{t-1} for both, then one sigmoid.
            both = torch.sigmoid(torch.addcmul(pre[:, :2 * H].view(-1, 2, H), w_cif, c.unsqueeze(1)))
            input_gate, forget = both.unbind(1)        # each (batch, hidden)
        else:
            # One sigmoid over i, f and o at once: fewer kernel launches per step.
            input_gate, forget, _, output = torch.sigmoid(pre).split(H, dim=1)
        candidate = torch.tanh(pre[:, 2 * H:3 * H])
        c = torch.addcmul(forget * c, input_gate, candidate)
        if peephole:
            output = torch.sigmoid(torch.addcmul(pre[:, 3 * H:], w_co, c))
        h = output * torch.tanh(c)
        out.hidden.append(h)
        out.cell.append(c)
        if keep_gates:
            for name, value in zip(GATES, (input_gate, forget, candidate, output)):
                out.gates[name].append(keep(value))
    return out


def backprop(u, w, grad_output, h0, c0, peephole=False, grad_cell_last=None) -> LayerGradients:
    """BPTT by hand: the factors that do not depend on the incoming gradient for all steps at
    once, then only what must be sequential. Measured about twice as fast as autograd through
    the unroll, which pays per graph node. grad_cell_last: dL/dc_T from outside the layer (its
    final cell state used downstream), if any."""
    i, f, g, o = (u.gates[n] for n in GATES)             # each (batch, time, hidden)
    c = u.cell
    tanh_c = torch.tanh(c)
    B, T, H = c.shape
    to_cell = o * (1 - tanh_c ** 2)                       # dh_t -> dc_t through h_t = o tanh(c_t)
    to_pre = torch.stack([g * i * (1 - i),                # dc_t -> input gate pre-activation
                          previous(c, c0) * f * (1 - f),  # dc_t -> forget gate pre-activation
                          i * (1 - g ** 2)], dim=2)       # dc_t -> candidate pre-activation (batch, time, 3, H)
    to_pre = to_pre.reshape(B, T, 3 * H)
    to_output = tanh_c * o * (1 - o)                      # dh_t -> output gate pre-activation
    if peephole:
        w_ci, w_cf, w_co = (w.extra[f"weight_c{g}"] for g in "ifo")
    # Time-major, so that each step's rows are one block; every step's gradients are written in
    # place (out=), and the recurrent matmul adds the next step's term: 8 operations a step.
    time_major = lambda t: t.transpose(0, 1).contiguous()     # noqa: E731 - (time, batch, ...)
    to_cell, to_pre, to_output, f = (time_major(t) for t in (to_cell, to_pre, to_output, f))
    grad_h, grad_c = c.new_empty(T, B, H), c.new_empty(T, B, H)
    grad_pre = c.new_empty(T, B, 4 * H)
    dc_next = c.new_zeros(B, H) if grad_cell_last is None else grad_cell_last
    for t in reversed(range(T)):
        d_pre = grad_pre[t]                                        # (batch, 4*hidden)
        if t == T - 1:
            dh = grad_h[t].copy_(grad_output[:, t])
        else:                                                      # its own term, and the next step's through W_hh
            dh = torch.addmm(grad_output[:, t], grad_pre[t + 1], w.weight_hh, out=grad_h[t])
        d_output = torch.mul(dh, to_output[t], out=d_pre[:, 3 * H:])
        dc = torch.addcmul(dc_next, dh, to_cell[t], out=grad_c[t])
        if peephole:
            dc.addcmul_(d_output, w_co)
        torch.mul(dc.unsqueeze(1), to_pre[t].view(B, 3, H), out=d_pre[:, :3 * H].view(B, 3, H))
        dc_next = dc * f[t]
        if peephole:
            dc_next.addcmul_(d_pre[:, :H], w_ci).addcmul_(d_pre[:, H:2 * H], w_cf)
    batch_major = lambda t: t.transpose(0, 1)                  # noqa: E731 - (batch, time, ...) views
    grad_pre = batch_major(grad_pre)                           # (batch, time, 4*hidden)
    return LayerGradients(batch_major(grad_h), batch_major(grad_c), grad_pre @ w.weight_ih, grad_pre)


def step(ctx: StepContext, peephole: bool = False) -> Worked:
    """One unit at one step, every term of every gate; c_t, h_t."""
    u = ctx.unit
    c_prev = float(ctx.c_previous[u])
    gates = {name: ctx.gate(name, block) for block, name in enumerate(GATES)}
    i, f, g, o = (gates[n] for n in GATES)
    if peephole:                                 # c_{t-1} looks into i and f
        i.peephole_term = ctx.own("weight_ci") * c_prev
        f.peephole_term = ctx.own("weight_cf") * c_prev
    activate(i, sigmoid)
    activate(f, sigmoid)
    activate(g, lambda a: float(np.tanh(a)))
    cell_state = f.value * c_prev + i.value * g.value
    if peephole:                                 # the output gate looks at c_t, not c_{t-1}
        o.peephole_term = ctx.own("weight_co") * cell_state
    activate(o, sigmoid)
    hidden = o.value * float(np.tanh(cell_state))
    lines = [
        previous_line(float(ctx.h_previous[u]), c_prev),
        sigma_line("i", i, r" + w_{ci} c_{t-1}" if peephole else "", peephole),
        sigma_line("f", f, r" + w_{cf} c_{t-1}" if peephole else "", peephole),
        candidate_line(g),
        cell_line(f.value, c_prev, i.value, g.value, cell_state),
        sigma_line("o", o, r" + w_{co} c_t" if peephole else "", peephole),
        hidden_line(o.value, cell_state, hidden),
    ]
    return Worked(gates, hidden, lines, cell_state)


def candidate_line(g: Gate) -> str:
    return (rf"g_t = \tanh(W_{{xg}}x_t + W_{{hg}}h_{{t-1}} + b_g) = \tanh({term(g.input_term)} + "
            rf"{term(g.recurrent_term)} + {term(g.bias)}) = \tanh({num(g.pre_activation)}) = \mathbf{{{num(g.value)}}}")


def cell_line(f: float, c_prev: float, i: float, g: float, c: float) -> str:
    return (rf"c_t = f_t\,c_{{t-1}} + i_t\,g_t = {term(f)}\cdot{term(c_prev)} + "
            rf"{term(i)}\cdot{term(g)} = \mathbf{{{num(c)}}}")


def hidden_line(o: float, c: float, h: float) -> str:
    return rf"h_t = o_t \tanh(c_t) = {term(o)}\cdot\tanh({num(c)}) = \mathbf{{{num(h)}}}"


CELL = Cell(
    name="lstm", title="LSTM", module="nn.LSTM",
    help="input, forget and output gates and a cell state (PyTorch's nn.LSTM)",
    gates=GATES, blocks=GATES, roles=ROLES, has_cell=True, forget_block=1,
    build=lambda input_size, hidden_size, num_layers, batch_first, dropout: nn.LSTM(
        input_size, hidden_size, num_layers, batch_first=batch_first, dropout=dropout),
    matches=lambda module: isinstance(module, nn.LSTM),
    unroll=unroll, backprop=backprop, step=step,
    note="PyTorch's LSTM: b is b_ih + b_hh. The LSTM/GRU tutorial (docs/TUTORIAL.md) writes its LSTM "
         "with peepholes (W_ci c_{t−1} in i_t and f_t, W_co c_t in o_t) and also gives the candidate a "
         "W_cc c_{t−1} term, which neither Gers & Schmidhuber's peephole LSTM nor PyTorch has; choose the "
         "peephole cell to see the peepholes.",
)
