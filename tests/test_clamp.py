"""trace(..., clamp=...) against an independent reference: the cells' equations written out step
by step in plain PyTorch, the clamped gates replaced by constants, differentiated by autograd."""
import numpy as np
import pytest
import torch
from torch import nn

from explorer import CIFGLSTM, PeepholeLSTM, trace
from explorer.clamp import describe

BATCH, TIME, INPUT, HIDDEN = 3, 8, 2, 5
MODULES = {
    "lstm": lambda layers: nn.LSTM(INPUT, HIDDEN, layers, batch_first=True),
    "peephole": lambda layers: PeepholeLSTM(INPUT, HIDDEN, layers, batch_first=True),
    "cifg": lambda layers: CIFGLSTM(INPUT, HIDDEN, layers, batch_first=True),
    "gru": lambda layers: nn.GRU(INPUT, HIDDEN, layers, batch_first=True),
}


def _module(kind, layers=1, seed=0):
    torch.manual_seed(seed)
    module = MODULES[kind](layers).double().eval()
    if kind == "peephole":
        with torch.no_grad():                      # peepholes large enough to matter
            for name, p in module.named_parameters():
                if name.startswith("weight_c"):
                    p.uniform_(-0.8, 0.8)
    return module


def _input(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, TIME, INPUT, generator=g, dtype=torch.float64)   # (batch, time, input)


def _readout(seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, TIME, HIDDEN, generator=g, dtype=torch.float64)  # loss weights on every h_t


def _mask(spec, layer, t, dtype=torch.bool):
    """Where the reference clamps a gate at (layer, t): a (hidden,) bool, or None."""
    if spec is None:
        return None
    spec = spec if isinstance(spec, dict) else {"value": spec}
    if spec.get("layers") is not None and layer not in spec["layers"]:
        return None
    if spec.get("steps") is not None and not spec["steps"][0] <= t < spec["steps"][1]:
        return None
    mask = torch.zeros(HIDDEN, dtype=torch.bool)
    mask[spec["units"] if spec.get("units") is not None else slice(None)] = True
    return mask


def _fix(value, clamp, gate, layer, t):
    """The gate with its clamped units replaced by a constant: torch.where passes no gradient
    to the computed value where the constant is taken."""
    spec = clamp.get(gate)
    mask = _mask(spec, layer, t)
    if mask is None:
        return value
    constant = spec["value"] if isinstance(spec, dict) else spec
    return torch.where(mask, torch.full_like(value, constant), value)


