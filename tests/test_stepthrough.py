"""The step-through numbers: every gate, c_t and h_t of one unit at one step, recomputed from
the module's weights, must be what the trace recorded (the trace itself is checked against
PyTorch's fused modules), and each shown quantity must follow from the shown terms."""
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from explorer import CELLS, trace
from explorer.stepthrough import step_through

SIGMOID = lambda a: 1 / (1 + math.exp(-a))  # noqa: E731


def module(kind: str) -> nn.Module:
    torch.manual_seed(3)
    m = CELLS[kind].build(3, 6, 2, True, 0.0).double()
    with torch.no_grad():                      # biases away from zero, so a misplaced one shows
        for name, p in m.named_parameters():
            if "bias" in name or name.startswith("weight_c"):
                p.uniform_(-0.8, 0.8)
    return m


@pytest.mark.parametrize("kind", list(CELLS))
def test_every_number_is_the_traced_one(kind):
    m = module(kind)
    x = torch.randn(2, 9, 3, dtype=torch.float64)                           # (batch, time, input)
    tr = trace(m, x)
    for b, layer, t, unit in [(0, 0, 0, 0), (1, 0, 4, 5), (0, 1, 8, 2), (1, 1, 1, 3)]:
        s = step_through(m, tr, x[b].numpy(), b, layer, t, unit)
        lt = tr.layers[layer]
        for name, gate in s.gates.items():
            if name != "hidden":
                assert gate.value == pytest.approx(lt.gates[name][b, t, unit], abs=1e-12), name
        if lt.cell is not None:
            assert s.cell_state == pytest.approx(lt.cell[b, t, unit], abs=1e-12)
            assert s.c_previous == (0.0 if t == 0 else pytest.approx(lt.cell[b, t - 1, unit], abs=1e-12))
        assert s.hidden == pytest.approx(lt.hidden[b, t, unit], abs=1e-12) == s.traced_hidden
        assert s.h_previous == (0.0 if t == 0 else pytest.approx(lt.hidden[b, t - 1, unit], abs=1e-12))


@pytest.mark.parametrize("kind", ["lstm", "peephole", "gru", "rnn"])
def test_each_shown_quantity_follows_from_the_shown_terms(kind):
    m = module(kind)
    x = torch.randn(1, 7, 3, dtype=torch.float64)
    s = step_through(m, trace(m, x), x[0].numpy(), 0, 1, 5, 4)
    g = s.gates
    if kind == "gru":
        r, z, n = g["reset"], g["update"], g["candidate"]
        for gate in (r, z):
            assert gate.pre_activation == pytest.approx(gate.input_term + gate.recurrent_term + gate.bias)
            assert gate.value == pytest.approx(SIGMOID(gate.pre_activation))
        assert n.pre_activation == pytest.approx(n.input_term + n.bias + r.value * (n.recurrent_term + n.recurrent_bias))
        assert s.hidden == pytest.approx((1 - z.value) * math.tanh(n.pre_activation) + z.value * s.h_previous)
    elif kind == "rnn":
        h = g["hidden"]
        assert s.hidden == pytest.approx(math.tanh(h.input_term + h.recurrent_term + h.bias))
    else:
        i, f, c, o = g["input"], g["forget"], g["candidate"], g["output"]
        for gate in (i, f, o):
            total = gate.input_term + gate.recurrent_term + gate.bias + gate.peephole_term
            assert gate.pre_activation == pytest.approx(total)
            assert gate.value == pytest.approx(SIGMOID(total))
        assert (kind == "peephole") == (i.peephole_term != 0 and o.peephole_term != 0)
        cell = f.value * s.c_previous + i.value * math.tanh(c.input_term + c.recurrent_term + c.bias)
        assert s.cell_state == pytest.approx(cell)
        assert s.hidden == pytest.approx(o.value * math.tanh(cell))


def test_out_of_range_steps_and_units_are_clear_errors():
    m = module("gru")
    x = torch.randn(1, 4, 3, dtype=torch.float64)
    tr = trace(m, x)
    with pytest.raises(ValueError, match="t must be from 0 to 3"):
        step_through(m, tr, x[0].numpy(), 0, 0, 4, 0)
    with pytest.raises(ValueError, match="unit must be from 0 to 5"):
        step_through(m, tr, x[0].numpy(), 0, 0, 0, 6)


# The printed lines, read back: every "= ..." form of an equation that holds only numbers must
# evaluate to the same value, so what the page prints adds up as printed (4 significant digits).
FUNCTIONS = {"sigma": lambda a: 1 / (1 + math.exp(-a)), "tanh": math.tanh, "relu": lambda a: max(a, 0.0)}


def _evaluate(form: str) -> float | None:
    """A printed form like "\\sigma(0.1 + (-0.2)) " as a number; None where it has symbols."""
    text = re.sub(r"\\mathbf\{([^}]*)\}", r"\1", form)
    text = re.sub(r"\\times10\^\{(-?\d+)\}", r"e\1", text)
    text = (text.replace(r"\mathrm{ReLU}", "relu").replace("\\", "").replace("cdot", "*")
            .replace(",", "").strip())
    if re.search(r"[a-z]\w*_|[xhbcW]_|\bquad\b", text) or not re.search(r"\d", text):
        return None
    return eval(text, {"__builtins__": {}}, FUNCTIONS)  # noqa: S307 - our own printed numbers


@pytest.mark.parametrize("kind", list(CELLS))
def test_printed_equations_hold_with_the_printed_numbers(kind):
    m = module(kind)
    x = torch.randn(1, 7, 3, dtype=torch.float64)
    tr = trace(m, x)
    for layer, t, unit in [(0, 0, 1), (1, 5, 4), (0, 6, 0)]:
        s = step_through(m, tr, x[0].numpy(), 0, layer, t, unit)
        checked = 0
        for line in s.lines:
            values = [v for v in map(_evaluate, line.split(" = ")) if v is not None]
            for value in values[1:]:
                assert value == pytest.approx(values[0], rel=3e-3, abs=3e-3), line
            checked += len(values) > 1
        # every line but the first (h_{t-1}, c_{t-1}) is an equation with its numbers
        assert checked == len(s.lines) - 1, s.lines
        assert f"{s.hidden:.4g}" in s.lines[-1]              # the last line ends at h_t


def test_each_cell_has_a_note_pointing_to_the_tutorial_where_it_differs():
    for name, cell in CELLS.items():
        assert cell.note, name
    for name in ("lstm", "peephole", "gru"):
        assert "docs/TUTORIAL.md" in CELLS[name].note
