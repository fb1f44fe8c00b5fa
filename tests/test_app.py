"""The app's pages under streamlit.testing.v1.AppTest: each runs without an exception, has
its controls, draws its charts from the run's real numbers, and answers bad input with a
message. Charts are read as the Plotly figures the page sends (the live-chart component's
JSON), so a change of configuration is checked in what the browser would draw."""
import base64
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from explorer import CELLS, Config
from explorer.store import RunStore
from explorer.tasks import TASKS

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SMALL = dict(seq_len=12, hidden=8, batch_size=8, probe_every=5, eval_every=5, probe_count=3)
SMALL_STEPS = Config().steps


@pytest.fixture(autouse=True)
def fresh_session(tmp_path, monkeypatch):
    """AppTest gives every instance in a process the same session id, so the session's run
    (a session-scoped resource) would carry over from test to test: release it after each.
    Each test saves its runs in a store of its own."""
    monkeypatch.setenv("GATE_EXPLORER_DB", str(tmp_path / "runs.sqlite"))
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def app(**config) -> AppTest:
    """The app with the sidebar's draft preset (as if typed), run once."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["draft"] = Config(**{**SMALL, **config}).to_dict()
    return at.run()


def figures(at: AppTest) -> dict[str, dict]:
    """key -> the Plotly figure (as JSON) of every live chart on the page."""
    out = {}
    for element in at.get("bidi_component"):
        proto = element.proto
        key = proto.id.split("-", 2)[2]
        if proto.component_name == "gate_explorer.live_chart" and key != "plotly_preload":
            data = json.loads(json.loads(proto.json))
            if "grid" in data:       # the Train page's charts, one element (pages/charts.chart_grid)
                for name, entry in data["grid"].items():
                    out[name.replace("_chart", "") + "_plot"] = entry["figure"]
            else:
                out[key] = data
    return out


def values(array) -> np.ndarray:
    """A figure's array, plain or as Plotly's base64 typed array."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
    return np.asarray(array, dtype=float)


def live_charts(at: AppTest) -> dict | None:
    """The Train page's chart element's data (pages/charts.grid_data), None when not drawn."""
    return next((json.loads(json.loads(e.proto.json)) for e in at.get("bidi_component")
                 if e.proto.id.endswith("live_charts")), None)


def live_head(at: AppTest) -> dict | None:
    """The head the Train page's chart element draws (pages/live.py): the step line, and the
    owner's cells (Step, Steps per second, Device, Status) and progress."""
    return (live_charts(at) or {}).get("head")


def metric(at: AppTest, label: str) -> str:
    """An st.metric's value, or the Train page's cell of that label in its chart element's head."""
    shown = {m.label: m.value for m in at.metric}
    if label not in shown:
        shown = dict((live_head(at) or {}).get("cells", []))
    return shown[label]


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def step(at: AppTest, n: int, timeout: float = 60) -> AppTest:
    """Press Step with n steps per press; rerun until the run has done them and rests again,
    and its save has landed (the status reads paused as the last step is booked, a moment
    before the store has it: the Runs page listed the run only some of the time)."""
    at.selectbox(key="step_size").set_value(n).run()
    before = int(metric(at, "Step"))
    button(at, "Step").click().run()
    deadline = time.monotonic() + timeout
    while (int(metric(at, "Step")) < before + n or metric(at, "Status") == "running") and \
            metric(at, "Status") in ("running", "paused", "idle"):
        assert time.monotonic() < deadline, "the Step button's steps never landed"
        time.sleep(0.1)
        at.run()
    from pages.session import live_runs
    run = live_runs().get(at.query_params.get("run", ""))   # (AppTest runs the app in this process)
    assert run is None or run.wait_until_idle(timeout), "the stepped run never saved and came to rest"
    return at


