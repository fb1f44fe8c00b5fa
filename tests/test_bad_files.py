"""Never a traceback from a bad file: every model or sequence file that cannot be read is a
ModelFileError naming the file (never a path) in plain words, in the library, under Hypothesis'
random and mutated bytes, and in the CLI's `trace` as one `error:` line and status 2."""
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from bad_files import bad_models, bad_sequences, real_model_bytes, real_npy_bytes
from explorer.__main__ import main
from explorer.loading import ModelFileError, load_module, read_sequences

ROOT = Path(__file__).resolve().parents[1]
BAD_MODELS = bad_models()
BAD_SEQUENCES = bad_sequences()
# What a student cannot act on: numpy's and torch's advice to load a file unsafely, and their
# internals.
UNACTIONABLE = ("allow_pickle", "weights_only", "pickle.load", "miniz", "PytorchStreamReader",
                "KeyError", "IndexError", "Traceback")


def assert_plain(message: str, name: str, folder: Path) -> None:
    assert message.startswith(name) or f" {name} " in message, message
    assert str(folder) not in message and "/tmp" not in message, message
    for words in UNACTIONABLE:
        assert words not in message, message


@pytest.mark.parametrize("read, table, name", [(load_module, BAD_MODELS, n) for n in sorted(BAD_MODELS)]
                         + [(read_sequences, BAD_SEQUENCES, n) for n in sorted(BAD_SEQUENCES)])
def test_a_bad_model_or_sequence_file_is_a_plain_model_file_error(tmp_path, read, table, name):
    raw, words = table[name]
    path = tmp_path / name
    path.write_bytes(raw)
    with pytest.raises(ModelFileError) as caught:
        read(path)
    assert words in str(caught.value)
    assert_plain(str(caught.value), name, tmp_path)


def test_the_real_files_the_bad_ones_come_from_load(tmp_path):
    """The damage is what is refused: undamaged, the same makers' files load and fit."""
    (tmp_path / "m.pt").write_bytes(real_model_bytes(".pt"))
    (tmp_path / "m.safetensors").write_bytes(real_model_bytes(".safetensors"))
    (tmp_path / "x.npy").write_bytes(real_npy_bytes())
    torch.manual_seed(0)
    reference = nn.LSTM(2, 5, batch_first=True)
    for suffix in (".pt", ".safetensors"):
        loaded = load_module(tmp_path / f"m{suffix}")
        for key, value in reference.state_dict().items():
            torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    x, _ = read_sequences(tmp_path / "x.npy")
    np.testing.assert_array_equal(x, np.random.default_rng(1).standard_normal((3, 6, 2)).astype(np.float32))


def test_a_fortran_ordered_npy_reads_as_numpy_reads_it(tmp_path):
    """The header is read by hand (to refuse before allocating): the layout must survive it."""
    array = np.asfortranarray(np.arange(24, dtype=">f8").reshape(2, 3, 4))
    np.save(tmp_path / "f.npy", array)
    x, _ = read_sequences(tmp_path / "f.npy")
    np.testing.assert_array_equal(x, np.load(tmp_path / "f.npy"))


