"""Plotly figure builders: one pure function per plot of the app, each taking a Trace, a
HistoryView or plain arrays and returning a go.Figure, so a notebook can draw them too.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import get_colorscale, sample_colorscale
import plotly.io as pio
from plotly.colors import qualitative

from . import diagram
from .cells import CELLS
from .history import HistoryView
from .trace import Trace

# plotly_white's layout only: its per-trace-type defaults (colour scales for two dozen
# trace types) cost ~7 ms of validation per figure, and every builder sets its own.
_TEMPLATE = go.layout.Template(layout=pio.templates["plotly_white"].layout)
_FONT = {"size": 14}
_MARGIN = {"l": 60, "r": 20, "t": 40, "b": 50}
# The live charts' margins, fixed (see _live_axes): room for a y label of six characters and
# the axis title at 14 px (presentation mode scales them with its type: pages/charts.py).
LIVE_MARGIN = {"l": 76, "r": 20, "t": 40, "b": 56}
_LEGEND_ON_TOP = {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom"}
# The most tick labels an axis shows: more overlap, or cannot be read from the back of a room.
MAX_TICKS = 8
_NTICKS = 6     # Plotly's nticks on a linear axis: at most one more label than this
_COLORS = qualitative.Plotly
# Colour scales as explicit lists: figures are sent unvalidated, and plotly.js reads a name
# its own way ("Greys" runs the other way round there, "RdBu_r" does not exist).
_DIVERGING = get_colorscale("RdBu_r")       # blue negative, white zero, red positive
_SEQUENTIAL = get_colorscale("Viridis")
# White 0, black 1. Its row is short (90-160 px), and named "input x_t" already: three labels
# and no title (a title beside the bar was cut to "x_", above it it covered the top label).
_INPUT_SCALE = {"colorscale": get_colorscale("Greys"), "colorbar": {"title": {"text": ""}, "nticks": 3}}
# Long enough for any sequence the app traces, short enough for a browser to draw fast.
_MAX_TIME = 1000

TITLES = {
    "input": "input gate i_t", "forget": "forget gate f_t", "candidate": "candidate g_t (c̃_t)",
    "output": "output gate o_t", "reset": "reset gate r_t", "update": "update gate z_t",
    "cell": "cell state c_t", "hidden": "hidden state h_t",
}
# Blank characters would be invisible as tick labels.
_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥"}


def quantity_title(cell: str, quantity: str) -> str:
    """The quantity's name as the cell's equations write it, e.g. "forget gate f_t"."""
    return CELLS[cell].titles.get(quantity, TITLES[quantity])


# -- training history (the Train page) -------------------------------------------------

def loss_figure(view: HistoryView, baseline_loss: float, loss_name: str,
                baseline_name: str = "baseline", max_points: int = 1000) -> go.Figure:
    """Training loss per step and held-out loss, against the task's trivial baseline."""
    step, loss = _bucket_mean(view.steps["step"], max_points), _bucket_mean(view.steps["loss"], max_points)
    eval_step = _bucket_mean(view.evals["step"], max_points)
    eval_loss = _bucket_mean(view.evals["eval_loss"], max_points)
    log = all(bool(np.all(a > 0)) for a in (loss, eval_loss, np.float32(baseline_loss)))
    data = [_line("training loss", step, loss, width=1),
            _line("held-out loss", eval_step, eval_loss, markers=True)]
    layout = _live_axes(_axes("training step", loss_name, log), data, [loss, eval_loss, np.float32(baseline_loss)])
    _baseline_lines(layout, [(baseline_loss, _baseline_label(baseline_name, baseline_loss))], data)
    return _figure(data, layout, "loss", legend=_LEGEND_ON_TOP)


def metric_figure(view: HistoryView, baseline_metric: float, metric_name: str,
                  baseline_name: str = "baseline", max_points: int = 1000) -> go.Figure:
    """Training metric per step and held-out metric, against the task's trivial baseline."""
    data = [_line("training", _bucket_mean(view.steps["step"], max_points),
                  _bucket_mean(view.steps["metric"], max_points), width=1),
            _line("held-out", _bucket_mean(view.evals["step"], max_points),
                  _bucket_mean(view.evals["eval_metric"], max_points), markers=True)]
    layout = _live_axes(_axes("training step", metric_name, log=False), data, [])
    layout["yaxis"].update(_metric_range([d["y"] for d in data], baseline_metric))
    _baseline_lines(layout, [(baseline_metric, _baseline_label(baseline_name, baseline_metric))], data)
    return _figure(data, layout, "metric", legend=_LEGEND_ON_TOP)


def _metric_range(values: list[np.ndarray], baseline: float) -> dict:
    """A metric's axis from 0 (accuracies, errors and bits are never negative): before any
    value, 0 to 1 for a baseline that is a fraction, else to a round number over it."""
    shown = np.concatenate([np.asarray(v, np.float64).ravel() for v in values])
    shown = shown[np.isfinite(shown)]
    if len(shown):
        return {"rangemode": "tozero"} if shown.min() >= 0 else {}
    if not np.isfinite(baseline) or baseline < 0:
        return {}
    top = 1.0 if baseline <= 1 else min(m * 10.0 ** k for k in range(int(np.log10(baseline)) + 2)
                                         for m in (1, 2, 5) if m * 10.0 ** k >= 1.25 * baseline)
    return {"range": [0.0, top], "autorange": False}


def grad_norm_figure(view: HistoryView, clip: float = 0.0, max_points: int = 1000) -> go.Figure:
    """Global gradient norm ‖∇θL‖ per step, before (and, when clipping, after) clipping."""
    step = _bucket_mean(view.steps["step"], max_points)
    data = [_line("before clipping", step, _bucket_mean(view.steps["grad_norm"], max_points), width=1.5)]
    layout = _axes("training step", "‖∇θL‖ (global gradient norm)", log=True)
    if clip > 0:
        data.append(_line("after clipping", step, _bucket_mean(view.steps["grad_norm_clipped"], max_points),
                          width=1.5))
    _live_axes(layout, data, [d["y"] for d in data] + ([np.float32(clip)] if clip > 0 else []))
    if clip > 0:
        _baseline_lines(layout, [(clip, f"clip threshold ({clip:g})")], data)
    return _figure(data, layout, "grad-norm", legend=_LEGEND_ON_TOP)


