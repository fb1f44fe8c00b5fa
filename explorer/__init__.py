"""RNN Gate Explorer's library: instrumented recurrent cells, tasks, training and plots.

Usable from a notebook or a script; nothing here imports Streamlit.
"""
from .config import Config
from .data import DataError
from .models import SequenceModel
from .peephole import PeepholeLSTM
from .tasks import TASKS, Task, make_task
from .trace import LayerTrace, Trace, trace
from .run import Run, Snapshot
from .trainer import Trainer

__all__ = ["Config", "DataError", "LayerTrace", "PeepholeLSTM", "Run", "SequenceModel", "Snapshot",
           "TASKS", "Task", "Trace", "Trainer", "make_task", "trace"]
