"""This browser session's runs, and the server's: a session's own run and a lesson's, kept in a
session-scoped resource (they survive page switches); every run with an id is also in the
server's `live_runs()`, so a reload (a new session) can take it back while it trains. Runs are
saved in the server's `run_store()` as they train."""
from __future__ import annotations

import gc
import hmac
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Sequence

import streamlit as st
from explorer import Config, DataError, Run, Status, Trainer, ray_engine, threads
from explorer.admission import Admission, max_runs, threads_per_run
from explorer.data import env_number
from explorer.memory import arena_hint, give_back, settle_allocator
from explorer.store import RunStore, StoreError
from explorer.worker import available, shared
from pages import sweeper
from pages.identity import browser_key
from pages.serverlog import quiet_closed_tab_sends

IDLE_ENV = "GATE_EXPLORER_IDLE_S"
ERRORS = (ValueError, DataError, OSError, RuntimeError, StoreError)


def idle_timeout() -> float:
    """Seconds without a page looking at a run before it pauses itself: the backstop for a
    session whose end the server never hears of (GATE_EXPLORER_IDLE_S, default 600)."""
    return env_number(IDLE_ENV, 600.0)


IDLE_TIMEOUT = idle_timeout()
TRIM_AGAIN_S = 5.0       # after a session's end, when Streamlit has let go of it too
GRACE_ENV = "GATE_EXPLORER_RELOAD_GRACE_S"


def reload_grace() -> float:
    """Seconds a training run whose session ended keeps training for a reload to take it back
    (GATE_EXPLORER_RELOAD_GRACE_S, default 30)."""
    return env_number(GRACE_ENV, 30.0, allow_zero=True)

# Torch's intra-op threads are per process: together, the admitted runs use at most one
# thread per core (explorer/admission.py). Oversubscribed OpenMP threads stall every operator:
# measured on 2 cores, a default run fell from ~70 to ~4 steps/s with 2 threads under load,
# and kept ~100 with 1.
threads.use(threads_per_run())
settle_allocator()     # memory freed by ended runs goes back to the OS (explorer/memory.py)
quiet_closed_tab_sends()   # a tab closing mid-send is one log line, not a traceback (pages/serverlog.py)
if (hint := arena_hint()) is not None:
    logging.getLogger("gate_explorer").warning(hint)


@st.cache_resource(show_spinner=False)
def _store() -> RunStore | str:
    try:
        return RunStore()
    except StoreError as error:
        return str(error)


def run_store() -> RunStore | None:
    """The server's run store (GATE_EXPLORER_DB or the user's data folder); None if it cannot
    be opened, which the app says (runs then live only as long as the server)."""
    store = _store()
    return store if isinstance(store, RunStore) else None


def store_problem() -> str | None:
    store = _store()
    return None if isinstance(store, RunStore) else store


def saving_store() -> RunStore | None:
    """The run store new runs save into: None where it cannot be opened, or is read-only (its
    runs are still listed and shown)."""
    store = run_store()
    return store if store is not None and not store.read_only else None


def store_notice() -> str | None:
    """What every page says about saving on this server, if anything."""
    if (problem := store_problem()) is not None:
        return f"Runs are not saved on this server: {problem}"
    if (store := run_store()) is not None and store.read_only:
        return "The run store is read-only: runs can be viewed, not saved."
    return None


class LiveRuns:
    """The runs in this server's memory, by id, and the sessions holding each. A run no session
    holds is stopped (it is saved first): its session has ended. One that was training gets
    `grace` seconds first, because a reload ends the old session, and the new one must find
    the run still training to take it back; a later visit reopens it from the store, paused
    where it was saved."""

    def __init__(self, grace: float | None = None):
        self.grace = reload_grace() if grace is None else grace
        self._lock = threading.Lock()
        self._held: dict[str, tuple[Run, set[int]]] = {}
        self._orphaned: dict[str, float] = {}         # run id -> when its last holder let go
        self._timer: threading.Timer | None = None    # the one pending look at orphans

    def hold(self, run: Run, holder: object) -> None:
        with self._lock:
            self._held.setdefault(run.id, (run, set()))[1].add(id(holder))
            self._orphaned.pop(run.id, None)
        self._prune()

    def get(self, run_id: str) -> Run | None:
        self._prune()
        with self._lock:
            entry = self._held.get(run_id)
        return entry[0] if entry else None

    def release(self, run: Run, holder: object) -> None:
        with self._lock:
            entry = self._held.get(run.id)
            if entry:
                entry[1].discard(id(holder))
        self._prune()

    def drop(self, run: Run) -> None:
        with self._lock:
            self._held.pop(run.id, None)
            self._orphaned.pop(run.id, None)

    def _prune(self) -> None:
        now, later = time.monotonic(), []
        with self._lock:
            orphans = []
            for run_id, (run, holders) in list(self._held.items()):
                if holders:
                    continue
                since = self._orphaned.setdefault(run_id, now)
                if run.status == Status.RUNNING and now - since < self.grace:
                    later.append(since + self.grace - now)   # a reload may still take it back
                    continue
                orphans.append(run)
                del self._held[run_id]
                self._orphaned.pop(run_id, None)
            # One timer at a time, for the first grace to end (this may be that timer's own call).
            timer = self._timer
            if later and (timer is None or not timer.is_alive() or timer is threading.current_thread()):
                self._timer = threading.Timer(min(later) + 0.05, self._prune)
                self._timer.daemon = True
                self._timer.start()
        for run in orphans:
            run.retire()                # nobody can take it back now


