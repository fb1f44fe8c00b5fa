"""Figure builders: each draws the numbers it is given, on the scales and axes it promises."""
import json

import numpy as np
import plotly.graph_objects as go
import pytest

from explorer import Config, Trainer
from explorer import plots
from explorer.compare import gate_summary
from explorer.history import History, HistoryView
from explorer.trace import LayerTrace, Trace

SMALL = dict(task="adding", seq_len=12, hidden=8, batch_size=8, steps=20, probe_every=10, eval_every=5,
             probe_count=3)


def trained(**changes) -> Trainer:
    trainer = Trainer(Config(**dict(SMALL, **changes)))
    for _ in range(trainer.config.steps):
        trainer.step()
    return trainer


@pytest.fixture(scope="module")
def lstm():
    return trained(cell="lstm", layers=2, clip=0.5)


@pytest.fixture(scope="module")
def gru():
    return trained(cell="gru")


def latest(trainer: Trainer) -> Trace:
    return trainer.history.view().traces[-1][1]


def probe_input(trainer: Trainer, sequence: int) -> np.ndarray:
    return trainer.probe_set[0][sequence].cpu().numpy()                 # (time, features)


def synthetic_view(n: int, params: int = 10, every: int = 10) -> HistoryView:
    rng = np.random.default_rng(0)
    steps = {"step": np.arange(1, n + 1)}
    for name in ("loss", "metric", "grad_norm", "grad_norm_clipped", "seconds"):
        steps[name] = rng.uniform(0.01, 1, n).astype(np.float32)
    steps["param_grad_norm"] = rng.uniform(0.01, 1, (n, params)).astype(np.float32)
    steps["update_ratio"] = rng.uniform(0.01, 1, (n, params)).astype(np.float32)
    m = n // every
    evals = {"step": np.arange(1, m + 1) * every, "eval_loss": rng.uniform(0.01, 1, m).astype(np.float32),
             "eval_metric": rng.uniform(0, 1, m).astype(np.float32)}
    return HistoryView([f"rnn.weight_hh_l{i}" for i in range(params)], steps, evals, [])


def synthetic_trace(T: int, H: int, cell: str = "lstm", batch: int = 1) -> Trace:
    rng = np.random.default_rng(1)
    arr = lambda *shape: rng.uniform(0.01, 1, shape).astype(np.float32)  # noqa: E731
    names = {"lstm": ("input", "forget", "candidate", "output"), "gru": ("reset", "update", "candidate")}
    lstm_like = cell == "lstm"
    layer = LayerTrace(gates={g: arr(batch, T, H) for g in names.get(cell, ())}, hidden=arr(batch, T, H),
                       cell=arr(batch, T, H) if lstm_like else None, grad_hidden=arr(batch, T),
                       grad_cell=arr(batch, T) if lstm_like else None)
    return Trace(cell=cell, output=layer.hidden, loss=0.0, grad_input=arr(batch, T), layers=[layer])


def heatmaps(fig: go.Figure) -> list:
    return [t for t in fig.data if t.type == "heatmap"]


