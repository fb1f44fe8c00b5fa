"""Feedback that matches the state, in the app (issue 32): the Train page's controls are enabled
only where they act, a finished run says so and trains on for more steps, no alert is empty, and
the Lessons page puts the lesson's settings in the sidebar and says how long it took here."""
import time

import pytest

from explorer.lessons import lesson
from test_app import app, button, end_session, fresh_session, linked, metric, no_exception  # noqa: F401 (a fixture)

CONTROLS = ("Train", "Pause", "Resume", "Step")


def enabled(at) -> set[str]:
    return {label for label in CONTROLS if not button(at, label).disabled}


def alerts(at) -> list:
    return [*at.success, *at.info, *at.warning, *at.error]


def until(at, done, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while not done(at):
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
        at.run()
    return at


@pytest.mark.slow
def test_each_control_is_enabled_only_in_the_states_where_it_acts():
    at = app(steps=200_000)
    assert metric(at, "Status") == "idle" and enabled(at) == {"Train", "Step"}
    button(at, "Train").click().run()
    no_exception(at)
    assert metric(at, "Status") == "running" and enabled(at) == {"Pause"}     # drawn after the press acted
    button(at, "Pause").click().run()
    assert metric(at, "Status") == "paused" and enabled(at) == {"Resume", "Step"}
    assert not button(at, "Reset").disabled


@pytest.mark.slow
def test_a_finished_run_says_so_trains_on_and_reopens_without_an_empty_alert():
    at = app(steps=10)
    button(at, "Train").click().run()
    until(at, lambda at: metric(at, "Status") == "finished", "the run did not finish")
    no_exception(at)
    assert enabled(at) == set() and not button(at, "Reset").disabled
    assert [s.value for s in at.success] == ["Finished 10 steps."]
    assert any("Train has nothing left to do" in m.value for m in at.markdown)
    more = at.button(key="train_more")
    assert more.label == "Train 10 more steps" and not more.disabled
    at.number_input(key="more_steps").set_value(5).run()
    at.button(key="train_more").click().run()
    until(at, lambda at: metric(at, "Status") == "finished" and metric(at, "Step") == "15",
          "the extended run did not train its 5 more steps")
    assert at.sidebar.number_input(key="cfg_steps").value == 15          # the sidebar follows the run
    params = dict(at.query_params)
    end_session()
    again = linked({"run": params["run"], "key": params["key"]})
    no_exception(again)
    assert metric(again, "Status") == "finished" and metric(again, "Step") == "15"
    assert all(alert.value.strip() for alert in alerts(again))           # no empty alert (it was an empty green one)
    assert [s.value for s in again.success] == ["Finished 15 steps."]
    assert again.button(key="train_more").label == "Train 15 more steps"


@pytest.mark.slow
def test_a_loaded_lesson_puts_its_settings_in_the_sidebar_says_how_long_and_enables_what_acts(monkeypatch):
    monkeypatch.setenv("GATE_EXPLORER_MAX_RUNS", "2")    # the server trains two runs at a time
    at = app(hidden=64, seq_len=50)                 # the previous run's settings: adding, T = 50, 64 units
    at.switch_page("pages/lessons.py").run()
    at.button(key="load_counting").click().run()
    no_exception(at)
    counting = lesson("counting")
    config = counting.variants[0].config
    assert at.sidebar.selectbox(key="cfg_task").value == "brackets" == config.task
    assert at.sidebar.number_input(key="cfg_seq_len").value == 40 == config.seq_len
    assert at.sidebar.number_input(key="cfg_hidden").value == 16 == config.hidden
    assert [i.value for i in at.sidebar.info] == [f"These are the settings of the lesson “{counting.title}”."]
    idle, busy = counting.seconds_2_cores
    assert any(f"**How long** Under 10 seconds on 2 idle cores ({idle} s measured" in m.value
               and f"({busy} s) on 2 busy ones" in m.value for m in at.markdown)
    assert not at.button(key="lesson_train").disabled and at.button(key="lesson_pause").disabled

    at.button(key="load_vanishing").click().run()
    vanishing = lesson("vanishing")
    assert at.sidebar.selectbox(key="cfg_cell").value == "rnn" and at.sidebar.number_input(key="cfg_seq_len").value == 100
    assert [i.value for i in at.sidebar.info] == [
        f"These are the settings of the lesson's tanh RNN variant (“{vanishing.title}”). Its other variants "
        f"differ only in cell."]
    at.sidebar.number_input(key="cfg_hidden").set_value(20).run()        # changed: no longer the lesson's
    assert not at.sidebar.info and at.sidebar.number_input(key="cfg_hidden").value == 20

    at.button(key="lesson_train").click().run()                          # 2,500 steps each: still training
    assert at.button(key="lesson_train").disabled and not at.button(key="lesson_pause").disabled
    at.button(key="lesson_pause").click().run()
    assert not at.button(key="lesson_train").disabled and at.button(key="lesson_pause").disabled
