"""The cell diagram on the Step through page, in AppTest: drawn with the page's unit and step,
moved by ◀ ▶ and by ▶ Play with the equations (one clock), and switched to the mean over units."""
from test_app import app, figures, fresh_session, no_exception, values  # noqa: F401

from explorer.diagram import MINUS


def _diagram(at) -> dict:
    return figures(at)["cell_diagram_plot"]


def test_the_diagram_follows_the_pages_step_and_unit():
    at = app(task="adding", seq_len=12)
    at.switch_page("pages/step.py").run()
    no_exception(at)
    figure = _diagram(at)
    assert figure["layout"]["title"]["text"] == "LSTM, layer 1, unit 0, t = 0"
    assert not figure.get("frames") and not figure["layout"].get("sliders")     # no clock of its own
    at.button(key="step_forward").click().run()
    at.button(key="step_forward").click().run()
    no_exception(at)
    figure = _diagram(at)
    assert figure["layout"]["title"]["text"] == "LSTM, layer 1, unit 0, t = 2"
    # The equations say the same h_t as the diagram's h_t node.
    checked = next(c.value for c in at.caption if "The trace recorded h_t" in c.value)
    hidden = figure["data"][0]["text"][-1]
    assert hidden.startswith("<b>h<sub>t</sub></b><br>")
    traced = float(checked.split("h_t = ")[1].split(" ")[0])
    assert float(hidden.split("<br>")[1].replace(MINUS, "-")) == float(f"{traced:.3g}")
    at.number_input(key="step_unit").set_value(3).run()
    assert _diagram(at)["layout"]["title"]["text"] == "LSTM, layer 1, unit 3, t = 2"
    at.toggle(key="step_diagram_mean").set_value(True).run()
    no_exception(at)
    assert _diagram(at)["layout"]["title"]["text"] == "LSTM, layer 1, mean over units, t = 2"


def _times(at) -> tuple[int, int, int, str]:
    """The step as the slider, the equations' caption and the diagram's title each say it,
    and the play button's label."""
    caption = next(c.value for c in at.caption if c.value.startswith("Layer 1, unit"))
    said = int(caption.split("time step t = ")[1].split(";")[0].split(" ")[0])
    title = _diagram(at)["layout"]["title"]["text"]
    return at.slider(key="step_t").value, said, int(title.rsplit("t = ", 1)[1]), at.button(key="step_play").label


def test_play_moves_the_diagram_and_the_equations_on_one_clock_and_stops_at_the_end():
    at = app(task="adding", seq_len=5)
    at.switch_page("pages/step.py").run()
    at.slider(key="step_t").set_value(2).run()
    assert _times(at) == (2, 2, 2, "▶ Play")
    at.button(key="step_play").click().run()              # each redraw while playing is one tick
    no_exception(at)
    assert _times(at) == (3, 3, 3, "❚❚ Pause")
    at.run()
    assert _times(at)[:3] == (4, 4, 4)                     # the last step: the clock stops there
    at.run()
    assert _times(at) == (4, 4, 4, "▶ Play")
    at.button(key="step_play").click().run()              # Play at the end starts again from 0
    assert _times(at) == (0, 0, 0, "❚❚ Pause")
    at.button(key="step_forward").click().run()           # a step by hand pauses the clock
    assert _times(at) == (1, 1, 1, "▶ Play")
    at.run()
    assert _times(at)[:3] == (1, 1, 1)
