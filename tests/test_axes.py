"""Axes a class can read (issue 32): every builder's axes carry at most MAX_TICKS labels; a
log axis is labelled by powers of ten (every k-th one over a wide range) or by 1, 2 and 5
times them, from below its smallest value to above its largest; an empty chart's axes suit
its metric; a label is never struck through by a data line. Checked against the numbers each
figure draws, on a real training run and real traces (tests/browser/test_axes_browser.py
counts the labels Chromium draws)."""
import re

import numpy as np
import pytest
import torch
from torch import nn

from explorer import Config, Trainer, analysis, plots
from explorer.cells import CELLS
from explorer.compare import gate_summary
from explorer.history import History
from explorer.trace import trace

MAX = 8                       # the "about 8" labels an axis


@pytest.fixture(scope="module")
def run() -> Trainer:
    """A short real training run of the adding task with clipping."""
    trainer = Trainer(Config(task="adding", cell="lstm", seq_len=12, hidden=8, batch_size=8, steps=20,
                             probe_every=10, eval_every=5, probe_count=3, clip=0.5))
    for _ in range(trainer.config.steps):
        trainer.step()
    return trainer


def vanishing_lstm() -> tuple[nn.LSTM, torch.Tensor]:
    """An LSTM whose ‖∂L/∂h_t‖ falls over twenty powers of ten in T = 200 steps (its forget
    gates lean open, bias +0.8, and it still forgets a fixed share each step)."""
    torch.manual_seed(0)
    module = nn.LSTM(2, 16, batch_first=True)
    with torch.no_grad():
        module.bias_hh_l0[16:32] += 0.8
    return module, torch.randn(1, 200, 2)


@pytest.fixture(scope="module")
def vanishing():
    module, x = vanishing_lstm()
    return {"as trained": trace(module, x), "clamped": trace(module, x, clamp={"forget": 1.0})}


_SUPERSCRIPT = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")


def number(label: str) -> float:
    """A tick label read back as a person reads it: "0.05", "10⁻²³", "2×10⁻⁵"."""
    power = re.fullmatch(r"(?:([\d.]+)×)?10([⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+)", label)
    if power:
        return float(power.group(1) or 1) * 10.0 ** int(power.group(2).translate(_SUPERSCRIPT))
    return float(label)


def positive(values: list) -> np.ndarray:
    shown = np.concatenate([np.asarray(v, np.float64).ravel() for v in values])
    return shown[np.isfinite(shown) & (shown > 0)]


def log_labels(axis, drawn: np.ndarray) -> list[float]:
    """The labels of a log axis over the positive values drawn on it, checked as a reader
    needs them: at most MAX, increasing, each label saying its own value, every value drawn
    inside the range, the labels reaching to within one of their steps of the smallest and
    the largest. Returns the labelled values."""
    assert axis.type == "log" and axis.tickmode == "array"
    ticks = [float(t) for t in axis.tickvals]
    assert 2 <= len(ticks) <= MAX, ticks
    assert all(a < b for a, b in zip(ticks, ticks[1:]))
    assert [number(text) for text in axis.ticktext] == pytest.approx(ticks, rel=1e-9)
    low, high = 10.0 ** np.array(axis.range)                 # a log axis's range is in log10 units
    assert low <= min(ticks) and max(ticks) <= high              # every label is drawn
    assert low < drawn.min() and drawn.max() < high
    step = max(b / a for a, b in zip(ticks, ticks[1:]))
    assert ticks[0] <= drawn.min() * step * (1 + 1e-6) and ticks[-1] * step >= drawn.max() * (1 - 1e-6)
    return ticks


def assert_decades(ticks: list[float]) -> int:
    """Powers of ten, one every k: returns k."""
    exponents = np.log10(ticks)
    np.testing.assert_allclose(exponents, np.round(exponents), atol=1e-9)
    steps = set(np.diff(np.round(exponents)).astype(int))
    assert len(steps) == 1, steps
    return steps.pop()


def assert_one_two_five(ticks: list[float]) -> None:
    mantissas = [t / 10.0 ** np.floor(np.log10(t) + 1e-9) for t in ticks]
    assert all(min(abs(m - c) for c in (1, 2, 5)) < 1e-6 for m in mantissas), mantissas