def param_grad_figure(view: HistoryView, max_points: int = 1000) -> go.Figure:
    """One line per parameter tensor: the norm of its gradient per step.

    Each line has at most max_points points, and together at most 4·max_points, so that
    a deep model's dozen lines stay as light to send as the loss figure.
    """
    per_line = min(max_points, max(1, 4 * max_points // max(len(view.param_names), 1)))
    step = _bucket_mean(view.steps["step"], per_line)
    norms = np.ascontiguousarray(_bucket_mean(view.steps["param_grad_norm"], per_line).T)  # (params, steps)
    data = [_line(name.removeprefix("rnn."), step, norms[j], width=1.5)
            for j, name in enumerate(view.param_names)]
    layout = _live_axes(_axes("training step", "‖∂L/∂W‖ (per parameter)", log=True), data, [norms])
    if len(data) > len(_COLORS):
        layout["colorway"] = qualitative.Dark24
    return _figure(data, layout, "param-grad")


# -- one trace: gates, states and gradients (the Gates and Gradients pages) -----------------

def gate_figure(trace: Trace, sequence: int, layer: int, x_input: np.ndarray,
                quantities: list[str] | None = None, time_labels: list[str] | None = None,
                feature_names: list[str] | None = None, max_time: int = 1000,
                max_units: int = 256) -> go.Figure:
    """Heatmaps unit × time of each quantity, stacked under a picture of the input on one time axis.

    quantities: gate names, "cell" (LSTMs) and "hidden"; by default every gate in the
    equations' order, then c_t and h_t. Time is block-averaged down to at most max_time
    columns and units to at most max_units rows before drawing.
    """
    lt = trace.layers[layer]
    quantities = _quantities(trace, layer, quantities)
    T = lt.hidden.shape[1]
    data, rows, coloraxes = [], [], {}
    input_trace, input_row = _input_row(x_input, T, feature_names, max_time, max_units)
    data.append(_on_row(input_trace, 0))
    rows.append(input_row)
    for q in quantities:
        values = (lt.gates[q] if q in lt.gates else lt.cell if q == "cell" else lt.hidden)[sequence]  # (T, H)
        z = _heatmap(values.T, max_units, max_time)                                       # (units, time)
        kind, scale = _scale_kind(trace.cell, q), _colour_scale(trace.cell, q, z)
        if kind not in coloraxes:
            coloraxes[kind] = (f"coloraxis{len(coloraxes) + 2}", scale, len(rows))
        title = quantity_title(trace.cell, q)
        data.append(_on_row({"type": "heatmap", "z": z, "x": _centres(T, max_time),
                             "y": _centres(values.shape[1], max_units), "coloraxis": coloraxes[kind][0],
                             "hovertemplate": f"t %{{x}}<br>unit %{{y}}<br>%{{z:.3f}}<extra>{title}</extra>"},
                            len(rows)))
        rows.append({"title": title, "height": int(np.clip(60 + 4 * z.shape[0], 180, 260)),
                     "yaxis": _index_axis(values.shape[1], "unit")})
    layout = _stacked(rows, _time_axis(T, max_time, time_labels))
    domains = [layout[_axis_name("y", i)]["domain"] for i in range(len(rows))]
    layout["coloraxis"] = _with_colorbar(_INPUT_SCALE, domains[0])
    for name, scale, row in coloraxes.values():
        layout[name] = _with_colorbar(scale, domains[row])
    return _figure(data, layout, f"gates-layer{layer}")


def unit_lines_figure(trace: Trace, sequence: int, layer: int, units: list[int],
                      quantities: list[str] | None = None) -> go.Figure:
    """Lines over time for a few picked units, one row per quantity (same defaults as gate_figure)."""
    lt = trace.layers[layer]
    quantities = _quantities(trace, layer, quantities)
    H = lt.hidden.shape[2]
    if any(not 0 <= u < H for u in units):
        raise ValueError(f"units must be in 0..{H - 1}, got {list(units)}")
    T = lt.hidden.shape[1]
    t = _bucket_mean(np.arange(T), _MAX_TIME)
    data, rows = [], []
    for row, q in enumerate(quantities):
        values = (lt.gates[q] if q in lt.gates else lt.cell if q == "cell" else lt.hidden)[sequence]  # (T, H)
        lines = _bucket_mean(values[:, units], _MAX_TIME).T                                      # (units, T)
        for i, u in enumerate(units):
            data.append(_on_row({"type": "scatter", "mode": "lines", "x": t, "y": np.ascontiguousarray(lines[i]),
                                 "name": f"unit {u}", "legendgroup": f"unit {u}", "showlegend": row == 0,
                                 "line": {"color": _COLORS[i % len(_COLORS)], "width": 2}}, row))
        kind = _scale_kind(trace.cell, q)
        yaxis = {"range": [-0.02, 1.02]} if kind == "gate" else {"range": [-1.05, 1.05]} if kind == "tanh" else {}
        rows.append({"title": quantity_title(trace.cell, q), "height": 160, "yaxis": yaxis})
    layout = _stacked(rows, {"title": {"text": "time step t"}})
    layout["showlegend"] = True
    return _figure(data, layout, f"unit-lines-layer{layer}")


def saturation_figure(saturation: dict[str, tuple[np.ndarray, np.ndarray]], cell: str = "lstm") -> go.Figure:
    """Per gate, each unit's fraction of steps left-saturated (< 0.1) against right-saturated (> 0.9).

    Karpathy et al. (2015): units on the x+y=1 line are always saturated, units near the
    origin never. `cell` (the trace's) names the gates as its equations do.
    """
    n = max(len(saturation), 1)
    gap = 0.06
    width = (1 - gap * (n - 1)) / n
    data, layout, annotations, shapes = [], {}, [], []
    for i, (gate, (low, high)) in enumerate(saturation.items()):
        x0 = i * (width + gap)
        units = np.arange(len(low), dtype=np.float32)
        data.append(_on_row({"type": "scatter", "mode": "markers", "x": np.asarray(low, np.float32),
                             "y": np.asarray(high, np.float32), "customdata": units, "showlegend": False,
                             "marker": {"size": 8, "opacity": 0.7, "color": _COLORS[i % len(_COLORS)]},
                             "hovertemplate": "unit %{customdata}<br>< 0.1: %{x:.2f}<br>> 0.9: %{y:.2f}"
                                              "<extra></extra>"}, i))
        # A panel is a third of the width or less: 0, 0.5 and 1 fit under it at a projector's size.
        layout[_axis_name("x", i)] = {"domain": [x0, x0 + width], "range": [-0.02, 1.02], "anchor": _ref("y", i),
                                      "dtick": 0.5,
                                      "title": {"text": "fraction of steps < 0.1 (left-saturated)",
                                                "font": {"size": 12}}}
        layout[_axis_name("y", i)] = {"domain": [0, 1], "range": [-0.02, 1.02], "anchor": _ref("x", i),
                                      "title": {"text": "fraction > 0.9 (right-saturated)" if i == 0 else ""}}
        shapes.append({"type": "line", "xref": _ref("x", i), "yref": _ref("y", i), "x0": 0, "y0": 1,
                       "x1": 1, "y1": 0, "line": {"dash": "dot", "color": "grey", "width": 1}})
        annotations.append(_row_title(quantity_title(cell, gate), x0 + width / 2, 1, "center"))
    layout.update(shapes=shapes, annotations=annotations, height=380)
    return _figure(data, layout, "saturation")


def grad_time_figure(trace: Trace, sequence: int) -> go.Figure:
    """‖∂L/∂h_t‖ (solid) and, for LSTMs, ‖∂L/∂c_t‖ (dashed) against t, one colour per layer
    (named from 1, as the pages number layers for people)."""
    T = trace.grad_input.shape[1]
    t = _bucket_mean(np.arange(T), _MAX_TIME)
    data = []
    for k, lt in enumerate(trace.layers):
        color = _COLORS[k % len(_COLORS)]
        norms = _positive(_bucket_mean(lt.grad_hidden[sequence], _MAX_TIME))
        data.append(_line(f"‖∂L/∂h_t‖ layer {k + 1}", t, norms, color=color))
        if lt.grad_cell is not None:
            norms = _positive(_bucket_mean(lt.grad_cell[sequence], _MAX_TIME))
            data.append(_line(f"‖∂L/∂c_t‖ layer {k + 1}", t, norms, color=color, dash="dash"))
    return _figure(data, _axes("time step t", "gradient norm", log=True), "grad-time", legend=_LEGEND_ON_TOP)


def grad_history_figure(traces: list[tuple[int, Trace]], sequence: int, layer: int,
                        quantity: str = "grad_hidden") -> go.Figure:
    """log₁₀ of the gradient norm at each time step (x) for each recorded training step (y).

    As the model learns, the gradient usually reaches further back in time: the colour
    spreads to the left row by row.
    """
    if quantity not in ("grad_hidden", "grad_cell"):
        raise ValueError(f'quantity must be "grad_hidden" or "grad_cell", not {quantity!r}')
    symbol = "h_t" if quantity == "grad_hidden" else "c_t"
    rows = [getattr(tr.layers[layer], quantity) for _, tr in traces]
    if any(r is None for r in rows):
        raise ValueError("grad_cell exists only for LSTM cells")
    lengths = {r.shape[1] for r in rows}
    if len(lengths) > 1:
        raise ValueError(f"the traces have different sequence lengths {sorted(lengths)}")
    T = lengths.pop() if lengths else 0
    log_norms = np.stack([_log10(r[sequence]) for r in rows]) if rows else np.zeros((0, 0), np.float32)
    data = [{"type": "heatmap", "z": _heatmap(log_norms, len(log_norms), _MAX_TIME),
             "x": _centres(T, _MAX_TIME), "y": np.array([step for step, _ in traces], np.int32),
             "coloraxis": "coloraxis",
             "hovertemplate": f"t %{{x}}<br>step %{{y}}<br>log₁₀ ‖∂L/∂{symbol}‖ = %{{z:.2f}}<extra></extra>"}]
    layout = _axes("time step t", "training step", log=False)
    layout["yaxis"]["type"] = "category"   # one equal row per trace, however unevenly they were kept
    layout["coloraxis"] = {"colorscale": _SEQUENTIAL,
                           "colorbar": {"title": {"text": f"log₁₀ ‖∂L/∂{symbol}‖", "side": "right"},
                                        "thickness": 14}}
    return _figure(data, layout, f"grad-history-layer{layer}")


def weight_share_figure(trace: Trace, sequence: int, layer: int, blocks: list[str],
                        salient: dict[int, str] | None = None) -> go.Figure:
    """Where the recurrent weight gradient comes from in time: each chosen block's share of
    ‖δᵃ_t h_{t−1}ᵀ‖ at every step t (log axis: a vanishing gradient leaves the early steps
    orders of magnitude below the late ones). The task's salient steps (the adding problem's
    markers) are drawn as dashed lines."""
    shares = trace.layers[layer].weight_grad_share
    T = trace.grad_input.shape[1]
    t = _bucket_mean(np.arange(T), _MAX_TIME)
    data = [_line(_block_title(trace.cell, block), t, _positive(_bucket_mean(shares[block][sequence], _MAX_TIME)),
                  color=_COLORS[i % len(_COLORS)], markers=T <= 60)
            for i, block in enumerate(blocks)]
    layout = _axes("time step t", "share of the weight gradient", log=True)
    _salient_lines(layout, salient)
    return _figure(data, layout, f"weight-share-layer{layer}", legend=_LEGEND_ON_TOP)


def weight_share_history_figure(traces: list[tuple[int, Trace]], sequence: int, layer: int, block: str,
                                salient: dict[int, str] | None = None) -> go.Figure:
    """log₁₀ of one block's weight-gradient share at each time step (x) for each recorded
    training step (y): whether the learning signal reaches the early steps as training goes."""
    kept = [(step, tr) for step, tr in traces if block in tr.layers[layer].weight_grad_share]
    rows = [tr.layers[layer].weight_grad_share[block][sequence] for _, tr in kept]
    T = rows[0].shape[0] if rows else 0
    z = np.stack([_log10(r) for r in rows]) if rows else np.zeros((0, 0), np.float32)
    name = _block_title(kept[0][1].cell if kept else "lstm", block)
    data = [{"type": "heatmap", "z": _heatmap(z, len(z), _MAX_TIME), "x": _centres(T, _MAX_TIME),
             "y": np.array([step for step, _ in kept], np.int32), "coloraxis": "coloraxis",
             "hovertemplate": f"t %{{x}}<br>step %{{y}}<br>log₁₀ share ({name}) = %{{z:.2f}}<extra></extra>"}]
    layout = _axes("time step t", "training step", log=False)
    layout["yaxis"]["type"] = "category"
    layout["coloraxis"] = {"colorscale": _SEQUENTIAL,
                           "colorbar": {"title": {"text": "log₁₀ share", "side": "right"}, "thickness": 14}}
    _salient_lines(layout, salient)
    return _figure(data, layout, f"weight-share-history-layer{layer}")


def _block_title(cell: str, block: str) -> str:
    return "W_hh" if block == "W_hh" else quantity_title(cell, block)


def _salient_lines(layout: dict, salient: dict[int, str] | None) -> None:
    """A dashed line at each of a task's salient steps ({t: what it is}, Task.salient_steps),
    named at its top along the line, on an opaque ground (the data lines cross it)."""
    for t, name in (salient or {}).items():
        layout.setdefault("shapes", []).append(
            {"type": "line", "xref": "x", "yref": "paper", "x0": t, "x1": t, "y0": 0, "y1": 1,
             "line": {"dash": "dash", "color": "#d62728", "width": 2}})
        layout.setdefault("annotations", []).append(_label(
            f"{name} t = {t}", x=t, y=1.0, xref="x", yref="paper", xanchor="right", yanchor="top", textangle=-90,
            font={"size": 13, "color": "#d62728"}))


def input_grad_figure(trace: Trace, sequence: int, x_input: np.ndarray,
                      time_labels: list[str] | None = None,
                      feature_names: list[str] | None = None) -> go.Figure:
    """Input connectivity: ‖∂L/∂x_t‖ per time step as bars, under a picture of the input."""
    T = trace.grad_input.shape[1]
    input_trace, input_row = _input_row(x_input, T, feature_names, _MAX_TIME, 256)
    bars = {"type": "bar", "x": _centres(T, _MAX_TIME), "showlegend": False,
            "y": _positive(_bucket_mean(trace.grad_input[sequence], _MAX_TIME)),
            "marker": {"color": _COLORS[0]}, "hovertemplate": "t %{x}<br>‖∂L/∂x_t‖ = %{y:.3g}<extra></extra>"}
    rows = [input_row, {"title": "input connectivity ‖∂L/∂x_t‖", "height": 260,
                        "yaxis": {"type": "log", "title": {"text": "‖∂L/∂x_t‖"}}}]
    data = [_on_row(input_trace, 0), _on_row(bars, 1)]
    layout = _stacked(rows, _time_axis(T, _MAX_TIME, time_labels))
    layout["coloraxis"] = _with_colorbar(_INPUT_SCALE, layout["yaxis"]["domain"])
    layout["bargap"] = 0.1
    return _figure(data, layout, "input-grad")


def singular_values_figure(spectra: list[dict]) -> go.Figure:
    """Singular values of recurrent weight blocks against the bound 1/γ of Pascanu et al. (2013).

    Each spectrum: {"layer": int (from 0), "block": str, "values": descending array, "bound": 1/γ};
    the legend numbers layers from 1, as the pages do.
    """
    data, bounds, shown = [], {}, []
    for i, s in enumerate(spectra):
        values = np.asarray(s["values"], np.float32)
        shown.append(values[values > 0])
        data.append({"type": "scatter", "mode": "lines+markers", "name": f"layer {s['layer'] + 1} {s['block']}",
                     "x": np.arange(1, len(values) + 1, dtype=np.float32), "y": _positive(values),
                     "line": {"color": _COLORS[i % len(_COLORS)]}, "marker": {"size": 5}})
        bounds[float(s["bound"])] = None
    layout = _axes("index (largest first)", "singular value σᵢ", log=True)
    layout["yaxis"].update(_log_ticks([*shown, np.array(list(bounds), np.float32)]))
    _baseline_lines(layout, [(b, _bound_label(b)) for b in bounds], data)
    layout["title"] = {"text": "Pascanu et al. (2013): if the largest σ is below 1/γ, the gradient must vanish",
                       "font": {"size": 14}}
    return _figure(data, layout, "singular-values")


# -- lessons: several runs side by side -------------------------------------------------

def whatif_output_figure(quantity: str, target: np.ndarray, outputs: dict[str, np.ndarray],
                         steps: tuple[int, int] | None, T: int) -> go.Figure:
    """What-if: the model's output against the target for one sequence, as trained and with the
    clamp (explorer.whatif.WhatIf.series). One value a step is drawn as lines over t, the
    clamped steps shaded; a task with one output per sequence (at its last step) as one bar
    each, its value written on it. Either way the values sit inside the axes, with room."""
    colors = {"target": "#b0b0b0", "as trained": _COLORS[0], "clamped": _COLORS[1]}
    shown = [("target", target)] if not np.isnan(np.asarray(target, np.float64)).all() else []   # none: your model
    series = [(name, np.asarray(y, np.float64)) for name, y in (*shown, *outputs.items())]
    values = np.concatenate([y for _, y in series])
    values = values[np.isfinite(values)]
    if len(target) == 1:
        return _whatif_bars(quantity, series, colors, values, T)
    t = np.arange(T - len(target), T)
    data = []
    for name, y in series:
        # The target as a wide grey band under the lines: an output on target still shows it.
        # The clamped line dashed: where it equals the line as trained, that one shows through.
        data.append(_line(name, t, y, color=colors.get(name), width={"target": 7, "clamped": 3}.get(name, 2),
                          dash="dash" if name == "clamped" else None))
    layout = _axes("time step t", quantity, log=False)
    layout["xaxis"]["range"] = [-0.5, T - 0.5]
    whole = bool(len(values)) and bool(np.all(values == np.round(values)))     # levels of nesting
    if len(values):
        low, high = float(values.min()), float(values.max())
        pad = max(0.08 * (high - low), 0.3 if whole else 0.05 * max(abs(high), 1e-3))
        layout["yaxis"]["range"] = [low - pad, high + pad]
    if whole and len(values) and values.max() - values.min() < MAX_TICKS:
        layout["yaxis"]["dtick"] = 1
    _clamped_band(layout, steps, T)
    return _figure(data, layout, "whatif-output", legend=_LEGEND_ON_TOP)


def _whatif_bars(quantity: str, series: list[tuple[str, np.ndarray]], colors: dict[str, str],
                 values: np.ndarray, T: int) -> go.Figure:
    """One output per sequence: a bar each for the target and the outputs, from 0, with room
    above (and below, for a negative one) for the number written on it."""
    data = [{"type": "bar", "x": [name for name, _ in series], "y": [float(y[-1]) for _, y in series],
             "marker": {"color": [colors.get(name, _COLORS[2]) for name, _ in series]}, "showlegend": False,
             "text": [f"{float(y[-1]):.3g}" for _, y in series], "textposition": "outside", "cliponaxis": False,
             "hovertemplate": "%{x}: %{y:.4g}<extra></extra>"}]
    low, high = (min(0.0, float(values.min())), max(0.0, float(values.max()))) if len(values) else (0.0, 1.0)
    pad = 0.18 * ((high - low) or 1.0)                   # a line of text at the end of the longest bar
    layout = _axes(f"one output per sequence, at its last step (t = {T - 1})", quantity, log=False)
    layout["xaxis"].update(type="category", categoryorder="array", categoryarray=[name for name, _ in series])
    layout["yaxis"].update(range=[low - (pad if low < 0 else 0), high + pad], zeroline=True)
    layout["bargap"] = 0.4
    return _figure(data, layout, "whatif-output-bars")


def whatif_grad_figure(traces: dict[str, Trace], sequence: int, layer: int,
                       steps: tuple[int, int] | None) -> go.Figure:
    """What-if: ‖∂L/∂h_t‖ of one layer against t, as trained and with the clamp (log axis);
    the clamped steps are shaded."""
    data = []
    for i, (name, tr) in enumerate(traces.items()):
        norms = _positive(_bucket_mean(tr.layers[layer].grad_hidden[sequence], _MAX_TIME))
        T = tr.grad_input.shape[1]
        data.append(_line(f"‖∂L/∂h_t‖ {name}", _bucket_mean(np.arange(T), _MAX_TIME), norms,
                          color=_COLORS[i], width=3 if name == "clamped" else 2,
                          dash="dash" if name == "clamped" else None))
    layout = _axes("time step t", "gradient norm", log=True)
    _clamped_band(layout, steps, T)
    return _figure(data, layout, "whatif-grad", legend=_LEGEND_ON_TOP)


def _clamped_band(layout: dict, steps: tuple[int, int] | None, T: int) -> None:
    """The clamped steps shaded, named at the top left on an opaque ground."""
    start, stop = steps if steps is not None else (0, T)
    layout.setdefault("shapes", []).append(
        {"type": "rect", "xref": "x", "yref": "paper", "x0": start - 0.5, "x1": stop - 0.5, "y0": 0, "y1": 1,
         "fillcolor": "gold", "opacity": 0.2, "line": {"width": 0}, "layer": "below"})
    layout.setdefault("annotations", []).append(_label("clamped", x=start - 0.5, y=1.0, xref="x", yref="paper",
                                                       xanchor="left", yanchor="top"))


_GATE_SCALE = [[0.0, "#ffffff"], [1.0, "#6baed6"]]     # σ gates 0..1: white to a blue light enough for black text
# Wide enough for a label over a number of diagram.MAX_CHARS characters at the builders' 14 px.
_NODE_SIZE = {"gate": 76, "tanh": 76, "state": 76, "op": 26}
_X_SHOWN = 3                  # the input's features written beside x_t: a vector does not fit inside


def cell_diagram_figure(trace: Trace, sequence: int, layer: int, unit: int | None, t: int,
                        x_input: np.ndarray | None = None) -> go.Figure:
    """The cell as the classic diagram (explorer/diagram.py) with one unit's real values (or,
    unit None, the mean over units) at step t: each gate's value as its colour and number, the
    cell-state line from c_{t−1} to c_t. One step only: the page's clock (its slider and ▶ Play)
    moves the diagram and the equations together. x_input (time, features): the layer's input,
    written beside x_t."""
    shape = diagram.layout(trace.cell)
    at = {node.name: node for node in shape.nodes}
    who = f"unit {unit}" if unit is not None else "mean over units"
    numbers = diagram.values(trace, sequence, layer, t, unit)
    text, colours, custom = [], [], []
    for node in shape.nodes:
        value = numbers.get(node.name)
        if node.name == "x" and x_input is not None and np.shape(x_input)[-1] == 1:
            value = float(np.asarray(x_input)[t][0])          # one feature: its number fits inside
        text.append(f"<b>{node.label}</b>" + (f"<br>{diagram.compact(value)}" if value is not None else ""))
        custom.append(np.nan if value is None else value)
        colours.append(_node_colour(node.kind, value))
    data = [{"type": "scatter", "mode": "markers+text", "name": "cell", "hoverinfo": "skip", "showlegend": False,
             "x": [n.x for n in shape.nodes], "y": [n.y for n in shape.nodes], "text": text, "customdata": custom,
             "textposition": [n.text_at for n in shape.nodes],
             "textfont": {"color": "#111"},     # the layout's size: larger in presentation mode
             "marker": {"symbol": ["square" if n.kind in ("gate", "tanh") else "circle" for n in shape.nodes],
                        "size": [_NODE_SIZE[n.kind] for n in shape.nodes], "color": colours,
                        "line": {"color": "#333", "width": 1.5}}}]
    if x_input is not None and np.shape(x_input)[-1] > 1:
        features = np.asarray(x_input)[t]                                         # (features,)
        shown = ", ".join(diagram.compact(v) for v in features[:_X_SHOWN])
        node = at["x"]
        data.append({"type": "scatter", "mode": "text", "name": "x_t", "hoverinfo": "skip", "showlegend": False,
                     "x": [node.x + 0.45], "y": [node.y], "textposition": "middle right", "textfont": {"color": "#111"},
                     "text": [f"({shown}{', …' if len(features) > _X_SHOWN else ''})"]})
    arrows = [{"x": at[target].x, "y": at[target].y, "ax": at[source].x, "ay": at[source].y,
               "xref": "x", "yref": "y", "axref": "x", "ayref": "y", "text": "", "showarrow": True,
               "arrowhead": 2, "arrowsize": 1.2, "arrowwidth": 2.2 if not dashed else 1.4,
               "arrowcolor": "#555" if not dashed else "#d62728", "standoff": _NODE_SIZE[at[target].kind] / 2 + 2,
               "startstandoff": _NODE_SIZE[at[source].kind] / 2 + 2, "opacity": 1.0 if not dashed else 0.7}
              for source, target, dashed in shape.arrows]
    # The inputs meet on one bus along the bottom, and the bus feeds each gate from below.
    bus_start = min(at[name].x for name in shape.fed) - 1.0 if shape.fed else 0.0
    arrows += [{"x": bus_start, "y": diagram.BUS_Y, "ax": at[name].x, "ay": at[name].y, "xref": "x", "yref": "y",
                "axref": "x", "ayref": "y", "text": "", "showarrow": True, "arrowhead": 0, "arrowwidth": 2.2,
                "arrowcolor": "#555", "startstandoff": _NODE_SIZE[at[name].kind] / 2 + 2}
               for name in shape.feeding]
    arrows += [{"x": at[name].x, "y": at[name].y, "ax": at[name].x, "ay": diagram.BUS_Y, "xref": "x", "yref": "y",
                "axref": "x", "ayref": "y", "text": "", "showarrow": True, "arrowhead": 2, "arrowsize": 1.2,
                "arrowwidth": 2.2, "arrowcolor": "#555", "standoff": _NODE_SIZE[at[name].kind] / 2 + 2}
               for name in shape.fed]
    bus = [{"type": "line", "xref": "x", "yref": "y", "x0": bus_start, "x1": max(at[n].x for n in shape.fed),
            "y0": diagram.BUS_Y, "y1": diagram.BUS_Y, "line": {"color": "#555", "width": 2.2}}] if shape.fed else []
    hidden_axis = {"visible": False, "fixedrange": True}
    layout = {"title": {"text": f"{CELLS[trace.cell].title}, layer {layer + 1}, {who}, t = {t}"}, "height": 520,
              "annotations": arrows, **({"shapes": bus} if bus else {}),
              "xaxis": {**hidden_axis, "range": [-0.3, 12.3]}, "yaxis": {**hidden_axis, "range": [-0.4, 7.0]},
              "margin": {"l": 10, "r": 10, "t": 50, "b": 10},
              # Its numbers sit inside markers of a fixed size in pixels: a projector's larger
              # type (pages/charts.py) would spill them out, so its text keeps these sizes.
              "meta": {"fixed_text": True}}
    return _figure(data, layout, f"cell-diagram-{trace.cell}")


def _node_colour(kind: str, value: float | None) -> str:
    """A gate's colour from its value (σ: 0..1; tanh and states: −1..1, clipped); ops, and a
    value that is not a number (a diverged run's), are grey."""
    if value is None or kind == "op" or np.isnan(value):
        return "#eeeeee"
    if kind == "gate":
        return sample_colorscale(_GATE_SCALE, [float(np.clip(value, 0.0, 1.0))])[0]
    return sample_colorscale(_DIVERGING, [0.2 + 0.6 * (float(np.clip(value, -1.0, 1.0)) + 1) / 2])[0]


def compare_loss_figure(views: dict[str, HistoryView], baseline_loss: float, loss_name: str,
                        baseline_name: str = "baseline", max_points: int = 400) -> go.Figure:
    """Training loss (thin) and held-out loss (thick, markers) of each run, one colour per run,
    against the task's baseline: the lesson's variants side by side."""
    data, positive = [], baseline_loss > 0
    for k, (label, view) in enumerate(views.items()):
        color = _COLORS[k % len(_COLORS)]
        loss = _bucket_mean(view.steps["loss"], max_points)
        eval_loss = _bucket_mean(view.evals["eval_loss"], max_points)
        positive = positive and bool(np.all(loss > 0)) and bool(np.all(eval_loss > 0))
        train = _line(f"{label}: training", _bucket_mean(view.steps["step"], max_points), loss, width=1, color=color)
        train["opacity"] = 0.45
        data += [train, _line(f"{label}: held-out", _bucket_mean(view.evals["step"], max_points), eval_loss,
                              markers=True, color=color)]
    layout = _axes("training step", loss_name, positive)
    _baseline_lines(layout, [(baseline_loss, _baseline_label(baseline_name, baseline_loss))], data)
    return _figure(data, layout, "compare-loss", legend=_LEGEND_ON_TOP)


def compare_grad_time_figure(traces: dict[str, Trace], sequence: int, layer: int = 0) -> go.Figure:
    """‖∂L/∂h_t‖ against t for each run's newest probe, one colour per run (log y): where
    one run's line falls towards t = 0 by orders of magnitude, its gradient vanishes."""
    data = []
    for k, (label, trace) in enumerate(traces.items()):
        grad = trace.layers[layer].grad_hidden[sequence]                       # (time,)
        data.append(_line(label, _bucket_mean(np.arange(len(grad)), _MAX_TIME),
                          _positive(_bucket_mean(grad, _MAX_TIME)), color=_COLORS[k % len(_COLORS)]))
    layout = _axes("time step t", f"‖∂L/∂h_t‖ (layer {layer + 1})", log=True)
    return _figure(data, layout, "compare-grad-time", legend=_LEGEND_ON_TOP)


def compare_heldout_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], baselines: list[tuple[float, str]],
                           y_title: str, max_points: int = 400) -> go.Figure:
    """Held-out loss (steps, values) of each run, one colour per run, with a dashed line per
    baseline (value, label); a log axis where every value is positive."""
    data = []
    for k, (label, (step, loss)) in enumerate(curves.items()):
        data.append(_line(label, _bucket_mean(step, max_points), _bucket_mean(loss, max_points), markers=True,
                          color=_COLORS[k % len(_COLORS)]))
    log = all(bool(np.all(np.asarray(y) > 0)) for _, y in curves.values()) and all(v > 0 for v, _ in baselines)
    layout = _axes("training step", y_title, log)
    # labelled at the left, where the losses start: at the right, they close in on it
    _baseline_lines(layout, baselines, data, at="start")
    return _figure(data, layout, "compare-heldout", legend=_LEGEND_ON_TOP)


