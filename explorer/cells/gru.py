"""The GRU as PyTorch's nn.GRU computes it, gate blocks (r, z, n):

    r = σ(W_ir x + W_hr h + b_r)    z = σ(W_iz x + W_hz h + b_z)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

so an update gate near 1 *keeps* the old state (Chung et al. 2014, and the LSTM/GRU tutorial,
write it the other way round).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import (Cell, Gate, LayerClamp, LayerGradients, LayerUnroll, StepContext, Worked, activate, freed,
                   input_projection, kept, num, previous, previous_line, sigma_line, sigmoid, stacked,
                   steps_backwards, term)

GATES = ("reset", "update", "candidate")
ROLES = {"reset": "gate", "update": "gate", "candidate": "tanh", "hidden": "tanh"}


def unroll(x, w, h, c=None, keep_gates=True, clamp: LayerClamp | None = None) -> LayerUnroll:
    """One layer over x (batch, time, input) from state h (batch, hidden); c is unused. A
    clamp holds gates constant (a what-if)."""
    keep = kept()
    H = h.shape[-1]
    # b_hr and b_hz may be folded into the input term; b_hn may not, because the reset
    # gate multiplies it: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
    proj = input_projection(x, w, fold_hh_bias=False)  # (batch, time, 3*hidden)
    b_hn = None
    if w.bias_hh is not None:
        proj = proj + torch.cat([w.bias_hh[:2 * H], torch.zeros_like(w.bias_hh[2 * H:])])
        b_hn = w.bias_hh[2 * H:]
    w_hh_t = w.weight_hh.t()                           # (hidden, 3*hidden)
    out = LayerUnroll(hidden=[], cell=None, gates={g: [] for g in GATES} if keep_gates else {},
                      saved={"recurrent_candidate": []} if keep_gates else {})
    for t, proj_t in enumerate(proj.unbind(1)):
        rec = h @ w_hh_t                               # (batch, 3*hidden)
        rz = torch.sigmoid(proj_t[:, :2 * H] + rec[:, :2 * H])
        reset, update = rz[:, :H], rz[:, H:]
        if clamp is not None:
            reset, update = clamp.apply("reset", t, reset), clamp.apply("update", t, update)
        rec_n = rec[:, 2 * H:] if b_hn is None else rec[:, 2 * H:] + b_hn
        candidate = torch.tanh(torch.addcmul(proj_t[:, 2 * H:], reset, rec_n))
        if clamp is not None:
            candidate = clamp.apply("candidate", t, candidate)
        # PyTorch's convention: an update gate near 1 keeps the old state.
        h = candidate + update * (h - candidate)
        out.hidden.append(h)
        if keep_gates:
            for name, value in zip(GATES, (reset, update, candidate)):
                out.gates[name].append(keep(value))
            out.saved["recurrent_candidate"].append(keep(rec_n))
    return out


def backprop(u, w, grad_output, h0, c0=None, clamp: LayerClamp | None = None) -> LayerGradients:
    """BPTT by hand; see lstm.backprop. A clamped gate's pre-activation gets no gradient."""
    r, z, n = (u.gates[name] for name in GATES)          # each (batch, time, hidden)
    h = u.hidden
    rec_n = u.saved["recurrent_candidate"]                # W_hn h_{t-1} + b_hn
    H = h.shape[-1]
    to_update = freed((previous(h, h0) - n) * z * (1 - z), clamp, "update")   # dh_t -> update gate pre-activation
    to_candidate = freed((1 - z) * (1 - n ** 2), clamp, "candidate")          # dh_t -> candidate pre-activation
    to_reset = freed(rec_n * r * (1 - r), clamp, "reset")                      # candidate pre-act. -> reset's
    grad_h, grad_input_pre, grad_recurrent = [], [], []   # w.r.t. W_ih x + b_ih and W_hh h + b_hh, gates (r, z, n)
    dh_rec = h.new_zeros(h.shape[0], H)
    for ext, to_z, to_n, to_r, reset, update in steps_backwards(grad_output, to_update, to_candidate, to_reset, r, z):
        dh = ext + dh_rec
        d_update = dh * to_z
        d_candidate = dh * to_n
        d_reset = d_candidate * to_r
        grad_input_pre.append(torch.cat([d_reset, d_update, d_candidate], dim=1))
        d_recurrent = torch.cat([d_reset, d_update, d_candidate * reset], dim=1)  # w.r.t. W_hh h + b_hh
        dh_rec = torch.addmm(dh * update, d_recurrent, w.weight_hh)
        grad_h.append(dh)
        grad_recurrent.append(d_recurrent)
    grad_input_pre = stacked(grad_input_pre)              # (batch, time, 3*hidden)
    return LayerGradients(stacked(grad_h), None, grad_input_pre @ w.weight_ih, grad_input_pre,
                          recurrent=stacked(grad_recurrent))


def step(ctx: StepContext) -> Worked:
    h_prev = float(ctx.h_previous[ctx.unit])
    r, z = activate(ctx.gate("reset", 0), sigmoid), activate(ctx.gate("update", 1), sigmoid)
    wx, wh, bi, bh = ctx.terms(2)
    n = Gate("candidate", wx, wh, bi, recurrent_bias=bh)
    n.pre_activation = wx + bi + r.value * (wh + bh)
    n.value = float(np.tanh(n.pre_activation))
    hidden = (1.0 - z.value) * n.value + z.value * h_prev
    lines = [
        previous_line(h_prev),
        sigma_line("r", r),
        sigma_line("z", z),
        rf"n_t = \tanh(W_{{xn}}x_t + b_{{in}} + r_t (W_{{hn}}h_{{t-1}} + b_{{hn}})) = \tanh({term(n.input_term)} + "
        rf"{term(n.bias)} + {term(r.value)}\cdot({term(n.recurrent_term)} + {term(n.recurrent_bias)})) = "
        rf"\tanh({num(n.pre_activation)}) = \mathbf{{{num(n.value)}}}",
        rf"h_t = (1 - z_t)\,n_t + z_t\,h_{{t-1}} = (1 - {term(z.value)})\cdot{term(n.value)} + "
        rf"{term(z.value)}\cdot{term(h_prev)} = \mathbf{{{num(hidden)}}}",
    ]
    return Worked({"reset": r, "update": z, "candidate": n}, hidden, lines)


CELL = Cell(
    name="gru", title="GRU", module="nn.GRU",
    help="reset and update gates, no separate cell state (PyTorch's nn.GRU)",
    gates=GATES, blocks=GATES, roles=ROLES, has_cell=False,
    titles={"candidate": "candidate n_t (h̃_t)"},
    build=lambda input_size, hidden_size, num_layers, batch_first, dropout: nn.GRU(
        input_size, hidden_size, num_layers, batch_first=batch_first, dropout=dropout),
    matches=lambda module: isinstance(module, nn.GRU),
    unroll=unroll, backprop=backprop, step=step,
    note="PyTorch's GRU: an update gate z_t near 1 keeps the old state, and the reset gate multiplies "
         "W_hn h_{t−1} + b_hn. The LSTM/GRU tutorial (docs/TUTORIAL.md) writes its GRU the other way "
         "round, h_t = (1 − z_t) h_{t−1} + z_t h̃_t (z near 1 takes the new candidate), applies r_t to "
         "h_{t−1} before W_hh, and its candidate multiplies W_xh by h̃_t where x_t is meant.",
)
