"""`python -m explorer trace MODEL INPUT --out PATH.parquet`: the written table is explorer.trace
on the original module, whatever the file types, layout, loss and nonlinearity; every failure is
one line. main() in this process, and a real process where stderr itself is the promise."""
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from explorer import trace
from explorer.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["layer", "sequence", "t", "unit", "quantity", "value"]
ORDER = ["quantity", "layer", "sequence", "t", "unit"]


def explorer(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "explorer", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _module(kind, layers=2, inputs=2, hidden=5, batch_first=True, seed=0):
    torch.manual_seed(seed)
    make = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind.split("-")[0]]
    options = {"nonlinearity": "relu"} if kind == "rnn-relu" else {}
    return make(inputs, hidden, layers, batch_first=batch_first, **options).eval()


def _saved(module, path):
    if path.suffix == ".safetensors":
        save_file(module.state_dict(), path)
    else:
        torch.save(module.state_dict(), path)
    return path


def _npy(path, x):
    np.save(path, x)
    return path


def _x(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _sorted(frame):
    return frame.sort_values(ORDER).reset_index(drop=True)


def assert_table(path, expected):
    """The Parquet file holds exactly `expected` (trace(...).to_frame()), row order aside."""
    written = pd.read_parquet(path)
    assert list(written.columns) == COLUMNS
    assert len(written) == len(expected)
    pd.testing.assert_frame_equal(_sorted(written), _sorted(expected))


def traced(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    return out


def test_a_time_first_gru_traces_into_the_library_s_table(tmp_path):
    gru = _module("gru", layers=2, batch_first=False)
    x = _x((6, 3, 2))                                     # (time, batch, features)
    out = tmp_path / "gru.parquet"
    done = explorer("trace", _saved(gru, tmp_path / "gru.safetensors"), _npy(tmp_path / "x.npy", x),
                    "--out", out, "--time-first")
    assert done.returncode == 0, done.stderr
    assert "traced 3 sequences × 6 steps" in done.stdout and str(out) in done.stdout
    expected = trace(gru, torch.from_numpy(x)).to_frame()
    assert set(expected["quantity"]) == {"reset", "update", "candidate", "hidden", "grad_hidden",
                                         "grad_input"}
    assert_table(out, expected)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_2d_npy_is_one_sequence(capsys, tmp_path, suffix):
    lstm = _module("lstm")
    x = _x((7, 2))                                        # (time, features)
    out = tmp_path / "one.parquet"
    model = _saved(lstm, tmp_path / f"lstm{suffix}")
    traced(capsys, "trace", model, _npy(tmp_path / "x.npy", x), "--out", out)
    expected = trace(lstm, torch.from_numpy(x[None])).to_frame()
    assert set(expected["sequence"]) == {0}
    assert_table(out, expected)


def test_a_csv_is_one_sequence_a_column_per_feature(capsys, tmp_path):
    lstm = _module("lstm", inputs=3)
    x = np.random.default_rng(2).integers(-8, 8, (5, 3)) / 4           # exact in float32
    csv = tmp_path / "x.csv"
    csv.write_text("speed,load,heat\n" + "".join(",".join(f"{v:g}" for v in row) + "\n" for row in x))
    out = tmp_path / "csv.parquet"
    traced(capsys, "trace", _saved(lstm, tmp_path / "lstm.pt"), csv, "--out", out)
    assert_table(out, trace(lstm, torch.tensor(x[None], dtype=torch.float32)).to_frame())


@pytest.mark.parametrize("time_first", [False, True])
def test_a_unit_at_step_loss_is_that_unit_s_h_at_that_step_summed(capsys, tmp_path, time_first):
    lstm = _module("lstm", batch_first=not time_first)
    x = _x((5, 4, 2) if time_first else (4, 5, 2))
    model, data = _saved(lstm, tmp_path / "lstm.safetensors"), _npy(tmp_path / "x.npy", x)
    flags = ["--time-first"] if time_first else []
    out, last = tmp_path / "unit.parquet", tmp_path / "last.parquet"
    traced(capsys, "trace", model, data, "--out", out, "--loss", "2@1", *flags)
    traced(capsys, "trace", model, data, "--out", last, *flags)

    def loss_fn(output, target):
        return (output[1, :, 2] if time_first else output[:, 1, 2]).sum()

    expected = trace(lstm, torch.from_numpy(x), loss_fn=loss_fn).to_frame()
    assert_table(out, expected)
    written = _sorted(pd.read_parquet(out))
    grads = written["quantity"].isin(["grad_hidden", "grad_cell", "grad_input"])
    # The gradient is that loss's, not the default's: nothing flows back from after step 1.
    assert (written[grads & (written["t"] > 1)]["value"] == 0).all()
    assert not _sorted(pd.read_parquet(last))[grads]["value"].equals(written[grads]["value"])
    assert_table(last, trace(lstm, torch.from_numpy(x)).to_frame())


def test_relu_nonlinearity_traces_the_relu_rnn(capsys, tmp_path):
    relu = _module("rnn-relu")
    x = _x((3, 6, 2))
    model, data = _saved(relu, tmp_path / "rnn.pt"), _npy(tmp_path / "x.npy", x)
    as_relu, as_tanh = tmp_path / "relu.parquet", tmp_path / "tanh.parquet"
    traced(capsys, "trace", model, data, "--out", as_relu, "--nonlinearity", "relu")
    traced(capsys, "trace", model, data, "--out", as_tanh)
    relu_table = trace(relu, torch.from_numpy(x)).to_frame()
    assert_table(as_relu, relu_table)
    tanh = _module("rnn")
    tanh.load_state_dict(relu.state_dict())
    assert_table(as_tanh, trace(tanh, torch.from_numpy(x)).to_frame())
    assert not np.allclose(_sorted(pd.read_parquet(as_tanh))["value"], _sorted(relu_table)["value"])


# -- failures ---------------------------------------------------------------------------------------

class WritesAFile:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return Path.write_text, (Path(self.target), "pwned")


@pytest.fixture
def files(tmp_path):
    """A GRU (2 inputs, 5 units) and 3 sequences of 6 steps for it."""
    return (_saved(_module("gru"), tmp_path / "gru.safetensors"), _npy(tmp_path / "x.npy", _x((3, 6, 2))),
            tmp_path / "out.parquet")


def fails(capsys, *args, words):
    assert main([str(a) for a in args]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert words in lines[0], lines[0]
    assert "Traceback" not in err and out == ""


def test_a_missing_model_file_fails_in_one_line(capsys, tmp_path, files):
    _, data, out = files
    fails(capsys, "trace", tmp_path / "gone.safetensors", data, "--out", out, words="cannot read")
    assert not out.exists()


def test_sequences_with_the_wrong_feature_count_fail_in_one_line(capsys, tmp_path, files):
    model, _, out = files
    data = _npy(tmp_path / "three.npy", _x((3, 6, 3)))
    fails(capsys, "trace", model, data, "--out", out,
          words="three.npy have 3 features per step but the model reads 2")
    assert not out.exists()


@pytest.mark.parametrize("loss, words", [
    ("3-1", "the loss must be 'last' or UNIT@STEP"),
    ("first", "the loss must be 'last' or UNIT@STEP"),
    ("5@0", "unit 5 is out of range: the top layer has 5 units (0 to 4)"),
    ("0@6", "step 6 is out of range: the sequences have 6 steps (0 to 5)"),
])
def test_a_bad_loss_fails_in_one_line(capsys, files, loss, words):
    model, data, out = files
    fails(capsys, "trace", model, data, "--out", out, "--loss", loss, words=words)
    assert not out.exists()


def test_out_must_be_a_parquet_file(capsys, tmp_path, files):
    model, data, _ = files
    fails(capsys, "trace", model, data, "--out", tmp_path / "out.csv",
          words="--out must name a .parquet file")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("where", ["a file", "no folder"])
def test_an_unwritable_out_fails_in_one_line(capsys, tmp_path, files, where):
    model, data, _ = files
    (tmp_path / "a file").write_text("not a folder")
    out = tmp_path / where / "deeper" / "out.parquet"
    fails(capsys, "trace", model, data, "--out", out, words=f"cannot write {out}")


def test_a_malicious_pt_fails_in_one_line_and_runs_nothing(tmp_path, files):
    _, data, out = files
    target = tmp_path / "pwned"
    model = tmp_path / "evil.pt"
    # A plain pickle, not torch.save's zip: torch warns about its protocol on the way.
    model.write_bytes(pickle.dumps(WritesAFile(target)))
    done = explorer("trace", model, data, "--out", out)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: evil.pt was refused"), done.stderr
    assert not target.exists() and not out.exists()


def test_a_clamp_traces_the_what_if_and_a_bad_one_fails_in_one_line(capsys, tmp_path):
    module = _module("lstm")
    model, data, out = _saved(module, tmp_path / "m.safetensors"), _npy(tmp_path / "x.npy", _x((3, 6, 2))), \
        tmp_path / "t.parquet"
    clamp = {"forget": {"value": 0.0, "units": [1, 3], "steps": [2, 5], "layers": [1]}}
    printed = traced(capsys, "trace", model, data, "--out", out, "--clamp", json.dumps(clamp))
    assert "with forget = 0 on units 1, 3 at steps 2–4 in layer 2" in printed
    assert_table(out, trace(module, torch.from_numpy(_x((3, 6, 2))), clamp=clamp).to_frame())
    written = pd.read_parquet(out)
    forget = written[(written.quantity == "forget") & (written.layer == 1) & written.unit.isin([1, 3])
                     & written.t.between(2, 4)]
    assert len(forget) == 3 * 3 * 2 and (forget.value == 0.0).all()
    for bad, words in (("{", "--clamp is not JSON"), ('{"forget": 2}', "outside the gate's range [0, 1]")):
        fails(capsys, "trace", model, data, "--out", tmp_path / "bad.parquet", "--clamp", bad, words=words)
        assert not (tmp_path / "bad.parquet").exists()
