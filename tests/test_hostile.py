"""Hostile and broken input (issue 11): bad CSVs, odd texts, a learning rate that diverges and
running out of memory each end in a message a user can act on, and the app goes on working.
A device that is not here is pinned in test_app.py (the warning, training on the CPU) and
test_train.py (resolve_device)."""
import csv
import io
import random
import string
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_app import app, button, fresh_session, metric, no_exception, step  # noqa: F401 (autouse fixture)

from explorer import Config, Run, Status
from explorer.data import DataError, load_csv
from explorer.models import SequenceModel
from explorer.store import RunNotFound, RunStore
from explorer.tasks import task_for

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def series_csv(rows: int = 80, delimiter: str = ",", decimal: str = ".") -> str:
    """A two-column series, long enough for the app's SMALL window (12 + 1 needs 61 rows)."""
    lines = [delimiter.join(["temp", "rain"])]
    for i in range(rows):
        lines.append(delimiter.join(f"{v:.2f}".replace(".", decimal) for v in (np.sin(i / 5), i % 7 / 3)))
    return "\n".join(lines) + "\n"


def saved(path, run_id: str, until) -> RunStore:
    """The store at path once run_id's saved record satisfies until(info): a run saves itself
    on its worker thread just after it pauses or ends, so a test may look before it has."""
    store, deadline = RunStore(path), time.monotonic() + 30
    while True:
        try:
            if until(store.info(run_id)):
                return store
        except RunNotFound:
            pass
        assert time.monotonic() < deadline, f"run {run_id} was never saved as expected"
        time.sleep(0.05)


# --- CSV: what loads ----------------------------------------------------------------------------

def test_a_european_excel_export_with_semicolons_and_decimal_commas_loads_as_numbers():
    table = load_csv(io.BytesIO(b"date;temp;rain\n2024-01-01;3,5;0\n2024-01-02;4;1,25\n"))
    assert list(table.frame.columns) == ["temp", "rain"] and table.target == "rain"
    assert table.frame["temp"].tolist() == [3.5, 4.0] and table.frame["rain"].tolist() == [0.0, 1.25]


@pytest.mark.parametrize("delimiter", ["\t", "|", ";"])
def test_tab_pipe_and_semicolon_separated_files_load_as_the_same_table(delimiter):
    expected = load_csv(io.StringIO(series_csv())).frame
    assert load_csv(io.StringIO(series_csv(delimiter=delimiter))).frame.equals(expected)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_a_file_with_a_byte_order_mark_is_read_in_its_encoding(encoding):
    text = "température,pluie\n3.5,0\n4,1.5\n"
    raw = text.encode(encoding)
    if encoding == "utf-16-be":
        raw = b"\xfe\xff" + raw                       # the big-endian BOM, written by hand
    table = load_csv(io.BytesIO(raw))
    assert list(table.frame.columns) == ["température", "pluie"] and table.frame["pluie"].tolist() == [0.0, 1.5]


def test_excels_unicode_text_export_utf16_and_tab_separated_loads():
    table = load_csv(io.BytesIO(series_csv(delimiter="\t").encode("utf-16")))
    assert table.frame.equals(load_csv(io.StringIO(series_csv())).frame)


def test_a_semicolon_file_with_a_broken_row_says_how_it_was_read():
    with pytest.raises(DataError, match=r"\(read as semicolon-separated\).*line 3"):
        load_csv(io.BytesIO(b"a;b\n1;2\n1;2;3\n"))


def test_a_number_column_with_a_stray_word_is_named_not_silently_dropped():
    data = b"a,b\n1,2\nx,3\n4,5\n"
    with pytest.raises(DataError, match=r"Column 'a' .* not numeric \(data row 2 holds 'x'\).*input columns"):
        load_csv(io.BytesIO(data))
    assert load_csv(io.BytesIO(data), columns=["b"]).frame["b"].tolist() == [2.0, 3.0, 5.0]
    assert list(load_csv(io.BytesIO(b"when,v\nmonday,1\ntuesday,2\n")).frame.columns) == ["v"]   # text stays out


