"""Task generators: declared shapes, determinism, held-out separation, each task's own
rules, and every stated baseline re-measured with the trivial predictor."""
import collections
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from explorer import Config
from explorer.config import TASK_NAMES
from explorer.data import DataError, load_series
from explorer.tasks import SERIES, TASKS, UNKNOWN, make_task, task_for

CASES = {
    "adding": ("adding", 12, {}),
    "copy": ("copy", 5, {}),
    "digits": ("digits", 0, {}),
    "sine": ("series", 10, {}),
    "sunspots": ("series", 10, {"name": "sunspots", "horizon": 2}),
    "brackets": ("brackets", 12, {"max_depth": 4}),
    "text": ("text", 16, {}),
    "csv": ("csv", 6, {"columns": ["a", "c"], "target": "b", "horizon": 3}),
}


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "three.csv"
    t = np.arange(200)
    rows = [f"{i},{math.sin(i / 5):.4f},{i % 7},{math.cos(i / 3):.4f}" for i in t]
    path.write_text("step,a,b,c\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module", params=list(CASES))
def task(request, csv_path):
    name, seq_len, options = CASES[request.param]
    if name == "csv":
        options = {**options, "source": csv_path}
    return make_task(name, seq_len, **options)


def _generator(seed):
    return torch.Generator().manual_seed(seed)


def _random_output(task, n, seed=0):
    """A model-shaped output: (batch, output_size) or (batch, time, output_size)."""
    if task.output_mode == "last":
        return torch.randn(n, task.output_size, generator=_generator(seed))
    return torch.randn(n, task.seq_len, task.output_size, generator=_generator(seed))


def _check_batch(task, x, y, n):
    assert x.dtype == torch.float32 and x.shape == (n, task.seq_len, task.input_size)
    if task.output_mode == "all":
        assert y.dtype == torch.int64 and y.shape == (n, task.seq_len)
    elif task.regression:
        assert y.dtype == torch.float32 and y.shape == (n, 1) and task.output_size == 1
    else:
        assert y.dtype == torch.int64 and y.shape == (n,)
    if not task.regression:
        assert 0 <= y.min() and y.max() < task.output_size


def test_tasks_list_names_all_seven_and_series_includes_shipped():
    assert tuple(TASKS) == ("adding", "copy", "digits", "series", "brackets", "text", "csv", "model")
    # the seven train; "model" is your own model, looked at and never trained (explorer/yours.py)
    assert [name for name, spec in TASKS.items() if not spec.trainable] == ["model"]
    assert TASK_NAMES == tuple(TASKS) and "series" in TASKS
    assert SERIES[0] == "sine" and {"co2", "sunspots", "elnino"} <= set(SERIES)


# A value for every task field other than its default, each one that some task accepts.
OTHER_VALUES = {"seq_len": 20, "series": "co2", "horizon": 2, "text": "abc" * 100,
                "digits_source": "mnist", "csv_path": "/nonexistent.csv", "csv_columns": "a",
                "csv_target": "b", "trace_loss": "0@1"}


def test_every_field_a_task_declares_is_a_config_field():
    declared = {field for spec in TASKS.values() for field in spec.fields}
    assert declared <= {f.name for f in dataclasses.fields(Config)} - {"task"}
    assert declared == set(OTHER_VALUES)
    assert all(name == spec.name and spec.help for name, spec in TASKS.items())


def test_every_task_builds_from_a_config_and_reads_only_the_fields_it_declares(csv_path):
    for name, spec in TASKS.items():
        if not spec.trainable:
            with pytest.raises(ValueError, match="Runs page"):    # it needs the uploaded model
                task_for(Config(task=name))
            continue
        config = Config(task=name, seq_len=12, csv_path=str(csv_path) if name == "csv" else "")
        task = task_for(config)
        assert task.name == name
        _check_batch(task, *task.sample(2, _generator(0)), 2)
        # Changing every field it does not declare builds the same task.
        undeclared = {k: v for k, v in OTHER_VALUES.items() if k not in spec.fields}
        other = task_for(dataclasses.replace(config, **undeclared))
        assert other.describe() == task.describe(), name


def test_the_csv_task_from_a_config_needs_its_path():
    with pytest.raises(ValueError, match="csv_path"):
        task_for(Config(task="csv"))