@st.cache_resource(show_spinner=False)
def live_runs() -> LiveRuns:
    return LiveRuns()


WORKERS_ENV = "GATE_EXPLORER_WORKERS"


def use_workers() -> bool:
    """Whether admitted runs train in worker processes (explorer.worker): yes where the platform
    can start them, unless GATE_EXPLORER_WORKERS is 0 (then they train on the server's threads)."""
    return available() and os.environ.get(WORKERS_ENV, "1").strip() != "0"


@st.cache_resource(show_spinner=False)
def admission() -> Admission:
    """The server's admission: how many runs train at once (GATE_EXPLORER_MAX_RUNS), and the
    worker processes they train in, started now so the first Train does not wait for them."""
    slots = max_runs()
    if ray_engine.app_engine() == "ray":          # GATE_EXPLORER_ENGINE=ray: each run in a Ray actor
        try:
            ray_engine.require_ray()
            return Admission(slots, workers=ray_engine.shared(keep=slots))
        except ValueError as error:               # (Ray is not installed: the runs train here)
            logging.getLogger("gate_explorer").warning("%s=ray: %s; runs train on this machine",
                                                       ray_engine.ENGINE_ENV, error)
    return Admission(slots, workers=shared(keep=slots) if use_workers() else None)


@dataclass
class Session:
    """One browser session's runs, its owner key, and the folder its uploaded CSV files live in."""

    owner_key: str = ""
    run: Run | None = None
    upload_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="gate-explorer-"))
    lesson_key: str | None = None
    lesson_runs: dict[str, Run] = field(default_factory=dict)   # variant label -> its run
    follow_token: str | None = None     # the follow link this session follows (pages/follow.py)
    followed_id: str | None = None      # the run it named last time
    moved_at: float | None = None       # when its owner last moved it to a new run
    watching: object | None = None      # that run's read-only view (explorer.follow.Followed)
    # What this session's Train page polls its live charts with (pages/live.py): a name for the
    # session that only its own browser is told, and the figures it built last (by chart).
    watch_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    charts: dict = field(default_factory=dict)
    # The settings that could not start a run when last tried, and why: shown once (sidebar,
    # Train page heading), though every page's current_run tries them again.
    refused: tuple[Config, str] | None = None

    def follow(self, token: str) -> None:
        """Follow the run a follow link names, instead of training one's own."""
        from pages.follow import follow_board
        self.unfollow()
        self.follow_token = token
        if (board := follow_board()) is not None:
            board.join(token, self)
        old, self.run = self.run, None
        self._retire(old)

    def unfollow(self) -> None:
        from pages.follow import follow_board
        if self.follow_token and (board := follow_board()) is not None:
            board.leave(self.follow_token, self)
        self.follow_token = self.followed_id = self.watching = self.moved_at = None

    def new_run(self, config: Config, name: str | None = None) -> Run:
        store = saving_store()
        run = Run(config, idle_timeout=IDLE_TIMEOUT, store=store, owner_key=self.owner_key if store else None,
                  name=name, admission=admission())
        if run.id:
            live_runs().hold(run, self)
        return run

    def look_inside(self, config: Config, task, name: str) -> Run:
        """Your model (explorer.yours) as this session's run: traced now, saved at once (it has
        no training to save it later), reopened by its link like any run."""
        store = saving_store()
        trainer = Trainer(config, task=task)
        run = Run(config, IDLE_TIMEOUT, trainer, store, owner_key=self.owner_key if store else None,
                  name=name, status=Status.FINISHED)
        run.save()
        if run.id:
            live_runs().hold(run, self)
        self.adopt(run)
        return run

    def replace(self, config: Config) -> str | None:
        """Start over with a new run of config; on failure keep the old run, return why."""
        try:
            run = self.new_run(config)
        except ERRORS as error:
            return str(error)
        old, self.run = self.run, run
        self._retire(old)
        return None

    def open(self, run_id: str, owner_key: str | None) -> tuple[Run | None, str | None]:
        """A run by id: the live one (with its owner key, full control), else the saved one
        (paused; read-only without the key). Returns (run, None) or (None, why not)."""
        live = live_runs().get(run_id)
        if live is not None and owner_key and live.owner_key and hmac.compare_digest(live.owner_key, owner_key):
            live_runs().hold(live, self)
            return live, None
        store = run_store()
        if store is None:
            return None, f"runs cannot be reopened here: {store_problem()}"
        try:
            run = Run.open(store, run_id, owner_key, idle_timeout=IDLE_TIMEOUT, admission=admission())
        except ERRORS as error:
            return None, str(error)
        if not run.read_only:
            # owned: the one live copy (a stale one left paused in memory is replaced)
            if live is not None:
                live_runs().drop(live)
                live.stop()
            live_runs().hold(run, self)
        return run, None

    def adopt(self, run: Run) -> None:
        """Make run the session's run (a lesson's variant, a run opened from the Runs page); a
        follower stops following."""
        self.unfollow()
        old, self.run = self.run, run
        self._retire(old)

    def lesson(self, lesson, fresh: bool = False) -> dict[str, Run]:
        """The runs of lesson's variants, made when the lesson is new here (or fresh is asked)."""
        if fresh or self.lesson_key != lesson.key:
            self.stop_lesson()
            self.lesson_runs = {v.label: self.new_run(v.config, name=f"{lesson.title}: {v.label}")
                                for v in lesson.variants}
            self.lesson_key = lesson.key
        return self.lesson_runs

    def open_lesson(self, lesson, run_ids: list[str], owner_key: str | None) -> str | None:
        """The lesson's variants from saved runs (a lesson link with runs=); None or why not."""
        if len(run_ids) != len(lesson.variants):
            return f"the link names {len(run_ids)} runs for a lesson of {len(lesson.variants)} variants"
        opened = {}
        for variant, run_id in zip(lesson.variants, run_ids):
            run, problem = self.open(run_id, owner_key)
            if problem:
                for done in opened.values():
                    self._retire(done)
                return problem
            opened[variant.label] = run
        self.stop_lesson()
        self.lesson_runs, self.lesson_key = opened, lesson.key
        return None

    def stop_lesson(self) -> None:
        old, self.lesson_runs, self.lesson_key = self.lesson_runs, {}, None
        for run in old.values():
            self._retire(run)

    def _retire(self, run: Run | None) -> None:
        """Stop a run this session let go of (it is saved), unless it still holds it in its
        other role (a lesson's variant adopted as the session's run, or the reverse)."""
        if run is not None and run is not self.run and run not in self.lesson_runs.values():
            if run.id:
                live_runs().release(run, self)
                live_runs().drop(run)
            run.stop()

    def close(self) -> None:
        """The browser session ended (a closed tab, a reload after Streamlit's disconnected TTL):
        save its runs, stop those no other session holds (a reload's new session holds a run it
        took back), remove its uploads, and give the memory back. Streamlit calls this on its
        event loop, so the work (waiting for a step in flight, saving) is done on a thread of its
        own: the reloading tab's new session must not wait for it."""
        runs = list({id(r): r for r in [self.run, *self.lesson_runs.values()] if r is not None}.values())
        self.unfollow()
        watches().drop(self.watch_token)
        threading.Thread(target=self._let_go, args=(runs,), name="gate-explorer-close", daemon=True).start()
        sweeper.expect()         # Streamlit keeps the ended session itself until swept (pages/sweeper.py)

    def _let_go(self, runs: list[Run]) -> None:
        for run in runs:
            run.save()
            if run.id:
                live_runs().release(run, self)      # stopped there unless another session holds it
            if not run.id or live_runs().get(run.id) is None:
                run.retire()                        # Streamlit may keep this session's objects a while
        shutil.rmtree(self.upload_dir, ignore_errors=True)   # after the saves: a CSV run keeps its file
        # Until the sweep, Streamlit's store holds this session, and its pages' objects hold it.
        self.run, self.lesson_runs, self.charts = None, {}, {}
        if runs:                 # (a follower's session had none: a full pass would stall the training)
            gc.collect()         # a trainer's tensors can sit in reference cycles
        give_back()
        # Streamlit frees the session itself (its state, messages, connection) after this
        # callback returns, and this thread lets go of its runs as it ends: collect and trim
        # once more when that is done (pages/sweeper.py does when the session itself goes).
        later = threading.Timer(TRIM_AGAIN_S, _collect if runs else give_back)
        later.daemon = True
        later.start()


