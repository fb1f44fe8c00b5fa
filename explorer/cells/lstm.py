"""The LSTM as PyTorch's nn.LSTM computes it, gate blocks (i, f, g, o):

    i = σ(W_ii x + W_hi h + b_i)    f = σ(W_if x + W_hf h + b_f)    g = tanh(W_ig x + W_hg h + b_g)
    o = σ(W_io x + W_ho h + b_o)    c_t = f ⊙ c_{t-1} + i ⊙ g       h_t = o ⊙ tanh(c_t)

The peephole LSTM (peephole.py) is the same cell with the cell state added to the gates'
pre-activations, so its unroll, backward pass and equations are these with `peephole=True`.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from . import native
from .base import (Cell, Gate, LayerClamp, LayerGradients, LayerStates, LayerUnroll, StepContext, Worked, activate,
                   freed, input_projection, kept, num, previous, previous_line, sigma_line, sigmoid, term)

GATES = ("input", "forget", "candidate", "output")
ROLES = {"input": "gate", "forget": "gate", "candidate": "tanh", "output": "gate", "hidden": "tanh"}


def unroll(x, w, h, c, keep_gates=True, peephole=False,
           clamp: LayerClamp | None = None) -> LayerUnroll | LayerStates:
    """One layer over x (batch, time, input) from state h, c (batch, hidden); `clamp` holds
    some gates constant (a what-if).

    Three ways to the same numbers, chosen by what the caller needs:
    - recording for autograd, or with gates clamped: one graph node per operation and step
      (`_unroll_graph`);
    - the LSTM without autograd (the trace): PyTorch's fused kernel for h_t, then every gate
      at once from h_{t-1} (`_unroll_fused`);
    - the peephole LSTM without autograd (its training forward, its trace): the loop, written
      in place into time-major buffers (`_unroll_in_place`).
    """
    if torch.is_grad_enabled() or clamp is not None:
        return _unroll_graph(x, w, h, c, keep_gates, peephole, clamp)
    if peephole:
        return _unroll_in_place(x, w, h, c, keep_gates)
    return _unroll_fused(x, w, h, c)


def _unroll_graph(x, w, h, c, keep_gates, peephole, clamp=None) -> LayerUnroll:
    """Step by step, each step's tensors new, so that autograd can differentiate the unroll
    (or a clamp can replace a gate at any step)."""
    keep = kept()
    H = h.shape[-1]
    proj = input_projection(x, w, fold_hh_bias=True)  # (batch, time, 4*hidden)
    w_hh_t = w.weight_hh.t()                           # (hidden, 4*hidden)
    if peephole:
        w_ci, w_cf, w_co = (w.extra[f"weight_c{g}"] for g in "ifo")   # each (hidden,)
        w_cif = torch.stack([w_ci, w_cf])                               # (2, hidden): both see c_{t-1}
    out = LayerUnroll(hidden=[], cell=[], gates={g: [] for g in GATES} if keep_gates else {})
    for t, proj_t in enumerate(proj.unbind(1)):        # one view per step, taken once
        pre = torch.addmm(proj_t, h, w_hh_t)           # (batch, 4*hidden)
        if peephole:
            # i and f at once: W h + W x + b + w_c ⊙ c_{t-1} for both, then one sigmoid.
            both = torch.sigmoid(torch.addcmul(pre[:, :2 * H].view(-1, 2, H), w_cif, c.unsqueeze(1)))
            input_gate, forget = both.unbind(1)        # each (batch, hidden)
        else:
            # One sigmoid over i, f and o at once: fewer kernel launches per step.
            input_gate, forget, _, output = torch.sigmoid(pre).split(H, dim=1)
        candidate = torch.tanh(pre[:, 2 * H:3 * H])
        if clamp is not None:
            input_gate, forget, candidate = (clamp.apply(n, t, v) for n, v in
                                             zip(GATES, (input_gate, forget, candidate)))
        c = torch.addcmul(forget * c, input_gate, candidate)
        if peephole:
            output = torch.sigmoid(torch.addcmul(pre[:, 3 * H:], w_co, c))
        if clamp is not None:
            output = clamp.apply("output", t, output)
        h = output * torch.tanh(c)
        out.hidden.append(h)
        out.cell.append(c)
        if keep_gates:
            for name, value in zip(GATES, (input_gate, forget, candidate, output)):
                out.gates[name].append(keep(value))
    return out


def _unroll_fused(x, w, h, c) -> LayerStates:
    """h_t from nn.LSTM's own kernel (its loop is in C++, or cuDNN), then every gate of every
    step in one matmul from h_{t-1}: only c_t = f_t c_{t-1} + i_t g_t stays a Python loop, one
    operation a step where the step-by-step unroll takes ten."""
    B, T, _ = x.shape
    H = h.shape[-1]
    hidden = _fused_hidden(x, w, h, c)                               # (batch, time, hidden)
    proj = input_projection(x, w, fold_hh_bias=True)                 # (batch, time, 4*hidden)
    pre = torch.addmm(proj.flatten(0, 1), previous(hidden, h).flatten(0, 1), w.weight_hh.t())
    gates = torch.sigmoid(pre).view(B, T, 4 * H)                    # (batch, time, 4*hidden): i, f, ·, o
    gates[..., 2 * H:3 * H] = torch.tanh(pre.view(B, T, 4 * H)[..., 2 * H:3 * H])   # g
    input_gate, forget, candidate, output = gates.split(H, dim=2)
    cell = (input_gate * candidate).transpose(0, 1).contiguous()     # (time, batch, hidden), i_t g_t so far
    c_previous = c
    for cell_t, forget_t in zip(cell.unbind(0), forget.unbind(1)):
        c_previous = cell_t.addcmul_(forget_t, c_previous)
    return LayerStates(hidden=hidden, cell=cell.transpose(0, 1), saved={},
                       gates=dict(zip(GATES, (input_gate, forget, candidate, output))))


def _fused_hidden(x, w, h, c):
    """h_t of every step from PyTorch's own LSTM kernel with this layer's weights."""
    params = [w.weight_ih, w.weight_hh] + ([w.bias_ih, w.bias_hh] if w.bias_ih is not None else [])
    run = lambda: torch.lstm(x, (h.unsqueeze(0), c.unsqueeze(0)), params, w.bias_ih is not None,  # noqa: E731
                             1, 0.0, False, False, True)[0]
    if not x.is_cuda:
        return run()
    # cuDNN asks for one weight buffer; a trace reads, it does not train. Only here: catching
    # warnings swaps the process's filters, which a probe thread must not do under another's.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "RNN module weights are not part of single contiguous chunk")
        return run()


def _unroll_in_place(x, w, h, c, keep_gates=True) -> LayerStates:
    """The peephole LSTM's loop with no autograd: every step's tensors are written into
    time-major buffers through views taken once, so a step is ten operations and no more
    (each is a dispatch of some microseconds, which at this size is the whole cost). Where
    the compiled step can run (cells/native.py) it does, and keep_gates=False then keeps none;
    PyTorch's loop keeps them either way."""
    B, T, _ = x.shape
    H = h.shape[-1]
    w_ci, w_cf, w_co = (w.extra[f"weight_c{g}"] for g in "ifo")          # each (hidden,)
    if native.usable(x, h, c, w.weight_hh, w_ci, w_cf, w_co):
        return native.layer_unroll("peephole", x, w, h, c, keep_gates)  # the same loop, each step compiled
    pre = input_projection(x, w, fold_hh_bias=True, time_major=True)   # (time, batch, 4*hidden)
    w_cif = torch.stack([w_ci, w_cf])                                   # (2, hidden): both see c_{t-1}
    w_hh_t = w.weight_hh.t()                                            # (hidden, 4*hidden)
    gates = torch.empty_like(pre)                                       # (time, batch, 4*hidden): i, f, g, o
    cell, tanh_cell, hidden = (pre.new_empty(T, B, H) for _ in range(3))  # each (time, batch, hidden)
    by_step = lambda t: t.unbind(0)                                      # noqa: E731 - T views, taken once
    pre_t, pre_if, pre_g, pre_o = (by_step(v) for v in (pre, pre[..., :2 * H].unflatten(2, (2, H)),
                                                        pre[..., 2 * H:3 * H], pre[..., 3 * H:]))
    gate_if, gate_g, gate_o = (by_step(v) for v in (gates[..., :2 * H].unflatten(2, (2, H)),
                                                    gates[..., 2 * H:3 * H], gates[..., 3 * H:]))
    gate_i, gate_f = by_step(gates[..., :H]), by_step(gates[..., H:2 * H])
    cell_t, tanh_t, hidden_t = by_step(cell), by_step(tanh_cell), by_step(hidden)
    seen = (c.unsqueeze(1), *by_step(cell.unsqueeze(2)))                # c_{t-1} as (batch, 1, hidden)
    c_previous = c
    for t in range(T):
        pre_t[t].addmm_(h, w_hh_t)
        torch.sigmoid(pre_if[t].addcmul_(w_cif, seen[t]), out=gate_if[t])    # i, f see c_{t-1}
        torch.tanh(pre_g[t], out=gate_g[t])
        c_previous = torch.mul(gate_f[t], c_previous, out=cell_t[t]).addcmul_(gate_i[t], gate_g[t])
        torch.sigmoid(pre_o[t].addcmul_(w_co, c_previous), out=gate_o[t])   # o sees c_t
        h = torch.mul(gate_o[t], torch.tanh(c_previous, out=tanh_t[t]), out=hidden_t[t])
    batch_major = lambda v: v.transpose(0, 1)                          # noqa: E731 - (batch, time, ...) views
    return LayerStates(hidden=batch_major(hidden), cell=batch_major(cell), saved={"tanh_cell": batch_major(tanh_cell)},
                       gates={name: batch_major(v) for name, v in zip(GATES, gates.split(H, dim=2))})


