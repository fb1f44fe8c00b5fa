"""How each task names its sequences for people: channel names, per-step labels, one-line
descriptions (Task.feature_names, time_labels and describe_sequence)."""
import numpy as np

from explorer import handmade
from explorer.tasks import MAX_TIME_LABELS, WindowTask, make_task


def test_adding_names_its_two_channels_and_describes_where_the_markers_are():
    task = make_task("adding", 20)
    x, y = handmade.adding_sequence(task, 3, 15)
    assert task.feature_names() == ["value", "marker"]
    assert task.time_labels(x[0]) is None          # values are drawn, not symbols
    expected = float(x[0, 3, 0] + x[0, 15, 0])
    assert task.describe_sequence(x[0], y[0]) == f"markers at t = 3, 15; target {expected:.2f}"


def test_text_labels_each_step_with_its_character_and_shows_whitespace_visibly():
    task = make_task("text", 40)
    x, y = handmade.text_sequence(task, "to be\nor")
    names = task.feature_names()
    assert len(names) == task.input_size
    assert "␣" in names and "⏎" in names
    assert task.time_labels(x[0]) == list("to␣be⏎o")  # the input is all but the last character
    assert task.describe_sequence(x[0], y[0]) == "“to␣be⏎o”"


def test_brackets_and_copy_label_steps_with_their_symbols():
    brackets = make_task("brackets", 20)
    x, _ = handmade.brackets_sequence(brackets, "(()())")
    assert brackets.feature_names() == ["(", ")"]
    assert "".join(brackets.time_labels(x[0])) == "(()())"

    copy = make_task("copy", 30)
    x, y = handmade.copy_sequence(copy, "1234567812")
    labels = copy.time_labels(x[0])
    assert labels[:10] == list("1234567812")
    assert labels.count(":") == 1 and labels[copy.delay + copy.symbols - 1] == ":"
    assert set(labels[10:]) <= {"·", ":"}
    assert copy.feature_names()[0] == "blank" and copy.feature_names()[-1] == "delimiter"


def test_long_sequences_get_no_per_step_labels_and_a_shortened_description():
    task = make_task("text", 200)
    text = "abcdefghij" * 12
    x, y = handmade.text_sequence(task, text)
    assert x.shape[1] > MAX_TIME_LABELS
    assert task.time_labels(x[0]) is None
    description = task.describe_sequence(x[0], y[0])
    assert description == f"“{text[:40]}…”"


def test_digits_name_columns_and_describe_the_label():
    task = make_task("digits", 28)
    x, y = handmade.digit_sequence(task, 7)
    assert task.feature_names() == [f"column {i}" for i in range(task.input_size)]
    assert task.describe_sequence(x[0], y[0]) == "digit 7"


def test_series_describe_the_window_end_and_target():
    task = make_task("series", 30)
    x, y = handmade.wave_sequence(task, 0.1)
    assert task.feature_names() == ["value"]
    assert task.describe_sequence(x[0], y[0]) == f"window ending {float(x[0, -1, 0]):.2f}; target {float(y[0, 0]):.2f}"



def test_a_csv_names_its_columns_and_describes_its_window():
    values = np.stack([np.sin(np.arange(200.0) / 5), np.arange(200.0) % 7], axis=1)  # (rows, columns)
    task = WindowTask("csv", values, ["a", "b"], "b", seq_len=10, horizon=1, label="two.csv")
    x, y = task.heldout(1, seed=0)
    assert task.feature_names() == ["a", "b"]
    assert task.time_labels(x[0]) is None
    assert task.describe_sequence(x[0], y[0]).startswith("window ending ")


def test_a_numpy_sequence_is_labelled_as_its_tensor():
    task = make_task("brackets", 20)
    x, _ = handmade.brackets_sequence(task, "(())()")
    assert task.time_labels(x[0].numpy()) == task.time_labels(x[0]) == list("(())()")
