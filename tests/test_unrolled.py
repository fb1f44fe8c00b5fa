"""The cells with no fused kernel (peephole, CIFG) train through their hand-written backward
(cells/base.py: _HandWritten). Its gradients, checked against autograd through the same
equations step by step, and against finite differences (gradcheck), in float64."""
import gc
import weakref

import pytest
import torch

from explorer.cells.cifg import CIFGLSTM
from explorer.cells.peephole import PeepholeLSTM


def _loss(module, x, hx=None):
    out, (h_n, c_n) = module(x, hx)
    # Every output the module gives reaches the loss: the sequence, h_T and c_T.
    return (out ** 2).sum() + (0.3 * c_n).sum() + h_n.sum()


def _through_autograd(module, *args):
    """The reference: autograd through the unroll's own step-by-step graph."""
    original = vars(type(module))["backprop"]          # (the staticmethod itself, to put back)
    type(module).backprop = None
    try:
        return _loss(module, *args)
    finally:
        type(module).backprop = original


@pytest.mark.parametrize("cls", [PeepholeLSTM, CIFGLSTM])
@pytest.mark.parametrize("layers, batch_first", [(1, True), (2, True), (2, False)])
def test_hand_written_gradients_equal_autograd_through_the_unroll(cls, layers, batch_first):
    torch.manual_seed(3)
    module = cls(3, 6, layers, batch_first=batch_first).double()
    x = torch.randn(4, 9, 3, dtype=torch.float64, requires_grad=True)     # (batch, time, input)
    x_in = x if batch_first else x.transpose(0, 1)
    inputs = [x, *module.parameters()]
    ours = torch.autograd.grad(_loss(module, x_in), inputs)
    reference = torch.autograd.grad(_through_autograd(module, x_in), inputs)
    names = ["x"] + [n for n, _ in module.named_parameters()]
    assert any(n.startswith("weight_c") for n in names) == (cls is PeepholeLSTM)
    for name, a, b in zip(names, ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("cls", [PeepholeLSTM, CIFGLSTM])
def test_hand_written_backward_passes_gradcheck(cls):
    torch.manual_seed(4)
    module = cls(2, 3, 2, batch_first=True).double()
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in module.named_parameters()]

    def f(x, *weights):          # the module run with gradcheck's own copies of its weights
        return torch.func.functional_call(module, dict(zip(names, weights)), (x,))[0]
    assert torch.autograd.gradcheck(f, (x, *[p.detach().clone().requires_grad_() for p in module.parameters()]))


def test_an_initial_state_that_wants_a_gradient_gets_it_through_autograd():
    torch.manual_seed(5)
    module = PeepholeLSTM(2, 4, batch_first=True).double()
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    h0 = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    ours = torch.autograd.grad(_loss(module, x, (h0, c0)), [h0, c0, *module.parameters()])
    reference = torch.autograd.grad(_through_autograd(module, x, (h0, c0)), [h0, c0, *module.parameters()])
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "peephole"])
@pytest.mark.parametrize("bias", [True, False])
def test_the_unrolls_without_autograd_equal_the_step_by_step_equations(cell, bias):
    """With no autograd the LSTM's unroll takes h_t from the fused kernel and every gate at once,
    and the peephole's writes into time-major buffers: both against the step-by-step unroll
    (what autograd records), layer on layer, in float64."""
    from explorer.cells import CELLS, layer_weights
    torch.manual_seed(5)
    module = (PeepholeLSTM if cell == "peephole" else torch.nn.LSTM)(3, 6, 2, bias=bias, batch_first=True).double()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.6)                                     # saturating gates, large peepholes
    x = torch.randn(4, 11, 3, dtype=torch.float64)
    h0, c0 = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    fast_input, slow_input = x, x
    for k in range(2):
        w = layer_weights(module, k)
        with torch.no_grad():
            fast = CELLS[cell].unroll(fast_input, w, h0, c0, True).stack()
        with torch.enable_grad():
            slow = CELLS[cell].unroll(slow_input, w, h0, c0, True).stack()
        for name in ("input", "forget", "candidate", "output"):
            torch.testing.assert_close(fast.gates[name], slow.gates[name].detach(), rtol=1e-12, atol=1e-12, msg=name)
        torch.testing.assert_close(fast.cell, slow.cell.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(fast.hidden, slow.hidden.detach(), rtol=1e-12, atol=1e-12)
        fast_input, slow_input = fast.hidden, slow.hidden.detach()   # (the peephole's: a strided view)
    if cell == "lstm":                                            # and the fused module's own output
        state = (h0.expand(2, -1, -1).contiguous(), c0.expand(2, -1, -1).contiguous())   # h0, c0 in both layers
        torch.testing.assert_close(fast.hidden, module(x, state)[0].detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [PeepholeLSTM, CIFGLSTM])
def test_a_training_step_frees_its_activations_without_the_cycle_collector(cls):
    # The hand-written Function once kept its own output on ctx: a reference cycle that only
    # gc frees, and it seldom ran, so a run grew by a step's activations every step.
    torch.manual_seed(6)
    module = cls(3, 8, 2, batch_first=True)
    gc.disable()
    try:
        output, (h_n, c_n) = module(torch.randn(4, 9, 3))
        freed = weakref.ref(output)
        (output.sum() + h_n.sum() + c_n.sum()).backward()
        del output, h_n, c_n
        assert freed() is None
    finally:
        gc.enable()
