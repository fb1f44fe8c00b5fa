"""trace() against independent references: the fused modules, numpy equations, gradcheck."""
import numpy as np
import pytest
import torch
from torch import nn

from explorer import PeepholeLSTM, trace

FUSED = {
    "lstm": lambda i, h, n, bf: nn.LSTM(i, h, n, batch_first=bf),
    "gru": lambda i, h, n, bf: nn.GRU(i, h, n, batch_first=bf),
    "rnn": lambda i, h, n, bf: nn.RNN(i, h, n, batch_first=bf),
    "rnn-relu": lambda i, h, n, bf: nn.RNN(i, h, n, nonlinearity="relu", batch_first=bf),
}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _fused_module(kind, layers, batch_first, dtype, device="cpu", seed=0):
    torch.manual_seed(seed)
    return FUSED[kind](3, 6, layers, batch_first).to(device=device, dtype=dtype).eval()


def _input(module, batch=4, time=9, dtype=torch.float64, device="cpu", seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, time, module.input_size, generator=g, dtype=dtype)  # (batch, time, input)
    x = x if module.batch_first else x.transpose(0, 1)
    return x.to(device)


def _batch_first(t, module):
    return t if module.batch_first else t.transpose(0, 1)


@pytest.mark.parametrize("kind", list(FUSED))
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("batch_first", [True, False])
def test_trace_matches_fused_output_float64(kind, layers, batch_first):
    module = _fused_module(kind, layers, batch_first, torch.float64)
    x = _input(module)
    tr = trace(module, x)
    expected = _batch_first(module(x)[0], module).detach().numpy()
    assert tr.output.shape == (4, 9, 6)
    np.testing.assert_allclose(tr.output, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(tr.layers[-1].hidden, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", list(FUSED))
def test_trace_matches_fused_output_float32(kind, device):
    module = _fused_module(kind, 2, True, torch.float32, device)
    x = _input(module, dtype=torch.float32, device=device)
    tr = trace(module, x)
    assert tr.output.dtype == np.float32
    np.testing.assert_allclose(tr.output, module(x)[0].detach().cpu().numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", list(FUSED))
@pytest.mark.parametrize("batch_first", [True, False])
def test_grad_input_matches_fused_input_gradient(kind, batch_first):
    module = _fused_module(kind, 2, batch_first, torch.float64)
    x = _input(module).requires_grad_(True)
    target = torch.randn(4, 6, dtype=torch.float64)

    def loss_fn(output, target):
        last = _batch_first(output, module)[:, -1]          # (batch, hidden)
        return ((last - target) ** 2).sum()

    tr = trace(module, x, target, loss_fn)
    loss = loss_fn(module(x)[0], target)
    loss.backward()
    expected = _batch_first(x.grad, module).norm(dim=-1).numpy()  # (batch, time)
    np.testing.assert_allclose(tr.grad_input, expected, rtol=1e-9, atol=1e-12)
    assert tr.loss == pytest.approx(loss.item(), rel=1e-12)


def _stepwise_fused_reference(module, x):
    """Unroll with the fused kernel one step and one layer at a time, keeping each state.

    Independent of explorer.cells: the cell math is PyTorch's own kernel; only the loop is ours.
    """
    kind = type(module)
    layers = []
    for k in range(module.num_layers):
        single = kind(module.input_size if k == 0 else module.hidden_size, module.hidden_size,
                      batch_first=True, **({"nonlinearity": module.nonlinearity} if kind is nn.RNN else {}))
        single = single.to(torch.float64)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(single, f"{name}_l0", getattr(module, f"{name}_l{k}"))
        layers.append(single)
    xb = _batch_first(x, module)
    batch, H = xb.shape[0], module.hidden_size
    state = [(torch.zeros(1, batch, H, dtype=torch.float64),) * 2 for _ in layers]
    hiddens = [[] for _ in layers]
    cells = [[] for _ in layers]
    for t in range(xb.shape[1]):
        inp = xb[:, t:t + 1]                                # (batch, 1, input)
        for k, layer in enumerate(layers):
            if kind is nn.LSTM:
                _, (h, c) = layer(inp, state[k])
                state[k] = (h, c)
                cells[k].append(c)
            else:
                _, h = layer(inp, state[k][0])
                state[k] = (h, h)
            hiddens[k].append(h)
            inp = h.transpose(0, 1)                         # the same tensor feeds the next layer
    return inp, hiddens, cells


@pytest.mark.parametrize("kind", list(FUSED))
@pytest.mark.parametrize("batch_first", [True, False])
def test_grad_hidden_and_grad_cell_match_stepwise_fused_reference(kind, batch_first):
    module = _fused_module(kind, 2, batch_first, torch.float64)
    x = _input(module, time=7)
    tr = trace(module, x)
    last, hiddens, cells = _stepwise_fused_reference(module, x)
    loss = last[:, -1].sum()                                # the default loss, batch-first frame
    states = [s for k in range(2) for s in hiddens[k] + cells[k]]
    # The last cell state feeds nothing the loss reads: no gradient, norm zero.
    grads = iter(g if g is not None else torch.zeros_like(s) for g, s in
                 zip(torch.autograd.grad(loss, states, allow_unused=True), states))
    for k in range(2):
        grad_h = torch.stack([next(grads)[0] for _ in hiddens[k]], 1)   # (batch, time, hidden)
        np.testing.assert_allclose(tr.layers[k].grad_hidden, grad_h.norm(dim=-1).numpy(), rtol=1e-9, atol=1e-14)
        if kind == "lstm":
            # The kernel returns h_t and c_t side by side, so autograd's gradient for the
            # returned c_t misses the path c_t -> h_t = o_t * tanh(c_t); add it back.
            grad_c = torch.stack([next(grads)[0] for _ in cells[k]], 1)
            c = torch.stack([c[0] for c in cells[k]], 1).detach()
            h = torch.stack([h[0] for h in hiddens[k]], 1).detach()
            output_gate = h / torch.tanh(c)
            grad_c = grad_c + grad_h * output_gate * (1 - torch.tanh(c) ** 2)
            np.testing.assert_allclose(tr.layers[k].grad_cell, grad_c.norm(dim=-1).numpy(), rtol=1e-8, atol=1e-14)
            np.testing.assert_allclose(tr.layers[k].cell, c.numpy(), atol=1e-10)
        else:
            assert tr.layers[k].grad_cell is None and tr.layers[k].cell is None
    # The gradient of the default loss reaches back from the last step: it is nonzero everywhere.
    assert (tr.layers[0].grad_hidden > 0).all()


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _numpy_weights(module, *names):
    return [getattr(module, f"{n}_l0").detach().numpy() for n in names]


def test_lstm_gates_satisfy_the_equations_recomputed_in_numpy():
    module = _fused_module("lstm", 1, True, torch.float64)
    x = _input(module)
    tr = trace(module, x)
    W_ih, W_hh, b_ih, b_hh = _numpy_weights(module, "weight_ih", "weight_hh", "bias_ih", "bias_hh")
    xs = x.numpy()
    h = np.zeros((4, 6))
    c = np.zeros((4, 6))
    layer = tr.layers[0]
    for t in range(x.shape[1]):
        i, f, g, o = np.split(xs[:, t] @ W_ih.T + b_ih + h @ W_hh.T + b_hh, 4, axis=1)
        i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
        c = f * c + i * g
        h = o * np.tanh(c)
        for name, ref in (("input", i), ("forget", f), ("candidate", g), ("output", o)):
            np.testing.assert_allclose(layer.gates[name][:, t], ref, atol=1e-12)
        np.testing.assert_allclose(layer.cell[:, t], c, atol=1e-12)
        np.testing.assert_allclose(layer.hidden[:, t], h, atol=1e-12)


def test_gru_gates_follow_pytorch_convention_recomputed_in_numpy():
    module = _fused_module("gru", 1, True, torch.float64)
    x = _input(module)
    tr = trace(module, x)
    W_ih, W_hh, b_ih, b_hh = _numpy_weights(module, "weight_ih", "weight_hh", "bias_ih", "bias_hh")
    xs = x.numpy()
    h = np.zeros((4, 6))
    layer = tr.layers[0]
    assert set(layer.gates) == {"reset", "update", "candidate"}
    for t in range(x.shape[1]):
        xr, xz, xn = np.split(xs[:, t] @ W_ih.T + b_ih, 3, axis=1)
        hr, hz, hn = np.split(h @ W_hh.T + b_hh, 3, axis=1)
        r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
        n = np.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        for name, ref in (("reset", r), ("update", z), ("candidate", n)):
            np.testing.assert_allclose(layer.gates[name][:, t], ref, atol=1e-12)
        np.testing.assert_allclose(layer.hidden[:, t], h, atol=1e-12)


def test_loss_is_summed_so_each_sequence_keeps_its_own_gradients():
    module = _fused_module("lstm", 2, True, torch.float64)
    x = _input(module, batch=3)
    together = trace(module, x)
    for b in range(3):
        alone = trace(module, x[b:b + 1])
        np.testing.assert_allclose(together.grad_input[b], alone.grad_input[0], rtol=1e-10)
        np.testing.assert_allclose(together.layers[0].grad_hidden[b], alone.layers[0].grad_hidden[0], rtol=1e-10)
    assert together.loss == pytest.approx(module(x)[0][:, -1].sum().item(), rel=1e-12)


@pytest.mark.parametrize("kind", list(FUSED))
@pytest.mark.parametrize("batch_first", [True, False])
def test_default_loss_is_the_last_step_of_every_sequence_in_either_layout(kind, batch_first):
    # Reference: the fused module in its own layout, the loss defined once in the batch-first
    # frame: out[:, -1].sum() batch-first is out[-1].sum() time-first.
    module = _fused_module(kind, 2, batch_first, torch.float64)
    x = _input(module).requires_grad_(True)
    out = _batch_first(module(x)[0], module)                # (batch, time, hidden)
    loss = out[:, -1].sum()
    loss.backward()
    tr = trace(module, x)
    assert tr.loss == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(tr.grad_input, _batch_first(x.grad, module).norm(dim=-1).numpy(),
                               rtol=1e-9, atol=1e-14)
    # Every sequence has a gradient of its own (the time-first bug left 3 of 4 at zero).
    assert (tr.grad_input.sum(axis=1) > 0).all()


@pytest.mark.parametrize("kind", list(FUSED))
def test_both_layouts_of_the_same_weights_give_the_same_trace(kind):
    first = _fused_module(kind, 2, True, torch.float64)
    second = _fused_module(kind, 2, False, torch.float64)
    second.load_state_dict(first.state_dict())
    x = _input(first)                                       # (batch, time, input)
    a, b = trace(first, x), trace(second, x.transpose(0, 1))
    assert a.loss == pytest.approx(b.loss, rel=1e-12)
    for got, want in [(b.output, a.output), (b.grad_input, a.grad_input)] + [
            (getattr(lb, q), getattr(la, q)) for la, lb in zip(a.layers, b.layers)
            for q in ("hidden", "cell", "grad_hidden", "grad_cell") if getattr(la, q) is not None]:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch_first", [True, False])
def test_unbatched_input_is_traced_as_a_batch_of_one(batch_first):
    module = _fused_module("gru", 2, batch_first, torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64)              # (time, input)
    tr = trace(module, x)
    assert tr.output.shape == (1, 5, 6) and tr.grad_input.shape == (1, 5)
    np.testing.assert_allclose(tr.output[0], module(x)[0].detach().numpy(), atol=1e-10)


def test_numpy_input_and_custom_loss_receive_module_layout():
    module = _fused_module("rnn", 1, False, torch.float64)
    x = _input(module).numpy()                              # (time, batch, input)
    seen = {}

    def loss_fn(output, target):
        seen["shape"] = tuple(output.shape)
        return output.pow(2).sum()

    trace(module, x, None, loss_fn)
    assert seen["shape"] == (9, 4, 6)


@pytest.mark.parametrize("make, words", [
    (lambda: nn.LSTM(3, 4, bidirectional=True), "bidirectional"),
    (lambda: nn.GRU(3, 4, bidirectional=True), "bidirectional"),
    (lambda: nn.LSTM(3, 4, proj_size=2), "proj_size"),
    (lambda: nn.Linear(3, 4), "Linear"),
])
def test_unsupported_modules_raise_value_error_naming_the_option(make, words):
    with pytest.raises(ValueError, match=words):
        trace(make(), torch.randn(2, 5, 3))


def test_wrong_feature_count_is_a_clear_value_error():
    with pytest.raises(ValueError, match="expects 3"):
        trace(nn.LSTM(3, 4), torch.randn(5, 2, 7))


def test_to_frame_holds_every_quantity_in_long_form():
    module = _fused_module("lstm", 2, True, torch.float32)
    tr = trace(module, _input(module, batch=2, time=4, dtype=torch.float32))
    frame = tr.to_frame()
    assert list(frame.columns) == ["layer", "sequence", "t", "unit", "quantity", "value"]
    per_unit = 2 * 4 * 6                                    # sequences * steps * units
    per_step = 2 * 4
    counts = frame.groupby("quantity").size()
    for q in ("input", "forget", "candidate", "output", "hidden", "cell"):
        assert counts[q] == 2 * per_unit                    # two layers
    assert counts["grad_hidden"] == 2 * per_step and counts["grad_input"] == per_step
    row = frame[(frame.layer == 1) & (frame.sequence == 1) & (frame.t == 3)
                & (frame.unit == 5) & (frame.quantity == "forget")]
    assert row.value.item() == pytest.approx(float(tr.layers[1].gates["forget"][1, 3, 5]))
    assert frame[frame.quantity == "grad_input"].layer.isna().all()


# --- the peephole LSTM -------------------------------------------------------------

def test_peephole_lstm_with_zero_peepholes_equals_nn_lstm():
    torch.manual_seed(0)
    reference = nn.LSTM(3, 5, 2, batch_first=True).double()
    peephole = PeepholeLSTM(3, 5, 2, batch_first=True).double()
    with torch.no_grad():
        for name, p in peephole.named_parameters():
            p.copy_(getattr(reference, name) if hasattr(reference, name) else torch.zeros_like(p))
    x = torch.randn(4, 8, 3, dtype=torch.float64, requires_grad=True)
    out, (h, c) = peephole(x)
    ref_out, (ref_h, ref_c) = reference(x)
    np.testing.assert_allclose(out.detach(), ref_out.detach(), atol=1e-12)
    np.testing.assert_allclose(c.detach(), ref_c.detach(), atol=1e-12)
    grad = torch.autograd.grad(out.sum(), x)[0]
    ref_grad = torch.autograd.grad(ref_out.sum(), x)[0]
    np.testing.assert_allclose(grad, ref_grad, atol=1e-12)


def test_peephole_lstm_has_nn_lstm_parameter_names_plus_peepholes():
    names = {n for n, _ in PeepholeLSTM(3, 5, 2).named_parameters()}
    lstm_names = {n for n, _ in nn.LSTM(3, 5, 2).named_parameters()}
    assert lstm_names < names
    assert names - lstm_names == {f"weight_c{g}_l{k}" for g in "ifo" for k in range(2)}


def test_peephole_lstm_gradients_pass_gradcheck():
    torch.manual_seed(0)
    module = PeepholeLSTM(2, 3, 2, batch_first=True).double()
    with torch.no_grad():
        for k in range(2):                                  # peepholes large enough to matter
            for g in "ifo":
                getattr(module, f"weight_c{g}_l{k}").normal_(0, 0.5)
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    params = list(module.parameters())

    names = [n for n, _ in module.named_parameters()]

    def f(x, *ps):
        return torch.func.functional_call(module, dict(zip(names, ps)), (x,))[0]

    assert torch.autograd.gradcheck(f, (x, *params))


def test_peephole_peepholes_change_the_gates_as_the_equations_say():
    torch.manual_seed(0)
    module = PeepholeLSTM(3, 4, 1, batch_first=True).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    tr = trace(module, x)
    W_ih, W_hh, b_ih, b_hh, w_ci, w_cf, w_co = _numpy_weights(
        module, "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ci", "weight_cf", "weight_co")
    h = np.zeros((2, 4))
    c = np.zeros((2, 4))
    for t in range(6):
        i, f, g, o = np.split(x[:, t].numpy() @ W_ih.T + b_ih + h @ W_hh.T + b_hh, 4, axis=1)
        i, f = _sigmoid(i + w_ci * c), _sigmoid(f + w_cf * c)
        c = f * c + i * np.tanh(g)
        o = _sigmoid(o + w_co * c)
        h = o * np.tanh(c)
        np.testing.assert_allclose(tr.layers[0].gates["output"][:, t], o, atol=1e-12)
        np.testing.assert_allclose(tr.layers[0].hidden[:, t], h, atol=1e-12)
    np.testing.assert_allclose(tr.output, module(x)[0].detach().numpy(), atol=1e-12)


def test_peephole_unbatched_and_time_first_agree_with_batch_first():
    torch.manual_seed(0)
    bf = PeepholeLSTM(3, 4, 2, batch_first=True)
    tf = PeepholeLSTM(3, 4, 2, batch_first=False)
    tf.load_state_dict(bf.state_dict())
    x = torch.randn(2, 5, 3)
    np.testing.assert_allclose(bf(x)[0].detach(), tf(x.transpose(0, 1))[0].transpose(0, 1).detach(), atol=1e-6)
    np.testing.assert_allclose(bf(x[0])[0].detach(), bf(x)[0][0].detach(), atol=1e-6)


def test_peephole_rejects_unsupported_options():
    with pytest.raises(ValueError, match="bidirectional"):
        PeepholeLSTM(3, 4, bidirectional=True)
    with pytest.raises(ValueError, match="proj_size"):
        PeepholeLSTM(3, 4, proj_size=2)


def test_peephole_trace_gradients_match_autograd_through_its_own_unroll():
    from explorer.cells import CELLS, layer_weights
    torch.manual_seed(0)
    module = PeepholeLSTM(3, 4, 2, batch_first=True).double()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)                               # peepholes large enough to matter
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    tr = trace(module, x)
    layer_input, unrolls = x, []
    zeros = torch.zeros(2, 4, dtype=torch.float64)
    for k in range(2):
        unrolls.append(CELLS["peephole"].unroll(layer_input, layer_weights(module, k), zeros, zeros, True))
        layer_input = torch.stack(unrolls[-1].hidden, 1)
    loss = layer_input[:, -1].sum()
    states = [s for u in unrolls for s in u.hidden + u.cell]
    grad_x, *grads = torch.autograd.grad(loss, [x] + states, allow_unused=True)
    grads = [g if g is not None else torch.zeros_like(s) for g, s in zip(grads, states)]
    np.testing.assert_allclose(tr.grad_input, grad_x.norm(dim=-1).numpy(), rtol=1e-10)
    for k in range(2):
        grad_h = torch.stack(grads[12 * k:12 * k + 6], 1).norm(dim=-1).numpy()
        grad_c = torch.stack(grads[12 * k + 6:12 * k + 12], 1).norm(dim=-1).numpy()
        np.testing.assert_allclose(tr.layers[k].grad_hidden, grad_h, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(tr.layers[k].grad_cell, grad_c, rtol=1e-10, atol=1e-15)
