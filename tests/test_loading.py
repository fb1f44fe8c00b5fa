"""Your own model: load_module against the fused module it was saved from, its refusals, a
malicious .pt that must run nothing, and the model task (explorer/yours.py) that shows it as a
run. The reference is always the original nn.LSTM/GRU/RNN and explorer.trace on it."""
import copy
import dataclasses
import io
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save, save_file
from torch import nn

from explorer import Run, Status, Trainer, trace
from explorer.run import ReadOnly
from explorer.store import RunStore
from explorer.yours import ModelTask, look_inside

FUSED = {
    "lstm": lambda i, h, n, **kw: nn.LSTM(i, h, n, **kw),
    "gru": lambda i, h, n, **kw: nn.GRU(i, h, n, **kw),
    "rnn": lambda i, h, n, **kw: nn.RNN(i, h, n, nonlinearity="tanh", **kw),
    "rnn-relu": lambda i, h, n, **kw: nn.RNN(i, h, n, nonlinearity="relu", **kw),
}
SUFFIXES = [".safetensors", ".pt"]
# kind, layers, the prefix its owner gave it ("" for a bare module's own state_dict)
CASES = [("lstm", 1, ""), ("lstm", 3, "lstm."), ("gru", 1, "rnn."), ("gru", 3, ""),
         ("rnn", 1, "module."), ("rnn", 3, "rnn."), ("rnn-relu", 1, ""), ("rnn-relu", 3, "module.")]


def _fused(kind, layers=1, inputs=3, hidden=5, seed=0, dtype=torch.float32, **options):
    torch.manual_seed(seed)
    options.setdefault("batch_first", True)
    return FUSED[kind](inputs, hidden, layers, **options).to(dtype).eval()


