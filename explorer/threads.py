"""One thread policy for every way a run trains: the app, `train`, `bench`, `lesson`, `sweep`,
and a Trainer made from a notebook or a script.

Torch's intra-op thread pool is per process, and these models are small: a step is many
short operators, each too small to split well. On a machine with few cores, more threads
than the run's share of them cost far more than they gain when anything else is running:
measured on 2 cores (tests/threads_bench.py, docs/PERFORMANCE.md), the default run made 108
steps/s with torch's default of 2 threads and 78 with one on an idle machine, but 15.5 against
47 beside two busy processes. A shared machine (a classroom's server, CI, a laptop doing other
work) is the common case, and losing 3x there costs more than gaining 1.4x alone. So a run takes
one thread, as each of the app's admitted runs does (explorer/admission.py), unless its user
says otherwise:

- `--threads N` on the command line wins;
- then OMP_NUM_THREADS, which torch itself reads at start;
- then the policy: `per_run()` threads.

A library run (a Trainer) chooses only where nobody has: OMP_NUM_THREADS is unset, and
torch's count is still what it was when `explorer` was imported, so a notebook's own
`torch.set_num_threads(4)` stands. `use()` is how the command line, the app and worker
processes choose; after it, Trainers leave the count alone.
"""
from __future__ import annotations

import os

import torch

ENV = "OMP_NUM_THREADS"
AT_IMPORT = torch.get_num_threads()      # torch's count when explorer was imported
_chosen = False                          # whether use() has set the count in this process


def from_env() -> int | None:
    """OMP_NUM_THREADS as a count, or None when unset or not a positive whole number."""
    try:
        value = int(os.environ.get(ENV, ""))
    except ValueError:
        return None
    return value if value >= 1 else None


def per_run() -> int:
    """The policy's thread count for one run: one. Measured on 2 cores, one thread is 0.6-0.7x
    of two on an idle machine and 2-3x of two on a busy one (docs/PERFORMANCE.md); on a quiet
    machine, or one with many cores, --threads or OMP_NUM_THREADS gives a run more."""
    return 1


def resolve(requested: int | None = None) -> int:
    """The count a run uses: `requested` (--threads), else OMP_NUM_THREADS, else per_run()."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be at least 1, got {requested}")
        return requested
    return from_env() or per_run()


def use(requested: int | None = None) -> int:
    """Set torch's count for this process's runs (resolve()), and return it. Trainers made
    after this leave it alone."""
    global _chosen
    threads = resolve(requested)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    _chosen = True
    return threads


def settle() -> None:
    """A library run's choice: per_run() threads, only where nobody has chosen (no use() in
    this process, OMP_NUM_THREADS unset, torch's count as it was when explorer was imported)."""
    if _chosen or from_env() is not None or torch.get_num_threads() != AT_IMPORT:
        return
    if AT_IMPORT != per_run():
        torch.set_num_threads(per_run())
