"""Hand-built sequences: laid out as each task's sample(), traced by a real Trainer, with the
right targets, and refused with a clear message when the input does not fit the task."""
import math

import numpy as np
import pytest
import torch

from explorer import Config, Trainer
from explorer.handmade import (MAX_TYPED, adding_sequence, brackets_sequence, copy_sequence, digit_sequence,
                               text_sequence, wave_sequence)
from explorer.tasks import TASKS, Control, WindowTask

PASTED = "the quick brown fox jumps over the lazy dog. " * 12


def _trainer(task, **options):
    return Trainer(Config(task=task, hidden=8, steps=1, probe_count=2, device="cpu", **options))


@pytest.fixture(scope="module")
def trainers(tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "one.csv"
    path.write_text("t,level\n" + "".join(f"{i},{math.sin(i / 4):.4f}\n" for i in range(120)))
    return {
        "adding": _trainer("adding", seq_len=20),
        "copy": _trainer("copy", seq_len=5),
        "brackets": _trainer("brackets", seq_len=12),
        "text": _trainer("text", seq_len=16, text=PASTED),
        "digits": _trainer("digits", seq_len=8),
        "sine": _trainer("series", seq_len=24, horizon=3),
        "co2": _trainer("series", seq_len=24, series="co2"),
        "csv": _trainer("csv", seq_len=10, csv_path=str(path), csv_columns="level", csv_target="level"),
    }


def _like_sample(trainer, x, y):
    """x and y have the dtypes and shapes of the task's own batch of one, and trace."""
    sx, sy = trainer.task.sample(1, torch.Generator().manual_seed(0))
    assert (x.dtype, y.dtype) == (sx.dtype, sy.dtype)
    assert (x.shape, y.shape) == (sx.shape, sy.shape)
    tr = trainer.trace(x, y)
    assert math.isfinite(tr.loss) and tr.output.shape[:2] == x.shape[:2]


def test_each_task_names_its_builder(trainers):
    assert {name: t.task.handmade().kind for name, t in trainers.items()} == {
        "adding": "adding", "copy": "copy", "brackets": "brackets", "text": "text",
        "digits": "digits", "sine": "wave", "co2": "wave", "csv": "wave"}
    assert {t.task.name for t in trainers.values()} == {n for n, s in TASKS.items() if s.trainable}


def test_every_builder_builds_from_its_controls_defaults_and_traces(trainers):
    for name, trainer in trainers.items():
        task, spec = trainer.task, trainer.task.handmade()
        assert len({c.name for c in spec.controls}) == len(spec.controls), name
        x, y = spec.build(task, {c.name: c.default for c in spec.controls})
        sx, sy = task.sample(1, torch.Generator().manual_seed(0))
        # a batch of one, as sample() lays it out; typed text or brackets may be of any length
        assert (x.dtype, y.dtype) == (sx.dtype, sy.dtype), name
        assert x.shape[0] == 1 and x.shape[2:] == sx.shape[2:], name
        assert y.shape == (sy.shape if task.output_mode == "last" else (1, x.shape[1])), name
        tr = trainer.trace(x, y)
        assert math.isfinite(tr.loss), name


def test_the_adding_controls_mark_their_steps_with_their_values(trainers):
    task = trainers["adding"].task
    spec = task.handmade()
    assert [(c.name, c.default, c.lo, c.hi) for c in spec.controls[:2]] == [("first", 5, 0, 19), ("second", 19, 0, 19)]
    x, y = spec.build(task, {"first": 2, "second": 9, "a": 0.8, "b": 0.3})
    assert torch.nonzero(x[0, :, 1]).flatten().tolist() == [2, 9]
    assert y.item() == pytest.approx(1.1)
    other, _ = spec.build(task, {"first": 4, "second": 9, "a": 0.1, "b": 0.3})
    assert torch.equal(x[0, [0, 1, 3, 5], 0], other[0, [0, 1, 3, 5], 0])  # the other steps stay put
    with pytest.raises(ValueError, match="first marker's step must be a whole number from 0 to 19"):
        spec.build(task, {"first": 20, "second": 9, "a": 0.8, "b": 0.3})


def test_a_control_of_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="number, slider, text, textarea, select"):
        Control("x", "x", "knob", 0)


