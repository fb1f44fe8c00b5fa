"""Following a live run (explorer/follow.py, pages/follow.py): the store's follow links, the
follower's read-only view traced on a copy of the weights, the shared figure cache, and the
app with an owner and followers in separate browser sessions."""
from __future__ import annotations

import gzip
import json

import threading
import time
from contextlib import contextmanager
from unittest.mock import patch

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.local_script_runner import LocalScriptRunner

from explorer import Config, Run
from explorer.follow import FigureCache, FollowBoard, Followed
from explorer.run import ReadOnly
from explorer.store import FollowRefused, RunStore, StoreError
from tests.test_app import APP, SMALL, button, figures, live_charts, metric, no_exception, step

OWNER, OTHER = "a" * 32, "b" * 32


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


# --- the store's follow links ---------------------------------------------------------------

def test_a_follow_link_names_its_run_until_revoked_and_only_its_owner_changes_it(store):
    token = store.create_follow("run1", OWNER)
    assert store.followed(token) == "run1" and store.follow_of("run1", OWNER) == token
    assert store.follow_of("run1", OTHER) is None                 # another owner's view of the run has none
    with pytest.raises(StoreError, match="only the owner"):
        store.revoke_follow(token, OTHER)
    with pytest.raises(StoreError, match="only the owner"):
        store.move_follow(token, "run2", OTHER)
    store.move_follow(token, "run2", OWNER)                        # Reset, keeping followers
    assert store.followed(token) == "run2" and store.follow_of("run1", OWNER) is None
    store.revoke_follow(token, OWNER)
    with pytest.raises(FollowRefused, match="revoked"):
        store.followed(token)
    assert store.follow_of("run2", OWNER) is None
    with pytest.raises(FollowRefused, match="not known"):
        store.followed("0" * 32)


def test_a_version_1_store_gains_follow_links_and_keeps_its_runs(tmp_path):
    import sqlite3

    from explorer.store import MIGRATIONS
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.executescript(MIGRATIONS[1])
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO runs VALUES ('r', 'h', 'n', '{}', 'adding', 'lstm', 3, 'paused', NULL, NULL, 'c', 'u')")
    db.commit()
    db.close()
    old = RunStore(path)
    assert [r.id for r in old.list()] == ["r"]
    token = old.create_follow("r", OWNER)
    assert old.followed(token) == "r"


def test_the_board_counts_followers_and_sees_a_revocation_at_once(store):
    board = FollowBoard(store)
    token = board.link("run1", OWNER)
    assert board.link("run1", OWNER) == token and board.link("run9", OWNER, make=False) is None
    one, two = object(), object()
    board.join(token, one), board.join(token, two), board.join(token, one)
    assert board.count(token) == 2
    board.leave(token, one)
    assert board.count(token) == 1 and board.run_of(token) == "run1"
    board.revoke(token, OWNER)
    with pytest.raises(FollowRefused):
        board.run_of(token)


# --- the follower's view ------------------------------------------------------------------------

def small_run(**config) -> Run:
    return Run(Config(**{**SMALL, "task": "adding", **config}), idle_timeout=60)


