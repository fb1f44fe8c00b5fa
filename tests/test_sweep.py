"""explorer.sweep: the grid, the rows (checked against autograd and against training in this
process), failures, cancel and resume, the store's share of it, and the CLI."""
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from explorer.budget import HELDOUT_SIZE
from explorer.config import Config
from explorer.store import RunStore
from explorer.sweep import (COLUMNS, Cancelled, RunCost, estimate_seconds, grid, resume, results, run_cost, sweep,
                            worker_seconds)
from explorer.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(task="adding", steps=40, eval_every=20, hidden=16, batch_size=16, device="cpu")


def test_grid_runs_every_combination_with_the_seeds_innermost():
    configs = grid({"cell": ["rnn", "gru"], "seq_len": ["10", "25"]}, seeds=2, steps=300)
    assert [(c.cell, c.seq_len, c.seed) for c in configs] == [
        ("rnn", 10, 0), ("rnn", 10, 1), ("rnn", 25, 0), ("rnn", 25, 1),
        ("gru", 10, 0), ("gru", 10, 1), ("gru", 25, 0), ("gru", 25, 1)]
    assert {c.steps for c in configs} == {300}
    assert {c.probe_every for c in configs} == {300}        # a sweep's run probes at its start and end
    assert grid({"cell": ["lstm"]}, probe_every=50)[0].probe_every == 50


@pytest.mark.parametrize("axes, seeds, fixed, says", [
    ({"cel": ["rnn"]}, None, {}, "unknown setting 'cel'"),
    ({"cell": ["rnn", "foo"]}, None, {}, "cell must be one of"),
    ({"seq_len": ["1"]}, None, {}, "seq_len must be between 2 and 1000"),
    ({"seed": ["1"]}, 3, {}, "not both"),
    ({"cell": []}, None, {}, "has no values"),
    ({"cell": ["rnn"]}, None, {"cell": "gru"}, "both a grid axis and a fixed setting"),
    ({"cell": ["rnn"]}, 0, {}, "seeds must be between"),
])
def test_a_bad_grid_is_refused_naming_what(axes, seeds, fixed, says):
    with pytest.raises(ValueError, match=says):
        grid(axes, seeds=seeds, **fixed)


def _unrolled_grad_hidden(trainer: Trainer) -> np.ndarray:
    """‖∂L/∂h_t‖ per probe sequence and step by autograd through nn.GRUCell, step by step, with
    the model's weights in float64: the reference for the sweep's gradient ratio."""
    gru = trainer.model.rnn
    cell = torch.nn.GRUCell(gru.input_size, gru.hidden_size, dtype=torch.float64)
    cell.weight_ih.data.copy_(gru.weight_ih_l0); cell.weight_hh.data.copy_(gru.weight_hh_l0)
    cell.bias_ih.data.copy_(gru.bias_ih_l0); cell.bias_hh.data.copy_(gru.bias_hh_l0)
    x, y = trainer.probe_set
    x = x.double()
    h = torch.zeros(len(x), gru.hidden_size, dtype=torch.float64)
    states = []
    for t in range(x.shape[1]):
        h = cell(x[:, t], h)
        h.retain_grad()
        states.append(h)
    head = torch.nn.Linear(gru.hidden_size, trainer.model.head.out_features, dtype=torch.float64)
    head.load_state_dict(trainer.model.head.state_dict())
    loss = trainer.task.loss(head(states[-1]), y.double(), reduction="sum")     # adding: the last step's output
    loss.backward()
    return torch.stack([h.grad.norm(dim=-1) for h in states], 1).numpy()     # (batch, time)