def row_titles(figure: dict) -> list[str]:
    return [a["text"] for a in figure["layout"].get("annotations", [])]


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_train_page_has_its_controls_and_charts_before_training():
    at = app()
    no_exception(at)
    assert {b.label for b in at.button} >= {"Train", "Pause", "Resume", "Step", "Reset"}
    assert metric(at, "Step") == "0" and metric(at, "Status") == "idle" and metric(at, "Device") == "cpu"
    charts = figures(at)
    assert {"loss_plot", "metric_plot", "grad_norm_plot", "param_grad_plot"} <= set(charts)
    loss = charts["loss_plot"]
    assert loss["layout"]["yaxis"]["title"]["text"] == "MSE"
    assert any("baseline: predict 1" in a["text"] for a in loss["layout"]["annotations"])
    # every sidebar group and the fields a student reaches for first
    labels = {w.label for w in [*at.sidebar.number_input, *at.sidebar.selectbox]}
    assert {"task", "sequence length T", "cell", "hidden units", "learning rate", "clip gradient norm at",
            "device", "trace gates every (steps)"} <= labels


@pytest.mark.slow
def test_step_trains_the_real_run_and_the_charts_carry_its_numbers():
    at = step(app(), 10)
    no_exception(at)
    assert metric(at, "Step") == "10" and metric(at, "Status") == "paused"
    charts = figures(at)
    train = next(t for t in charts["loss_plot"]["data"] if t["name"] == "training loss")
    np.testing.assert_array_equal(values(train["x"]), np.arange(1, 11))
    assert (values(train["y"]) > 0).all() and np.isfinite(values(train["y"])).all()
    assert [t["name"] for t in charts["param_grad_plot"]["data"]] == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "head.weight", "head.bias"]
    strip = charts["gate_strip_plot"]
    assert row_titles(strip)[:2] == ["input x_t", "input gate i_t"]
    assert at.selectbox(key="strip_gate").options == ["input", "forget", "candidate", "output"]


def test_the_owners_page_polls_its_own_route_for_the_charts_while_the_run_trains():
    """While training, the Train page's browser asks /train-live/<watch token> for the newest
    step and charts (pages/live.py) instead of rerunning the page: the route answers with the
    session's own run, the step line's cells included, and stops the poll when it pauses."""
    import gzip
    from pages import live

    at = step(app(), 10)
    head = live_head(at)
    assert head["step"] == 10 and head["progress"] == pytest.approx(10 / SMALL_STEPS)
    assert live_charts(at)["poll"] is None                                   # paused: nothing to poll for
    at.session_state["draft"] = Config(**{**SMALL, "steps": 200_000}).to_dict()
    button(at, "Reset").click().run()
    button(at, "Train").click().run()
    try:
        data = live_charts(at)
        assert data["poll"]["url"].startswith("train-live/") and data["poll"]["every_ms"] == 400
        token = data["poll"]["url"].split("/", 1)[1]
        deadline = time.monotonic() + 60
        while True:          # the poll brings steps the page has not rerun for
            status, body, zipped = live.owner_answer(token, None, 0, False, since=-1, have=frozenset())
            polled = json.loads(body)
            if polled["head"]["step"] > data["head"]["step"] + 5:
                break
            assert time.monotonic() < deadline, "the polls never saw the run move on"
            time.sleep(0.1)
        assert status == 200 and gzip.decompress(zipped) == body
        cells = dict(polled["head"]["cells"])
        assert cells["Status"] == "running" and cells["Device"] == "cpu" and int(cells["Step"]) == polled["head"]["step"]
        train = next(t for t in polled["grid"]["loss_chart"]["figure"]["data"] if t["name"] == "training loss")
        x = values(train["x"])
        assert x[-1] <= polled["head"]["step"] and x[-1] > data["head"]["step"]   # the run's own newest steps
    finally:
        button(at, "Pause").click().run()
    status, body, _ = live.owner_answer(token, None, 0, False, since=-1, have=frozenset())
    paused = json.loads(body)
    assert status == 200 and paused["head"]["status"] == "paused"   # the browser stops polling
    # Asking again with the figures it shows: none of them comes back, only the head.
    versions = frozenset(entry["version"] for entry in paused["grid"].values())
    again = json.loads(live.owner_answer(token, None, 0, False, since=-1, have=versions)[1])
    assert again["grid"] == {} and again["head"] == paused["head"]
    assert live.owner_answer("not-a-token", None, 0, False, since=-1, have=frozenset())[0] == 403