def _two_column_task():
    t = np.arange(200.0)
    values = np.stack([np.sin(t / 5), np.cos(t / 7)], axis=1)  # (rows, columns)
    return WindowTask("csv", values, ["a", "b"], "b", seq_len=10, horizon=1, label="two.csv")


def test_a_csv_with_several_inputs_has_no_builder_and_refuses_a_wave():
    task = _two_column_task()
    assert task.handmade() is None
    with pytest.raises(ValueError, match=r"reads 2 columns \(a, b\)"):
        wave_sequence(task, 0.1)


def test_a_builder_refuses_another_task(trainers):
    with pytest.raises(ValueError, match="for the copy task, not the adding task"):
        copy_sequence(trainers["adding"].task, "1234567812")


def test_adding_sequence_marks_two_steps_and_sums_their_values(trainers):
    trainer = trainers["adding"]
    x, y = adding_sequence(trainer.task, 3, 15, seed=4)
    _like_sample(trainer, x, y)
    assert torch.nonzero(x[0, :, 1]).flatten().tolist() == [3, 15]
    assert y.item() == pytest.approx(x[0, 3, 0].item() + x[0, 15, 0].item())
    assert torch.equal(adding_sequence(trainer.task, 3, 15, seed=4)[0], x)
    values = np.linspace(0.0, 1.0, 20)
    x, y = adding_sequence(trainer.task, 2, 5, values=values)
    np.testing.assert_allclose(x[0, :, 0].numpy(), values, rtol=1e-6)
    assert y.item() == pytest.approx(values[2] + values[5])


@pytest.mark.parametrize("first, second, values, message", [
    (4, 4, None, "different steps; both are at step 4"),
    (0, 20, None, "second marker's step must be a whole number from 0 to 19"),
    (-1, 3, None, "first marker's step must be a whole number from 0 to 19"),
    (1.5, 3, None, "first marker's step must be a whole number"),
    (1, 3, np.full(19, 0.5), "20 in all"),
    (1, 3, np.full(20, 1.5), "from 0 to 1"),
])
def test_adding_sequence_refuses_bad_markers_and_values(trainers, first, second, values, message):
    with pytest.raises(ValueError, match=message):
        adding_sequence(trainers["adding"].task, first, second, values=values)


def test_copy_sequence_lays_out_symbols_delimiter_and_recall(trainers):
    trainer = trainers["copy"]
    x, y = copy_sequence(trainer.task, "1234 5678 12")
    _like_sample(trainer, x, y)
    tokens = x[0].argmax(dim=-1)
    assert tokens[:10].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 1, 2]
    assert tokens[trainer.task.delay + 9].item() == trainer.task.delimiter
    assert y[0, -10:].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 1, 2] and y[0, :-10].eq(0).all()


@pytest.mark.parametrize("symbols, message", [
    ("123456781", "exactly 10 symbols, got 9"),
    ("1234567890", "digit from 1 to 8; '9' is not"),
    ("12345678a1", "'a' is not"),
])
def test_copy_sequence_refuses_wrong_symbols(trainers, symbols, message):
    with pytest.raises(ValueError, match=message):
        copy_sequence(trainers["copy"].task, symbols)


def test_brackets_sequence_targets_the_depth_after_each_character(trainers):
    trainer = trainers["brackets"]
    x, y = brackets_sequence(trainer.task, "(()(()))()()")
    _like_sample(trainer, x, y)
    assert y[0].tolist() == [1, 2, 1, 2, 3, 2, 1, 0, 1, 0, 1, 0]
    x, y = brackets_sequence(trainer.task, "((()")     # another length, unbalanced at the end
    assert x.shape == (1, 4, 2) and y[0].tolist() == [1, 2, 3, 2]
    trainer.trace(x, y)


