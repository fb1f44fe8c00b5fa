"""Comparing runs: explorer.compare on small runs trained for real and saved, and the Compare page
under AppTest (its runs picked by hand and from a link, its charts, its messages)."""
import base64
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from explorer import Config, Run, Trainer
from explorer.compare import (NOT_READ, baselines, common_steps, comparability, differing_fields, final_evals,
                              from_run, from_store, gate_summary, labels, relative_losses, same_probes)
from explorer.store import RunStore, new_id, new_key
from tests.test_app import metric
from tests.test_train import held_out_by_hand

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SMALL = dict(task="adding", seq_len=10, hidden=8, steps=30, probe_every=10, eval_every=10, batch_size=8)


def trained(**changes) -> Trainer:
    trainer = Trainer(Config(**{**SMALL, **changes}))
    for _ in range(trainer.config.steps):
        trainer.step()
    return trainer


@pytest.fixture(scope="module")
def trainers() -> dict[str, Trainer]:
    return {"lstm": trained(cell="lstm"), "gru": trained(cell="gru"), "rnn": trained(cell="rnn"),
            "copy": trained(task="copy", seq_len=12, probe_every=15), "lstm-t20": trained(cell="lstm", seq_len=20)}


def save(store: RunStore, trainer: Trainer, name: str, owner_key: str | None = None) -> str:
    run_id = new_id()
    store.save(run_id, trainer, owner_key=owner_key or new_key(), name=name)
    return run_id


@pytest.fixture(scope="module")
def saved(trainers, tmp_path_factory):
    """Every trainer saved in one store, read back for comparing: name -> Compared."""
    store = RunStore(tmp_path_factory.mktemp("compare") / "runs.sqlite")
    return {name: from_store(store, save(store, trainer, name)) for name, trainer in trainers.items()}


# --- explorer.compare ------------------------------------------------------------------------

def test_a_saved_run_reads_back_with_its_config_task_and_record(trainers, saved):
    run, trainer = saved["copy"], trainers["copy"]
    assert run.name == "copy" and run.config == trainer.config and run.steps == 30
    assert run.loss_name == "cross-entropy (nats)" and run.task == "copy"
    # 10 symbols, each a guess among 8, in a sequence of 32 steps (a delay of 12, the symbols twice)
    assert run.baseline_loss == pytest.approx(10 * math.log(8) / 32)
    np.testing.assert_array_equal(run.history.evals["eval_loss"], trainer.history.view().evals["eval_loss"])
    assert [step for step, _ in run.history.traces] == [0, 15, 30]