def _reference(kind, module, x, clamp):
    """Output, per-layer gates/h/c, and every gradient norm, by autograd through the equations."""
    x = x.clone().requires_grad_(True)
    layer_input, layers = x, []
    for k in range(module.num_layers):
        W_ih, W_hh = getattr(module, f"weight_ih_l{k}"), getattr(module, f"weight_hh_l{k}")
        b = getattr(module, f"bias_ih_l{k}") + getattr(module, f"bias_hh_l{k}")
        b_hh = getattr(module, f"bias_hh_l{k}")
        h = x.new_zeros(BATCH, HIDDEN)
        c = x.new_zeros(BATCH, HIDDEN)
        hs, cs, gates = [], [], {}
        for t in range(TIME):
            xt = layer_input[:, t]
            if kind == "gru":
                a_x = xt @ W_ih.t() + getattr(module, f"bias_ih_l{k}")
                a_h = h @ W_hh.t() + b_hh
                r = _fix(torch.sigmoid(a_x[:, :HIDDEN] + a_h[:, :HIDDEN]), clamp, "reset", k, t)
                z = _fix(torch.sigmoid(a_x[:, HIDDEN:2 * HIDDEN] + a_h[:, HIDDEN:2 * HIDDEN]), clamp, "update", k, t)
                n = _fix(torch.tanh(a_x[:, 2 * HIDDEN:] + r * a_h[:, 2 * HIDDEN:]), clamp, "candidate", k, t)
                h = (1 - z) * n + z * h
                step = {"reset": r, "update": z, "candidate": n}
            else:
                a = xt @ W_ih.t() + h @ W_hh.t() + b
                blocks = a.split(HIDDEN, dim=1)
                if kind == "cifg":
                    a_f, a_g, a_o = blocks
                    f = torch.sigmoid(a_f)
                    if "input" in clamp:              # i = 1 − f, so clamping i is clamping f at 1 − value
                        spec = clamp["input"] if isinstance(clamp["input"], dict) else {"value": clamp["input"]}
                        f = _fix(f, {"forget": dict(spec, value=1 - spec["value"])}, "forget", k, t)
                    f = _fix(f, clamp, "forget", k, t)
                    i = 1 - f
                else:
                    a_i, a_f, a_g, a_o = blocks
                    if kind == "peephole":
                        a_i = a_i + getattr(module, f"weight_ci_l{k}") * c
                        a_f = a_f + getattr(module, f"weight_cf_l{k}") * c
                    i = _fix(torch.sigmoid(a_i), clamp, "input", k, t)
                    f = _fix(torch.sigmoid(a_f), clamp, "forget", k, t)
                g = _fix(torch.tanh(a_g), clamp, "candidate", k, t)
                c = f * c + i * g
                if kind == "peephole":
                    a_o = a_o + getattr(module, f"weight_co_l{k}") * c
                o = _fix(torch.sigmoid(a_o), clamp, "output", k, t)
                h = o * torch.tanh(c)
                c.retain_grad()
                cs.append(c)
                step = {"input": i, "forget": f, "candidate": g, "output": o}
            h.retain_grad()
            hs.append(h)
            for name, v in step.items():
                gates.setdefault(name, []).append(v)
        layer_input = torch.stack(hs, dim=1)          # (batch, time, hidden)
        layers.append((hs, cs, gates))
    loss = (layer_input * _readout()).sum()
    loss.backward()
    as_np = lambda steps: torch.stack([s.detach() for s in steps], dim=1).numpy()  # noqa: E731
    grad_norms = lambda steps: torch.stack([s.grad.norm(dim=-1) for s in steps], dim=1).numpy()  # noqa: E731
    return {
        "output": layer_input.detach().numpy(), "loss": float(loss.detach()), "grad_input": x.grad.norm(dim=-1).numpy(),
        "layers": [{"hidden": as_np(hs), "cell": as_np(cs) if cs else None,
                    "gates": {n: as_np(v) for n, v in gates.items()},
                    "grad_hidden": grad_norms(hs), "grad_cell": grad_norms(cs) if cs else None}
                   for hs, cs, gates in layers],
    }


def _assert_matches(tr, ref):
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)  # noqa: E731
    close(tr.output, ref["output"])
    close(tr.loss, ref["loss"])
    close(tr.grad_input, ref["grad_input"])
    for layer, expected in zip(tr.layers, ref["layers"]):
        close(layer.hidden, expected["hidden"])
        close(layer.grad_hidden, expected["grad_hidden"])
        for name, values in expected["gates"].items():
            close(layer.gates[name], values)
        if expected["cell"] is not None:
            close(layer.cell, expected["cell"])
            close(layer.grad_cell, expected["grad_cell"])


def _traced(module, x, clamp):
    return trace(module, x, loss_fn=lambda out, _: (out * _readout()).sum(), clamp=clamp)


CASES = {
    "lstm": [{"forget": 0.0}, {"input": {"value": 1.0, "units": [1, 3], "steps": (2, 6)}},
             {"output": 0.5, "candidate": {"value": -0.3, "steps": (0, 4)}}],
    "peephole": [{"forget": 1.0}, {"input": {"value": 0.2, "units": [0], "steps": (3, 8)}, "output": 0.9}],
    "cifg": [{"forget": 0.25}, {"input": {"value": 0.0, "units": [2, 4], "steps": (1, 5)}},
             {"candidate": 0.7, "output": {"value": 0.1, "units": [0]}}],
    "gru": [{"update": 0.5}, {"reset": {"value": 0.0, "steps": (2, 7)}},
            {"candidate": {"value": 0.9, "units": [1, 2]}, "update": {"value": 0.2, "steps": (0, 3)}}],
}


