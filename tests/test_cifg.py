"""The CIFG LSTM (i_t = 1 − f_t) against independent references.

The reference is PyTorch's fused nn.LSTM: since 1 − σ(a) = σ(−a), an nn.LSTM whose input-gate
block is the negated forget-gate block computes exactly the CIFG cell. gradcheck covers the
module's own autograd; the equations are recomputed in numpy.
"""
import numpy as np
import pytest
import torch
from torch import nn

from explorer import CIFGLSTM, Config, Trainer, trace
from explorer.cells import CELLS
from explorer.stepthrough import step_through


def cifg(layers=2, batch_first=True, seed=0) -> CIFGLSTM:
    torch.manual_seed(seed)
    module = CIFGLSTM(3, 5, layers, batch_first=batch_first).double()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.6)                             # away from init, so a misplaced block shows
    return module


def equivalent_lstm(module: CIFGLSTM) -> nn.LSTM:
    """The fused nn.LSTM computing the same function: input block = −(forget block)."""
    lstm = nn.LSTM(module.input_size, module.hidden_size, module.num_layers,
                   batch_first=module.batch_first).double()
    H = module.hidden_size
    with torch.no_grad():
        for k in range(module.num_layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                f, g, o = getattr(module, f"{name}_l{k}").split(H)
                getattr(lstm, f"{name}_l{k}").copy_(torch.cat([-f, f, g, o]))
    return lstm


@pytest.mark.parametrize("batch_first", [True, False])
def test_cifg_forward_equals_the_fused_lstm_with_coupled_weights(batch_first):
    module = cifg(batch_first=batch_first)
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    x = x if batch_first else x.transpose(0, 1)
    out, (h, c) = module(x)
    ref, (h_ref, c_ref) = equivalent_lstm(module)(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(c, c_ref, rtol=0, atol=1e-12)


def test_cifg_trace_matches_the_fused_lstm_output_gates_and_gradients():
    module = cifg()
    x = torch.randn(4, 9, 3, dtype=torch.float64, requires_grad=True)
    tr = trace(module, x)
    lstm = equivalent_lstm(module)
    ref = trace(lstm, x)                                   # itself tested against the fused kernel
    out = lstm(x)[0]
    np.testing.assert_allclose(tr.output, out.detach().numpy(), rtol=0, atol=1e-10)
    out[:, -1].sum().backward()                           # trace's default loss, by the fused module
    np.testing.assert_allclose(tr.grad_input, x.grad.norm(dim=-1).numpy(), rtol=1e-9)
    assert tr.cell == "cifg"
    for layer, expected in zip(tr.layers, ref.layers):
        for name in ("input", "forget", "candidate", "output"):
            np.testing.assert_allclose(layer.gates[name], expected.gates[name], atol=1e-12)
        np.testing.assert_allclose(layer.cell, expected.cell, atol=1e-12)
        np.testing.assert_allclose(layer.grad_hidden, expected.grad_hidden, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(layer.grad_cell, expected.grad_cell, rtol=1e-9, atol=1e-14)


def test_cifg_gates_satisfy_the_equations_recomputed_in_numpy():
    module = cifg(layers=1)
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    tr, layer = trace(module, x), None
    layer = tr.layers[0]
    w_ih, w_hh = module.weight_ih_l0.detach().numpy(), module.weight_hh_l0.detach().numpy()
    b = (module.bias_ih_l0 + module.bias_hh_l0).detach().numpy()
    sigmoid = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    h, c = np.zeros((2, 5)), np.zeros((2, 5))
    for t in range(6):
        pre = x[:, t].numpy() @ w_ih.T + h @ w_hh.T + b   # (batch, 3*hidden) blocks f, g, o
        f, g, o = sigmoid(pre[:, :5]), np.tanh(pre[:, 5:10]), sigmoid(pre[:, 10:])
        c = f * c + (1 - f) * g
        h = o * np.tanh(c)
        np.testing.assert_allclose(layer.gates["input"][:, t], 1 - f, atol=1e-12)
        np.testing.assert_allclose(layer.gates["forget"][:, t], f, atol=1e-12)
        np.testing.assert_allclose(layer.cell[:, t], c, atol=1e-12)
        np.testing.assert_allclose(layer.hidden[:, t], h, atol=1e-12)


def test_cifg_gradients_pass_gradcheck():
    torch.manual_seed(1)
    module = CIFGLSTM(2, 3, 2, batch_first=True).double()
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    params = tuple(module.parameters())

    def f(x, *ps):
        values = dict(zip([n for n, _ in module.named_parameters()], ps))
        return torch.func.functional_call(module, values, (x,))[0]

    assert torch.autograd.gradcheck(f, (x, *[p.detach().requires_grad_(True) for p in params]))


def test_cifg_has_three_gate_blocks_and_nn_lstm_parameter_names():
    module = CIFGLSTM(3, 5, 2)
    names = {n: tuple(p.shape) for n, p in module.named_parameters()}
    assert names["weight_ih_l0"] == (15, 3) and names["weight_hh_l1"] == (15, 5) and names["bias_hh_l1"] == (15,)
    assert set(names) == {f"{w}_l{k}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") for k in (0, 1)}
    assert CELLS["cifg"].blocks == ("forget", "candidate", "output")


def test_cifg_unbatched_and_time_first_agree_with_batch_first():
    bf = CIFGLSTM(3, 4, 2, batch_first=True)
    tf = CIFGLSTM(3, 4, 2, batch_first=False)
    tf.load_state_dict(bf.state_dict())
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(bf(x)[0], tf(x.transpose(0, 1))[0].transpose(0, 1))
    torch.testing.assert_close(bf(x[0])[0], bf(x)[0][0])


def test_cifg_trains_in_the_trainer_with_its_forget_bias_in_the_forget_block():
    config = Config(cell="cifg", task="adding", seq_len=20, hidden=16, batch_size=32, lr=0.01,
                    steps=300, forget_bias=2.0, eval_every=50, probe_every=100, seed=0, device="cpu")
    trainer = Trainer(config)
    bias = trainer.model.rnn.bias_ih_l0.detach()
    assert (bias[:16] == 2.0).all() and not (bias[16:] == 2.0).any()
    while not trainer.finished:
        trainer.step()
    loss, _ = trainer.evaluate()
    assert loss < 0.5 * trainer.task.baseline_loss          # it learns the adding problem
    assert trainer.history.view().traces[-1][1].cell == "cifg"


def test_cifg_step_through_writes_the_coupling_out():
    module = cifg()
    x = torch.randn(1, 6, 3, dtype=torch.float64)
    s = step_through(module, trace(module, x), x[0].numpy(), 0, 1, 4, 2)
    i, f = s.gates["input"], s.gates["forget"]
    assert i.value == pytest.approx(1 - f.value, abs=1e-12)
    assert s.cell_state == pytest.approx(f.value * s.c_previous + i.value * s.gates["candidate"].value)
    assert [line[:3] for line in s.lines] == ["h_{", "f_t", "i_t", "g_t", "c_t", "o_t", "h_t"]
    assert s.lines[2].startswith("i_t = 1 - f_t")
