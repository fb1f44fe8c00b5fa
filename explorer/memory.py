"""Giving memory back to the operating system after runs end (glibc only; a no-op elsewhere).

A server whose sessions have come and gone should not keep what they used. With glibc's
defaults it does: every thread that allocates gets a malloc arena of its own (five exist before
the app's code first runs), and free memory at the top of an arena other than the main one is
only returned when it exceeds the trim threshold, which glibc raises by itself up to 64 MB once
a large tensor has been freed; `malloc_trim` never touches those tops. Measured with four
sessions on a two-core server, RSS stayed +77 MB above its baseline after they left, and
+101 MB after a second cohort.

So `settle_allocator` (once, at start) fixes the two thresholds instead of letting glibc raise
them: blocks up to 32 MB still come from the arenas (the size glibc's own rule reaches, so a
training step reuses its memory: with 1 MB or less, a default run made half the steps/s),
and an arena's free top over 16 MB goes back at once. `give_back` (when runs end) returns the
free pages inside the arenas.
The number of arenas matters too (each keeps a top of its own), and capping it only works
from the environment at start: glibc fixes the cap when the second thread first allocates,
before any app code runs. So the server is started with MALLOC_ARENA_MAX=2 (README), and
says so in its log when it is not (`arena_hint`). Measured with four sessions of 30 s, three
cohorts in a row (`python -m tests.load --cohorts 3`): RSS +19, +24, +25 MB over the baseline
after each; the thresholds and trims without the cap left +28, +42, +57, growing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt's parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20   # blocks at least this big are mmapped, and unmapped when freed
TRIM_THRESHOLD = 16 * 2**20   # free memory at an arena's top beyond this goes back to the OS
TRAINING_TRIM_THRESHOLD = 1024 * 2**20   # the same, in a process that only trains (settle_for_training)
ARENAS_ENV = "MALLOC_ARENA_MAX"
ARENAS = 2                    # the main arena and one for every other thread: they rarely contend


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


_LIBC = _libc()


def settle_allocator(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds for every arena (see the module's note); True if done."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(_LIBC.mallopt(M_TRIM_THRESHOLD, trim_threshold))


def settle_for_training() -> bool:
    """For a process that trains and little else (a worker, `python -m explorer train` or
    `bench`): the same thresholds, but an arena keeps up to TRAINING_TRIM_THRESHOLD free at its
    top. A step's temporaries are freed at its end and asked for again at the next step's start;
    returned to the OS in between, every page of them faults in again. Measured on the peephole
    LSTM at T = 100, hidden 64, batch 64: its hand-written backward took 5,500 page faults a call
    with the server's 16 MB, 120 with this, and its forward ran in 7 ms instead of 16. What the
    arena keeps is at most what a step used at its peak, which the run's memory budget counts."""
    return settle_allocator(trim_threshold=TRAINING_TRIM_THRESHOLD)


def arena_hint() -> str | None:
    """A line for the server's log when glibc's arenas are not capped; None when they are, or
    off glibc."""
    if _LIBC is None or os.environ.get(ARENAS_ENV):
        return None
    return (f"{ARENAS_ENV} is not set: memory that sessions used may stay with this process after "
            f"they end. Start the server with {ARENAS_ENV}={ARENAS} (see the README).")


def give_back() -> bool:
    """Return the free memory at the top of the main arena and in whole free pages to the OS."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))


def resident_mb(pid: int | str = "self") -> float | None:
    """A process's resident memory (VmRSS), MB: this one's by default. None where /proc cannot
    say (off Linux, or the process has ended)."""
    try:
        with open(f"/proc/{pid}/status") as file:
            status = file.read()
    except OSError:
        return None
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")), None)


def freeze_startup_objects() -> None:
    """Leave what the server made at start (torch, plotly, Streamlit: ~270,000 objects) out of
    the garbage collector's full passes. Each full pass holds the interpreter the training
    shares: with them in, one took about 0.4 s on two cores (measured in a class of twenty
    followers), and Streamlit and the sessions' ends make such passes."""
    import gc
    gc.collect()
    gc.freeze()