@pytest.mark.parametrize("kind,clamp", [(kind, c) for kind, cases in CASES.items() for c in cases])
def test_clamped_trace_equals_the_equations_with_constant_gates(kind, clamp):
    module = _module(kind)
    x = _input()
    tr = _traced(module, x, clamp)
    _assert_matches(tr, _reference(kind, module, x, clamp))
    # The clamp does change the numbers (else the comparison above proves little).
    free = _traced(module, x, None)
    assert np.abs(free.output - tr.output).max() > 1e-3


@pytest.mark.parametrize("kind", list(MODULES))
def test_two_layers_with_a_partial_clamp_on_one_layer(kind):
    gate = {"lstm": "forget", "peephole": "output", "cifg": "input", "gru": "update"}[kind]
    clamp = {gate: {"value": 0.9, "units": [0, 2, 4], "steps": (2, 6), "layers": [1]}}
    module = _module(kind, layers=2)
    x = _input()
    tr = _traced(module, x, clamp)
    _assert_matches(tr, _reference(kind, module, x, clamp))
    unclamped = _traced(module, x, None)
    # Layer 1 (index 0) is untouched: its forward is the same; its gradients are not, since
    # they come back through the clamped layer above.
    np.testing.assert_array_equal(tr.layers[0].hidden, unclamped.layers[0].hidden)
    assert np.abs(tr.layers[0].grad_hidden - unclamped.layers[0].grad_hidden).max() > 1e-6
    np.testing.assert_allclose(tr.layers[1].gates[gate][:, 2:6, [0, 2, 4]], 0.9, rtol=0, atol=1e-15)


def test_lstm_with_the_input_gate_shut_keeps_c_and_h_at_zero():
    module = _module("lstm", layers=2)
    tr = trace(module, _input(), clamp={"input": 0.0})
    for layer in tr.layers:
        assert np.abs(layer.cell).max() == 0.0
        assert np.abs(layer.hidden).max() == 0.0


def test_gru_with_the_update_gate_at_one_keeps_h_at_zero():
    module = _module("gru", layers=2)
    tr = trace(module, _input(), clamp={"update": 1.0})
    for layer in tr.layers:
        assert np.abs(layer.hidden).max() == 0.0
        np.testing.assert_array_equal(layer.gates["update"], 1.0)


def test_cifg_clamping_forget_sets_input_to_one_minus_it():
    tr = trace(_module("cifg"), _input(), clamp={"forget": {"value": 0.3, "units": [1]}})
    gates = tr.layers[0].gates
    np.testing.assert_allclose(gates["forget"][..., 1], 0.3, rtol=0, atol=1e-15)
    np.testing.assert_allclose(gates["input"][..., 1], 0.7, rtol=0, atol=1e-15)
    np.testing.assert_allclose(gates["input"] + gates["forget"], 1.0, rtol=0, atol=1e-15)


@pytest.mark.parametrize("kind", ["lstm", "gru", "cifg"])
@pytest.mark.parametrize("empty", [None, {}])
def test_an_empty_clamp_gives_exactly_the_unclamped_numbers(kind, empty):
    module = _module(kind, layers=2)
    x = _input()
    a, b = trace(module, x), trace(module, x, clamp=empty)
    assert b.clamp is None
    for name in ("output", "grad_input"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.grad_hidden, lb.grad_hidden)
        for gate in la.gates:
            np.testing.assert_array_equal(la.gates[gate], lb.gates[gate])


def test_the_trace_keeps_its_clamp_in_normal_form():
    tr = trace(_module("lstm"), _input(), clamp={"forget": {"value": 0, "units": (3, 1), "steps": [0, 4]}})
    assert tr.clamp == {"forget": {"value": 0.0, "units": [1, 3], "steps": [0, 4], "layers": None}}
    assert describe(tr.clamp) == "forget = 0 on units 1, 3 at steps 0–3"


