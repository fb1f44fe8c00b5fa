"""The recurrent cells written out step by step, so every gate can be kept.

One function per cell unrolls one layer over a whole sequence. Gate order and
conventions are PyTorch's — (i, f, g, o) for the LSTM, (r, z, n) for the GRU — so the
same parameters give the same numbers as nn.LSTM / nn.GRU / nn.RNN.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

CELLS = ("lstm", "peephole", "gru", "rnn_tanh", "rnn_relu")

GATE_NAMES = {
    "lstm": ("input", "forget", "candidate", "output"),
    "peephole": ("input", "forget", "candidate", "output"),
    "gru": ("reset", "update", "candidate"),
    "rnn_tanh": (),
    "rnn_relu": (),
}


@dataclass
class LayerWeights:
    """One layer's parameters in PyTorch's layout; biases and peepholes may be None."""

    weight_ih: Tensor                 # (gates*hidden, input)
    weight_hh: Tensor                 # (gates*hidden, hidden)
    bias_ih: Tensor | None = None     # (gates*hidden,)
    bias_hh: Tensor | None = None     # (gates*hidden,)
    peephole_input: Tensor | None = None    # (hidden,) w_ci: c_{t-1} -> i
    peephole_forget: Tensor | None = None   # (hidden,) w_cf: c_{t-1} -> f
    peephole_output: Tensor | None = None   # (hidden,) w_co: c_t -> o


@dataclass
class LayerUnroll:
    """Per-step tensors of one layer: lists of length time, each (batch, hidden)."""

    hidden: list[Tensor]
    cell: list[Tensor] | None
    gates: dict[str, list[Tensor]] = field(default_factory=dict)
    # GRU only, kept with the gates for the backward pass: W_hn h_{t-1} + b_hn.
    recurrent_candidate: list[Tensor] = field(default_factory=list)

    def stack(self) -> "LayerStates":
        """The same tensors stacked over time, each once."""
        stacked = lambda steps: torch.stack(steps, dim=1) if steps else None  # noqa: E731
        return LayerStates(hidden=stacked(self.hidden), cell=stacked(self.cell),
                           gates={name: stacked(v) for name, v in self.gates.items()},
                           recurrent_candidate=stacked(self.recurrent_candidate))


@dataclass
class LayerStates:
    """One layer's per-step tensors stacked over time: each (batch, time, hidden)."""

    hidden: Tensor
    cell: Tensor | None
    gates: dict[str, Tensor]
    recurrent_candidate: Tensor | None


def _input_projection(x: Tensor, w: LayerWeights, fold_hh_bias: bool) -> Tensor:
    # The input term of every gate for all steps in one matmul: the cheap part of the
    # unroll, taken out of the sequential loop.
    proj = torch.matmul(x, w.weight_ih.t())  # (batch, time, gates*hidden)
    if w.bias_ih is not None:
        proj = proj + w.bias_ih
    if fold_hh_bias and w.bias_hh is not None:
        proj = proj + w.bias_hh
    return proj


def unroll(kind: str, x: Tensor, w: LayerWeights, h0: Tensor, c0: Tensor | None = None,
           keep_gates: bool = True) -> LayerUnroll:
    """Run one layer of cell `kind` over x (batch, time, input) from state h0 (and c0).

    The returned hidden (and cell) tensors are the very tensors later steps and layers
    consume, so autograd gradients taken with respect to them are total derivatives.
    """
    if kind in ("lstm", "peephole"):
        return _lstm(x, w, h0, c0, kind == "peephole", keep_gates)
    if kind == "gru":
        return _gru(x, w, h0, keep_gates)
    if kind in ("rnn_tanh", "rnn_relu"):
        return _rnn(x, w, h0, torch.tanh if kind == "rnn_tanh" else torch.relu)
    raise ValueError(f"unknown cell {kind!r}; expected one of {CELLS}")


def _kept():
    # Gates are recorded, never differentiated; detaching costs a dispatch per gate per
    # step, so only do it when autograd is recording (training the peephole LSTM).
    return (lambda t: t.detach()) if torch.is_grad_enabled() else (lambda t: t)


