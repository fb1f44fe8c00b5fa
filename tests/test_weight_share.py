"""LayerTrace.weight_grad_share: the recurrent weight gradient split by time step. The per-step
terms δᵃ_t h_{t−1}ᵀ, summed over time and batch, must be the gradient autograd gives for W_hh
of the fused module (or, for cells without one, of an independent equivalent)."""
import numpy as np
import pytest
import torch
from torch import nn

from explorer import CIFGLSTM, PeepholeLSTM, trace
from explorer.cells import CELLS
from explorer.trace import recurrent_weight_terms
from test_cifg import equivalent_lstm

BATCH, TIME, INPUT, HIDDEN = 3, 7, 2, 4
FUSED = {
    "lstm": lambda n: nn.LSTM(INPUT, HIDDEN, n, batch_first=True),
    "gru": lambda n: nn.GRU(INPUT, HIDDEN, n, batch_first=True),
    "rnn": lambda n: nn.RNN(INPUT, HIDDEN, n, batch_first=True),
    "peephole": lambda n: PeepholeLSTM(INPUT, HIDDEN, n, batch_first=True),
    "cifg": lambda n: CIFGLSTM(INPUT, HIDDEN, n, batch_first=True),
}


def _module(kind, layers, seed=0):
    torch.manual_seed(seed)
    module = FUSED[kind](layers).double()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)                            # away from init, so a misplaced block shows
    return module


def _x(seed=1):
    return torch.randn(BATCH, TIME, INPUT, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _weights(seed=2):
    return torch.randn(BATCH, TIME, HIDDEN, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _loss(output, _=None):
    return (output * _weights()).sum()


def _autograd_weight_hh(kind, module, x):
    """dL/dW_hh of every layer by autograd through an independent forward pass."""
    if kind == "cifg":                                   # the fused LSTM with i = 1 − f: W_hi = −W_hf
        lstm = equivalent_lstm(module)
        grads = torch.autograd.grad(_loss(lstm(x)[0]), [getattr(lstm, f"weight_hh_l{k}")
                                                       for k in range(module.num_layers)])
        coupled = []
        for g in grads:
            i, f, c, o = g.split(HIDDEN)
            coupled.append(torch.cat([f - i, c, o]))
        return coupled
    params = [getattr(module, f"weight_hh_l{k}") for k in range(module.num_layers)]
    if kind == "peephole":
        # An initial state that wants a gradient sends the module through autograd of its
        # step-by-step graph, not its hand-written backward (which is what trace uses).
        zeros = torch.zeros(module.num_layers, BATCH, HIDDEN, dtype=torch.float64, requires_grad=True)
        output = module(x, (zeros, zeros.clone()))[0]
    else:
        output = module(x)[0]
    return list(torch.autograd.grad(_loss(output), params))


@pytest.mark.parametrize("kind", list(FUSED))
@pytest.mark.parametrize("layers", [1, 2])
def test_per_step_terms_sum_to_the_autograd_weight_gradient(kind, layers):
    module, x = _module(kind, layers), _x()
    terms = recurrent_weight_terms(module, x, loss_fn=_loss)
    expected = _autograd_weight_hh(kind, module, x)
    blocks = CELLS[kind].blocks
    for k in range(layers):
        assert list(terms[k]) == list(blocks)
        assert terms[k][blocks[0]].shape == (BATCH, TIME, HIDDEN, HIDDEN)
        summed = torch.cat([terms[k][name].sum(dim=(0, 1)) for name in blocks])   # (blocks*hidden, hidden)
        np.testing.assert_allclose(summed.numpy(), expected[k].numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", list(FUSED))
def test_the_share_is_each_terms_norm_over_their_sum_and_rows_sum_to_one(kind):
    module, x = _module(kind, 2), _x()
    tr = trace(module, x, loss_fn=_loss)
    terms = recurrent_weight_terms(module, x, loss_fn=_loss)
    for layer, layer_terms in zip(tr.layers, terms):
        assert set(layer.weight_grad_share) == set(CELLS[kind].blocks)
        for name, share in layer.weight_grad_share.items():
            norms = torch.linalg.matrix_norm(layer_terms[name]).numpy()          # (batch, time) Frobenius
            np.testing.assert_allclose(share, norms / norms.sum(axis=1, keepdims=True), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(share.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_a_contracting_tanh_rnn_takes_its_learning_from_the_last_few_steps():
    """Recurrent weights of spectral norm 0.1 shrink the gradient tenfold a step back: the
    weight gradient comes almost wholly from the last steps before the loss."""
    torch.manual_seed(0)
    rnn = nn.RNN(2, 16, batch_first=True).double()
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(0.1 / torch.linalg.matrix_norm(rnn.weight_hh_l0, ord=2))
    x = torch.randn(8, 100, 2, dtype=torch.float64)
    share = trace(rnn, x).layers[0].weight_grad_share["W_hh"]                    # (8, 100)
    assert share[:, -5:].sum(axis=1).min() > 0.99


def test_a_loss_that_ignores_the_output_has_no_share_anywhere():
    module = _module("lstm", 1)
    tr = trace(module, _x(), loss_fn=lambda output, _: output.sum() * 0.0)
    for share in tr.layers[0].weight_grad_share.values():
        np.testing.assert_array_equal(share, 0.0)