def _collect() -> None:
    gc.collect()
    give_back()


class Watches:
    """The server's browser sessions by watch token: the owner's Train page polls its run's
    charts by it (pages/live.py), outside any script run. Weak: a session Streamlit has let go
    of is gone from here too, whether or not its close ran."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sessions: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()

    def add(self, where: Session) -> None:
        with self._lock:
            self._sessions[where.watch_token] = where

    def get(self, token: str) -> Session | None:
        with self._lock:
            return self._sessions.get(token)

    def drop(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)


@st.cache_resource(show_spinner=False)
def watches() -> Watches:
    return Watches()


@st.cache_resource(scope="session", on_release=Session.close, show_spinner=False)
def session() -> Session:
    where = Session(owner_key=browser_key())
    watches().add(where)
    return where


def refresh_every(seconds: float) -> float:
    """A live page's refresh interval: `seconds` while the server trains no more runs than it
    has places, longer in proportion when more runs train or wait. A classroom's pages then
    share the processor with the training instead of taking it: measured on 2 cores with
    10 sessions refreshing every 0.4 s, the pages redrew every 20 to 60 s and the runs
    their views showed barely moved."""
    places = admission()
    admitted, waiting = places.counts()
    return seconds * max(1.0, (admitted + waiting) / places.slots)


def waiting_note(place: int, slots: int, siblings: Sequence[str] = ()) -> str:
    """What a queued run's page says: its place (explorer.admission: 1 is next), whom it waits
    for when that is its own lesson's other variants (`siblings`, those training now), and that
    it starts by itself."""
    line = "Waiting: next in line." if place == 1 else f"Waiting: {place - 1} run{'s' * (place != 2)} ahead in line."
    places = f"This server trains {slots} run{'s' * (slots != 1)} at a time"
    if siblings:
        held = "it" if slots == 1 else "them" if len(siblings) == slots else f"{len(siblings)} of them"
        return (f"{line} {places}, and this lesson's {_listed(siblings)} {'is' if len(siblings) == 1 else 'are'} "
                f"training in {held} now: this variant starts by itself as soon as a place frees up.")
    return (f"{line} {places}, so each has its share of the processor; yours starts by itself when a "
            "place frees up (Pause leaves the queue).")


def _listed(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def siblings_training(where: Session, run: Run) -> list[str]:
    """The labels of the session's lesson variants other than run that hold a place now (the
    admission's): whom run, one of them, is queued behind."""
    return [label for label, other in where.lesson_runs.items()
            if other is not run and other.admission is not None and other.admission.place(other) == 0]


