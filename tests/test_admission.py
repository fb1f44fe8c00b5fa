"""A classroom on one server: at most GATE_EXPLORER_MAX_RUNS runs train at once, the others
wait first-come and know their place, a pause leaves the queue; a session that ends stops its
runs (saved first) unless another session holds them, and gives its memory back."""
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from explorer import Config, Run, Status
from explorer.admission import Admission, cores, max_runs, threads_per_run
from explorer.memory import ARENAS_ENV, arena_hint, give_back, settle_allocator
from explorer.store import RunStore
from pages.session import LiveRuns, Session

FAST = Config(seq_len=10, hidden=8, batch_size=8, steps=100_000, probe_every=1000, eval_every=1000)


def wait_for(check, timeout: float = 30.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_admission_is_first_come_with_places_and_a_leaver_lets_the_next_in():
    gate = Admission(2)
    assert [gate.ask(name) for name in "abcd"] == [0, 0, 1, 2]
    assert gate.ask("c") == 1 and gate.place("d") == 2          # asking again keeps the place
    assert gate.place("e") is None
    gate.leave("a")                                            # a slot frees: the first waiting takes it
    assert (gate.place("c"), gate.place("d")) == (0, 1)
    gate.leave("d")                                            # leaving the queue
    assert gate.place("d") is None and gate.counts() == (2, 0)
    gate.leave("b"), gate.leave("c")
    assert gate.counts() == (0, 0)


class Holder:
    def __init__(self, name: str, priority: bool = False):
        self.name, self.priority = name, priority


def test_a_followed_run_goes_ahead_of_the_queue_and_never_waits_its_turn():
    gate = Admission(1, quantum=0.01)
    a, b, lecture, c = Holder("a"), Holder("b"), Holder("lecture", priority=True), Holder("c")
    assert [gate.ask(h) for h in (a, b, lecture, c)] == [0, 1, 1, 3]   # b and c make way for it
    assert gate.place(b) == 2
    gate.leave(a)
    assert gate.place(lecture) == 0 and (gate.place(b), gate.place(c)) == (1, 2)
    # Fair turns: a run ahead of the others waits; the followed run does not.
    gate = Admission(2, quantum=0.01)
    other, lecture = Holder("other"), Holder("lecture", priority=True)
    gate.ask(other), gate.ask(lecture)
    with gate.turn(lecture):
        time.sleep(0.2)                                        # the lecture's run 0.2 s ahead
    started = time.monotonic()
    with gate.turn(lecture, timeout=30.0):
        pass
    # It never waits: a run that waited would wait the whole 30 s (the other never steps), so
    # the bound holds on a busy machine and still fails if the followed run were made to wait.
    assert time.monotonic() - started < 10.0
    with gate.turn(other):
        time.sleep(0.3)                                        # now the other is 0.1 s ahead
    started = time.monotonic()
    with gate.turn(other, timeout=0.5):
        pass
    assert time.monotonic() - started >= 0.45                  # it waits for the lecture's run


def test_the_defaults_fit_the_cores(monkeypatch):
    monkeypatch.delenv("GATE_EXPLORER_MAX_RUNS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert max_runs() == cores() and threads_per_run() == 1     # one thread per admitted run
    monkeypatch.setenv("GATE_EXPLORER_MAX_RUNS", "1")
    assert max_runs() == 1 and threads_per_run() == cores()    # one run may use every core
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv("GATE_EXPLORER_MAX_RUNS", bad)
        assert max_runs() == cores()
    assert max_runs() * threads_per_run() <= cores()


def test_runs_beyond_the_slots_wait_their_turn_and_start_by_themselves():
    gate = Admission(2)
    runs = [Run(FAST, admission=gate) for _ in range(3)]
    try:
        for run in runs:
            run.start()
        wait_for(lambda: runs[0].snapshot().step > 5 and runs[1].snapshot().step > 5, what="two runs training")
        third = runs[2].snapshot()
        assert third.step == 0 and third.queue_place == 1 and third.status == Status.RUNNING
        runs[0].pause()                                        # its slot goes to the run that waited
        wait_for(lambda: runs[2].snapshot().step > 5, what="the waiting run to start by itself")
        assert runs[2].snapshot().queue_place is None and gate.counts() == (2, 0)
        held = runs[0].snapshot().step
        runs[0].start()                                        # back to the end of the queue
        wait_for(lambda: runs[0].snapshot().queue_place == 1, what="the resumed run to queue")
        time.sleep(0.5)
        assert runs[0].snapshot().step == held                 # it waits: no third run steps
        runs[0].pause()                                        # a pause leaves the queue
        wait_for(lambda: runs[0].snapshot().queue_place is None and gate.counts() == (2, 0),
                 what="the paused run to leave the queue")
    finally:
        for run in runs:
            run.stop()
    assert gate.counts() == (0, 0)
    assert not any(t.name == "gate-explorer-run" and t.is_alive() for t in threading.enumerate())


def test_admitted_runs_take_fair_turns():
    gate = Admission(2)
    runs = [Run(FAST, admission=gate) for _ in range(2)]
    try:
        for run in runs:
            run.start()
        wait_for(lambda: min(r.snapshot().step for r in runs) > 20, what="both runs training")
        start = [r.snapshot().step for r in runs]
        time.sleep(3)
        done = [r.snapshot().step - s for r, s in zip(runs, start)]
    finally:
        for run in runs:
            run.stop()
    assert min(done) >= 0.5 * max(done), f"steps in 3 s: {done}"     # neither starves


def test_an_ended_session_stops_its_runs_saved_unless_another_session_holds_them(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    live = LiveRuns(grace=0.0)
    leaving, staying = Session(owner_key="k1"), Session(owner_key="k2")
    mine = Run(FAST, store=store, owner_key="k1")
    shared = Run(FAST, store=store, owner_key="k1")
    for run in (mine, shared):
        live.hold(run, leaving)
        run.start()
    live.hold(shared, staying)                                  # a reload's new session took it back
    wait_for(lambda: mine.snapshot().step > 3 and shared.snapshot().step > 3, what="training")
    upload = Path(leaving.upload_dir)
    (upload / "data.csv").write_text("a\n1\n")
    leaving.run, leaving.lesson_runs = mine, {"variant": shared}
    import pages.session as session_module
    original = session_module.live_runs
    session_module.live_runs = lambda: live
    try:
        leaving._let_go([mine, shared])
    finally:
        session_module.live_runs = original
    assert mine.status == Status.STOPPED and live.get(mine.id) is None
    assert store.info(mine.id).steps == mine.trainer.steps_done > 3     # saved before it stopped
    assert shared.status == Status.RUNNING and live.get(shared.id) is shared
    # Streamlit may keep the ended session's objects: the stopped run has let go of its history
    assert len(mine.trainer.history) == 0 and mine.snapshot().step == 0 and len(shared.trainer.history) > 3
    assert not upload.exists() and leaving.run is None
    shared.stop()


def test_a_training_run_whose_session_ended_waits_a_grace_period_for_a_reload():
    live = LiveRuns(grace=1.0)
    old, new = Session(owner_key="k"), Session(owner_key="k")
    run = Run(FAST, store=None)
    run.id = "r1"
    live.hold(run, old)
    run.start()
    wait_for(lambda: run.snapshot().step > 2, what="training")
    live.release(run, old)                                     # the reload ended the old session
    assert run.status == Status.RUNNING and live.get("r1") is run
    live.hold(run, new)                                        # the new session takes it back
    time.sleep(1.5)
    assert run.status == Status.RUNNING
    other = Run(FAST, store=None)
    other.id = "r2"
    live.hold(other, old)
    other.start()
    wait_for(lambda: other.snapshot().step > 2, what="the second run training")
    live.release(other, old)                                   # two orphans, let go at different times
    time.sleep(0.5)
    live.release(run, new)                                     # the tab is closed for good
    # no call prunes from here on: the timers alone end both, each after its own grace
    wait_for(lambda: other.status == Status.STOPPED, timeout=10, what="the first grace to end")
    wait_for(lambda: run.status == Status.STOPPED, timeout=10, what="the second grace to end")
    assert live.get("r1") is None and live.get("r2") is None
    # an orphan nobody can take back has let go of its history too
    wait_for(lambda: len(run.trainer.history) == 0 and len(other.trainer.history) == 0, timeout=10,
             what="the orphans' histories let go")


def test_allocator_calls_take_effect_on_linux_and_a_missing_arena_cap_is_named(monkeypatch):
    # That RSS really comes back is the load test's check (tests/browser/test_load.py).
    import sys
    linux = sys.platform.startswith("linux")
    assert give_back() is linux and settle_allocator() is linux
    # the operator is told when the arena cap is missing, and only then
    monkeypatch.setenv(ARENAS_ENV, "2")
    assert arena_hint() is None
    monkeypatch.delenv(ARENAS_ENV)
    assert (arena_hint() is not None and "MALLOC_ARENA_MAX=2" in arena_hint()) is linux


def test_live_pages_refresh_less_often_as_runs_crowd_the_places(monkeypatch):
    import pages.session as where
    places = Admission(2)
    monkeypatch.setattr(where, "admission", lambda: places)
    assert where.refresh_every(0.4) == pytest.approx(0.4)          # an empty server
    runs = [object() for _ in range(10)]
    for run in runs[:2]:
        places.ask(run)
    assert where.refresh_every(0.4) == pytest.approx(0.4)          # as many runs as places
    for run in runs[2:]:
        places.ask(run)
    assert where.refresh_every(0.4) == pytest.approx(2.0)          # 10 runs on 2 places
    for run in runs:
        places.leave(run)
    assert where.refresh_every(0.4) == pytest.approx(0.4)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
@pytest.mark.parametrize("settle, most", [("settle_allocator", None), ("settle_for_training", 200)])
@pytest.mark.slow
def test_a_training_process_keeps_a_steps_freed_memory_mapped(settle, most):
    """A step frees its temporaries and asks for them again: under the server's thresholds the
    freed top of the heap goes back to the OS and every page faults in again; a process that
    only trains keeps it. Counted as page faults, in a fresh process each (torch imported, as in
    a worker). The 20 MB go through glibc's malloc directly: a tensor's storage would too, but
    torch also allocates small objects around it, and whether one lands above the block (so the
    top is not free to trim) depends on the heap's layout at start; with tensors the server's
    case faulted in about 6 of 10 fresh processes, with malloc in every one."""
    code = ("import ctypes, resource, torch; from explorer import memory; memory.{}()\n"
            "libc = ctypes.CDLL('libc.so.6'); libc.malloc.restype = ctypes.c_void_p\n"
            "libc.free.argtypes = [ctypes.c_void_p]\n"
            "faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "def step():\n"
            "    block = libc.malloc(20 * 2**20); ctypes.memset(block, 1, 20 * 2**20); libc.free(block)\n"
            "for _ in range(3): step()\n"
            "before = faults()\n"
            "for _ in range(10): step()\n"
            "print((faults() - before) // 10)").format(settle)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    per_step = int(done.stdout.split()[-1])
    if most is None:
        assert per_step > 2000, per_step              # 20 MB is 5,120 pages: (nearly) every one faults
    else:
        assert per_step < most, per_step