def compare_gates_figure(summaries: dict[str, dict[str, tuple[float, float, float]]],
                         cells: dict[str, str]) -> go.Figure:
    """Three panels side by side, gates along x and one bar per run: each gate's mean value,
    the fraction of its values below 0.1 (shut) and above 0.9 (open).

    summaries: run label -> gate -> (mean, fraction < 0.1, fraction > 0.9), as
    explorer.compare.gate_summary gives them; cells: run label -> its cell, which names the
    gates (an LSTM's input/forget/output, a GRU's reset/update). A run with no gates has no bars.
    """
    names: dict[str, str] = {}                         # gate -> its title, first cell to have it
    for label, gates in summaries.items():
        for gate in gates:
            names.setdefault(gate, quantity_title(cells[label], gate).replace(" gate", "").replace(" ", "<br>", 1))
    panels = ("mean gate value", "fraction of values < 0.1 (shut)", "fraction > 0.9 (open)")
    gap = 0.07
    width = (1 - 2 * gap) / 3
    data, layout = [], {}
    for i, title in enumerate(panels):
        x0 = i * (width + gap)
        for k, (label, gates) in enumerate(summaries.items()):
            data.append(_on_row({"type": "bar", "name": label, "legendgroup": label, "showlegend": i == 0,
                                 "x": [names[g] for g in gates], "y": [values[i] for values in gates.values()],
                                 "marker": {"color": _COLORS[k % len(_COLORS)]},
                                 "hovertemplate": f"{label}<br>%{{x}}: %{{y:.2f}}<extra></extra>"}, i))
        layout[_axis_name("x", i)] = {"domain": [x0, x0 + width], "anchor": _ref("y", i), "type": "category",
                                      "categoryorder": "array", "categoryarray": list(names.values()),
                                      "tickangle": 0}
        layout[_axis_name("y", i)] = {"domain": [0, 1], "range": [0, 1], "anchor": _ref("x", i),
                                      "title": {"text": title}}
    layout.update(barmode="group", bargap=0.25, height=400)
    return _figure(data, layout, "compare-gates", legend=_LEGEND_ON_TOP)


