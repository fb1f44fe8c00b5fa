"""RNN Gate Explorer's library: instrumented recurrent cells, tasks, training and plots.

Usable from a notebook or a script; nothing here imports Streamlit.
"""
from .config import Config
from .data import DataError
from .models import SequenceModel
from .peephole import PeepholeLSTM
from .run import Run, Snapshot, Status
from .tasks import TASKS, Task, make_task
from .trace import LayerTrace, Trace, trace
from .trainer import Trainer

__all__ = ["Config", "DataError", "LayerTrace", "PeepholeLSTM", "Run", "SequenceModel", "Snapshot",
           "Status", "TASKS", "Task", "Trace", "Trainer", "make_task", "trace"]