def test_a_header_promising_more_than_the_file_holds_is_cut_short(tmp_path):
    """A damaged header claiming 10^12 values is refused from the file's length, allocating nothing."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**6, 10**6)})
    path = tmp_path / "huge.npy"
    path.write_bytes(buffer.getvalue() + b"\0" * 64)
    with pytest.raises(ModelFileError, match="cut short"):
        read_sequences(path)


# -- fuzzing -------------------------------------------------------------------------------------------

def _outcome_of(call, name):
    """A result, or a ModelFileError naming the file: any other exception fails the test."""
    try:
        return call()
    except ModelFileError as error:
        assert name in str(error), str(error)
        return None


def _mutated(raw: bytes, data) -> bytes:
    """A real file, damaged as disks and downloads damage them: bytes flipped, cut, or spliced."""
    how = data.draw(st.sampled_from(["flip", "cut", "splice"]))
    if how == "cut":
        return raw[:data.draw(st.integers(0, len(raw) - 1))]
    at = data.draw(st.integers(0, len(raw) - 1))
    if how == "flip":
        damaged = bytearray(raw)
        for offset in data.draw(st.lists(st.integers(0, 15), min_size=1, max_size=4)):
            damaged[min(at + offset, len(raw) - 1)] ^= data.draw(st.integers(1, 255))
        return bytes(damaged)
    return raw[:at] + data.draw(st.binary(min_size=1, max_size=64)) + raw[at:]


FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(raw=st.binary(max_size=2048), suffix=st.sampled_from([".pt", ".pth", ".safetensors"]))
def test_load_module_on_random_bytes_is_a_model_file_error(tmp_path, raw, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(raw)
    assert _outcome_of(lambda: load_module(path), path.name) is None


@pytest.mark.slow
@FUZZ
@given(suffix=st.sampled_from([".pt", ".safetensors"]), data=st.data())
def test_load_module_on_a_damaged_real_file_loads_it_or_says_why(tmp_path, suffix, data):
    path = tmp_path / f"damaged{suffix}"
    path.write_bytes(_mutated(real_model_bytes(suffix), data))
    module = _outcome_of(lambda: load_module(path), path.name)
    if module is not None:  # the damage hit the weights' values: the same module, other numbers
        assert isinstance(module, nn.Module) and not module.training
        assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == \
            {k: tuple(v.shape) for k, v in nn.LSTM(2, 5).state_dict().items()}


@FUZZ
@given(raw=st.binary(max_size=2048), suffix=st.sampled_from([".npy", ".csv"]))
def test_read_sequences_on_random_bytes_is_a_model_file_error(tmp_path, raw, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(raw)
    result = _outcome_of(lambda: read_sequences(path), path.name)
    if result is not None:  # random bytes can spell a CSV of numbers: then finite, batch-first numbers
        x, _ = result
        assert x.ndim == 3 and np.isfinite(x).all()


@FUZZ
@given(data=st.data())
def test_read_sequences_on_a_damaged_real_npy_reads_it_or_says_why(tmp_path, data):
    path = tmp_path / "damaged.npy"
    path.write_bytes(_mutated(real_npy_bytes(), data))
    result = _outcome_of(lambda: read_sequences(path), path.name)
    if result is not None:
        x, _ = result
        assert x.ndim == 3 and np.isfinite(x).all()


@pytest.mark.slow
@FUZZ
@given(text=st.text(max_size=300))
def test_read_sequences_on_any_text_csv_reads_it_or_says_why(tmp_path, text):
    path = tmp_path / "typed.csv"
    path.write_text(text, encoding="utf-8")
    result = _outcome_of(lambda: read_sequences(path), path.name)
    if result is not None:
        x, names = result
        assert x.shape[0] == 1 and x.shape[2] == len(names) and np.isfinite(x).all()


# -- the CLI ------------------------------------------------------------------------------------------

@pytest.fixture
def good_files(tmp_path):
    (tmp_path / "model.pt").write_bytes(real_model_bytes(".pt"))
    (tmp_path / "x.npy").write_bytes(real_npy_bytes())
    return tmp_path / "model.pt", tmp_path / "x.npy", tmp_path / "out.parquet"


def one_error_line(err: str, name: str, folder: Path) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert name in lines[0] and str(folder) not in lines[0], lines[0]    # the file's name, not its path
    return lines[0]


@pytest.mark.parametrize("kind, name", [("model", n) for n in sorted(BAD_MODELS)] +
                                        [("sequences", n) for n in sorted(BAD_SEQUENCES)])
def test_trace_on_a_bad_file_is_one_error_line(capfd, tmp_path, good_files, kind, name):
    """capfd: what torch's C++ writes to the process's stderr counts too."""
    model, data, out = good_files
    content, expected = (BAD_MODELS if kind == "model" else BAD_SEQUENCES)[name]
    bad = tmp_path / name
    bad.write_bytes(content)
    model, data = (bad, data) if kind == "model" else (model, bad)
    assert main(["trace", str(model), str(data), "--out", str(out)]) == 2
    captured = capfd.readouterr()
    assert captured.out == ""
    assert expected in one_error_line(captured.err, name, tmp_path)
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("model_name, data_name", [("text_model.pt", None), ("cut_short.pt", None),
                                                   ("archive.pt", None), (None, "garbage.npy")])
def test_trace_in_a_real_process_is_one_error_line_and_status_2(tmp_path, good_files, model_name, data_name):
    model, data, out = good_files
    if model_name:
        model = tmp_path / model_name
        model.write_bytes(BAD_MODELS[model_name][0])
    else:
        data = tmp_path / data_name
        data.write_bytes(BAD_SEQUENCES[data_name][0])
    done = subprocess.run([sys.executable, "-m", "explorer", "trace", str(model), str(data), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 2 and done.stdout == ""
    one_error_line(done.stderr, model_name or data_name, tmp_path)
    assert not out.exists()
