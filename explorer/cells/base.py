"""What every cell shares: its registry entry (`Cell`), the per-step tensors of an unroll and
of its backward pass, a module base for cells with no fused kernel, and the pieces a cell's
Step-through equations are written with.

A cell module (lstm.py, gru.py, ...) writes its own equations three times, each as the
equations read: forward step by step (`unroll`), backward by hand (`backprop`), and one unit
at one step with the real numbers (`step`). cells/__init__.py lists the entries.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class LayerWeights:
    """One layer's parameters in PyTorch's layout; biases may be None."""

    weight_ih: Tensor                 # (blocks*hidden, input)
    weight_hh: Tensor                 # (blocks*hidden, hidden)
    bias_ih: Tensor | None = None     # (blocks*hidden,)
    bias_hh: Tensor | None = None     # (blocks*hidden,)
    extra: dict[str, Tensor] = field(default_factory=dict)  # a cell's own, e.g. peepholes "weight_ci" (hidden,)


def layer_weights(module: nn.Module, k: int) -> LayerWeights:
    """Layer k's parameters of any recurrent module that names them as nn.LSTM does
    (`weight_ih_l0`, ...); parameters of its own (`weight_ci_l0`) go to `extra`."""
    found = {}
    for name, p in module.named_parameters(recurse=False):
        base, _, layer = name.rpartition("_l")
        if layer == str(k):
            found[base] = p
    core = {n: found.pop(n, None) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    return LayerWeights(**core, extra=found)


@dataclass
class LayerUnroll:
    """Per-step tensors of one layer: lists of length time, each (batch, hidden)."""

    hidden: list[Tensor]
    cell: list[Tensor] | None
    gates: dict[str, list[Tensor]] = field(default_factory=dict)
    # What a cell's backward pass needs beyond its gates (the GRU's W_hn h_{t-1} + b_hn).
    saved: dict[str, list[Tensor]] = field(default_factory=dict)

    def stack(self) -> "LayerStates":
        """The same tensors stacked over time, each once."""
        stacked = lambda steps: torch.stack(steps, dim=1) if steps else None  # noqa: E731
        return LayerStates(hidden=stacked(self.hidden), cell=stacked(self.cell),
                           gates={name: stacked(v) for name, v in self.gates.items()},
                           saved={name: stacked(v) for name, v in self.saved.items()})


@dataclass
class LayerStates:
    """One layer's per-step tensors stacked over time: each (batch, time, hidden)."""

    hidden: Tensor
    cell: Tensor | None
    gates: dict[str, Tensor]
    saved: dict[str, Tensor]

    def stack(self) -> "LayerStates":
        """Already stacked: an unroll that writes into buffers over time returns these, and
        its callers take either kind through `stack()`."""
        return self


@dataclass
class LayerGradients:
    """Total derivatives of the loss, each (batch, time, size)."""

    hidden: Tensor            # dL/dh_t through every later step and layer
    cell: Tensor | None       # dL/dc_t, cells with a cell state only
    input: Tensor             # dL/dx_t of this layer's input
    pre: Tensor | None = None  # dL/d(pre-activations) (batch, time, blocks*hidden), where a cell gives them
    # dL/d(W_hh h_{t-1} + b_hh), block by block (batch, time, blocks*hidden), so that
    # dL/dW_hh = Σ_t δ_t h_{t-1}ᵀ; None where it is `pre` (every cell but the GRU, whose reset
    # gate multiplies the candidate's recurrent term).
    recurrent: Tensor | None = None
    # The gradients of the cell's own per-layer parameters (the peepholes), where the backward
    # pass summed them as it went; else the layer's `extra_grads` takes them from `pre`.
    extra: dict[str, Tensor] | None = None

    @property
    def recurrent_delta(self) -> Tensor:
        return self.pre if self.recurrent is None else self.recurrent


@dataclass
class LayerClamp:
    """The gates one layer holds constant (a what-if, explorer.clamp): for each gate, its value
    and where, as a (time, hidden) bool mask. A clamped gate is a constant: its value replaces
    the computed one in the unroll, and no gradient flows into its pre-activation."""

    fixed: dict[str, tuple[float, Tensor]]   # gate -> (value, mask (time, hidden) bool)

    def apply(self, name: str, t: int, gate: Tensor) -> Tensor:
        """gate (batch, hidden) at step t with the clamped units replaced by the value."""
        if name not in self.fixed:
            return gate
        value, mask = self.fixed[name]
        return torch.where(mask[t], torch.tensor(value, dtype=gate.dtype, device=gate.device), gate)


