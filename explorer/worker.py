"""Worker processes: a run admitted to train steps in a process of its own, out of the
server's interpreter.

Why: every page rerun, every follower's poll and every training thread of one server take turns
on one interpreter lock. Measured on 2 cores with a class (20 followers, 10 other sessions),
the server's interpreter stayed busy about a core's worth, and the run the class followed fell
to 0.6-0.7x its solo steps/s however its share was weighted (issue 12's closing notes). A
worker has an interpreter of its own, so only the operating system shares the cores.

The server keeps the run's Trainer as a mirror (explorer.run): its History is fed from the
worker's records as they arrive, its model is brought up to date at every probe (the followers'
copy is taken from it) and whenever the run stops stepping, and its whole state (weights,
optimiser, random generators, steps) before every save. Pages read the mirror as before.

The protocol, one pickled tuple per message (plain pickle, so tensors travel by value, never as
the shared-memory handles torch's multiprocessing pickler would make):

  server -> worker   ("load", config, task, state, threads)   train this run from this state
                     ("go", n)                                 n more steps are allowed
                     ("sync",)                                 send the state now (between steps)
                     ("hold",)                                 no more steps; send the state
  worker -> server   ("eval", step, loss, metric)
                     ("probe", step, trace, weights)           the probe's trace, and the weights it traced
                     ("step", step, record)                    as History has them, a block at a time
                     ("seconds", step, seconds)                its eval's and probe's time, after them
                     ("diverged", message)                     the step was not applied
                     ("failed", text, out_of_memory)           the step (or the load) raised
                     ("state", State or None)                  after a sync or a hold (None: no run loaded)
                     ("ready", rss_mb)                         once, warmed up: its memory then (MB, or
                                                               None off Linux); Worker.receive keeps it
"""
from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from . import threads
from .history import History
from .memory import resident_mb, settle_for_training
from .trainer import Trainer

# Steps a worker may run ahead of the records the server has read. The server's reading thread
# waits its turn for the interpreter lock (up to its switch interval, 5 ms), so one step at a
# time would leave the worker idle that long. With two, py-spy found the default run's worker
# waiting for them 2.2% of its time while the Train page was open; with four, 0.6%. A pause
# holds the worker at its next step, whatever it was allowed.
AHEAD = 4
# A worker back from a run holding more than this over what it held fresh is ended, and a fresh
# one started in its place. What a run used stays with the process that ran it: its training
# arena keeps its free top (explorer/memory.py), and the worker its last model until the next
# load. Measured after a class of six: two warm workers at 723 and 888 MB, against 307
# and 322 fresh (issue 33). A small run's worker (step through a few steps) stays under it and
# is kept: a fresh one costs about 3 s of a core for its imports.
GROWN_MB = 40.0


@dataclass
class State:
    """Everything a Trainer needs to carry on exactly where another left off (CPU tensors)."""

    weights: dict
    optimizer: dict
    batches: torch.Tensor             # the batch generator's state
    torch_rng: torch.Tensor           # torch's global generator (dropout)
    steps_done: int
    diverged: bool
    divergence_message: str


def capture(trainer: Trainer) -> State:
    """The trainer's state, copied to the CPU."""
    return State(weights={k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()},
                 optimizer=_to_cpu(trainer.optimizer.state_dict()),
                 batches=trainer.batch_generator.get_state(), torch_rng=torch.get_rng_state(),
                 steps_done=trainer.steps_done, diverged=trainer.diverged,
                 divergence_message=trainer.divergence_message)


def restore(trainer: Trainer, state: State, global_rng: bool = True) -> None:
    """Put a captured state into a trainer of the same config (the caller holds its model).
    global_rng False leaves torch's own generator alone: the server's is every run's."""
    trainer.model.load_state_dict(state.weights)
    trainer.optimizer.load_state_dict(state.optimizer)
    trainer.batch_generator.set_state(state.batches)
    if global_rng:
        torch.set_rng_state(state.torch_rng)
    trainer.steps_done = state.steps_done
    trainer.diverged = state.diverged
    trainer.divergence_message = state.divergence_message


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


