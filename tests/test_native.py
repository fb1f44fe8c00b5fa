"""The compiled steps of the peephole and CIFG LSTMs (cells/native.py, cells/kernels.c): built
with the machine's C compiler, taken for float32 on the CPU, and equal to the equations: against
autograd through the step-by-step unroll in float64 (tests/test_unrolled.py's reference) and
against PyTorch's own σ and tanh. Without a compiler the build says so and PyTorch's loop trains."""
import copy
import os
import shutil

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.cells import lstm, native
from explorer.cells.base import layer_weights
from explorer.cells.cifg import CIFGLSTM
from explorer.cells.peephole import PeepholeLSTM
from explorer.trace import trace

HAS_COMPILER = shutil.which(os.environ.get("CC", "cc")) is not None
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler here: the PyTorch loop is used")
both_cells = pytest.mark.parametrize("cls", [PeepholeLSTM, CIFGLSTM])
CELLS = {PeepholeLSTM: "peephole", CIFGLSTM: "cifg"}     # as explorer.cells.native names them


def _loss(module, x, hx=None):
    out, (h_n, c_n) = module(x, hx)
    # Every output reaches the loss: the sequence, h_T and c_T (c_T's gradient enters the backward).
    return (out ** 2).sum() + (0.3 * c_n).sum() + h_n.sum()


def _reference(module64, x64, hx=None):
    """Autograd through the unroll's own step-by-step graph, in float64."""
    cls = type(module64)
    original = vars(cls)["backprop"]
    cls.backprop = None
    try:
        inputs = [x64, *module64.parameters()]
        return torch.autograd.grad(_loss(module64, x64, hx), inputs)
    finally:
        cls.backprop = original


def _counting(monkeypatch):
    """Counts the compiled layer passes, forward and backward, calling the real ones."""
    calls = {"forward": 0, "backward": 0}
    for name, real in (("forward", native.unroll), ("backward", native.backprop)):
        def spy(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(native, real.__name__, spy)
    return calls


def _assert_close_to(ours, reference, names):
    for name, a, b in zip(names, ours, reference):
        scale = float(b.abs().max()) or 1.0
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=2e-5 * scale, msg=name)


@needs_compiler
def test_the_library_builds_once_and_float32_on_the_cpu_takes_it(tmp_path):
    first = native.build(tmp_path)
    made = first.stat().st_mtime_ns
    assert native.build(tmp_path) == first and first.stat().st_mtime_ns == made     # not compiled again
    assert [p.name for p in tmp_path.iterdir()] == [first.name]                     # no scratch file left
    assert native.library() is not None
    assert native.usable(torch.zeros(2))
    assert not native.usable(torch.zeros(2, dtype=torch.float64))
    with native.pytorch_loop():
        assert not native.usable(torch.zeros(2))


@needs_compiler
@both_cells
@pytest.mark.parametrize("layers, batch_first, given_state", [(1, True, False), (2, True, True), (2, False, False)])
def test_compiled_gradients_equal_autograd_through_the_float64_unroll(monkeypatch, cls, layers, batch_first,
                                                                      given_state):
    torch.manual_seed(5)
    module = cls(3, 12, layers, batch_first=batch_first)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.6)        # gates well away from 1/2, peepholes that matter
    x = torch.randn(5, 30, 3) * 2                                            # (batch, time, input)
    x_in = x if batch_first else x.transpose(0, 1)
    hx = (torch.randn(layers, 5, 12), torch.randn(layers, 5, 12)) if given_state else None
    calls = _counting(monkeypatch)
    x_in = x_in.clone().requires_grad_()
    ours = torch.autograd.grad(_loss(module, x_in, hx), [x_in, *module.parameters()])
    assert calls == {"forward": layers, "backward": layers}                 # the compiled step, every layer
    module64 = copy.deepcopy(module).double()
    x64 = x_in.detach().double().requires_grad_()
    hx64 = tuple(s.double() for s in hx) if hx else None
    reference = _reference(module64, x64, hx64)
    _assert_close_to(ours, reference, ["x"] + [n for n, _ in module.named_parameters()])