def _input(module, batch=3, steps=7, seed=1):
    """Sequences in the module's own layout."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, module.input_size, generator=g, dtype=next(module.parameters()).dtype)
    return x if module.batch_first else x.transpose(0, 1)


def _save(state, path):
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    return path


def _prefixed(module, prefix):
    return {prefix + k: v for k, v in module.state_dict().items()}


def assert_same_trace(got, want):
    """Every recorded quantity, exactly: same weights, same dtype, same arithmetic."""
    assert got.cell == want.cell
    assert got.loss == want.loss
    np.testing.assert_array_equal(got.output, want.output)
    np.testing.assert_array_equal(got.grad_input, want.grad_input)
    assert len(got.layers) == len(want.layers)
    for g, w in zip(got.layers, want.layers):
        assert g.gates.keys() == w.gates.keys()
        for name in w.gates:
            np.testing.assert_array_equal(g.gates[name], w.gates[name])
        np.testing.assert_array_equal(g.hidden, w.hidden)
        np.testing.assert_array_equal(g.grad_hidden, w.grad_hidden)
        for name in ("cell", "grad_cell"):
            if getattr(w, name) is None:
                assert getattr(g, name) is None
            else:
                np.testing.assert_array_equal(getattr(g, name), getattr(w, name))


def assert_same_module(loaded, original):
    assert type(loaded) is type(original)
    for name in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "bidirectional",
                 "proj_size"):
        assert getattr(loaded, name) == getattr(original, name), name
    if isinstance(original, nn.RNN):
        assert loaded.nonlinearity == original.nonlinearity
    assert not loaded.training
    want = original.state_dict()
    got = loaded.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype
        assert torch.equal(got[k], want[k]), k


# -- loading --------------------------------------------------------------------------------------

def test_load_module_and_its_error_are_exported_from_explorer():
    import explorer
    from explorer import ModelFileError, load_module
    assert "load_module" in explorer.__all__ and "ModelFileError" in explorer.__all__
    assert load_module is explorer.loading.load_module
    assert issubclass(ModelFileError, ValueError)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("kind, layers, prefix", CASES)
def test_loaded_module_is_the_saved_one_and_traces_identically(tmp_path, kind, layers, prefix, suffix):
    from explorer import load_module
    original = _fused(kind, layers)
    path = _save(_prefixed(original, prefix), tmp_path / f"model{suffix}")
    loaded = load_module(path, nonlinearity="relu" if kind == "rnn-relu" else "tanh", batch_first=True)
    assert_same_module(loaded, original)
    x = _input(original)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded(x)[0].numpy(), original(x)[0].numpy())
    assert_same_trace(trace(loaded, x), trace(original, x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = _fused("lstm", 2)
        self.head = nn.Linear(5, 1)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_whole_model_state_dict_loads_its_recurrent_module_and_leaves_the_head(tmp_path, suffix):
    from explorer import load_module
    net = Net()
    state = net.state_dict()
    assert "head.weight" in state
    loaded = load_module(_save(state, tmp_path / f"net{suffix}"))
    assert_same_module(loaded, net.rnn)
    x = _input(net.rnn)
    assert_same_trace(trace(loaded, x), trace(net.rnn, x))


def test_a_data_parallel_whole_model_loads(tmp_path):
    from explorer import load_module
    net = Net()
    state = {"module." + k: v for k, v in net.state_dict().items()}
    loaded = load_module(_save(state, tmp_path / "net.pt"))
    assert_same_module(loaded, net.rnn)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_a_module_without_bias_loads_without_bias(tmp_path, kind):
    from explorer import load_module
    original = _fused(kind, 2, bias=False)
    loaded = load_module(_save(original.state_dict(), tmp_path / "nobias.safetensors"))
    assert loaded.bias is False and not any("bias" in k for k in loaded.state_dict())
    assert_same_module(loaded, original)
    x = _input(original)
    assert_same_trace(trace(loaded, x), trace(original, x))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_float64_module_stays_float64(tmp_path, suffix):
    from explorer import load_module
    original = _fused("lstm", 2, dtype=torch.float64)
    loaded = load_module(_save(original.state_dict(), tmp_path / f"double{suffix}"))
    assert all(p.dtype == torch.float64 for p in loaded.parameters())
    x = _input(original)
    got, want = trace(loaded, x), trace(original, x)
    assert got.output.dtype == np.float64 and got.layers[0].gates["forget"].dtype == np.float64
    assert_same_trace(got, want)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_a_time_first_module_loads_time_first(tmp_path, kind):
    from explorer import load_module
    original = _fused(kind, 2, batch_first=False)
    loaded = load_module(_save(original.state_dict(), tmp_path / "tf.safetensors"), batch_first=False)
    assert_same_module(loaded, original)
    x = _input(original)                                  # (time, batch, features)
    assert x.shape == (7, 3, 3)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded(x)[0].numpy(), original(x)[0].numpy())
    assert_same_trace(trace(loaded, x), trace(original, x))


@pytest.mark.parametrize("wrapper", ["state_dict", "model_state_dict"])
def test_a_checkpoint_dict_around_the_state_dict_loads(tmp_path, wrapper):
    from explorer import load_module
    original = _fused("gru", 2)
    optimiser = torch.optim.Adam(original.parameters())
    checkpoint = {wrapper: _prefixed(original, "rnn."), "epoch": 3, "optimizer": optimiser.state_dict()}
    loaded = load_module(_save(checkpoint, tmp_path / "checkpoint.pt"))
    assert_same_module(loaded, original)


def test_a_plain_rnn_takes_its_nonlinearity_from_the_argument(tmp_path):
    from explorer import load_module
    path = _save(_fused("rnn-relu").state_dict(), tmp_path / "relu.pt")
    assert load_module(path, nonlinearity="relu").nonlinearity == "relu"
    assert load_module(path).nonlinearity == "tanh"


# -- refusals -----------------------------------------------------------------------------------------

def refused(path, *words, **options):
    """load_module(path) is a ModelFileError (a ValueError) whose message names each of words."""
    from explorer import ModelFileError, load_module
    with pytest.raises(ModelFileError) as caught:
        load_module(path, **options)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    for word in words:
        assert word in message, (word, message)
    return message


def _broken(state, **change):
    """A state_dict with keys deleted (value None) or replaced."""
    state = dict(state)
    for key, value in change.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    return state


def test_a_bidirectional_module_is_refused(tmp_path):
    state = _fused("lstm", bidirectional=True).state_dict()
    refused(_save(state, tmp_path / "bi.safetensors"), "bidirectional", "_reverse")


def test_a_projected_lstm_is_refused(tmp_path):
    state = nn.LSTM(3, 6, proj_size=2, batch_first=True).state_dict()
    refused(_save(state, tmp_path / "proj.pt"), "projected", "weight_hr")


@pytest.mark.parametrize("key, words", [
    ("weight_hh_l1", ("missing keys: weight_hh_l1",)),
    ("bias_hh_l0", ("missing keys: bias_hh_l0",)),
    ("weight_ih_l0", ("missing keys: weight_ih_l0",)),
    ("weight_hh_l0", ("missing keys: weight_hh_l0",)),
])
def test_a_missing_key_is_named(tmp_path, key, words):
    state = _broken(_fused("lstm", 2).state_dict(), **{key: None})
    refused(_save(state, tmp_path / "missing.safetensors"), *words)


@pytest.mark.parametrize("key", ["weight_ci_l0", "foo_l0", "running_mean"])
def test_an_extra_key_directly_under_the_prefix_is_named(tmp_path, key):
    state = _prefixed(_fused("lstm"), "rnn.")
    state["rnn." + key] = torch.zeros(5)
    refused(_save(state, tmp_path / "extra.safetensors"), f"extra keys: {key}", "rnn.")


def test_a_layer_beyond_the_last_is_named_as_the_layers_it_implies(tmp_path):
    state = _prefixed(_fused("lstm"), "rnn.")
    state["rnn.weight_ih_l5"] = torch.zeros(20, 5)
    message = refused(_save(state, tmp_path / "l5.safetensors"), "6-layer LSTM", "missing keys: ")
    assert "weight_ih_l1" in message and "weight_hh_l5" in message and "weight_ih_l5" not in message


@pytest.mark.parametrize("key, shape, words", [
    ("bias_ih_l0", (19,), ("bias_ih_l0 has shape (19,)", "(20,)")),
    ("weight_ih_l1", (20, 4), ("weight_ih_l1 has shape (20, 4)", "(20, 5)")),
    ("weight_hh_l1", (20, 6), ("weight_hh_l1 has shape (20, 6)", "(20, 5)")),
    ("weight_hh_l0", (10, 5), ("weight_hh_l0 has shape (10, 5)", "2 blocks of 5")),
    ("weight_hh_l0", (18, 5), ("weight_hh_l0 has shape (18, 5)", "(blocks × hidden, hidden)")),
])
def test_a_mismatched_shape_is_named(tmp_path, key, shape, words):
    state = _broken(_fused("lstm", 2).state_dict(), **{key: torch.zeros(shape)})
    refused(_save(state, tmp_path / "shape.pt"), *words)


def test_several_recurrent_modules_need_a_prefix_and_the_chosen_one_loads(tmp_path):
    from explorer import load_module
    encoder, decoder = _fused("lstm", 2, seed=1), _fused("gru", 1, inputs=5, hidden=4, seed=2)
    state = {**_prefixed(encoder, "encoder."), **_prefixed(decoder, "decoder."),
             "head.weight": torch.zeros(1, 4)}
    path = _save(state, tmp_path / "seq2seq.safetensors")
    refused(path, "2 recurrent modules", "'encoder.'", "'decoder.'", "prefix")
    refused(path, "no recurrent module with prefix 'middle.'", "'encoder.'", prefix="middle.")
    for prefix, original in (("decoder", decoder), ("encoder.", encoder)):
        loaded = load_module(path, prefix=prefix)
        assert_same_module(loaded, original)
        x = _input(original)
        assert_same_trace(trace(loaded, x), trace(original, x))


@pytest.mark.parametrize("name", ["model.bin", "model.h5", "model"])
def test_a_file_of_another_type_is_refused_by_its_suffix(tmp_path, name):
    path = tmp_path / name
    torch.save(_fused("gru").state_dict(), path)
    refused(path, ".safetensors", ".pt", name)


@pytest.mark.parametrize("damage", ["random", "truncated", "bad header", "empty"])
def test_a_corrupt_safetensors_file_is_refused(tmp_path, damage):
    good = save(_fused("gru").state_dict())
    header = b"{not json}"
    raw = {"random": np.random.default_rng(0).bytes(300), "truncated": good[:len(good) // 2],
           "bad header": len(header).to_bytes(8, "little") + header, "empty": b""}[damage]
    path = tmp_path / "broken.safetensors"
    path.write_bytes(raw)
    refused(path, "broken.safetensors is not a readable .safetensors file")


def test_a_truncated_pt_file_is_refused(tmp_path):
    buffer = io.BytesIO()
    torch.save(_fused("gru").state_dict(), buffer)
    path = tmp_path / "cut.pt"
    path.write_bytes(buffer.getvalue()[:400])
    refused(path, "cut.pt is not a readable PyTorch file")


def test_a_missing_file_is_refused(tmp_path):
    refused(tmp_path / "nowhere.safetensors", "cannot read", "nowhere.safetensors")


def test_a_pickled_whole_module_is_refused_with_a_word_on_state_dict(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(_fused("lstm"), path)
    refused(path, "whole.pt was refused", "state_dict()",
            "Unsupported global: GLOBAL torch.nn.modules.rnn.LSTM")


@pytest.mark.parametrize("held", [[torch.zeros(3)], torch.zeros(3), {"weight_ih_l0": 3}])
def test_a_pt_without_a_state_dict_is_refused(tmp_path, held):
    path = tmp_path / "other.pt"
    torch.save(held, path)
    refused(path, "not a state_dict")


def test_a_state_dict_of_no_recurrent_module_is_refused(tmp_path):
    refused(_save(nn.Linear(3, 2).state_dict(), tmp_path / "linear.pt"), "no recurrent layer found", "weight")


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_weights_are_refused(tmp_path, bad):
    state = _fused("gru", 2).state_dict()
    state["weight_hh_l1"][2, 3] = bad
    refused(_save(state, tmp_path / "nan.safetensors"), "weight_hh_l1 holds NaN or infinite values")


def test_an_unknown_nonlinearity_is_refused(tmp_path):
    refused(_save(_fused("rnn").state_dict(), tmp_path / "rnn.pt"), "tanh or relu", "sigmoid",
            nonlinearity="sigmoid")


# -- a malicious .pt ------------------------------------------------------------------------------------

class WritesAFile:
    """Unpickled, this writes `target`: what a hostile checkpoint would do."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return Path.write_text, (Path(self.target), "pwned")


