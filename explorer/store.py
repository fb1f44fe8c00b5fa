"""RunStore: runs kept in SQLite, so a run outlives the browser tab and the server.

A saved run holds enough to reopen it and continue exactly: its config, every step record,
the evals and the probe traces its History keeps, the weights, the optimiser state, the
random-number states, and for a CSV run the file's bytes. No pickle anywhere: tensors and
arrays are safetensors, compressed with zlib; the rest is JSON.

- Where: `GATE_EXPLORER_DB`, else `runs.sqlite` in the per-user data directory (platformdirs).
- How: WAL mode, parameterised SQL only, one transaction per save (a killed process leaves
  the last committed save), a schema version in `meta` with migrations keyed by version.
- Size: traces' per-unit arrays (gates, h_t, c_t) are stored as float16, which the charts
  cannot tell from float32 (3 significant digits on 0..1 gates); gradient norms stay float32,
  since they span many orders of magnitude. A trace's `output` is not stored: it is the top
  layer's `hidden`.
- Held-out numbers: a run's row keeps its final eval (Trainer.final_eval: up to 1,000 held-out
  sequences) for the weights it saves, so `runs`, the Runs page and Compare read what `train`
  printed; the periodic evals on 256 are its history, the learning curve.
- Identity: run ids and owner keys are random, 128 bits each (`secrets`). The store keeps
  only a hash of the owner key; `owns(run_id, key)` checks one. A sweep keeps its starter's the
  same way (`list_sweeps(owner_key)`); a CLI sweep, or one from before schema 5, has none.
- Follow links: a follow token (128 random bits) names a run its followers watch, read-only. It
  is kept as is (its owner's Share menu shows it again after a reload), with a hash of its
  owner's key: only that key revokes it or points it at the owner's next run (Reset, "keep
  followers"). A run it names may not be saved yet (one that has not trained a step).
- Deletes win: a deleted run's id is kept (schema 6), and no save brings it back (RunDeleted),
  whichever tab, process or server still holds the run.
- Errors say what happened (StoreError's kinds): a full disk (StoreFull), a store this process
  may not write (StoreReadOnly: it is opened read-only, and its runs are listed and shown), a
  file that is not a database or is corrupt ("damaged"), anything else as SQLite says it.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save as save_arrays
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from . import csvsafe
from .cells import CELLS
from .config import Config
from .history import EVAL_FIELDS, STEP_FIELDS, History, HistoryView
from .tasks import TASKS, Task
from .trace import LayerTrace, Trace
from .trainer import FinalEval, Trainer

DB_ENV = "GATE_EXPLORER_DB"
SCHEMA_VERSION = 6
MAX_DATA_BYTES = 32 * 2**20      # a CSV kept with its run; larger files are read from their path
BUSY_TIMEOUT_S = 30.0            # how long a save waits for another process's transaction


class StoreError(Exception):
    """A store problem a user can act on (unknown run, locked or corrupt database...)."""


class RunNotFound(StoreError, KeyError):
    def __str__(self) -> str:
        return self.args[0]


class SweepNotFound(StoreError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class FollowRefused(StoreError):
    """A follow link that does not open: unknown, or revoked by its owner."""


class ExportExists(StoreError):
    """An export would overwrite files already in its folder."""


class RunDeleted(StoreError):
    """A save of a run that was deleted (in another tab, by the CLI): it is not brought back."""


class StoreFull(StoreError):
    """The disk (or the file system the store is on) is full: the save did not happen."""


class StoreReadOnly(StoreError):
    """The store cannot be written by this process (a read-only file, folder or file system)."""


READ_ONLY = "the run store is read-only: runs can be viewed, not saved"


def default_path() -> Path:
    """GATE_EXPLORER_DB, else runs.sqlite in this user's data directory."""
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV])
    from platformdirs import user_data_dir
    return Path(user_data_dir("rnn-gate-explorer", appauthor=False)) / "runs.sqlite"


def new_id() -> str:
    """A run id: 128 random bits as 32 hex digits (URL-safe, and never starting with "-",
    which a command line would take for an option)."""
    return secrets.token_hex(16)


def new_key() -> str:
    """An owner key: 128 random bits as 32 hex digits; whoever holds it controls the run."""
    return secrets.token_hex(16)


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class RunInfo:
    """One saved run, as a list shows it. Its held-out numbers are its final eval at `steps`
    (Trainer.final_eval) on `eval_sequences` held-out sequences; None where it has none (a model
    looked at, not trained; a run last saved before schema 4)."""

    id: str
    name: str
    task: str
    cell: str
    steps: int
    status: str
    eval_loss: float | None
    eval_metric: float | None
    eval_sequences: int | None
    created: str                 # ISO 8601, UTC
    updated: str

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("id", "name", "task", "cell", "steps", "eval_loss",
                                              "eval_metric", "eval_sequences", "created")}

    @property
    def final(self) -> FinalEval | None:
        """The final eval the run was saved with, read back; None where it has none."""
        if self.eval_sequences is None:
            return None
        return FinalEval(self.steps, self.eval_loss, self.eval_metric, self.eval_sequences)