def ended_note(snap, trainer: Trainer) -> str:
    """What the page of a finished, diverged or failed run says: how it ended, in its own words,
    or, for a run reopened from the store (which keeps no message), from its state."""
    if snap.message and snap.message != trainer.device_warning:
        return snap.message
    if snap.status == Status.DIVERGED:
        return trainer.divergence_message or f"Diverged after step {snap.step:,}."
    if snap.status == Status.ERROR:
        return f"Training stopped with an error after step {snap.step:,}."
    return f"Finished {snap.step:,} steps."


def current_run(config: Config | None) -> Run | None:
    """This session's run, built from config when there is none yet or when it has not
    trained a step (so changing a setting before pressing Train just takes effect). A
    follower's is the run it follows, read-only (None when its link is refused)."""
    where = session()
    if where.follow_token:
        from pages.follow import watched
        return watched()[0]
    run = where.run
    untouched = (run is not None and not run.read_only and run.trainer.steps_done == 0
                 and run.status == Status.IDLE)
    if config is not None and (run is None or (untouched and run.trainer.config != config)):
        problem = where.replace(config)
        where.refused = (config, problem) if problem else None
    return where.run


def setup_refusal(config: Config | None) -> str | None:
    """Why these settings could not start a run (current_run tried them), or None: the sidebar
    says it once, the Train page what it shows instead."""
    where = session()
    if where.refused is None or config is None or where.refused[0] != config:
        return None
    # a run of them may have started since, by another way (Reset, a lesson)
    started = where.run is not None and where.run.trainer.config == config
    return None if started else where.refused[1]