class RunsAShellCommand:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def _pickle_file(path, payload, how):
    if how == "torch.save":
        torch.save(payload, path)
    elif how == "torch.save in a state_dict":
        torch.save({"weight_ih_l0": torch.zeros(4, 3), "weight_hh_l0": payload}, path)
    else:
        path.write_bytes(pickle.dumps(payload))


@pytest.mark.parametrize("how", ["torch.save", "torch.save in a state_dict", "plain pickle"])
@pytest.mark.parametrize("attack", [WritesAFile, RunsAShellCommand])
def test_a_malicious_pt_is_refused_and_runs_nothing(tmp_path, attack, how):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    _pickle_file(path, attack(target), how)
    message = refused(path, "evil.pt was refused", "never run", "nsupported ")
    assert not target.exists()
    # torch's own message opens with terminal escapes and how to load the file unsafely
    assert "\x1b" not in message and "weights_only` set to `False" not in message
    # The file is live: an unsafe load would have run it. (Proves the test tests something.)
    copy_path = tmp_path / "evil-copy.pt"
    copy_path.write_bytes(path.read_bytes())
    if how == "plain pickle":
        pickle.loads(copy_path.read_bytes())
    else:
        torch.load(copy_path, weights_only=False)
    assert target.exists()


# -- your model as a run (explorer/yours.py) --------------------------------------------------------

