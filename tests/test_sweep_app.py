"""The Sweep page under AppTest: its cost before it starts (read against its widgets), the
server's cap, a sweep run from the page whose three charts show the stored rows (every point a
run, by id; the held-out loss as stored), the lesson's set-up, and links to a stored sweep or
to none."""
import base64
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from explorer.lessons import HOLDS_OUT
from explorer.store import RunStore, new_id, new_key
from explorer.sweep import grid, results, sweep

APP = str(Path(__file__).resolve().parents[1] / "app.py")
FIGURES = {"sweep-loss", "sweep-solved", "sweep-grad-ratio"}   # the charts' uirevisions
COST = re.compile(r"\*\*Cost:\*\* (?P<runs>[\d,]+) runs × (?P<steps>[\d,]+) steps = (?P<total>[\d,]+) training "
                  r"steps, (?P<places>\d+) at a time on this server: about \*\*.+\*\* \(its workers' start "
                  r"and end, and a run of each cell at T = (?P<longest>\d+), timed here\)\.")


@pytest.fixture(autouse=True)
def fresh_session(tmp_path, monkeypatch):
    """A store of the test's own (the page reads it through a cached resource, as it does the
    server's sweeps: both cleared, so nothing carries over from another test)."""
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
    out = {figure["layout"]["uirevision"]: figure for figure in figures}
    assert len(out) == len(figures), f"two charts of one kind: {[f['layout']['uirevision'] for f in figures]}"
    return out


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
            ys = values(trace["y"])
            assert len(trace["customdata"]) == len(ys)
            out += [(custom[0], float(y)) for custom, y in zip(trace["customdata"], ys)]
    return out


def run_ids(figure: dict) -> list[str]:
    return sorted(run_id for run_id, _ in points(figure))


def cost(at: AppTest) -> re.Match:
    lines = [m.value for m in at.markdown if m.value.startswith("**Cost:**")]
    assert len(lines) == 1, f"the page has {len(lines)} cost lines"
    match = COST.fullmatch(lines[0])
    assert match, f"the cost line reads {lines[0]!r}"
    return match


def number(text: str) -> int:
    return int(text.replace(",", ""))


def assert_cost_matches_the_widgets(at: AppTest) -> re.Match:
    cells = at.multiselect(key="sweep_cells").value
    lengths = at.multiselect(key="sweep_lengths").value
    seeds, steps = int(at.number_input(key="sweep_seeds").value), int(at.number_input(key="sweep_steps").value)
    line = cost(at)
    runs = len(cells) * len(lengths) * seeds
    assert number(line["runs"]) == runs
    assert number(line["steps"]) == steps
    assert number(line["total"]) == runs * steps
    assert int(line["longest"]) == max(lengths)
    assert int(line["places"]) >= 1
    return line


def small_grid(at: AppTest) -> AppTest:
    """rnn and gru at T = 5 and 10, one seed, 50 steps: four runs."""
    at.multiselect(key="sweep_cells").set_value(["rnn", "gru"]).run()
    at.multiselect(key="sweep_lengths").set_value([5, 10]).run()
    at.number_input(key="sweep_seeds").set_value(1).run()
    return at.number_input(key="sweep_steps").set_value(50).run()


def wait_for_the_sweep(at: AppTest, timeout: float = 120) -> AppTest:
    """Rerun every second until the progress bar is gone and the charts are drawn."""
    deadline = time.monotonic() + timeout
    while at.get("progress") or len(at.get("plotly_chart")) < 3:
        assert not at.exception, at.exception
        assert time.monotonic() < deadline, f"the sweep did not finish in {timeout:g} s"
        time.sleep(1)
        at.run()
    return at


