"""Sweeps: many runs over a grid of Configs (cells x lengths x seeds...), one row each.

The lesson of vanishing gradients is a curve, not a run: as the sequences grow the plain RNN
fails first, then the LSTM and GRU. Drawing it honestly takes dozens of runs, so a sweep runs
them in parallel, in a process pool on this machine (`local`) or as Ray tasks (`ray`, on a
local Ray instance or a cluster), and returns a DataFrame with one row per run (COLUMNS).

Every run trains in a process of its own with one torch thread, so the same config gives the
same numbers on either engine. It is made into a RunRecord there (only its final probe trace:
a 1,000-run sweep stays small) and written to the run store here, in the process that holds
the store, with its row: a sweep stopped at any moment keeps whole rows, and `resume(id)` runs
only the configs without one. A run that raises becomes a row with status "failed" and the
sweep goes on; a failed row has no run, and a resumed sweep runs it again.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .config import FIELDS, Config

ENGINES = ("local", "ray")
# After the Config fields, in this order: other tools read these columns by name.
RESULT_COLUMNS = ("eval_loss", "eval_metric", "eval_sequences", "baseline_loss", "solved_step",
                  "grad_ratio_init", "grad_ratio_final", "seconds", "steps_per_second", "status", "message",
                  "run_id")
CONFIG_COLUMNS = tuple(f.name for f in dataclasses.fields(Config))
COLUMNS = CONFIG_COLUMNS + RESULT_COLUMNS
STATUSES = ("finished", "diverged", "failed")
MAX_PAGE_RUNS_ENV = "GATE_EXPLORER_MAX_SWEEP_RUNS"
MAX_PAGE_RUNS = 60           # a sweep started from the app: at most this many runs (a class shares the server)
CANCEL_EVERY = 25            # steps between a worker's looks at the sweep's cancel flag

Progress = Callable[[int, int, dict], None]   # (rows done, rows in all, the newest row)


class Cancelled(Exception):
    """The sweep was cancelled: the rows done so far are stored; resume(sweep_id) runs the rest."""

    def __init__(self, sweep_id: str, done: int, total: int):
        super().__init__(f"sweep {sweep_id} cancelled after {done} of {total} runs; "
                         f"resume it with its id")
        self.sweep_id, self.done, self.total = sweep_id, done, total


def max_page_runs() -> int:
    """The runs one sweep started from the app may have: GATE_EXPLORER_MAX_SWEEP_RUNS, else 60."""
    from .data import env_number
    return int(env_number(MAX_PAGE_RUNS_ENV, MAX_PAGE_RUNS))


# -- the grid ----------------------------------------------------------------------------------------

def grid(axes: Mapping[str, Sequence], seeds: int | None = None, **fixed) -> list[Config]:
    """Every combination of the axes' values (the first axis varies slowest), seeds 0..seeds-1
    innermost, with the fixed fields set on every run. Values may be strings, as from a CLI.
    ValueError names a bad field or value. A sweep's run probes at its start and its end only,
    unless probe_every is given: the sweep keeps its final trace, not the ones between."""
    axes = {name: list(values) for name, values in axes.items()}
    if seeds is not None:
        if "seed" in axes or "seed" in fixed:
            raise ValueError("give the seeds either as --seeds N or as a seed field, not both")
        if not 1 <= int(seeds) <= 10_000:
            raise ValueError(f"seeds must be between 1 and 10000, got {seeds}")
        axes["seed"] = list(range(int(seeds)))
    for name, values in axes.items():
        if not values:
            raise ValueError(f"the grid's {name} has no values")
    overlap = sorted(set(axes) & set(fixed))
    if overlap:
        raise ValueError(f"{overlap[0]} is both a grid axis and a fixed setting")
    configs = []
    for combination in itertools.product(*axes.values()):
        values = {**fixed, **dict(zip(axes, combination))}
        if "probe_every" not in values:
            steps = Config.from_dict({"steps": values["steps"]}).steps if "steps" in values else Config.steps
            values["probe_every"] = min(steps, int(FIELDS["probe_every"].hi))
        configs.append(Config.from_dict(values))
    return configs


@dataclasses.dataclass(frozen=True)
class RunCost:
    """What one run of a kind costs here and now, in seconds, measured at length seq_len (by
    run_cost). A step, an eval, a probe are loops over time: at another length they are taken
    as growing with it (seconds_at)."""
    seq_len: int
    setup: float     # the Trainer: model, optimiser, held-out sets, the first probe
    step: float      # one training step, after the first (which pays the first-use costs)
    eval: float      # one periodic eval, on EVAL_SIZE held-out sequences
    final: float     # the end of a run: its last probe, its final eval (HELDOUT_SIZE sequences), its record

    def seconds_at(self, config: Config) -> float:
        """A run of config (this kind, at config.seq_len): set-up, its steps, its periodic
        evals, its end."""
        evals = config.steps // config.eval_every
        return (self.setup + config.steps * self.step + evals * self.eval + self.final) * config.seq_len / self.seq_len


def run_cost(config: Config, steps: int = 3) -> RunCost:
    """Measured here and now, in this process: each part of a run of config, as run_one does it."""
    from .store import run_record
    from .trainer import Trainer
    config = dataclasses.replace(config, steps=steps + 1, probe_every=100_000, eval_every=100_000)
    Trainer(config).step()                    # (the first trainer and step here pay the first-use costs)
    started = time.perf_counter()
    trainer = Trainer(config)
    setup = time.perf_counter() - started
    trainer.step()
    started = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    trainer.flush()
    step = (time.perf_counter() - started) / steps
    started = time.perf_counter()
    trainer.evaluate()
    evaluate = time.perf_counter() - started
    started = time.perf_counter()
    trainer.probe()
    trainer.final_eval()
    run_record(trainer, "finished", last_trace_only=True)
    return RunCost(config.seq_len, setup, step, evaluate, time.perf_counter() - started)


def _time_a_worker(config: dict, threads: int, out) -> None:
    """(In a new process, started as a sweep's worker.) Run config twice; put the second run's
    seconds, its first-use costs paid by the first."""
    _worker_start(None, threads)
    run_one(config)
    out.put(run_one(config)[0]["seconds"])


def worker_seconds(config: Config, workers: int = 1) -> float:
    """Measured here and now: what a local sweep's workers cost besides their runs, started side
    by side as _run_local starts them. A worker's start: a new process (spawn), its imports
    (torch, whose optimisers import torch._dynamo at first use), a first run's first-use costs;
    its end: the process's exit, which the pool waits for (seconds as well, with torch loaded).
    Timed on `workers` such processes each running config twice (estimate_seconds gives a
    one-step run): the time until the last has exited, less two warm runs."""
    from . import threads as thread_policy
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    started = time.perf_counter()
    processes = [context.Process(target=_time_a_worker, args=(config.to_dict(), thread_policy.resolve(), out),
                                 daemon=True) for _ in range(workers)]
    for process in processes:
        process.start()
    warm = []
    while len(warm) < workers:                   # (read before joining: a queue's writer exits once read)
        try:
            warm.append(out.get(timeout=1.0))
        except queue.Empty:
            codes = [process.exitcode for process in processes]
            if any(code not in (None, 0) for code in codes) or None not in codes:
                raise RuntimeError("a sweep worker stopped while its start was timed") from None
    for process in processes:
        process.join()
    return max(0.0, time.perf_counter() - started - 2 * max(warm))


def _kind(config: Config) -> tuple:
    """Runs of one kind differ only in their length, seed and steps: one measurement serves them."""
    return tuple(v for k, v in config.to_dict().items() if k not in ("seq_len", "seed", "steps"))


def estimate_seconds(configs: Sequence[Config], workers: int, measure: Callable[[Config], RunCost] = run_cost,
                     worker: Callable[[Config, int], float] = worker_seconds, cores: int | None = None,
                     load: float | None = None) -> float:
    """About how long a local sweep of configs takes on `workers` processes: the workers' start
    and end (worker(config, workers): they start side by side), and the runs, each kind measured
    once at its longest length, handed out in order to whichever worker is free first, as the
    pool does. A run was measured alone beside `load` busy processes (default: the machine's
    load average); its workers will run beside that load and each other, each getting a fair
    share of the cores."""
    from .admission import cores as cores_here
    if not configs:
        return 0.0
    cores = cores or cores_here()
    load = os.getloadavg()[0] if load is None else load
    longest: dict[tuple, Config] = {}
    for config in configs:
        kind = _kind(config)
        if kind not in longest or config.seq_len > longest[kind].seq_len:
            longest[kind] = config
    costs = {kind: measure(config) for kind, config in longest.items()}
    workers = max(1, min(workers, len(configs)))
    # A core's share each of the workers gets, against the share the measured run got.
    sharing = max(1.0, (load + workers) / cores) / max(1.0, (load + 1) / cores)
    free_at = [0.0] * workers                                   # when each worker is next free
    for config in configs:
        soonest = min(range(workers), key=free_at.__getitem__)
        free_at[soonest] += costs[_kind(config)].seconds_at(config)
    # The first run's task and cell (a cell compiled at first use, a task's data read), one step:
    # the same for any seed or step budget, so a caller can keep the measurement.
    first = dataclasses.replace(configs[0], steps=1, seed=0, probe_every=1, eval_every=1)
    return worker(first, workers) + max(free_at) * sharing


# -- one run (in a worker process) -------------------------------------------------------------------

def grad_ratio(trace) -> float | None:
    """‖∂L/∂h_0‖ / ‖∂L/∂h_T‖ of the top layer over the traced sequences: how much of the loss's
    gradient at the last step reaches the first. None when nothing reaches the last step."""
    grad = np.asarray(trace.layers[-1].grad_hidden, dtype=np.float64)      # (batch, time) per-sequence norms
    first, last = np.sqrt((grad[:, 0] ** 2).sum()), np.sqrt((grad[:, -1] ** 2).sum())
    if not (last > 0 and math.isfinite(first) and math.isfinite(last)):
        return None
    return float(first / last)


def run_one(config: dict, should_stop: Callable[[], bool] = lambda: False):
    """Train one config to its step budget: (row, RunRecord or None). Never raises for the run's
    own failures: they become a "failed" row. Returns None if should_stop() said so midway."""
    from .store import new_id, run_record
    from .trainer import Trainer

    row = dict(config, **{name: None for name in RESULT_COLUMNS})
    started = time.perf_counter()
    try:
        trainer = Trainer(Config.from_dict(config))
        task = trainer.task
        row["baseline_loss"] = float(task.baseline_loss)
        row["grad_ratio_init"] = grad_ratio(trainer.history.latest_trace()[1])
        training_started = time.perf_counter()
        while not trainer.finished:
            if trainer.step() is None:
                break
            if trainer.steps_done % CANCEL_EVERY == 0 and should_stop():
                return None
        training = time.perf_counter() - training_started
        if trainer.history.latest_trace()[0] != trainer.steps_done:
            trainer.probe()                      # (a probe_every that does not divide the steps)
        trainer.wait_for_probe()
        row["grad_ratio_final"] = grad_ratio(trainer.history.latest_trace()[1])
        # The run's final eval, as `python -m explorer train` reports it and the store keeps it.
        final = trainer.final_eval()
        row["eval_loss"], row["eval_metric"], row["eval_sequences"] = final.loss, final.metric, final.sequences
        evals = trainer.history.view().evals
        below = evals["step"][evals["eval_loss"] < task.baseline_loss / 2]
        row["solved_step"] = int(below[0]) if len(below) else None
        row["steps_per_second"] = trainer.steps_done / training if training > 0 else None
        row["status"] = "diverged" if trainer.diverged else "finished"
        row["message"] = trainer.divergence_message
        record = run_record(trainer, row["status"], last_trace_only=True)
        row["run_id"] = new_id()
    except Exception as error:       # noqa: BLE001 — any failure of one run is that run's row
        row.update({name: None for name in RESULT_COLUMNS}, status="failed", message=_why(error))
        record = None
    row["seconds"] = time.perf_counter() - started
    return row, record


def _why(error: BaseException) -> str:
    """A failed run's message: one line; what the user can act on first."""
    from .data import DataError
    from .run import out_of_memory
    first = (str(error).strip().splitlines() or [""])[0]
    if out_of_memory(error):
        return f"out of memory: {first}"
    if isinstance(error, (ValueError, DataError)) and first:
        return first                         # (already says what was wrong with the settings or data)
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


# -- the engines ---------------------------------------------------------------------------------------

_CANCEL = None          # in a local pool's worker: the sweep's cancel flag (multiprocessing.Event)


def _worker_start(cancel, threads: int) -> None:
    """A local pool's worker: the sweep's torch threads per run, a trainer's allocator settings,
    the cancel flag."""
    global _CANCEL
    from . import threads as thread_policy
    from .memory import settle_for_training
    thread_policy.use(threads)
    settle_for_training()
    _CANCEL = cancel


def _local_run(config: dict):
    return run_one(config, should_stop=_CANCEL.is_set)


def _run_local(pending: dict[int, dict], workers: int, threads: int, cancel: threading.Event,
               done: Callable) -> bool:
    """Run the configs in a pool of `workers` processes of `threads` torch threads each;
    done(position, result) as each ends. False if cancelled (the runs under way stop at their
    next look at the flag)."""
    context = multiprocessing.get_context("spawn")       # (fork would copy the caller's torch threads)
    flag = context.Event()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_start,
                             initargs=(flag, threads)) as pool:
        futures = {pool.submit(_local_run, config): position for position, config in pending.items()}
        try:
            while futures:
                finished, _ = wait(futures, timeout=0.2, return_when=FIRST_COMPLETED)
                if cancel.is_set():
                    flag.set()
                    for future in futures:
                        future.cancel()
                    return False
                for future in finished:
                    position = futures.pop(future)
                    result = future.result()
                    if result is not None:
                        done(position, result)
        except BaseException:                     # Ctrl-C, a broken pool: stop every worker's run
            flag.set()
            for future in futures:
                future.cancel()
            raise
    return True


