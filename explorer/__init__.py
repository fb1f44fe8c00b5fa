"""RNN Gate Explorer's library: instrumented recurrent cells, tasks, training and plots.

Usable from a notebook or a script; nothing here imports Streamlit.
"""
from .cells import CELLS, CIFGLSTM, PeepholeLSTM
from .config import Config
from .data import DataError
from .models import SequenceModel
from .tasks import TASKS, Task, make_task
from .trace import LayerTrace, Trace, trace
from .train import Run, Snapshot, Trainer

__all__ = ["CELLS", "CIFGLSTM", "Config", "DataError", "LayerTrace", "PeepholeLSTM", "Run", "SequenceModel", "Snapshot",
           "TASKS", "Task", "Trace", "Trainer", "make_task", "trace"]