def freed(factor: Tensor, clamp: LayerClamp | None, name: str, time_major: bool = False) -> Tensor:
    """factor (a gate's derivative with respect to its pre-activation, times what it multiplies;
    (batch, time, hidden), or time-major) with the gate's clamped positions zeroed: a constant
    passes no gradient back to its pre-activation."""
    if clamp is None or name not in clamp.fixed:
        return factor
    free = ~clamp.fixed[name][1]                                   # (time, hidden)
    return factor * free.unsqueeze(1 if time_major else 0).to(factor.dtype)


def input_projection(x: Tensor, w: LayerWeights, fold_hh_bias: bool, time_major: bool = False) -> Tensor:
    """The input term of every gate for all steps in one matmul: the cheap part of the
    unroll, taken out of the sequential loop. One addmm with the biases summed first: the
    result is the size of every gate at every step, and each extra pass over it (a bias added,
    a transpose made contiguous) cost as much as the matmul (fresh pages for a big tensor).
    time_major: laid out (time, batch, blocks*hidden), each step's rows one contiguous block."""
    rows = x.transpose(0, 1) if time_major else x                   # (time, batch, input) or (batch, time, input)
    flat = rows.reshape(-1, x.shape[-1])                             # copies only x, the small input
    bias = w.bias_ih
    if fold_hh_bias and w.bias_hh is not None:
        bias = bias + w.bias_hh if bias is not None else w.bias_hh
    proj = flat @ w.weight_ih.t() if bias is None else torch.addmm(bias, flat, w.weight_ih.t())
    return proj.view(*rows.shape[:2], -1)                             # (.., .., blocks*hidden)


def kept():
    """Gates are recorded, never differentiated; detaching costs a dispatch per gate per
    step, so only do it when autograd is recording (training a cell with no fused kernel)."""
    return (lambda t: t.detach()) if torch.is_grad_enabled() else (lambda t: t)


def previous(states: Tensor, initial: Tensor, time_dim: int = 1) -> Tensor:
    """States shifted one step later: s_{t-1} at index t, the initial state at 0 (time along
    `time_dim`: 1 batch-first, 0 time-major)."""
    earlier = states.narrow(time_dim, 0, states.shape[time_dim] - 1)
    return torch.cat([initial.unsqueeze(time_dim), earlier], dim=time_dim)


def steps_backwards(*tensors: Tensor):
    """Per-step views (batch, size) of (batch, time, size) tensors, last step first."""
    return zip(*(reversed(t.unbind(1)) for t in tensors))


def stacked(reversed_steps: list[Tensor]) -> Tensor:
    return torch.stack(reversed_steps[::-1], dim=1)      # (batch, time, size)


# -- cells with no fused kernel ---------------------------------------------------------------

class _HandWritten(torch.autograd.Function):
    """One layer of a cell with no fused kernel, trained through its own equations: the unroll
    forward, then the hand-written backward (`backprop`) instead of autograd through every
    step's graph node. The weight gradients are sums over time of the pre-activation
    gradients δ_t times the step's input, previous state (and, for peepholes, cell state)."""

    @staticmethod
    def forward(ctx, module, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, *extra):
        w = LayerWeights(weight_ih, weight_hh, bias_ih, bias_hh, dict(zip(module.extra, extra)))
        states = module.unroll(x, w, h0, c0, True).stack()     # each (batch, time, hidden)
        # h_t is this function's output: kept on ctx itself it would make a reference cycle
        # (output -> its grad_fn, this ctx -> output), which only Python's cycle collector
        # frees, and it seldom runs: a run's memory grew by a step's activations every step
        # (tests/test_unrolled.py). save_for_backward keeps an output without the cycle.
        ctx.module, ctx.w, ctx.states = module, w, replace(states, hidden=None)
        ctx.save_for_backward(x, h0, c0, states.hidden)
        return states.hidden, states.cell[:, -1]              # (batch, time, hidden), c_T (batch, hidden)

    @staticmethod
    def backward(ctx, grad_hidden, grad_cell_last):
        x, h0, c0, hidden = ctx.saved_tensors
        module, w, states = ctx.module, ctx.w, replace(ctx.states, hidden=hidden)
        grads = module.backprop(states, w, grad_hidden, h0, c0, grad_cell_last=grad_cell_last)
        # Sums over time and batch, taken time-major: the hand-written backward's buffers are,
        # so δ is a view and only the small input is copied.
        delta = grads.pre.transpose(0, 1).reshape(-1, grads.pre.shape[-1])          # (time*batch, blocks*hidden)
        grad_ih = delta.t() @ x.transpose(0, 1).reshape(-1, x.shape[-1])            # (blocks*hidden, input)
        h_previous = previous(states.hidden.transpose(0, 1), h0, time_dim=0)         # (time, batch, hidden)
        grad_hh = delta.t() @ h_previous.flatten(0, 1)                               # (blocks*hidden, hidden)
        grad_bias = delta.sum(0) if w.bias_ih is not None else None                  # (blocks*hidden,)
        extra = grads.extra if grads.extra is not None else (
            module.extra_grads(states, grads.pre, c0) if module.extra else {})
        # (each bias its own tensor: one .grad aliasing another would be scaled twice in place)
        return (None, grads.input, None, None, grad_ih, grad_hh, grad_bias,
                grad_bias.clone() if grad_bias is not None else None,
                *(extra[name] for name in module.extra))