# -- sweeps (the Sweep page) ---------------------------------------------------------------
# Each takes explorer.sweep's DataFrame (one row per run). Every run is a point whose
# customdata is [run_id, seed], so a click on it can open that run; per cell, a line through
# the median over seeds and a band over their range.

def sweep_loss_figure(frame, loss_name: str = "held-out loss") -> go.Figure:
    """Held-out loss against sequence length, per cell, with the task's baseline dashed."""
    done = frame[frame["status"] != "failed"]
    values = done["eval_loss"].to_numpy(np.float64)
    log = bool(len(values)) and bool(np.all(values > 0))
    data = _sweep_traces(done, "eval_loss", log)
    layout = _axes("sequence length T", loss_name, log)
    baselines = {}                   # one line per task's baseline (the same float, up to rounding)
    for value in done["baseline_loss"].dropna():
        baselines.setdefault(round(float(value), 9), float(value))
    _baseline_lines(layout, [(b, _baseline_label("baseline", b)) for b in sorted(baselines.values())], data,
                    at="start")
    return _figure(data, layout, "sweep-loss", legend=_LEGEND_ON_TOP)


def sweep_solved_figure(frame) -> go.Figure:
    """The first held-out eval below half the baseline, against sequence length, per cell. A
    run that never got there is an x at its step budget, and counts at the budget in the median
    (so a median at the budget says: most seeds did not solve it)."""
    done = frame[frame["status"] != "failed"].copy()
    done["solved_or_budget"] = done["solved_step"].astype("Float64").fillna(done["steps"].astype("Float64")).astype(float)
    data = _sweep_traces(done, "solved_or_budget", log=False, unsolved=done["solved_step"].isna().to_numpy())
    layout = _axes("sequence length T", "steps to solve (held-out loss < baseline / 2)", log=False)
    budgets = sorted(set(done["steps"]))
    if budgets:                       # from 0, with the budget line (and its x marks) at the top
        layout["yaxis"]["range"] = [0, 1.1 * float(budgets[-1])]
    _baseline_lines(layout, [(float(b), f"step budget ({b}): x = not solved") for b in budgets], data,
                    at="start")
    return _figure(data, layout, "sweep-solved", legend=_LEGEND_ON_TOP)