def test_reading_a_saved_run_leaves_torchs_random_state_as_it_was(trainers, tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = save(store, trainers["gru"], "gru")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    from_store(store, run_id)
    assert torch.equal(torch.get_rng_state(), before)


def test_relative_loss_is_the_held_out_loss_over_the_tasks_baseline(trainers, saved):
    # Measured again on the trained model, against the adding task's baseline worked out by
    # hand: predicting 1 for a sum of two U[0, 1] values has MSE Var = 2 · 1/12 = 1/6.
    steps, relative = relative_losses(saved["lstm"])
    assert list(steps) == [10, 20, 30]
    assert relative[-1] == pytest.approx(trainers["lstm"].evaluate()[0] / (1 / 6), rel=1e-5)
    # The copy task's: blanks, then a uniform guess over 8 symbols for the last 10 of 32 steps.
    _, relative = relative_losses(saved["copy"])
    assert relative[-1] == pytest.approx(trainers["copy"].evaluate()[0] / (10 * math.log(8) / 32), rel=1e-5)


def test_each_runs_held_out_numbers_are_its_final_eval_as_saved(trainers, saved):
    for name in ("lstm", "copy"):
        final, trainer = saved[name].final, trainers[name]
        loss, metric, sequences = held_out_by_hand(trainer.config, trainer.model.state_dict())
        assert (final.step, final.sequences) == (30, sequences) == (30, 1000)
        assert final.loss == pytest.approx(loss, rel=1e-5) and final.metric == pytest.approx(metric, abs=1e-6)
    runs = [saved["lstm"], saved["copy"]]
    table = final_evals(runs, labels(runs))
    assert list(table.index) == ["lstm", "copy"]
    assert table.loc["copy", "held-out loss"] == saved["copy"].final.loss
    assert table.loc["copy", "loss"] == "cross-entropy (nats)" and table.loc["copy", "sequences"] == 1000


def test_a_live_run_compares_with_the_held_out_numbers_of_its_last_save(trainers, tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id, key = new_id(), new_key()
    store.save(run_id, trainers["gru"], owner_key=key, name="gru")
    run = Run.open(store, run_id, key)
    assert from_run(run).final == store.info(run_id).final == trainers["gru"].final_eval()
    unsaved = Run(Config(**SMALL), store=store)
    assert from_run(unsaved).final is None
    assert final_evals([from_run(unsaved)], {unsaved.id: "new"}).loc["new", "held-out loss"] is None


def test_common_steps_are_the_probe_steps_every_run_kept(saved):
    assert common_steps([saved["lstm"], saved["gru"]]) == [0, 10, 20, 30]
    assert common_steps([saved["lstm"], saved["copy"]]) == [0, 30]        # probes every 10 and every 15
    assert common_steps([]) == []


def test_differing_fields_lists_only_what_differs_one_column_per_run(saved):
    table = differing_fields({"LSTM": saved["lstm"].config, "GRU": saved["gru"].config})
    assert list(table.columns) == ["LSTM", "GRU"]
    assert list(table.index) == ["cell", "forget_bias"]                  # a GRU has no forget gate
    assert table.loc["cell"].tolist() == ["lstm", "gru"]
    assert table.loc["forget_bias"].tolist() == ["1", NOT_READ]
    table = differing_fields({"adding": saved["lstm"].config, "copy": saved["copy"].config})
    assert {"task", "seq_len", "probe_every"} <= set(table.index) and "cell" not in table.index
    assert table.loc["seq_len"].tolist() == ["10", "12"]
    assert differing_fields({"a": saved["lstm"].config, "b": saved["lstm"].config}).empty


def test_one_task_compares_absolute_losses_with_each_distinct_baseline(saved):
    same = comparability([saved["lstm"], saved["gru"]])
    assert same.scale == "absolute" and "adding" in same.message and "MSE" in same.message
    assert baselines([saved["lstm"], saved["gru"]], "absolute") == [(pytest.approx(1 / 6), "baseline: predict 1 (0.167)")]


def test_different_tasks_compare_relative_to_their_baselines_and_say_so(saved):
    mixed = comparability([saved["lstm"], saved["copy"]])
    assert mixed.scale == "relative"
    assert "adding" in mixed.message and "copy" in mixed.message and "divided by its own task's baseline" in mixed.message
    assert baselines([saved["lstm"], saved["copy"]], "relative") == [(1.0, "each task's baseline = 1")]


def test_different_tasks_without_a_positive_baseline_say_why_they_cannot_share_an_axis(saved):
    import dataclasses
    flat = dataclasses.replace(saved["copy"], name="no baseline", baseline_loss=0.0)
    verdict = comparability([saved["lstm"], flat])
    assert verdict.scale is None
    assert "no baseline has no positive baseline loss" in verdict.message and "cannot share an axis" in verdict.message


def test_probe_sequences_match_only_for_the_same_task_length_and_seed(saved):
    assert same_probes([saved["lstm"], saved["gru"]])
    assert not same_probes([saved["lstm"], saved["lstm-t20"]])
    assert not same_probes([saved["lstm"], saved["copy"]])


def test_gate_summary_is_each_gates_mean_and_saturation_over_every_value(saved):
    trace = saved["lstm"].trace_at(30)
    summary = gate_summary(trace)
    assert list(summary) == ["input", "forget", "output"]                # sigmoid gates; the candidate is a tanh
    forget = trace.layers[0].gates["forget"]                             # (sequences, time, units)
    mean, shut, open_ = summary["forget"]
    assert mean == pytest.approx(float(np.mean(forget, dtype=np.float64)))
    assert shut == pytest.approx(np.count_nonzero(forget < 0.1) / forget.size)
    assert open_ == pytest.approx(np.count_nonzero(forget > 0.9) / forget.size)
    assert list(gate_summary(saved["gru"].trace_at(30))) == ["reset", "update"]
    assert gate_summary(saved["rnn"].trace_at(30)) == {}


def test_labels_tell_apart_runs_that_share_a_name(saved):
    import dataclasses
    twin = dataclasses.replace(saved["gru"], name="lstm")
    named = labels([saved["lstm"], twin, saved["copy"]])
    assert named[saved["copy"].id] == "copy"
    assert named[saved["lstm"].id] != named[twin.id] and named[twin.id].startswith("lstm (")


# --- the Compare page ------------------------------------------------------------------------

@pytest.fixture
def page_store(tmp_path, monkeypatch) -> RunStore:
    """The app's store for this test (as tests/test_app.py sets it), and a fresh session."""
    monkeypatch.setenv("GATE_EXPLORER_DB", str(tmp_path / "runs.sqlite"))
    st.cache_resource.clear()
    yield RunStore(tmp_path / "runs.sqlite")
    st.cache_resource.clear()


def opened(params: dict | None = None) -> AppTest:
    """The app from a link with params, switched to the Compare page."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(params or {})
    at.run()
    return at.switch_page("pages/compare.py").run()


def figures(at: AppTest) -> dict[str, dict]:
    """key -> the Plotly figure (as JSON) of each live chart on the page."""
    out = {}
    for element in at.get("bidi_component"):
        key = element.proto.id.split("-", 2)[2]
        if element.proto.component_name == "gate_explorer.live_chart" and key != "plotly_preload":
            out[key] = json.loads(json.loads(element.proto.json))
    return out


def values(array) -> np.ndarray:
    """A figure's array, plain or as Plotly's base64 typed array."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
    return np.asarray(array, dtype=float)


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_two_saved_runs_picked_draw_every_section(trainers, page_store):
    lstm, gru = save(page_store, trainers["lstm"], "LSTM run"), save(page_store, trainers["gru"], "GRU run")
    at = opened()
    no_exception(at)
    assert any("No runs to compare yet" in i.value for i in at.info)     # none made in this browser
    at.toggle(key="compare_everyone").set_value(True).run()            # made by another browser
    assert set(at.multiselect(key="compare_pick").options) == {"LSTM run · adding · lstm · 30 steps",
                                                                "GRU run · adding · gru · 30 steps"}
    assert any("Pick two to four runs" in i.value for i in at.info)
    at.multiselect(key="compare_pick").set_value([lstm, gru]).run()
    no_exception(at)
    charts = figures(at)
    loss = charts["compare_loss_plot"]
    assert [t["name"] for t in loss["data"]] == ["LSTM run", "GRU run"]
    assert [s["y0"] for s in loss["layout"]["shapes"]] == [pytest.approx(1 / 6)]
    assert loss["layout"]["yaxis"]["title"]["text"] == "MSE"
    grad = charts["compare_grad_plot"]
    assert grad["layout"]["yaxis"]["type"] == "log" and [t["name"] for t in grad["data"]] == ["LSTM run", "GRU run"]
    gates = charts["compare_gates_plot"]
    assert {t["name"] for t in gates["data"]} == {"LSTM run", "GRU run"}
    held_out = at.dataframe[0].value                                     # the only one on the page
    assert held_out.loc["LSTM run", "held-out loss"] == page_store.info(lstm).eval_loss
    assert held_out.loc["GRU run", "sequences"] == 1000
    table = at.table[0].value
    assert "cell" in table.index and "task" not in table.index
    assert table.loc["cell"].tolist() == ["lstm", "gru"]
    assert at.query_params["compare"] == f"{lstm}.{gru}"                 # the page's link holds them
    assert any(f"compare={lstm}.{gru}" in c.value for c in at.code)


def test_a_compare_link_preselects_its_runs_and_warns_of_an_unknown_one(trainers, page_store):
    lstm, copy = save(page_store, trainers["lstm"], "LSTM run"), save(page_store, trainers["copy"], "copy run")
    unknown = "0" * 32
    at = opened({"compare": f"{lstm}.{unknown}.{copy}"})
    no_exception(at)
    assert at.multiselect(key="compare_pick").value == [lstm, copy]
    assert any(unknown in w.value and "does not have" in w.value for w in at.warning)
    loss = figures(at)["compare_loss_plot"]
    assert [t["name"] for t in loss["data"]] == ["LSTM run", "copy run"]
    assert [s["y0"] for s in loss["layout"]["shapes"]] == [1.0]          # relative: one line for every baseline
    assert "÷" in loss["layout"]["yaxis"]["title"]["text"]
    assert any("divided by its own task's baseline" in c.value for c in at.caption)
    assert any("different tasks" in c.value for c in at.caption)        # probe sequence b differs
    assert at.query_params["compare"] == f"{lstm}.{copy}"


def test_a_compare_param_that_is_not_run_ids_is_reported(page_store):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"compare": "../etc.passwd"})
    at.switch_page("pages/compare.py").run()                          # the link's own page, first
    no_exception(at)
    assert any("compare: not a list of run ids" in w.value for w in at.warning)
    assert any("Pick two to four runs" in i.value for i in at.info) or any("No runs" in i.value for i in at.info)
    assert "compare" not in at.query_params


