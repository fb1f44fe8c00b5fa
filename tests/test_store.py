"""The run store on a real SQLite file: a saved run reopens equal and continues exactly;
saves from several processes at once, and a process killed while saving, leave every
committed run listed and loadable."""
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_tensors

from explorer import Config, Run, Status, Trainer
from explorer.run import ReadOnly
from explorer.store import SCHEMA_VERSION, RunNotFound, RunStore, StoreError, new_id, new_key
from tests.test_train import held_out_by_hand

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(task="adding", seq_len=12, hidden=8, batch_size=8, probe_every=5, eval_every=5, probe_count=3,
             steps=40, seed=3, device="cpu")


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.sqlite")


def trained(steps: int, **config) -> Trainer:
    trainer = Trainer(Config(**{**SMALL, **config}))
    for _ in range(steps):
        trainer.step()
    return trainer


def test_ids_and_keys_are_128_bit_random_and_distinct():
    ids = {new_id() for _ in range(200)} | {new_key() for _ in range(200)}
    assert len(ids) == 400
    # 16 random bytes as hex: URL-safe, and no id starts with "-" (the CLI would read an option)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_reopened_run_equals_the_saved_one(store):
    trainer = trained(20, cell="gru", layers=2)
    run_id, key = new_id(), new_key()
    store.save(run_id, trainer, owner_key=key, status="paused", name="my gru")
    loaded = store.load(run_id)
    assert loaded.config == trainer.config and loaded.steps_done == 20
    for (name, a), (_, b) in zip(trainer.model.state_dict().items(), loaded.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    saved, back = trainer.history.view(), loaded.history.view()
    for table in ("steps", "evals"):
        for column, values in getattr(saved, table).items():
            np.testing.assert_array_equal(getattr(back, table)[column], values, err_msg=column)
    assert [s for s, _ in back.traces] == [s for s, _ in saved.traces] == [0, 5, 10, 15, 20]
    for (_, a), (_, b) in zip(saved.traces, back.traces):
        assert b.cell == a.cell and b.loss == a.loss and list(b.layers[0].gates) == list(a.layers[0].gates)
        # per-unit arrays are float16 in the store: 3 significant digits, what a chart shows
        np.testing.assert_allclose(b.output, a.output, rtol=1e-3, atol=1e-3)
        for la, lb in zip(a.layers, b.layers):
            for gate in la.gates:
                np.testing.assert_allclose(lb.gates[gate], la.gates[gate], rtol=1e-3, atol=1e-3)
            np.testing.assert_array_equal(lb.grad_hidden, la.grad_hidden)       # gradients stay float32
            assert list(lb.weight_grad_share) == ["reset", "update", "candidate"]
            for block, share in la.weight_grad_share.items():
                np.testing.assert_array_equal(lb.weight_grad_share[block], share)
        np.testing.assert_array_equal(b.grad_input, a.grad_input)
    info = store.info(run_id)
    assert (info.name, info.task, info.cell, info.steps, info.status) == ("my gru", "adding", "gru", 20, "paused")


@pytest.mark.parametrize("optimizer", ["adam", "momentum", "rmsprop"])
def test_training_a_reopened_run_on_gives_the_uninterrupted_runs_losses(store, optimizer):
    torch.set_num_threads(1)
    whole = trained(30, optimizer=optimizer, dropout=0.0)
    half = trained(15, optimizer=optimizer)
    run_id = new_id()
    store.save(run_id, half, owner_key="k")
    reopened = store.load(run_id)
    for _ in range(15):
        reopened.step()
    np.testing.assert_array_equal(reopened.history.view().steps["loss"], whole.history.view().steps["loss"])
    for a, b in zip(whole.model.parameters(), reopened.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_later_save_updates_the_run_and_drops_traces_history_let_go(store):
    trainer = Trainer(Config(**{**SMALL, "probe_every": 1}), max_traces=4)
    run_id = new_id()
    store.save(run_id, trainer, owner_key="k")
    for _ in range(10):
        trainer.step()
    store.save(run_id, trainer, owner_key="k", status="finished")
    steps = [s for s, _ in trainer.history.view().traces]
    assert [s for s, _ in store.load(run_id).history.view().traces] == steps and len(steps) <= 4
    assert store.info(run_id).steps == 10 and store.info(run_id).status == "finished"


def test_only_the_owner_key_saves_over_a_run(store):
    trainer = trained(2)
    store.save("abc", trainer, owner_key="right")
    assert store.owns("abc", "right") and not store.owns("abc", "wrong") and not store.owns("abc", None)
    with pytest.raises(StoreError, match="belongs to someone else"):
        store.save("abc", trainer, owner_key="wrong")


def test_list_filters_rename_delete_and_unknown_ids(store):
    store.save("a", trained(1, cell="lstm"), owner_key="k")
    store.save("b", trained(1, cell="gru"), owner_key="k")
    store.save("c", trained(1, cell="gru", task="brackets"), owner_key="k")
    assert {r.id for r in store.list()} == {"a", "b", "c"}
    assert {r.id for r in store.list(cell="gru")} == {"b", "c"}
    assert [r.id for r in store.list(task="brackets", cell="gru")] == ["c"]
    store.rename("b", "  renamed ")
    assert store.info("b").name == "renamed"
    with pytest.raises(StoreError, match="cannot be empty"):
        store.rename("b", "   ")
    store.delete("a")
    assert {r.id for r in store.list()} == {"b", "c"}
    for call in (lambda: store.load("a"), lambda: store.delete("a"), lambda: store.rename("a", "x"),
                 lambda: store.info("nope")):
        with pytest.raises(RunNotFound, match="no saved run has the id"):
            call()
    with sqlite3.connect(store.path) as db:                       # cascades: nothing left behind
        assert db.execute("SELECT count(*) FROM traces WHERE run_id = 'a'").fetchone()[0] == 0


def test_export_writes_metrics_one_row_per_step_and_every_trace(store, tmp_path):
    trainer = trained(10)
    store.save("r", trainer, owner_key="k")
    for fmt in ("parquet", "csv"):
        metrics_path, traces_path = store.export("r", fmt, tmp_path / fmt)
        read = pd_read(fmt)
        metrics, traces = read(metrics_path), read(traces_path)
        assert list(metrics["step"]) == list(range(1, 11))
        np.testing.assert_allclose(metrics["loss"], trainer.history.view().steps["loss"], rtol=1e-6)
        assert metrics["eval_loss"].notna().sum() == 2                # steps 5 and 10
        assert sorted(set(traces["step"])) == [0, 5, 10]
        assert {"layer", "sequence", "t", "unit", "quantity", "value"} <= set(traces.columns)
        assert {"forget", "hidden", "cell", "grad_hidden", "grad_input"} <= set(traces["quantity"])
    with pytest.raises(StoreError, match="format must be parquet or csv"):
        store.export("r", "xlsx", tmp_path)


def pd_read(fmt):
    import pandas as pd
    return pd.read_parquet if fmt == "parquet" else pd.read_csv


def test_a_csv_run_continues_after_its_file_is_gone(store, tmp_path):
    path = tmp_path / "mine.csv"
    rows = "\n".join(f"{np.sin(i / 5):.4f},{np.cos(i / 7):.4f}" for i in range(300))
    path.write_text("a,b\n" + rows + "\n")
    trainer = trained(5, task="csv", csv_path=str(path), seq_len=10)
    store.save("csv", trainer, owner_key="k")
    path.unlink()
    reopened = store.load("csv")
    assert reopened.step() is not None and reopened.steps_done == 6


# The tables as schema 3 made them (MIGRATIONS 1-3 of that version), written out here as they were.
SCHEMA_3 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
CREATE TABLE follows (
    token TEXT PRIMARY KEY, run_id TEXT NOT NULL, owner_hash TEXT NOT NULL,
    created TEXT NOT NULL, revoked TEXT);
CREATE INDEX follows_by_run ON follows (run_id);
CREATE TABLE sweeps (
    id TEXT PRIMARY KEY, configs TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE sweep_rows (
    sweep_id TEXT NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE, position INTEGER NOT NULL,
    row TEXT NOT NULL, PRIMARY KEY (sweep_id, position));
INSERT INTO meta VALUES ('schema_version', '3');
"""


def test_a_schema_3_database_keeps_its_runs_without_calling_the_last_periodic_eval_held_out(tmp_path):
    # A run as schema 3 kept it: its row's eval_loss the last periodic eval (256 sequences), its
    # state, history and traces as now (a run saved here, copied across by SQL).
    trainer = trained(20)
    run_id, key = new_id(), new_key()
    RunStore(tmp_path / "new.sqlite").save(run_id, trainer, owner_key=key, name="old run")
    last_eval = trainer.history.view().evals
    old = sqlite3.connect(tmp_path / "old.sqlite", isolation_level=None)
    old.executescript(SCHEMA_3)
    old.execute("ATTACH ? AS new", (str(tmp_path / "new.sqlite"),))
    old.execute("INSERT INTO runs SELECT id, owner_hash, name, config, task, cell, steps, status, ?, ?, created, "
                "updated FROM new.runs", (float(last_eval["eval_loss"][-1]), float(last_eval["eval_metric"][-1])))
    old.execute("INSERT INTO state SELECT * FROM new.state")
    old.execute("INSERT INTO traces SELECT * FROM new.traces")
    old.execute("DETACH new")
    old.close()

    store = RunStore(tmp_path / "old.sqlite")
    (info,) = store.list()
    assert (info.id, info.name, info.steps, info.status) == (run_id, "old run", 20, "paused")
    assert (info.eval_loss, info.eval_metric, info.eval_sequences, info.final) == (None, None, None, None)
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    reopened = store.load(run_id)
    assert reopened.steps_done == 20 and torch.equal(reopened.model.rnn.weight_hh_l0, trainer.model.rnn.weight_hh_l0)
    np.testing.assert_array_equal(store.metrics_frame(run_id)["eval_loss"].dropna(), last_eval["eval_loss"])
    # Saved again, it has its held-out numbers: the saved weights on the task's held-out set.
    store.save(run_id, reopened, owner_key=key)
    info = store.info(run_id)
    loss, metric, sequences = held_out_by_hand(trainer.config, trainer.model.state_dict())
    assert info.eval_sequences == sequences == 1000
    assert info.eval_loss == pytest.approx(loss, rel=1e-5) and info.eval_metric == pytest.approx(metric, abs=1e-6)


# Schema 4: schema 3's tables, and MIGRATIONS[4] of that version, written out here as it was.
SCHEMA_4 = SCHEMA_3.replace("INSERT INTO meta VALUES ('schema_version', '3');", """
ALTER TABLE runs ADD COLUMN eval_sequences INTEGER;
INSERT INTO meta VALUES ('schema_version', '4');
""")


def test_a_schema_4_database_keeps_its_sweeps_owned_by_nobody_and_new_sweeps_get_their_owner(tmp_path):
    configs = [Config(**SMALL).to_dict(), Config(**{**SMALL, "cell": "gru"}).to_dict()]
    row = dict(configs[0], status="failed", message="out of memory", run_id=None)
    old = sqlite3.connect(tmp_path / "old.sqlite", isolation_level=None)
    old.executescript(SCHEMA_4)
    old.execute("INSERT INTO sweeps VALUES ('oldsweep', ?, '2026-01-02T03:04:05+00:00', "
                "'2026-01-02T03:05:00+00:00')", (json.dumps(configs),))
    old.execute("INSERT INTO sweep_rows VALUES ('oldsweep', 0, ?)", (json.dumps(row),))
    old.close()

    store = RunStore(tmp_path / "old.sqlite")
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert db.execute("SELECT owner_hash FROM sweeps WHERE id = 'oldsweep'").fetchone() == (None,)
    # The old sweep keeps its configs and rows, is listed among every sweep, and is nobody's.
    assert store.sweep_configs("oldsweep") == configs and store.sweep_rows("oldsweep") == {0: row}
    assert store.list_sweeps() == [dict(id="oldsweep", runs=2, done=1, created="2026-01-02T03:04:05+00:00",
                                        updated="2026-01-02T03:05:00+00:00")]
    alice, bob = new_key(), new_key()
    assert store.list_sweeps(owner_key=alice) == []
    # New sweeps belong to whoever started them: each owner lists only their own, newest first.
    store.create_sweep("alice1", configs, alice)
    store.create_sweep("bob1", configs[:1], bob)
    store.create_sweep("alice2", configs[:1], alice)
    store.create_sweep("cli", configs)                  # (the CLI's: nobody's)
    assert [s["id"] for s in store.list_sweeps(owner_key=alice)] == ["alice2", "alice1"]
    assert [s["id"] for s in store.list_sweeps(owner_key=bob)] == ["bob1"]
    assert {s["id"] for s in store.list_sweeps()} == {"oldsweep", "alice1", "bob1", "alice2", "cli"}
    with sqlite3.connect(store.path) as db:            # a hash of the key, as for runs, not the key
        (stored,) = db.execute("SELECT owner_hash FROM sweeps WHERE id = 'alice1'").fetchone()
    assert stored and alice not in stored


def test_a_saved_run_keeps_the_held_out_numbers_of_the_weights_it_saves(store):
    trainer = trained(10)
    run_id, key = new_id(), new_key()
    store.save(run_id, trainer, owner_key=key)
    first = store.info(run_id)
    assert first.final == trainer.final_eval()
    for _ in range(10):
        trainer.step()
    store.save(run_id, trainer, owner_key=key, status="finished")     # brought up to date with the weights
    info = store.info(run_id)
    loss, metric, sequences = held_out_by_hand(trainer.config, load_tensors(store.weights(run_id)))
    assert (info.steps, info.eval_sequences) == (20, sequences) and info.eval_loss != first.eval_loss
    assert info.eval_loss == pytest.approx(loss, rel=1e-5) and info.eval_metric == pytest.approx(metric, abs=1e-6)


def test_a_damaged_or_locked_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="damaged or not a database|cannot open"):
        RunStore(bad)
    store = RunStore(tmp_path / "ok.sqlite", timeout=0.2)
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked"):
            store.save("x", trained(1), owner_key="k")
    finally:
        holder.rollback()
        holder.close()


def test_a_default_run_of_2000_steps_is_stored_in_at_most_8_mb(store):
    # The default config's size: 21 probes of 8 sequences x 50 steps x 64 units (every 100
    # steps), 2000 step records. Real probes of the untrained model; step records of random
    # numbers, which compress worst.
    trainer = Trainer(Config(device="cpu"))
    rng = np.random.default_rng(0)
    P = len(trainer.param_names)
    for step in range(1, 2001):
        trainer.history.record_step(step, {"loss": rng.random(), "metric": rng.random(), "grad_norm": rng.random(),
                                           "grad_norm_clipped": rng.random(), "seconds": rng.random(),
                                           "param_grad_norm": rng.random(P), "update_ratio": rng.random(P)})
        if step % 100 == 0:
            trainer.steps_done = step
            trainer.evaluate_and_record()
            trainer.probe()
    store.save("default", trainer, owner_key="k")
    with sqlite3.connect(store.path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = store.path.stat().st_size
    print(f"\ndefault run, 2000 steps, 21 probes: {size / 2**20:.2f} MB")
    assert size <= 8 * 2**20


# --- a Run saves itself ---------------------------------------------------------------------------

def test_a_run_saves_when_it_pauses_and_reopens_paused_where_it_was(store):
    run = Run(Config(**SMALL), store=store, name="autosaved")
    assert run.id and run.owner_key and run.id != run.owner_key
    run.step(7)
    assert run.wait_until_idle(30)
    run.join(0.5)
    deadline = time.monotonic() + 10
    while store.info(run.id).steps != 7 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.info(run.id).steps == 7 and store.info(run.id).name == "autosaved"
    again = Run.open(store, run.id, run.owner_key)
    assert not again.read_only and again.snapshot().status == Status.PAUSED and again.snapshot().step == 7
    again.step(3)
    assert again.wait_until_idle(30)
    assert again.snapshot().step == 10
    again.stop()
    assert store.info(run.id).steps == 10
    run.stop()


def test_a_finished_run_is_saved_finished(store):
    run = Run(Config(**{**SMALL, "steps": 10}), store=store)
    run.start()
    run.join(60)
    assert store.info(run.id).status == "finished" and store.info(run.id).steps == 10
    assert Run.open(store, run.id, run.owner_key).snapshot().status == Status.FINISHED


def test_a_run_opened_without_its_key_is_read_only(store):
    run = Run(Config(**SMALL), store=store)
    run.step(2)
    run.wait_until_idle(30)
    run.stop()
    viewer = Run.open(store, run.id)
    assert viewer.read_only and viewer.owner_key is None and viewer.snapshot().step == 2
    for control in (viewer.start, viewer.resume, lambda: viewer.step(1)):
        with pytest.raises(ReadOnly):
            control()
    assert Run.open(store, run.id, "not-the-key").read_only


def test_saves_every_500_steps_while_training(store, monkeypatch):
    monkeypatch.setattr("explorer.run.SAVE_EVERY_STEPS", 5)
    run = Run(Config(**{**SMALL, "steps": 200}), store=store)
    run.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if 0 < store.info(run.id).steps and store.info(run.id).status == "running":
                break
        except RunNotFound:
            pass
        time.sleep(0.01)
    saved = store.info(run.id)
    run.stop()
    assert saved.status == "running" and saved.steps % 5 == 0        # saved mid-run, on the cadence
    # Its held-out numbers are measured when it rests, not in every autosave: up to 5 steps' cost.
    assert (saved.eval_loss, saved.eval_metric, saved.eval_sequences) == (None, None, None)
    stopped = store.info(run.id)
    assert stopped.status == "stopped"
    weights = Run.open(store, run.id).trainer.model.state_dict()
    loss, metric, sequences = held_out_by_hand(run.trainer.config, weights)
    assert stopped.eval_sequences == sequences == 1000
    assert stopped.eval_loss == pytest.approx(loss, rel=1e-5) and stopped.eval_metric == pytest.approx(metric, abs=1e-9)


# --- several processes, and a killed one ----------------------------------------------------------

SAVER = """
import sys, torch
torch.set_num_threads(1)
from explorer import Config, Trainer
from explorer.store import RunStore
store = RunStore(sys.argv[1])
trainer = Trainer(Config(task="adding", seq_len=12, hidden=8, batch_size=8, probe_every=2, probe_count=3,
                         eval_every=2, steps=1000, device="cpu"))
for i in range(int(sys.argv[3])):
    trainer.step()
    store.save(f"{sys.argv[2]}-{i}", trainer, owner_key="k")
    print(i, flush=True)
"""


@pytest.mark.slow
def test_several_processes_saving_at_once_lose_nothing(tmp_path):
    path = tmp_path / "shared.sqlite"
    RunStore(path)
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, str(path), f"p{k}", "6"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    store = RunStore(path)
    assert {r.id for r in store.list()} == {f"p{k}-{i}" for k in range(4) for i in range(6)}
    for run in store.list():
        assert store.load(run.id).steps_done == int(run.id.split("-")[1]) + 1


@pytest.mark.slow
def test_a_process_killed_while_saving_leaves_a_sound_database(tmp_path):
    path = tmp_path / "killed.sqlite"
    RunStore(path)
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path), "k", "1000"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = []
    for line in proc.stdout:                          # let it commit a few saves, then kill it mid-way
        done.append(int(line))
        if len(done) >= 8:
            time.sleep(0.013)
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = RunStore(path)
    listed = {r.id for r in store.list()}
    assert {f"k-{i}" for i in done} <= listed          # every save it reported is there
    for run_id in listed:
        store.load(run_id)                             # and loads