# Columns by name: a database migrated to schema 4 has eval_sequences last.
_INSERT_RUN = ("INSERT INTO runs (id, owner_hash, name, config, task, cell, steps, status, eval_loss, eval_metric, "
               "eval_sequences, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_INFO = ("SELECT id, name, task, cell, steps, status, eval_loss, eval_metric, eval_sequences, created, updated "
         "FROM runs")


# Schema version -> the statements that bring a database from the version before to it.
MIGRATIONS = {
    1: """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, owner_hash TEXT NOT NULL, name TEXT NOT NULL, config TEXT NOT NULL,
        task TEXT NOT NULL, cell TEXT NOT NULL, steps INTEGER NOT NULL, status TEXT NOT NULL,
        eval_loss REAL, eval_metric REAL, created TEXT NOT NULL, updated TEXT NOT NULL);
    CREATE TABLE state (
        run_id TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
        weights BLOB NOT NULL, optimizer BLOB NOT NULL, optimizer_meta TEXT NOT NULL,
        rng BLOB NOT NULL, history BLOB NOT NULL, trainer_meta TEXT NOT NULL, data BLOB);
    CREATE TABLE traces (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, step INTEGER NOT NULL,
        arrays BLOB NOT NULL, meta TEXT NOT NULL, PRIMARY KEY (run_id, step));
    """,
    2: """
    CREATE TABLE follows (
        token TEXT PRIMARY KEY, run_id TEXT NOT NULL, owner_hash TEXT NOT NULL,
        created TEXT NOT NULL, revoked TEXT);
    CREATE INDEX follows_by_run ON follows (run_id);
    """,
    # Sweeps (explorer.sweep): the configs a sweep runs, in order, and the row of each one done.
    # A row's run is kept in runs like any other; a failed run has a row and no run.
    3: """
    CREATE TABLE sweeps (
        id TEXT PRIMARY KEY, configs TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL);
    CREATE TABLE sweep_rows (
        sweep_id TEXT NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE, position INTEGER NOT NULL,
        row TEXT NOT NULL, PRIMARY KEY (sweep_id, position));
    """,
    # A run's eval_loss and eval_metric became its final eval (Trainer.final_eval), on as many
    # held-out sequences as eval_sequences says. Until now they were its last periodic eval, on
    # 256: those are cleared, not shown as what they are not (the run's history still holds
    # them, as its learning curve). A run gets its numbers when it is saved again.
    4: """
    ALTER TABLE runs ADD COLUMN eval_sequences INTEGER;
    UPDATE runs SET eval_loss = NULL, eval_metric = NULL;
    """,
    # A sweep has an owner (a hash of the key of the browser that started it), so the Sweep page
    # opens on the visitor's own last sweep, not a stranger's. Sweeps made before have none: the
    # page shows them only by their link; the CLI's sweeps have none either.
    5: """
    ALTER TABLE sweeps ADD COLUMN owner_hash TEXT;
    """,
    # Deletes win: the ids of deleted runs, so that a tab, process or server still holding one
    # cannot re-create it by saving (RunDeleted). 128-bit random ids never come back by chance.
    6: """
    CREATE TABLE deleted (id TEXT PRIMARY KEY, deleted TEXT NOT NULL);
    """,
}


@dataclass
class RunRecord:
    """A finished run made into what the store keeps, in the process that trained it: plain
    bytes and text, so it crosses to another process (a sweep's pool, a Ray task) and is written
    by `RunStore.add` there, where the store is."""
    config: dict
    name: str
    steps: int
    status: str
    eval_loss: float | None
    eval_metric: float | None
    eval_sequences: int | None
    weights: bytes
    optimizer: bytes
    optimizer_meta: str
    rng: bytes
    history: bytes
    meta: str
    data: bytes | None
    traces: list[tuple[int, bytes, str]]      # (step, arrays, meta)

    @property
    def nbytes(self) -> int:
        """What the run takes in the store, about: its blobs (SQLite adds little)."""
        blobs = [self.weights, self.optimizer, self.rng, self.history, self.data or b""]
        return sum(map(len, blobs)) + sum(len(arrays) for _, arrays, _ in self.traces)