def sweep_grad_ratio_figure(frame) -> go.Figure:
    """‖∂L/∂h_0‖ / ‖∂L/∂h_T‖ at the end of training against sequence length, per cell, on a log
    axis; dotted, each cell's median at initialisation. A ratio that underflowed to 0 has no
    logarithm and is left out."""
    done = frame[frame["status"] != "failed"]
    data = _sweep_traces(done, "grad_ratio_final", log=True)
    for k, cell in enumerate(dict.fromkeys(done["cell"])):
        rows = done[done["cell"] == cell]
        lengths = sorted(set(rows["seq_len"]))
        initial = [np.nanmedian(_positive(rows[rows["seq_len"] == t]["grad_ratio_init"].to_numpy(np.float64)))
                   if np.any(rows[rows["seq_len"] == t]["grad_ratio_init"].to_numpy(np.float64) > 0) else np.nan
                   for t in lengths]
        data.append(_line(f"{_cell_title(cell)} at initialisation", np.array(lengths), np.array(initial, np.float64), width=1.5,
                          color=_COLORS[k % len(_COLORS)], dash="dot"))
    layout = _axes("sequence length T", "‖∂L/∂h_0‖ / ‖∂L/∂h_T‖ (after training)", log=True)
    layout["yaxis"].update(_log_ticks([_positive(done[c].to_numpy(np.float64))
                                       for c in ("grad_ratio_final", "grad_ratio_init")]))
    return _figure(data, layout, "sweep-grad-ratio", legend=_LEGEND_ON_TOP)