def _ray_run(config: dict, threads: int):
    from . import threads as thread_policy
    thread_policy.use(threads)
    return run_one(config)


def _run_ray(pending: dict[int, dict], address: str | None, threads: int, cancel: threading.Event,
             done: Callable) -> bool:
    """Run the configs as Ray tasks of `threads` CPUs (torch threads) each; done(position,
    result) as each ends."""
    from . import ray_engine
    ray = ray_engine.require_ray()
    ray_engine.init(address)
    remote = ray.remote(num_cpus=threads, max_retries=0)(_ray_run)
    refs = {remote.remote(config, threads): position for position, config in pending.items()}
    try:
        while refs:
            finished, _ = ray.wait(list(refs), num_returns=1, timeout=0.2)
            if cancel.is_set():
                for ref in refs:
                    ray.cancel(ref, force=True)
                return False
            for ref in finished:
                position = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as error:          # noqa: BLE001 — the task's process died, say
                    result = (dict(pending[position], **{name: None for name in RESULT_COLUMNS},
                                   status="failed", message=_why(error)), None)
                done(position, result)
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    return True


# -- the sweep -----------------------------------------------------------------------------------------

def sweep(configs: Iterable[Config], *, engine: str = "local", store=None, workers: int | None = None,
          address: str | None = None, progress: Progress | None = None,
          cancel: threading.Event | None = None, sweep_id: str | None = None,
          owner_key: str | None = None, threads: int | None = None) -> pd.DataFrame:
    """Run every config to its step budget; a DataFrame with one row per config, in their order,
    with COLUMNS. The sweep, its rows and its runs are kept in `store` (a RunStore; the default
    one when None) under the frame's attrs["sweep_id"]. progress(done, total, row) as each run
    ends. Setting `cancel` stops the sweep: Cancelled is raised, and what was done is kept.
    The sweep and its runs belong to owner_key (a browser's, from the app), or to nobody who can
    change them.
    Each run trains with `threads` torch threads (explorer/threads.py: else OMP_NUM_THREADS,
    else one), and a local pool has one process per `threads` cores unless `workers` says."""
    from .store import RunStore, new_id
    configs = [c.to_dict() for c in configs]
    if not configs:
        raise ValueError("a sweep needs at least one config")
    store = store if store is not None else RunStore()
    sweep_id = sweep_id or new_id()
    store.create_sweep(sweep_id, configs, owner_key)
    return _carry_out(store, sweep_id, configs, {}, engine, workers, address, progress, cancel, owner_key, threads)