class UnrolledRNN(nn.Module):
    """nn.LSTM's constructor, parameter names and forward, for a cell that trains through its
    own step-by-step unroll (the same one `trace` instruments). A subclass sets `blocks`
    (gate blocks in W_ih and W_hh), `extra` (per-layer (hidden,) parameters of its own),
    `has_cell`, `unroll`, and `backprop` (with `extra_grads` for its own parameters) to train
    through the hand-written backward: measured here, 1.4x the steps/s of autograd through the
    unroll for the peephole LSTM (docs/PERFORMANCE.md)."""

    blocks: int = 4
    extra: tuple[str, ...] = ()
    has_cell: bool = True
    unroll: Callable = staticmethod(lambda x, w, h0, c0, keep_gates: None)
    backprop: Callable | None = None
    # (states, dL/d pre-activations (batch, time, blocks*hidden), c0) -> {extra name: gradient}
    extra_grads: Callable = staticmethod(lambda states, grad_pre, c0: {})

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        if bidirectional:
            raise ValueError(f"{name} does not support bidirectional=True")
        if proj_size:
            raise ValueError(f"{name} does not support proj_size > 0")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = False
        self.proj_size = 0
        factory = {"device": device, "dtype": dtype}
        rows = self.blocks * hidden_size
        for k in range(num_layers):
            layer_input = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(rows, layer_input, **factory)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(rows, hidden_size, **factory)))
            if bias:
                self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(rows, **factory)))
                self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(rows, **factory)))
            for extra in self.extra:
                self.register_parameter(f"{extra}_l{k}", nn.Parameter(torch.empty(hidden_size, **factory)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.LSTM's initialisation, extended to the cell's own parameters.
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, input: Tensor, hx=None):
        unbatched = input.dim() == 2
        x = input.unsqueeze(0 if self.batch_first else 1) if unbatched else input
        if not self.batch_first:
            x = x.transpose(0, 1)                      # (batch, time, input)
        if hx is None:
            zeros = x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)  # (layers, batch, hidden)
            hx = (zeros, zeros) if self.has_cell else zeros
        elif unbatched:
            hx = tuple(s.unsqueeze(1) for s in hx) if self.has_cell else hx.unsqueeze(1)
        h0, c0 = hx if self.has_cell else (hx, None)
        h_n, c_n = [], []
        for k in range(self.num_layers):
            if k > 0 and self.training and self.dropout > 0:
                x = nn.functional.dropout(x, self.dropout, training=True)
            w = layer_weights(self, k)
            h0_k, c0_k = h0[k], c0[k] if self.has_cell else None
            if self._hand_written(h0_k, c0_k):
                x, c_last = _HandWritten.apply(self, x, h0_k, c0_k, w.weight_ih, w.weight_hh, w.bias_ih,
                                               w.bias_hh, *(w.extra[name] for name in self.extra))
                h_n.append(x[:, -1])
                c_n.append(c_last)
                continue
            states = self.unroll(x, w, h0_k, c0_k, False).stack()
            x = states.hidden                          # (batch, time, hidden)
            h_n.append(x[:, -1])
            if self.has_cell:
                c_n.append(states.cell[:, -1])
        state = torch.stack(h_n)                       # (layers, batch, hidden)
        if self.has_cell:
            state = (state, torch.stack(c_n))
        output = x if self.batch_first else x.transpose(0, 1)
        if unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            state = tuple(s.squeeze(1) for s in state) if self.has_cell else state.squeeze(1)
        return output, state

    def _hand_written(self, h0: Tensor, c0: Tensor | None) -> bool:
        """Train through the hand-written backward: a cell with one and a cell state, gradients
        wanted, and an initial state that wants none (autograd covers that rare case)."""
        return (torch.is_grad_enabled() and self.backprop is not None and self.has_cell
                and not h0.requires_grad and not c0.requires_grad)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"batch_first={self.batch_first}, dropout={self.dropout}")