def test_changing_the_cell_in_the_sidebar_rebuilds_the_run_and_its_figures():
    at = app()
    at.sidebar.selectbox(key="cfg_cell").set_value("gru").run()
    no_exception(at)
    at = step(at, 10)
    assert at.selectbox(key="strip_gate").options == ["reset", "update", "candidate"]   # PyTorch's r, z, n
    assert row_titles(figures(at)["gate_strip_plot"]) == ["input x_t", "reset gate r_t"]
    assert "GRU(8)" in at.markdown[0].value
    # param grads of a GRU: still W_ih, W_hh, b_ih, b_hh, but the header and gates follow the cell
    at.switch_page("pages/gates.py").run()
    no_exception(at)
    titles = row_titles(figures(at)["gate_heatmaps_plot"])
    assert titles[:4] == ["input x_t", "reset gate r_t", "update gate z_t", "candidate n_t (h̃_t)"]
    assert not any("forget" in t for t in titles)


def test_gates_page_draws_every_gate_under_the_input_and_builds_sequences_by_hand():
    at = step(app(), 10)
    at.switch_page("pages/gates.py").run()
    no_exception(at)
    charts = figures(at)
    assert {"gate_heatmaps_plot", "unit_lines_plot", "saturation_plot"} <= set(charts)
    titles = row_titles(charts["gate_heatmaps_plot"])
    assert titles == ["input x_t", "input gate i_t", "forget gate f_t", "candidate g_t (c̃_t)",
                      "output gate o_t", "cell state c_t", "hidden state h_t"]
    heat = charts["gate_heatmaps_plot"]["data"][1]
    assert heat["type"] == "heatmap"
    at.radio(key="pick_source").set_value("build your own").run()
    no_exception(at)
    at.number_input(key="hand_first").set_value(2).run()
    at.number_input(key="hand_second").set_value(9).run()
    no_exception(at)
    assert "markers at t = 2, 9" in " ".join(c.value for c in at.caption)
    marker = figures(at)["gate_heatmaps_plot"]["data"][0]       # the input picture, (features, time)
    assert marker["type"] == "heatmap"


def test_building_a_digit_by_hand_draws_the_digits_own_controls():
    at = app(task="digits")
    at.switch_page("pages/gates.py").run()
    at.radio(key="pick_source").set_value("build your own").run()
    no_exception(at)
    assert at.number_input(key="hand_index").value == 0
    at.selectbox(key="hand_digit").set_value(3).run()
    no_exception(at)
    assert "Built by hand: digit 3" in " ".join(c.value for c in at.caption)


def sidebar_keys(at: AppTest) -> set[str]:
    return {widget.key for kind in ("selectbox", "number_input", "text_input", "text_area")
            for widget in getattr(at.sidebar, kind)}


def test_the_sidebar_shows_only_the_settings_the_task_reads():
    at = app(task="series")
    no_exception(at)
    keys = sidebar_keys(at)
    assert {"cfg_seq_len", "cfg_series", "cfg_horizon"} <= keys
    assert not keys & {"cfg_text", "cfg_digits_source", "cfg_csv_columns", "cfg_csv_target"}
    assert TASKS["series"].help in [c.value for c in at.sidebar.caption]
    at.sidebar.selectbox(key="cfg_task").set_value("text").run()
    no_exception(at)
    keys = sidebar_keys(at)
    assert {"cfg_seq_len", "cfg_text"} <= keys and not keys & {"cfg_series", "cfg_horizon"}