def cartesian_axes(figure):
    layout = figure.to_plotly_json()["layout"]
    return [(key, figure.layout[key]) for key in layout if re.fullmatch(r"[xy]axis\d*", key)]


def assert_few_labels(figure) -> None:
    """Every visible axis: its explicit labels number at most MAX, or Plotly is held to
    nticks (it picks a step of at least range / nticks, so at most nticks + 1 labels)."""
    for key, axis in cartesian_axes(figure):
        if axis.visible is False or axis.showticklabels is False:
            continue
        if axis.tickvals is not None:
            assert len(axis.tickvals) <= MAX, (key, list(axis.tickvals))
        elif axis.categoryarray is not None:
            assert len(axis.categoryarray) <= MAX, key
        elif axis.dtick is not None:                # whole steps over a range it gives, or a few rows
            extent = np.ptp(axis.range) if axis.range is not None else None
            assert extent is None or extent / axis.dtick + 1 <= MAX, key
        else:
            assert axis.nticks is not None and axis.nticks + 1 <= MAX, key
    for key, value in figure.to_plotly_json()["layout"].items():
        if key.startswith("coloraxis"):
            assert value["colorbar"]["nticks"] + 1 <= MAX


# -- log axes over real gradients --------------------------------------------------------------

def test_a_gradient_vanishing_over_twenty_powers_of_ten_is_labelled_every_kth_power(vanishing):
    norms = vanishing["as trained"].layers[0].grad_hidden[0]
    cell_norms = vanishing["as trained"].layers[0].grad_cell[0]
    drawn = positive([norms, cell_norms])
    assert np.log10(drawn.max() / drawn.min()) > 20                  # the precondition: a vanished gradient
    axis = plots.grad_time_figure(vanishing["as trained"], 0).layout.yaxis
    k = assert_decades(log_labels(axis, drawn))
    assert k > 1                                                     # not one label per power: they overlapped
    assert all(text.startswith("10") for text in axis.ticktext)     # written as powers: 10⁻²⁰, never 1e-20


def test_the_whatif_and_compare_gradient_charts_label_the_same_way(vanishing, run):
    what_if = plots.whatif_grad_figure(vanishing, 0, 0, None).layout.yaxis
    drawn = positive([tr.layers[0].grad_hidden[0] for tr in vanishing.values()])
    assert assert_decades(log_labels(what_if, drawn)) > 1
    probe = run.history.view().traces[-1][1]
    both = {"vanishing": vanishing["as trained"], "trained": probe}
    compare = plots.compare_grad_time_figure(both, 0).layout.yaxis
    drawn = positive([vanishing["as trained"].layers[0].grad_hidden[0], probe.layers[0].grad_hidden[0]])
    assert_decades(log_labels(compare, drawn))


def test_a_log_range_under_two_powers_of_ten_is_labelled_1_2_5(run):
    view = run.history.view()
    figure = plots.grad_norm_figure(view, clip=0.5)
    drawn = positive([view.steps["grad_norm"], view.steps["grad_norm_clipped"], [0.5]])
    ticks = log_labels(figure.layout.yaxis, drawn)
    if np.log10(drawn.max() / drawn.min()) < 2:
        assert_one_two_five(ticks)
    else:
        assert_decades(ticks)
    narrow = plots.compare_heldout_figure({"run": (view.evals["step"], view.evals["eval_loss"])},
                                          [(run.task.baseline_loss, "baseline")], "MSE").layout.yaxis
    drawn = positive([view.evals["eval_loss"], [run.task.baseline_loss]])
    assert np.log10(drawn.max() / drawn.min()) < 2
    assert_one_two_five(log_labels(narrow, drawn))