def _lstm(x, w, h, c, peephole, keep_gates):
    kept = _kept()
    hidden_size = h.shape[-1]
    proj = _input_projection(x, w, fold_hh_bias=True)  # (batch, time, 4*hidden)
    w_hh_t = w.weight_hh.t()                            # (hidden, 4*hidden)
    out = LayerUnroll(hidden=[], cell=[],
                      gates={g: [] for g in GATE_NAMES["lstm"]} if keep_gates else {})
    H = hidden_size
    for proj_t in proj.unbind(1):                      # one view per step, taken once
        pre = torch.addmm(proj_t, h, w_hh_t)           # (batch, 4*hidden)
        if peephole:
            input_gate = torch.sigmoid(pre[:, :H] + w.peephole_input * c)
            forget = torch.sigmoid(pre[:, H:2 * H] + w.peephole_forget * c)
        else:
            # One sigmoid over i, f and o at once: fewer kernel launches per step.
            input_gate, forget, _, output = torch.sigmoid(pre).split(H, dim=1)
        candidate = torch.tanh(pre[:, 2 * H:3 * H])
        c = torch.addcmul(forget * c, input_gate, candidate)
        if peephole:
            output = torch.sigmoid(pre[:, 3 * H:] + w.peephole_output * c)
        h = output * torch.tanh(c)
        out.hidden.append(h)
        out.cell.append(c)
        if keep_gates:
            for name, value in zip(GATE_NAMES["lstm"], (input_gate, forget, candidate, output)):
                out.gates[name].append(kept(value))
    return out


def _gru(x, w, h, keep_gates):
    kept = _kept()
    H = h.shape[-1]
    # b_hr and b_hz may be folded into the input term; b_hn may not, because the reset
    # gate multiplies it: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
    proj = _input_projection(x, w, fold_hh_bias=False)  # (batch, time, 3*hidden)
    b_hn = None
    if w.bias_hh is not None:
        proj = proj + torch.cat([w.bias_hh[:2 * H], torch.zeros_like(w.bias_hh[2 * H:])])
        b_hn = w.bias_hh[2 * H:]
    w_hh_t = w.weight_hh.t()                            # (hidden, 3*hidden)
    out = LayerUnroll(hidden=[], cell=None,
                      gates={g: [] for g in GATE_NAMES["gru"]} if keep_gates else {})
    for proj_t in proj.unbind(1):
        rec = h @ w_hh_t                                # (batch, 3*hidden)
        rz = torch.sigmoid(proj_t[:, :2 * H] + rec[:, :2 * H])
        reset, update = rz[:, :H], rz[:, H:]
        rec_n = rec[:, 2 * H:] if b_hn is None else rec[:, 2 * H:] + b_hn
        candidate = torch.tanh(torch.addcmul(proj_t[:, 2 * H:], reset, rec_n))
        # PyTorch's convention: an update gate near 1 keeps the old state.
        h = candidate + update * (h - candidate)
        out.hidden.append(h)
        if keep_gates:
            for name, value in zip(GATE_NAMES["gru"], (reset, update, candidate)):
                out.gates[name].append(kept(value))
            out.recurrent_candidate.append(kept(rec_n))
    return out


def _rnn(x, w, h, nonlinearity):
    proj = _input_projection(x, w, fold_hh_bias=True)  # (batch, time, hidden)
    w_hh_t = w.weight_hh.t()                            # (hidden, hidden)
    out = LayerUnroll(hidden=[], cell=None)
    for proj_t in proj.unbind(1):
        h = nonlinearity(torch.addmm(proj_t, h, w_hh_t))
        out.hidden.append(h)
    return out


@dataclass
class LayerGradients:
    """Total derivatives of the loss, each (batch, time, size)."""

    hidden: Tensor            # dL/dh_t through every later step and layer
    cell: Tensor | None       # dL/dc_t, LSTMs only
    input: Tensor             # dL/dx_t of this layer's input


def backprop(kind: str, u: LayerStates, w: LayerWeights, grad_output: Tensor, h0: Tensor,
             c0: Tensor | None = None) -> LayerGradients:
    """Back-propagate through one unrolled layer by hand (BPTT), without autograd.

    `u` is unroll(..., keep_gates=True).stack(): the gates are the saved activations.
    grad_output (batch, time, hidden) is dL/dh_t from outside the recurrence (the loss, or
    the layer above). Every factor that does not depend on the incoming gradient is
    computed for all steps at once; the loop over time keeps only what must be sequential.
    Measured about twice as fast as autograd through the unroll, which pays per graph node.
    """
    with torch.no_grad():
        if kind in ("lstm", "peephole"):
            return _lstm_backward(u, w, grad_output, c0, kind == "peephole")
        if kind == "gru":
            return _gru_backward(u, w, grad_output, h0)
        return _rnn_backward(u, w, grad_output, kind)


def _previous(states: Tensor, initial: Tensor) -> Tensor:
    """States shifted one step later: s_{t-1} at index t, the initial state at 0."""
    return torch.cat([initial.unsqueeze(1), states[:, :-1]], dim=1)