def row_titles(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


# --- training history ---------------------------------------------------------------------

def test_loss_figure_draws_train_and_heldout_loss_against_the_task_baseline(lstm):
    view, task = lstm.history.view(), lstm.task
    fig = plots.loss_figure(view, task.baseline_loss, task.loss_name, task.baseline_name)
    train, heldout = fig.data
    np.testing.assert_array_equal(train.y, view.steps["loss"])
    np.testing.assert_array_equal(train.x, view.steps["step"])
    np.testing.assert_array_equal(heldout.y, view.evals["eval_loss"])
    np.testing.assert_array_equal(heldout.x, view.evals["step"])
    assert "markers" in heldout.mode
    (baseline,) = fig.layout.shapes
    assert baseline.y0 == baseline.y1 == pytest.approx(1 / 6)
    assert baseline.line.dash == "dash"
    (label,) = fig.layout.annotations
    assert label.text == "baseline: predict 1 (0.167)"
    assert label.y == pytest.approx(np.log10(1 / 6))          # on a log axis Plotly places it by log10
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.yaxis.title.text == "MSE"
    assert fig.layout.xaxis.title.text == "training step"


def test_loss_figure_falls_back_to_a_linear_axis_when_a_value_is_not_positive():
    view = synthetic_view(50)
    view.steps["loss"][3] = 0.0
    assert plots.loss_figure(view, 0.5, "MSE").layout.yaxis.type == "linear"
    assert plots.loss_figure(synthetic_view(50), 0.5, "MSE").layout.yaxis.type == "log"


def test_metric_figure_draws_heldout_metric_and_baseline_on_a_linear_axis(lstm):
    view, task = lstm.history.view(), lstm.task
    fig = plots.metric_figure(view, task.baseline_metric, task.metric_name, task.baseline_name)
    np.testing.assert_array_equal(fig.data[0].y, view.steps["metric"])
    np.testing.assert_array_equal(fig.data[1].y, view.evals["eval_metric"])
    assert fig.layout.shapes[0].y0 == pytest.approx(task.baseline_metric)
    assert fig.layout.yaxis.type == "linear"
    assert fig.layout.yaxis.title.text == task.metric_name


def test_grad_norm_figure_is_log_scaled_and_draws_the_clip_threshold_only_when_clipping(lstm):
    view = lstm.history.view()
    unclipped = plots.grad_norm_figure(view)
    assert len(unclipped.data) == 1 and not unclipped.layout.shapes
    np.testing.assert_array_equal(unclipped.data[0].y, view.steps["grad_norm"])
    assert unclipped.layout.yaxis.type == "log"

    fig = plots.grad_norm_figure(view, clip=0.5)
    np.testing.assert_array_equal(fig.data[1].y, view.steps["grad_norm_clipped"])
    (threshold,) = fig.layout.shapes
    assert threshold.y0 == 0.5 and threshold.line.dash == "dash"
    assert [a.text for a in fig.layout.annotations] == ["clip threshold (0.5)"]


def test_param_grad_figure_draws_one_log_line_per_parameter_with_short_names(lstm):
    view = lstm.history.view()
    fig = plots.param_grad_figure(view)
    assert [t.name for t in fig.data] == [n.removeprefix("rnn.") for n in view.param_names]
    assert fig.data[1].name == "weight_hh_l0" and fig.data[-1].name == "head.bias"
    for j, line in enumerate(fig.data):
        np.testing.assert_array_equal(line.y, view.steps["param_grad_norm"][:, j])
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.yaxis.title.text == "‖∂L/∂W‖ (per parameter)"


def test_long_histories_are_bucket_averaged_to_small_figures():
    view = synthetic_view(20_000)
    figures = [plots.loss_figure(view, 0.5, "MSE"), plots.metric_figure(view, 0.1, "accuracy"),
               plots.grad_norm_figure(view, clip=0.5), plots.param_grad_figure(view)]
    for fig in figures:
        assert all(len(t.x) <= 1000 for t in fig.data)
        assert fig.data[0].x.dtype == fig.data[0].y.dtype == np.float32
        assert len(fig.to_json()) < 60_000
    train = figures[0].data[0]
    assert len(train.x) == 1000                                   # buckets of 20 steps
    assert train.x[0] == pytest.approx(10.5)                      # the mean of steps 1..20
    assert train.y[0] == pytest.approx(view.steps["loss"][:20].mean())
    assert train.y[-1] == pytest.approx(view.steps["loss"][-20:].mean())


def test_the_live_line_charts_keep_fixed_margins_and_few_legible_ticks():
    """Plotly replots a live chart whole on each refresh: automargin would fit the margins to
    the tick labels again every time, and many labels each cost a measurement."""
    view = synthetic_view(500)
    view.steps["grad_norm"] = np.geomspace(1e-4, 10, 500).astype(np.float32)   # five powers of ten
    figures = [plots.loss_figure(view, 0.5, "MSE"), plots.metric_figure(view, 0.1, "accuracy"),
               plots.grad_norm_figure(view, clip=0.5), plots.param_grad_figure(view)]
    for fig in figures:
        layout = fig.layout
        assert layout.xaxis.automargin is False and layout.yaxis.automargin is False
        assert layout.margin.to_plotly_json() == plots.LIVE_MARGIN
        assert layout.xaxis.nticks == 6
        go.Figure(fig.to_plotly_json())                 # (valid: the builders skip validation)
    assert figures[1].layout.yaxis.type == "linear" and figures[1].layout.yaxis.nticks == 6
    # 1e-4 to 10: one label per power of ten, written as a power
    grad = figures[2].layout.yaxis
    assert grad.type == "log" and list(grad.tickvals) == pytest.approx([1e-4, 1e-3, 1e-2, 0.1, 1, 10])
    assert list(grad.ticktext) == ["10⁻⁴", "10⁻³", "10⁻²", "10⁻¹", "10⁰", "10¹"]
    # under two powers of ten, labelled 1, 2 and 5 times each power
    narrow = synthetic_view(500)
    narrow.steps["loss"] = np.linspace(0.05, 0.9, 500).astype(np.float32)
    narrow.evals["eval_loss"][:] = 0.3
    ticks = plots.loss_figure(narrow, 0.5, "MSE").layout.yaxis
    assert list(ticks.ticktext) == ["0.05", "0.1", "0.2", "0.5", "1"]


def test_an_empty_history_gives_valid_empty_figures():
    view = History(["rnn.weight_hh_l0", "head.bias"]).view()
    figures = [plots.loss_figure(view, 1 / 6, "MSE"), plots.metric_figure(view, 0.1, "accuracy"),
               plots.grad_norm_figure(view, clip=1.0), plots.param_grad_figure(view)]
    for fig in figures:
        assert all(len(t.y) == 0 for t in fig.data)
        assert fig.to_json()


# --- gates and states ---------------------------------------------------------------------

@pytest.mark.parametrize("cell, titles", [
    ("lstm", ["input gate i_t", "forget gate f_t", "candidate g_t (c̃_t)", "output gate o_t",
              "cell state c_t", "hidden state h_t"]),
    ("gru", ["reset gate r_t", "update gate z_t", "candidate n_t (h̃_t)", "hidden state h_t"]),
])
def test_gate_figure_has_the_input_then_one_row_per_quantity_named_as_the_equations(lstm, gru, cell, titles):
    trainer = lstm if cell == "lstm" else gru
    fig = plots.gate_figure(latest(trainer), 0, 0, probe_input(trainer, 0))
    assert len(heatmaps(fig)) == len(titles) + 1
    assert row_titles(fig) == ["input x_t"] + titles


def test_gate_figure_draws_the_traces_arrays_as_unit_by_time(lstm):
    trace, x = latest(lstm), probe_input(lstm, 2)
    fig = plots.gate_figure(trace, 2, 1, x, quantities=["forget", "cell", "hidden"])
    drawn_input, forget, cell, hidden = heatmaps(fig)
    layer = trace.layers[1]
    np.testing.assert_array_equal(drawn_input.z, x.T)
    np.testing.assert_array_equal(forget.z, layer.gates["forget"][2].T)
    np.testing.assert_array_equal(cell.z, layer.cell[2].T)
    np.testing.assert_array_equal(hidden.z, layer.hidden[2].T)
    assert all(h.z.dtype == np.float32 for h in (drawn_input, forget, cell, hidden))


def test_gate_figure_rows_share_one_time_axis(lstm):
    fig = plots.gate_figure(latest(lstm), 0, 0, probe_input(lstm, 0))
    n = len(fig.data)
    bottom = f"x{n}"
    assert [t.xaxis for t in fig.data] == ["x"] + [f"x{i}" for i in range(2, n + 1)]
    for i in range(1, n):
        assert fig.layout[f"xaxis{'' if i == 1 else i}"].matches == bottom
    assert fig.layout[f"xaxis{n}"].title.text == "time step t"
    assert fig.layout.yaxis2.title.text == "unit"


def test_gate_figure_draws_each_range_on_its_own_titled_colour_scale(lstm):
    trace = latest(lstm)
    fig = plots.gate_figure(trace, 0, 0, probe_input(lstm, 0))
    axis = {row: fig.layout[t.coloraxis] for row, t in zip(row_titles(fig), fig.data)}
    for gate in ("input gate i_t", "forget gate f_t", "output gate o_t"):
        assert (axis[gate].cmin, axis[gate].cmax) == (0, 1)
        assert axis[gate].colorbar.title.text == "gate σ(·)"
    for tanh in ("candidate g_t (c̃_t)", "hidden state h_t"):
        assert (axis[tanh].cmin, axis[tanh].cmax) == (-1, 1)
    biggest = float(np.abs(trace.layers[0].cell[0]).max())
    assert (axis["cell state c_t"].cmin, axis["cell state c_t"].cmax) == pytest.approx((-biggest, biggest))
    assert axis["cell state c_t"].colorbar.title.text == "c_t"
    # one colour bar per scale: input, σ, tanh and c_t
    assert len({t.coloraxis for t in fig.data}) == 4


def test_gate_figure_of_a_relu_rnn_scales_hidden_from_zero_to_its_maximum():
    trace = synthetic_trace(10, 4, cell="rnn-relu")
    fig = plots.gate_figure(trace, 0, 0, np.zeros((10, 2)))
    assert row_titles(fig) == ["input x_t", "hidden state h_t"]
    scale = fig.layout[fig.data[1].coloraxis]
    assert (scale.cmin, scale.cmax) == pytest.approx((0, trace.layers[0].hidden[0].max()))


def test_gate_figure_block_averages_long_sequences_and_wide_layers():
    T, H = 3000, 600
    trace = synthetic_trace(T, H)
    x = np.random.default_rng(2).random((T, 300)).astype(np.float32)
    fig = plots.gate_figure(trace, 0, 0, x, quantities=["forget"])
    drawn_input, forget = heatmaps(fig)
    assert forget.z.shape == (200, 1000)                           # blocks of 3 units × 3 steps
    assert forget.z.dtype == np.float32
    assert forget.z[0, 0] == pytest.approx(trace.layers[0].gates["forget"][0, :3, :3].mean())
    assert forget.z[-1, -1] == pytest.approx(trace.layers[0].gates["forget"][0, -3:, -3:].mean())
    assert forget.x[0] == pytest.approx(1.0) and forget.y[0] == pytest.approx(1.0)
    assert drawn_input.z.shape == (150, 1000)
    assert drawn_input.z[0, 0] == pytest.approx(x[:3, :2].mean())


def test_gate_figure_strip_of_one_gate_is_short_and_height_grows_with_rows(lstm):
    trace, x = latest(lstm), probe_input(lstm, 0)
    strip = plots.gate_figure(trace, 0, 0, x, quantities=["forget"])
    full = plots.gate_figure(trace, 0, 0, x)
    assert 300 <= strip.layout.height <= 500
    assert full.layout.height > strip.layout.height + 4 * 180
    top, bottom = strip.layout.yaxis.domain, strip.layout.yaxis2.domain
    assert top[1] - top[0] < bottom[1] - bottom[0]               # the input row is the smaller


def test_gate_figure_labels_short_sequences_with_the_given_time_labels(lstm):
    trace, x = latest(lstm), probe_input(lstm, 0)
    labels = list("ab cd\nefghij")
    fig = plots.gate_figure(trace, 0, 0, x, quantities=["hidden"], time_labels=labels,
                            feature_names=["value", "marker"])
    assert list(fig.layout.xaxis2.ticktext) == list("ab␣cd↵efghij")
    assert list(fig.layout.yaxis.ticktext) == ["value", "marker"]
    long = synthetic_trace(100, 4)
    fig = plots.gate_figure(long, 0, 0, np.zeros((100, 1)), quantities=["hidden"], time_labels=["a"] * 100)
    assert fig.layout.xaxis2.ticktext is None


def test_gate_figure_rejects_a_quantity_the_cell_does_not_have(gru):
    with pytest.raises(ValueError, match="gru cell has no \\['cell'\\]"):
        plots.gate_figure(latest(gru), 0, 0, probe_input(gru, 0), quantities=["cell"])
    with pytest.raises(ValueError, match="x_input must be"):
        plots.gate_figure(latest(gru), 0, 0, np.zeros((5, 2)))


def test_unit_lines_figure_draws_each_unit_in_one_colour_across_rows(gru):
    trace = latest(gru)
    fig = plots.unit_lines_figure(trace, 1, 0, [3, 5])
    assert row_titles(fig) == ["reset gate r_t", "update gate z_t", "candidate n_t (h̃_t)", "hidden state h_t"]
    assert len(fig.data) == 4 * 2
    unit3 = [t for t in fig.data if t.name == "unit 3"]
    assert len({t.line.color for t in unit3}) == 1 and unit3[0].line.color != fig.data[1].line.color
    assert sum(bool(t.showlegend) for t in fig.data) == 2
    np.testing.assert_allclose(unit3[1].y, trace.layers[0].gates["update"][1, :, 3])
    assert unit3[1].yaxis == "y2"
    assert fig.layout.xaxis4.title.text == "time step t"


def test_saturation_figure_has_a_panel_per_gate_with_the_fully_saturated_boundary():
    low, high = np.array([0.1, 0.6, 0.0]), np.array([0.2, 0.4, 1.0])
    fig = plots.saturation_figure({"input": (low, high), "forget": (high, low), "output": (low, low)})
    assert row_titles(fig) == ["input gate i_t", "forget gate f_t", "output gate o_t"]
    assert [t.xaxis for t in fig.data] == ["x", "x2", "x3"]
    np.testing.assert_allclose(fig.data[0].x, low)
    np.testing.assert_allclose(fig.data[0].y, high)
    assert list(fig.data[0].customdata) == [0, 1, 2] and "unit %{customdata}" in fig.data[0].hovertemplate
    for i, shape in enumerate(fig.layout.shapes):
        assert (shape.x0, shape.y0, shape.x1, shape.y1) == (0, 1, 1, 0) and shape.line.dash == "dot"
        assert shape.xref == ("x" if i == 0 else f"x{i + 1}")
    assert fig.layout.xaxis.title.text == "fraction of steps < 0.1 (left-saturated)"
    assert fig.layout.yaxis.title.text == "fraction > 0.9 (right-saturated)"
    assert tuple(fig.layout.xaxis2.range) == tuple(fig.layout.yaxis2.range) == (-0.02, 1.02)
    gru = plots.saturation_figure({"update": (low, high), "candidate": (low, high)}, "gru")
    assert row_titles(gru) == ["update gate z_t", "candidate n_t (h̃_t)"]


# --- gradients ----------------------------------------------------------------------------

def test_grad_time_figure_draws_hidden_norms_per_layer_and_dashed_cell_norms_for_lstm(lstm, gru):
    trace = latest(lstm)
    fig = plots.grad_time_figure(trace, 1)
    assert [t.name for t in fig.data] == ["‖∂L/∂h_t‖ layer 1", "‖∂L/∂c_t‖ layer 1",
                                          "‖∂L/∂h_t‖ layer 2", "‖∂L/∂c_t‖ layer 2"]
    assert [t.line.dash for t in fig.data] == [None, "dash", None, "dash"]
    np.testing.assert_allclose(fig.data[2].y, trace.layers[1].grad_hidden[1])
    np.testing.assert_allclose(fig.data[1].y, trace.layers[0].grad_cell[1])
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.title.text == "gradient norm"
    assert all(t.line.dash is None for t in plots.grad_time_figure(latest(gru), 0).data)


def test_grad_time_figure_leaves_zero_norms_out_of_the_log_axis():
    trace = synthetic_trace(6, 2)
    trace.layers[0].grad_hidden[0, :2] = 0.0
    y = plots.grad_time_figure(trace, 0).data[0].y
    assert np.isnan(y[:2]).all() and (y[2:] > 0).all()


def test_grad_history_figure_has_a_row_per_trace_coloured_by_log10_of_the_norm(lstm, gru):
    traces = lstm.history.view().traces
    fig = plots.grad_history_figure(traces, 1, 0)
    (heat,) = fig.data
    assert list(heat.y) == [step for step, _ in traces] == [0, 10, 20]
    assert heat.z.shape == (len(traces), SMALL["seq_len"])
    np.testing.assert_allclose(heat.z[1], np.log10(traces[1][1].layers[0].grad_hidden[1]), rtol=1e-5)
    assert fig.layout.coloraxis.colorbar.title.text == "log₁₀ ‖∂L/∂h_t‖"
    cell = plots.grad_history_figure(traces, 1, 1, quantity="grad_cell")
    np.testing.assert_allclose(cell.data[0].z[2], np.log10(traces[2][1].layers[1].grad_cell[1]), rtol=1e-5)
    assert cell.layout.coloraxis.colorbar.title.text == "log₁₀ ‖∂L/∂c_t‖"
    with pytest.raises(ValueError, match="only for LSTM"):
        plots.grad_history_figure(gru.history.view().traces, 0, 0, quantity="grad_cell")
    assert plots.grad_history_figure([], 0, 0).to_json()


def test_input_grad_figure_draws_input_gradient_norms_as_log_bars_under_the_input(lstm):
    trace, x = latest(lstm), probe_input(lstm, 1)
    fig = plots.input_grad_figure(trace, 1, x)
    picture, bars = fig.data
    np.testing.assert_array_equal(picture.z, x.T)
    assert bars.type == "bar"
    np.testing.assert_allclose(bars.y, trace.grad_input[1])
    assert fig.layout.yaxis2.type == "log" and fig.layout.yaxis2.title.text == "‖∂L/∂x_t‖"
    assert fig.layout.xaxis.matches == "x2"


def test_singular_values_figure_draws_one_dashed_line_per_distinct_bound():
    spectra = [{"layer": 0, "block": "forget", "values": np.array([3.0, 1.0, 0.5]), "bound": 4.0},
               {"layer": 0, "block": "candidate", "values": np.array([2.0, 0.9, 0.1]), "bound": 1.0},
               {"layer": 1, "block": "forget", "values": np.array([5.0, 0.2, 0.0]), "bound": 4.0}]
    fig = plots.singular_values_figure(spectra)
    assert [t.name for t in fig.data] == ["layer 1 forget", "layer 1 candidate", "layer 2 forget"]
    np.testing.assert_allclose(fig.data[1].y, [2.0, 0.9, 0.1])
    assert list(fig.data[0].x) == [1, 2, 3]
    assert np.isnan(fig.data[2].y[2])                              # a zero has no place on a log axis
    assert [s.y0 for s in fig.layout.shapes] == [4.0, 1.0]
    assert [(a.y, a.text) for a in fig.layout.annotations] == [(pytest.approx(np.log10(4.0)), "1/γ = 4 (sigmoid)"),
                                                               (0.0, "1/γ = 1 (tanh/ReLU)")]
    assert fig.layout.yaxis.type == "log" and "Pascanu" in fig.layout.title.text
    low, high = fig.layout.yaxis.range                             # log10 units, every value and bound inside
    assert low < np.log10(0.1) and high > np.log10(5.0)


def test_every_figure_keeps_the_users_zoom_with_a_stable_uirevision(lstm):
    view, trace, x = lstm.history.view(), latest(lstm), probe_input(lstm, 0)
    figures = [plots.loss_figure(view, 0.1, "MSE"), plots.metric_figure(view, 0.1, "accuracy"),
               plots.grad_norm_figure(view), plots.param_grad_figure(view),
               plots.gate_figure(trace, 0, 0, x), plots.unit_lines_figure(trace, 0, 0, [1]),
               plots.saturation_figure({"forget": (np.zeros(2), np.ones(2))}), plots.grad_time_figure(trace, 0),
               plots.grad_history_figure(view.traces, 0, 0), plots.input_grad_figure(trace, 0, x),
               plots.singular_values_figure([]), plots.compare_grad_time_figure({"a": trace}, 0),
               plots.compare_heldout_figure({"a": (view.evals["step"], view.evals["eval_loss"])}, [], "MSE"),
               plots.compare_gates_figure({"a": {"forget": (0.5, 0.1, 0.2)}}, {"a": "lstm"})]
    revisions = [f.layout.uirevision for f in figures]
    assert all(isinstance(r, str) and r for r in revisions)
    assert len(set(revisions)) == len(figures)
    assert plots.gate_figure(trace, 0, 1, x).layout.uirevision != revisions[4]
    assert plots.gate_figure(trace, 1, 0, x).layout.uirevision == revisions[4]


def test_every_figure_passes_plotlys_validation(lstm, gru):
    """The builders skip validation for speed; here every one of them is validated in full,
    for an LSTM with clipping and a GRU, so a misspelt property still fails."""
    for trainer in (lstm, gru):
        view, trace, x = trainer.history.view(), latest(trainer), probe_input(trainer, 0)
        spectra = [{"layer": 0, "block": "candidate", "values": np.array([2.0, 0.5]), "bound": 1.0}]
        figures = [plots.loss_figure(view, 0.1, "MSE"), plots.metric_figure(view, 0.1, "accuracy"),
                   plots.grad_norm_figure(view, clip=0.5), plots.param_grad_figure(view),
                   plots.gate_figure(trace, 0, 0, x, time_labels=[str(t) for t in range(len(x))]),
                   plots.unit_lines_figure(trace, 0, 0, [1, 2]), plots.grad_time_figure(trace, 0),
                   plots.saturation_figure({"update": (np.zeros(2), np.ones(2))}),
                   plots.grad_history_figure(view.traces, 0, 0), plots.input_grad_figure(trace, 0, x),
                   plots.singular_values_figure(spectra),
                   plots.compare_heldout_figure({"a": (view.evals["step"], view.evals["eval_loss"])},
                                                [(0.1, "baseline")], "MSE"),
                   plots.compare_gates_figure({"a": gate_summary(trace), "rnn": {}},
                                              {"a": trace.cell, "rnn": "rnn"})]
        for figure in figures:
            # The validating constructor raises on any error, and must change nothing: what it
            # would rewrite (a colour scale's name, say) plotly.js might read otherwise.
            validated = go.Figure(figure.to_plotly_json())
            assert json.loads(validated.to_json()) == json.loads(figure.to_json())


def test_compare_figures_draw_one_colour_per_run_from_each_runs_numbers(lstm, gru):
    views = {"LSTM": lstm.history.view(), "GRU": gru.history.view()}
    fig = plots.compare_loss_figure(views, 1 / 6, "MSE", "predict 1")
    assert [t.name for t in fig.data] == ["LSTM: training", "LSTM: held-out", "GRU: training", "GRU: held-out"]
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    np.testing.assert_allclose(fig.data[3].y, views["GRU"].evals["eval_loss"], rtol=1e-6)
    assert fig.layout.yaxis.type == "log" and fig.layout.shapes[0].y0 == pytest.approx(1 / 6)
    traces = {"LSTM": latest(lstm), "GRU": latest(gru)}
    grad = plots.compare_grad_time_figure(traces, 1)
    assert [t.name for t in grad.data] == ["LSTM", "GRU"]
    np.testing.assert_allclose(grad.data[1].y, traces["GRU"].layers[0].grad_hidden[1], rtol=1e-6)
    assert grad.layout.yaxis.type == "log" and "layer 1" in grad.layout.yaxis.title.text
    for figure in (fig, grad):
        assert json.loads(go.Figure(figure.to_plotly_json()).to_json()) == json.loads(figure.to_json())


def test_compare_heldout_figure_draws_each_runs_loss_and_one_dashed_line_per_baseline(lstm, gru):
    curves = {"LSTM": (lstm.history.view().evals["step"], lstm.history.view().evals["eval_loss"]),
              "GRU": (gru.history.view().evals["step"], gru.history.view().evals["eval_loss"])}
    fig = plots.compare_heldout_figure(curves, [(1 / 6, "baseline: predict 1"), (0.5, "another task's")], "MSE")
    assert [t.name for t in fig.data] == ["LSTM", "GRU"] and fig.data[0].line.color != fig.data[1].line.color
    np.testing.assert_array_equal(fig.data[1].x, [5, 10, 15, 20])           # eval_every = 5, 20 steps
    np.testing.assert_allclose(fig.data[1].y, [gru.history.view().evals["eval_loss"][i] for i in range(4)], rtol=1e-6)
    assert [(s.y0, s.line.dash) for s in fig.layout.shapes] == [(pytest.approx(1 / 6), "dash"), (0.5, "dash")]
    assert [(a.text, a.x, a.xanchor) for a in fig.layout.annotations] == [
        ("baseline: predict 1", 0, "left"), ("another task's", 0, "left")]          # at the start
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.title.text == "MSE"
    flat = plots.compare_heldout_figure({"a": (np.array([1, 2]), np.array([0.0, 1.0]))}, [(1.0, "b")], "loss")
    assert flat.layout.yaxis.type == "linear"                             # a zero has no logarithm


def test_compare_gates_figure_puts_each_runs_gate_means_and_saturation_side_by_side(lstm, gru):
    lstm_trace, gru_trace = latest(lstm), latest(gru)
    summaries = {"LSTM": gate_summary(lstm_trace), "GRU": gate_summary(gru_trace), "RNN": {}}
    fig = plots.compare_gates_figure(summaries, {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"})
    assert len(fig.data) == 3 * 3 and fig.layout.barmode == "group"       # 3 panels x 3 runs
    assert [t.showlegend for t in fig.data] == [True] * 3 + [False] * 6
    assert list(fig.layout.xaxis.categoryarray) == ["input<br>i_t", "forget<br>f_t", "output<br>o_t", "reset<br>r_t",
                                                    "update<br>z_t"]
    mean, shut, open_ = fig.data[0], fig.data[3], fig.data[6]            # the LSTM's bars in each panel
    forget = lstm_trace.layers[0].gates["forget"]
    assert mean.x[1] == "forget<br>f_t" and mean.y[1] == pytest.approx(float(forget.mean()), rel=1e-5)
    assert shut.y[1] == pytest.approx(float((forget < 0.1).mean())) and shut.xaxis == "x2"
    assert open_.y[1] == pytest.approx(float((forget > 0.9).mean())) and open_.xaxis == "x3"
    update = gru_trace.layers[0].gates["update"]
    assert fig.data[1].x[1] == "update<br>z_t" and fig.data[1].y[1] == pytest.approx(float(update.mean()), rel=1e-5)
    assert len(fig.data[2].x) == 0                                          # a plain RNN: no gates, no bars
    assert [fig.layout[f"yaxis{i}"].range for i in ("", "2", "3")] == [(0, 1)] * 3


def test_compare_log_axes_label_each_power_of_ten_once_the_lines_span_two():
    steep, flat = synthetic_trace(6, 2), synthetic_trace(6, 2)
    steep.layers[0].grad_hidden[0] = np.logspace(-4, 0, 6, dtype=np.float32)   # 4 decades
    flat.layers[0].grad_hidden[0] = np.linspace(0.2, 0.9, 6, dtype=np.float32)
    both = plots.compare_grad_time_figure({"a": steep, "b": flat}, 0).layout.yaxis
    assert list(both.tickvals) == pytest.approx([1e-4, 1e-3, 1e-2, 0.1, 1])
    # 0.2 to 0.9: 0.2, 0.5 and 1, each times its power of ten
    assert list(plots.compare_grad_time_figure({"b": flat}, 0).layout.yaxis.ticktext) == ["0.2", "0.5", "1"]
    # the loss figure counts its baselines in: 0.3 to 5 spans over one power of ten
    loss = plots.compare_heldout_figure({"a": (np.array([1, 2]), np.array([0.3, 0.9]))}, [(5.0, "b")], "loss")
    assert list(loss.layout.yaxis.tickvals) == pytest.approx([0.2, 0.5, 1, 2, 5])     # from under 0.3 to 5
    assert list(loss.layout.yaxis.ticktext) == ["0.2", "0.5", "1", "2", "5"]


# -- the Sweep page's figures -------------------------------------------------------------------

def _sweep_rows():
    """A made-up sweep's rows (explorer.sweep.COLUMNS' result columns that the figures read):
    rnn and gru, T 10 and 50, three seeds; one rnn run failed, one gradient ratio underflowed."""
    import pandas as pd
    rng = np.random.default_rng(0)
    rows = []
    for cell in ("rnn", "gru"):
        for T in (10, 50):
            for seed in range(3):
                solved = None if (cell == "rnn" and T == 50) else 100 * (seed + 1)
                rows.append({"cell": cell, "seq_len": T, "seed": seed, "steps": 400, "status": "finished",
                             "eval_loss": float(rng.uniform(0.001, 0.2)), "baseline_loss": 1 / 6,
                             "solved_step": solved, "grad_ratio_init": float(rng.uniform(1e-6, 1)),
                             "grad_ratio_final": 0.0 if (cell, T, seed) == ("rnn", 50, 2) else float(rng.uniform(1e-9, 1)),
                             "run_id": f"{cell}-{T}-{seed}"})
    rows[1]["status"], rows[1]["eval_loss"] = "failed", None
    frame = pd.DataFrame(rows)
    frame["solved_step"] = frame["solved_step"].astype("Int64")
    return frame


def _by_name(figure, name):
    return next(t for t in figure.data if t.name == name)


def test_sweep_figures_draw_each_cells_median_and_range_over_seeds_and_every_run_as_a_point():
    frame = _sweep_rows()
    done = frame[frame["status"] != "failed"]
    loss = plots.sweep_loss_figure(frame)
    for cell, title in (("rnn", "RNN"), ("gru", "GRU")):
        rows = done[done["cell"] == cell].groupby("seq_len")["eval_loss"]
        median = _by_name(loss, f"{title} (median, range over seeds)")
        np.testing.assert_allclose(median.y, rows.median().to_numpy())
        band = [t for t in loss.data if t.legendgroup == cell and t.mode == "lines" and t.showlegend is False]
        np.testing.assert_allclose(band[0].y, rows.max().to_numpy())
        np.testing.assert_allclose(band[1].y, rows.min().to_numpy())
        runs = _by_name(loss, f"{cell} runs")
        assert [c[0] for c in runs.customdata] == list(done[done["cell"] == cell]["run_id"])   # a click opens it
    assert loss.layout.yaxis.type == "log" and loss.layout.shapes[0].y0 == pytest.approx(1 / 6)
    solved = plots.sweep_solved_figure(frame)
    runs = _by_name(solved, "rnn runs")
    unsolved = [s == "x" for s in runs.marker.symbol]
    assert unsolved == list(done[done["cell"] == "rnn"]["solved_step"].isna())      # x: not solved, at the budget
    assert all(y == 400 for y, x in zip(runs.y, unsolved) if x)
    assert solved.layout.yaxis.range == pytest.approx((0, 440.0))
    ratio = plots.sweep_grad_ratio_figure(frame)
    runs = _by_name(ratio, "rnn runs")
    assert np.isnan(runs.y[list(runs.customdata[:, 0]).index("rnn-50-2")])        # 0 has no logarithm: left out
    gru = done[done["cell"] == "gru"]
    np.testing.assert_allclose(_by_name(ratio, "GRU at initialisation").y,
                               gru.groupby("seq_len")["grad_ratio_init"].median().to_numpy(), rtol=1e-6)
    for figure in (loss, solved, ratio):
        validated = go.Figure(figure.to_plotly_json())
        assert json.loads(validated.to_json()) == json.loads(figure.to_json())
