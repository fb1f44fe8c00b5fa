"""The peephole LSTM of Gers & Schmidhuber (2000): the cell state looks into its own gates,
c_{t-1} into the input and forget gates and c_t into the output gate,

    i = σ(W_xi x + W_hi h + w_ci ⊙ c_{t-1} + b_i)
    f = σ(W_xf x + W_hf h + w_cf ⊙ c_{t-1} + b_f)
    o = σ(W_xo x + W_ho h + w_co ⊙ c_t + b_o)

with diagonal (per-unit) peepholes, as in the paper; the LSTM/GRU tutorial this project
follows writes them as matrices (docs/TUTORIAL.md). There is no fused kernel for it, so it
trains through the same step-by-step unroll that `trace` instruments, and back through the
hand-written backward pass (cells/base.py: _HandWritten).
"""
from __future__ import annotations

from functools import partial

from . import lstm
from .base import Cell, UnrolledRNN, previous


class PeepholeLSTM(UnrolledRNN):
    """Same constructor and parameter names as nn.LSTM, plus weight_c{i,f,o}_l{k} (hidden,)."""

    blocks = 4
    extra = ("weight_ci", "weight_cf", "weight_co")
    has_cell = True
    unroll = staticmethod(partial(lstm.unroll, peephole=True))
    backprop = staticmethod(partial(lstm.backprop, peephole=True))

    @staticmethod
    def extra_grads(states, grad_pre, c0):
        # i and f see c_{t-1}, o sees c_t: each peephole's gradient is Σ over batch and time
        # of its gate's δ times that cell state.
        H = states.cell.shape[-1]
        c_previous = previous(states.cell, c0)                     # (batch, time, hidden)
        return {"weight_ci": (grad_pre[..., :H] * c_previous).sum((0, 1)),
                "weight_cf": (grad_pre[..., H:2 * H] * c_previous).sum((0, 1)),
                "weight_co": (grad_pre[..., 3 * H:] * states.cell).sum((0, 1))}


CELL = Cell(
    name="peephole", title="Peephole LSTM", module="PeepholeLSTM",
    help="the LSTM whose gates also see the cell state (Gers & Schmidhuber 2000)",
    gates=lstm.GATES, blocks=lstm.GATES, roles=lstm.ROLES, has_cell=True, forget_block=1,
    build=lambda input_size, hidden_size, num_layers, batch_first, dropout: PeepholeLSTM(
        input_size, hidden_size, num_layers, batch_first=batch_first, dropout=dropout),
    matches=lambda module: isinstance(module, PeepholeLSTM),
    unroll=PeepholeLSTM.unroll, backprop=partial(lstm.backprop, peephole=True),
    step=partial(lstm.step, peephole=True),
    note="Peepholes as Gers & Schmidhuber (2000): one weight per unit (w_ci, w_cf, w_co), the cell state "
         "c_{t−1} looking into i_t and f_t and c_t into o_t. The LSTM/GRU tutorial (docs/TUTORIAL.md) "
         "writes them as matrices W_c· and adds a W_cc c_{t−1} term to the candidate, which the paper "
         "does not have.",
)