def test_a_followers_own_sequence_is_traced_on_the_probe_copy_without_the_runs_lock():
    run = small_run(probe_every=5)
    run.step(5)
    assert run.wait_until_idle(30)
    watcher = Followed(run, "t")
    x = torch.randn(1, 12, 2)                                    # (batch, time, input): built by hand
    y = torch.randn(1, 1)
    reference = run.trace(x, y)                                 # the live model at the probe's step
    result = {}
    with run._model_lock:                                       # the worker mid-step, holding its lock
        worker = threading.Thread(target=lambda: result.setdefault("trace", watcher.trace(x, y)))
        worker.start()
        worker.join(10)
        assert not worker.is_alive(), "the follower's trace waited for the run's lock"
    assert watcher.trainer.steps_done == 5
    np.testing.assert_allclose(result["trace"].output, reference.output, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(result["trace"].grad_input, reference.grad_input, rtol=1e-5, atol=1e-8)
    # The copy stays at the probe while the live model moves on.
    run.step(2)
    assert run.wait_until_idle(30)
    moved = run.trace(x, y)
    assert watcher.trainer.steps_done == 5
    assert not np.allclose(watcher.trace(x, y).output, moved.output)
    run.stop()


def test_followers_share_one_snapshot_per_tick_and_see_the_run_move_on():
    run = small_run()
    one, two = Followed(run, "t", tick=0.3), Followed(run, "t", tick=0.3)
    run.start()
    try:
        time.sleep(0.5)
        first = one.snapshot()
        assert two.snapshot() is first                          # the same moment, the same step
        time.sleep(0.4)
        later = two.snapshot()
        assert later is not first and later.step > first.step  # a tick later, the run's new step
        assert one.snapshot() is later
    finally:
        run.stop()


def test_a_follower_cannot_drive_the_run_and_does_not_keep_it_alive():
    run = small_run()
    watcher = Followed(run, "t")
    for control in (watcher.start, watcher.pause, watcher.resume, watcher.stop, lambda: watcher.step(1)):
        with pytest.raises(ReadOnly):
            control()
    seen = run._last_poll
    time.sleep(0.6)
    watcher.snapshot()
    assert run._last_poll == seen                               # a follower's look is not the owner's
    run.snapshot()
    assert run._last_poll > seen


def test_five_followers_asking_at_once_build_a_figure_once():
    cache, builds = FigureCache(), []
    gate = threading.Barrier(5)

    def build() -> str:
        builds.append(1)
        time.sleep(0.2)                                         # long enough for all five to ask
        return "{}"

    def follower() -> None:
        gate.wait()
        assert cache.get(("loss_plot", "run", 7, False), build) == "{}"

    threads = [threading.Thread(target=follower) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(builds) == 1 and cache.builds == 1
    cache.get(("loss_plot", "run", 8, False), build)            # the next step is a new figure
    assert cache.builds == 2


def test_the_figure_cache_keeps_the_newest_within_its_bounds():
    cache = FigureCache(size=3, max_bytes=250)
    for step in range(5):
        cache.get(step, lambda: "x" * 100)
    assert list(cache._done) == [3, 4] and cache._bytes == 200    # 250 bytes hold two
    cache.get(3, lambda: "never built")                         # kept: not built again
    assert cache.builds == 5


# --- the app: an owner and followers, each in a browser session of their own --------------------

@pytest.fixture(autouse=True)
def fresh_server(tmp_path, monkeypatch):
    monkeypatch.setenv("GATE_EXPLORER_DB", str(tmp_path / "runs.sqlite"))
    # Each rerun here is one look: followers see the run's step at once, not a tick later.
    monkeypatch.setattr("pages.follow.FOLLOW_SECONDS", 0.0)
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


@contextmanager
def session_of(name: str):
    """AppTest runs inside this block belong to browser session `name` (AppTest itself gives
    every instance one session id, so two of them would share one session's resources)."""
    original = LocalScriptRunner.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._session_id = name

    with patch.object(LocalScriptRunner, "__init__", init):
        yield


def owner_with_link(steps: int = 10) -> tuple[AppTest, str]:
    with session_of("teacher"):
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state["draft"] = Config(**SMALL).to_dict()
        at.run()
        step(at, steps)
        button(at, "Make a follow link").click().run()
        link = next(c.value for c in at.sidebar.code if "follow=" in c.value)
    return at, link.split("follow=")[1]


def shown_step(at: AppTest) -> str | None:
    """The step a follower's Train page shows: its chart element draws the step line (and
    polls the server for the next ones, pages/live.py); None when there is none."""
    head = (live_charts(at) or {}).get("head")
    return str(head["step"]) if head else None


def follower(name: str, token: str, page: str | None = None) -> AppTest:
    with session_of(name):
        at = AppTest.from_file(APP, default_timeout=120)
        at.query_params["follow"] = token
        at.run()
        if page:
            at.switch_page(page).run()
    return at


def test_a_follow_link_shows_the_live_run_read_only_with_the_followers_own_choices():
    teacher, token = owner_with_link()
    student = follower("student", token)
    no_exception(student)
    assert shown_step(student) == metric(teacher, "Step") == "10"
    assert not [b for b in student.button if b.label in ("Train", "Pause", "Resume", "Step", "Reset")]
    assert any("Following" in i.value and "paused" in i.value for i in student.info)
    assert student.query_params["follow"] == token and "key" not in student.query_params
    assert "run" not in student.query_params
    teacher_loss = figures(teacher)["loss_plot"]
    assert figures(student)["loss_plot"] == teacher_loss          # the same run, the same chart

    # Its own sequence on the Gates page, the teacher's left as it was.
    with session_of("teacher"):
        teacher.switch_page("pages/gates.py").run()
        teacher_pick = teacher.selectbox(key="pick_sequence").value
    with session_of("student"):
        student.switch_page("pages/gates.py").run()
        student.selectbox(key="pick_sequence").set_value(2).run()
        no_exception(student)
        assert student.query_params["seq"] == "2"
    with session_of("teacher"):
        teacher.run()
        assert teacher.selectbox(key="pick_sequence").value == teacher_pick == 0

    # The teacher trains on: the follower's page shows the new steps.
    with session_of("teacher"):
        teacher.switch_page("pages/train.py").run()
        step(teacher, 10)
    with session_of("student"):
        student.switch_page("pages/train.py").run()
        assert shown_step(student) == "20"


def test_revoking_a_follow_link_locks_its_followers_out_with_a_message():
    teacher, token = owner_with_link()
    student = follower("student", token)
    assert shown_step(student) == "10"
    with session_of("teacher"):
        button(teacher, "Revoke the follow link").click().run()
        assert not [c for c in teacher.sidebar.code if "follow=" in c.value]
    with session_of("student"):
        student.run()
    no_exception(student)
    assert any("revoked" in e.value for e in student.error)
    assert shown_step(student) is None                                 # nothing of the run is left on show
    assert not figures(student)


def test_reset_with_keep_followers_moves_them_to_the_new_run():
    teacher, token = owner_with_link()
    student = follower("student", token)
    with session_of("teacher"):
        first = teacher.query_params["run"]
        assert teacher.checkbox(key="keep_followers").value
        button(teacher, "Reset").click().run()
        step(teacher, 1)
        assert teacher.query_params["run"] != first
    with session_of("student"):
        student.run()
        assert shown_step(student) == "1"
        assert any("new run" in i.value for i in student.sidebar.info)


def test_five_followers_on_one_step_share_each_figure():
    from pages.follow import figure_cache
    teacher, token = owner_with_link()
    before = figure_cache().builds
    students = [follower(f"student{i}", token) for i in range(5)]
    for student in students:
        no_exception(student)
        assert shown_step(student) == "10"
    # The teacher's page built them at step 10 already: five followers build nothing new.
    assert figure_cache().builds == before
    with session_of("teacher"):
        step(teacher, 1)                                           # step 11: one build per chart
    after_teacher = figure_cache().builds
    assert after_teacher - before == len([k for k in figures(teacher) if k != "gate_strip_plot"])
    for i, student in enumerate(students):
        with session_of(f"student{i}"):
            student.run()
        assert shown_step(student) == "11"
    assert figure_cache().builds == after_teacher


def test_the_follow_route_sends_the_newest_step_and_only_the_figures_the_browser_lacks(monkeypatch):
    from pages import follow, live
    teacher, token = owner_with_link()
    student = follower("student", token)
    data = live_charts(student)
    assert data["head"]["step"] == 10 and data["poll"] is None      # a paused run: nothing to poll for

    status, body, zipped = live.answer(token, None, 0, False, since=-1, have=frozenset())
    assert status == 200 and gzip.decompress(zipped) == body
    polled = json.loads(body)
    assert polled["head"]["step"] == 10 and polled["head"]["status"] == "paused"
    assert polled["grid"].keys() == data["grid"].keys()
    assert polled["grid"]["loss_chart"]["figure"] == figures(teacher)["loss_plot"]   # the owner's own chart
    versions = frozenset(entry["version"] for entry in polled["grid"].values())
    assert json.loads(live.answer(token, None, 0, False, since=-1, have=versions)[1])["grid"] == {}
    other_strip = live.answer(token, "forget", 2, False, since=-1, have=versions)
    assert list(json.loads(other_strip[1])["grid"]) == ["gate_strip"]   # another strip: only it is new

    # Training: the student's page polls, and a poll with nothing new since is answered 204.
    monkeypatch.setattr(follow, "FOLLOW_SECONDS", 0.3)
    with session_of("teacher"):
        teacher.session_state["draft"] = Config(**{**SMALL, "steps": 200_000}).to_dict()
        button(teacher, "Reset").click().run()
        button(teacher, "Train").click().run()
    try:
        with session_of("student"):
            student.run()
        data = live_charts(student)
        assert data["poll"]["url"] == f"follow-live/{token}" and data["poll"]["every_ms"] == 300
        answers = []
        for _ in range(20):
            status, body, _ = live.answer(token, None, 0, False, since=-1, have=versions)
            head = json.loads(body)["head"]
            answers.append(live.answer(token, None, 0, False, since=head["step"], have=versions)[0])
            if 204 in answers:
                break
            time.sleep(0.05)
        assert head["status"] == "running" and 204 in answers
    finally:
        with session_of("teacher"):
            button(teacher, "Pause").click().run()

    with session_of("teacher"):
        button(teacher, "Revoke the follow link").click().run()
    status, body, zipped = live.answer(token, None, 0, False, since=-1, have=frozenset())
    assert status == 403 and "revoked" in json.loads(body)["message"]
    assert live.answer("not-a-token", None, 0, False, since=-1, have=frozenset())[0] == 403