def _sequences(batch=4, steps=9, features=2, seed=3):
    return np.random.default_rng(seed).standard_normal((batch, steps, features)).astype(np.float32)


def _unit_loss(unit, step):
    return lambda output, target: output[:, step, unit].sum()


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn-relu"])
def test_the_probe_trace_of_your_model_is_the_library_trace(kind):
    module = _fused(kind, 2, inputs=2)
    reference = copy.deepcopy(module)
    x = _sequences()
    config, task, note = look_inside(module, x)
    assert note is None and config.cell == kind and config.probe_count == 4 and config.seq_len == 9
    step, recorded = Trainer(config, task=task).history.view().traces[-1]
    assert step == 0
    assert_same_trace(recorded, trace(reference, torch.from_numpy(x)))


def test_a_unit_at_step_loss_traces_that_unit_at_that_step():
    module = _fused("lstm", 2, inputs=2)
    reference = copy.deepcopy(module)
    x = _sequences()
    config, task, _ = look_inside(module, x, loss="2@3")
    assert config.trace_loss == "2@3"
    _, recorded = Trainer(config, task=task).history.view().traces[-1]
    want = trace(reference, torch.from_numpy(x), loss_fn=_unit_loss(2, 3))
    assert_same_trace(recorded, want)
    # Unit 2 at step 3 reaches nothing after step 3, unlike the last step's loss.
    assert (recorded.layers[-1].grad_hidden[:, 4:] == 0).all()
    assert (recorded.layers[-1].grad_hidden[:, :4] > 0).all()