def test_a_log_range_narrower_than_1_2_5_gets_round_evenly_spaced_labels():
    """0.31 to 0.44 holds no 1, 2 or 5: evenly spaced round numbers, a few of them."""
    steps = np.arange(1, 6)
    figure = plots.compare_heldout_figure({"a": (steps, np.linspace(0.31, 0.44, 5))}, [], "loss")
    ticks = log_labels(figure.layout.yaxis, np.linspace(0.31, 0.44, 5))
    assert len(ticks) >= 3
    np.testing.assert_allclose(np.diff(ticks), np.diff(ticks)[0])
    assert ticks == pytest.approx([round(t, 2) for t in ticks])


# -- every builder -----------------------------------------------------------------------------

def every_figure(run: Trainer, vanishing: dict) -> dict:
    """Each builder's figure on real numbers: the training run's history and probes, the
    vanishing LSTM's traces, a sweep's rows."""
    from explorer.whatif import compare
    from tests.test_plots import _sweep_rows
    view, (step, probe) = run.history.view(), run.history.view().traces[-1]
    x = run.probe_set[0][0].cpu().numpy()
    blocks = list(CELLS[probe.cell].blocks)
    salient = run.task.salient_steps(x)
    xs, ys = run.probe_set
    result = compare(run.model, run.task, xs, ys, {"forget": {"value": 0.0, "steps": (2, 6)}})
    views = {"LSTM": view}
    return {
        "loss": plots.loss_figure(view, run.task.baseline_loss, run.task.loss_name, run.task.baseline_name),
        "metric": plots.metric_figure(view, run.task.baseline_metric, run.task.metric_name),
        "grad_norm": plots.grad_norm_figure(view, clip=0.5),
        "param_grad": plots.param_grad_figure(view),
        "gates": plots.gate_figure(probe, 0, 0, x),
        "unit_lines": plots.unit_lines_figure(probe, 0, 0, [0, 1]),
        "saturation": plots.saturation_figure(analysis.gate_saturation(probe.layers[0], probe.cell), probe.cell),
        "grad_time": plots.grad_time_figure(vanishing["as trained"], 0),
        "grad_history": plots.grad_history_figure(view.traces, 0, 0),
        "weight_share": plots.weight_share_figure(probe, 0, 0, blocks[:2], salient),
        "weight_share_history": plots.weight_share_history_figure(view.traces, 0, 0, blocks[0], salient),
        "input_grad": plots.input_grad_figure(probe, 0, x),
        "singular_values": plots.singular_values_figure(analysis.recurrent_spectra(run.model.rnn)),
        "whatif_output": plots.whatif_output_figure(*result.series(run.task, ys, 0), (2, 6), xs.shape[1]),
        "whatif_grad": plots.whatif_grad_figure(vanishing, 0, 0, (50, 120)),
        "compare_loss": plots.compare_loss_figure(views, run.task.baseline_loss, run.task.loss_name),
        "compare_grad_time": plots.compare_grad_time_figure({"vanishing": vanishing["as trained"], "run": probe}, 0),
        "compare_heldout": plots.compare_heldout_figure({"LSTM": (view.evals["step"], view.evals["eval_loss"])},
                                                        [(run.task.baseline_loss, "baseline")], "MSE"),
        "compare_gates": plots.compare_gates_figure({"LSTM": gate_summary(probe)}, {"LSTM": probe.cell}),
        "sweep_loss": plots.sweep_loss_figure(_sweep_rows()),
        "sweep_solved": plots.sweep_solved_figure(_sweep_rows()),
        "sweep_grad_ratio": plots.sweep_grad_ratio_figure(_sweep_rows()),
    }


def test_no_axis_of_any_builder_has_more_than_eight_labels(run, vanishing):
    for name, figure in every_figure(run, vanishing).items():
        try:
            assert_few_labels(figure)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from error