def test_one_data_row_is_too_short_for_a_window_and_says_so(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("temp,rain\n3.5,0\n")
    with pytest.raises(DataError, match=r"one.csv has 1 row; window 12 \+ horizon 1 needs at least 61"):
        task_for(Config(task="csv", csv_path=str(path), seq_len=12))


# --- CSV: fuzzed --------------------------------------------------------------------------------

def assert_usable(table) -> None:
    """What load_csv promises when it does not raise: finite float64 columns, the target among them."""
    frame = table.frame
    assert frame.shape[0] >= 1 and frame.shape[1] >= 1
    assert (frame.dtypes == np.float64).all() and np.isfinite(frame.to_numpy()).all()
    assert table.target in frame.columns


@FUZZ
@given(st.binary(max_size=600))
def test_fuzzed_bytes_load_as_a_usable_table_or_raise_data_error(raw):
    try:
        table = load_csv(io.BytesIO(raw))
    except DataError:
        return
    assert_usable(table)


NAMES = st.text(max_size=6)            # unicode, empty, and (drawn twice) duplicates
CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**30, 10**30).map(str),
    st.sampled_from(["", "nan", "inf", "-inf", "NA", "1e999", "1,5", "0x10", "True", " 7 ", "1e-320"]),
    st.text(max_size=5))


@st.composite
def tables(draw):
    """A small table written as CSV text, with a drawn delimiter, quoting, decimal mark and encoding."""
    width = draw(st.integers(1, 4))
    header = draw(st.lists(NAMES, min_size=width, max_size=width))
    rows = draw(st.lists(st.lists(CELLS, min_size=width, max_size=width), max_size=8))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|", " "]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    if draw(st.booleans()):
        rows = [[cell.replace(".", ",") for cell in row] for row in rows]   # decimal commas
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, quoting=quoting).writerows([header, *rows])
    return out.getvalue().encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"])))


@FUZZ
@given(tables(), st.sampled_from([None, "a"]), st.sampled_from([None, "b"]))
def test_fuzzed_tables_load_as_a_usable_table_or_raise_data_error(raw, column, target):
    try:
        table = load_csv(io.BytesIO(raw), columns=[column] if column else None, target=target)
    except DataError:
        return
    assert_usable(table)


@st.composite
def series(draw):
    """A numeric table of 0 to 90 rows, some of it odd (a constant column, huge or tiny values)."""
    rows = draw(st.one_of(st.integers(0, 60), st.integers(61, 90)))     # too short, or long enough
    width = draw(st.integers(1, 3))
    scale = draw(st.sampled_from([1.0, 1e-300, 1e150, 1e300, 1e307]))   # 1e307: finite, but sums overflow
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).normal(size=(rows, width)).clip(-10, 10) * scale
    if draw(st.booleans()):
        values[:, 0] = scale                          # a constant column
    names = [string.ascii_lowercase[i] for i in range(width)]
    return "\n".join([",".join(names), *(",".join(repr(float(v)) for v in row) for row in values)]) + "\n"


@FUZZ
@given(series(), st.integers(2, 30), st.integers(1, 5), st.sampled_from(["", "a", "b,a", "zz"]),
       st.sampled_from(["", "a", "c"]))
def test_fuzzed_csv_configs_build_a_finite_task_or_raise_value_error(tmp_path_factory, text, seq_len, horizon,
                                                                     columns, target):
    path = tmp_path_factory.getbasetemp() / "fuzzed.csv"
    path.write_text(text)
    config = Config(task="csv", csv_path=str(path), seq_len=seq_len, horizon=horizon, csv_columns=columns,
                    csv_target=target)
    try:
        task = task_for(config)
    except ValueError:                                # DataError is one
        return
    x, y = task.sample(4, torch.Generator().manual_seed(0))
    assert x.shape == (4, seq_len, task.input_size) and torch.isfinite(x).all() and torch.isfinite(y).all()
    assert torch.isfinite(task.train).all() and torch.isfinite(task.test).all()


# --- CSV: through the app -----------------------------------------------------------------------

def upload(at, name: str, data: bytes):
    return at.file_uploader(key="cfg_csv_upload").set_value((name, data, "text/csv")).run()


BROKEN_UPLOADS = {           # name -> (bytes, words the message must hold)
    "empty.csv": (b"", ["empty.csv is empty"]),
    "binary.csv": (random.Random(0).randbytes(2000), ["binary.csv holds binary data"]),
    "nan.csv": (series_csv().replace("0.33", "nan", 1).encode(), ["'rain'", "missing value", "nan.csv"]),
    "inf.csv": (series_csv().replace("0.33", "inf", 1).encode(), ["'rain'", "infinite value", "inf.csv"]),
    "one-row.csv": (b"temp,rain\n3.5,0\n", ["one-row.csv has 1 row", "needs at least 61"]),
    "mixed.csv": (series_csv().replace("0.33", "n/a?", 1).encode(), ["'rain'", "not numeric", "'n/a?'"]),
    "latin-1.csv": ("température,pluie\n3,5\n".encode("latin-1"), ["not UTF-8", "line 1"]),
}


