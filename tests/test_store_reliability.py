"""The run store when things go wrong (issue 33): a deleted run stays deleted whoever still holds
it, a full disk and a read-only store say so (never "damaged"), a read-only store still lists
and shows its runs, and a run whose worker died names the step it is saved at."""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from explorer import Config, Run, Status, Trainer
from explorer.run import DELETED_NOTE, ReadOnly
from explorer.store import (SCHEMA_VERSION, RunDeleted, RunNotFound, RunStore, StoreFull, StoreReadOnly,
                            new_id, new_key, run_record)
from tests.test_train import _wait_for

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(task="adding", seq_len=12, hidden=8, batch_size=8, probe_every=5, eval_every=5, probe_count=3,
             steps=4000, seed=3, device="cpu")


def trained(steps: int, **config) -> Trainer:
    trainer = Trainer(Config(**{**SMALL, **config}))
    for _ in range(steps):
        trainer.step()
    return trainer


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.sqlite")


# -- deletes win ------------------------------------------------------------------------------

def test_no_save_brings_a_deleted_run_back(store):
    key, trainer = new_key(), trained(3)
    store.save("r", trainer, owner_key=key)
    store.delete("r")
    with pytest.raises(RunDeleted, match="deleted"):
        store.save("r", trainer, owner_key=key)
    with pytest.raises(RunDeleted):
        store.add("r", run_record(trainer, "paused"), owner_key=key)
    with pytest.raises(RunNotFound):
        store.info("r")
    assert store.deleted("r") and not store.deleted("never-saved")
    store.save("other", trainer, owner_key=key)          # other ids save as before
    assert [info.id for info in store.list()] == ["other"]


def test_a_run_still_training_after_its_delete_is_never_saved_again_and_becomes_read_only(store):
    # Another tab held the run: its next autosave re-created it (deleted at 295 steps, back at 3,802).
    run = Run(Config(**SMALL), store=store)
    run.step(20)
    assert run.wait_until_idle(60)
    assert store.info(run.id).steps == 20                # saved as it paused
    store.delete(run.id)
    run.step(10)                                         # it does not know yet: its pause saves
    assert _wait_for(lambda: run.status == Status.STOPPED, 60)
    with pytest.raises(RunNotFound):
        store.info(run.id)
    snap = run.snapshot()
    assert run.deleted and run.read_only and snap.message == DELETED_NOTE and snap.step == 30
    with pytest.raises(ReadOnly):
        run.start()
    run.save()                                           # a page's save (a closing tab) saves nothing
    assert store.list() == []


def test_a_run_told_of_its_delete_stops_training_and_saves_nothing(store):
    run = Run(Config(**SMALL), store=store)
    run.step(5)
    assert run.wait_until_idle(60)
    run.start()
    assert _wait_for(lambda: run.snapshot().step > 10, 60)
    store.delete(run.id)
    run.forget()                                         # what the Runs page does for a live copy
    assert _wait_for(lambda: run.status == Status.STOPPED, 60)
    assert run.snapshot().message == DELETED_NOTE
    run.join(60)
    assert store.list() == [] and store.deleted(run.id)


def test_a_schema_5_store_gains_the_deleted_ids_and_keeps_its_runs(tmp_path):
    path = tmp_path / "runs.sqlite"
    RunStore(path).save("r", trained(2), owner_key="k")
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE deleted")
        db.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    store = RunStore(path)
    assert [info.id for info in store.list()] == ["r"]
    store.delete("r")
    with pytest.raises(RunDeleted):
        store.save("r", trained(2), owner_key="k")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


# -- a full disk --------------------------------------------------------------------------------

class CappedStore(RunStore):
    """A store whose file may not grow past `pages` pages: SQLite's own SQLITE_FULL ("database or
    disk is full"), as a full disk gives it, without filling this machine's disk."""

    pages: int | None = None

    def _connect(self):
        db = super()._connect()
        if self.pages is not None:
            db.execute(f"PRAGMA max_page_count = {int(self.pages)}")
        return db


def _pages(path: Path) -> int:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return db.execute("PRAGMA page_count").fetchone()[0]


def test_a_full_disk_says_so_and_names_the_steps_not_saved_until_a_save_succeeds(tmp_path):
    store = CappedStore(tmp_path / "runs.sqlite")
    run = Run(Config(**SMALL), store=store)
    run.step(10)
    assert run.wait_until_idle(60) and store.info(run.id).steps == 10
    store.pages = _pages(store.path)                     # full: not one more page
    run.step(7)
    assert run.wait_until_idle(60)
    problem = run.snapshot().save_problem
    assert problem == ("The disk is full: the last 7 steps are not saved; free space and they will be saved "
                       "at the next autosave."), problem
    assert "damaged" not in problem and store.info(run.id).steps == 10
    with pytest.raises(StoreFull, match="full"):
        store.save(new_id(), trained(1), owner_key="k")
    store.pages = None                                   # space freed
    run.save()
    assert store.info(run.id).steps == 17 and run.snapshot().save_problem == ""


