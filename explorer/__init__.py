"""RNN Gate Explorer's library: instrumented recurrent cells, tasks, training and plots.

Usable from a notebook or a script; nothing here imports Streamlit.
"""
from . import threads  # first: torch's thread count as it was when explorer was imported
from .cells import CELLS, CIFGLSTM, PeepholeLSTM
from .config import Config
from .data import DataError
from .loading import ModelFileError, load_module
from .models import SequenceModel
from .run import Run, Snapshot, Status
from .tasks import TASKS, Task, make_task
from .trace import LayerTrace, Trace, trace
from .trainer import Trainer

__all__ = ["CELLS", "CIFGLSTM", "Config", "DataError", "LayerTrace", "ModelFileError", "PeepholeLSTM", "Run",
           "SequenceModel", "Snapshot", "Status", "TASKS", "Task", "Trace", "Trainer", "load_module", "make_task",
           "trace"]
