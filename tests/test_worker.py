"""Runs that train in a worker process (explorer.worker): the same numbers as on a thread, the
same controls, and this process's trainer kept up to date (its History, its model at each probe
and whenever the run rests, its whole state at each save)."""
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from explorer.admission import Admission
from explorer.config import Config
from explorer.run import Run, Status
from explorer.store import RunStore
from explorer.trainer import Trainer
from explorer.worker import Workers, available
from tests.test_train import _wait_for as wait_for
from tests.test_train import does_exactly_n_steps

pytestmark = pytest.mark.skipif(not available(), reason="worker processes need a POSIX platform")

SMALL = dict(task="adding", seq_len=12, hidden=8, batch_size=8, steps=1000, probe_every=10, eval_every=10)


def small(**changes) -> Config:
    return Config(**dict(SMALL, **changes))


@pytest.fixture(scope="module")
def workers():
    pool = Workers(keep=1)
    yield pool
    pool.close()


@pytest.fixture
def admission(workers):
    return Admission(1, workers=workers)


@pytest.fixture
def nowhere_here(monkeypatch):
    """Training in this process fails the test: a run that trains in a worker never calls it."""
    def refuse(self):
        raise AssertionError("a step was trained in the server's process")
    monkeypatch.setattr(Trainer, "step", refuse)


def _wait_for(condition, timeout=60.0):      # (a worker may still be starting)
    return wait_for(condition, timeout)


def _reference(config: Config, steps: int) -> Trainer:
    trainer = Trainer(config)
    for _ in range(steps):
        trainer.step()
    return trainer