def test_sample_and_heldout_shapes_match_declared_sizes(task):
    _check_batch(task, *task.sample(5, _generator(0)), 5)
    _check_batch(task, *task.heldout(3, seed=0), 3)
    assert task.output_mode in ("last", "all")


def test_same_seed_same_batch_different_seed_different(task):
    x1, y1 = task.sample(8, _generator(3))
    x2, y2 = task.sample(8, _generator(3))
    x3, _ = task.sample(8, _generator(4))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert torch.equal(task.heldout(8, seed=1)[0], task.heldout(8, seed=1)[0])


def test_heldout_is_not_the_training_stream_of_the_same_seed(task):
    for seed in (0, 1):
        assert not torch.equal(task.heldout(8, seed)[0], task.sample(8, _generator(seed))[0])


def test_loss_sum_is_n_times_mean_and_none_gives_each_sequence(task):
    x, y = task.sample(6, _generator(0))
    output = _random_output(task, 6)
    mean, total = task.loss(output, y), task.loss(output, y, reduction="sum")
    per_sequence = task.loss(output, y, reduction="none")
    assert torch.allclose(total, 6 * mean, rtol=1e-5)
    assert per_sequence.shape == (6,)
    assert torch.allclose(per_sequence[2], task.loss(output[2:3], y[2:3]), rtol=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        task.loss(output, y, reduction="max")


def test_describe_is_json_and_states_the_baseline(task):
    summary = json.loads(json.dumps(task.describe()))
    assert summary["name"] == task.name and summary["seq_len"] == task.seq_len
    assert summary["baseline_loss"] == pytest.approx(task.baseline_loss)
    assert math.isfinite(task.baseline_loss) and math.isfinite(task.baseline_metric)


def test_adding_has_one_marker_per_half_and_target_sums_marked_values():
    task = make_task("adding", 11)
    x, y = task.sample(500, _generator(0))
    markers, values = x[..., 1], x[..., 0]
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert (markers[:, :5].sum(1) == 1).all() and (markers[:, 5:].sum(1) == 1).all()
    assert torch.allclose(y[:, 0], (values * markers).sum(1))
    assert 0 <= values.min() and values.max() < 1


def test_adding_baseline_predict_one_measures_one_sixth():
    task = make_task("adding", 20)
    x, y = task.sample(40_000, _generator(0))
    prediction = task.baseline_predict(x)
    assert task.loss(prediction, y).item() == pytest.approx(1 / 6, abs=0.01)
    assert task.baseline_loss == pytest.approx(1 / 6)
    assert task.metric(prediction, y) == pytest.approx(task.baseline_metric, abs=0.01)
    assert task.metric(y, y) == 1.0


def test_copy_targets_are_the_input_symbols_after_the_delimiter():
    task = make_task("copy", 7)
    x, y = task.sample(50, _generator(0))
    assert task.seq_len == 27 and x.sum(-1).eq(1).all()  # one-hot
    tokens = x.argmax(-1)
    assert ((1 <= tokens[:, :10]) & (tokens[:, :10] <= 8)).all()
    assert (tokens[:, 16] == 9).all()  # delimiter after T − 1 = 6 blanks
    assert (tokens[:, 10:16] == 0).all() and (tokens[:, 17:] == 0).all()
    assert torch.equal(y[:, -10:], tokens[:, :10]) and (y[:, :-10] == 0).all()


def test_copy_baseline_measures_ten_ln8_over_length_and_one_eighth():
    task = make_task("copy", 30)
    x, y = task.sample(4000, _generator(0))
    prediction = task.baseline_predict(x)
    assert task.loss(prediction, y).item() == pytest.approx(10 * math.log(8) / 50, abs=1e-4)
    assert task.baseline_loss == pytest.approx(10 * math.log(8) / 50, abs=1e-12)
    assert task.metric(prediction, y) == pytest.approx(1 / 8, abs=0.01)
    assert task.metric(torch.nn.functional.one_hot(y, 9).float(), y) == 1.0


def test_digits_rows_are_time_steps_and_the_split_is_fixed_and_disjoint():
    task = make_task("digits", 123)
    assert (task.seq_len, task.input_size) == (8, 8)
    assert task.options["train_size"] + task.options["heldout_size"] == 1797
    heldout, _ = task.heldout(10_000, seed=0)
    assert len(heldout) == task.options["heldout_size"]
    train, _ = task.sample(3000, _generator(0))
    held = {tuple(image.flatten().tolist()) for image in heldout}
    assert not any(tuple(image.flatten().tolist()) in held for image in train)
    again = make_task("digits", 8)
    assert torch.equal(again.heldout(50, seed=0)[0], task.heldout(50, seed=0)[0])
    assert 0 <= train.min() and train.max() <= 1


def test_digits_baseline_is_uniform_guess():
    task = make_task("digits", 8)
    x, y = task.sample(5000, _generator(0))
    prediction = task.baseline_predict(x)
    assert task.loss(prediction, y).item() == pytest.approx(math.log(10), abs=1e-6)
    assert task.metric(prediction, y) == pytest.approx(0.1, abs=0.02)
    assert (task.baseline_loss, task.baseline_metric) == (pytest.approx(math.log(10)), 0.1)


def test_sine_target_continues_the_window_and_baseline_is_measured():
    task = make_task("series", 30, horizon=1)
    assert task.name == "series" and task.options["series"] == "sine"
    x, y = task.heldout(4096, seed=0)
    prediction = task.baseline_predict(x)
    assert task.loss(prediction, y).item() == pytest.approx(task.baseline_loss, rel=1e-6)
    x, y = task.sample(4096, _generator(9))
    measured = task.loss(task.baseline_predict(x), y).item()
    assert measured == pytest.approx(task.baseline_loss, rel=0.1)
    # next-value forecasting: a wave moves little in one step, so the target is near the last input
    assert (y[:, 0] - x[:, -1, 0]).abs().mean() < (y[:, 0] - x[:, 0, 0]).abs().mean()


@pytest.mark.parametrize("name", [s for s in SERIES if s != "sine"])
def test_real_series_baseline_equals_repeat_last_on_the_last_fifth(name):
    window, horizon = 12, 2
    task = make_task("series", window, name=name, horizon=horizon)
    values = load_series(name)
    cut = int(len(values) * 0.8)
    test = values[cut:]
    last, future = test[window - 1:-horizon], test[window - 1 + horizon:]
    expected = np.mean((future - last) ** 2) / values[:cut].std() ** 2
    assert task.baseline_loss == pytest.approx(expected, rel=1e-4)
    x, y = task.heldout(10**6, seed=0)
    assert len(x) == len(future)
    assert task.loss(task.baseline_predict(x), y).item() == pytest.approx(expected, rel=1e-4)
    mae = np.abs(future - last).mean()  # the metric is in the series' own units
    assert task.metric(task.baseline_predict(x), y) == pytest.approx(mae, rel=1e-4)


def test_real_series_heldout_windows_come_only_from_the_last_fifth():
    task = make_task("series", 10, name="sunspots")
    values = load_series("sunspots")
    cut = int(len(values) * 0.8)
    mean, std = task.options["mean"][0], task.options["std"][0]
    all_windows = torch.tensor((values - mean) / std, dtype=torch.float32).unfold(0, 10, 1)
    for x, first_allowed, last_allowed in ((task.heldout(1000, 0)[0], cut, len(values)),
                                           (task.sample(200, _generator(0))[0], 0, cut)):
        for window in x[..., 0]:
            starts = torch.nonzero(torch.isclose(all_windows, window, atol=1e-5).all(1)).flatten()
            assert len(starts)
            assert first_allowed <= starts.min() and starts.max() + 10 <= last_allowed


def test_series_rejects_unknown_name_and_window_too_long_for_heldout():
    with pytest.raises(ValueError, match="sine"):
        make_task("series", 10, name="nope")
    with pytest.raises(DataError, match=r"309 rows.*needs at least 501"):
        make_task("series", 100, name="sunspots")


def test_csv_task_normalises_by_training_rows_and_forecasts_target(csv_path):
    task = make_task("csv", 6, source=csv_path, columns=["a", "c"], target="b", horizon=3)
    assert task.options["columns"] == ["a", "c", "b"] and task.input_size == 3
    x, y = task.heldout(1000, seed=0)
    assert len(x) == 40 - 6 - 3 + 1  # rows 160..199 are held out
    b = np.arange(200) % 7
    mean, std = b[:160].mean(), b[:160].std()
    future = (b[160 + 6 - 1 + 3:] - mean) / std
    assert sorted(y[:, 0].tolist()) == pytest.approx(sorted(future.tolist()), abs=1e-5)
    last = (b[160 + 6 - 1:200 - 3] - mean) / std
    assert task.baseline_loss == pytest.approx(np.mean((future - last) ** 2), rel=1e-5)


def test_brackets_depth_is_the_running_count_never_negative_ending_at_zero():
    task = make_task("brackets", 40, max_depth=3)
    x, y = task.sample(300, _generator(0))
    assert x.sum(-1).eq(1).all()
    steps = torch.where(x[..., 0] == 1, 1, -1)  # '(' opens, ')' closes
    assert torch.equal(steps.cumsum(1), y)
    assert y.min() == 0 and y.max() == 3 and (y[:, -1] == 0).all()
    assert len({tuple(row.tolist()) for row in x[..., 0]}) > 250  # strings vary


def test_brackets_baseline_is_majority_depth_measured():
    task = make_task("brackets", 30)
    _, depths = task.heldout(1024, seed=1)
    majority = torch.bincount(depths.flatten()).max().item() / depths.numel()
    assert task.baseline_metric == pytest.approx(majority)
    x, y = task.sample(4000, _generator(0))
    prediction = task.baseline_predict(x)
    assert task.metric(prediction, y) == pytest.approx(task.baseline_metric, abs=0.02)
    assert task.loss(prediction, y).item() == pytest.approx(task.baseline_loss, abs=0.03)


def test_brackets_rejects_odd_length():
    with pytest.raises(ValueError, match="even"):
        make_task("brackets", 7)


def test_text_encode_decode_round_trip_and_unknown_symbol():
    task = make_task("text", 20)
    source = "def f(x):\n    return {'a': x}  # ~\n"
    assert task.decode(task.encode(source)) == source
    assert task.vocab[-1] == UNKNOWN and task.input_size == len(task.vocab)
    assert task.decode(task.encode("é\tß")) == UNKNOWN * 3
    assert task.encode("ab").dtype == torch.int64


def test_text_targets_are_next_characters_and_heldout_is_the_tail():
    text = "ab" * 450 + "xyz" * 40  # 1020 chars: the last 10% starts inside the xyz part
    task = make_task("text", 8, text=text)
    assert task.vocab == "abxyz" + UNKNOWN
    x, y = task.sample(50, _generator(0))
    inputs = [task.decode(row.argmax(-1)) for row in x]
    assert all(set(s) <= {"a", "b", "x", "y", "z"} and s in text for s in inputs)
    assert all(task.decode(row[:-1]) == s[1:] for row, s in zip(y, inputs))
    held, _ = task.heldout(100, seed=0)
    assert all(set(task.decode(row.argmax(-1))) <= set("xyz") for row in held)


def test_text_baseline_is_unigram_entropy_of_training_text():
    task = make_task("text", 64)
    train = task.decode(task.train)
    counts = np.array(list(collections.Counter(train).values()), dtype=float)
    p = counts / counts.sum()
    entropy = -(p * np.log(p)).sum()
    assert task.baseline_loss == pytest.approx(entropy, abs=1e-3)
    assert task.baseline_metric == pytest.approx(entropy / math.log(2), abs=1e-3)
    x, y = task.sample(1000, _generator(0))
    prediction = task.baseline_predict(x)
    assert task.loss(prediction, y).item() == pytest.approx(entropy, abs=0.05)
    assert task.metric(prediction, y) == pytest.approx(entropy / math.log(2), abs=0.07)


def test_text_too_short_for_window_says_how_many_characters():
    with pytest.raises(DataError, match=r"has 50 characters.*seq_len 20 needs at least \d+"):
        make_task("text", 20, text="x" * 50)


def test_make_task_rejects_unknown_names_options_and_values():
    with pytest.raises(ValueError, match="adding, copy, digits"):
        make_task("addition", 10)
    with pytest.raises(ValueError, match="no option depth; its options are max_depth"):
        make_task("brackets", 10, depth=3)
    with pytest.raises(ValueError, match="seq_len"):
        make_task("adding", 0)
    with pytest.raises(ValueError, match="horizon"):
        make_task("series", 10, horizon=0)
    with pytest.raises(ValueError, match="source"):
        make_task("csv", 10)
    with pytest.raises(ValueError, match="digits8"):
        make_task("digits", 8, source="emnist")