@pytest.mark.slow
def test_a_sweeps_rows_are_the_runs_numbers(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    configs = grid({"cell": ["gru"], "seq_len": [8, 12]}, **SMALL)
    frame = sweep(configs, store=store, workers=2)
    assert tuple(frame.columns) == COLUMNS
    assert list(frame["seq_len"]) == [8, 12] and set(frame["status"]) == {"finished"}
    for config, (_, row) in zip(configs, frame.iterrows()):
        # Trained again here, one torch thread, as a worker does: the same numbers.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            trainer = Trainer(config)
            initial = _unrolled_grad_hidden(trainer)
            while not trainer.finished:
                trainer.step()
            loss, metric = trainer.evaluate(*trainer.task.heldout(HELDOUT_SIZE, config.seed))
        finally:
            torch.set_num_threads(threads)
        assert row["eval_loss"] == pytest.approx(loss, rel=1e-6) and row["eval_metric"] == pytest.approx(metric)
        assert row["eval_sequences"] == HELDOUT_SIZE == 1000
        # The store lists the run with the row's numbers, as `runs` shows them.
        info = store.info(row["run_id"])
        assert (info.eval_loss, info.eval_metric, info.eval_sequences) == (
            row["eval_loss"], row["eval_metric"], row["eval_sequences"])
        assert row["baseline_loss"] == pytest.approx(1 / 6)
        final = _unrolled_grad_hidden(trainer)
        for column, grads in (("grad_ratio_init", initial), ("grad_ratio_final", final)):
            expected = np.linalg.norm(grads[:, 0]) / np.linalg.norm(grads[:, -1])
            assert row[column] == pytest.approx(expected, rel=1e-4), column
        evals = store.metrics_frame(row["run_id"]).dropna(subset=["eval_loss"])
        below = evals["step"][evals["eval_loss"] < row["baseline_loss"] / 2]
        assert (pd.isna(row["solved_step"]) and below.empty) or row["solved_step"] == below.iloc[0]
        assert row["steps_per_second"] > 0 and row["seconds"] > 0
        # The run is in the store, with its final trace only.
        saved = store.load(row["run_id"])
        assert saved.steps_done == config.steps
        assert [step for step, _ in saved.history.view().traces] == [config.steps]
        assert torch.equal(saved.model.rnn.weight_hh_l0, trainer.model.rnn.weight_hh_l0)
    assert results(frame.attrs["sweep_id"], store).drop(columns=["seconds", "steps_per_second"]).equals(
        frame.drop(columns=["seconds", "steps_per_second"]))


@pytest.mark.slow
def test_a_failing_run_is_a_failed_row_and_the_sweep_goes_on(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    configs = [Config(task="csv", csv_path=str(tmp_path / "missing.csv"), steps=10), Config(cell="rnn", **SMALL)]
    frame = sweep(configs, store=store, workers=1)
    failed, done = frame.iloc[0], frame.iloc[1]
    assert failed["status"] == "failed" and "missing.csv" in failed["message"] and pd.isna(failed["run_id"])
    assert pd.isna(failed["eval_loss"])
    assert done["status"] == "finished" and store.info(done["run_id"]).steps == SMALL["steps"]


@pytest.mark.slow
def test_a_cancelled_sweep_keeps_its_rows_and_resumes_by_its_id(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    configs = grid({"seq_len": [6, 7, 8, 9]}, cell="rnn", **SMALL)
    cancel = threading.Event()
    seen = []

    def progress(done, total, row):
        seen.append((done, total))
        cancel.set()                                   # after the first run ends

    with pytest.raises(Cancelled) as stopped:
        sweep(configs, store=store, workers=1, progress=progress, cancel=cancel)
    sweep_id = stopped.value.sweep_id
    kept = store.sweep_rows(sweep_id)
    assert seen[0] == (1, 4) and 1 <= len(kept) < 4
    ran = []
    frame = resume(sweep_id, store=store, workers=2, progress=lambda done, total, row: ran.append(row["seq_len"]))
    assert sorted(ran) == sorted({6, 7, 8, 9} - {row["seq_len"] for row in kept.values()})
    assert list(frame["seq_len"]) == [6, 7, 8, 9] and set(frame["status"]) == {"finished"}
    for position, row in kept.items():                  # the runs done before were not run again
        assert frame.iloc[position]["run_id"] == row["run_id"]
    assert {s["id"]: (s["runs"], s["done"]) for s in store.list_sweeps()}[sweep_id] == (4, 4)


def test_an_unknown_sweep_id_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="no sweep with id 'nope'"):
        resume("nope", store=RunStore(tmp_path / "runs.sqlite"))


def _cli(*args, db):
    return subprocess.run([sys.executable, "-m", "explorer", "sweep", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**__import__("os").environ, "GATE_EXPLORER_DB": str(db)})


@pytest.mark.slow
def test_cli_sweep_writes_the_columns_and_refuses_bad_input_in_one_line(tmp_path):
    db, out = tmp_path / "runs.sqlite", tmp_path / "results.parquet"
    done = _cli("--grid", "cell=rnn,gru", "--grid", "seq_len=6", "--seeds", "2", "--steps", "30",
                "--hidden", "8", "--eval-every", "10", "--out", str(out), db=db)
    assert done.returncode == 0, done.stderr
    frame = pd.read_parquet(out)
    assert tuple(frame.columns) == COLUMNS
    assert [(r.cell, r.seed) for r in frame.itertuples()] == [("rnn", 0), ("rnn", 1), ("gru", 0), ("gru", 1)]
    assert set(frame["steps"]) == {30} and set(frame["hidden"]) == {8}
    assert "[####################] 4/4" in done.stderr
    sweep_id = done.stdout.split()[1]
    again = _cli("--resume", sweep_id, "--out", str(tmp_path / "again.csv"), db=db)   # all done: nothing runs
    assert again.returncode == 0 and "1/4" not in again.stderr
    assert list(pd.read_csv(tmp_path / "again.csv")["run_id"]) == list(frame["run_id"])
    for args, says in ((["--grid", "cel=rnn"], "unknown setting 'cel'"),
                       (["--grid", "cell=rnn,foo"], "cell must be one of"),
                       (["--grid", "cell"], "--grid takes FIELD=V1,V2"),
                       (["--lr", "x"], "lr must be a number"),
                       (["--out", "r.txt"], "--out must name a .parquet or .csv"),
                       (["--resume", "nope"], "no sweep with id 'nope'")):
        bad = _cli(*args, db=db)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and says in bad.stderr, (args, bad.stderr)


def test_a_sweep_run_is_small_in_the_store(tmp_path):
    """Only the final trace is kept: the size per run the closing note reports, bounded."""
    from explorer.store import new_id, new_key, run_record
    from explorer.sweep import run_one
    config = Config(cell="lstm", seq_len=50, steps=20, probe_every=10, device="cpu")
    row, record = run_one(config.to_dict())
    assert len(record.traces) == 1 and record.traces[0][0] == 20
    store, run_id = RunStore(tmp_path / "runs.sqlite"), new_id()
    store.add(run_id, record, owner_key=new_key())          # a record made elsewhere, kept here
    kept = store.load(run_id)
    assert kept.steps_done == 20 and [step for step, _ in kept.history.view().traces] == [20]
    info = store.info(run_id)
    assert (info.eval_loss, info.eval_metric, info.eval_sequences) == (row["eval_loss"], row["eval_metric"], 1000)
    trainer = Trainer(config)
    while not trainer.finished:
        trainer.step()
    every = run_record(trainer, "finished")
    assert len(every.traces) == 3 and record.nbytes < every.nbytes
    assert json.loads(record.meta)["steps_done"] == 20


# -- the estimate ---------------------------------------------------------------------------------------

def test_the_estimate_is_the_workers_start_and_end_then_the_runs_handed_to_the_first_free_worker():
    """The arithmetic, with the measurements given (timings themselves are never asserted): each
    kind timed once at its longest length, a run's set-up, steps, periodic evals and end scaled to
    its length, the runs handed out in order as the pool does, the workers' start and end once."""
    configs = grid({"cell": ["rnn", "gru"], "seq_len": [10, 20]}, steps=100, eval_every=50, device="cpu")
    per_cell = {"rnn": 1.0, "gru": 2.0}                 # a GRU run costs twice an RNN's here
    measured, started = [], []

    def measure(config):
        measured.append((config.cell, config.seq_len))
        scale = per_cell[config.cell]
        return RunCost(seq_len=config.seq_len, setup=0.2 * scale, step=0.01 * scale, eval=0.05 * scale,
                       final=0.3 * scale)

    def worker(config, workers):
        started.append((config.cell, config.seq_len, config.steps, config.seed, workers))
        return 7.0

    # By hand: an RNN run at T = 20 is 0.2 + 100 × 0.01 + 2 evals × 0.05 + 0.3 = 1.6 s, at T = 10
    # half that; a GRU run twice the RNN's. In order, rnn 10 (0.8), rnn 20 (1.6), gru 10 (1.6),
    # gru 20 (3.2): on two workers, 0.8 + 1.6 = 2.4 and 1.6 + 3.2 = 4.8; on one, 7.2 in all.
    assert estimate_seconds(configs, 2, measure, worker, cores=2, load=0) == pytest.approx(7.0 + 4.8)
    assert sorted(measured) == [("gru", 20), ("rnn", 20)]                  # each kind once, at its longest
    assert started == [("rnn", 10, 1, 0, 2)]          # the first run's task and cell, one step, 2 workers
    assert estimate_seconds(configs, 1, measure, worker, cores=2, load=0) == pytest.approx(7.0 + 7.2)
    assert estimate_seconds(configs, 8, measure, worker, cores=8, load=0) == pytest.approx(7.0 + 3.2)
    assert started[-1][-1] == 4                        # no more workers than runs
    # Two workers on one core share it: the runs take twice as long.
    assert estimate_seconds(configs, 2, measure, worker, cores=1, load=0) == pytest.approx(7.0 + 2 * 4.8)
    # Beside two busy processes on two cores, a run measured alone had 2/3 of a core; each of two
    # workers will have 1/2: the runs take 4/3 as long. Beside one, it had a core, and they 2/3.
    assert estimate_seconds(configs, 2, measure, worker, cores=2, load=2) == pytest.approx(7.0 + 4 / 3 * 4.8)
    assert estimate_seconds(configs, 2, measure, worker, cores=2, load=1) == pytest.approx(7.0 + 1.5 * 4.8)
    # More steps, more seeds: more time.
    longer = grid({"cell": ["rnn", "gru"], "seq_len": [10, 20]}, steps=200, eval_every=50, device="cpu")
    seeded = grid({"cell": ["rnn", "gru"], "seq_len": [10, 20]}, seeds=3, steps=100, eval_every=50, device="cpu")
    assert estimate_seconds(longer, 2, measure, worker, cores=2, load=0) > estimate_seconds(configs, 2, measure, worker, cores=2, load=0)
    assert estimate_seconds(seeded, 2, measure, worker, cores=2, load=0) > estimate_seconds(configs, 2, measure, worker, cores=2, load=0)


@pytest.mark.slow
def test_the_estimate_measures_a_run_here_and_the_workers_in_new_processes():
    """The real measurements: each part of a run timed, and workers started and ended as a
    sweep's are (new processes, which must start and exit for the estimate to come back)."""
    configs = grid({"cell": ["rnn", "lstm"], "seq_len": [5, 8]}, steps=20, eval_every=10, hidden=8, device="cpu")
    costs, overheads = {}, []

    def measure(config):
        costs[config.cell] = cost = run_cost(config)
        return cost

    def worker(config, workers):
        overheads.append(worker_seconds(config, workers))
        return overheads[-1]

    estimate = estimate_seconds(configs, 2, measure, worker, cores=2, load=0)
    assert set(costs) == {"rnn", "lstm"} and {c.seq_len for c in costs.values()} == {8}
    for cost in costs.values():
        assert min(cost.setup, cost.step, cost.eval, cost.final) > 0
    # The runs on two workers, by hand: rnn 5, rnn 8 | lstm 5, lstm 8, each to the first free one.
    seconds = [costs[c.cell].seconds_at(c) for c in configs]
    free_at = [0.0, 0.0]
    for s in seconds:
        free_at[free_at.index(min(free_at))] += s
    assert len(overheads) == 1 and overheads[0] > 0
    assert estimate == pytest.approx(overheads[0] + max(free_at))
