"""Following a live run: the read-only view a follower gets, the follow links (tokens) of a
server, and the figures every follower shares.

A class follows the teacher's run: each student looks at it their own way (page, sequence,
layer, unit, step) but trains nothing and cannot slow it. So a follower
- reads the run's published snapshot (`Run.published`): one for every follower, taken again
  each `tick` seconds, so followers show the same step and share its figures (a run steps far
  more often than a page refreshes: fifty followers each on their own step would each build
  their own figures). It is not a look: a run its owner left still pauses itself when idle;
- traces sequences of its own on the copy of the weights the run took at its newest probe
  (`Trainer.probe_copy`), never under the run's lock;
- draws figures from `FigureCache`, where one figure per (run, step, view) is built once and
  shared by the owner and every follower.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable

from torch import nn

from .run import ReadOnly, Run, Snapshot, Status
from .store import FollowRefused, RunStore, StoreError
from .trace import Trace
from .trainer import Trainer


class Shadow:
    """A run's trainer as of its newest probe: the live trainer's task, config, probe set and
    device, with the copy of the model taken at that probe. Pages read it as they read a
    Trainer; tracing it never touches the live model."""

    trace = Trainer.trace              # the same tracing, on this object's model

    def __init__(self, trainer: Trainer, step: int, model: nn.Module):
        self._trainer = trainer
        self.model = model
        self.steps_done = step

    def __getattr__(self, name: str):
        # config, task, probe_set, device... are set once, when the trainer is made
        return getattr(self._trainer, name)


class Followed:
    """A run as its followers see it: live, read-only, and never waited on. It answers what
    pages ask of a Run; every control raises ReadOnly."""

    read_only = True
    owner_key = None

    def __init__(self, run: Run, token: str, tick: float = 0.5):
        self.run = run
        self.token = token
        self.tick = tick

    @property
    def id(self) -> str | None:
        return self.run.id

    @property
    def name(self) -> str | None:
        return self.run.name

    @property
    def admission(self):
        return self.run.admission

    @property
    def status(self) -> Status:
        return self.run.status

    @property
    def trainer(self) -> Shadow:
        trainer = self.run.trainer
        kept = trainer.probe_copy
        if kept is None:          # a run restored without one: copied once, between its steps
            self.run.inspect(lambda model: trainer.keep_probe_copy())
            kept = trainer.probe_copy
        step, model = kept
        return Shadow(trainer, step, model)

    def snapshot(self) -> Snapshot:
        return self.run.published(self.tick)

    def trace(self, x, y=None) -> Trace:
        return self.trainer.trace(x, y)

    def inspect(self, fn):
        return fn(self.trainer.model)

    def _refuse(self, *args, **kwargs):
        raise ReadOnly("this run is followed, not owned: only its owner trains it")

    start = pause = resume = step = stop = retire = retrace = _refuse


class FollowBoard:
    """A server's follow links: which run each token names (from the store, kept in memory),
    and which sessions follow each token now."""

    def __init__(self, store: RunStore):
        self.store = store
        self._lock = threading.Lock()
        self._runs: dict[str, str | FollowRefused] = {}      # token -> run id, or why it is refused
        self._followers: dict[str, set[int]] = {}            # token -> ids of following sessions
        self.problem: str | None = None       # why the store could not be read for a follower last time

    def link(self, run_id: str, owner_key: str, make: bool = True) -> str | None:
        """The run's follow token (made now if it has none and make is set)."""
        token = self.store.follow_of(run_id, owner_key)
        if token is None and make:
            token = self.store.create_follow(run_id, owner_key)
        if token is not None:
            with self._lock:
                self._runs[token] = run_id
        return token

    def run_of(self, token: str) -> str:
        """The run id token names now; FollowRefused if unknown or revoked; StoreError if the
        store cannot be read now (not kept: the next call reads it again)."""
        with self._lock:
            known = self._runs.get(token)
        if known is None:
            try:
                known = self.store.followed(token)
            except FollowRefused as refused:
                known = refused
            except StoreError as error:
                self.problem = str(error)
                raise
            with self._lock:
                self._runs[token] = known
        if isinstance(known, FollowRefused):
            raise known
        return known

    def revoke(self, token: str, owner_key: str) -> None:
        self.store.revoke_follow(token, owner_key)
        with self._lock:
            self._runs[token] = FollowRefused("the run's owner has revoked this follow link: ask them for a new one")

    def move(self, token: str, run_id: str, owner_key: str) -> None:
        self.store.move_follow(token, run_id, owner_key)
        with self._lock:
            self._runs[token] = run_id

    def join(self, token: str, who: object) -> None:
        with self._lock:
            self._followers.setdefault(token, set()).add(id(who))

    def leave(self, token: str, who: object) -> None:
        with self._lock:
            self._followers.get(token, set()).discard(id(who))

    def count(self, token: str | None) -> int:
        with self._lock:
            return len(self._followers.get(token, ())) if token else 0


class FigureCache:
    """Figures (as Plotly JSON) built once per key and shared by every session that asks.

    A key names the view and the data it shows: (chart, run id, step, choices...). When five
    followers ask for the same figure at once, one builds it and four wait for it. The newest
    `size` figures are kept, at most `max_bytes` of them: a server's memory after a class has
    left holds these and no more. Anything else built once for many (the follow route's
    answers, pages/live.py) is kept the same way, with `weigh` saying its size in bytes."""

    def __init__(self, size: int = 96, max_bytes: int = 16 * 2**20, weigh: Callable[[object], int] = len):
        self.size, self.max_bytes, self.weigh = size, max_bytes, weigh
        self.builds = 0
        self._bytes = 0
        self._lock = threading.Lock()
        self._done: OrderedDict[Hashable, object] = OrderedDict()
        self._building: dict[Hashable, threading.Event] = {}

    def get(self, key: Hashable, build: Callable[[], object]):
        while True:
            with self._lock:
                if key in self._done:
                    self._done.move_to_end(key)
                    return self._done[key]
                pending = self._building.get(key)
                if pending is None:
                    pending = self._building[key] = threading.Event()
                    break
            pending.wait(30.0)       # another session builds it; on its failure, try ourselves
        try:
            spec = build()
            with self._lock:
                self.builds += 1
                if key in self._done:
                    self._bytes -= self.weigh(self._done.pop(key))
                self._bytes += self.weigh(spec)
                self._done[key] = spec
                while len(self._done) > self.size or (self._bytes > self.max_bytes and len(self._done) > 1):
                    self._bytes -= self.weigh(self._done.popitem(last=False)[1])
            return spec
        finally:
            with self._lock:
                self._building.pop(key, None)
            pending.set()


__all__ = ["FigureCache", "FollowBoard", "FollowRefused", "Followed", "Shadow"]