def test_gradients_page_draws_norms_history_connectivity_and_spectra():
    at = step(app(layers=2), 10)
    at.switch_page("pages/gradients.py").run()
    no_exception(at)
    charts = figures(at)
    grad = charts["grad_time_plot"]
    assert [t["name"] for t in grad["data"]] == ["‖∂L/∂h_t‖ layer 1", "‖∂L/∂c_t‖ layer 1",
                                                  "‖∂L/∂h_t‖ layer 2", "‖∂L/∂c_t‖ layer 2"]
    assert grad["layout"]["yaxis"]["type"] == "log"
    history = charts["grad_history_plot"]["data"][0]
    assert list(values(history["y"])) == [0, 5, 10]                # one row per probe
    spectra = charts["spectra_plot"]
    assert len(spectra["data"]) == 8                               # 2 layers x 4 gate blocks
    assert {a["text"] for a in spectra["layout"]["annotations"]} == {"1/γ = 4 (sigmoid)", "1/γ = 1 (tanh/ReLU)"}
    at.radio(key="grad_quantity").set_value("grad_cell").run()
    assert "c_t" in figures(at)["grad_history_plot"]["layout"]["coloraxis"]["colorbar"]["title"]["text"]


def test_a_configuration_too_large_to_trace_is_a_message_and_the_old_run_is_kept():
    at = app()
    at.sidebar.number_input(key="cfg_hidden").set_value(512).run()
    at.sidebar.number_input(key="cfg_layers").set_value(4).run()
    at.sidebar.number_input(key="cfg_seq_len").set_value(1000).run()
    no_exception(at)
    assert any("too large" in e.value for e in at.sidebar.error)
    header = at.markdown[0].value                                  # the run as it stood before T = 1000
    assert "LSTM(512) × 4" in header and "T = 12" in header and metric(at, "Step") == "0"
    button(at, "Reset").click().run()
    no_exception(at)
    assert any("Fix the settings" in e.value for e in at.error)
    assert "T = 12" in at.markdown[0].value


def test_data_that_cannot_load_is_a_message_not_a_traceback(tmp_path):
    bad = tmp_path / "series.csv"
    bad.write_text("when,what\nmonday,rain\ntuesday,sun\n")
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["draft"] = {**Config(**SMALL).to_dict(), "task": "csv", "csv_path": str(bad)}
    at.run()
    no_exception(at)
    assert any("Could not set up this run" in e.value for e in at.error), [e.value for e in at.error]


def test_a_diverged_run_says_so_on_the_page():
    at = step(app(optimizer="sgd", lr=10.0, clip=0.0, init="orthogonal"), 100)
    no_exception(at)
    if metric(at, "Status") != "diverged":
        pytest.fail(f"lr=10 with SGD did not diverge in 100 steps (status {metric(at, 'Status')})")
    assert any("diverged" in e.value.lower() or "nan" in e.value.lower() or "inf" in e.value.lower()
               for e in at.error), [e.value for e in at.error]


def test_a_device_that_is_not_here_is_offered_and_falls_back_to_the_cpu_with_a_warning():
    at = app()
    device = at.sidebar.selectbox(key="cfg_device")
    assert device.options[:2] == ["auto", "cpu"] and "cuda" in " ".join(device.options)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the fallback cannot be seen here")
    assert any("not found here" in option for option in device.options)
    device.set_value("cuda").run()
    no_exception(at)
    assert metric(at, "Device") == "cpu"
    assert any("CUDA was requested" in w.value for w in at.warning), [w.value for w in at.warning]
    at = step(at, 10)                                              # and it trains there
    assert metric(at, "Step") == "10"


def test_reset_starts_a_new_run_with_the_sidebars_settings():
    at = step(app(), 10)
    at.sidebar.number_input(key="cfg_hidden").set_value(12).run()
    assert "LSTM(8)" in at.markdown[0].value                       # a run that trained is kept...
    assert any("Press **Reset**" in i.value for i in at.sidebar.info)
    button(at, "Reset").click().run()                               # ...until Reset
    no_exception(at)
    assert "LSTM(12)" in at.markdown[0].value and metric(at, "Step") == "0"
    assert metric(at, "Status") == "idle"


