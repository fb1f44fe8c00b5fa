"""The Gates page's what-if panel in AppTest: it clamps, shows both runs, puts the clamp in the
link, restores it from a link, and says what is wrong with a bad one."""
import json

import numpy as np

from test_app import app, figures, fresh_session, linked, no_exception, step, values  # noqa: F401
from test_your_model_app import saved  # noqa: F401 (a fixture: your model saved as a run)

BRACKETS = dict(task="brackets", seq_len=12)


def gates(at):
    at.switch_page("pages/gates.py").run()
    no_exception(at)
    return at


def test_the_panel_clamps_the_forget_gate_and_shows_both_runs_side_by_side():
    at = gates(step(app(**BRACKETS), 10))
    assert "whatif_output_plot" not in figures(at)                     # off until asked
    assert "clamp" not in at.query_params
    at.toggle(key="whatif_on").set_value(True).run()
    no_exception(at)
    assert at.selectbox(key="whatif_gate").value == "forget" and at.slider(key="whatif_value").value == 0.0
    labels = [m.label for m in at.metric]
    assert {"cross-entropy (nats), as trained", "cross-entropy (nats), clamped",
            "accuracy on this sequence, clamped"} <= set(labels)
    charts = figures(at)
    output = {t["name"]: values(t["y"]) for t in charts["whatif_output_plot"]["data"]}
    assert set(output) == {"target", "as trained", "clamped"} and len(output["target"]) == 12
    grads = {t["name"]: values(t["y"]) for t in charts["whatif_grad_plot"]["data"]}
    assert not np.allclose(grads["‖∂L/∂h_t‖ as trained"], grads["‖∂L/∂h_t‖ clamped"])
    assert json.loads(at.query_params["clamp"]) == {
        "forget": {"value": 0.0, "units": None, "steps": [0, 12], "layers": None}}
    assert any("Over all 3 probe sequences: forget = 0 at steps 0–11" in c.value for c in at.caption)
    # Units that follow the depth: named, and the clamp holds exactly those.
    at.radio(key="whatif_units_mode").set_value("units that follow the {target}").run()
    no_exception(at)
    clamp = json.loads(at.query_params["clamp"])["forget"]
    assert len(clamp["units"]) == 3
    named = next(c.value for c in at.caption if "follows the depth most closely" in c.value)
    assert named.endswith(": " + ", ".join(map(str, clamp["units"])) + ".")      # the units clamped, in order
    # Switched off: no clamp in the link.
    at.toggle(key="whatif_on").set_value(False).run()
    assert "clamp" not in at.query_params and "whatif_output_plot" not in figures(at)


def test_a_link_with_a_clamp_opens_the_panel_with_it():
    clamp = {"input": {"value": 1.0, "units": [1, 4], "steps": [2, 9]}}
    at = gates(linked({**{k: str(v) for k, v in BRACKETS.items()}, "clamp": json.dumps(clamp)}))
    assert at.toggle(key="whatif_on").value is True
    assert at.selectbox(key="whatif_gate").value == "input"
    assert at.slider(key="whatif_value").value == 1.0
    assert at.slider(key="whatif_steps").value == (2, 8)
    assert at.multiselect(key="whatif_units").value == [1, 4]
    assert "whatif_output_plot" in figures(at)
    assert json.loads(at.query_params["clamp"]) == {"input": {"value": 1.0, "units": [1, 4], "steps": [2, 9],
                                                              "layers": None}}


def test_a_links_bad_clamp_is_named_and_left_out():
    for clamp, words in (('{"forget": {"value": 2}}', "outside the gate's range [0, 1]"),
                         ("not json", "The link's clamp was left out"),
                         ('{"update": 0.5}', "choose from input, forget, candidate, output")):
        at = gates(linked({**{k: str(v) for k, v in BRACKETS.items()}, "clamp": clamp}))
        warnings = " ".join(w.value for w in at.warning)
        assert "The link's clamp was left out" in warnings and words in warnings, warnings
        assert not at.toggle(key="whatif_on").value


