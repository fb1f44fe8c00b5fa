"""The coupled input-forget gate LSTM (CIFG; Greff et al. 2017, "LSTM: A Search Space Odyssey"):
one gate decides both what to forget and what to write, i_t = 1 − f_t. Gate blocks (f, g, o):

    f = σ(W_if x + W_hf h + b_f)    g = tanh(W_ig x + W_hg h + b_g)    o = σ(W_io x + W_ho h + b_o)
    c_t = f ⊙ c_{t-1} + (1 − f) ⊙ g       h_t = o ⊙ tanh(c_t)

Three blocks where the LSTM has four, and in Greff et al.'s study about as good. No fused kernel,
so it trains through this unroll; the trace reports i_t = 1 − f_t with the other gates.
"""
from __future__ import annotations

import numpy as np
import torch

from . import lstm, native
from .base import (Cell, Gate, LayerClamp, LayerGradients, LayerUnroll, StepContext, UnrolledRNN, Worked,
                   activate, freed, input_projection, kept, num, previous, previous_line, sigma_line, sigmoid,
                   stacked, steps_backwards, term)

BLOCKS = ("forget", "candidate", "output")


def unroll(x, w, h, c, keep_gates=True, clamp: LayerClamp | None = None) -> LayerUnroll:
    """One layer over x (batch, time, input) from state h, c (batch, hidden). A clamp holds
    gates constant; the input gate is clamped through the forget gate (explorer.clamp), since
    i_t = 1 − f_t holds whatever f_t is."""
    if not torch.is_grad_enabled() and clamp is None and native.usable(x, h, c, w.weight_hh):
        return native.layer_unroll("cifg", x, w, h, c, keep_gates)   # the same loop, each step compiled
    keep = kept()
    H = h.shape[-1]
    proj = input_projection(x, w, fold_hh_bias=True)  # (batch, time, 3*hidden)
    w_hh_t = w.weight_hh.t()                           # (hidden, 3*hidden)
    out = LayerUnroll(hidden=[], cell=[], gates={g: [] for g in lstm.GATES} if keep_gates else {})
    for t, proj_t in enumerate(proj.unbind(1)):
        pre = torch.addmm(proj_t, h, w_hh_t)           # (batch, 3*hidden)
        forget, output = torch.sigmoid(pre[:, :H]), torch.sigmoid(pre[:, 2 * H:])
        candidate = torch.tanh(pre[:, H:2 * H])
        if clamp is not None:
            forget, candidate, output = (clamp.apply(n, t, v) for n, v in zip(BLOCKS, (forget, candidate, output)))
        c = torch.lerp(candidate, c, forget)           # f c_{t-1} + (1 − f) g
        h = output * torch.tanh(c)
        out.hidden.append(h)
        out.cell.append(c)
        if keep_gates:
            for name, value in zip(lstm.GATES, (1 - forget, forget, candidate, output)):
                out.gates[name].append(keep(value))
    return out


def backprop(u, w, grad_output, h0, c0, grad_cell_last=None, clamp: LayerClamp | None = None) -> LayerGradients:
    """BPTT by hand; see lstm.backprop. The coupling sends dc_t into the forget gate's
    pre-activation twice: through f c_{t-1} and through (1 − f) g."""
    if clamp is None and native.usable(u.cell, grad_output, w.weight_hh):
        return native.layer_backprop("cifg", u, w, grad_output, c0, grad_cell_last)
    f, g, o = (u.gates[n] for n in BLOCKS)               # each (batch, time, hidden)
    c = u.cell
    tanh_c = torch.tanh(c)
    B, T, H = c.shape
    to_cell = o * (1 - tanh_c ** 2)                       # dh_t -> dc_t through h_t = o tanh(c_t)
    to_pre = torch.cat([freed((previous(c, c0) - g) * f * (1 - f), clamp, "forget"),  # dc_t -> forget pre-act.
                        freed((1 - f) * (1 - g ** 2), clamp, "candidate")],          # dc_t -> candidate pre-act.
                       dim=2)                                                          # (batch, time, 2*hidden)
    to_output = freed(tanh_c * o * (1 - o), clamp, "output")   # dh_t -> output gate pre-activation
    grad_h, grad_c, grad_pre = [], [], []
    dh_rec = c.new_zeros(B, H)
    dc_next = c.new_zeros(B, H) if grad_cell_last is None else grad_cell_last
    for ext, to_c, to_fg, to_o, forget in steps_backwards(grad_output, to_cell, to_pre, to_output, f):
        dh = ext + dh_rec
        dc = torch.addcmul(dc_next, dh, to_c)
        d_pre = torch.cat([dc.repeat(1, 2) * to_fg, dh * to_o], dim=1)   # (batch, 3*hidden)
        dh_rec = d_pre @ w.weight_hh
        dc_next = dc * forget
        grad_h.append(dh)
        grad_c.append(dc)
        grad_pre.append(d_pre)
    grad_pre = stacked(grad_pre)                          # (batch, time, 3*hidden)
    return LayerGradients(stacked(grad_h), stacked(grad_c), grad_pre @ w.weight_ih, grad_pre)


def step(ctx: StepContext) -> Worked:
    u = ctx.unit
    c_prev = float(ctx.c_previous[u])
    f, g, o = (ctx.gate(name, block) for block, name in enumerate(BLOCKS))
    activate(f, sigmoid)
    # 1 − σ(a) = σ(−a): the input gate is the forget gate's terms, negated.
    i = activate(Gate("input", -f.input_term, -f.recurrent_term, -f.bias), sigmoid)
    activate(g, lambda a: float(np.tanh(a)))
    cell_state = f.value * c_prev + i.value * g.value
    activate(o, sigmoid)
    hidden = o.value * float(np.tanh(cell_state))
    lines = [
        previous_line(float(ctx.h_previous[u]), c_prev),
        sigma_line("f", f),
        rf"i_t = 1 - f_t = 1 - {term(f.value)} = \mathbf{{{num(i.value)}}}",
        lstm.candidate_line(g),
        lstm.cell_line(f.value, c_prev, i.value, g.value, cell_state),
        sigma_line("o", o),
        lstm.hidden_line(o.value, cell_state, hidden),
    ]
    return Worked({"input": i, "forget": f, "candidate": g, "output": o}, hidden, lines, cell_state)


class CIFGLSTM(UnrolledRNN):
    """nn.LSTM's constructor and parameter names, with three gate blocks (f, g, o) per layer."""

    blocks = 3
    has_cell = True
    unroll = staticmethod(unroll)
    backprop = staticmethod(backprop)


CELL = Cell(
    name="cifg", title="CIFG LSTM", module="CIFGLSTM",
    help="the LSTM whose input gate is 1 − forget gate (Greff et al. 2017)",
    gates=lstm.GATES, blocks=BLOCKS, roles=lstm.ROLES, has_cell=True, forget_block=0,
    titles={"input": "input gate i_t = 1 − f_t"},
    build=lambda input_size, hidden_size, num_layers, batch_first, dropout: CIFGLSTM(
        input_size, hidden_size, num_layers, batch_first=batch_first, dropout=dropout),
    matches=lambda module: isinstance(module, CIFGLSTM),
    unroll=unroll, backprop=backprop, step=step,
    note="CIFG (Greff et al. 2017): the input gate is tied to the forget gate, i_t = 1 − f_t, so a unit "
         "writes exactly as much as it forgets; its weights have three blocks (f, g, o) where the LSTM has "
         "four; b is b_ih + b_hh. The LSTM/GRU tutorial (docs/TUTORIAL.md) does not cover it.",
)
