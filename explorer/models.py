"""SequenceModel: input -> recurrent stack (a fused PyTorch module) -> linear head."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .cells import CELLS
from .config import Config


def build_recurrent(config: Config, input_size: int) -> nn.Module:
    """The recurrent stack for config.cell, initialised as config says."""
    rnn = CELLS[config.cell].build(input_size, config.hidden, config.layers, True,
                                   config.dropout if config.layers > 1 else 0.0)
    _initialise(rnn, config)
    return rnn


def _initialise(rnn: nn.Module, config: Config) -> None:
    H, forget = config.hidden, CELLS[config.cell].forget_block
    with torch.no_grad():
        for name, p in rnn.named_parameters() if config.init != "default" else ():
            if name.startswith("weight_hh"):
                # Orthogonal per gate block: each gate's recurrent map preserves norms at init.
                for block in p.split(H):
                    (nn.init.orthogonal_ if config.init == "orthogonal" else nn.init.xavier_uniform_)(block)
            elif name.startswith("weight_ih"):
                for block in p.split(H):
                    nn.init.xavier_uniform_(block)
            elif name.startswith("bias"):
                nn.init.zeros_(p)
        if forget is not None:
            # b_f is the sum of the two biases' forget blocks.
            for k in range(config.layers):
                getattr(rnn, f"bias_ih_l{k}")[forget * H:(forget + 1) * H] = config.forget_bias
                getattr(rnn, f"bias_hh_l{k}")[forget * H:(forget + 1) * H] = 0.0


class SequenceModel(nn.Module):
    """The recurrent stack and a linear head reading the last step or every step."""

    def __init__(self, config: Config, input_size: int, output_size: int, output_mode: str):
        super().__init__()
        if output_mode not in ("last", "all"):
            raise ValueError(f"output_mode must be 'last' or 'all', got {output_mode!r}")
        self.output_mode = output_mode
        self.rnn = build_recurrent(config, input_size)
        self.head = nn.Linear(config.hidden, output_size)

    def readout(self, hidden: Tensor) -> Tensor:
        """The head applied to the top layer's states (batch, time, hidden)."""
        return self.head(hidden[:, -1] if self.output_mode == "last" else hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.rnn(x)[0])   # (batch, out) or (batch, time, out)


def resolve_device(name: str) -> tuple[torch.device, str | None]:
    """The device to use for `name`, and a warning when it had to fall back to the CPU."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu"), None
    if name == "cuda" and not cuda:
        return torch.device("cpu"), "CUDA was requested but no CUDA GPU is available; training on the CPU."
    if name == "mps" and not mps:
        return torch.device("cpu"), "MPS was requested but this machine has no Apple GPU; training on the CPU."
    return torch.device(name), None