def _sweep_traces(done, column: str, log: bool, unsolved: np.ndarray | None = None) -> list[dict]:
    """Per cell: the range over seeds as a band, the median as a line, every run as a point."""
    data = []
    for k, cell in enumerate(dict.fromkeys(done["cell"])):
        color = _COLORS[k % len(_COLORS)]
        mask = (done["cell"] == cell).to_numpy()
        rows = done[mask]
        values = rows[column].to_numpy(np.float64)
        if log:
            values = _positive(values).astype(np.float64)
        lengths = np.array(sorted(set(rows["seq_len"])))
        per_length = [values[(rows["seq_len"] == t).to_numpy()] for t in lengths]
        seen = [v[np.isfinite(v)] for v in per_length]
        low = np.array([v.min() if len(v) else np.nan for v in seen])
        high = np.array([v.max() if len(v) else np.nan for v in seen])
        median = np.array([np.median(v) if len(v) else np.nan for v in seen])
        data.append({"type": "scatter", "mode": "lines", "x": lengths, "y": high, "line": {"width": 0},
                     "legendgroup": cell, "showlegend": False, "hoverinfo": "skip"})
        data.append({"type": "scatter", "mode": "lines", "x": lengths, "y": low, "line": {"width": 0},
                     "fill": "tonexty", "fillcolor": _translucent(color), "legendgroup": cell,
                     "showlegend": False, "hoverinfo": "skip"})
        median_line = _line(f"{_cell_title(cell)} (median, range over seeds)", lengths, median, markers=False, color=color)
        median_line["legendgroup"] = cell
        data.append(median_line)
        symbols = ["x" if unsolved is not None and unsolved[mask][i] else "circle" for i in range(len(rows))]
        data.append({"type": "scatter", "mode": "markers", "name": f"{cell} runs", "legendgroup": cell,
                     "showlegend": False, "x": rows["seq_len"].to_numpy(), "y": values,
                     "marker": {"color": color, "size": 9, "symbol": symbols, "line": {"width": 1, "color": "white"}},
                     "customdata": np.stack([rows["run_id"].fillna("").to_numpy(object),
                                             rows["seed"].to_numpy(object)], axis=1),
                     "hovertemplate": f"{_cell_title(cell)}, T = %{{x}}, seed %{{customdata[1]}}: %{{y:.4g}}"
                                      "<br>click to open this run<extra></extra>"})
    return data


def _cell_title(cell: str) -> str:
    return CELLS[cell].title if cell in CELLS else cell


def _translucent(color: str, alpha: float = 0.18) -> str:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


# -- helpers --------------------------------------------------------------------------

def _figure(data: list[dict], layout: dict, uirevision: str, legend: dict | None = None) -> go.Figure:
    base = {"template": _TEMPLATE, "font": _FONT, "margin": layout.pop("margin", _MARGIN), "uirevision": uirevision}
    if legend is not None:
        base["legend"] = legend
    _readable_axes(data, layout)
    # Unvalidated: plotly's property validation took three quarters of the time of every
    # live refresh (the tests validate every builder's output instead).
    return go.Figure(data=data, layout={**base, **layout}, _validate=False)


def _live_axes(layout: dict, data: list[dict], values: list[np.ndarray],
               empty: tuple[float, float] = (0.1, 10.0)) -> dict:
    """Axes for a chart of training steps redrawn on every live refresh, cheap to redraw: fixed
    margins (LIVE_MARGIN) instead of Plotly's automargin, _NTICKS on a linear axis and the
    legible log ticks of _log_ticks over values (`empty`: its range with none) on a log one;
    before the first step (no trace in data has a point), steps 0 to 10, not Plotly's −1 to
    6. Plotly replots a chart whole whenever its data change, measuring every tick label
    and, with automargin, fitting the margins to them again; with these the browser drew the
    Train page's four line charts 2.4 times a second on about 0.6 of a core instead of 0.73
    (docs/PERFORMANCE.md)."""
    layout["xaxis"].update(nticks=_NTICKS, automargin=False)
    if not any(len(trace["x"]) for trace in data):
        layout["xaxis"]["range"] = [0, 10]
    y = layout["yaxis"]
    y["automargin"] = False
    y.update(_log_ticks(values, empty) if y["type"] == "log" else {"nticks": _NTICKS})
    layout["margin"] = LIVE_MARGIN
    return layout


def _axes(x_title: str, y_title: str, log: bool) -> dict:
    return {"xaxis": {"title": {"text": x_title}},
            "yaxis": {"title": {"text": y_title}, "type": "log" if log else "linear"}}


def _line(name: str, x: np.ndarray, y: np.ndarray, width: float = 2, markers: bool = False,
          color: str | None = None, dash: str | None = None) -> dict:
    line = {"width": width}
    if color is not None:
        line["color"] = color
    if dash is not None:
        line["dash"] = dash
    trace = {"type": "scatter", "mode": "lines+markers" if markers else "lines", "name": name,
             "x": x, "y": y, "line": line}
    if markers:
        trace["marker"] = {"size": 6}
    return trace


def _log_ticks(values: list[np.ndarray], empty: tuple[float, float] = (0.1, 10.0)) -> dict:
    """Explicit ticks and range for a log axis over values, legible from the back of a room:
    at most MAX_TICKS labels. Over two powers of ten or more, powers of ten (every k-th one
    where there are too many: ‖∂L/∂h_t‖ can span twenty); under two, 1, 2 and 5 times each
    power, or evenly spaced round numbers (a narrow log axis is nearly linear) where 1-2-5
    gives fewer than three labels or spans half as many decades again. Explicit, because
    Plotly picks its own in the browser, and labelled every power, overlapping. The range
    runs from the tick at or below the smallest value to the one at or above the largest
    (the whole powers of ten around them when labelling every k-th), a little past them.
    No values: `empty` (lo, hi); one value v: v/10 to 2v (a loss or a norm falls from where
    it starts)."""
    shown = np.concatenate([np.asarray(v, np.float64).ravel() for v in values]) if values else np.zeros(0)
    shown = shown[np.isfinite(shown) & (shown > 0)]
    low, high = (shown.min(), shown.max()) if len(shown) else empty
    if high <= low:
        low, high = low / 10, high * 2
    lo, hi = np.log10(low), np.log10(high)
    if hi - lo >= 2:
        ticks, first, last = _decades(lo, hi)
    else:
        near = range(int(np.floor(lo)) - 1, int(np.ceil(hi)) + 1)
        candidates = [m * 10.0 ** k for k in near for m in (1, 2, 5)]
        below = max(c for c in candidates if c <= low * (1 + _ROUNDING))
        above = min(c for c in candidates if c >= high * (1 - _ROUNDING))
        ticks = [c for c in candidates if below <= c <= above]
        steps = _round_steps(low, high)
        if steps and (len(ticks) < 3 or np.log10(ticks[-1] / ticks[0]) > 1.5 * np.log10(steps[-1] / steps[0])):
            ticks = steps          # 1-2-5 would leave most of the axis empty
        first, last = np.log10(ticks[0]), np.log10(ticks[-1])
    pad = 0.03 * (last - first)                # a marker on the end tick is drawn whole
    return {"tickmode": "array", "tickvals": ticks, "ticktext": _tick_text(ticks),
            "range": [float(first - pad), float(last + pad)], "autorange": False}