def test_every_log_axis_of_every_builder_has_explicit_decade_or_1_2_5_labels(run, vanishing):
    """Plotly's own log ticks label every power (or write 0.5 as a small 5): every log axis
    carries the helper's ticks instead, over what it draws."""
    logs = 0
    for name, figure in every_figure(run, vanishing).items():
        for key, axis in cartesian_axes(figure):
            if axis.type != "log":
                continue
            logs += 1
            letter, ref = key[0], key[0] + key[5:]
            lines = [[s[f"{letter}0"]] for s in figure.layout.shapes if s[f"{letter}ref"] == ref]   # baselines
            drawn = positive([t[letter] for t in figure.data
                              if (t[f"{letter}axis"] or letter) == ref and t[letter] is not None] + lines)
            ticks = log_labels(axis, drawn)
            if np.log10(drawn.max() / drawn.min()) >= 2:
                assert_decades(ticks)
            elif not np.allclose(np.diff(ticks), np.diff(ticks)[0]):           # else evenly spaced round numbers
                assert_one_two_five(ticks)
    assert logs >= 10                  # loss, norms, gradients in time, shares, input, spectra, sweeps...


def test_the_sweep_charts_use_the_same_readable_ticks_as_the_rest():
    from tests.test_plots import _sweep_rows
    frame = _sweep_rows()
    frame.loc[frame["cell"] == "rnn", "grad_ratio_final"] *= 1e-15          # an RNN's gradient vanishes
    figure = plots.sweep_grad_ratio_figure(frame)
    shown = positive([frame[c] for c in ("grad_ratio_final", "grad_ratio_init")])
    assert assert_decades(log_labels(figure.layout.yaxis, shown)) > 1
    for sweep in (figure, plots.sweep_loss_figure(frame), plots.sweep_solved_figure(frame)):
        assert_few_labels(sweep)


# -- empty charts ------------------------------------------------------------------------------

def empty_view():
    return History(["rnn.weight_hh_l0", "head.bias"]).view()


@pytest.mark.parametrize("baseline", [1 / 6, 2.3026, 0.0123])
def test_an_empty_loss_chart_shows_its_baseline_and_room_below_it_labelled_1_2_5(baseline):
    axis = plots.loss_figure(empty_view(), baseline, "loss").layout.yaxis
    ticks = log_labels(axis, np.array([baseline / 10, baseline]))     # a decade under the baseline to fall into
    assert_one_two_five(ticks)
    assert len(set(axis.ticktext)) == len(ticks)                       # never "1, 9, 8, 7, 6, 5, 4"


def test_an_empty_accuracy_chart_runs_from_0_to_1_and_an_empty_error_chart_from_0():
    empty = plots.metric_figure(empty_view(), 0.1, "accuracy")
    accuracy = empty.layout.yaxis
    assert list(accuracy.range) == [0, 1]
    assert list(empty.layout.xaxis.range) == [0, 10]                  # steps from 0, not Plotly's −1
    bits = plots.metric_figure(empty_view(), 4.3, "bits per char").layout.yaxis
    assert bits.range[0] == 0 and bits.range[1] >= 1.25 * 4.3
    assert number(f"{bits.range[1]:g}") == 10                          # a round number over the baseline
    # with values, from 0 still, and Plotly's few labels
    view = empty_view()
    view.evals.update(step=np.array([5, 10]), eval_metric=np.array([0.2, 0.3], np.float32))
    assert plots.metric_figure(view, 0.1, "accuracy").layout.yaxis.rangemode == "tozero"


@pytest.mark.parametrize("clip", [0.0, 1.0])
def test_an_empty_gradient_chart_has_a_labelled_log_range(clip):
    for figure in (plots.grad_norm_figure(empty_view(), clip=clip), plots.param_grad_figure(empty_view())):
        axis = figure.layout.yaxis
        ticks = [float(t) for t in axis.tickvals]
        assert 3 <= len(ticks) <= MAX
        assert [number(t) for t in axis.ticktext] == pytest.approx(ticks)
        if clip:
            assert 10 ** axis.range[0] < clip < 10 ** axis.range[1]


# -- labels on an opaque ground, clear of the data -----------------------------------------------

def opaque(color: str) -> bool:
    alpha = re.fullmatch(r"rgba\(\s*255,\s*255,\s*255,\s*([\d.]+)\)", color)
    return color == "white" or (alpha is not None and float(alpha.group(1)) >= 0.85)