@pytest.mark.parametrize("kind,clamp,words", [
    ("lstm", {"update": 0.5}, "choose from input, forget, candidate, output"),
    ("gru", {"forget": 0.5}, "choose from reset, update, candidate"),
    ("lstm", {"forget": 1.5}, "outside the gate's range [0, 1]"),
    ("lstm", {"candidate": -1.5}, "outside the gate's range [-1, 1]"),
    ("lstm", {"forget": float("nan")}, "finite number"),
    ("lstm", {"forget": {"value": 0.5, "units": [5]}}, "unit 5 is out of range; units run from 0 to 4"),
    ("lstm", {"forget": {"value": 0.5, "units": [-1]}}, "unit -1 is out of range"),
    ("lstm", {"forget": {"value": 0.5, "layers": [1]}}, "layer 1 is out of range; layers run from 0 to 0"),
    ("lstm", {"forget": {"value": 0.5, "steps": (4, 9)}}, "the sequence has 8 steps"),
    ("lstm", {"forget": {"value": 0.5, "steps": (5, 5)}}, "0 ≤ start < stop ≤ 8"),
    ("lstm", {"forget": {"units": [1]}}, "needs a value"),
    ("lstm", {"forget": {"value": 0.5, "unit": [1]}}, "unknown key 'unit'"),
    ("cifg", {"forget": 0.5, "input": 0.5}, "clamp one of them"),
])
def test_bad_clamps_are_refused_naming_the_valid_choices(kind, clamp, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        trace(_module(kind), _input(), clamp=clamp)


def test_a_plain_rnn_has_nothing_to_clamp():
    module = nn.RNN(INPUT, HIDDEN, batch_first=True).double()
    with pytest.raises(ValueError, match="has no gates to clamp"):
        trace(module, _input(), clamp={"input": 0.0})


# -- fuzzing: any clamp a user can write ---------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from explorer.cells import CELLS  # noqa: E402
from explorer.clamp import RANGES, check  # noqa: E402

_MODULES_2 = {kind: _module(kind, layers=2) for kind in MODULES}


@st.composite
def _valid_clamps(draw):
    kind = draw(st.sampled_from(list(MODULES)))
    cell = CELLS[kind]
    gates = draw(st.lists(st.sampled_from(cell.gates), min_size=1, max_size=2, unique=True))
    if kind == "cifg" and {"input", "forget"} <= set(gates):     # coupled: one of the two at a time
        gates.remove("input")
    clamp = {}
    for gate in gates:
        lo, hi = RANGES[cell.roles[gate]]
        value = draw(st.floats(lo, hi, allow_nan=False))
        if draw(st.booleans()):
            clamp[gate] = value
            continue
        start = draw(st.integers(0, TIME - 1))
        clamp[gate] = {
            "value": value,
            "units": draw(st.none() | st.lists(st.integers(0, HIDDEN - 1), min_size=1, max_size=HIDDEN)),
            "steps": draw(st.none() | st.integers(start + 1, TIME).map(lambda stop: (start, stop))),
            "layers": draw(st.none() | st.lists(st.integers(0, 1), min_size=1, max_size=2)),
        }
    return kind, clamp


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_valid_clamps())
def test_any_valid_clamp_equals_the_equations(case):
    kind, clamp = case
    module, x = _MODULES_2[kind], _input()
    _assert_matches(_traced(module, x, clamp), _reference(kind, module, x, clamp))


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=4), max_leaves=12)
_NEAR = st.dictionaries(st.sampled_from(["forget", "input", "update", "candidate", "output", "x"]),
                        _JSON | st.fixed_dictionaries({}, optional={k: _JSON for k in
                                                                     ("value", "units", "steps", "layers")}),
                        max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(MODULES)), _JSON | _NEAR)
def test_anything_else_is_a_value_error_or_a_normal_form(kind, clamp):
    """Whatever a link or a notebook passes, check() answers a normal form or a ValueError."""
    try:
        normal = check(clamp, CELLS[kind], 2, HIDDEN, TIME)
    except ValueError:
        return
    if normal is not None:                                    # what it accepted, trace accepts
        assert set(normal) <= set(CELLS[kind].gates)
        trace(_MODULES_2[kind], _input(), clamp=normal)