def _decades(lo: float, hi: float) -> tuple[list[float], int, int]:
    """The whole powers of ten around log10 values lo..hi (first, last: the range), and the
    labels: the powers between them that are multiples of k (k = 1, 2, 3, 5, 10...), the
    smallest k that leaves at most MAX_TICKS."""
    first, last = int(np.floor(lo + _ROUNDING)), int(np.ceil(hi - _ROUNDING))
    for k in (1, 2, 3, 5, 10, 20, 50, 100):
        exponents = range(k * int(np.ceil(first / k)), last + 1, k)
        if len(exponents) <= MAX_TICKS:
            return [10.0 ** e for e in exponents], first, last
    raise ValueError(f"a log axis over 10^{first}..10^{last} is past any float")


def _round_steps(low: float, high: float, most: int = MAX_TICKS - 2) -> list[float]:
    """Evenly spaced round numbers (a step of 1, 2 or 5 times a power of ten) from the one at
    or below low to the one at or above high, positive, at most `most` of them (on a log axis
    the top ones close up); none where a step that few would need a tick at 0 or below."""
    k0 = int(np.floor(np.log10(high - low)))
    for step in (m * 10.0 ** k for k in range(k0 - 1, k0 + 3) for m in (1, 2, 5)):
        first, last = np.floor(low / step * (1 + _ROUNDING)), np.ceil(high / step * (1 - _ROUNDING))
        if first < 1:              # a log axis has no 0: a step this long is too long for low
            return []
        if last - first + 1 <= most:
            return [float(f"{i * step:.12g}") for i in np.arange(first, last + 1)]
    return []


# A float32 a hair off a round number (1e-4 is stored as 9.99999975e-05) counts as on it.
_ROUNDING = 1e-6
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _tick_text(ticks: list[float]) -> list[str]:
    """Tick labels as a reader writes them: 0.05, 1, 200; where any tick is too small or large
    for that, every one as a power of ten (10⁻⁵, 2×10⁻⁵), so that an axis reads one way."""
    if all(1e-3 <= t < 1e5 for t in ticks):
        return [f"{t:.6g}" for t in ticks]
    text = []
    for t in ticks:
        mantissa, exponent = f"{t:.3e}".split("e")
        mantissa = f"{float(mantissa):g}"
        power = "10" + str(int(exponent)).translate(_SUPERSCRIPT)
        text.append(power if mantissa == "1" else f"{mantissa}×{power}")
    return text


def _readable_axes(data: list[dict], layout: dict) -> None:
    """Every axis a builder left to Plotly gets few enough labels to read: explicit ticks on a
    log axis (_log_ticks, over what is drawn on it: its traces and its horizontal lines), at
    most _NTICKS + 1 on a linear or category axis, and on each colour bar. An axis whose
    ticks the builder set (tickvals, dtick, nticks), or whose categories it listed, keeps them."""
    for key, axis in layout.items():
        if not isinstance(axis, dict):
            continue
        if key.startswith("coloraxis"):
            axis.setdefault("colorbar", {}).setdefault("nticks", _NTICKS)
            continue
        if key[1:5] != "axis" or key[0] not in "xy" or axis.get("visible") is False:
            continue
        if any(k in axis for k in ("tickvals", "dtick", "nticks", "categoryarray")):
            continue
        if axis.get("type") == "log":
            axis.update(_log_ticks(_drawn_on(data, layout, key)))
        else:
            axis["nticks"] = _NTICKS


def _drawn_on(data: list[dict], layout: dict, key: str) -> list[np.ndarray]:
    """The values drawn along one axis (e.g. "yaxis2"): each trace's on it, and the level of
    each line across the plot (a baseline) on a y axis."""
    letter, ref = key[0], key[0] + key[5:]
    values = [np.asarray(trace[letter], np.float64) for trace in data
              if trace.get(f"{letter}axis", letter) == ref and trace.get(letter) is not None]
    values += [np.array([shape[f"{letter}0"], shape[f"{letter}1"]], np.float64) for shape in layout.get("shapes", [])
               if shape.get(f"{letter}ref") == ref]
    return values


def _baseline_label(name: str, value: float) -> str:
    return f"baseline ({value:.3g})" if name in ("", "baseline") else f"baseline: {name} ({value:.3g})"


def _bound_label(bound: float) -> str:
    kind = {4.0: " (sigmoid)", 1.0: " (tanh/ReLU)"}.get(bound, "")
    return f"1/γ = {bound:g}{kind}"


def _baseline_lines(layout: dict, lines: list[tuple[float, str]], data: list[dict], at: str = "end") -> None:
    """Dashed horizontal lines (value, label) across the plot, each labelled at its right end
    (or at="start") on an opaque ground, on the side of the line that the data near that end
    leave free (_free_above), and under a line at the top of a range the builder set: a label
    struck through by a data line cannot be read. Adds to the layout's shapes and
    annotations; its yaxis must say its type."""
    log = layout["yaxis"].get("type") == "log"
    for y, text in lines:
        if not np.isfinite(y) or (log and y <= 0):
            continue
        layout.setdefault("shapes", []).append(
            {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": y, "y1": y,
             "line": {"dash": "dash", "color": "#444", "width": 1.5}})
        # An annotation on a log axis is placed by the logarithm of its value (a shape by the value).
        level = float(np.log10(y)) if log else float(y)
        span = layout["yaxis"].get("range")
        top = span is not None and (level - span[0]) / (span[1] - span[0]) > 0.95
        above = not top and _free_above(y, data, at)          # a line at the very top: its label under it
        layout.setdefault("annotations", []).append(_label(
            text, x=1.0 if at == "end" else 0.0, y=level, xref="paper", yref="y",
            xanchor="right" if at == "end" else "left", yanchor="bottom" if above else "top"))


def _free_above(y: float, data: list[dict], at: str) -> bool:
    """Whether the space just above the level y, in the end third of the x range (at="end",
    else the start third), holds no more data points than the space below: a loss falls
    under its baseline, an accuracy rises over it."""
    points = []
    for trace in data:
        try:
            x, v = np.asarray(trace.get("x"), np.float64), np.asarray(trace.get("y"), np.float64)
        except (TypeError, ValueError):         # categories: not a position along x
            continue
        if x.ndim == 1 and x.shape == v.shape:
            points.append(np.stack([x, v]))
    if not points:
        return True
    x, v = np.concatenate(points, axis=1)
    kept = np.isfinite(x) & np.isfinite(v)
    x, v = x[kept], v[kept]
    if not len(x):
        return True
    third = (x.max() - x.min()) / 3
    near = x >= x.max() - third if at == "end" else x <= x.min() + third
    return int(np.sum(v[near] > y)) <= int(np.sum(v[near] < y))


_LABEL_GROUND = "rgba(255, 255, 255, 0.9)"    # a label's ground: a line behind it shows only faintly


def _label(text: str, **where) -> dict:
    """A chart label on an opaque ground, above any line it meets (annotations draw over the
    data); its font is the builders' annotation size, which presentation mode scales."""
    return {"text": text, "showarrow": False, "bgcolor": _LABEL_GROUND, "borderpad": 2, "font": {"size": 13},
            **where}