@pytest.mark.parametrize("text, message", [
    ("", "from 1 to 1000 brackets"),
    ("(" * (MAX_TYPED + 1), "got 1001 characters"),
    ("(]", "character 2 is ']'"),
    ("())", "Character 3 closes a bracket that is not open"),
    ("(" * 9, "Character 9 opens depth 9, deeper than this task's max_depth 8"),
])
def test_brackets_sequence_refuses_bad_strings(trainers, text, message):
    with pytest.raises(ValueError, match=message):
        brackets_sequence(trainers["brackets"].task, text)


def test_text_sequence_predicts_each_next_character(trainers):
    trainer = trainers["text"]
    typed = "the lazy fox jump"                       # 17 characters: 16 steps, the task's seq_len
    x, y = text_sequence(trainer.task, typed)
    _like_sample(trainer, x, y)
    assert trainer.task.decode(y) == typed[1:]
    assert trainer.task.decode(x[0].argmax(dim=-1)) == typed[:-1]
    x, y = text_sequence(trainer.task, "QZ!")          # outside the pasted text's vocabulary
    assert trainer.task.decode(y) == "\ufffd\ufffd"
    trainer.trace(x, y)


@pytest.mark.parametrize("text, message", [
    ("a", "from 2 to 1000 characters .* got 1"),
    ("a" * (MAX_TYPED + 1), "got 1001"),
])
def test_text_sequence_refuses_too_short_or_too_long_text(trainers, text, message):
    with pytest.raises(ValueError, match=message):
        text_sequence(trainers["text"].task, text)


def test_digit_sequence_picks_the_index_th_held_out_image_of_the_digit(trainers):
    trainer = trainers["digits"]
    images, labels = trainer.task.test
    sevens = torch.nonzero(labels == 7).flatten()
    x, y = digit_sequence(trainer.task, 7, index=2)
    _like_sample(trainer, x, y)
    assert y.tolist() == [7]
    assert torch.equal(x[0], trainer.task._pixels(images[sevens[2]]))


def test_digit_sequence_refuses_a_non_digit_and_says_how_many_images_exist(trainers):
    task = trainers["digits"].task
    count = int((task.test[1] == 3).sum())
    with pytest.raises(ValueError, match="digit must be a whole number from 0 to 9, got 10"):
        digit_sequence(task, 10)
    with pytest.raises(ValueError, match=f"has {count} images of a 3.* from 0 to {count - 1}"):
        digit_sequence(task, 3, index=count)


@pytest.mark.parametrize("name", ["sine", "co2"])
def test_wave_sequence_follows_the_sine_tasks_time_grid(trainers, name):
    trainer = trainers[name]
    task = trainer.task
    x, y = wave_sequence(task, 0.05, amplitude=1.2, phase=0.3)
    _like_sample(trainer, x, y)
    t = np.arange(task.seq_len)
    np.testing.assert_allclose(x[0, :, 0].numpy(), 1.2 * np.sin(2 * np.pi * 0.05 * t + 0.3), atol=1e-5)
    past = task.seq_len - 1 + task.horizon
    assert y.item() == pytest.approx(1.2 * math.sin(2 * math.pi * 0.05 * past + 0.3), abs=1e-5)


def test_wave_sequence_adds_seeded_noise(trainers):
    task = trainers["sine"].task
    clean, _ = wave_sequence(task, 0.1)
    noisy, _ = wave_sequence(task, 0.1, noise=task.noise, seed=1)
    assert torch.equal(noisy, wave_sequence(task, 0.1, noise=task.noise, seed=1)[0])
    assert 0.02 < (noisy - clean).std().item() < 0.1


@pytest.mark.parametrize("options, message", [
    ({"frequency": 0.0}, "above 0 and at most 0.5 cycles per step"),
    ({"frequency": 0.6}, "above 0 and at most 0.5 cycles per step"),
    ({"frequency": float("nan")}, "frequency must be a finite number"),
    ({"frequency": 0.1, "amplitude": -1.0}, "amplitude must be a finite number ≥ 0"),
    ({"frequency": 0.1, "noise": -0.1}, "noise must be a finite number ≥ 0"),
])
def test_wave_sequence_refuses_bad_wave_parameters(trainers, options, message):
    with pytest.raises(ValueError, match=message):
        wave_sequence(trainers["sine"].task, **options)