def test_the_sequence_choice_survives_switching_between_gates_and_gradients():
    at = step(app(), 10)
    at.switch_page("pages/gates.py").run()
    assert at.toggle(key="pick_follow").value is True
    at.selectbox(key="pick_sequence").set_value(2).run()
    at.switch_page("pages/gradients.py").run()
    no_exception(at)
    assert at.toggle(key="pick_follow").value is True              # was lost: a new page's toggle read off
    assert at.selectbox(key="pick_sequence").value == 2
    at.toggle(key="pick_follow").set_value(False).run()
    assert at.select_slider(key="pick_replay").value == 10          # replay offered, at the newest probe
    at.switch_page("pages/gates.py").run()
    assert at.toggle(key="pick_follow").value is False


def test_step_through_lays_out_the_library_equations_and_moves_along_time():
    # That the printed numbers satisfy the printed equations is a unit test
    # (tests/test_stepthrough.py); here, that the page shows them for the run's unit and step.
    at = step(app(), 10)
    at.switch_page("pages/step.py").run()
    no_exception(at)
    at.slider(key="step_t").set_value(5).run()
    at.number_input(key="step_unit").set_value(3).run()
    lines = [e.proto.body for e in at.get("latex")]
    assert [line.strip("$\n")[:3] for line in lines] == ["h_{", "i_t", "f_t", "g_t", "c_t", "o_t", "h_t"]
    h = float(re.findall(r"mathbf\{(-?[\d.]+)", lines[-1])[-1])
    traced = next(x.value for x in at.caption if x.value.startswith("The trace recorded"))
    recorded, recomputed = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", traced)]
    assert recorded == pytest.approx(recomputed, rel=1e-5) and recorded == pytest.approx(h, abs=1e-3)
    at.button(key="step_forward").click().run()
    assert at.slider(key="step_t").value == 6
    at.button(key="step_back").click().run()
    at.button(key="step_back").click().run()
    assert at.slider(key="step_t").value == 4


def test_step_through_states_the_gru_convention():
    at = step(app(cell="gru"), 10)
    at.switch_page("pages/step.py").run()
    no_exception(at)
    assert [e.proto.body.strip("$\n")[:3] for e in at.get("latex")] == ["h_{", "r_t", "z_t", "n_t", "h_t"]
    assert any("z_t near 1 keeps the old state" in i.value and "LSTM/GRU tutorial" in i.value for i in at.info)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.slow
def test_step_through_shows_every_cells_equations_and_note(cell):
    at = step(app(cell=cell, hidden=4), 1)
    at.switch_page("pages/step.py").run()
    no_exception(at)
    lines = [e.proto.body.strip("$\n") for e in at.get("latex")]
    assert lines[0].startswith("h_{t-1} =") and lines[-1].startswith("h_t =") and len(lines) >= 2
    assert all(r"\mathbf{" in line for line in lines[1:])        # every equation ends in its value
    assert [i.value for i in at.info] == [CELLS[cell].note]


