"""The Sweep page under AppTest: its cost before it starts, the server's cap, a sweep run from
the page whose charts show the stored rows (every point a run, by id), the lesson's set-up, and
links to a stored sweep or to none."""
import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from explorer.lessons import HOLDS_OUT
from explorer.store import RunStore
from explorer.sweep import grid, results, sweep

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(autouse=True)
def fresh_session(tmp_path, monkeypatch):
    monkeypatch.setenv("GATE_EXPLORER_DB", str(tmp_path / "runs.sqlite"))
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def sweep_page(link: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for name, value in (link or {}).items():
        at.query_params[name] = value
    at.switch_page("pages/sweep.py")
    return at.run()


def charts(at: AppTest) -> dict[str, dict]:
    """The page's Plotly figures by their uirevision (sweep-loss, sweep-solved, sweep-grad-ratio)."""
    figures = [json.loads(element.proto.spec) for element in at.get("plotly_chart")]
    return {figure["layout"]["uirevision"]: figure for figure in figures}


def values(array) -> np.ndarray:
    """A figure's array, plain or as Plotly's base64 typed array."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
    return np.asarray(array, dtype=float)


def points(figure: dict) -> list[tuple[str, float]]:
    """(run id, y) of every run's point: the marker traces carry [run_id, seed] as customdata."""
    out = []
    for trace in figure["data"]:
        if trace.get("mode") == "markers":
            out += [(custom[0], float(y)) for custom, y in zip(trace["customdata"], values(trace["y"]))]
    return out


def cost(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Cost:**"))


def small_grid(at: AppTest) -> AppTest:
    at.multiselect(key="sweep_cells").set_value(["rnn", "gru"]).run()
    at.multiselect(key="sweep_lengths").set_value([5, 10]).run()
    at.number_input(key="sweep_seeds").set_value(1).run()
    return at.number_input(key="sweep_steps").set_value(50).run()


def test_the_page_says_the_cost_of_its_grid_before_it_starts():
    at = sweep_page()
    assert not at.exception
    assert cost(at).startswith("**Cost:** 36 runs × 800 steps = 28,800 training steps")   # 3 cells × 4 lengths × 3 seeds
    small_grid(at)
    assert not at.exception
    assert cost(at).startswith("**Cost:** 4 runs × 50 steps = 200 training steps")
    assert not at.button(key="sweep_run").disabled


def test_a_grid_over_the_servers_cap_is_refused(monkeypatch):
    monkeypatch.setenv("GATE_EXPLORER_MAX_SWEEP_RUNS", "3")
    at = small_grid(sweep_page())
    assert any("4 runs is more than this server allows in one sweep (3)" in w.value for w in at.warning)
    assert at.button(key="sweep_run").disabled


def test_a_sweep_run_from_the_page_draws_its_stored_rows(tmp_path):
    at = small_grid(sweep_page())
    at.button(key="sweep_run").click().run()
    sweep_id = at.query_params["sweep"][0] if isinstance(at.query_params["sweep"], list) else at.query_params["sweep"]
    deadline = time.monotonic() + 180
    while at.get("progress") or len(charts(at)) < 3:
        assert time.monotonic() < deadline, "the sweep did not finish"
        time.sleep(1)
        at.run()
    assert not at.exception
    frame = results(sweep_id, RunStore(tmp_path / "runs.sqlite"))
    assert len(frame) == 4 and set(frame["status"]) == {"finished"}
    figures = charts(at)
    assert set(figures) == {"sweep-loss", "sweep-solved", "sweep-grad-ratio"}
    for figure in figures.values():
        assert sorted(run_id for run_id, _ in points(figure)) == sorted(frame["run_id"])
    loss = dict(points(figures["sweep-loss"]))
    for row in frame.itertuples():
        assert loss[row.run_id] == pytest.approx(row.eval_loss, rel=1e-6)
    assert any(b.label == "Download the rows (CSV)" for b in at.get("download_button"))


def test_the_lessons_set_up_fills_the_grid_and_the_sidebar():
    at = sweep_page()
    at.button(key="sweep_lesson_holds-out-longest").click().run()
    assert not at.exception
    assert at.multiselect(key="sweep_cells").value == list(HOLDS_OUT.cells)
    assert at.multiselect(key="sweep_lengths").value == list(HOLDS_OUT.lengths)
    assert at.session_state["draft"]["lr"] == HOLDS_OUT.settings["lr"]
    assert cost(at).startswith("**Cost:** 36 runs × 1,500 steps")


def test_a_link_opens_a_stored_sweep_or_says_there_is_none(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    frame = sweep(grid({"cell": ["rnn", "lstm"]}, seq_len=6, steps=30, hidden=8, eval_every=10, device="cpu"),
                  store=store, workers=1)
    at = sweep_page({"sweep": frame.attrs["sweep_id"]})
    assert not at.exception
    assert sorted(run_id for run_id, _ in points(charts(at)["sweep-loss"])) == sorted(frame["run_id"])
    at = sweep_page({"sweep": "0123456789abcdef"})
    assert not at.exception
    assert any("No sweep with id 0123456789abcdef" in w.value for w in at.warning)
    assert np.isfinite(frame["eval_loss"]).all()


def test_a_new_sweep_replaces_the_one_on_show_and_the_box_picks_between_them(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    first = sweep(grid({"cell": ["rnn"]}, seq_len=6, steps=30, hidden=8, eval_every=10, device="cpu"),
                  store=store, workers=1).attrs["sweep_id"]
    at = sweep_page({"sweep": first})
    assert at.selectbox(key="sweep_pick_box").value == first
    at.multiselect(key="sweep_cells").set_value(["gru"]).run()
    at.multiselect(key="sweep_lengths").set_value([5]).run()
    at.number_input(key="sweep_seeds").set_value(1).run()
    at.number_input(key="sweep_steps").set_value(50).run()
    at.button(key="sweep_run").click().run()
    second = at.selectbox(key="sweep_pick_box").value
    assert second != first and at.query_params["sweep"] in (second, [second])
    deadline = time.monotonic() + 120
    while at.get("progress"):
        assert time.monotonic() < deadline, "the sweep did not finish"
        time.sleep(1)
        at.run()
    assert [run_id for run_id, _ in points(charts(at)["sweep-loss"])] == list(results(second, store)["run_id"])
    at.selectbox(key="sweep_pick_box").set_value(first).run()
    assert not at.exception
    assert [run_id for run_id, _ in points(charts(at)["sweep-loss"])] == list(results(first, store)["run_id"])