@needs_compiler
@both_cells
def test_the_compiled_step_and_pytorchs_loop_give_the_same_numbers(cls):
    torch.manual_seed(6)
    module = cls(2, 16, 2, batch_first=True)
    x = torch.randn(8, 40, 2)
    ours = torch.autograd.grad(_loss(module, x), list(module.parameters()))
    with native.pytorch_loop():
        theirs = torch.autograd.grad(_loss(module, x), list(module.parameters()))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


@needs_compiler
@both_cells
def test_a_forward_pass_without_gradients_keeps_no_gates_and_gives_the_same_numbers(cls):
    # An eval or a prediction: gates written over their own pre-activations, c_t in two buffers.
    torch.manual_seed(10)
    module = cls(3, 20, 2, batch_first=True)
    x = torch.randn(6, 33, 3)
    kept = module(x)                                            # the training forward, every gate kept
    with torch.no_grad():
        bare = module(x)
        layer = native.layer_unroll(CELLS[cls], x, layer_weights(module, 0), torch.zeros(6, 20), torch.zeros(6, 20),
                                    keep_gates=False)
    assert layer.gates == {} and layer.saved == {} and layer.cell.shape == (6, 1, 20)
    for ours, theirs in ((bare[0], kept[0]), (bare[1][0], kept[1][0]), (bare[1][1], kept[1][1])):
        assert torch.equal(ours, theirs.detach())               # the same C step on the same numbers
    with native.pytorch_loop(), torch.no_grad():
        torch.testing.assert_close(module(x)[0], bare[0], rtol=1e-4, atol=1e-6)


@needs_compiler
def test_the_gates_equal_torch_sigmoid_and_tanh_over_their_whole_range():
    # No recurrence and no peepholes: each gate is its nonlinearity of the pre-activation.
    H = 37                                                      # not a multiple of the vector width
    pre = torch.linspace(-120, 120, 3 * 4 * H).view(1, 3, 4 * H)   # (time, batch, 4*hidden)
    zeros = torch.zeros(H)
    gates, cell, tanh_cell, hidden = native.unroll("peephole", pre.clone(), torch.zeros(4 * H, H),
                                                   (zeros, zeros, zeros), torch.zeros(3, H), torch.zeros(3, H))
    i, f, g, o = gates[0].split(H, dim=1)
    a_i, a_f, a_g, a_o = pre[0].split(H, dim=1)
    for ours, theirs in ((i, torch.sigmoid(a_i)), (f, torch.sigmoid(a_f)), (g, torch.tanh(a_g)),
                         (o, torch.sigmoid(a_o))):
        torch.testing.assert_close(ours, theirs, rtol=2e-6, atol=3e-7)
    torch.testing.assert_close(cell[0], i * g)                  # c_t = f·0 + i g
    torch.testing.assert_close(tanh_cell[0], torch.tanh(cell[0]), rtol=2e-6, atol=3e-7)
    torch.testing.assert_close(hidden[0], o * tanh_cell[0])
    # Near 0, tanh to float precision relative to its size (a small cell state's tanh).
    tiny = torch.cat([torch.logspace(-6, 0, 4 * H - 1), torch.zeros(1)]).view(1, 1, 4 * H)
    gates_tiny = native.unroll("peephole", tiny.clone(), torch.zeros(4 * H, H), (zeros, zeros, zeros),
                               torch.zeros(1, H), torch.zeros(1, H))[0]
    torch.testing.assert_close(gates_tiny[0, 0, 2 * H:3 * H], torch.tanh(tiny[0, 0, 2 * H:3 * H]), rtol=1e-6, atol=0)
    # Saturated ends, exactly where they are exact in float32.
    assert float(g.max()) == 1.0 and float(g.min()) == -1.0 and float(o.max()) == 1.0 and float(i.min()) < 1e-30


@needs_compiler
@both_cells
def test_a_nan_stays_a_nan_so_that_a_diverging_run_is_seen(cls):
    torch.manual_seed(7)
    module = cls(2, 8, batch_first=True)
    x = torch.randn(3, 10, 2)
    x[1, 4, 0] = float("nan")
    out, (_, c_n) = module(x)
    assert torch.isnan(out[1, 4:]).all() and torch.isfinite(out[[0, 2]]).all()   # that sequence, from that step
    assert torch.isnan(c_n[0, 1]).all()                                        # (layers, batch, hidden)
    with torch.no_grad():
        module.weight_hh_l0[3, 2] = float("inf")
    grads = torch.autograd.grad(module(torch.randn(3, 10, 2))[0].sum(), list(module.parameters()))
    assert not all(torch.isfinite(g).all() for g in grads)


