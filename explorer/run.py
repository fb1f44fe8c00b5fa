"""Run: a Trainer on its own thread; Snapshot: a copy of its state for a UI.

A UI reads `Run.snapshot()`, which is a copy, and never calls into the worker thread.
With a RunStore, a run saves itself (autosave): every SAVE_EVERY_STEPS steps or
SAVE_EVERY_SECONDS seconds of training, whichever comes first, whenever it stops stepping
(pause, finish, divergence, failure, stop), and on `save()`.
"""
from __future__ import annotations

import math
import pickle
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from enum import StrEnum

import torch
from torch import Tensor

from .admission import Admission, threads_per_run
from .config import Config
from .history import History, HistoryView
from .store import RunDeleted, RunStore, StoreError, StoreFull, default_name, new_id, new_key
from .trace import Trace
from .trainer import Trainer
from .worker import AHEAD, Worker, WorkerFailure, WorkerLost, capture, restore

SAVE_EVERY_STEPS = 500
SAVE_EVERY_SECONDS = 30.0
# At most this many steps a worker may train on while the server saves (explorer.worker).
SAVE_AHEAD_MAX = 256
DELETED_NOTE = ("This run was deleted (on the Runs page, perhaps in another tab): it is no longer saved. "
                "What it trained stays here to look at; Reset starts a new run.")


class Status(StrEnum):
    """Where a Run stands; a str, so it prints and compares as its value ("running"...)."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    DIVERGED = "diverged"
    STOPPED = "stopped"
    ERROR = "error"


# A run in one of these states never trains again (Reset makes a new one).
ENDED = frozenset({Status.FINISHED, Status.DIVERGED, Status.STOPPED, Status.ERROR})


@dataclass
class Snapshot:
    """A copy of a Run's state for a UI; nothing in it changes after it is taken."""

    status: Status
    step: int
    total_steps: int
    steps_per_second: float
    message: str
    history: HistoryView
    latest: dict = field(default_factory=dict)
    queue_place: int | None = None     # waiting to train: 1 = next (explorer.admission)
    save_problem: str = ""             # why its newest steps are not saved (until a save succeeds)

    @property
    def running(self) -> bool:
        return self.status == Status.RUNNING

    @property
    def ended(self) -> bool:
        """The run never trains again: finished, diverged, stopped or failed."""
        return self.status in ENDED


class ReadOnly(PermissionError):
    """A control used on a run opened without its owner key."""