def test_a_baseline_label_sits_beside_its_line_on_the_side_the_data_leave_free(run):
    view = run.history.view()
    figure = plots.loss_figure(view, run.task.baseline_loss, run.task.loss_name, run.task.baseline_name)
    (label,) = figure.layout.annotations
    assert opaque(label.bgcolor) and label.xref == "paper" and label.x == 1 and label.xanchor == "right"
    # the losses in the chart's last third, above and below the baseline
    steps = np.concatenate([view.steps["step"], view.evals["step"]])
    losses = np.concatenate([view.steps["loss"], view.evals["eval_loss"]])
    late = steps >= steps.max() - (steps.max() - steps.min()) / 3
    above = int(np.sum(losses[late] > run.task.baseline_loss))
    below = int(np.sum(losses[late] < run.task.baseline_loss))
    assert label.yanchor == ("bottom" if above <= below else "top")
    # an accuracy that rose over its baseline: the label goes under the line
    rising = empty_view()
    rising.steps.update(step=np.arange(1, 31), metric=np.linspace(0.1, 0.9, 30).astype(np.float32))
    (label,) = plots.metric_figure(rising, 0.2, "accuracy", "chance").layout.annotations
    assert label.yanchor == "top" and label.y == 0.2 and opaque(label.bgcolor)
    # a bound at the top of the axis: its label under it, inside the plot, not over the title
    spectra = [{"layer": 0, "block": "candidate", "values": np.array([0.9, 0.5, 0.3, 0.2]), "bound": 1.0}]
    figure = plots.singular_values_figure(spectra)
    (label,) = figure.layout.annotations
    assert 10 ** figure.layout.yaxis.range[1] < 1.2 and label.yanchor == "top"


def test_every_label_over_a_plot_has_an_opaque_ground(run, vanishing):
    figures = every_figure(run, vanishing)
    labelled = 0
    for name in ("loss", "metric", "grad_norm", "singular_values", "weight_share", "weight_share_history",
                 "whatif_grad", "compare_loss", "compare_heldout", "sweep_loss", "sweep_solved"):
        figure = figures[name]
        assert all(shape.label.text is None for shape in figure.layout.shapes), name   # struck through
        for annotation in figure.layout.annotations:
            assert opaque(annotation.bgcolor), (name, annotation.text)
            labelled += 1
    assert labelled >= 11


# -- the what-if output chart, for every task ----------------------------------------------------

def test_the_whatif_output_chart_is_readable_for_every_task(tmp_path):
    from explorer.tasks import TASKS
    from explorer.whatif import compare
    csv = tmp_path / "series.csv"
    csv.write_text("day,value\n" + "".join(f"{i},{np.sin(i / 5) + 0.01 * i:.4f}\n" for i in range(300)))
    checked = set()
    for name, spec in TASKS.items():
        if not spec.trainable:
            continue                             # your model: tests/test_whatif.py
        trainer = Trainer(Config(task=name, seq_len=16, hidden=8, batch_size=8, steps=2, probe_count=2,
                                 **({"csv_path": str(csv)} if name == "csv" else {})))
        x, y = trainer.probe_set
        result = compare(trainer.model, trainer.task, x, y, {"forget": {"value": 0.0, "steps": (2, 6)}})
        quantity, target, outputs = result.series(trainer.task, y, 0)
        figure = plots.whatif_output_figure(quantity, target, outputs, (2, 6), x.shape[1])
        assert_few_labels(figure)
        values = np.concatenate([np.ravel(target), *map(np.ravel, outputs.values())]).astype(np.float64)
        low, high = figure.layout.yaxis.range
        room = (high - low) * 0.05
        assert low + room <= values.min() and values.max() <= high - room, name     # nothing at the edge
        if len(target) == 1:                     # one output a sequence: a bar each, its number on it
            (bars,) = figure.data
            assert bars.type == "bar" and list(bars.x) == ["target", "as trained", "clamped"], name
            assert [float(v) for v in bars.text] == pytest.approx(list(bars.y), rel=1e-2)
            assert low <= 0 <= high                                                  # bars from 0
        else:
            assert [t.name for t in figure.data] == ["target", "as trained", "clamped"]
            assert figure.layout.xaxis.range == (-0.5, x.shape[1] - 0.5)
        checked.add(trainer.task.output_mode)
    assert checked == {"last", "all"}