def test_the_compare_link_is_left_off_the_other_pages(trainers, page_store):
    lstm, gru = save(page_store, trainers["lstm"], "LSTM run"), save(page_store, trainers["gru"], "GRU run")
    at = opened({"compare": f"{lstm}.{gru}"})
    assert at.query_params["compare"] == f"{lstm}.{gru}"
    at.switch_page("pages/train.py").run()
    assert "compare" not in at.query_params
    at.switch_page("pages/compare.py").run()                           # the choice is kept
    assert at.multiselect(key="compare_pick").value == [lstm, gru]
    assert at.query_params["compare"] == f"{lstm}.{gru}"


def test_the_sessions_live_run_compares_with_a_saved_one_and_reading_changes_nothing(trainers, page_store):
    saved_id = save(page_store, trainers["gru"], "GRU run")
    before = page_store.info(saved_id)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["draft"] = Config(**{**SMALL, "probe_every": 5, "eval_every": 5}).to_dict()
    at.run()
    at.selectbox(key="step_size").set_value(10).run()
    next(b for b in at.button if b.label == "Step").click().run()
    deadline = time.monotonic() + 60
    while metric(at, "Step") != "10":
        assert time.monotonic() < deadline, "the Step button's steps never landed"
        time.sleep(0.1)
        at.run()
    live_id = at.query_params["run"]
    at.switch_page("pages/compare.py").run()
    at.toggle(key="compare_everyone").set_value(True).run()
    options = at.multiselect(key="compare_pick").options
    assert any(o.endswith("· adding · lstm · 10 steps · this session's run") for o in options), options
    at.multiselect(key="compare_pick").set_value([live_id, saved_id]).run()
    no_exception(at)
    loss = figures(at)["compare_loss_plot"]
    live = loss["data"][0]
    assert live["name"] != "GRU run" and loss["data"][1]["name"] == "GRU run"
    assert list(values(live["x"])) == [5, 10]                             # its evals, from memory
    assert at.query_params["compare"] == f"{live_id}.{saved_id}" and at.query_params["run"] == live_id
    after = page_store.info(saved_id)
    assert (after.steps, after.updated, after.status) == (before.steps, before.updated, before.status)
