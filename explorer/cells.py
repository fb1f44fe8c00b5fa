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


def _lstm(x, w, h, c, peephole, keep_gates):
    hidden_size = h.shape[-1]
    proj = _input_projection(x, w, fold_hh_bias=True)  # (batch, time, 4*hidden)
    w_hh_t = w.weight_hh.t()                            # (hidden, 4*hidden)
    out = LayerUnroll(hidden=[], cell=[],
                      gates={g: [] for g in GATE_NAMES["lstm"]} if keep_gates else {})
    H = hidden_size
    for t in range(x.shape[1]):
        pre = torch.addmm(proj[:, t], h, w_hh_t)        # (batch, 4*hidden)
        if peephole:
            input_gate = torch.sigmoid(pre[:, :H] + w.peephole_input * c)
            forget = torch.sigmoid(pre[:, H:2 * H] + w.peephole_forget * c)
        else:
            # One sigmoid over i, f and o at once: fewer kernel launches per step.
            sig = torch.sigmoid(pre)
            input_gate, forget, output = sig[:, :H], sig[:, H:2 * H], sig[:, 3 * H:]
        candidate = torch.tanh(pre[:, 2 * H:3 * H])
        c = forget * c + input_gate * candidate
        if peephole:
            output = torch.sigmoid(pre[:, 3 * H:] + w.peephole_output * c)
        h = output * torch.tanh(c)
        out.hidden.append(h)
        out.cell.append(c)
        if keep_gates:
            for name, value in zip(GATE_NAMES["lstm"], (input_gate, forget, candidate, output)):
                out.gates[name].append(value.detach())
    return out


def _gru(x, w, h, keep_gates):
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
    for t in range(x.shape[1]):
        rec = h @ w_hh_t                                # (batch, 3*hidden)
        rz = torch.sigmoid(proj[:, t, :2 * H] + rec[:, :2 * H])
        reset, update = rz[:, :H], rz[:, H:]
        rec_n = rec[:, 2 * H:] if b_hn is None else rec[:, 2 * H:] + b_hn
        candidate = torch.tanh(proj[:, t, 2 * H:] + reset * rec_n)
        # PyTorch's convention: an update gate near 1 keeps the old state.
        h = candidate + update * (h - candidate)
        out.hidden.append(h)
        if keep_gates:
            for name, value in zip(GATE_NAMES["gru"], (reset, update, candidate)):
                out.gates[name].append(value.detach())
    return out


def _rnn(x, w, h, nonlinearity):
    proj = _input_projection(x, w, fold_hh_bias=True)  # (batch, time, hidden)
    w_hh_t = w.weight_hh.t()                            # (hidden, hidden)
    out = LayerUnroll(hidden=[], cell=None)
    for t in range(x.shape[1]):
        h = nonlinearity(torch.addmm(proj[:, t], h, w_hh_t))
        out.hidden.append(h)
    return out