def backprop(u, w, grad_output, h0, c0, peephole=False, grad_cell_last=None,
             clamp: LayerClamp | None = None) -> LayerGradients:
    """BPTT by hand: the factors that do not depend on the incoming gradient for all steps at
    once, then only what must be sequential. Measured about twice as fast as autograd through
    the unroll, which pays per graph node. grad_cell_last: dL/dc_T from outside the layer (its
    final cell state used downstream), if any. clamp: the gates the unroll held constant, whose
    pre-activations get no gradient."""
    # Every factor time-major, written once where the loop reads it: the unrolls keep their
    # tensors time-major underneath, so these are views, and each pass over (time, batch,
    # hidden) costs about a millisecond here (half of this function's time went on such passes).
    time_major = lambda v: v.transpose(0, 1)                        # noqa: E731 - (time, batch, ...) views
    if peephole and clamp is None and native.usable(u.cell, grad_output, w.weight_hh):
        return native.layer_backprop("peephole", u, w, grad_output, c0, grad_cell_last)
    i, f, g, o = (time_major(u.gates[n]) for n in GATES)
    c = time_major(u.cell)
    T, B, H = c.shape
    tanh_c = time_major(u.saved["tanh_cell"]) if "tanh_cell" in u.saved else torch.tanh(c)  # (an unroll may keep it)
    slope = lambda s: torch.addcmul(s, s, s, value=-1)              # noqa: E731 - σ' = s(1 - s), one pass
    to_pre = c.new_empty(T, B, 3, H)                                # dc_t -> pre-activations of i, f, g
    torch.mul(g, slope(i), out=to_pre[:, :, 0])
    c_previous = previous(c, c0, time_dim=0)                        # (time, batch, hidden)
    torch.mul(c_previous, slope(f), out=to_pre[:, :, 1])
    torch.mul(i, torch.addcmul(c.new_ones(()), g, g, value=-1), out=to_pre[:, :, 2])
    to_output = tanh_c * slope(o)                                   # dh_t -> output gate pre-activation
    if clamp is not None:                                           # before the peepholes fold them in
        for block, name in enumerate(GATES[:3]):
            to_pre[:, :, block] = freed(to_pre[:, :, block], clamp, name, time_major=True)
        to_output = freed(to_output, clamp, "output", time_major=True)
    to_cell = torch.addcmul(o, o * tanh_c, tanh_c, value=-1)        # dh_t -> dc_t: o (1 - tanh² c_t)
    decay = f                                                       # dc_t -> dc_{t-1}, directly
    if peephole:
        # The peepholes' paths folded into the factors, so the loop does not pay for them:
        # c_t reaches o_t (w_co), and c_{t-1} reaches i_t and f_t (w_ci, w_cf).
        w_ci, w_cf, w_co = (w.extra[f"weight_c{g}"] for g in "ifo")
        to_cell.addcmul_(to_output, w_co)
        decay = torch.addcmul(f, to_pre[:, :, 0], w_ci).addcmul_(to_pre[:, :, 1], w_cf)
    # Every step's gradients written in place (out=) through per-step views taken once before
    # the loop: 5 operations a step, peepholes or not, and nothing else, since at this size each
    # operation, a view included, costs its dispatch and little more.
    to_cell, to_pre, to_output, decay = (v.unbind(0) for v in (to_cell, to_pre, to_output, decay))
    grad_h = grad_output.transpose(0, 1).contiguous()                # (time, batch, hidden): dL/dh_t from above so far
    grad_c, grad_pre = c.new_empty(T, B, H), c.new_empty(T, B, 4 * H)
    dh_t, dc_t, d_pre_t = grad_h.unbind(0), grad_c.unbind(0), grad_pre.unbind(0)
    dc_wide = grad_c.unsqueeze(2).unbind(0)                        # dc_t as (batch, 1, hidden)
    d_gates = grad_pre[..., :3 * H].unflatten(2, (3, H)).unbind(0)  # δ of i, f, g (batch, 3, hidden)
    d_output = grad_pre[..., 3 * H:].unbind(0)
    dc_next = c.new_zeros(B, H) if grad_cell_last is None else grad_cell_last
    carried = c.new_empty(B, H)                                    # dL/dc_{t-1} through c_t, step by step
    for t in reversed(range(T)):
        dh = dh_t[t]
        if t < T - 1:                                              # and the next step's term through W_hh
            dh.addmm_(d_pre_t[t + 1], w.weight_hh)
        torch.mul(dh, to_output[t], out=d_output[t])
        dc = torch.addcmul(dc_next, dh, to_cell[t], out=dc_t[t])
        torch.mul(dc_wide[t], to_pre[t], out=d_gates[t])
        dc_next = torch.mul(dc, decay[t], out=carried)
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