def test_every_broken_csv_upload_is_a_message_and_the_run_trains_on():
    at = app(task="csv")
    upload(at, "good.csv", series_csv().encode())
    no_exception(at)
    at = step(at, 1)
    for name, (data, words) in BROKEN_UPLOADS.items():
        at.file_uploader(key="cfg_csv_upload").set_value((name, data, "text/csv"))
        button(at, "Reset").click().run()                              # upload, then Reset
        no_exception(at)
        errors = " ".join(e.value for e in at.error)
        assert "Could not reset" in errors and "The current run is kept." in errors, (name, errors)
        assert all(word in errors for word in words), (name, words, errors)
        before = int(metric(at, "Step"))
        assert int(metric(step(at, 1), "Step")) == before + 1, name          # the old run trains on


@pytest.mark.parametrize("name, data", [
    ("european.csv", series_csv(delimiter=";", decimal=",").encode()),
    ("unicode-text.txt", series_csv(delimiter="\t").encode("utf-16")),
])
def test_a_semicolon_or_utf16_upload_just_trains(name, data, tmp_path):
    at = app(task="csv")
    upload(at, name, data)
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    at = step(at, 1)
    assert metric(at, "Step") == "1"
    run_id = at.query_params["run"]
    trainer = saved(tmp_path / "runs.sqlite", run_id, lambda info: info.steps == 1).load(run_id)
    assert trainer.task.feature_names() == ["temp", "rain"]


def test_an_upload_over_the_cap_is_refused_with_its_own_message_and_nothing_changes(monkeypatch):
    monkeypatch.setenv("GATE_EXPLORER_MAX_UPLOAD_MB", "0.01")          # 10 KiB
    at = app(task="csv")
    upload(at, "good.csv", series_csv().encode())
    at = step(at, 1)
    upload(at, "huge.csv", series_csv(rows=2000).encode())
    no_exception(at)
    assert any("huge.csv is 0.0" in e.value and "capped at 0.01 MB" in e.value and "Nothing was read" in e.value
               for e in at.sidebar.error), [e.value for e in at.sidebar.error]
    assert not any("settings differ" in i.value for i in at.sidebar.info)     # the draft kept good.csv
    assert metric(step(at, 1), "Step") == "2"


# --- text ---------------------------------------------------------------------------------------

def text_area(at, text: str):
    return at.sidebar.text_area(key="cfg_text").set_value(text).run()


def test_odd_texts_train_or_say_why_and_the_run_goes_on(tmp_path):
    at = app(task="text")                                            # empty: Python's own source
    at = step(at, 1)
    assert "unigram" in at.markdown[0].value and metric(at, "Step") == "1"
    text_area(at, "x" * 1_000_000)                                   # 1 MB: over Config's cap
    no_exception(at)
    assert any("text is too long (1000000 characters; at most 200000)" in e.value for e in at.sidebar.error)
    assert metric(step(at, 1), "Step") == "2"                        # the run trains on
    text_area(at, "😀🎉" * 200)                                       # nothing but emoji
    button(at, "Reset").click().run()
    assert any("no printable ASCII" in e.value and "The current run is kept." in e.value for e in at.error)
    assert metric(step(at, 1), "Step") == "3"
    text_area(at, "naïve 😀 text\x00 with NUL bytes\n" * 20)         # mixed: unknown symbols, trains
    button(at, "Reset").click().run()
    no_exception(at)
    assert not at.error and metric(step(at, 1), "Step") == "1"
    run_id = at.query_params["run"]
    task = saved(tmp_path / "runs.sqlite", run_id, lambda info: info.steps == 1).load(run_id).task
    assert task.vocab[-1] == "\ufffd" and "\x00" not in task.vocab and "a" in task.vocab


# --- a learning rate that diverges --------------------------------------------------------------

DIVERGING = dict(cell="rnn-relu", seq_len=30, hidden=64, optimizer="sgd", lr=10.0, clip=0.0)