def _steps(*tensors: Tensor):
    """Per-step views (batch, size) of (batch, time, size) tensors, last step first."""
    return zip(*(reversed(t.unbind(1)) for t in tensors))


def _stacked(reversed_steps: list[Tensor]) -> Tensor:
    return torch.stack(reversed_steps[::-1], dim=1)      # (batch, time, size)


def _lstm_backward(u, w, grad_output, c0, peephole):
    i, f, g, o = (u.gates[n] for n in GATE_NAMES["lstm"])  # each (batch, time, hidden)
    c = u.cell
    tanh_c = torch.tanh(c)
    B, T, H = c.shape
    to_cell = o * (1 - tanh_c ** 2)                       # dh_t -> dc_t through h_t = o tanh(c_t)
    to_pre = torch.stack([g * i * (1 - i),                # dc_t -> input gate pre-activation
                          _previous(c, c0) * f * (1 - f), # dc_t -> forget gate pre-activation
                          i * (1 - g ** 2)], dim=2)       # dc_t -> candidate pre-activation (batch, time, 3, H)
    to_pre = to_pre.reshape(B, T, 3 * H)
    to_output = tanh_c * o * (1 - o)                      # dh_t -> output gate pre-activation
    grad_h, grad_c, grad_pre = [], [], []
    dh_rec, dc_next = c.new_zeros(B, H), c.new_zeros(B, H)
    for ext, to_c, to_ifg, to_o, forget in _steps(grad_output, to_cell, to_pre, to_output, f):
        dh = ext + dh_rec
        d_output = dh * to_o
        dc = torch.addcmul(dc_next, dh, to_c)
        if peephole:
            dc = torch.addcmul(dc, d_output, w.peephole_output)
        d_ifg = dc.repeat(1, 3) * to_ifg                  # (batch, 3*hidden)
        d_pre = torch.cat([d_ifg, d_output], dim=1)       # (batch, 4*hidden)
        dh_rec = d_pre @ w.weight_hh
        dc_next = dc * forget
        if peephole:
            dc_next = dc_next + d_ifg[:, :H] * w.peephole_input + d_ifg[:, H:2 * H] * w.peephole_forget
        grad_h.append(dh)
        grad_c.append(dc)
        grad_pre.append(d_pre)
    return LayerGradients(_stacked(grad_h), _stacked(grad_c), _stacked(grad_pre) @ w.weight_ih)


def _gru_backward(u, w, grad_output, h0):
    r, z, n = (u.gates[name] for name in GATE_NAMES["gru"])  # each (batch, time, hidden)
    h = u.hidden
    rec_n = u.recurrent_candidate                         # W_hn h_{t-1} + b_hn
    H = h.shape[-1]
    to_update = (_previous(h, h0) - n) * z * (1 - z)      # dh_t -> update gate pre-activation
    to_candidate = (1 - z) * (1 - n ** 2)                 # dh_t -> candidate pre-activation
    to_reset = rec_n * r * (1 - r)                        # candidate pre-act. -> reset pre-activation
    grad_h, grad_input_pre = [], []                       # the latter w.r.t. W_ih x + b_ih, gates (r, z, n)
    dh_rec = h.new_zeros(h.shape[0], H)
    for ext, to_z, to_n, to_r, reset, update in _steps(grad_output, to_update, to_candidate, to_reset, r, z):
        dh = ext + dh_rec
        d_update = dh * to_z
        d_candidate = dh * to_n
        d_reset = d_candidate * to_r
        grad_input_pre.append(torch.cat([d_reset, d_update, d_candidate], dim=1))
        d_recurrent = torch.cat([d_reset, d_update, d_candidate * reset], dim=1)  # w.r.t. W_hh h + b_hh
        dh_rec = torch.addmm(dh * update, d_recurrent, w.weight_hh)
        grad_h.append(dh)
    return LayerGradients(_stacked(grad_h), None, _stacked(grad_input_pre) @ w.weight_ih)


def _rnn_backward(u, w, grad_output, kind):
    h = u.hidden                                          # (batch, time, hidden)
    slope = 1 - h ** 2 if kind == "rnn_tanh" else (h > 0).to(h.dtype)
    grad_h, grad_pre = [], []
    dh_rec = h.new_zeros(h.shape[0], h.shape[2])
    for ext, slope_t in _steps(grad_output, slope):
        dh = ext + dh_rec
        d_pre = dh * slope_t
        dh_rec = d_pre @ w.weight_hh
        grad_h.append(dh)
        grad_pre.append(d_pre)
    return LayerGradients(_stacked(grad_h), None, _stacked(grad_pre) @ w.weight_ih)
