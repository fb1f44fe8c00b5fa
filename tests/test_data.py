"""Data loaders: the shipped assets, MNIST's IDX files, and every way a CSV can be bad
ending in a DataError a student can act on."""
import gzip
import io
import random
import struct

import numpy as np
import pytest
import torch

from explorer.data import (ASSETS, MNIST_FILES, SHIPPED_SERIES, DataError, app_dir, load_csv,
                           load_digits, load_mnist, load_series, stdlib_corpus)
from explorer.tasks import make_task


def test_shipped_digits_are_1797_images_of_8x8_scaled_to_unit_range():
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.float32
    assert images.min() == 0 and images.max() == 1
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    first_row = np.array([0, 0, 5, 13, 9, 1, 0, 0]) / 16  # the file's first line, a zero
    assert np.allclose(images[0, 0], first_row) and labels[0] == 0


@pytest.mark.parametrize("name, length", [("co2", 2284), ("sunspots", 309), ("elnino", 732)])
def test_shipped_series_load_whole_and_finite(name, length):
    values = load_series(name)
    assert values.shape == (length,) and np.isfinite(values).all()


def test_assets_readme_documents_every_shipped_file():
    readme = (ASSETS / "README.md").read_text()
    for name in ["digits.csv.gz", *(f"series/{s}.csv" for s in SHIPPED_SERIES)]:
        assert (ASSETS / name).is_file() and name in readme
    assert "CC BY 4.0" in readme and "public domain" in readme.lower()


def test_assets_are_found_in_a_checkout_and_in_an_installed_package(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "explorer").mkdir(parents=True)
    assert app_dir(checkout / "explorer") == checkout
    installed = tmp_path / "site-packages" / "explorer" / "_app"   # where pyproject.toml puts them
    installed.mkdir(parents=True)
    assert app_dir(installed.parent) == installed
    assert ASSETS == app_dir() / "assets" and (ASSETS / "digits.csv.gz").is_file()


def test_unknown_series_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="co2, sunspots, elnino"):
        load_series("nile")


def test_stdlib_corpus_is_real_python_source_capped_in_size():
    corpus = stdlib_corpus()
    assert 50_000 < len(corpus) <= 200_000
    assert "def dedent(text):" in corpus  # textwrap comes first
    assert len(stdlib_corpus(max_chars=1000)) == 1000


# ---- CSV ----

GOOD = ("date,temp,rain,city\n"
        "2024-01-01,3.5,0,Oslo\n2024-01-02,4.0,1.5,Oslo\n2024-01-03,2.5,0.2,Oslo\n")


def test_good_csv_keeps_numeric_columns_and_targets_the_last(tmp_path):
    path = tmp_path / "weather.csv"
    path.write_text(GOOD)
    table = load_csv(path)
    assert list(table.frame.columns) == ["temp", "rain"] and table.target == "rain"
    assert table.frame["temp"].tolist() == [3.5, 4.0, 2.5]
    assert table.frame.dtypes.eq(np.float64).all()
    chosen = load_csv(str(path), columns=["rain"], target="temp")
    assert list(chosen.frame.columns) == ["rain", "temp"] and chosen.target == "temp"


def test_csv_from_binary_and_text_file_objects_read_twice(tmp_path):
    for handle in (io.BytesIO(("\ufeff" + GOOD).encode()), io.StringIO(GOOD)):
        first = load_csv(handle)
        again = load_csv(handle)  # a file object already read starts over
        assert first.frame.equals(again.frame) and list(first.frame.columns) == ["temp", "rain"]


LATIN1 = "name,value\ncafé,1\nnaïve,2\n".encode("latin-1")
JUNK = random.Random(0).randbytes(3000)

BAD_CSVS = {
    "empty": (b"", {}, ["empty"]),
    "blank lines": (b"\n\n  \n", {}, ["empty"]),
    "header only": (b"a,b\n", {}, ["header", "no data rows"]),
    "text only": (b"name,city\nx,Oslo\ny,Rome\n", {}, ["no numeric columns", "name, city"]),
    "text column chosen": (b"name,v\nx,1\ny,2\n", {"columns": ["name"]},
                           ["'name'", "not numeric", "row 1", "'x'", "numeric columns: v"]),
    "text target": (b"v,name\n1,x\n2,y\n", {"target": "name"}, ["'name'", "not numeric"]),
    "missing value": (b"a,b\n1,2\n3,\n5,6\n", {}, ["'b'", "missing", "row 2"]),
    "nan": (b"a,b\n1,nan\n3,4\n", {}, ["'b'", "NaN", "row 1"]),
    "inf": (b"a,b\n1,2\n3,4\n5,inf\n", {}, ["'b'", "infinite", "row 3"]),
    "minus inf": (b"a,b\n-inf,2\n", {}, ["'a'", "infinite", "row 1"]),
    "latin-1": (LATIN1, {}, ["not UTF-8", "line 2", "UTF-8"]),
    "binary": (JUNK, {}, ["binary", "not CSV text"]),
    "utf-16 without its BOM": ("a,b\n1,2\n".encode("utf-16-le"), {}, ["binary", "UTF-16", "byte-order mark"]),
    "unknown column": (b"a,b\n1,2\n", {"columns": ["a", "zz"]}, ["'zz'", "columns are a, b"]),
    "unknown target": (b"a,b\n1,2\n", {"target": "c"}, ["'c'", "columns are a, b"]),
    "long row": (b"a,b\n1,2\n1,2,3,4\n", {}, ["well-formed", "header"]),
    "row longer than header": (b"a,b\n1,2,3\n", {}, ["more fields than the header"]),
}


