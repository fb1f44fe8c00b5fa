"""RNN Gate Explorer's library: instrumented recurrent cells, tasks, training and plots.

Usable from a notebook or a script; nothing here imports Streamlit.
"""
from .peephole import PeepholeLSTM
from .trace import LayerTrace, Trace, trace

__all__ = ["LayerTrace", "PeepholeLSTM", "Trace", "trace"]