@pytest.mark.slow      # (the cost: a sweep's workers started and ended, timed)
def test_the_page_says_the_cost_of_its_grid_before_it_starts():
    at = sweep_page()
    assert not at.exception
    line = assert_cost_matches_the_widgets(at)                 # the defaults: 3 cells × 4 lengths × 3 seeds
    assert (number(line["runs"]), number(line["steps"])) == (36, 800)
    small_grid(at)
    assert not at.exception
    line = assert_cost_matches_the_widgets(at)
    assert (number(line["runs"]), number(line["total"]), line["longest"]) == (4, 200, "10")
    at.multiselect(key="sweep_lengths").set_value([5, 10, 25]).run()
    at.number_input(key="sweep_seeds").set_value(2).run()
    line = assert_cost_matches_the_widgets(at)
    assert (number(line["runs"]), line["longest"]) == (12, "25")
    assert not at.button(key="sweep_run").disabled
    assert not at.warning


@pytest.mark.slow      # (the cost: a sweep's workers started and ended, timed)
def test_a_grid_over_the_servers_cap_is_refused(monkeypatch):
    monkeypatch.setenv("GATE_EXPLORER_MAX_SWEEP_RUNS", "3")
    at = small_grid(sweep_page())
    assert not at.exception
    assert any("4 runs is more than this server allows in one sweep (3)" in w.value for w in at.warning), \
        [w.value for w in at.warning]
    assert at.button(key="sweep_run").disabled
    assert not [m for m in at.markdown if m.value.startswith("**Cost:**")]
    at.multiselect(key="sweep_lengths").set_value([5]).run()                  # 2 runs: allowed again
    assert not at.button(key="sweep_run").disabled
    assert number(cost(at)["runs"]) == 2


@pytest.mark.slow
def test_a_sweep_run_from_the_page_draws_its_stored_rows(tmp_path):
    at = small_grid(sweep_page())
    at.button(key="sweep_run").click().run()
    assert not at.exception
    sweep_id = at.query_params["sweep"]
    wait_for_the_sweep(at)
    assert not at.exception
    assert at.query_params["sweep"] == sweep_id
    frame = results(sweep_id, RunStore(tmp_path / "runs.sqlite"))
    assert len(frame) == 4 and set(frame["status"]) == {"finished"}
    assert sorted(zip(frame["cell"], frame["seq_len"])) == [("gru", 5), ("gru", 10), ("rnn", 5), ("rnn", 10)]
    assert len(at.get("plotly_chart")) == 3
    figures = charts(at)
    assert set(figures) == FIGURES
    for name, figure in figures.items():
        assert run_ids(figure) == sorted(frame["run_id"]), name
    loss = dict(points(figures["sweep-loss"]))
    assert len(loss) == len(frame)
    for row in frame.itertuples():
        assert loss[row.run_id] == pytest.approx(row.eval_loss, rel=1e-6)
    assert any(b.label == "Download the rows (CSV)" for b in at.get("download_button"))
    assert not at.button(key="sweep_run").disabled                # the sweep is over: another may start
    # The sweep is its starter's: /sweep without a link opens on it for them, on nothing for a stranger.
    at.session_state["kept"] = {}
    del at.query_params["sweep"]
    at.run()
    assert picker(at).value == sweep_id and len(charts(at)) == 3
    st.cache_resource.clear()           # (AppTest's sessions share one id: a new browser's session)
    stranger = sweep_page()
    assert not stranger.exception
    assert picker(stranger) is None and not stranger.get("plotly_chart")


@pytest.mark.slow      # (the cost: a sweep's workers started and ended, timed)
def test_the_lessons_set_up_fills_the_grid_and_the_sidebar():
    at = sweep_page()
    at.button(key="sweep_lesson_holds-out-longest").click().run()
    assert not at.exception
    assert at.multiselect(key="sweep_cells").value == list(HOLDS_OUT.cells)
    assert at.multiselect(key="sweep_lengths").value == list(HOLDS_OUT.lengths)
    assert at.session_state["draft"]["lr"] == HOLDS_OUT.settings["lr"]
    assert cost(at)["runs"] == "36" and cost(at)["steps"] == "1,500"
    assert_cost_matches_the_widgets(at)


