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


def seconds_per_step(config: Config, steps: int = 3) -> float:
    """Measured here and now: a training step of config, after a first one (which pays the
    first-use costs), without its probes and evals."""
    from .trainer import Trainer
    trainer = Trainer(dataclasses.replace(config, steps=steps + 1, probe_every=100_000, eval_every=100_000),
                      record_start=False)
    trainer.step()
    started = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    return (time.perf_counter() - started) / steps


def estimate_seconds(configs: Sequence[Config], workers: int, measure=seconds_per_step) -> float:
    """About how long the sweep takes on `workers` processes: each kind of run (all but its
    length and seed alike) is timed at its longest length, and a step's time taken as growing
    with the length (an unrolled step is a loop over time)."""
    longest: dict[tuple, Config] = {}
    for config in configs:
        kind = tuple(v for k, v in config.to_dict().items() if k not in ("seq_len", "seed", "steps"))
        if kind not in longest or config.seq_len > longest[kind].seq_len:
            longest[kind] = config
    per_step = {kind: measure(config) / config.seq_len for kind, config in longest.items()}   # seconds per time step
    total = sum(per_step[tuple(v for k, v in c.to_dict().items() if k not in ("seq_len", "seed", "steps"))]
                * c.seq_len * c.steps for c in configs)
    return total / max(1, min(workers, len(configs)))


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
    The runs belong to owner_key (a browser's, from the app), or to nobody who can change them.
    Each run trains with `threads` torch threads (explorer/threads.py: else OMP_NUM_THREADS,
    else one), and a local pool has one process per `threads` cores unless `workers` says."""
    from .store import RunStore, new_id
    configs = [c.to_dict() for c in configs]
    if not configs:
        raise ValueError("a sweep needs at least one config")
    store = store if store is not None else RunStore()
    sweep_id = sweep_id or new_id()
    store.create_sweep(sweep_id, configs)
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
        self.store, self.configs, self.resuming = store, configs, configs is None
        self.owner_key = owner_key
        self.sweep_id = sweep_id or new_id()
        self.total = len(configs) if configs is not None else len(store.sweep_configs(self.sweep_id))
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
            if self.resuming:
                resume(self.sweep_id, **self._options)
            else:
                sweep(self.configs, sweep_id=self.sweep_id, **self._options)
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
