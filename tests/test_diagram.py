"""The live cell diagram: every number on it is the trace's value for that unit and step (or
the mean over units), in the first view and in every animation frame."""
import json
import re

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from explorer import CIFGLSTM, PeepholeLSTM, plots, trace
from explorer.diagram import MAX_CHARS, MINUS, compact, layout

T = 12
MODULES = {
    "lstm": lambda: nn.LSTM(2, 5, 2, batch_first=True), "gru": lambda: nn.GRU(2, 5, 2, batch_first=True),
    "rnn": lambda: nn.RNN(2, 5, 2, batch_first=True),
    "rnn-relu": lambda: nn.RNN(2, 5, 2, nonlinearity="relu", batch_first=True),
    "peephole": lambda: PeepholeLSTM(2, 5, 2, batch_first=True), "cifg": lambda: CIFGLSTM(2, 5, 2, batch_first=True),
}


def _traced(cell):
    torch.manual_seed(0)
    module = MODULES[cell]()
    x = torch.randn(3, T, 2)
    return trace(module, x), x.numpy()


def _expected(tr, sequence, layer, t, unit) -> dict[str, float]:
    """The numbers recomputed from the trace's arrays, as the equations combine them."""
    lt = tr.layers[layer]
    mean = (lambda a: float(np.mean(a))) if unit is None else (lambda a: float(a[unit]))
    h = lt.hidden[sequence].astype(np.float64)                                # (time, hidden)
    h_prev = h[t - 1] if t else np.zeros(h.shape[1])
    out = {"h_prev": mean(h_prev), "hidden": mean(h[t])}
    if lt.cell is not None:
        c = lt.cell[sequence].astype(np.float64)
        c_prev = c[t - 1] if t else np.zeros(c.shape[1])
        f, i, g, o = (lt.gates[n][sequence, t].astype(np.float64) for n in ("forget", "input", "candidate", "output"))
        out.update(c_prev=mean(c_prev), cell=mean(c[t]), forget=mean(f), input=mean(i), candidate=mean(g),
                   output=mean(o), kept=mean(f * c_prev), written=mean(i * g), tanh_cell=mean(np.tanh(c[t])),
                   shown=mean(o * np.tanh(c[t])))
        # the equations hold on the diagram: c_t = f c_{t−1} + i g and h_t = o tanh c_t
        assert unit is None or out["cell"] == pytest.approx(out["kept"] + out["written"], abs=1e-5)
        assert unit is None or out["hidden"] == pytest.approx(out["shown"], abs=1e-5)
    elif lt.gates:
        r, z, n = (lt.gates[name][sequence, t].astype(np.float64) for name in ("reset", "update", "candidate"))
        out.update(h_prev_in=out["h_prev"], reset=mean(r), update=mean(z), candidate=mean(n),
                   kept=mean(z * h_prev), one_minus=mean(1 - z), written=mean((1 - z) * n))
        assert unit is None or out["hidden"] == pytest.approx(out["kept"] + out["written"], abs=1e-5)
    else:
        out["hidden_gate"] = out["hidden"]
    return out


def _numbers(points: dict, names: list[str]) -> dict[str, float]:
    return {name: value for name, value in zip(names, points["customdata"]) if not np.isnan(value)}


@pytest.mark.parametrize("cell", list(MODULES))
@pytest.mark.parametrize("unit", [3, None])
def test_every_number_on_the_diagram_is_the_traces_value(cell, unit):
    tr, x = _traced(cell)
    names = [node.name for node in layout(cell).nodes]
    for t in range(T):
        shown = plots.cell_diagram_figure(tr, 1, 1, unit, t, x_input=x[1]).to_plotly_json()
        points = shown["data"][0]
        expected = _expected(tr, 1, 1, t, unit)
        numbers = _numbers(points, names)
        assert set(numbers) == set(expected), t
        for name, value in expected.items():
            assert numbers[name] == pytest.approx(value, abs=1e-6), (t, name)
            text = points["text"][names.index(name)]
            assert text.endswith(f"<br>{compact(value)}"), (name, text)           # the number a person reads
        assert shown["layout"]["title"]["text"].endswith(f"t = {t}")
    assert "unit 3" in shown["layout"]["title"]["text"] if unit is not None else \
        "mean over units" in shown["layout"]["title"]["text"]