def picker(at: AppTest):
    """The page's sweep box, or None when the page offers no sweep."""
    return next((box for box in at.selectbox if box.key == "sweep_pick_box"), None)


def test_a_stranger_is_shown_none_of_another_owners_sweeps_unless_linked_to_one(tmp_path, monkeypatch):
    # (a cap of one run refuses the default grid, so the page times nothing: the test is about the sweeps)
    monkeypatch.setenv("GATE_EXPLORER_MAX_SWEEP_RUNS", "1")
    store = RunStore(tmp_path / "runs.sqlite")
    configs = [c.to_dict() for c in grid({"cell": ["rnn"]}, seq_len=6, steps=30, device="cpu")]
    theirs, old = new_id(), new_id()
    store.create_sweep(old, configs)                         # a CLI sweep, or one from before owners
    store.create_sweep(theirs, configs, owner_key=new_key())      # someone else's, the newest
    at = sweep_page()
    assert not at.exception
    assert picker(at) is None and not at.get("plotly_chart")
    assert any("No sweep of yours" in c.value for c in at.caption), [c.value for c in at.caption]
    assert "sweep" not in at.query_params
    # Their link opens it, for this session, beside nothing else.
    at = sweep_page({"sweep": theirs})
    assert not at.exception
    assert picker(at).value == theirs and len(picker(at).options) == 1
    assert any("No run of this sweep has finished yet" in i.value for i in at.info)


def test_a_link_to_an_unknown_sweep_says_there_is_none(monkeypatch):
    monkeypatch.setenv("GATE_EXPLORER_MAX_SWEEP_RUNS", "1")         # (refuses the default grid: nothing timed)
    at = sweep_page({"sweep": "0123456789abcdef"})
    assert not at.exception
    assert any("No sweep with id 0123456789abcdef" in w.value for w in at.warning), [w.value for w in at.warning]
    assert not at.get("plotly_chart")


@pytest.mark.slow
def test_a_link_opens_a_stored_sweep_with_its_charts(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    frame = sweep(grid({"cell": ["rnn", "lstm"]}, seq_len=6, steps=30, hidden=8, eval_every=10, device="cpu"),
                  store=store, workers=1)
    sweep_id = frame.attrs["sweep_id"]
    at = sweep_page({"sweep": sweep_id})
    assert not at.exception
    assert not at.warning
    assert at.selectbox(key="sweep_pick_box").value == sweep_id
    assert at.query_params["sweep"] == sweep_id
    figures = charts(at)
    assert set(figures) == FIGURES
    # no Streamlit theme: it would draw its own small grey tick labels over the builders'
    assert [element.proto.theme for element in at.get("plotly_chart")] == [""] * 3
    for name, figure in figures.items():
        assert run_ids(figure) == sorted(frame["run_id"]), name
    loss = dict(points(figures["sweep-loss"]))
    for row in frame.itertuples():
        assert loss[row.run_id] == pytest.approx(row.eval_loss, rel=1e-6)
    # An unknown id, with another's stored sweep on the server: said, and none shown instead.
    at = sweep_page({"sweep": "0123456789abcdef"})
    assert not at.exception
    assert any("No sweep with id 0123456789abcdef" in w.value for w in at.warning)
    assert picker(at) is None and not at.get("plotly_chart")


@pytest.mark.slow
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
    assert second != first and at.query_params["sweep"] == second
    wait_for_the_sweep(at)
    assert [run_id for run_id, _ in points(charts(at)["sweep-loss"])] == list(results(second, store)["run_id"])
    at.selectbox(key="sweep_pick_box").set_value(first).run()
    assert not at.exception
    assert at.query_params["sweep"] == first
    assert [run_id for run_id, _ in points(charts(at)["sweep-loss"])] == list(results(first, store)["run_id"])