def run_record(trainer: Trainer, status: str, name: str | None = None, last_trace_only: bool = False) -> RunRecord:
    """The run's whole state, as `RunStore.save` keeps it; with last_trace_only, of its probe
    traces only the newest (a sweep's runs: a 1,000-run sweep stays small)."""
    trainer.wait_for_probe()
    trainer.flush()
    view = trainer.history.view()
    weights, optimizer, optimizer_meta, rng, history, meta = _state_blobs(trainer, view)
    traces = view.traces[-1:] if last_trace_only else view.traces
    eval_loss, eval_metric, eval_sequences = _final_columns(trainer.final_eval())
    return RunRecord(config=trainer.config.to_dict(), name=name or default_name(trainer.config),
                     steps=trainer.steps_done, status=str(status), eval_loss=eval_loss, eval_metric=eval_metric,
                     eval_sequences=eval_sequences, weights=weights, optimizer=optimizer,
                     optimizer_meta=optimizer_meta, rng=rng, history=history, meta=meta,
                     data=_data_of(trainer.config, trainer.task),
                     traces=[(step, *_trace_record(trace)) for step, trace in traces])


def _state_blobs(trainer: Trainer, view: HistoryView) -> tuple[bytes, bytes, str, bytes, bytes, str]:
    """(weights, optimizer, optimizer_meta, rng, history, trainer_meta) as the state table keeps them."""
    weights = save_tensors({k: v.detach().cpu().contiguous() for k, v in trainer.model.state_dict().items()})
    optimizer, optimizer_meta = _optimizer_state(trainer.optimizer)
    rng = save_tensors({"batches": trainer.batch_generator.get_state(), "torch": torch.get_rng_state()})
    history = zlib.compress(save_arrays(_history_arrays(view)))
    meta = json.dumps({"steps_done": trainer.steps_done, "diverged": trainer.diverged,
                       "divergence_message": trainer.divergence_message})
    return weights, optimizer, optimizer_meta, rng, history, meta


