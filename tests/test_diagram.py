"""The live cell diagram: every number on it is the trace's value for that unit and step (or
the mean over units), in the first view and in every animation frame."""
import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from torch import nn

from explorer import CIFGLSTM, PeepholeLSTM, plots, trace
from explorer.diagram import layout

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
    figure = plots.cell_diagram_figure(tr, 1, 1, unit, 4, x_input=x[1])
    names = [node.name for node in layout(cell).nodes]
    shown = figure.to_plotly_json()
    first = shown["data"][0]
    for t, points in [(4, first), *((int(f["name"]), f["data"][0]) for f in shown["frames"])]:
        expected = _expected(tr, 1, 1, t, unit)
        numbers = _numbers(points, names)
        assert set(numbers) == set(expected), t
        for name, value in expected.items():
            assert numbers[name] == pytest.approx(value, abs=1e-6), (t, name)
            text = points["text"][names.index(name)]
            assert text.endswith(f"<br>{value:.3f}"), (name, text)           # the number a person reads
    assert [int(f["name"]) for f in shown["frames"]] == list(range(T))
    assert "unit 3" in shown["layout"]["title"]["text"] if unit is not None else \
        "mean over units" in shown["layout"]["title"]["text"]


def test_the_input_is_written_on_its_node_and_the_layer_above_has_none():
    tr, x = _traced("lstm")
    names = [node.name for node in layout("lstm").nodes]
    first = plots.cell_diagram_figure(tr, 0, 0, 1, 7, x_input=x[0]).data[0]
    assert first.text[names.index("x")] == f"<b>x<sub>t</sub></b><br>({x[0, 7, 0]:.3g}, {x[0, 7, 1]:.3g})"
    above = plots.cell_diagram_figure(tr, 0, 1, 1, 7).data[0]
    assert above.text[names.index("x")] == "<b>x<sub>t</sub></b>"


def test_play_and_the_slider_animate_the_frames_from_the_step_shown():
    tr, _ = _traced("gru")
    figure = plots.cell_diagram_figure(tr, 0, 0, 0, 5)
    play = figure.layout.updatemenus[0].buttons[0]
    assert play.method == "animate" and play.args[1]["fromcurrent"] is True
    slider = figure.layout.sliders[0]
    assert slider.active == 5 and [s.args[0][0] for s in slider.steps] == [str(t) for t in range(T)]
    # A long sequence: at most max_frames frames, evenly spaced, and the step shown among them.
    long_tr = trace(nn.GRU(2, 3, batch_first=True), torch.randn(1, 1000, 2))
    frames = [int(f.name) for f in plots.cell_diagram_figure(long_tr, 0, 0, 0, 333, max_frames=100).frames]
    assert len(frames) <= 101 and 333 in frames and frames[:3] == [0, 10, 20]


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