# -- Step through: one unit at one step, with the real numbers -----------------------------------

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
class StepContext:
    """What one unit's equations at one step read: the layer's input x_t, h_{t-1}, c_{t-1}
    and the layer's parameters, all float64 numpy."""

    unit: int
    layer_input: np.ndarray          # (features,) x_t of this layer
    h_previous: np.ndarray           # (hidden,) h_{t-1}, zeros at t = 0
    c_previous: np.ndarray | None    # (hidden,) c_{t-1}, cells with a cell state only
    weights: dict[str, np.ndarray]   # "weight_ih" (blocks*hidden, in), "weight_hh", "bias_ih", "bias_hh", extras

    def terms(self, block: int) -> tuple[float, float, float, float]:
        """(W_ih x_t)_u, (W_hh h_{t-1})_u, b_ih,u and b_hh,u of one gate block."""
        row = block * len(self.h_previous) + self.unit
        w = self.weights
        return (float(w["weight_ih"][row] @ self.layer_input), float(w["weight_hh"][row] @ self.h_previous),
                float(w["bias_ih"][row]), float(w["bias_hh"][row]))

    def gate(self, name: str, block: int) -> Gate:
        """A gate's terms, the two biases summed (b = b_ih + b_hh, as PyTorch has it)."""
        wx, wh, bi, bh = self.terms(block)
        return Gate(name, wx, wh, bi + bh)

    def own(self, name: str) -> float:
        """This unit's entry of one of the cell's own (hidden,) parameters."""
        return float(self.weights[name][self.unit])


@dataclass
class Worked:
    """A cell's equations at one unit and step: the gates, c_t, h_t and the LaTeX lines."""

    gates: dict[str, Gate]
    hidden: float
    lines: list[str]                 # one equation a line, with the numbers substituted
    cell_state: float | None = None


def sigmoid(a: float) -> float:
    return float(1.0 / (1.0 + np.exp(-a)))


def activate(gate: Gate, fn: Callable[[float], float]) -> Gate:
    """Sum the gate's terms (pre-activation) and apply fn."""
    gate.pre_activation = gate.input_term + gate.recurrent_term + gate.bias + gate.peephole_term
    gate.value = fn(gate.pre_activation)
    return gate


def num(v: float) -> str:
    """A number for LaTeX, 4 significant digits."""
    text = f"{v:.4g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = rf"{mantissa}\times10^{{{int(exponent)}}}"
    return text


def term(v: float) -> str:
    """A term of a sum: negatives in parentheses."""
    return f"({num(v)})" if v < 0 else num(v)


def sigma_line(symbol: str, g: Gate, extra: str = "", peephole: bool = False) -> str:
    """symbol_t = σ(W_x· x_t + W_h· h_{t-1} [+ extra] + b) with the numbers."""
    peep = f" + {term(g.peephole_term)}" if peephole else ""
    return (rf"{symbol}_t = \sigma(W_{{x{symbol}}}x_t + W_{{h{symbol}}}h_{{t-1}}{extra} + b_{symbol}) "
            rf"= \sigma({term(g.input_term)} + {term(g.recurrent_term)}{peep} + {term(g.bias)}) "
            rf"= \sigma({num(g.pre_activation)}) = \mathbf{{{num(g.value)}}}")


def previous_line(h_previous: float, c_previous: float | None = None) -> str:
    line = rf"h_{{t-1}} = {num(h_previous)}"
    return line if c_previous is None else rf"{line}, \quad c_{{t-1}} = {num(c_previous)}"


# -- the registry entry -------------------------------------------------------------------------

ROLES = ("gate", "tanh", "relu")   # σ in 0..1, tanh in −1..1, ReLU in 0..∞


@dataclass(frozen=True)
class Cell:
    """Everything the library and the app need to know about one kind of recurrent cell."""

    name: str                         # one spelling everywhere: Config, trace, plots, URL, CLI
    title: str                        # for headings, e.g. "LSTM"
    help: str                         # one line for the settings' help
    module: str                       # the module class users pass to trace, e.g. "nn.LSTM"
    gates: tuple[str, ...]            # the gates a trace records, in the order shown
    blocks: tuple[str, ...]           # the row blocks of W_ih and W_hh, in the module's order
    roles: Mapping[str, str]          # gate, block or "hidden" -> its activation's range (ROLES)
    has_cell: bool                    # a cell state c_t (and dL/dc_t)
    build: Callable[..., nn.Module]   # (input_size, hidden_size, num_layers, batch_first, dropout)
    matches: Callable[[nn.Module], bool]
    unroll: Callable[..., LayerUnroll | LayerStates]   # (x, w, h0, c0, keep_gates); callers take .stack()
    backprop: Callable[..., LayerGradients]   # (states, w, grad_output, h0, c0), under no_grad
    step: Callable[[StepContext], Worked]
    note: str                         # Step through: conventions, and where the tutorial differs
    titles: Mapping[str, str] = field(default_factory=dict)   # quantity titles of its own
    forget_block: int | None = None   # the forget gate's block, which forget_bias initialises