@pytest.mark.slow
def test_a_run_trains_in_a_worker_to_the_numbers_a_trainer_here_gives(admission, nowhere_here, monkeypatch):
    config = small(steps=40)
    run = Run(config, admission=admission)
    run.start()
    assert _wait_for(lambda: run.snapshot().status == "finished")
    snap = run.snapshot()
    monkeypatch.undo()                      # the reference trains here
    reference = _reference(config, 40)
    expected = reference.history.view()
    assert snap.step == 40 and list(snap.history.steps["step"]) == list(range(1, 41))
    for name in ("loss", "grad_norm", "param_grad_norm", "update_ratio"):
        np.testing.assert_allclose(snap.history.steps[name], expected.steps[name], rtol=1e-4, atol=1e-7)
    assert list(snap.history.evals["step"]) == [10, 20, 30, 40]
    np.testing.assert_allclose(snap.history.evals["eval_loss"], expected.evals["eval_loss"], rtol=1e-4)
    assert [s for s, _ in snap.history.traces] == [0, 10, 20, 30, 40]
    np.testing.assert_allclose(snap.history.traces[-1][1].layers[0].gates["forget"],
                               expected.traces[-1][1].layers[0].gates["forget"], rtol=1e-4, atol=1e-6)
    # This process's model, optimiser and followers' copy are the worker's final ones.
    for mine, theirs in zip(run.trainer.model.parameters(), reference.model.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
    assert run.trainer.steps_done == 40 and run.trainer.probe_copy[0] == 40
    assert run.trainer.optimizer.state_dict()["state"][0]["step"].item() == 40
    run.stop()


def test_step_n_is_exact_and_pause_stops_the_worker(admission, nowhere_here):
    run = Run(small(), admission=admission)
    try:
        does_exactly_n_steps(run, wait=60.0)
        assert run.trainer.steps_done == 10
        run.start()
        assert _wait_for(lambda: run.snapshot().step >= 30)
        run.pause()
        assert run.wait_until_idle(10.0)
        paused_at = run.snapshot().step
        time.sleep(0.5)
        assert run.snapshot().step == paused_at == run.trainer.steps_done
        assert run.status == Status.PAUSED
        assert admission.counts() == (0, 0)        # its slot (and its worker) went to the next run
        run.resume()
        assert _wait_for(lambda: run.snapshot().step >= paused_at + 5)
        steps = run.snapshot().history.steps["step"]
        assert list(steps) == list(range(1, len(steps) + 1))      # continued from the same step
    finally:
        run.stop()


def test_divergence_in_a_worker_is_the_runs_status_with_its_last_finite_weights(admission):
    config = small(cell="rnn-relu", seq_len=30, hidden=64, optimizer="sgd", lr=10.0)
    run = Run(config, admission=admission)
    run.start()
    assert _wait_for(lambda: run.snapshot().status == "diverged")
    assert run.wait_until_idle(10.0)
    snap = run.snapshot()
    reference = Trainer(config)
    while reference.step() is not None:
        pass
    assert snap.message == reference.divergence_message and run.trainer.diverged
    assert snap.step == reference.steps_done
    assert all(torch.isfinite(p).all() for p in run.trainer.model.parameters())
    for mine, theirs in zip(run.trainer.model.parameters(), reference.model.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-3, atol=1e-5)
    run.stop()


def test_a_save_while_training_stores_the_workers_state_at_one_step(admission, tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    config = small()
    run = Run(config, store=store, admission=admission)
    run.start()
    try:
        assert _wait_for(lambda: run.snapshot().step >= 25)
        run.save()                                    # while it trains
        saved = store.load(run.id)
        assert saved.steps_done >= 25 and len(saved.history) == saved.steps_done
        reference = _reference(config, saved.steps_done)
        for mine, theirs in zip(saved.model.parameters(), reference.model.parameters()):
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
        assert saved.optimizer.state_dict()["state"][0]["step"].item() == saved.steps_done
        run.pause()                     # the steps allowed ahead finish, and the save holds them
        assert run.wait_until_idle(10.0)
        assert store.load(run.id).steps_done == run.snapshot().step == run.trainer.steps_done
    finally:
        run.stop()
    assert store.load(run.id).steps_done == run.snapshot().step     # saved as it stopped


def test_a_worker_trains_on_while_the_server_saves_and_every_step_is_booked(admission, tmp_path, monkeypatch):
    import explorer.run as run_module
    monkeypatch.setattr(run_module, "SAVE_EVERY_STEPS", 40)
    lent = []                          # the steps lent the worker for each save made while it trains
    trained = []                       # whether it sent a step while the server was busy saving
    saving = threading.Event()

    class SlowStore(RunStore):         # a real store whose saves take 0.4 s longer
        def save(self, *args, **kwargs):
            worker = run._worker             # (none in the save made as the run rests)
            saving.set()
            time.sleep(0.4)
            super().save(*args, **kwargs)
            if worker and lent and lent[-1] > 0:
                # Nobody reads the pipe during a save: a step waiting in it was trained then, or
                # is being trained now. (Steps and messages, not CPU seconds: those depend on
                # what else the machine runs.)
                trained.append(worker.conn.poll(30))

    store = SlowStore(tmp_path / "runs.sqlite")
    run = Run(small(steps=100_000), store=store, admission=admission)
    lend = run._lend_while_saving

    def lending():                     # the run's own lending, counted
        before = run._granted
        lend()
        lent.append(run._granted - before)

    run._lend_while_saving = lending
    run.start()
    try:
        assert _wait_for(lambda: len(trained) >= 2)
        # The first save lends nothing (no save has been timed yet); the next ones lend the
        # steps that fit in the time the last save took, at the rate trained since.
        assert lent[0] == 0 and all(n > 0 for n in lent[1:3]), lent
        assert all(trained), trained
        saving.clear()
        assert saving.wait(30)
        run.pause()                    # while the server saves, and the worker trains on
        assert run.wait_until_idle(10.0)
        steps = run.snapshot().history.steps["step"]
        assert list(steps) == list(range(1, len(steps) + 1)) and len(steps) == run.trainer.steps_done
        assert store.load(run.id).steps_done == run.trainer.steps_done     # the lent steps too
    finally:
        run.stop()


def test_a_worker_that_dies_ends_its_run_with_a_message_and_the_next_run_gets_a_new_one(admission, workers):
    run = Run(small(), admission=admission)
    run.start()
    assert _wait_for(lambda: run.snapshot().step >= 5)
    os.kill(run._worker.pid, signal.SIGKILL)
    assert _wait_for(lambda: run.snapshot().status == "error")
    assert "ended unexpectedly" in run.snapshot().message
    run.stop()
    following = Run(small(steps=12), admission=admission)
    following.start()
    assert _wait_for(lambda: following.snapshot().status == "finished")
    following.stop()


def test_while_a_worker_trains_followers_trace_the_weights_of_its_latest_probe(admission):
    from explorer.follow import Followed
    config = small()
    run = Run(config, admission=admission)
    run.start()
    try:
        assert _wait_for(lambda: run.snapshot().step >= 25)
        shadow = Followed(run, token="t").trainer        # what a follower traces with, taken now
        step = shadow.steps_done
        assert step >= 20 and step in [s for s, _ in run.snapshot().history.traces]   # a probe's step
        x, y = run.trainer.probe_set
        reference = _reference(config, step).trace(x[:2], y[:2])
        mine = shadow.trace(x[:2], y[:2])
        np.testing.assert_allclose(mine.layers[0].gates["forget"], reference.layers[0].gates["forget"],
                                   rtol=1e-4, atol=1e-6)
    finally:
        run.stop()


def test_a_server_has_one_pool_however_often_its_admission_is_made():
    # (Streamlit's cache of the admission can be cleared; each new admission must not start more
    # processes: measured in the test suite, every cleared cache started two more.)
    import streamlit as st

    from explorer import worker
    from pages import session
    pool = worker.shared(keep=1)
    assert worker.shared(keep=2) is pool and pool.keep >= 2
    st.cache_resource.clear()
    first = session.admission()
    st.cache_resource.clear()
    again = session.admission()
    assert again is not first and first.workers is again.workers is pool


def _train_in(pool: Workers, config: Config, grown_mb: float | None = None):
    """Train config in a worker of pool until it has made 5 steps (and, given grown_mb, holds
    more than that over what it held fresh), then pause: the worker goes back to the pool.
    Returns it."""
    run = Run(config, admission=Admission(1, workers=pool))
    run.start()
    try:
        assert _wait_for(lambda: run._worker is not None)
        worker = run._worker
        assert _wait_for(lambda: run.snapshot().step >= 5 and worker.fresh_mb is not None
                         and (grown_mb is None or worker.rss_mb() - worker.fresh_mb > grown_mb))
        run.pause()
        assert run.wait_until_idle(30.0)
        return worker
    finally:
        run.stop()


@pytest.mark.slow
def test_a_worker_that_grew_in_a_run_is_ended_and_a_fresh_one_warmed_in_its_place():
    # A wider run's steps take MBs, which the worker's arena keeps (explorer/memory.py).
    pool = Workers(keep=1, grown_mb=5.0)
    try:
        grown = _train_in(pool, small(seq_len=40, hidden=128, batch_size=64, steps=100_000), grown_mb=5.0)
        assert _wait_for(lambda: not grown.alive())
        assert _wait_for(lambda: len(pool._idle) == 1)        # started in the background
        fresh = pool._idle[0]
        assert fresh.pid != grown.pid and fresh.alive()
        assert pool.lease() is fresh                          # the next run does not wait for one
        pool.give_back(fresh)
    finally:
        pool.close()


@pytest.mark.slow
def test_a_worker_that_stayed_near_its_fresh_size_is_kept_for_the_next_run():
    pool = Workers(keep=1, grown_mb=10_000.0)
    try:
        worker = _train_in(pool, small(steps=100_000))
        assert _wait_for(lambda: pool._idle == [worker])
        assert worker.alive() and pool.lease() is worker
        pool.give_back(worker)
    finally:
        pool.close()


def test_an_out_of_memory_step_a_worker_reports_is_said_as_on_a_thread():
    from explorer.worker import WorkerFailure
    run = Run(small(batch_size=64, hidden=32))
    said = run._failure(WorkerFailure("CUDA out of memory. Tried to allocate 2.00 GiB", out_of_memory=True))
    assert said.startswith("Training ran out of memory at its first step (batch_size 64") and "Lower batch_size" in said
    other = run._failure(WorkerFailure("the data source went away"))
    assert other == "Training stopped with an error: the data source went away"


@pytest.mark.parametrize("mode", ["thread", "worker"])
def test_a_step_that_raises_in_a_worker_ends_the_run_with_the_message_a_thread_gives(mode, admission):
    import math
    trainer = Trainer(small())
    trainer.task.sample = math.sqrt           # picklable, and it raises when a batch is asked for
    run = Run(trainer.config, trainer=trainer, admission=admission if mode == "worker" else None)
    run.start()
    assert _wait_for(lambda: run.snapshot().status == "error")
    assert run.snapshot().message == "Training stopped with an error: math.sqrt() takes exactly one argument (2 given)"
    assert not run._here
    run.stop()


def test_a_task_that_cannot_be_sent_to_a_worker_trains_on_the_servers_thread(admission):
    trainer = Trainer(small(steps=12))
    sample = trainer.task.sample
    trainer.task.sample = lambda n, generator: sample(n, generator)     # a lambda does not pickle
    run = Run(trainer.config, trainer=trainer, admission=admission)
    run.start()
    assert _wait_for(lambda: run.snapshot().status == "finished")
    assert run.snapshot().step == 12 and run._here
    run.stop()
