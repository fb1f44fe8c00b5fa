"""The cell diagram on the Step through page, in AppTest: drawn with the page's unit and step,
moved by ◀ ▶ with the equations, and switched to the mean over units."""
from test_app import app, figures, fresh_session, no_exception, values  # noqa: F401


def _diagram(at) -> dict:
    return figures(at)["cell_diagram_plot"]


def test_the_diagram_follows_the_pages_step_and_unit():
    at = app(task="adding", seq_len=12)
    at.switch_page("pages/step.py").run()
    no_exception(at)
    figure = _diagram(at)
    assert figure["layout"]["title"]["text"] == "LSTM, layer 1, unit 0, t = 0"
    assert figure["layout"]["sliders"][0]["active"] == 0 and len(figure["frames"]) == 12
    at.button(key="step_forward").click().run()
    at.button(key="step_forward").click().run()
    no_exception(at)
    figure = _diagram(at)
    assert figure["layout"]["title"]["text"] == "LSTM, layer 1, unit 0, t = 2"
    assert figure["layout"]["sliders"][0]["active"] == 2
    # The equations say the same h_t as the diagram's h_t node.
    checked = next(c.value for c in at.caption if "The trace recorded h_t" in c.value)
    hidden = figure["data"][0]["text"][-1]
    assert hidden.startswith("<b>h<sub>t</sub></b><br>")
    traced = float(checked.split("h_t = ")[1].split(" ")[0])
    assert float(hidden.split("<br>")[1]) == round(traced, 3)
    at.number_input(key="step_unit").set_value(3).run()
    assert _diagram(at)["layout"]["title"]["text"] == "LSTM, layer 1, unit 3, t = 2"
    at.toggle(key="step_diagram_mean").set_value(True).run()
    no_exception(at)
    assert _diagram(at)["layout"]["title"]["text"] == "LSTM, layer 1, mean over units, t = 2"