def linked(params: dict) -> AppTest:
    """The app opened from a link carrying these query parameters."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(params)
    return at.run()


def test_a_link_sets_the_configuration_and_the_view():
    at = linked({"cell": "gru", "hidden": "24", "seq_len": "30", "seed": "5", "seq": "2", "layer": "0"})
    no_exception(at)
    assert "GRU(24)" in at.markdown[0].value and "T = 30" in at.markdown[0].value
    assert at.sidebar.selectbox(key="cfg_cell").value == "gru"
    assert at.sidebar.number_input(key="cfg_seed").value == 5
    at.switch_page("pages/gates.py").run()
    assert at.selectbox(key="pick_sequence").value == 2
    assert {"cell": "gru", "hidden": "24", "seq_len": "30", "seed": "5", "seq": "2"}.items() <= at.query_params.items()


def test_a_links_rejected_parameters_are_named_and_the_rest_is_used():
    at = linked({"hidden": "abc", "lr": "99", "colour": "red", "cell": "gru", "seq": "x"})
    no_exception(at)
    warning = " ".join(w.value for w in at.warning)
    assert "hidden='abc'" in warning and "lr='99'" in warning and "colour" in warning and "seq='x'" in warning
    assert "GRU(64)" in at.markdown[0].value                      # cell used, hidden left at its default


def test_the_url_follows_the_sidebar_and_reproduces_the_same_training_curve():
    at = app(seed=3)
    at.sidebar.selectbox(key="cfg_cell").set_value("gru").run()
    params = dict(at.query_params)
    assert params["cell"] == "gru" and params["seed"] == "3"
    first = values(next(t for t in figures(step(at, 10))["loss_plot"]["data"] if t["name"] == "training loss")["y"])
    st.cache_resource.clear()                                      # another browser: its own session
    other = step(linked(params), 10)
    assert "GRU" in other.markdown[0].value
    again = values(next(t for t in figures(other)["loss_plot"]["data"] if t["name"] == "training loss")["y"])
    np.testing.assert_array_equal(first, again)


def test_presentation_mode_hides_the_settings_and_is_kept_in_the_link():
    at = linked({"present": "1", "cell": "gru"})
    no_exception(at)
    assert at.sidebar.toggle(key="present").value is True
    assert not at.sidebar.number_input and not at.sidebar.selectbox   # no settings to fiddle with
    assert any("GRU" in m.value for m in at.markdown) and at.query_params["present"] == "1"
    at.sidebar.toggle(key="present").set_value(False).run()
    assert at.sidebar.selectbox(key="cfg_cell").value == "gru" and "present" not in at.query_params


def test_exit_presentation_in_the_main_column_brings_the_settings_back():
    at = linked({"present": "1", "cell": "gru"})
    # the sidebar is hidden while presenting (app.py's CSS): the way out is in the main column
    assert not at.sidebar.button and at.main.button(key="present_exit").label == "Exit presentation"
    at.main.button(key="present_exit").click().run()
    no_exception(at)
    assert at.sidebar.toggle(key="present").value is False and "present" not in at.query_params
    assert at.sidebar.selectbox(key="cfg_cell").value == "gru" and not [b for b in at.main.button if b.key == "present_exit"]


def test_a_lesson_loads_with_one_click_and_trains_its_variants_side_by_side(monkeypatch):
    from explorer.lessons import LESSONS, lesson
    monkeypatch.setenv("GATE_EXPLORER_MAX_RUNS", "2")    # the server trains two runs at a time
    at = app()
    at.switch_page("pages/lessons.py").run()
    no_exception(at)
    assert {b.key for b in at.button} >= {f"load_{one.key}" for one in LESSONS}
    at.button(key="load_vanishing").click().run()
    no_exception(at)
    assert at.query_params["lesson"] == "vanishing"                 # the link carries the lesson
    chosen = lesson("vanishing")
    assert [m.label for m in at.metric] == [v.label for v in chosen.variants]
    assert any(f"**How often** {chosen.how_often}" in m.value for m in at.markdown)   # its record over seeds
    at.button(key="lesson_train").click().run()
    deadline = time.monotonic() + 30          # (the first steps wait for a worker to take the run)
    while True:
        time.sleep(0.5)
        at.run()
        trained = [int(m.value.split(" / ")[0]) > 0 for m in at.metric]
        if trained[:2] == [True, True] or time.monotonic() > deadline:
            break
    names = [t["name"] for t in figures(at)["lesson_loss_plot"]["data"]]
    assert names == [f"{v.label}: {kind}" for v in chosen.variants for kind in ("training", "held-out")]
    # A lesson's variants count as runs: two train, the third waits its turn and says so
    assert trained == [True, True, False]
    assert any(c.value.startswith("Waiting: next in line. This server trains 2 runs at a time, and this lesson's "
                                  "tanh RNN and LSTM are training in them now") for c in at.caption)
    at.button(key="lesson_pause").click().run()
    at.button(key="explore_2").click().run()                        # the GRU, to the Gates page
    no_exception(at)
    assert at.session_state["draft"]["cell"] == "gru"
    assert "reset gate r_t" in row_titles(figures(at)["gate_heatmaps_plot"])   # the Gates page, on the GRU


def test_a_link_with_a_former_lesson_key_opens_the_lesson_under_its_new_key():
    at = linked({"lesson": "seed-digits"})
    at.switch_page("pages/lessons.py").run()
    no_exception(at)
    assert not at.warning
    assert any("three LSTM(50) layers" in m.value for m in at.markdown)
    assert at.query_params["lesson"] == "tutorial-digits"


def test_a_link_to_a_lesson_that_does_not_exist_is_a_message():
    at = linked({"lesson": "no-such-lesson"})
    at.switch_page("pages/lessons.py").run()
    no_exception(at)
    assert any("no-such-lesson" in w.value for w in at.warning)


def test_the_session_stops_only_the_runs_it_no_longer_holds():
    from explorer.lessons import lesson
    from pages.session import Session
    where = Session()

    def started(run):                       # a worker thread, so that stopping shows in the status
        run.step(1)
        run.wait_until_idle()
        return run

    try:
        clipping = lesson("clipping")
        variants = {label: started(run) for label, run in where.lesson(clipping).items()}
        where.adopt(variants["clip 1"])                          # explored: now also the session's run
        where.lesson(clipping, fresh=True)                       # start the lesson over
        assert variants["no clipping"].snapshot().status == "stopped"
        assert variants["clip 1"].snapshot().status == "paused"  # still the session's run
        assert where.replace(Config(**SMALL)) is None            # Reset on the Train page
        variants["clip 1"].join(5)
        assert variants["clip 1"].snapshot().status == "stopped"
        assert all(run.snapshot().status != "stopped" for run in where.lesson_runs.values())
    finally:
        where.close()


# --- runs that outlive the tab ------------------------------------------------------------------

def end_session() -> None:
    """The browser session ends (a closed tab or a reload): Streamlit releases its resources."""
    st.cache_resource.clear()


def test_a_trained_run_reopens_from_the_address_bar_paused_at_its_step_with_control():
    at = step(app(), 10)
    params = dict(at.query_params)
    assert len(params["run"]) >= 22 and len(params["key"]) >= 22 and params["run"] != params["key"]
    end_session()
    again = linked({"run": params["run"], "key": params["key"]})
    no_exception(again)
    assert metric(again, "Step") == "10" and metric(again, "Status") == "paused"
    assert not any("Read-only" in i.value for i in again.info)
    loss = next(t for t in figures(again)["loss_plot"]["data"] if t["name"] == "training loss")
    np.testing.assert_array_equal(values(loss["x"]), np.arange(1, 11))          # its charts, from the store
    step(again, 1)                                                              # and it trains on
    assert metric(again, "Step") == "11"


def test_a_run_link_without_the_key_is_read_only_and_says_so():
    at = step(app(), 10)
    run_id = at.query_params["run"]
    end_session()
    viewer = linked({"run": run_id})
    no_exception(viewer)
    assert metric(viewer, "Step") == "10"
    assert any("Read-only" in i.value for i in viewer.info)
    assert button(viewer, "Train").disabled and button(viewer, "Step").disabled
    assert "key" not in viewer.query_params and viewer.query_params["run"] == run_id


def test_a_link_to_an_unknown_run_is_a_message_and_a_fresh_run():
    at = linked({"run": "A" * 22, "key": "B" * 22})
    no_exception(at)
    assert any("could not be opened" in w.value and "no saved run" in w.value for w in at.warning)
    assert metric(at, "Step") == "0"
    bad = linked({"run": "../../etc/passwd"})
    assert any("run: not a run id or key" in w.value for w in bad.warning)


def test_the_share_menu_offers_a_read_only_link_and_a_settings_link():
    at = step(app(cell="gru"), 10)
    codes = [c.value for c in at.sidebar.code]
    run_id = at.query_params["run"]
    assert any(f"run={run_id}" in c and "key=" not in c for c in codes)
    assert any("cell=gru" in c and "run=" not in c for c in codes)


def test_the_runs_page_lists_renames_opens_and_deletes_a_saved_run():
    at = step(app(cell="gru"), 10)
    run_id = at.query_params["run"]
    at.switch_page("pages/runs.py").run()
    no_exception(at)
    table = at.dataframe[0].value
    assert list(table["cell"]) == ["gru"] and list(table["steps"]) == [10]
    saved = RunStore().info(run_id)                # the run's final eval, as the store keeps it
    assert (table["held-out loss"][0], table["metric"][0], table["held-out sequences"][0]) == (
        saved.eval_loss, saved.eval_metric, 1000)
    at.selectbox(key="runs_cell").set_value("lstm").run()
    assert not at.dataframe                                  # filtered out
    at.selectbox(key="runs_cell").set_value("gru").run()
    at.selectbox(key="runs_pick").set_value(at.selectbox(key="runs_pick").options[0]).run()
    assert run_id in at.caption[0].value or any(run_id in c.value for c in at.caption)
    name_box = next(t for t in at.text_input if t.key.startswith("runs_name_"))
    name_box.set_value("my first GRU").run()
    no_exception(at)
    assert list(at.dataframe[0].value["name"]) == ["my first GRU"]
    at.button(key="runs_delete").click().run()               # the confirm button, inside the popover
    assert any("Reset it on the Train page" in e.value for e in at.error)     # not the run on show
    assert len(at.dataframe[0].value) == 1
    end_session()                                              # a new browser: not the owner any more
    other = app()
    other.switch_page("pages/runs.py").run()
    assert any("No saved runs here yet" in i.value for i in other.info)
    other.toggle(key="runs_everyone").set_value(True).run()
    assert list(other.dataframe[0].value["name"]) == ["my first GRU"]
    assert any("read-only: made in another browser" in c.value for c in other.caption)
    assert not [t for t in other.text_input if t.key.startswith("runs_name_")]      # no rename
    button(other, "View it").click().run()
    no_exception(other)
    assert metric(other, "Step") == "10" and any("Read-only" in i.value for i in other.info)


def test_the_owner_continues_a_saved_run_from_the_runs_page_and_deletes_another():
    at = step(app(), 10)
    first = at.query_params["run"]
    button(at, "Reset").click().run()
    step(at, 1)
    at.switch_page("pages/runs.py").run()
    options = at.selectbox(key="runs_pick").options
    assert len(options) == 2
    at.selectbox(key="runs_pick").set_value(next(o for o in options if first in o)).run()
    button(at, "Continue it").click().run()
    no_exception(at)
    assert metric(at, "Step") == "10" and at.query_params["run"] == first
    at.switch_page("pages/train.py").run()                  # AppTest's own page, after switch_page
    step(at, 1)
    assert metric(at, "Step") == "11"
    at.switch_page("pages/runs.py").run()
    other = next(o for o in at.selectbox(key="runs_pick").options if first not in o)
    at.selectbox(key="runs_pick").set_value(other).run()
    at.button(key="runs_delete").click().run()
    no_exception(at)
    assert len(at.selectbox(key="runs_pick").options) == 1


@pytest.mark.slow
def test_a_trained_lesson_reopens_from_its_link_with_its_runs_and_verdict():
    at = linked({"lesson": "clipping"})
    at.switch_page("pages/lessons.py").run()
    at.button(key="lesson_train").click().run()
    deadline = time.monotonic() + 120
    while not any(s.value.startswith("The claim holds") for s in at.success):
        assert time.monotonic() < deadline, "the clipping lesson did not finish"
        time.sleep(0.5)
        at.run()
    params = dict(at.query_params)
    assert params["lesson"] == "clipping" and len(params["runs"].split(".")) == 2 and params["key"]
    steps = [m.value for m in at.metric]
    end_session()
    again = linked(params)
    again.switch_page("pages/lessons.py").run()
    no_exception(again)
    assert [m.value for m in again.metric] == steps                  # both variants, as trained
    assert any(s.value.startswith("The claim holds") for s in again.success)
    assert again.query_params["runs"] == params["runs"]
