"""explorer.whatif: both traces, the head's outputs, losses and accuracy, checked against the
model's own fused forward pass and the task's loss; the figures and the download."""
import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from explorer import Config, Trainer, analysis, plots
from explorer.trace import trace
from explorer.whatif import VARIANTS, compare

SMALL = dict(seq_len=12, hidden=8, batch_size=8, steps=30, probe_every=10, eval_every=10, probe_count=4)


@pytest.fixture(scope="module")
def brackets():
    trainer = Trainer(Config(task="brackets", **SMALL))
    for _ in range(trainer.config.steps):
        trainer.step()
    return trainer


@pytest.fixture(scope="module")
def adding():
    trainer = Trainer(Config(task="adding", cell="gru", **SMALL))
    for _ in range(trainer.config.steps):
        trainer.step()
    return trainer


def test_as_trained_is_the_models_own_forward_pass_and_clamped_is_the_clamped_trace(brackets):
    x, y = brackets.probe_set
    clamp = {"forget": {"value": 0.0, "steps": (4, 8)}}
    result = compare(brackets.model, brackets.task, x, y, clamp)
    with torch.no_grad():
        fused = brackets.model(x)                                             # nn.LSTM's own kernel
    np.testing.assert_allclose(result.predictions["as trained"], fused.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(result.losses["as trained"],
                               brackets.task.loss(fused, y, reduction="none").numpy(), rtol=1e-5)
    np.testing.assert_array_equal(result.correct["as trained"], (fused.argmax(-1) == y).numpy())
    again = trace(brackets.model.rnn, x, clamp=clamp)
    np.testing.assert_array_equal(result.traces["clamped"].output, again.output)
    assert result.clamp == {"forget": {"value": 0.0, "units": None, "steps": [4, 8], "layers": None}}
    # Before the clamped steps the two agree (to float32 rounding: the clamped unroll is step by
    # step, the other PyTorch's kernel); from them on they differ.
    right = result.correct
    np.testing.assert_array_equal(right["as trained"][:, :4], right["clamped"][:, :4])
    outputs = {v: result.predictions[v] for v in VARIANTS}
    np.testing.assert_allclose(outputs["as trained"][:, :4], outputs["clamped"][:, :4], rtol=0, atol=1e-5)
    assert np.abs(outputs["as trained"][:, 4:] - outputs["clamped"][:, 4:]).max() > 1e-4


def test_the_series_shows_the_depth_for_brackets_and_the_value_for_adding(brackets, adding):
    x, y = brackets.probe_set
    result = compare(brackets.model, brackets.task, x, y, {"forget": 0.0})
    quantity, target, outputs = result.series(brackets.task, y, 1)
    assert quantity == "depth"
    np.testing.assert_array_equal(target, y[1].numpy())
    np.testing.assert_array_equal(outputs["clamped"], result.predictions["clamped"][1].argmax(-1))
    x, y = adding.probe_set
    result = compare(adding.model, adding.task, x, y, {"update": {"value": 1.0, "steps": (0, 6)}})
    quantity, target, outputs = result.series(adding.task, y, 2)
    assert quantity == "output" and target.shape == (1,) and target[0] == pytest.approx(float(y[2, 0]))
    assert outputs["as trained"][0] == pytest.approx(float(result.predictions["as trained"][2, 0]))
    assert result.correct is None and "accuracy" not in result.summary()


def test_the_download_holds_target_outputs_and_gradient_norms_per_step(brackets, adding):
    x, y = brackets.probe_set
    result = compare(brackets.model, brackets.task, x, y, {"input": {"value": 1.0, "units": [0, 3]}})
    frame = result.frame(brackets.task, y, 2, 0)
    assert list(frame.columns) == ["t", "target", "depth as trained", "depth clamped",
                                   "grad_hidden as trained", "grad_hidden clamped"]
    assert len(frame) == 12
    np.testing.assert_array_equal(frame["target"], y[2].numpy())
    np.testing.assert_array_equal(frame["grad_hidden clamped"], result.traces["clamped"].layers[0].grad_hidden[2])
    x, y = adding.probe_set
    frame = compare(adding.model, adding.task, x, y, {"reset": 0.0}).frame(adding.task, y, 0, 0)
    assert frame["target"].isna().sum() == 11 and frame["target"].iloc[-1] == pytest.approx(float(y[0, 0]))


def test_a_bad_clamp_is_a_value_error_before_anything_is_traced(brackets):
    x, y = brackets.probe_set
    with pytest.raises(ValueError, match="choose from input, forget, candidate, output"):
        compare(brackets.model, brackets.task, x, y, {"update": 0.5})


def test_target_correlations_equal_numpys_pearson_r():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 5, size=(6, 9)).astype(float)                  # (batch, time)
    values = rng.normal(size=(6, 9, 4))                                      # (batch, time, hidden)
    values[..., 2] = 3 * target + 0.01 * rng.normal(size=target.shape)      # follows the target
    values[..., 3] = 1.5                                                     # constant: r = 0
    r = analysis.target_correlations(values, target)
    for u in range(3):
        assert r[u] == pytest.approx(np.corrcoef(values[..., u].ravel(), target.ravel())[0, 1])
    assert r[3] == 0.0
    assert analysis.most_correlated(values, target, 1) == [2]