def test_a_diverging_learning_rate_says_so_is_saved_diverged_and_reset_trains_again(tmp_path):
    at = step(app(**DIVERGING), 100)
    no_exception(at)
    assert metric(at, "Status") == "diverged", "lr=10 with SGD on a ReLU RNN did not diverge in 100 steps"
    message = " ".join(e.value for e in at.error)
    assert "Training diverged" in message and "lower learning rate" in message
    run_id = at.query_params["run"]
    info = saved(tmp_path / "runs.sqlite", run_id, lambda info: info.status == "diverged").info(run_id)
    assert info.steps == int(metric(at, "Step"))
    at.sidebar.number_input(key="cfg_lr").set_value(0.01).run()
    button(at, "Reset").click().run()
    at = step(at, 10)
    assert metric(at, "Step") == "10" and metric(at, "Status") == "paused"


def test_a_saved_run_that_diverges_at_once_on_resume_saves_its_status(tmp_path):
    store = RunStore(tmp_path / "own.sqlite")
    run = Run(Config(task="adding", seq_len=12, hidden=8, batch_size=8), store=store)
    run.step(3)
    run.wait_until_idle()
    saved(store.path, run.id, lambda info: info.status == "paused" and info.steps == 3)
    run.trainer.step = lambda: run.trainer._diverge("the loss became non-finite at step 4")
    run.step(1)
    run.join(10)
    assert store.info(run.id).status == "diverged" and store.info(run.id).steps == 3


# --- out of memory ------------------------------------------------------------------------------

OUT_OF_MEMORY = {
    "cuda": lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    "python": MemoryError,
    "cpu allocator": lambda: RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 8 GB"),
}


def run_out_of_memory(error):
    def forward(self, x):
        raise error()
    return forward


@pytest.mark.parametrize("kind", list(OUT_OF_MEMORY))
def test_out_of_memory_in_a_step_ends_the_run_saved_at_its_last_step(kind, tmp_path, monkeypatch):
    store = RunStore(tmp_path / "own.sqlite")
    run = Run(Config(task="adding", seq_len=12, hidden=8, batch_size=8), store=store)
    run.step(5)
    run.wait_until_idle()
    monkeypatch.setattr(SequenceModel, "forward", run_out_of_memory(OUT_OF_MEMORY[kind]))
    run.step(1)
    run.join(10)
    assert not run._thread.is_alive()
    snap = run.snapshot()
    assert snap.status == Status.ERROR and snap.ended
    assert "ran out of memory after step 5" in snap.message
    assert "saved as it stood" in snap.message and "Lower batch_size, seq_len, hidden or layers" in snap.message
    assert all(p.grad is None for p in run.trainer.model.parameters())          # freed
    assert store.info(run.id).status == "error" and store.info(run.id).steps == 5
    again = Run.open(store, run.id, run.owner_key)
    assert again.status == Status.ERROR and again.trainer.steps_done == 5
    assert again.snapshot().history.steps["step"].tolist() == [1, 2, 3, 4, 5]


def test_out_of_memory_in_a_probe_keeps_the_step_it_followed(tmp_path):
    store = RunStore(tmp_path / "own.sqlite")
    run = Run(Config(task="adding", seq_len=12, hidden=8, batch_size=8, probe_every=4), store=store)

    def probe():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    run.trainer.probe = probe
    run.step(10)
    run.join(10)
    snap = run.snapshot()
    assert snap.status == Status.ERROR and "after step 4" in snap.message and snap.step == 4
    assert store.load(run.id).history.view().steps["step"].tolist() == [1, 2, 3, 4]


def test_a_run_out_of_memory_in_the_app_says_what_to_lower_and_reset_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("GATE_EXPLORER_WORKERS", "0")     # the patched forward is this process's
    at = step(app(), 10)
    with monkeypatch.context() as patch:
        patch.setattr(SequenceModel, "forward", run_out_of_memory(OUT_OF_MEMORY["cuda"]))
        at = step(at, 1)
    no_exception(at)
    assert metric(at, "Status") == "error" and metric(at, "Step") == "10"
    assert any("ran out of memory after step 10" in e.value and "Lower batch_size" in e.value for e in at.error)
    assert saved(tmp_path / "runs.sqlite", at.query_params["run"], lambda info: info.status == "error")
    button(at, "Reset").click().run()
    at = step(at, 1)
    assert metric(at, "Step") == "1" and metric(at, "Status") == "paused"