def test_a_plain_rnn_has_nothing_to_clamp_and_no_units_picked_is_a_message():
    at = gates(app(cell="rnn", **BRACKETS))
    assert any("A plain RNN has no gates to hold constant" in i.value for i in at.info)
    at = gates(app(**BRACKETS))
    at.toggle(key="whatif_on").set_value(True).run()
    at.radio(key="whatif_units_mode").set_value("units I pick").run()
    at.multiselect(key="whatif_units").set_value([]).run()
    no_exception(at)
    assert any("Pick at least one unit" in i.value for i in at.info)
    assert "clamp" not in at.query_params


def test_a_large_model_is_traced_on_the_chosen_sequence_alone():
    at = gates(app(task="brackets", seq_len=40, hidden=512, layers=3))       # 3 × 40 × 512 > 50,000
    at.toggle(key="whatif_on").set_value(True).run()
    no_exception(at)
    captions = " ".join(c.value for c in at.caption)
    assert "traced on the chosen sequence alone" in captions and "Over all" not in captions
    assert "whatif_output_plot" in figures(at)


def test_the_forget_gate_lessons_explore_opens_the_gates_page_on_its_what_if():
    from streamlit.testing.v1 import AppTest

    from test_app import APP
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["lesson"] = "forget-gate"
    at.run()
    at.switch_page("pages/lessons.py").run()
    next(b for b in at.button if b.label == "Explore LSTM").click().run()
    no_exception(at)
    assert at.toggle(key="whatif_on").value is True and at.slider(key="whatif_steps").value == (20, 20)
    assert json.loads(at.query_params["clamp"]) == {"forget": {"value": 0.0, "units": None, "steps": [20, 21],
                                                               "layers": None}}
    assert "whatif_output_plot" in figures(at)


def test_your_own_model_gets_the_what_if_too(saved):
    """An uploaded 2-layer GRU: the panel clamps the layer the page shows and draws its h_t, with
    no target (the model has no head)."""
    _, _, run_id, key = saved
    at = gates(linked({"run": run_id, "key": key, "layer": "1"}))
    at.toggle(key="whatif_on").set_value(True).run()
    no_exception(at)
    names = [t["name"] for t in figures(at)["whatif_output_plot"]["data"]]
    assert names == ["as trained", "clamped"]
    assert json.loads(at.query_params["clamp"]) == {"update": {"value": 0.0, "units": None, "steps": [0, 15],
                                                               "layers": [1]}}


def test_one_unit_is_enough_to_follow_the_depth():
    at = gates(app(task="brackets", seq_len=12, hidden=1))
    at.toggle(key="whatif_on").set_value(True).run()
    at.radio(key="whatif_units_mode").set_value("units that follow the {target}").run()
    no_exception(at)
    assert json.loads(at.query_params["clamp"])["forget"]["units"] == [0]


def test_a_links_clamp_of_one_layer_opens_that_layer_and_of_every_layer_says_the_panel_takes_one():
    two = {**{k: str(v) for k, v in BRACKETS.items()}, "layers": "2"}
    at = gates(linked({**two, "clamp": json.dumps({"forget": {"value": 0, "layers": [1]}})}))
    assert at.selectbox(key="pick_layer").value == 1
    assert json.loads(at.query_params["clamp"])["forget"]["layers"] == [1]
    assert not any("the panel clamps one layer" in i.value for i in at.info)
    st_clear()
    at = gates(linked({**two, "clamp": json.dumps({"forget": 0})}))
    assert any("The link's clamp named every layer; the panel clamps one layer, the one the page shows (layer 1)"
               in i.value for i in at.info)
    assert json.loads(at.query_params["clamp"])["forget"]["layers"] == [0]


def st_clear():
    """Another browser: its own session (AppTest instances share one)."""
    import streamlit as st
    st.cache_resource.clear()