def test_the_input_is_written_beside_its_node_and_the_layer_above_has_none():
    tr, x = _traced("lstm")
    names = [node.name for node in layout("lstm").nodes]
    figure = plots.cell_diagram_figure(tr, 0, 0, 1, 7, x_input=x[0])
    assert figure.data[0].text[names.index("x")] == "<b>x<sub>t</sub></b>"
    assert figure.data[1].text == (f"({compact(x[0, 7, 0])}, {compact(x[0, 7, 1])})",)
    above = plots.cell_diagram_figure(tr, 0, 1, 1, 7)
    assert above.data[0].text[names.index("x")] == "<b>x<sub>t</sub></b>" and len(above.data) == 1
    one = trace(nn.GRU(1, 3, batch_first=True), torch.tensor([[[0.25], [-2.0]]]))
    single = plots.cell_diagram_figure(one, 0, 0, 0, 1, x_input=np.array([[0.25], [-2.0]]))
    assert single.data[0].text[[n.name for n in layout("gru").nodes].index("x")] == "<b>x<sub>t</sub></b><br>−2"


def test_the_diagram_has_one_step_and_no_clock_of_its_own():
    # The page's clock moves the diagram and the equations together; frames or a Play button
    # inside the figure would run on the browser's, out of step with the equations.
    tr, _ = _traced("gru")
    figure = plots.cell_diagram_figure(tr, 0, 0, 0, 5)
    assert not figure.frames and not figure.layout.updatemenus and not figure.layout.sliders


@pytest.mark.parametrize("value, written", [
    (1e-8, "1e−8"), (-123456.7, "−1.23e5"), (float("nan"), "nan"), (0.0, "0"), (-0.0, "0"), (0.5, "0.5"),
    (-0.123456, "−0.123"), (12.345, "12.3"), (999.7, "1e3"), (1234.0, "1.23e3"), (0.00123, "1.23e−3"),
    (-1.17e-38, "−1.2e−38"), (float("-inf"), "−∞"), (-1.7976931348623157e308, "−1e308")])
def test_numbers_are_written_compactly(value, written):
    assert compact(value) == written


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_every_float_fits_a_node_and_reads_back_to_three_digits(value):
    written = compact(value)
    assert len(written) <= MAX_CHARS
    back = float(written.replace(MINUS, "-").replace("∞", "inf"))
    if np.isnan(value):
        assert np.isnan(back)
    else:
        exponent_digits = len(str(abs(int(f"{value:e}".split("e")[1])))) if np.isfinite(value) and value else 1
        # 3 significant digits, one fewer per exponent digit past the first: half a unit in the last place
        assert back == pytest.approx(value, rel=0.5 * 10.0 ** (-(3 - exponent_digits)) + 1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_extreme_values_fit_every_node(cell):
    tr, x = _traced(cell)
    lt = tr.layers[0]
    extremes = [1e-8, -123456.7, np.nan, -1.17e-38, 3.4e38]
    for k, array in enumerate([lt.hidden, *(() if lt.cell is None else (lt.cell,)), *lt.gates.values()]):
        array[0, 4, 0] = extremes[k % len(extremes)]
        array[0, 3, 0] = extremes[(k + 1) % len(extremes)]
    wild = np.array([[-123456.7, 1e-8, np.nan]] * T)
    figure = plots.cell_diagram_figure(tr, 0, 0, 0, 4, x_input=wild)
    lines = [line for text in (*figure.data[0].text, *figure.data[1].text)
             for line in re.sub(r"<b>.*?</b>", "", text).split("<br>") if line]
    assert len(lines) >= 10
    for line in lines:
        numbers = line.strip("(, …)").split(", ")
        assert all(len(n) <= MAX_CHARS for n in numbers), line
    assert figure.data[1].text == ("(−1.23e5, 1e−8, nan)",)


@pytest.mark.parametrize("cell", list(MODULES))
def test_the_figure_is_valid_plotly(cell):
    tr, x = _traced(cell)
    figure = plots.cell_diagram_figure(tr, 0, 0, 0, 0, x_input=x[0])
    assert json.loads(go.Figure(figure.to_plotly_json()).to_json()) == json.loads(figure.to_json())


def test_the_download_holds_the_diagrams_numbers_at_every_step():
    tr, x = _traced("cifg")
    from explorer.diagram import frame
    table = frame(tr, 2, 0, 1)
    assert list(table["t"]) == list(range(T))
    for t in (0, 5, T - 1):
        row = table.iloc[t]
        for name, value in _expected(tr, 2, 0, t, 1).items():
            assert row[name] == pytest.approx(value, abs=1e-6)