@pytest.mark.parametrize("module", [nn.RNN(1, 600, batch_first=True), nn.GRU(1, 4, 5, batch_first=True)])
def test_a_model_over_the_caps_is_refused_naming_them(module):
    from explorer import ModelFileError
    with pytest.raises(ModelFileError, match=r"up to 4 layers × 512 units"):
        look_inside(module, np.zeros((2, 5, 1), np.float32))


@pytest.mark.parametrize("steps", [1, 1001])
def test_sequences_of_too_few_or_too_many_steps_are_refused(steps):
    from explorer import ModelFileError
    with pytest.raises(ModelFileError, match=rf"{steps} step\(s\); between 2 and 1000"):
        look_inside(_fused("gru", inputs=2, hidden=4), np.zeros((1, steps, 2), np.float32))


def test_only_the_first_64_of_many_sequences_are_traced_with_a_note():
    x = _sequences(batch=100, steps=5)
    config, task, note = look_inside(_fused("gru", inputs=2, hidden=4), x)
    assert config.probe_count == 64 and task.x.shape == (64, 5, 2)
    np.testing.assert_array_equal(task.x.numpy(), x[:64])
    assert "100 sequences" in note and "first 64" in note


def test_without_sequences_your_model_is_traced_on_eight_waves():
    config, task, note = look_inside(_fused("gru", inputs=2, hidden=4), None, steps=12)
    assert note is None and config.probe_count == 8 and config.seq_len == 12
    assert task.options["source"] == "8 sine waves"
    t = np.arange(12)
    for i, frequency in enumerate(np.linspace(0.02, 0.2, 8)):
        wave = np.sin(2 * np.pi * frequency * t)
        for feature in range(2):
            np.testing.assert_allclose(task.x[i, :, feature].numpy(), wave, atol=1e-6)


def _saved_run(tmp_path, loss="last"):
    module = _fused("lstm", 2, inputs=2)
    x = _sequences()
    config, task, _ = look_inside(module, x, loss=loss, features=["speed", "load"], source="bench.npy")
    store = RunStore(tmp_path / "runs.sqlite")
    run = Run(config, trainer=Trainer(config, task=task), store=store, status=Status.FINISHED)
    run.save()
    return run, store, copy.deepcopy(module), x


def _as_stored(tr):
    """A trace as the store keeps it: per-unit arrays in float16, gradient norms in float32."""
    half = lambda a: None if a is None else a.astype(np.float16).astype(np.float32)  # noqa: E731
    layers = [dataclasses.replace(layer, gates={k: half(v) for k, v in layer.gates.items()},
                                  hidden=half(layer.hidden), cell=half(layer.cell)) for layer in tr.layers]
    return dataclasses.replace(tr, layers=layers, output=layers[-1].hidden)