def test_the_whatif_figures_draw_both_runs_and_shade_the_clamped_steps(brackets, adding):
    x, y = brackets.probe_set
    result = compare(brackets.model, brackets.task, x, y, {"forget": {"value": 0.0, "steps": (3, 7)}})
    quantity, target, outputs = result.series(brackets.task, y, 0)
    figure = plots.whatif_output_figure(quantity, target, outputs, (3, 7), 12)
    assert [t.name for t in figure.data] == ["target", "as trained", "clamped"]
    np.testing.assert_array_equal(figure.data[2].y, outputs["clamped"])
    band = figure.layout.shapes[0]
    assert (band.x0, band.x1) == (2.5, 6.5)
    grads = plots.whatif_grad_figure(result.traces, 0, 0, (3, 7))
    assert grads.layout.yaxis.type == "log"
    np.testing.assert_allclose(grads.data[1].y, result.traces["clamped"].layers[0].grad_hidden[0], rtol=1e-6)
    x, y = adding.probe_set
    result = compare(adding.model, adding.task, x, y, {"update": 1.0})
    quantity, target, outputs = result.series(adding.task, y, 0)
    single = plots.whatif_output_figure(quantity, target, outputs, None, 12)
    (bars,) = single.data                                  # one output per sequence: a bar each
    assert list(bars.x) == ["target", "as trained", "clamped"]
    assert list(bars.y) == pytest.approx([target[0], outputs["as trained"][0], outputs["clamped"][0]])
    for f in (figure, grads, single):                # the builders skip validation; check it here
        assert json.loads(go.Figure(f.to_plotly_json()).to_json()) == json.loads(f.to_json())


def test_your_own_model_shows_its_top_layers_h_with_no_target():
    from explorer.yours import ModelTask, YourModel
    torch.manual_seed(0)
    module = torch.nn.GRU(2, 5, batch_first=True)
    task = ModelTask(module, np.random.default_rng(0).standard_normal((3, 9, 2)).astype(np.float32))
    x, y = task.heldout(3, 0)
    result = compare(YourModel(module), task, x, y, {"update": {"value": 1.0, "steps": (2, 5)}})
    quantity, target, outputs = result.series(task, y, 1)
    assert quantity.startswith("Σ over units") and np.isnan(target).all() and len(target) == 9
    with torch.no_grad():
        expected = module(x)[0][1].sum(-1).numpy()
    np.testing.assert_allclose(outputs["as trained"], expected, rtol=1e-5, atol=1e-6)
    frame = result.frame(task, y, 1, 0)
    assert len(frame) == 9 and frame["target"].isna().all()
    assert result.correct is None
    figure = plots.whatif_output_figure(quantity, target, outputs, (2, 5), 9)
    assert [t.name for t in figure.data] == ["as trained", "clamped"]          # no target to draw
