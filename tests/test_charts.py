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


def test_presentation_mode_scales_every_font_a_builder_set_with_the_layouts():
    import plotly.graph_objects as go
    figure = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="markers+text", text=["a", "b"],
                                  textfont={"size": 10}, marker={"size": 8}),
                       layout={"font": {"size": 14}, "legend": {"font": {"size": 12}},
                               "annotations": [{"text": "note", "font": {"size": 11}}],
                               "shapes": [{"type": "line", "x0": 0, "x1": 1, "y0": 0, "y1": 0,
                                           "label": {"text": "baseline", "font": {"size": 13}}}],
                               "xaxis": {"tickfont": {"size": 9}, "title": {"text": "t", "font": {"size": 12}}}})
    scale = charts.PRESENT_FONT / 14
    shown = json.loads(charts._spec(figure, present=True))
    layout = shown["layout"]
    assert layout["font"]["size"] == charts.PRESENT_FONT
    assert layout["legend"]["font"]["size"] == round(12 * scale, 1)
    assert layout["annotations"][0]["font"]["size"] == round(11 * scale, 1)
    assert layout["shapes"][0]["label"]["font"]["size"] == round(13 * scale, 1)
    assert layout["xaxis"]["tickfont"]["size"] == round(9 * scale, 1)
    assert layout["xaxis"]["title"]["font"]["size"] == round(12 * scale, 1)
    assert shown["data"][0]["textfont"]["size"] == round(10 * scale, 1)
    assert shown["data"][0]["marker"]["size"] == 8               # sizes that are not type stay
    # off a projector the builder's sizes stand
    plain = json.loads(charts._spec(figure, present=False))
    assert plain["layout"]["annotations"][0]["font"]["size"] == 11 and plain["layout"]["font"]["size"] == 14


def test_presentation_mode_gives_a_short_colour_bar_only_the_labels_it_holds():
    import plotly.graph_objects as go
    figure = go.Figure(layout={"height": 500, "margin": {"t": 40, "b": 60},
                               "coloraxis": {"colorbar": {"len": 0.2, "nticks": 6}},
                               "coloraxis2": {"colorbar": {"len": 0.8, "nticks": 6}},
                               "coloraxis3": {"colorbar": {"len": 0.2, "tickvals": [0, 0.5, 1]}}})
    layout = json.loads(charts._spec(figure, present=True))["layout"]
    plot_height = 500 * charts.PRESENT_HEIGHT - 40 - 60
    # a label and a gap of the projector's type per tick
    assert layout["coloraxis"]["colorbar"]["nticks"] == int(0.2 * plot_height / (2 * charts.PRESENT_FONT)) < 6
    assert layout["coloraxis2"]["colorbar"]["nticks"] == 6                 # room for all it asked for
    assert "nticks" not in layout["coloraxis3"]["colorbar"]                 # listed ticks stand
    assert json.loads(charts._spec(figure, present=False))["layout"]["coloraxis"]["colorbar"]["nticks"] == 6