class WorkerFailure(RuntimeError):
    """A step that raised in the worker: its text, and whether it ran out of memory."""

    def __init__(self, text: str, out_of_memory: bool = False):
        super().__init__(text)
        self.out_of_memory = out_of_memory


class WorkerLost(RuntimeError):
    """The worker process ended (killed, or crashed) while a run was training in it."""


def available() -> bool:
    """Whether this platform can start workers (they inherit their end of a socket pair)."""
    return os.name == "posix"


class Worker:
    """One worker process and the server's end of its socket.

    A fresh interpreter (`python -c`), not multiprocessing's: forking would copy a threaded
    server, and multiprocessing's spawn runs the parent's main script again in the child,
    which a script without a main guard (or Streamlit's own) does not expect."""

    def __init__(self):
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parent.parent)      # where `explorer` is imported from
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH")))))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", f"from explorer.worker import main; main({theirs.fileno()})"],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env,
                # Its own session: Ctrl-C on the server is the server's to handle; the worker
                # ends when the server's end of the socket closes, however the server ends.
                start_new_session=True)
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.fresh_mb: float | None = None       # its memory once warmed up, as it said ("ready")

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mb(self) -> float | None:
        """Its resident memory now, MB (None once it has ended, or off Linux)."""
        return resident_mb(self.pid)

    def send(self, *message) -> None:
        try:
            self.conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError as error:
            raise self._lost() from error

    def receive(self):
        """The next message (it waits for one). The worker's "ready" is kept here, not returned:
        the pool compares its memory after a run with it."""
        while True:
            try:
                message = pickle.loads(self.conn.recv_bytes())
            except (EOFError, OSError) as error:
                raise self._lost() from error
            if message[0] != "ready":
                return message
            self.fresh_mb = message[1]

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        """End the worker: it exits when its socket closes (killed if it has not in 2 s)."""
        self.conn.close()
        try:
            self.process.wait(2.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(2.0)

    def _lost(self) -> WorkerLost:
        try:
            code = self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            code = None
        how = "" if code is None else f" (exit code {code})"
        return WorkerLost(f"the process training this run ended unexpectedly{how}; "
                          "the run keeps its last saved state")


class Workers:
    """A server's worker processes: lent one per training run, kept warm (at most `keep` idle)
    so that pressing Train does not wait for a new interpreter and torch to start (~3 s here).
    One that comes back from a run grown past `grown_mb` is replaced by a fresh one (GROWN_MB)."""

    def __init__(self, keep: int = 1, make=Worker, grown_mb: float = GROWN_MB):
        self.keep = keep
        self.make = make              # a new worker: a process here, or an actor (explorer.ray_engine)
        self.grown_mb = grown_mb
        self._lock = threading.Lock()
        self._idle: list[Worker] = []
        self._starting = 0            # workers warm() is starting now, for the idle list

    def lease(self) -> Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                worker.close()
        return self.make()

    def give_back(self, worker: Worker) -> None:
        """Keep a worker for the next run, or end it if enough are kept, it is gone, or it has
        grown (then a fresh one is started in its place, in the background)."""
        grown = self._grown(worker)
        with self._lock:
            if worker.alive() and not grown and len(self._idle) < self.keep:
                self._idle.append(worker)
                return
        worker.close()
        if grown:
            self.warm()

    def warm(self) -> None:
        """Start the workers missing from the kept ones in the background, ready for the next runs."""
        with self._lock:
            missing = self.keep - len(self._idle) - self._starting
            self._starting += max(0, missing)

        def start():
            left = missing
            try:
                while left:
                    self.give_back(self.make())
                    left -= 1
                    with self._lock:
                        self._starting -= 1
            finally:
                with self._lock:
                    self._starting -= left          # those it could not start (make raised)
        if missing > 0:
            threading.Thread(target=start, name="gate-explorer-warm", daemon=True).start()

    def _grown(self, worker: Worker) -> bool:
        """Whether a worker holds more than grown_mb over what it held fresh. Only a process that
        said so can tell (a Ray actor's memory is its cluster's to manage)."""
        fresh = getattr(worker, "fresh_mb", None)
        now = worker.rss_mb() if fresh is not None else None
        return now is not None and now - fresh > self.grown_mb

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()


_SHARED: Workers | None = None
_SHARED_LOCK = threading.Lock()


def shared(keep: int) -> Workers:
    """This process's one pool, started (warm) on first use. A server has one set of cores, so
    one pool: its admission may be made again (a cleared Streamlit cache, a test) without
    starting more processes, and the workers end with the process (their socket closes)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Workers(keep)
            _SHARED.warm()
        _SHARED.keep = max(_SHARED.keep, keep)
        return _SHARED


class _Outbox(History):
    """The worker trainer's History: records are staged and committed as a History's are, and
    each committed record goes to the server instead of being kept."""

    def __init__(self, conn, trainer: Trainer):
        super().__init__(trainer.param_names, max_traces=trainer.history.max_traces)
        self.conn, self.trainer = conn, trainer

    def record_step(self, step, values):
        _send(self.conn, ("step", step, values))

    def add_seconds(self, step, seconds):
        _send(self.conn, ("seconds", step, seconds))

    def record_eval(self, step, loss, metric):
        _send(self.conn, ("eval", step, loss, metric))

    def record_trace(self, step, trace):
        weights = {k: v.detach().cpu().clone() for k, v in self.trainer.model.state_dict().items()}
        _send(self.conn, ("probe", step, trace, weights))


def _send(conn, message) -> None:
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def main(fd: int) -> None:
    """A worker process's entry point: warm up, then serve on the inherited socket."""
    conn = Connection(fd)
    settle_for_training()      # a step's temporaries stay mapped between steps (explorer/memory.py)
    warm_up()
    _send(conn, ("ready", resident_mb()))
    serve(conn)


def warm_up() -> None:
    """Pay a fresh process's first-use costs before any run waits for them: measured here, the
    first Trainer a process builds takes 1.9 s, the next 5 ms."""
    from .config import Config
    threads.use(1)
    trainer = Trainer(Config(task="adding", seq_len=4, hidden=4, batch_size=2, steps=1, probe_count=1),
                      record_start=False)
    trainer.step()


def _load(conn, config, task, state: State, count: int) -> Trainer:
    """The run's Trainer in this worker, where the server's left off, reporting to the server."""
    threads.use(count)
    trainer = Trainer(config, task=task, record_start=False)
    restore(trainer, state)
    trainer.history = _Outbox(conn, trainer)
    trainer.keep_probe_copy = lambda: None       # the server keeps the followers' copy
    return trainer


def serve(conn) -> None:
    """The worker process: train the loaded run while steps are allowed; answer between steps.
    It ends when the server's end of the pipe closes."""
    from .run import out_of_memory        # (the worker's own import; run imports this module)

    trainer: Trainer | None = None
    allowed = 0
    try:
        while True:
            if allowed == 0 or conn.poll():
                message = pickle.loads(conn.recv_bytes())
                kind = message[0]
                if kind == "load":
                    allowed, trainer = 0, None
                    try:
                        trainer = _load(conn, *message[1:])
                    except Exception as error:  # noqa: BLE001 - said as a failed step would be
                        _send(conn, ("failed", str(error), out_of_memory(error)))
                elif kind == "go" and trainer is not None:       # (no run: its load failed, and said so)
                    allowed += message[1]
                elif kind in ("sync", "hold"):
                    if kind == "hold":
                        allowed = 0
                    if trainer is not None and not trainer.diverged and not trainer.flush():
                        allowed = 0
                        _send(conn, ("diverged", trainer.divergence_message))
                    _send(conn, ("state", capture(trainer) if trainer is not None else None))
                continue
            try:
                record = trainer.step()
            except Exception as error:  # noqa: BLE001 - the server's run must say why it stopped
                allowed = 0
                trainer.free_memory()
                _send(conn, ("failed", str(error), out_of_memory(error)))
                continue
            allowed -= 1
            # The server grants more steps as their records arrive, so they are sent before this
            # process would wait for it; on the CPU after every step, as bringing a record
            # over costs no synchronisation there and the server grants the next step sooner.
            if record is not None and (allowed == 0 or trainer.device.type == "cpu") and not trainer.flush():
                record = None
            if record is None:
                allowed = 0
                _send(conn, ("diverged", trainer.divergence_message))
    except (EOFError, OSError, KeyboardInterrupt):
        return