@pytest.mark.parametrize("case", list(BAD_CSVS))
def test_bad_csv_raises_data_error_saying_what_to_fix(case, tmp_path):
    content, options, words = BAD_CSVS[case]
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError) as raised:
        load_csv(path, **options)
    for word in words:
        assert word in str(raised.value), (word, str(raised.value))
    # the file by its name: an upload's path is a server folder the user never saw
    assert path.name in str(raised.value) and str(path.parent) not in str(raised.value)


def test_missing_csv_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_csv(tmp_path / "nope.csv")


def test_csv_too_short_for_window_and_horizon_says_needed_and_have(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("v\n" + "\n".join(str(i) for i in range(12)) + "\n")
    with pytest.raises(DataError, match=r"has 12 rows; window 5 \+ horizon 2 needs at least 31"):
        make_task("csv", 5, source=path, horizon=2)
    path.write_text("v\n" + "\n".join(str(i) for i in range(30)) + "\n")
    with pytest.raises(DataError, match="has 30 rows"):
        make_task("csv", 5, source=path, horizon=2)
    path.write_text("v\n" + "\n".join(str(i) for i in range(31)) + "\n")
    task = make_task("csv", 5, source=path, horizon=2)  # exactly enough: one held-out window
    assert len(task.heldout(100, seed=0)[0]) == 1


# ---- MNIST ----

def _write_idx(path, array, compress=False):
    """A genuine IDX file: magic 0x00000800 + ndim, big-endian sizes, unsigned bytes."""
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    (path.with_name(path.name + ".gz").write_bytes(gzip.compress(data)) if compress
     else path.write_bytes(data))


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
        "train-labels-idx1-ubyte": np.array([0, 1, 2, 3, 9]),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28)),
        "t10k-labels-idx1-ubyte": np.array([7, 8, 9]),
    }
    for name, array in arrays.items():
        _write_idx(tmp_path / name, array, compress=name.startswith("t10k"))
    return tmp_path, arrays


def test_mnist_reads_plain_and_gzipped_idx_files(mnist_dir):
    directory, arrays = mnist_dir
    splits = load_mnist(directory)
    images, labels = splits["train"]
    assert images.shape == (5, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(images, arrays["train-images-idx3-ubyte"])
    assert labels.tolist() == [0, 1, 2, 3, 9]
    assert np.array_equal(splits["test"][0], arrays["t10k-images-idx3-ubyte"])
    assert splits["test"][1].tolist() == [7, 8, 9]


def test_mnist_directory_from_environment_variable(mnist_dir, monkeypatch):
    monkeypatch.setenv("GATE_EXPLORER_MNIST", str(mnist_dir[0]))
    assert load_mnist()["test"][1].tolist() == [7, 8, 9]


def test_digits_task_on_mnist_reads_28_rows_of_28_and_holds_out_t10k(mnist_dir):
    directory, arrays = mnist_dir
    task = make_task("digits", 8, source="mnist", mnist_dir=directory)
    assert (task.seq_len, task.input_size, task.output_size) == (28, 28, 10)
    x, y = task.heldout(10, seed=0)
    assert x.shape == (3, 28, 28) and x.dtype == torch.float32
    expected = torch.tensor(arrays["t10k-images-idx3-ubyte"], dtype=torch.float32) / 255
    order = y.argsort()  # labels 7, 8, 9 are distinct, so they identify the images
    assert torch.allclose(x[order], expected) and y[order].tolist() == [7, 8, 9]
    x, y = task.sample(20, torch.Generator().manual_seed(0))
    assert set(y.tolist()) <= {0, 1, 2, 3, 9} and 0 <= x.min() and x.max() <= 1


def test_mnist_missing_directory_names_the_files_and_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv("GATE_EXPLORER_MNIST", raising=False)
    for directory in (None, tmp_path / "absent"):
        with pytest.raises(DataError) as raised:
            load_mnist(directory)
        message = str(raised.value)
        assert all(name in message for name in MNIST_FILES)
        assert "LeCun" in message and "GATE_EXPLORER_MNIST" in message


def test_mnist_missing_file_is_named(mnist_dir):
    directory, _ = mnist_dir
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte"):
        load_mnist(directory)


def test_mnist_bad_magic_truncation_size_and_count_are_data_errors(mnist_dir):
    directory, arrays = mnist_dir
    labels = directory / "train-labels-idx1-ubyte"
    images = directory / "train-images-idx3-ubyte"
    labels.write_bytes(b"\x00\x00\x08\x03" + labels.read_bytes()[4:])
    with pytest.raises(DataError, match="not an IDX file"):
        load_mnist(directory)
    _write_idx(labels, np.array([0, 1, 2, 3]))
    with pytest.raises(DataError, match="4 labels for 5 images"):
        load_mnist(directory)
    _write_idx(labels, arrays["train-labels-idx1-ubyte"])
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_mnist(directory)
    _write_idx(images, np.zeros((5, 8, 8)))
    with pytest.raises(DataError, match="not MNIST's 28×28"):
        load_mnist(directory)
