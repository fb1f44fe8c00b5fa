"""Admission: how many runs of one server train at once, and who goes next.

A classroom shares one machine: ten runs stepping at once on two cores each get a sliver, and
the operating system's scheduler lets some starve. So at most `slots` runs train at a time
(GATE_EXPLORER_MAX_RUNS, by default one per core), each with its fair share of the cores
(`threads_per_run`: torch's intra-op threads are per process, so slots × threads never exceeds
the cores); further runs wait their turn, first come first served, and know their place.
A run leaves when it stops stepping (paused, finished, stopped, failed), and the next in line
is admitted at once.

Admitted runs also take fair turns. Two threads of one process share the interpreter lock,
and measured here one of two admitted runs made 48 steps while the other made 152; so each
admitted run keeps the seconds its steps took (a virtual clock, as a fair scheduler does), and
one that is more than QUANTUM seconds ahead of the furthest-behind waits for it to catch up.

A run a class follows (a holder whose `priority` is true: one with a follow link) goes first: it
is admitted ahead of the queue, it never waits for its turn, and its clock runs PRIORITY times
slower, so the others, which wait when they are ahead of it, step a PRIORITY-th of its time.
Two training threads of one process share one interpreter lock: an equal share would halve
the lecture's run, the one twenty screens are showing.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from contextlib import contextmanager

SLOTS_ENV = "GATE_EXPLORER_MAX_RUNS"
QUANTUM = 0.1          # seconds of stepping an admitted run may be ahead of the others
PRIORITY = 4.0         # how much more stepping time a followed run gets than another admitted one


def cores() -> int:
    """The cores this process may use (its affinity, where the platform says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:               # not on Linux
        return max(1, os.cpu_count() or 1)


def max_runs() -> int:
    """GATE_EXPLORER_MAX_RUNS, else one run per core (an unreadable value: the default)."""
    try:
        value = int(os.environ.get(SLOTS_ENV, ""))
    except ValueError:
        return cores()
    return value if value >= 1 else cores()


def threads_per_run(slots: int | None = None) -> int:
    """Torch threads for each admitted run, so that all of them together fit the cores; where
    OMP_NUM_THREADS is set, that (explorer/threads.py: one policy for every run)."""
    from .threads import from_env
    return from_env() or max(1, cores() // (slots or max_runs()))


class Admission:
    """At most `slots` holders admitted at once; the others wait first-come in a queue."""

    def __init__(self, slots: int | None = None, quantum: float = QUANTUM, workers=None):
        self.slots = slots or max_runs()
        self.quantum = quantum
        self.workers = workers        # explorer.worker.Workers: admitted runs train in them, if given
        self._lock = threading.Condition()
        self._admitted: list[object] = []
        self._queue: deque[object] = deque()
        self._used: dict[int, float] = {}       # id(admitted) -> seconds of stepping (virtual clock)

    def ask(self, who: object) -> int:
        """Ask to train: 0 when admitted, else how many queued runs are ahead of `who` plus
        one (1 = next). Asking again keeps its place."""
        with self._lock:
            if who not in self._admitted and who not in self._queue:
                self._queue.append(who)
            self._fill()
            return self._place(who)

    def place(self, who: object) -> int | None:
        """0 admitted, n > 0 the n-th in the queue, None when it has not asked."""
        with self._lock:
            return self._place(who)

    def leave(self, who: object) -> None:
        """Stop training (or waiting): the next in the queue takes the slot."""
        with self._lock:
            if who in self._admitted:
                self._admitted.remove(who)
                self._used.pop(id(who), None)
            elif who in self._queue:
                self._queue.remove(who)
            self._fill()
            self._lock.notify_all()

    @contextmanager
    def turn(self, who: object, timeout: float = 5.0):
        """One step of an admitted run, taken in fair turns: it waits (at most `timeout`) while
        it is more than `quantum` seconds of stepping ahead of the admitted run furthest behind;
        the step's duration then counts on its clock."""
        with self._lock:
            deadline = time.monotonic() + timeout
            while (id(who) in self._used and not _priority(who)
                   and self._used[id(who)] > min(self._used.values()) + self.quantum):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(min(left, 0.05))
        started = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                if id(who) in self._used:
                    self._used[id(who)] += (time.perf_counter() - started) / (PRIORITY if _priority(who) else 1.0)
                self._lock.notify_all()

    def counts(self) -> tuple[int, int]:
        """(admitted, waiting) now."""
        with self._lock:
            return len(self._admitted), len(self._queue)

    def _fill(self) -> None:
        while self._queue and len(self._admitted) < self.slots:
            who = next((w for w in self._queue if _priority(w)), self._queue[0])
            self._queue.remove(who)
            # A newcomer starts level with the furthest behind: no debt, and no credit to spend.
            self._used[id(who)] = min(self._used.values(), default=0.0)
            self._admitted.append(who)

    def _place(self, who: object) -> int | None:
        if who in self._admitted:
            return 0
        if who in self._queue:        # the runs that go first, then the others, each first come
            order = [w for w in self._queue if _priority(w)] + [w for w in self._queue if not _priority(w)]
            return order.index(who) + 1
        return None


def _priority(who: object) -> bool:
    return bool(getattr(who, "priority", False))