def test_a_saved_model_run_reopens_with_its_weights_sequences_names_and_trace(tmp_path):
    run, store, reference, x = _saved_run(tmp_path)
    reopened = Run.open(store, run.id, run.owner_key)
    task = reopened.trainer.task
    assert isinstance(task, ModelTask) and reopened.status == Status.FINISHED
    assert_same_module(task.module, reference)
    np.testing.assert_array_equal(task.x.numpy(), x)
    assert task.feature_names() == ["speed", "load"] and task.options["source"] == "bench.npy"
    want = trace(reference, torch.from_numpy(x))
    _, kept = reopened.trainer.history.view().traces[-1]
    assert_same_trace(kept, _as_stored(want))
    assert_same_trace(reopened.trainer.probe(), want)


def test_retrace_changes_the_stored_loss_and_the_stored_trace(tmp_path):
    run, store, reference, x = _saved_run(tmp_path)
    run.retrace(dataclasses.replace(run.trainer.config, trace_loss="1@0"))
    assert store.config(run.id).trace_loss == "1@0"
    want = trace(reference, torch.from_numpy(x), loss_fn=_unit_loss(1, 0))
    assert want.loss != trace(reference, torch.from_numpy(x)).loss
    assert_same_trace(run.trainer.history.view().traces[-1][1], want)
    reopened = Run.open(store, run.id, run.owner_key)
    assert reopened.trainer.config.trace_loss == "1@0"
    traces = reopened.trainer.history.view().traces
    assert len(traces) == 1
    assert_same_trace(traces[0][1], _as_stored(want))


@pytest.mark.parametrize("owned", [True, False])
def test_a_model_run_is_never_trained(tmp_path, owned):
    run, store, _, _ = _saved_run(tmp_path)
    reopened = Run.open(store, run.id, run.owner_key if owned else None)
    assert reopened.read_only is not owned
    with pytest.raises(ReadOnly):
        reopened.start()
    with pytest.raises(ReadOnly):
        reopened.step(1)
    assert reopened.trainer.steps_done == 0


# -- a sequence by hand ---------------------------------------------------------------------------------

def _build(task, **values):
    values = {"shape": "numbers", "frequency": 0.05, "amplitude": 1.0, "numbers": "", **values}
    return task.handmade().build(task, values)


def _task(inputs=2, steps=6, loss="last"):
    module = _fused("gru", inputs=inputs, hidden=4)
    return look_inside(module, _sequences(steps=steps, features=inputs), loss)[1]


def test_a_hand_made_wave_fills_every_feature_for_the_model_s_length():
    x, _ = _build(_task(inputs=3, steps=6), shape="wave", frequency=0.1, amplitude=2.0)
    assert x.shape == (1, 6, 3) and x.dtype == torch.float32
    wave = 2.0 * np.sin(2 * np.pi * 0.1 * np.arange(6))
    for feature in range(3):
        np.testing.assert_allclose(x[0, :, feature].numpy(), wave, atol=1e-6)


@pytest.mark.parametrize("typed", ["1,2\n3,4", "1 2\n\n3 4\n", " 1, 2 \n3,4"])
def test_typed_numbers_are_one_step_per_line(typed):
    x, _ = _build(_task(inputs=2), numbers=typed)
    assert x.tolist() == [[[1.0, 2.0], [3.0, 4.0]]]


@pytest.mark.parametrize("typed, words", [
    ("1,2\n3", "line 2 has 1 number(s); the model reads 2"),
    ("1,2\n3,4,5", "line 2 has 3 number(s)"),
    ("1,2\nx,4", "line 2 ('x,4') is not a list of numbers"),
    ("nan,1", "line 1"),
    ("", "between 1 and 1000 steps"),
])
def test_typed_numbers_that_do_not_fit_name_the_line(typed, words):
    with pytest.raises(ValueError) as caught:
        _build(_task(inputs=2), numbers=typed)
    assert words in str(caught.value)