def _final_columns(final: FinalEval | None) -> tuple[float | None, float | None, int | None]:
    """(eval_loss, eval_metric, eval_sequences) as the runs table keeps them."""
    return (None, None, None) if final is None else (final.loss, final.metric, final.sequences)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunStore:
    """The runs saved in one SQLite file. Each call opens its own connection, so one store
    serves any thread (a run's worker saves while a page lists).

    A store this process cannot write is opened read-only (`read_only`): it lists and shows its
    runs, and every change raises StoreReadOnly."""

    def __init__(self, path: str | Path | None = None, timeout: float = BUSY_TIMEOUT_S):
        self.path = Path(path) if path is not None else default_path()
        self.timeout = timeout
        self.read_only = False
        self._uri: str | None = None      # how a read-only store is opened
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the folder for the run store {self.path}: {error.strerror}") from None
        try:
            with self._connect() as db:
                self._migrate(db)
        except StoreReadOnly:
            self._open_read_only()

    def _open_read_only(self) -> None:
        """Read without writing: mode=ro where SQLite may make the WAL's shared-memory file
        beside it, else immutable (a read-only folder: nothing here can change it)."""
        if not self.path.is_file():
            raise StoreError(f"cannot create the run store {self.path}: its folder is read-only")
        self.read_only = True
        for uri in (f"{self.path.resolve().as_uri()}?mode=ro", f"{self.path.resolve().as_uri()}?immutable=1"):
            self._uri = uri
            try:
                with self._connect() as db:
                    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                break
            except StoreReadOnly:
                continue
        else:
            raise StoreError(f"cannot read the run store {self.path}: it is read-only, and so is its folder")
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(f"the run store {self.path} was written by a newer version of "
                             f"this app (schema {version}; this one reads up to {SCHEMA_VERSION})")

    # -- the database ----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            if self._uri is not None:
                db = sqlite3.connect(self._uri, uri=True, timeout=self.timeout, isolation_level=None)
            else:
                db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as error:
            raise _store_error(error, opening=self.path) from None
        return _Connection(db)

    def _writable(self) -> None:
        if self.read_only:
            raise StoreReadOnly(READ_ONLY)

    def _migrate(self, db) -> None:
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(f"the run store {self.path} was written by a newer version of "
                                 f"this app (schema {version}; this one reads up to {SCHEMA_VERSION})")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            db.execute("COMMIT")
        except BaseException:
            db.rollback()
            raise

    # -- saving ------------------------------------------------------------------------------
    def save(self, run_id: str, trainer: Trainer, *, owner_key: str, status: str = "paused",
             name: str | None = None, measure_final: bool = True) -> None:
        """Save the run's whole state in one transaction: a new run is created (named `name`, or
        after its cell and task), a saved one brought up to date (its traces: the new ones added,
        the ones History let go deleted; its name is left as renamed). Call it where the trainer
        is not stepping (the run's model lock). measure_final False keeps the run's held-out
        numbers only if they were made at this step (Trainer.final_eval), else none yet."""
        self._writable()
        config = trainer.config
        trainer.wait_for_probe()   # a probe traced in the background belongs to the steps saved
        trainer.flush()        # the staged step records, and a divergence among them, before anything is read
        view = trainer.history.view()
        weights, optimizer, optimizer_meta, rng, history, meta = _state_blobs(trainer, view)
        # Before the transaction: another process's save does not wait for this one's eval.
        eval_loss, eval_metric, eval_sequences = _final_columns(trainer.final_eval(measure=measure_final))
        now = _now()
        with self._connect() as db:
            try:
                db.execute("BEGIN IMMEDIATE")
                row = db.execute("SELECT owner_hash, config FROM runs WHERE id = ?", (run_id,)).fetchone()
                if row is None:
                    _not_deleted(db, run_id)
                    db.execute(_INSERT_RUN, (run_id, _key_hash(owner_key), name or default_name(config),
                                             json.dumps(config.to_dict()), config.task, config.cell, trainer.steps_done,
                                             str(status), eval_loss, eval_metric, eval_sequences, now, now))
                    data = _data_of(config, trainer.task)
                else:
                    if not hmac.compare_digest(row[0], _key_hash(owner_key)):
                        raise StoreError("this run belongs to someone else: only its owner key saves it")
                    # The config too: your model's traced loss can change (Run.retrace).
                    db.execute("UPDATE runs SET config = ?, steps = ?, status = ?, eval_loss = ?, eval_metric = ?, "
                               "eval_sequences = ?, updated = ? WHERE id = ?",
                               (json.dumps(config.to_dict()), trainer.steps_done, str(status), eval_loss, eval_metric,
                                eval_sequences, now, run_id))
                    if json.loads(row[1]) != config.to_dict():
                        # Retraced with another loss: every stored trace is of the old one.
                        db.execute("DELETE FROM traces WHERE run_id = ?", (run_id,))
                    data = db.execute("SELECT data FROM state WHERE run_id = ?", (run_id,)).fetchone()
                    data = data[0] if data else _data_of(config, trainer.task)
                db.execute("INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (run_id, weights, optimizer, optimizer_meta, rng, history, meta, data))
                kept = {step for step, _ in view.traces}
                stored = {s for (s,) in db.execute("SELECT step FROM traces WHERE run_id = ?", (run_id,))}
                for step in stored - kept:
                    db.execute("DELETE FROM traces WHERE run_id = ? AND step = ?", (run_id, step))
                for step, trace in view.traces:
                    if step not in stored:
                        arrays, trace_meta = _trace_record(trace)
                        db.execute("INSERT INTO traces VALUES (?, ?, ?, ?)", (run_id, step, arrays, trace_meta))
                db.execute("COMMIT")
            except BaseException:
                db.rollback()
                raise

    def add(self, run_id: str, record: RunRecord, *, owner_key: str) -> None:
        """Keep a new run made into a RunRecord (by another process, say), in one transaction."""
        self._writable()
        with self._connect() as db:
            self._transaction(db, lambda: self._insert(db, run_id, record, owner_key))

    @staticmethod
    def _insert(db, run_id: str, record: RunRecord, owner_key: str) -> None:
        # The config as the run had it: not validated again here, where the memory budget
        # (GATE_EXPLORER_MAX_RUN_MB) may be another machine's than the one that trained it.
        now = _now()
        _not_deleted(db, run_id)
        db.execute(_INSERT_RUN, (run_id, _key_hash(owner_key), record.name, json.dumps(record.config),
                                 record.config["task"], record.config["cell"], record.steps, record.status,
                                 record.eval_loss, record.eval_metric, record.eval_sequences, now, now))
        db.execute("INSERT INTO state VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (run_id, record.weights, record.optimizer, record.optimizer_meta, record.rng,
                    record.history, record.meta, record.data))
        for step, arrays, meta in record.traces:
            db.execute("INSERT INTO traces VALUES (?, ?, ?, ?)", (run_id, step, arrays, meta))

    @staticmethod
    def _transaction(db, work) -> None:
        try:
            db.execute("BEGIN IMMEDIATE")
            work()
            db.execute("COMMIT")
        except BaseException:
            db.rollback()
            raise

    # -- sweeps ------------------------------------------------------------------------------
    def create_sweep(self, sweep_id: str, configs: list[dict], owner_key: str | None = None) -> None:
        """A new sweep of these configs (Config.to_dict()s), in the order its rows are numbered,
        belonging to owner_key (None: to nobody, as a CLI sweep)."""
        now, owner = _now(), _key_hash(owner_key) if owner_key else None
        with self._connect() as db:
            self._transaction(db, lambda: db.execute(
                "INSERT INTO sweeps (id, configs, created, updated, owner_hash) VALUES (?, ?, ?, ?, ?)",
                (sweep_id, json.dumps(configs), now, now, owner)))

    def sweep_configs(self, sweep_id: str) -> list[dict]:
        with self._connect() as db:
            row = db.execute("SELECT configs FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise SweepNotFound(f"no sweep with id {sweep_id!r} in the run store {self.path}")
        return json.loads(row[0])

    def sweep_rows(self, sweep_id: str) -> dict[int, dict]:
        """The rows of the sweep's runs done so far, by position."""
        self.sweep_configs(sweep_id)             # (an unknown id is an error, not an empty sweep)
        with self._connect() as db:
            rows = db.execute("SELECT position, row FROM sweep_rows WHERE sweep_id = ?", (sweep_id,)).fetchall()
        return {position: json.loads(row) for position, row in rows}

    def add_sweep_row(self, sweep_id: str, position: int, row: dict, record: RunRecord | None = None,
                      owner_key: str | None = None) -> None:
        """A sweep's row, with its run (row["run_id"]) when it has one, in one transaction: a
        sweep stopped at any moment keeps whole rows only."""
        def work():
            if record is not None:
                self._insert(db, row["run_id"], record, owner_key or new_key())
            db.execute("INSERT OR REPLACE INTO sweep_rows VALUES (?, ?, ?)", (sweep_id, position, json.dumps(row)))
            db.execute("UPDATE sweeps SET updated = ? WHERE id = ?", (_now(), sweep_id))
        with self._connect() as db:
            self._transaction(db, work)

    def list_sweeps(self, owner_key: str | None = None) -> list[dict]:
        """Every sweep, or only owner_key's, newest first: id, runs, done, created, updated."""
        where, args = ("WHERE s.owner_hash = ? ", (_key_hash(owner_key),)) if owner_key else ("", ())
        with self._connect() as db:
            rows = db.execute("SELECT s.id, s.configs, s.created, s.updated, COUNT(r.position) FROM sweeps s "
                              "LEFT JOIN sweep_rows r ON r.sweep_id = s.id " + where + "GROUP BY s.id "
                              "ORDER BY s.created DESC, s.rowid DESC", args).fetchall()
        return [{"id": i, "runs": len(json.loads(c)), "done": n, "created": cr, "updated": up}
                for i, c, cr, up, n in rows]

    # -- reading -----------------------------------------------------------------------------
    def list(self, task: str | None = None, cell: str | None = None, owner_key: str | None = None) -> list[RunInfo]:
        """Saved runs, newest first, optionally only one task's, one cell's or one owner's."""
        query, args = _INFO, []
        owner = _key_hash(owner_key) if owner_key else None
        where = [(column, value) for column, value in (("task", task), ("cell", cell), ("owner_hash", owner)) if value]
        if where:
            query += " WHERE " + " AND ".join(f"{column} = ?" for column, _ in where)
            args = [value for _, value in where]
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY created DESC, rowid DESC", args).fetchall()
        return [RunInfo(*row) for row in rows]

    def info(self, run_id: str) -> RunInfo:
        with self._connect() as db:
            row = db.execute(_INFO + " WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            if self.deleted(run_id):
                raise RunNotFound(f"the run {run_id!r} was deleted by its owner")
            raise _not_found(run_id)
        return RunInfo(*row)

    def owns(self, run_id: str, owner_key: str | None) -> bool:
        """Whether owner_key is this run's owner key (False for no key or an unknown run)."""
        if not owner_key:
            return False
        with self._connect() as db:
            row = db.execute("SELECT owner_hash FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row is not None and hmac.compare_digest(row[0], _key_hash(owner_key))

    def config(self, run_id: str) -> Config:
        with self._connect() as db:
            row = db.execute("SELECT config FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise _not_found(run_id)
        return Config.from_dict(json.loads(row[0]))

    def load(self, run_id: str) -> Trainer:
        """The saved run as a Trainer that continues exactly where the save left it."""
        config = self.config(run_id)
        with self._connect() as db:
            state = db.execute("SELECT weights, optimizer, optimizer_meta, rng, history, trainer_meta, data "
                               "FROM state WHERE run_id = ?", (run_id,)).fetchone()
            traces = db.execute("SELECT step, arrays, meta FROM traces WHERE run_id = ? ORDER BY step",
                                (run_id,)).fetchall()
        if state is None:
            raise _not_found(run_id)
        weights, optimizer, optimizer_meta, rng, history, trainer_meta, data = state
        trainer = Trainer(config, task=_task(config, data), record_start=False)
        trainer.model.load_state_dict(load_tensors(weights))
        trainer.optimizer.load_state_dict(_optimizer_dict(optimizer, optimizer_meta, trainer.device))
        rng = load_tensors(rng)
        trainer.batch_generator.set_state(rng["batches"])
        torch.set_rng_state(rng["torch"])
        view = _history_view(load_arrays(zlib.decompress(history)),
                             [(step, _trace_from(arrays, meta)) for step, arrays, meta in traces])
        trainer.history = History.from_view(view, trainer.history.max_traces, trainer.history.max_trace_bytes)
        meta = json.loads(trainer_meta)
        trainer.steps_done = meta["steps_done"]
        trainer.diverged = meta["diverged"]
        trainer.divergence_message = meta["divergence_message"]
        trainer.keep_probe_copy()
        return trainer

    def weights(self, run_id: str) -> bytes:
        """The model's weights as a .safetensors file (the state_dict of SequenceModel)."""
        with self._connect() as db:
            row = db.execute("SELECT weights FROM state WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise _not_found(run_id)
        return bytes(row[0])

    def metrics_frame(self, run_id: str) -> pd.DataFrame:
        """One row per step: the step's scalars, the held-out loss and metric where measured
        (empty elsewhere), and each parameter's gradient norm and update ratio."""
        trainer_view = self._view(run_id, traces=False)
        steps, evals = trainer_view.steps, trainer_view.evals
        frame = pd.DataFrame({"step": steps["step"], **{name: steps[name] for name in STEP_FIELDS}})
        for i, param in enumerate(trainer_view.param_names):
            frame[f"grad_norm/{param}"] = steps["param_grad_norm"][:, i]
            frame[f"update_ratio/{param}"] = steps["update_ratio"][:, i]
        held_out = pd.DataFrame({"step": evals["step"], **{name: evals[name] for name in EVAL_FIELDS}})
        return frame.merge(held_out, on="step", how="left")

    def traces_frame(self, run_id: str) -> pd.DataFrame:
        """Trace.to_frame() of every stored probe, with the training step it was taken at."""
        view = self._view(run_id, traces=True)
        parts = [trace.to_frame().assign(step=step) for step, trace in view.traces]
        if not parts:
            return pd.DataFrame(columns=["step", "layer", "sequence", "t", "unit", "quantity", "value"])
        frame = pd.concat(parts, ignore_index=True)
        return frame[["step", "layer", "sequence", "t", "unit", "quantity", "value"]]

    def _view(self, run_id: str, traces: bool) -> HistoryView:
        with self._connect() as db:
            row = db.execute("SELECT history FROM state WHERE run_id = ?", (run_id,)).fetchone()
            stored = db.execute("SELECT step, arrays, meta FROM traces WHERE run_id = ? ORDER BY step",
                                (run_id,)).fetchall() if traces else []
        if row is None:
            raise _not_found(run_id)
        return _history_view(load_arrays(zlib.decompress(row[0])), [(step, _trace_from(a, m)) for step, a, m in stored])

    # -- changing ----------------------------------------------------------------------------
    def rename(self, run_id: str, name: str) -> None:
        name = check_name(name)
        self._writable()
        with self._connect() as db:
            if db.execute("UPDATE runs SET name = ? WHERE id = ?", (name, run_id)).rowcount == 0:
                raise _not_found(run_id)

    def delete(self, run_id: str) -> None:
        """Delete a run and everything saved with it, for good: its id is kept as deleted, so
        no save brings it back."""
        self._writable()

        def work():
            if db.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount == 0:
                raise _not_found(run_id)
            db.execute("INSERT OR IGNORE INTO deleted VALUES (?, ?)", (run_id, _now()))
        with self._connect() as db:
            self._transaction(db, work)

    def deleted(self, run_id: str) -> bool:
        """Whether run_id was deleted (a run never saved is not)."""
        with self._connect() as db:
            if self.read_only and not _has_table(db, "deleted"):
                return False        # (a read-only store of an older schema)
            return db.execute("SELECT 1 FROM deleted WHERE id = ?", (run_id,)).fetchone() is not None

    def mark(self, run_id: str, status: str, owner_key: str) -> None:
        """Set a saved run's status alone (a run whose worker died: its saved state stays as it
        was saved, and its row no longer says "running")."""
        self._writable()
        with self._connect() as db:
            db.execute("UPDATE runs SET status = ?, updated = ? WHERE id = ? AND owner_hash = ?",
                       (str(status), _now(), run_id, _key_hash(owner_key)))

    # -- follow links --------------------------------------------------------------------
    def create_follow(self, run_id: str, owner_key: str) -> str:
        """A new follow token for run_id, owned by owner_key (the caller has checked that the
        key controls the run: a run not yet saved is not in this store to check against)."""
        token = secrets.token_hex(16)
        with self._connect() as db:
            db.execute("INSERT INTO follows VALUES (?, ?, ?, ?, NULL)", (token, run_id, _key_hash(owner_key), _now()))
        return token

    def follow_of(self, run_id: str, owner_key: str) -> str | None:
        """The newest follow token of run_id that owner_key made and has not revoked."""
        with self._connect() as db:
            row = db.execute("SELECT token FROM follows WHERE run_id = ? AND owner_hash = ? AND revoked IS NULL "
                             "ORDER BY created DESC, rowid DESC LIMIT 1", (run_id, _key_hash(owner_key))).fetchone()
        return row[0] if row else None

    def followed(self, token: str) -> str:
        """The run id a follow token names; FollowRefused if it is unknown or revoked."""
        with self._connect() as db:
            row = db.execute("SELECT run_id, revoked FROM follows WHERE token = ?", (token,)).fetchone()
        if row is None:
            raise FollowRefused("this follow link is not known here: check that it was copied whole")
        if row[1] is not None:
            raise FollowRefused("the run's owner has revoked this follow link: ask them for a new one")
        return row[0]

    def revoke_follow(self, token: str, owner_key: str) -> None:
        self._owned_follow(token, owner_key, "UPDATE follows SET revoked = ? WHERE token = ?", (_now(), token))

    def move_follow(self, token: str, run_id: str, owner_key: str) -> None:
        """Point a follow token at another run of its owner's (a Reset that keeps followers)."""
        self._owned_follow(token, owner_key, "UPDATE follows SET run_id = ? WHERE token = ?", (run_id, token))

    def _owned_follow(self, token: str, owner_key: str, sql: str, args: tuple) -> None:
        with self._connect() as db:
            row = db.execute("SELECT owner_hash FROM follows WHERE token = ?", (token,)).fetchone()
            if row is None:
                raise FollowRefused("this follow link is not known here")
            if not owner_key or not hmac.compare_digest(row[0], _key_hash(owner_key)):
                raise StoreError("only the owner of a follow link can change it")
            db.execute(sql, args)

    def export(self, run_id: str, fmt: str, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
        """Write metrics.<ext> and traces.<ext> (parquet or csv) into the folder out_dir (made if
        missing); their paths. Files already there are kept (ExportExists) unless overwrite."""
        if fmt not in ("parquet", "csv"):
            raise StoreError(f"format must be parquet or csv, not {fmt!r}")
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise StoreError(f"{out} is not a folder: the export writes two files into a folder")
        paths = [out / f"metrics.{fmt}", out / f"traces.{fmt}"]
        if not overwrite and (there := [path.name for path in paths if path.exists() or path.is_symlink()]):
            raise ExportExists(f"{out} already holds {' and '.join(there)}: they are not overwritten")
        metrics, traces = self.metrics_frame(run_id), self.traces_frame(run_id)
        try:
            out.mkdir(parents=True, exist_ok=True)
            for frame, path in zip((metrics, traces), paths):
                frame.to_parquet(path, index=False) if fmt == "parquet" else csvsafe.to_csv(frame, path)
        except OSError as error:
            raise StoreError(f"cannot write into {out}: {error.strerror or error}") from None
        return paths


class _Connection:
    """A sqlite3 connection that closes at the end of a with block (sqlite3's own only
    commits), turning SQLite's errors into StoreError with what to do."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        self._db.close()
        if isinstance(error, sqlite3.DatabaseError):
            raise _store_error(error) from None
        return False

    def execute(self, sql: str, args=()):
        return self._db.execute(sql, args)

    def rollback(self) -> None:
        if self._db.in_transaction:
            self._db.rollback()


def _not_found(run_id: str) -> RunNotFound:
    return RunNotFound(f"no saved run has the id {run_id!r}")


def _not_deleted(db, run_id: str) -> None:
    if db.execute("SELECT 1 FROM deleted WHERE id = ?", (run_id,)).fetchone() is not None:
        raise RunDeleted("this run was deleted (on the Runs page or with `runs delete`): it is not saved again")


def _has_table(db, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _store_error(error: sqlite3.DatabaseError, opening: Path | None = None) -> StoreError:
    """SQLite's error as what happened, by its result code: "damaged" only for a file that is."""
    code = getattr(error, "sqlite_errorname", "") or ""
    if code == "SQLITE_FULL":
        return StoreFull("the disk the run store is on is full")
    if code.startswith("SQLITE_READONLY"):
        return StoreReadOnly(READ_ONLY)
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(error):
        return StoreError("the run store is locked by another program; try again in a moment")
    if code.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return StoreError(f"the run store is damaged or not a database: {error}")
    if opening is not None:
        return StoreError(f"cannot open the run store {opening}: {error}")
    return StoreError(f"the run store cannot be read or written: {error}")


def check_name(name: str) -> str:
    """A run's name as stored (stripped); StoreError if it is empty or too long."""
    name = name.strip()
    if not name:
        raise StoreError("a run's name cannot be empty")
    if len(name) > 200:
        raise StoreError("a run's name can have at most 200 characters")
    return name


def default_name(config: Config) -> str:
    return f"{config.cell} on {config.task}, {time.strftime('%Y-%m-%d %H:%M')}"


def _data_of(config: Config, task: Task) -> bytes | None:
    """What the run needs besides its config to rebuild its task, compressed: the bytes of a
    CSV run's file (the upload is cleaned up), your model and its sequences."""
    own = task.kept_bytes()
    if own is not None:
        return zlib.compress(own)
    if "csv_path" not in TASKS[config.task].fields or not config.csv_path:
        return None
    try:
        path = Path(config.csv_path)
        if path.stat().st_size > MAX_DATA_BYTES:
            return None
        return zlib.compress(path.read_bytes())
    except OSError:
        return None


def _task(config: Config, data: bytes | None) -> Task | None:
    """The saved run's task from the bytes it kept, where it kept some."""
    if data is None:
        return None                       # Trainer builds it from the config
    return TASKS[config.task].restore(config, zlib.decompress(data))


# -- optimiser state: tensors to safetensors, the rest to JSON -------------------------------------

def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[bytes, str]:
    state = optimizer.state_dict()
    tensors, kinds = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            key = f"{index}/{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value.detach().cpu().contiguous()
            else:
                kinds[key] = value           # a plain number (or None: momentum before its first step)
    return save_tensors(tensors), json.dumps({"param_groups": state["param_groups"], "plain": kinds})


def _optimizer_dict(blob: bytes, meta: str, device: torch.device) -> dict:
    meta = json.loads(meta)
    state: dict[int, dict] = {}
    for key, value in load_tensors(blob).items():
        index, name = key.split("/", 1)
        # Adam keeps `step` on the CPU; its moments live with the weights.
        state.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
    for key, value in meta["plain"].items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


# -- history and traces ------------------------------------------------------------------------

def _history_arrays(view: HistoryView) -> dict[str, np.ndarray]:
    arrays = {f"steps/{k}": np.ascontiguousarray(v) for k, v in view.steps.items()}
    arrays.update({f"evals/{k}": np.ascontiguousarray(v) for k, v in view.evals.items()})
    arrays["param_names"] = np.frombuffer(json.dumps(view.param_names).encode(), np.uint8)
    return arrays


def _history_view(arrays: dict[str, np.ndarray], traces: list) -> HistoryView:
    param_names = json.loads(arrays["param_names"].tobytes().decode())
    steps = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("steps/")}
    evals = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("evals/")}
    return HistoryView(param_names, steps, evals, traces)


def _trace_record(trace: Trace) -> tuple[bytes, str]:
    arrays = {"grad_input": trace.grad_input.astype(np.float32)}
    for k, layer in enumerate(trace.layers):
        per_unit = {**{f"gate/{n}": v for n, v in layer.gates.items()}, "hidden": layer.hidden, "cell": layer.cell}
        for name, value in per_unit.items():
            if value is not None:
                arrays[f"{k}/{name}"] = value.astype(np.float16)
        for name in ("grad_hidden", "grad_cell"):
            value = getattr(layer, name)
            if value is not None:
                arrays[f"{k}/{name}"] = value.astype(np.float32)
        for name, value in layer.weight_grad_share.items():
            arrays[f"{k}/share/{name}"] = value.astype(np.float32)
    meta = {"cell": trace.cell, "loss": trace.loss, "layers": len(trace.layers)}
    # Level 1: the server compresses each new probe's trace as it saves the run, beside the
    # training: making the record of one (T = 50, 64 units) took 17 ms at level 6 and 10 at
    # level 1, for the same 258 KB.
    return (zlib.compress(save_arrays({k: np.ascontiguousarray(v) for k, v in arrays.items()}), 1),
            json.dumps(meta))


def _trace_from(blob: bytes, meta: str) -> Trace:
    arrays, meta = load_arrays(zlib.decompress(blob)), json.loads(meta)
    as32 = lambda name: arrays[name].astype(np.float32) if name in arrays else None  # noqa: E731
    layers = []
    for k in range(meta["layers"]):
        gates = {name: as32(f"{k}/gate/{name}") for name in CELLS[meta["cell"]].gates}
        # (a run saved before traces kept the weight-gradient share has none)
        share = {name: as32(f"{k}/share/{name}") for name in CELLS[meta["cell"]].blocks if f"{k}/share/{name}" in arrays}
        layers.append(LayerTrace(gates=gates, hidden=as32(f"{k}/hidden"), cell=as32(f"{k}/cell"),
                                 grad_hidden=as32(f"{k}/grad_hidden"), grad_cell=as32(f"{k}/grad_cell"),
                                 weight_grad_share=share))
    return Trace(cell=meta["cell"], output=layers[-1].hidden, loss=meta["loss"],
                 grad_input=as32("grad_input"), layers=layers)