class Run:
    """A Trainer on its own thread, driven by start/pause/resume/step(n)/stop.

    The thread ends when training finishes or diverges, on stop(), or when nobody has
    called snapshot() for `idle_timeout` seconds (a closed browser tab); in that last case
    the run is paused, and start() or resume() starts a new thread that carries on.

    With a store the run has an `id` (128 random bits) and an `owner_key`, and saves itself.
    `Run.open` reopens a saved run, paused; opened without its owner key it is read-only.
    """

    def __init__(self, config: Config, idle_timeout: float = 300.0, trainer: Trainer | None = None,
                 store: RunStore | None = None, run_id: str | None = None, owner_key: str | None = None,
                 name: str | None = None, status: Status = Status.IDLE, read_only: bool = False,
                 admission: Admission | None = None):
        self.trainer = trainer if trainer is not None else Trainer(config)
        self.idle_timeout = idle_timeout
        self.store = store
        self.id = run_id or (new_id() if store is not None else None)
        self.owner_key = owner_key or (new_key() if store is not None and not read_only else None)
        self.name = name or (default_name(config) if store is not None else None)
        self.read_only = read_only
        self.deleted = False                 # deleted from the store: read-only, never saved again
        self.admission = admission           # the server's: how many runs train at once
        self.priority = False                # a class follows it: it goes first (explorer.admission)
        self._queue_place: int | None = None
        self._saved = (self.trainer.steps_done, time.monotonic(), status)   # (step, when, status) of the last save
        self._cond = threading.Condition()
        self._status = status
        self._message = self.trainer.device_warning or ""
        self._save_problem = ""
        self._retry_at = 0.0         # a failed save is tried again after SAVE_EVERY_SECONDS, not every step
        self._pending = 0            # steps still to do before pausing
        self._free = False           # run until paused, finished or stopped
        self._stepping = False       # a step is in flight
        self._stop = False
        self._last_poll = time.monotonic()
        self._thread: threading.Thread | None = None
        # Held by the worker for each step, so a trace the UI asks for never reads
        # weights halfway through an optimiser update. A Lock is not fair: the worker would
        # take it back straight after each step and starve a page (or a save) waiting for
        # it, so whoever waits says so (`_between_steps`) and the worker lets them in first.
        self._model_lock = threading.Lock()
        self._waiting = 0
        self._published: tuple[float, Snapshot] | None = None    # (when, the followers' snapshot)
        # Training in a worker process (explorer.worker), when the admission lends them: the
        # worker leased while the run steps, the steps allowed it and not yet reported, whether
        # a page asked for a save (the worker's state is fetched first), and whether a worker
        # was lost (this trainer then no longer matches what was trained: it is not saved).
        self._worker: Worker | None = None
        self._granted = 0
        self._save_asked = False
        self._saves = 0
        self._save_seconds = 0.0     # how long the last save took: steps lent a worker while saving
        self._lost = False
        self._here = False           # its task cannot be sent to a worker: it trains on this thread

    @classmethod
    def open(cls, store: RunStore, run_id: str, owner_key: str | None = None,
             idle_timeout: float = 300.0, admission: Admission | None = None) -> "Run":
        """A saved run, ready to Resume where it was saved: with its owner key in full
        control; without it, or from a read-only store, read-only (seen on every page, never
        trained or saved)."""
        info = store.info(run_id)
        trainer = store.load(run_id)
        owned = store.owns(run_id, owner_key)
        status = Status(info.status)
        if status in (Status.RUNNING, Status.IDLE, Status.STOPPED):
            # a run saved while training (the server went away) or stopped with its tab
            # continues from its last save; one that never stepped is as new
            status = Status.PAUSED if trainer.steps_done else Status.IDLE
        if status == Status.PAUSED and trainer.finished:
            status = Status.FINISHED
        run = cls(trainer.config, idle_timeout, trainer, store, run_id, owner_key if owned else None,
                  info.name, status, read_only=not owned or store.read_only, admission=admission)
        return run

    # -- controls (any thread) ----------------------------------------------------------
    def start(self) -> None:
        self._writable()
        with self._cond:
            self._free = True
            self._ensure_thread()

    def pause(self) -> None:
        with self._cond:
            self._free = False
            self._pending = 0
            if self._status == Status.RUNNING:
                self._status = Status.PAUSED
            self._cond.notify_all()

    def resume(self) -> None:
        self.start()

    def step(self, n: int = 1) -> None:
        """Do exactly n more steps, then pause."""
        if n < 1:
            raise ValueError("step(n) needs n >= 1")
        self._writable()
        with self._cond:
            self._free = False
            self._pending += n
            self._ensure_thread()

    def extend(self, steps: int) -> None:
        """Give a finished run `steps` more steps: its config's `steps` grows by that many and it
        rests paused, so start() or step() trains on from where it finished (same weights,
        optimiser state and data stream). ValueError for a run that has not finished, or for a
        total Config refuses (over 200,000 steps, or a History over the memory budget)."""
        self._writable()
        if steps < 1:
            raise ValueError("extend(steps) needs steps >= 1")
        self._finished_or_refuse()
        # Its thread ends once it has saved the finished run; a start() while it was still
        # ending would find it alive and start none.
        self.join()
        with self._cond:
            self._finished_or_refuse()          # (another page may have extended it meanwhile)
            config = self.trainer.config
            self.trainer.config = replace(config, steps=config.steps + steps)   # Config validates it
            self._status = Status.PAUSED
            self._message = self.trainer.device_warning or ""

    def _finished_or_refuse(self) -> None:
        if self.status != Status.FINISHED:
            raise ValueError(f"only a finished run trains on for more steps; this one is {self.status}")

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self.join()

    def retire(self) -> None:
        """Stop for good, and let go of the recorded history: the steps and probe traces, the
        bulk of a run's memory (its thread saved them as it stopped). For a run nobody will
        look at again, its session having ended: Streamlit keeps an ended session's objects,
        this run among them (its pages' variables hold it), until its store of disconnected
        sessions is next touched, which a quiet server may not do for a long time. Measured on
        a 2-core server, ten sessions left 28 MB of tensors behind that way. A snapshot of a
        retired run shows no steps."""
        self.stop()
        with self._model_lock:
            trainer = self.trainer
            trainer.history = History(trainer.param_names, trainer.history.max_traces,
                                      trainer.history.max_trace_bytes)
            trainer.optimizer.zero_grad(set_to_none=True)
            trainer.probe_copy = None
        with self._cond:
            self._published = None

    def forget(self) -> None:
        """The run was deleted from its store (explorer.store keeps deletes): it stops, is never
        saved again, and stays a read-only view of what it had trained (Reset makes a new run)."""
        with self._cond:
            self.deleted, self.read_only = True, True
            self._save_problem = ""
            if self._thread is not None and self._thread.is_alive():
                self._stop = True               # the loop ends it, saving nothing
                self._cond.notify_all()
            else:
                self._end(Status.STOPPED, DELETED_NOTE)

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wait_until_idle(self, timeout: float = 60.0) -> bool:
        """Block until the thread has nothing to do (paused, finished, stopped...)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy() and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return not self._busy()

    @property
    def worth_reopening(self) -> bool:
        """Something to reopen from a link: it has trained, or it is your model (never trained)."""
        return bool(self.trainer.steps_done) or not self.trainer.task.trainable

    @property
    def status(self) -> Status:
        """The status now, without counting as a look (snapshot() keeps an idle run alive)."""
        with self._cond:
            return self._status

    def save(self) -> None:
        """Save now, between steps. A run without a store, read-only, or that has not trained
        a step (every visitor's untouched default run) has nothing to save."""
        if self.store is None or self.read_only or not self.worth_reopening:
            return
        with self._cond:
            if self._worker is not None:
                # The worker holds the newest state; the run's thread fetches it and saves.
                self._save_asked, saves = True, self._saves
                deadline = time.monotonic() + 30.0
                while self._saves == saves and self._worker is not None and time.monotonic() < deadline:
                    self._cond.wait(0.05)
                self._save_asked = False
                if self._saves != saves or self._worker is not None:
                    return          # saved; or still training after 30 s: its autosave will
        with self._between_steps():
            self._save_now()

    def retrace(self, config: Config) -> None:
        """Your model traced with config's loss (Trainer.retrace), then saved if it is yours."""
        with self._between_steps():
            self.trainer.retrace(config)
        self.save()

    def _writable(self) -> None:
        if self.read_only:
            raise ReadOnly("this run was opened read-only (without its owner key): it cannot be trained")
        if not self.trainer.task.trainable:
            raise ReadOnly("your own model is looked at here, not trained")

    def _save_now(self, resting: bool | None = None) -> None:
        """Save the trainer as it stands; the caller holds the model lock. A failed save is
        reported in the run's message, and training goes on. resting: whether the run stops
        stepping after this save (None: unless its status is running)."""
        with self._cond:
            status = self._status
            if resting and status == Status.RUNNING:
                # Saved as it will rest (the loop decides it next, as here), not as "running".
                status = (Status.STOPPED if self._stop else Status.FINISHED if self.trainer.finished
                          else Status.PAUSED)
        resting = status != Status.RUNNING if resting is None else resting
        started = time.monotonic()
        try:
            # The held-out numbers (Trainer.final_eval) are measured when the run rests: while
            # it trains, the next step makes them stale, and on the largest runs they cost as
            # much as 5 steps (9.5 s at T=1000, GRU 128x2), held under the model lock.
            self.store.save(self.id, self.trainer, owner_key=self.owner_key, status=status, name=self.name,
                            measure_final=resting)
            with self._cond:
                self._saves += 1
                self._save_seconds = time.monotonic() - started
        except RunDeleted:
            self.forget()
            return
        except (StoreError, OSError) as error:
            with self._cond:
                self._save_problem = self._unsaved(error)
            self._retry_at = time.monotonic() + SAVE_EVERY_SECONDS
            return
        with self._cond:
            self._save_problem = ""
        self._saved = (self.trainer.steps_done, time.monotonic(), status)

    def _unsaved(self, error: Exception) -> str:
        """What a failed save means to the run's owner: which steps are not saved, and why."""
        unsaved = self.trainer.steps_done - self._saved[0]
        steps = f"the last {unsaved:,} step{'s' if unsaved != 1 else ''} {'are' if unsaved != 1 else 'is'} not saved"
        if isinstance(error, StoreFull):
            return f"The disk is full: {steps}; free space and they will be saved at the next autosave."
        return f"Could not save this run ({error}): {steps}; the next autosave tries again."

    def _save_due(self, stopping: bool) -> bool:
        if self.store is None or self.read_only or self._lost:
            return False
        if not stopping and time.monotonic() < self._retry_at:
            return False
        step, when, status = self._saved
        if self.trainer.steps_done == step:
            # Nothing new trained, but a saved run that has just diverged or failed says so; and
            # one autosaved as running at this very step (a stop that came during that save) is
            # saved again as it rests, with its held-out numbers.
            with self._cond:
                ended_badly = self._status in (Status.DIVERGED, Status.ERROR) and self._status != status
            return stopping and step > 0 and (ended_badly or status == Status.RUNNING)
        return (stopping or self.trainer.steps_done - step >= SAVE_EVERY_STEPS
                or time.monotonic() - when >= SAVE_EVERY_SECONDS)

    def snapshot(self, look: bool = True) -> Snapshot:
        """A copy of the run's state. It counts as a look (keeping the run from its idle pause)
        unless look is False: a follower watching does not keep a run alive that its owner left."""
        with self._cond:
            if look:
                self._last_poll = time.monotonic()
            status, message, queue_place = self._status, self._message, self._queue_place
            save_problem = self._save_problem
        view = self.trainer.history.view()
        recent = view.steps["seconds"][-50:]
        latest = {k: float(v[-1]) for k, v in view.steps.items() if v.ndim == 1 and len(v)}
        latest.update({k: float(v[-1]) for k, v in view.evals.items() if len(v)})
        return Snapshot(status=status, step=int(view.steps["step"][-1]) if len(view.steps["step"]) else 0,
                        total_steps=self.trainer.config.steps,
                        steps_per_second=float(len(recent) / recent.sum()) if len(recent) else 0.0,
                        message=message, history=view, latest=latest, queue_place=queue_place,
                        save_problem=save_problem)

    def published(self, max_age: float) -> Snapshot:
        """The snapshot every follower sees: one, taken again once older than max_age seconds,
        and not counted as a look. Followers refreshing in the same moment then show the same
        step, so the figures drawn from it are built once for all of them (explorer.follow)."""
        now = time.monotonic()
        with self._cond:
            kept = self._published
        if kept is not None and now - kept[0] < max_age:
            return kept[1]
        snap = self.snapshot(look=False)
        with self._cond:
            self._published = (now, snap)
        return snap

    def trace(self, x: Tensor, y: Tensor | None = None) -> Trace:
        """Trace the current model on any sequences (e.g. built by hand), between steps."""
        with self._between_steps():
            return self.trainer.trace(x, y)

    def inspect(self, fn):
        """Call fn(model) between steps, e.g. to read weights that are not half-updated."""
        with self._between_steps():
            return fn(self.trainer.model)

    @contextmanager
    def _between_steps(self):
        """The model lock, for a caller other than the worker: it waits at most one step."""
        with self._cond:
            self._waiting += 1
        try:
            with self._model_lock:
                yield
        finally:
            with self._cond:
                self._waiting -= 1
                self._cond.notify_all()

    # -- the worker ----------------------------------------------------------------------
    def _busy(self) -> bool:
        alive = self._thread is not None and self._thread.is_alive()
        # (a worker still leased has steps to hand over)
        return alive and (self._stepping or self._worker is not None
                          or (not self._stop and (self._free or self._pending > 0)))

    def _ensure_thread(self) -> None:
        if self._status in ENDED:
            return
        self._status = Status.RUNNING
        self._message = self.trainer.device_warning or ""   # an idle pause's note no longer holds
        self._last_poll = time.monotonic()
        if self.admission is not None:          # queued in the order Train was pressed
            self._queue_place = self.admission.ask(self) or None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="gate-explorer-run", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _work(self) -> None:
        try:
            self._loop()
        finally:
            self._release()
            with self._cond:
                self._leave_queue()
            # paused, finished, diverged, stopped, idle or failed: the thread ends saved
            with self._model_lock:
                if self.status == Status.ERROR:
                    self.trainer.free_memory()     # (the failed step's frames are gone by now)
                if self._save_due(stopping=True):
                    self._save_now(resting=True)

    def _loop(self) -> None:
        trainer = self.trainer
        try:
            while True:
                with self._cond:
                    resting = not (self._stop or self._free or self._pending > 0 or self._idle())
                if resting:
                    with self._cond:
                        self._stepping = True       # busy until what the release books is saved
                    try:
                        self._release()     # its last steps and state come back before the run rests
                        with self._cond:
                            ended = self._status in ENDED       # (the step in flight failed)
                        # Steps the worker made after the last save (a pause that came while
                        # the run saved, with steps lent for it) are saved as the run rests.
                        if not ended and self._save_due(stopping=True):
                            with self._model_lock:
                                self._save_now(resting=True)
                    finally:
                        with self._cond:
                            self._stepping = False
                            self._cond.notify_all()
                    if ended:
                        return
                with self._cond:
                    while not (self._stop or self._free or self._pending > 0 or self._idle()):
                        self._leave_queue()         # paused: its place (or slot) goes to the next run
                        self._status = Status.PAUSED if trainer.steps_done else Status.IDLE
                        self._cond.notify_all()
                        self._cond.wait(0.25)
                    if self._stop:
                        self._end(Status.STOPPED, DELETED_NOTE if self.deleted else "Stopped.")
                        return
                    if self._idle():
                        # A closed tab: free the thread, but keep the run resumable, since
                        # a paused lesson may simply have been left alone for a while.
                        self._end(Status.PAUSED, f"Paused: nobody looked at this run for {self.idle_timeout:g} s. "
                                            "Resume continues it.")
                        return
                    if trainer.finished:
                        self._end(Status.FINISHED, f"Finished {trainer.steps_done} steps.")
                        return
                    if not self._admitted():
                        self._cond.wait(0.2)        # queued: wakes for a pause, a stop, or its turn
                        continue
                    while self._waiting:        # a page or a save asked for the model first
                        self._cond.wait(0.05)
                    self._status = Status.RUNNING
                    self._stepping = True
                with self._turn():
                    record = self._remote_step() if self._remote() else self._local_step()
                with self._cond:
                    if not self._count(record):
                        self._stepping = False
                        return
                    pausing = self._stop or not (self._free or self._pending > 0)
                    asked, self._save_asked = self._save_asked, False
                # Still "stepping" until the save is made: wait_until_idle() then finds it saved.
                if pausing:
                    self._release()     # the steps it was allowed ahead are booked, then saved
                if asked or self._save_due(stopping=pausing):
                    self._sync()
                    if not pausing:
                        self._lend_while_saving()
                    with self._model_lock:
                        self._save_now(resting=pausing)
                with self._cond:
                    self._stepping = False
                    self._cond.notify_all()     # (a page's save() waits for one)
        except Exception as error:  # noqa: BLE001 - a UI must see why its run stopped
            with self._cond:
                self._stepping = False
                self._end(Status.ERROR, self._failure(error))

    def _count(self, record: dict | None) -> bool:
        """Book a step done (the caller holds the condition): False when it diverged instead."""
        if record is None:
            self._end(Status.DIVERGED, self.trainer.divergence_message)
            return False
        if self._pending > 0:
            self._pending -= 1
            if self._pending == 0 and not self._free:
                self._status = Status.PAUSED
        self._cond.notify_all()
        return True

    def _local_step(self) -> dict | None:
        with self._model_lock:
            return self.trainer.step()

    # -- training in a worker process (explorer.worker) -----------------------------------
    def _remote(self) -> bool:
        """Whether this run trains in a worker: the admission lends them, and the task can be
        sent to one (a task that cannot be pickled trains on this thread, as before)."""
        if self._worker is not None:
            return True
        workers = getattr(self.admission, "workers", None)
        if workers is None or self._here:
            return False
        worker = workers.lease()
        with self._model_lock:
            state = capture(self.trainer)
        try:
            worker.send("load", self.trainer.config, self.trainer.task, state, threads_per_run(self.admission.slots))
        except WorkerLost:
            self._worker = worker
            self._lose()
            raise
        except (pickle.PicklingError, TypeError, AttributeError):   # (raised before anything is sent)
            workers.give_back(worker)
            self._here = True
            return False
        self._worker, self._granted = worker, 0
        return True

    def _remote_step(self) -> dict | None:
        """The worker's next step: steps are allowed AHEAD at a time (fewer for step(n) or near
        the end), and everything it reports on the way (evals, probes) goes into this trainer."""
        trainer = self.trainer
        with self._cond:
            wanted = AHEAD if self._free else min(self._pending, AHEAD)
        # At least the step the loop has decided on (a pause may have come since).
        wanted = min(max(wanted, 1), trainer.config.steps - trainer.steps_done)
        if wanted > self._granted:
            self._send("go", wanted - self._granted)
            self._granted = wanted
        record = None
        while True:
            kind, *body = self._receive()
            if kind == "step":
                step, record = body
                # A step with an eval or a probe counts once they are in too (its "seconds"
                # follow them), so a run seen finished or paused shows them.
                if not any(trainer.measures_at(step)):
                    return record
            elif kind == "seconds" and record is not None:
                return record
            elif kind == "diverged":
                return None

    def _lend_while_saving(self) -> None:
        """Let the worker train on while this thread saves the state it just sent: as many steps
        as fit in the time the last save took, at the rate trained since then. Allowed only
        AHEAD steps, it sat idle for most of each save (65-110 ms every 500 steps for the
        default run here, 1-2% of its time). The steps are booked after the save, as usual, and
        a pause still holds the worker between two steps."""
        if self._worker is None:
            return
        step, when, _ = self._saved
        with self._cond:
            free, seconds = self._free, self._save_seconds
        rate = (self.trainer.steps_done - step) / max(time.monotonic() - when, 1e-3)
        left = self.trainer.config.steps - self.trainer.steps_done - self._granted
        lend = min(math.ceil(rate * seconds), SAVE_AHEAD_MAX, left)
        if free and lend > 0:
            self._send("go", lend)
            self._granted += lend

    def _receive(self) -> tuple:
        """One message from the worker, taken into this trainer (its History, its model)."""
        try:
            message = self._worker.receive()
        except WorkerLost:
            self._lose()
            raise
        kind, trainer = message[0], self.trainer
        if kind == "step":
            _, step, record = message
            trainer.history.record_step(step, record)
            trainer.steps_done = step
            self._granted -= 1
        elif kind == "eval":
            trainer.history.record_eval(*message[1:])
        elif kind == "seconds":
            trainer.history.add_seconds(*message[1:])
        elif kind == "probe":
            _, step, trace, weights = message
            with self._model_lock:
                trainer.model.load_state_dict(weights)
                trainer.steps_done = step        # (its step record came before it)
                trainer.history.record_trace(step, trace)
                trainer.keep_probe_copy()
        elif kind == "diverged":
            self._granted = 0
            trainer.diverged, trainer.divergence_message = True, message[1]
        elif kind == "failed":
            self._granted = 0
            raise WorkerFailure(message[1], message[2])
        return message

    def _send(self, *message) -> None:
        try:
            self._worker.send(*message)
        except WorkerLost:
            self._lose()
            raise

    def _sync(self, kind: str = "sync") -> None:
        """Bring this trainer up to the worker's state (its steps in flight are booked first):
        before a save, and ("hold") when the run stops stepping."""
        if self._worker is None:
            return
        self._send(kind)
        failure = None
        while True:
            try:
                message = self._receive()
            except WorkerFailure as error:      # its state still follows: the pipe is left empty
                failure = error
                continue
            if message[0] == "state":
                break
            if message[0] in ("step", "diverged"):
                with self._cond:
                    self._count(message[2] if message[0] == "step" else None)
        if message[1] is not None:          # (None: the worker could not load the run, and said why)
            with self._model_lock:
                restore(self.trainer, message[1], global_rng=False)
        if failure is not None:
            raise failure

    def _release(self) -> None:
        """Take the run's state back from its worker, and lend the worker to the next run."""
        worker = self._worker
        if worker is None:
            return
        try:
            self._sync("hold")
        except (WorkerLost, WorkerFailure) as error:     # the step in flight failed, or the worker
            with self._cond:
                self._end(Status.ERROR, self._failure(error))
        if self._worker is not None:
            self._worker = None
            self.admission.workers.give_back(worker)
        with self._cond:
            self._cond.notify_all()

    def _lose(self) -> None:
        """The worker is gone: this trainer no longer matches what was trained."""
        worker, self._worker, self._lost = self._worker, None, True
        if worker is not None:
            worker.close()
        if self._saved[0] and self.store is not None and not self.read_only:
            try:
                # Its row said "running" (the last autosave's); what is saved stays as saved.
                self.store.mark(self.id, Status.ERROR, self.owner_key)
            except StoreError:
                pass        # the run's message still names the step it is saved at

    def _failure(self, error: Exception) -> str:
        """What the run's message says about the exception that ended it."""
        if isinstance(error, WorkerLost):
            # The page shows the steps the worker reported; the store holds the last save's.
            saved = self._saved[0] if self.store is not None and not self.read_only else 0
            return (f"Training stopped at step {self.trainer.steps_done:,}: {error}"
                    + (f" (step {saved:,}); reopen it from the Runs page to go on from there." if saved
                       else "; it had not been saved yet, so there is nothing to reopen."))
        if not out_of_memory(error):
            return f"Training stopped with an error: {error}"
        trainer, cfg = self.trainer, self.trainer.config
        memory = "memory" if trainer.device.type == "cpu" else "GPU memory"
        done = trainer.steps_done
        saved = self.store is not None and not self.read_only and done > 0
        return (f"Training ran out of {memory} {f'after step {done}' if done else 'at its first step'} "
                f"(batch_size {cfg.batch_size}, seq_len {trainer.task.seq_len}, hidden {cfg.hidden}, layers "
                f"{cfg.layers}, probe_count {cfg.probe_count})."
                + (" The run is saved as it stood after that step." if saved else "")
                + " Lower batch_size, seq_len, hidden or layers (or probe_count), then press Reset.")

    def _admitted(self) -> bool:
        """Whether this run may step now: no admission, or its turn has come (the caller holds
        the condition). A queued run keeps its status (it is training, waiting its turn) and
        its place in the queue, which snapshots show."""
        if self.admission is None:
            return True
        place = self.admission.ask(self)
        self._queue_place = place or None
        if place:
            self._status = Status.RUNNING
        return not place

    def _turn(self):
        """A fair turn among the admitted runs (explorer.admission), or none to wait for."""
        return self.admission.turn(self) if self.admission is not None else nullcontext()

    def _leave_queue(self) -> None:
        if self.admission is not None:
            self.admission.leave(self)
        self._queue_place = None

    def _idle(self) -> bool:
        return time.monotonic() - self._last_poll > self.idle_timeout

    def _end(self, status: Status, message: str) -> None:
        self._leave_queue()
        self._status, self._message = status, message
        self._free, self._pending = False, 0
        self._cond.notify_all()


def out_of_memory(error: BaseException) -> bool:
    """torch's CUDA (or other accelerator) OutOfMemoryError, Python's MemoryError, or a
    RuntimeError that says so: the CPU allocator's "not enough memory", MPS's "out of memory"."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)) or getattr(error, "out_of_memory", False):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "not enough memory" in text)