@needs_compiler
@both_cells
def test_a_float32_trace_equals_the_float64_one(cls):
    # The probe takes the compiled step too (unroll and backward): its gates and gradient norms.
    torch.manual_seed(8)
    module = cls(3, 10, 2, batch_first=True)
    x = torch.randn(4, 25, 3)
    ours, reference = trace(module, x), trace(copy.deepcopy(module).double(), x.double())
    for layer, layer64 in zip(ours.layers, reference.layers):
        for name in lstm.GATES:
            np.testing.assert_allclose(layer.gates[name], layer64.gates[name], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(layer.grad_hidden, layer64.grad_hidden, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(layer.grad_cell, layer64.grad_cell, rtol=1e-4, atol=1e-6)
        for block, share in layer64.weight_grad_share.items():
            np.testing.assert_allclose(layer.weight_grad_share[block], share, rtol=1e-3, atol=1e-6)


@needs_compiler
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cls=st.sampled_from([PeepholeLSTM, CIFGLSTM]), batch=st.integers(1, 5), hidden=st.integers(1, 19),
       time=st.integers(1, 7), scale=st.floats(0.05, 3.0), seed=st.integers(0, 2 ** 16))
def test_any_shape_and_weight_scale_matches_the_float64_unroll(cls, batch, hidden, time, scale, seed):
    torch.manual_seed(seed)
    module = cls(2, hidden, batch_first=True)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, scale)
    x = torch.randn(batch, time, 2, requires_grad=True)
    inputs = [x, *module.parameters()]
    ours = torch.autograd.grad(_loss(module, x), inputs)
    with native.pytorch_loop():
        theirs = torch.autograd.grad(_loss(module, x), inputs)
    x64 = x.detach().double().requires_grad_()
    reference = _reference(copy.deepcopy(module).double(), x64)
    # Large weights saturate gates, where float32 itself loses digits (1 − σ near 1): the compiled
    # step must be about as close to the float64 equations as PyTorch's float32 loop is.
    for name, a, t, b in zip(["x"] + [n for n, _ in module.named_parameters()], ours, theirs, reference):
        scale = float(b.abs().max()) or 1.0
        ours_off, theirs_off = float((a.double() - b).abs().max()), float((t.double() - b).abs().max())
        assert ours_off <= 8 * theirs_off + 1e-5 * scale, (name, ours_off, theirs_off, scale)


def test_without_a_compiler_the_build_says_so_and_pytorchs_loop_trains(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(RuntimeError, match="no C compiler"):
        native.build(tmp_path)
    monkeypatch.setattr(native, "_loaded", {})                  # as a fresh process
    monkeypatch.setattr(native, "cache_dir", lambda: tmp_path)
    with pytest.warns(RuntimeWarning, match="using PyTorch's loop"):
        assert native.library() is None
    assert native.library() is None                             # said once, not tried again
    calls = _counting(monkeypatch)
    torch.manual_seed(9)
    module = PeepholeLSTM(2, 6, batch_first=True)
    x = torch.randn(3, 8, 2, requires_grad=True)
    ours = torch.autograd.grad(_loss(module, x), [x, *module.parameters()])
    assert calls == {"forward": 0, "backward": 0}
    x64 = x.detach().double().requires_grad_()
    reference = _reference(copy.deepcopy(module).double(), x64)
    _assert_close_to(ours, reference, ["x"] + [n for n, _ in module.named_parameters()])


def test_a_failing_compiler_is_named_with_its_message(monkeypatch, tmp_path):
    failing = tmp_path / "cc"
    failing.write_text("#!/bin/sh\necho 'cc: this compiler refuses' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("CC", str(failing))
    with pytest.raises(RuntimeError, match="failed: cc: this compiler refuses"):
        native.build(tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())             # nothing half-written is left to load


def test_the_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv(native.NATIVE_ENV, "0")
    assert native.library() is None and not native.usable(torch.zeros(1))
