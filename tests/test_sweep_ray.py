"""The Ray engine, on one local Ray instance for the test session: a sweep gives the local
engine's rows, and an app run trains in a Ray actor under the same controls as in a worker."""
import os

import numpy as np
import pandas as pd
import pytest
import torch

ray = pytest.importorskip("ray", reason="the Ray engine is optional (requirements-ray.txt); CI installs it")

from explorer import ray_engine  # noqa: E402
from explorer.admission import Admission  # noqa: E402
from explorer.run import Run, Status  # noqa: E402
from explorer.store import RunStore  # noqa: E402
from explorer.sweep import COLUMNS, grid, sweep  # noqa: E402
from explorer.trainer import Trainer  # noqa: E402
from explorer.worker import Workers  # noqa: E402
from tests.test_train import _wait_for  # noqa: E402
from tests.test_worker import _reference, small  # noqa: E402

TIMING = ["seconds", "steps_per_second", "run_id"]


@pytest.fixture(scope="session")
def ray_instance():
    ray_engine.init()            # a local instance: RAY_ADDRESS is not set in the tests
    yield
    ray.shutdown()


@pytest.mark.slow
def test_a_sweep_on_ray_gives_the_local_engines_rows(ray_instance, tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    configs = grid({"cell": ["rnn", "gru"], "seq_len": [10, 100]}, seeds=1, steps=300, task="adding", device="cpu")
    on_ray = sweep(configs, engine="ray", store=store)
    here = sweep(configs, engine="local", store=store, workers=2)
    assert tuple(on_ray.columns) == COLUMNS and len(on_ray) == 4
    assert set(on_ray["status"]) == {"finished"}
    for column in COLUMNS:
        if column in TIMING:
            continue
        if pd.api.types.is_float_dtype(on_ray[column]):
            np.testing.assert_allclose(on_ray[column], here[column], rtol=1e-6, err_msg=column)
        else:
            assert on_ray[column].equals(here[column]), column
    for run_id in on_ray["run_id"]:                 # every Ray run is in this process's store
        assert store.info(run_id).steps == 300


@pytest.mark.slow
def test_an_app_run_trains_in_a_ray_actor(ray_instance, monkeypatch):
    def refuse(self):
        raise AssertionError("a step was trained in the server's process")
    monkeypatch.setattr(Trainer, "step", refuse)          # (the actor's process is not patched)
    pool = Workers(keep=1, make=ray_engine.RayWorker)
    try:
        admission = Admission(1, workers=pool)
        config = small(steps=1000)
        run = Run(config, admission=admission)
        run.step(20)                                    # exactly 20 steps, then it rests
        assert _wait_for(lambda: run.snapshot().step == 20 and run.wait_until_idle(1.0), 120.0)
        monkeypatch.undo()                               # the reference trains here
        reference = _reference(config, 20)
        monkeypatch.setattr(Trainer, "step", refuse)
        for mine, theirs in zip(run.trainer.model.parameters(), reference.model.parameters()):
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
        snap = run.snapshot()
        assert [s for s, _ in snap.history.traces] == [0, 10, 20]
        np.testing.assert_allclose(snap.history.steps["loss"], reference.history.view().steps["loss"], rtol=1e-4)
        actor = pool._idle[0] if pool._idle else None
        assert actor is not None and actor.pid != os.getpid()
        run.start()
        assert _wait_for(lambda: run.snapshot().step >= 40, 60.0)
        run.pause()
        assert run.wait_until_idle(10.0)
        paused_at = run.snapshot().step
        assert run.status == Status.PAUSED and run.trainer.steps_done == paused_at
        run.resume()
        assert _wait_for(lambda: run.snapshot().step >= paused_at + 10, 60.0)
        run.stop()
        assert _wait_for(lambda: run.status == Status.STOPPED, 30.0)
        steps = run.snapshot().history.steps["step"]
        assert list(steps) == list(range(1, len(steps) + 1))      # one run, continued through it all
    finally:
        pool.close()


@pytest.mark.slow
def test_the_app_trains_in_ray_actors_when_its_engine_says_so(ray_instance, monkeypatch):
    from pages import session
    monkeypatch.setenv(ray_engine.ENGINE_ENV, "ray")
    session.admission.clear()
    try:
        workers = session.admission().workers
        assert workers is ray_engine.shared(1) and workers.make is ray_engine.RayWorker
        assert _wait_for(lambda: len(workers._idle) >= workers.keep, 90.0)    # its actors are up, warm
        assert workers._idle[0].alive()
        monkeypatch.setenv(ray_engine.ENGINE_ENV, "")
        session.admission.clear()
        assert session.admission().workers is None or session.admission().workers.make is not ray_engine.RayWorker
    finally:
        session.admission.clear()
        ray_engine._SHARED.close()
        ray_engine._SHARED = None
