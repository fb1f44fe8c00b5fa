"""explorer.analysis against hand-computed numbers and independent recomputation."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from explorer import Config, PeepholeLSTM, Trainer, trace
from explorer.analysis import gate_saturation, opening_search, recurrent_spectra, saturation, units_on

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_saturation_counts_fractions_below_low_and_above_high_per_unit():
    unit0 = [[0.05, 0.5, 0.95], [0.0, 0.1, 0.9]]   # two below 0.1; 0.1 and 0.9 are not beyond
    unit1 = [[0.5, 0.5, 1.0], [0.5, 0.95, 0.5]]
    values = np.stack([unit0, unit1], axis=-1)      # (batch=2, time=3, hidden=2)
    left, right = saturation(values)
    np.testing.assert_allclose(left, [2 / 6, 0.0])
    np.testing.assert_allclose(right, [1 / 6, 2 / 6])
    left, right = saturation(values, low=0.6, high=0.99)
    np.testing.assert_allclose(left, [4 / 6, 4 / 6])
    np.testing.assert_allclose(right, [0.0, 1 / 6])


def test_saturation_rejects_a_non_3d_array():
    with pytest.raises(ValueError, match="batch, time, hidden"):
        saturation(np.zeros((3, 4)))


@pytest.mark.parametrize("module, kind, gates", [
    (nn.LSTM(2, 5, batch_first=True), "lstm", {"input", "forget", "output"}),
    (PeepholeLSTM(2, 5, batch_first=True), "peephole", {"input", "forget", "output"}),
    (nn.GRU(2, 5, batch_first=True), "gru", {"reset", "update"}),
    (nn.RNN(2, 5, batch_first=True), "rnn", set()),
    (nn.RNN(2, 5, nonlinearity="relu", batch_first=True), "rnn-relu", set()),
])
def test_gate_saturation_covers_the_sigmoid_gates_only(module, kind, gates):
    tr = trace(module, torch.randn(3, 7, 2, generator=torch.Generator().manual_seed(0)))
    assert tr.cell == kind
    result = gate_saturation(tr.layers[0], tr.cell)
    assert set(result) == gates
    for name, (left, right) in result.items():
        expected_left, expected_right = saturation(tr.layers[0].gates[name])
        np.testing.assert_array_equal(left, expected_left)
        np.testing.assert_array_equal(right, expected_right)


def test_gate_saturation_rejects_an_unknown_cell():
    tr = trace(nn.GRU(2, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="unknown cell 'lstmx'"):
        gate_saturation(tr.layers[0], "lstmx")


def _planted():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.0, 0.4, size=(40, 12))   # (time, hidden), all off
    values[10:20, 5] = 1.0                          # unit 5 is on exactly in [10, 20)
    values[:, 7] = 0.9                              # unit 7 is always on: no score
    values[12:30, 2] = 0.8                          # unit 2 is on in part of the range and after it
    return values


def test_units_on_ranks_the_planted_unit_first_with_score_one():
    table = units_on(_planted(), 10, 20)
    assert list(table.columns) == ["unit", "score", "on_inside", "on_outside", "mean_inside", "mean_outside"]
    assert table["unit"].tolist() == [5, 2]
    first = table.iloc[0]
    assert first["score"] == 1.0 and first["on_inside"] == 1.0 and first["on_outside"] == 0.0
    assert first["mean_inside"] == 1.0
    np.testing.assert_allclose(table.iloc[1]["score"], 8 / 10 - 10 / 30)
    assert 7 not in table["unit"].tolist()


def test_units_on_keeps_the_top_units_and_uses_inside_alone_for_the_whole_sequence():
    values = _planted()
    assert units_on(values, 10, 20, top=1)["unit"].tolist() == [5]
    whole = units_on(values, 0, 40)
    assert whole.iloc[0]["unit"] == 7 and whole.iloc[0]["score"] == 1.0
    assert whole["on_outside"].isna().all()


@pytest.mark.parametrize("start, stop", [(5, 5), (8, 3), (-1, 4), (30, 41)])
def test_units_on_rejects_an_empty_or_out_of_bounds_range(start, stop):
    with pytest.raises(ValueError, match=r"time range .* within the sequence's steps 0\.\.39"):
        units_on(_planted(), start, stop)


def _best_score(values, start, stop) -> float:
    """The best units_on score of any unit over every threshold, by brute force: a step is on
    when its value exceeds the threshold, so the finite values themselves and one below the
    smallest give every split there is (any number at all when no value is finite: only +∞ is
    on, NaN and −∞ never are)."""
    levels = np.unique(values[np.isfinite(values)])
    inside = np.arange(len(values)) < stop
    inside[:start] = False
    best = 0.0
    for threshold in [levels[0] - 1, *levels] if levels.size else [0.0]:
        on = values > threshold
        outside = on[~inside].mean(axis=0) if (~inside).any() else 0.0
        best = max(best, float(np.max(on[inside].mean(axis=0) - outside)))
    return best


def test_find_units_opens_on_the_second_quarter_with_a_threshold_that_finds_the_planted_unit():
    values = _planted()
    start, stop, threshold = opening_search(values)
    assert (start, stop) == (10, 20) and 0.4 < threshold < 1.0
    table = units_on(values, start, stop, threshold)
    assert table.iloc[0]["unit"] == 5 and table.iloc[0]["score"] == 1.0 == _best_score(values, 10, 20)
    assert threshold == round(threshold, 1)                         # a number a person can type


def test_find_units_moves_to_another_range_when_the_second_quarter_has_nothing():
    values = np.zeros((40, 3))
    values[30:35, 1] = 0.7                                          # the fourth quarter
    start, stop, threshold = opening_search(values)
    assert (start, stop) == (30, 40) and 0.0 < threshold < 0.7
    assert units_on(values, start, stop, threshold)["unit"].tolist() == [1]


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 24), st.integers(1, 5)),
              elements=st.floats(-5, 5) | st.sampled_from([np.nan, np.inf, -np.inf, 0.0])))
def test_find_units_opens_on_a_unit_whenever_some_unit_varies(values):
    start, stop, threshold = opening_search(values)
    assert 0 <= start < stop <= len(values) and np.isfinite(threshold)
    found = units_on(values, start, stop, threshold)
    best = _best_score(values, start, stop)
    assert (not found.empty) == (best > 0)
    if best > 0:
        assert found.iloc[0]["score"] == pytest.approx(best)
    # Some unit varies over finite values (or jumps to +∞): the whole sequence finds it, at the latest.
    if any(len(np.unique(column[~np.isnan(column) & (column > -np.inf)])) > 1 for column in values.T):
        assert not found.empty


@pytest.mark.slow          # the first Trainer imports torch's compiler (for Adam): 10 s here
def test_find_units_opens_on_units_of_a_trained_run_for_every_quantity_and_probe():
    torch.manual_seed(0)
    trainer = Trainer(Config(task="adding", seq_len=20, hidden=16, batch_size=16, steps=30, probe_every=1000))
    for _ in range(30):
        trainer.step()
    layer = trainer.probe().layers[0]
    quantities = {"hidden": layer.hidden, "cell": layer.cell, **layer.gates}
    for name, array in quantities.items():
        for b in range(array.shape[0]):
            start, stop, threshold = opening_search(array[b])
            assert not units_on(array[b], start, stop, threshold).empty, (name, b)
            assert (start, stop) == (5, 10), (name, b)       # the second quarter, as the page always opened


SPECTRA_MODULES = {
    "lstm": (lambda: nn.LSTM(3, 6, 2), ["input", "forget", "candidate", "output"], [4.0, 4.0, 1.0, 4.0]),
    "peephole": (lambda: PeepholeLSTM(3, 6, 2), ["input", "forget", "candidate", "output"], [4.0, 4.0, 1.0, 4.0]),
    "gru": (lambda: nn.GRU(3, 6, 2), ["reset", "update", "candidate"], [4.0, 4.0, 1.0]),
    "rnn": (lambda: nn.RNN(3, 6, 2), ["W_hh"], [1.0]),
    "rnn-relu": (lambda: nn.RNN(3, 6, 2, nonlinearity="relu"), ["W_hh"], [1.0]),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", list(SPECTRA_MODULES))
def test_recurrent_spectra_match_svdvals_of_each_gate_block(kind, device):
    make, blocks, bounds = SPECTRA_MODULES[kind]
    torch.manual_seed(0)
    module = make().to(device)
    spectra = recurrent_spectra(module)
    assert [(s["layer"], s["block"]) for s in spectra] == [(k, b) for k in range(2) for b in blocks]
    for s, bound in zip(spectra, bounds * 2):
        weight = getattr(module, f"weight_hh_l{s['layer']}").detach().cpu()
        row = blocks.index(s["block"]) * 6
        expected = torch.linalg.svdvals(weight[row:row + 6].double()).numpy()
        assert s["values"].dtype == np.float64 and s["values"].shape == (6,)
        np.testing.assert_allclose(s["values"], expected, rtol=1e-12)
        assert np.all(np.diff(s["values"]) <= 0)
        assert s["bound"] == bound


def test_recurrent_spectra_see_a_scaled_recurrent_matrix():
    module = nn.RNN(2, 4)
    with torch.no_grad():
        module.weight_hh_l0.copy_(3.0 * torch.eye(4))
    (only,) = recurrent_spectra(module)
    np.testing.assert_allclose(only["values"], [3.0] * 4)
