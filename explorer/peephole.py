"""PeepholeLSTM: nn.LSTM's interface plus the diagonal peepholes of Gers & Schmidhuber (2000).

The cell state looks into its own gates: c_{t-1} into the input and forget gates and
c_t into the output gate, as in the seed document's equations
    i = σ(W_xi x + W_hi h + w_ci ⊙ c_{t-1} + b_i)
    f = σ(W_xf x + W_hf h + w_cf ⊙ c_{t-1} + b_f)
    o = σ(W_xo x + W_ho h + w_co ⊙ c_t + b_o)
with diagonal (vector) peepholes, as in the original paper. There is no fused kernel
for it, so it trains through the same step-by-step unroll that `trace` instruments.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .cells import LayerWeights, unroll


class PeepholeLSTM(nn.Module):
    """Same constructor and parameter names as nn.LSTM, plus weight_c{i,f,o}_l{k} (hidden,)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None):
        super().__init__()
        if bidirectional:
            raise ValueError("PeepholeLSTM does not support bidirectional=True")
        if proj_size:
            raise ValueError("PeepholeLSTM does not support proj_size > 0")
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
        for k in range(num_layers):
            layer_input = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(4 * hidden_size, layer_input, **factory)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(4 * hidden_size, hidden_size, **factory)))
            if bias:
                self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(4 * hidden_size, **factory)))
                self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(4 * hidden_size, **factory)))
            for gate in ("ci", "cf", "co"):
                self.register_parameter(f"weight_{gate}_l{k}", nn.Parameter(torch.empty(hidden_size, **factory)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.LSTM's initialisation, extended to the peepholes.
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def layer_weights(self, k: int) -> LayerWeights:
        get = lambda name: getattr(self, f"{name}_l{k}", None)  # noqa: E731
        return LayerWeights(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"),
                            get("weight_ci"), get("weight_cf"), get("weight_co"))

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        unbatched = input.dim() == 2
        x = input.unsqueeze(0 if self.batch_first else 1) if unbatched else input
        if not self.batch_first:
            x = x.transpose(0, 1)                      # (batch, time, input)
        batch = x.shape[0]
        if hx is None:
            zeros = x.new_zeros(self.num_layers, batch, self.hidden_size)
            hx = (zeros, zeros)
        elif unbatched:
            hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        h_n, c_n = [], []
        for k in range(self.num_layers):
            if k > 0 and self.training and self.dropout > 0:
                x = nn.functional.dropout(x, self.dropout, training=True)
            steps = unroll("peephole", x, self.layer_weights(k), hx[0][k], hx[1][k], keep_gates=False)
            x = torch.stack(steps.hidden, dim=1)      # (batch, time, hidden)
            h_n.append(steps.hidden[-1])
            c_n.append(steps.cell[-1])
        h_n, c_n = torch.stack(h_n), torch.stack(c_n)  # (layers, batch, hidden)
        output = x if self.batch_first else x.transpose(0, 1)
        if unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return output, (h_n, c_n)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"batch_first={self.batch_first}, dropout={self.dropout}")