def _block_mean(a: np.ndarray, limit: int, axis: int = 0) -> np.ndarray:
    """Mean over consecutive blocks along `axis`, so that at most `limit` remain; float32.

    NaN counts as missing, so one gap does not erase a whole block.
    """
    a = np.asarray(a, np.float32)
    n = a.shape[axis]
    if n <= limit:
        return a
    starts = np.arange(0, n, -(-n // limit))
    present = ~np.isnan(a)
    sums = np.add.reduceat(np.where(present, a, 0), starts, axis=axis)
    counts = np.add.reduceat(present.astype(np.float32), starts, axis=axis)
    return np.divide(sums, counts, out=np.full_like(sums, np.nan), where=counts > 0)


def _heatmap(a: np.ndarray, max_rows: int, max_columns: int) -> np.ndarray:
    """A (rows, time) picture block-averaged to fit, contiguous float32 for compact sending."""
    return np.ascontiguousarray(_block_mean(_block_mean(a, max_rows, axis=0), max_columns, axis=1))


def _bucket_mean(a: np.ndarray, limit: int) -> np.ndarray:
    """A step series (or its x, the steps) reduced to at most `limit` bucket means."""
    return _block_mean(a, limit, axis=0)


def _centres(n: int, limit: int) -> np.ndarray:
    """The coordinates of the blocks _block_mean makes of n positions: each block's mean index."""
    return _block_mean(np.arange(n), limit)


def _positive(y: np.ndarray) -> np.ndarray:
    # A zero norm (underflow, or a step the loss ignores) has no logarithm: it is left out
    # as a gap on the log axis rather than drawn at an invented floor.
    return np.where(y > 0, y, np.nan).astype(np.float32)


def _log10(y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(_positive(y))


def _quantities(trace: Trace, layer: int, quantities: list[str] | None) -> list[str]:
    lt = trace.layers[layer]
    allowed = list(lt.gates) + (["cell"] if lt.cell is not None else []) + ["hidden"]
    if quantities is None:
        return allowed
    unknown = [q for q in quantities if q not in allowed]
    if unknown:
        raise ValueError(f"a {trace.cell} cell has no {unknown}; choose from {allowed}")
    return list(quantities)


def _scale_kind(cell: str, quantity: str) -> str:
    """The range a quantity lives in: "gate" (σ, 0..1), "tanh" (−1..1), "cell" or "relu" (unbounded)."""
    return "cell" if quantity == "cell" else CELLS[cell].roles[quantity]


def _colour_scale(cell: str, quantity: str, values: np.ndarray) -> dict:
    """The coloraxis a quantity is drawn on: fixed for bounded ranges, fitted to `values` otherwise."""
    kind = _scale_kind(cell, quantity)
    if kind == "cell":
        m = float(np.nanmax(np.abs(values))) if values.size else 0.0
        return {"colorscale": _DIVERGING, "cmin": -(m or 1.0), "cmax": m or 1.0,
                "colorbar": {"title": {"text": "c_t"}}}
    if kind == "relu":
        m = float(np.nanmax(values)) if values.size else 0.0
        return {"colorscale": _SEQUENTIAL, "cmin": 0, "cmax": m if m > 0 else 1.0,
                "colorbar": {"title": {"text": "h_t (ReLU)"}}}
    if kind == "tanh":
        return {"colorscale": _DIVERGING, "cmin": -1, "cmax": 1, "colorbar": {"title": {"text": "tanh(·)"}}}
    return {"colorscale": _SEQUENTIAL, "cmin": 0, "cmax": 1, "colorbar": {"title": {"text": "gate σ(·)"}}}


def _with_colorbar(scale: dict, domain: list[float]) -> dict:
    """The colour bar sits beside the first row drawn on its scale, as tall as that row."""
    bar = {**scale["colorbar"], "len": domain[1] - domain[0], "y": (domain[0] + domain[1]) / 2,
           "yanchor": "middle", "thickness": 12, "outlinewidth": 0}
    bar["title"] = {"side": "right", **bar["title"]}
    return {**scale, "colorbar": bar}


def _input_row(x_input: np.ndarray, T: int, feature_names: list[str] | None, max_time: int,
               max_units: int) -> tuple[dict, dict]:
    """The input x (T, F) as a heatmap features × time, and its row for _stacked."""
    x_input = np.asarray(x_input, np.float32)
    if x_input.ndim == 1:
        x_input = x_input[:, None]
    if x_input.ndim != 2 or x_input.shape[0] != T:
        raise ValueError(f"x_input must be (time={T}, features), got shape {x_input.shape}")
    F = x_input.shape[1]
    z = _heatmap(x_input.T, max_units, max_time)                                     # (features, time)
    trace = {"type": "heatmap", "z": z, "x": _centres(T, max_time), "y": _centres(F, max_units),
             "coloraxis": "coloraxis", "hovertemplate": "t %{x}<br>feature %{y}<br>%{z:.3g}<extra>input</extra>"}
    axis = _index_axis(F, "feature")
    # Beyond a few dozen features the names would overlap: a one-hot vocabulary is drawn as it is.
    if feature_names is not None and F <= 30:
        axis.update(tickmode="array", tickvals=np.arange(F), ticktext=list(feature_names), title={"text": ""})
    return trace, {"title": "input x_t", "height": int(np.clip(40 + 10 * F, 90, 160)), "yaxis": axis}


def _index_axis(n: int, title: str) -> dict:
    """A y axis of units or features, the first at the top as in a matrix."""
    axis = {"autorange": "reversed", "title": {"text": title}}
    if n <= 8:
        axis["dtick"] = 1      # plotly would put ticks at halves between so few rows
    return axis


def _time_axis(T: int, max_time: int, time_labels: list[str] | None) -> dict:
    axis = {"title": {"text": "time step t"}}
    if time_labels is not None:
        if len(time_labels) != T:
            raise ValueError(f"time_labels has {len(time_labels)} labels for {T} time steps")
        if T <= min(80, max_time):
            axis.update(tickmode="array", tickvals=np.arange(T),
                        ticktext=[_VISIBLE.get(c, c) for c in time_labels], tickangle=0)
    return axis


def _ref(letter: str, i: int) -> str:
    """The i-th (from 0) x or y axis as a trace names it: "x", "x2", ..."""
    return letter if i == 0 else f"{letter}{i + 1}"


def _axis_name(letter: str, i: int) -> str:
    """The i-th x or y axis as the layout names it: "xaxis", "xaxis2", ..."""
    return f"{letter}axis" if i == 0 else f"{letter}axis{i + 1}"


def _row_title(text: str, x: float, y: float, xanchor: str = "left") -> dict:
    return {"text": text, "x": x, "y": y, "xref": "paper", "yref": "paper", "xanchor": xanchor,
            "yanchor": "bottom", "showarrow": False, "font": {"size": 14}}


def _stacked(rows: list[dict], bottom_x_axis: dict, gap_px: int = 34) -> dict:
    """Layout for rows stacked top to bottom on one shared time axis; a trace goes on row i
    with _on_row. What make_subplots(shared_xaxes=True) builds, without its ~20 ms of
    validating a whole figure.

    rows: {"title", "height" (px), "yaxis" (more y axis settings)}.
    """
    n = len(rows)
    plot_px = sum(r["height"] for r in rows) + gap_px * (n - 1)
    layout, annotations, top = {}, [], plot_px
    for i, row in enumerate(rows):
        lo = top - row["height"]
        x_axis = {"anchor": _ref("y", i), "domain": [0, 1]}
        if i < n - 1:
            x_axis.update(matches=_ref("x", n - 1), showticklabels=False)
        else:
            x_axis.update(bottom_x_axis)
        layout[_axis_name("x", i)] = x_axis
        layout[_axis_name("y", i)] = {"anchor": _ref("x", i), "domain": [lo / plot_px, top / plot_px],
                                      **row.get("yaxis", {})}
        annotations.append(_row_title(row["title"], 0, top / plot_px))
        top = lo - gap_px
    layout.update(annotations=annotations, height=plot_px + _MARGIN["t"] + _MARGIN["b"])
    return layout


def _on_row(trace: dict, i: int) -> dict:
    trace["xaxis"], trace["yaxis"] = _ref("x", i), _ref("y", i)
    return trace