def resume(sweep_id: str, *, engine: str = "local", store=None, workers: int | None = None,
           address: str | None = None, progress: Progress | None = None,
           cancel: threading.Event | None = None, owner_key: str | None = None,
           threads: int | None = None) -> pd.DataFrame:
    """Go on with a stored sweep: the configs with a finished or diverged row are skipped."""
    from .store import RunStore
    store = store if store is not None else RunStore()
    configs = store.sweep_configs(sweep_id)
    kept = {position: row for position, row in store.sweep_rows(sweep_id).items() if row["status"] != "failed"}
    return _carry_out(store, sweep_id, configs, kept, engine, workers, address, progress, cancel, owner_key, threads)


def results(sweep_id: str, store=None) -> pd.DataFrame:
    """A stored sweep's rows so far, in the grid's order."""
    from .store import RunStore
    store = store if store is not None else RunStore()
    rows = store.sweep_rows(sweep_id)
    return _frame([rows[position] for position in sorted(rows)], sweep_id)


def _carry_out(store, sweep_id, configs, kept, engine, workers, address, progress, cancel,
               owner_key, threads) -> pd.DataFrame:
    from . import threads as thread_policy
    from .admission import cores
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    threads = thread_policy.resolve(threads)
    rows = dict(kept)
    pending = {position: config for position, config in enumerate(configs) if position not in rows}
    cancel = cancel or threading.Event()
    total = len(configs)

    def done(position: int, result) -> None:
        row, record = result
        store.add_sweep_row(sweep_id, position, row, record, owner_key)
        rows[position] = row
        if progress is not None:
            progress(len(rows), total, row)

    if pending:
        if engine == "local":
            count = max(1, min(workers or cores() // threads, len(pending)))
            complete = _run_local(pending, count, threads, cancel, done)
        else:
            complete = _run_ray(pending, address, threads, cancel, done)
        if not complete:
            raise Cancelled(sweep_id, len(rows), total)
    return _frame([rows[position] for position in range(total)], sweep_id)


def _frame(rows: list[dict], sweep_id: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("solved_step", "eval_sequences"):
        frame[column] = frame[column].astype("Int64")
    for column in ("eval_loss", "eval_metric", "baseline_loss", "grad_ratio_init", "grad_ratio_final",
                   "seconds", "steps_per_second"):
        frame[column] = frame[column].astype("float64")
    for column in ("status", "message", "run_id"):
        frame[column] = frame[column].astype("string")
    frame.attrs["sweep_id"] = sweep_id
    return frame


class SweepJob:
    """A sweep (new, or resumed by its id) on a thread of its own, for a page to poll: the page
    never waits for it, and it goes on while nobody looks. `state()` is a lock-protected copy."""

    def __init__(self, store, configs: list[Config] | None = None, sweep_id: str | None = None, *,
                 workers: int | None = None, owner_key: str | None = None, engine: str = "local"):
        from .store import new_id
        if configs is None and sweep_id is None:
            raise ValueError("a sweep job needs configs or the id of a stored sweep")
        self.store, self.resuming = store, configs is None
        self.owner_key = owner_key
        self.sweep_id = sweep_id or new_id()
        if configs is not None:
            if not configs:
                raise ValueError("a sweep needs at least one config")
            # Stored now, with its owner, not on the thread: the page that started it lists it
            # (as its starter's) on its very next run.
            store.create_sweep(self.sweep_id, [c.to_dict() for c in configs], owner_key)
        self.total = len(store.sweep_configs(self.sweep_id))
        self._options = dict(engine=engine, store=store, workers=workers, owner_key=owner_key,
                             progress=self._progress, cancel=threading.Event())
        self._lock = threading.Lock()
        self._done = len(store.sweep_rows(self.sweep_id)) if self.resuming else 0
        self._status, self._message = "running", ""
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._work, name="gate-explorer-sweep", daemon=True)
        self._thread.start()

    def _progress(self, done: int, total: int, row: dict) -> None:
        with self._lock:
            self._done = done

    def _work(self) -> None:
        try:
            resume(self.sweep_id, **self._options)          # (a new one: stored, with no row yet)
            status, message = "finished", ""
        except Cancelled as stopped:
            status, message = "cancelled", str(stopped)
        except Exception as error:    # noqa: BLE001 — the page says why the sweep stopped
            status, message = "failed", f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
        with self._lock:
            self._status, self._message = status, message

    def cancel(self) -> None:
        self._options["cancel"].set()

    def state(self) -> dict:
        """{"done", "total", "status" (running, finished, cancelled or failed), "message", "seconds"}."""
        with self._lock:
            return {"done": self._done, "total": self.total, "status": self._status, "message": self._message,
                    "seconds": time.monotonic() - self.started}

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