# -- a read-only store ----------------------------------------------------------------------------

def _without_write_rights(code: str, env: dict) -> subprocess.CompletedProcess:
    """Run Python code as a process that file permissions stop. Tests here run as root, whom they
    do not stop: then the process starts without the capabilities that override them."""
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("as root, a read-only file needs setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps=-all", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, **env})


@pytest.fixture
def read_only_store(tmp_path):
    """A store with one saved run, its file and folder then made read-only."""
    folder = tmp_path / "store"
    folder.mkdir()
    path = folder / "runs.sqlite"
    store = RunStore(path)
    run_id, key = new_id(), new_key()
    store.save(run_id, trained(6), owner_key=key, name="kept")
    path.chmod(0o444)
    folder.chmod(0o555)
    yield path, run_id, key
    folder.chmod(0o755)
    path.chmod(0o644)


def test_a_read_only_store_lists_and_shows_its_runs_and_says_it_is_read_only(read_only_store):
    path, run_id, key = read_only_store
    code = textwrap.dedent(f"""
        import json
        from explorer import Config, Run
        from explorer.store import RunStore, StoreError
        store = RunStore({str(path)!r})
        out = {{"read_only": store.read_only, "listed": [i.name for i in store.list()],
               "steps": store.load({run_id!r}).steps_done}}
        run = Run.open(store, {run_id!r}, {key!r})
        out["run_read_only"] = run.read_only
        for name, change in (("rename", lambda: store.rename({run_id!r}, "x")),
                             ("delete", lambda: store.delete({run_id!r})),
                             ("save", lambda: store.save("new", run.trainer, owner_key="k"))):
            try:
                change()
                out[name] = "done"
            except StoreError as error:
                out[name] = type(error).__name__ + ": " + str(error)
        print(json.dumps(out))
    """)
    done = _without_write_rights(code, {})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["read_only"] and out["listed"] == ["kept"] and out["steps"] == 6 and out["run_read_only"]
    for name in ("rename", "delete", "save"):
        assert out[name] == "StoreReadOnly: the run store is read-only: runs can be viewed, not saved", out


@pytest.mark.slow
def test_the_app_on_a_read_only_store_says_so_and_its_runs_page_lists_them(read_only_store):
    # ~15 s: the app under AppTest, in a process without the right to write the store.
    path, run_id, key = read_only_store
    code = textwrap.dedent(f"""
        import json
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file("app.py", default_timeout=120).run()
        at.switch_page("pages/runs.py").run()
        at.toggle(key="runs_everyone").set_value(True).run()     # (this session has no owner key of the run's)
        print(json.dumps({{"warnings": [w.value for w in at.warning], "errors": [e.value for e in at.error],
                          "exceptions": [x.value for x in at.exception],
                          "runs": [str(o) for o in at.selectbox(key="runs_pick").options],
                          "buttons": [b.label for b in at.button], "captions": [c.value for c in at.caption]}}))
    """)
    done = _without_write_rights(code, {"GATE_EXPLORER_DB": str(path)})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["exceptions"] == [] and out["errors"] == [], out
    assert "The run store is read-only: runs can be viewed, not saved." in out["warnings"], out
    assert any(run_id in option for option in out["runs"]), out
    assert "View it" in out["buttons"] and "Delete for good" not in out["buttons"], out
    assert any("read-only: this server's run store cannot be written" in c for c in out["captions"]), out


# -- a worker that dies -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="worker processes need a POSIX platform")
def test_a_run_whose_worker_died_names_its_saved_step_and_its_row_says_error(store):
    # ~10 s: a worker's imports, 50 steps, a kill.
    from explorer.admission import Admission
    from explorer.worker import Workers
    workers = Workers(keep=1)
    try:
        run = Run(Config(**SMALL), store=store, admission=Admission(1, workers=workers))
        run.step(30)
        assert run.wait_until_idle(120) and store.info(run.id).steps == 30
        run.start()
        assert _wait_for(lambda: run.snapshot().step >= 40 and run._worker is not None, 120)
        os.kill(run._worker.pid, signal.SIGKILL)
        assert _wait_for(lambda: run.status == Status.ERROR, 120)
        message = run.snapshot().message
        assert "ended unexpectedly" in message and "(step 30)" in message, message
        assert f"at step {run.snapshot().step:,}" in message
        info = store.info(run.id)
        assert info.status == "error" and info.steps == 30
        run.stop()
    finally:
        workers.close()
