"""The cell registry: every kind of recurrent cell the library trains, traces and explains.

Each entry (a `Cell`, cells/base.py) is written in the cell's own module, next to its
equations; everything else — Config's choices, the model builder, trace, plots, analysis,
Step through, the app's settings — reads this table. Adding a cell: write its module (see
cifg.py) and add its entry below.
"""
from __future__ import annotations

from torch import nn

from . import cifg, gru, lstm, peephole, rnn
from .base import Cell, LayerClamp, LayerWeights, layer_weights
from .cifg import CIFGLSTM
from .peephole import PeepholeLSTM

# Keyed by the names users type (links and `--cell rnn` depend on them), in the order offered.
CELLS: dict[str, Cell] = {c.name: c for c in (lstm.CELL, gru.CELL, rnn.TANH, rnn.RELU, peephole.CELL, cifg.CELL)}


def cell_of(module: nn.Module) -> Cell:
    """The registry entry of a module `trace` supports; ValueError naming what is unsupported."""
    found = next((c for c in CELLS.values() if c.matches(module)), None)
    if found is None:
        supported = ", ".join(dict.fromkeys(c.module for c in CELLS.values()))
        raise ValueError(f"trace supports {supported}, not {type(module).__name__}")
    if module.bidirectional:
        raise ValueError("trace does not support bidirectional=True")
    if getattr(module, "proj_size", 0):
        raise ValueError("trace does not support proj_size > 0")
    return found


__all__ = ["CELLS", "CIFGLSTM", "Cell", "LayerClamp", "LayerWeights", "PeepholeLSTM", "cell_of", "layer_weights"]
