"""The live charts need Plotly's JavaScript copied into static/ and Streamlit serving it; when
either fails the charts would stay blank without a word, so the sidebar says why."""
import json

import streamlit as st
from streamlit.testing.v1 import AppTest

from pages import charts


def _sidebar():
    import streamlit as st

    from pages.charts import preload
    with st.sidebar:                 # where the app's shell calls it
        preload()


def sidebar_errors(monkeypatch, static_serving: bool) -> list[str]:
    option = st.get_option
    with monkeypatch.context() as patch:
        patch.setattr(st, "get_option", lambda name: static_serving if name == "server.enableStaticServing"
                      else option(name))
        at = AppTest.from_function(_sidebar).run()
    assert not at.exception
    return [e.value for e in at.sidebar.error]


def test_a_static_folder_that_cannot_be_made_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setattr(charts, "STATIC", not_a_folder / "static")
    problem = charts._install_script()
    assert problem.startswith("The charts cannot be drawn") and str(not_a_folder / "static") in problem


def test_the_sidebar_says_why_the_charts_would_be_blank(monkeypatch):
    assert sidebar_errors(monkeypatch, static_serving=True) == []
    monkeypatch.setattr(charts, "_SCRIPT_PROBLEM", "The charts cannot be drawn: no static/ here.")
    errors = sidebar_errors(monkeypatch, static_serving=False)
    assert errors[0] == "The charts cannot be drawn: no static/ here."
    assert "not serving static files" in errors[1] and "gate-explorer app" in errors[1]


def test_presentation_mode_grows_a_live_charts_fixed_margins_with_its_type():
    from explorer import plots
    from tests.test_plots import synthetic_trace, synthetic_view
    live = json.loads(charts._spec(plots.loss_figure(synthetic_view(50), 0.5, "MSE"), present=True))["layout"]
    assert live["font"]["size"] == charts.PRESENT_FONT
    scale = charts.PRESENT_FONT / 14
    assert live["margin"]["l"] == round(plots.LIVE_MARGIN["l"] * scale) > plots.LIVE_MARGIN["l"]
    assert live["margin"]["b"] == round(plots.LIVE_MARGIN["b"] * scale)
    assert live["margin"]["t"] == plots.LIVE_MARGIN["t"]
    # a figure whose margins Plotly fits to its labels keeps the builder's
    other = json.loads(charts._spec(plots.grad_time_figure(synthetic_trace(12, 4), 0), present=True))["layout"]
    assert other["margin"]["l"] == 60
