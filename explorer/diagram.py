"""The cell drawn as the classic diagram: where each gate, state and product sits, how they
connect, and the real values of one unit (or the mean over units) at one step of a trace.

plots.cell_diagram_figure draws it; the Step through page shows it beside the equations.
Coordinates are in a 12 × 7 box, the cell-state (or hidden-state) line along the top.
Plain library: no Streamlit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .trace import Trace

LSTMS = ("lstm", "peephole", "cifg")


@dataclass(frozen=True)
class Node:
    name: str                 # the quantity it shows: a gate ("forget"), a state ("c_prev"), a product
    label: str                # what is written on it: "f_t", "c_{t−1}"
    x: float
    y: float
    kind: str                 # "gate" (σ, 0..1), "tanh" (−1..1), "state", "op" (a product, a sum)
    text_at: str = "middle center"   # where its label and number sit (an op's beside its small circle)


@dataclass(frozen=True)
class Layout:
    nodes: tuple[Node, ...]
    arrows: tuple[tuple[str, str, bool], ...]      # (from node, to node, dashed)
    # The nodes the inputs (h_{t−1}, x_t) feed, through one bus along the bottom rather than
    # an arrow from each input to each gate; and the input nodes that feed the bus.
    fed: tuple[str, ...] = ()
    feeding: tuple[str, ...] = ()


BUS_Y = 0.9                   # the bus's height
MAX_CHARS = 8                 # the longest number compact() writes: it must fit inside a node
MINUS = "−"                   # a true minus sign, as wide as a digit's box, not a hyphen


def compact(value: float) -> str:
    """A node's number in at most MAX_CHARS characters: 3 significant digits (−0.123, 12.3),
    a power of ten outside 0.01..1000 (1.23e−8, −1.23e5), fewer digits where the exponent is
    long (−1.2e−45), and nan and ∞ as themselves."""
    value = float(value)
    if np.isnan(value):
        return "nan"
    if np.isinf(value):
        return ("" if value > 0 else MINUS) + "∞"
    if value == 0:
        return "0"                                                          # −0.0 too
    plain = f"{value:.3g}"
    if 0.01 <= abs(value) < 1000 and "e" not in plain:       # 999.7 rounds to 1e+03
        return plain.replace("-", MINUS)
    exponent = int(f"{value:e}".split("e")[1])
    # The mantissa gives up a digit for each digit of the exponent past the first.
    digits = 3 - (len(str(abs(exponent))) - 1)
    mantissa, exponent = f"{value:.{max(digits, 1) - 1}e}".split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    if not np.isfinite(float(f"{mantissa}e{int(exponent)}")):
        # Rounded up past the largest float (1.5e308 -> 2e308 = ∞): round down instead.
        exponent = int(f"{value:e}".split("e")[1])
        mantissa = f"{int(abs(value) // 10.0 ** exponent) * (1 if value > 0 else -1)}"
    return f"{mantissa}e{int(exponent)}".replace("-", MINUS)


def layout(cell: str) -> Layout:
    """Where every node of the cell's diagram sits, and the arrows between them."""
    if cell in LSTMS:
        return _lstm(cell)
    if cell == "gru":
        return _gru()
    return _rnn("ReLU" if cell == "rnn-relu" else "tanh")


def _lstm(cell: str) -> Layout:
    input_label = "i<sub>t</sub> = 1 − f<sub>t</sub>" if cell == "cifg" else "i<sub>t</sub>"
    nodes = (
        Node("c_prev", "c<sub>t−1</sub>", 0.7, 6.0, "state"), Node("h_prev", "h<sub>t−1</sub>", 0.7, 2.2, "state"),
        Node("x", "x<sub>t</sub>", 0.7, 0.4, "state"),
        Node("forget", "f<sub>t</sub>", 3.0, 2.6, "gate"), Node("input", input_label, 5.0, 2.6, "gate"),
        Node("candidate", "g<sub>t</sub>", 6.8, 2.6, "tanh"), Node("output", "o<sub>t</sub>", 8.8, 2.6, "gate"),
        Node("kept", "f<sub>t</sub> c<sub>t−1</sub>", 3.0, 6.0, "op", "top center"),
        Node("written", "i<sub>t</sub> g<sub>t</sub>", 6.8, 4.4, "op", "middle left"),
        Node("sum", "+", 6.8, 6.0, "op", "top center"), Node("cell", "c<sub>t</sub>", 11.3, 6.0, "state"),
        Node("tanh_cell", "tanh c<sub>t</sub>", 10.2, 4.5, "tanh"),
        Node("shown", "o<sub>t</sub> tanh c<sub>t</sub>", 10.2, 2.6, "op", "bottom center"),
        Node("hidden", "h<sub>t</sub>", 11.3, 1.2, "state"),
    )
    arrows = [("c_prev", "kept", False), ("forget", "kept", False), ("kept", "sum", False),
              ("input", "written", False), ("candidate", "written", False), ("written", "sum", False),
              ("sum", "cell", False), ("cell", "tanh_cell", False), ("tanh_cell", "shown", False),
              ("output", "shown", False), ("shown", "hidden", False)]
    fed = ("forget", "candidate", "output", *(() if cell == "cifg" else ("input",)))
    if cell == "cifg":
        arrows.append(("forget", "input", False))
    if cell == "peephole":                          # c_{t−1} looks into i and f, c_t into o
        arrows += [("c_prev", "forget", True), ("c_prev", "input", True), ("cell", "output", True)]
    return Layout(nodes, tuple(arrows), fed, ("h_prev", "x"))


def _gru() -> Layout:
    nodes = (
        Node("h_prev", "h<sub>t−1</sub>", 0.7, 6.0, "state"), Node("h_prev_in", "h<sub>t−1</sub>", 0.7, 2.2, "state"),
        Node("x", "x<sub>t</sub>", 0.7, 0.4, "state"),
        # z first, then r beside the candidate it multiplies: no arrow crosses a gate.
        Node("update", "z<sub>t</sub>", 3.0, 2.6, "gate"), Node("reset", "r<sub>t</sub>", 5.5, 2.6, "gate"),
        Node("candidate", "n<sub>t</sub>", 8.0, 2.6, "tanh"),
        Node("kept", "z<sub>t</sub> h<sub>t−1</sub>", 3.0, 6.0, "op", "top center"),
        Node("one_minus", "1 − z<sub>t</sub>", 4.6, 4.3, "op", "middle left"),
        Node("written", "(1 − z<sub>t</sub>) n<sub>t</sub>", 8.0, 4.6, "op", "middle right"),
        Node("sum", "+", 8.0, 6.0, "op", "top center"), Node("hidden", "h<sub>t</sub>", 11.3, 6.0, "state"),
    )
    arrows = (("h_prev", "kept", False), ("update", "kept", False), ("kept", "sum", False),
              ("update", "one_minus", False), ("one_minus", "written", False), ("candidate", "written", False),
              ("written", "sum", False), ("sum", "hidden", False), ("reset", "candidate", False))
    return Layout(nodes, arrows, ("update", "reset", "candidate"), ("h_prev_in", "x"))


def _rnn(phi: str) -> Layout:
    # One box: h_t = φ(W_ih x_t + W_hh h_{t−1} + b), nothing deciding what to keep.
    nodes = (Node("h_prev", "h<sub>t−1</sub>", 0.7, 4.6, "state"), Node("x", "x<sub>t</sub>", 0.7, 1.4, "state"),
             Node("hidden_gate", phi, 6.0, 3.0, "tanh"), Node("hidden", "h<sub>t</sub>", 11.3, 3.0, "state"))
    arrows = (("h_prev", "hidden_gate", False), ("x", "hidden_gate", False), ("hidden_gate", "hidden", False))
    return Layout(nodes, arrows)


def values(trace: Trace, sequence: int, layer: int, t: int, unit: int | None) -> dict[str, float]:
    """The number on every node of the diagram at step t: unit `unit`'s, or (None) the mean
    over units of each quantity (a product's mean being the mean of the units' products).
    h_{t−1} and c_{t−1} are 0 at t = 0, as the trace starts from zero states."""
    lt = trace.layers[layer]
    H = lt.hidden.shape[-1]
    zero = np.zeros((1, 1, H), lt.hidden.dtype)

    def at(array: np.ndarray, step: int) -> np.ndarray:
        return array[sequence:sequence + 1, step:step + 1] if step >= 0 else zero   # (1, 1, hidden)

    def number(array: np.ndarray) -> float:
        return float(array[0, 0, unit]) if unit is not None else float(array[0, 0].mean())

    h_prev = at(lt.hidden, t - 1)
    out = {"h_prev": number(h_prev), "hidden": number(at(lt.hidden, t))}
    if trace.cell in LSTMS:
        c_prev, c = at(lt.cell, t - 1), at(lt.cell, t)
        f, i, g, o = (at(lt.gates[n], t) for n in ("forget", "input", "candidate", "output"))
        out.update(c_prev=number(c_prev), cell=number(c), forget=number(f), input=number(i), candidate=number(g),
                   output=number(o), kept=number(f * c_prev), written=number(i * g),
                   tanh_cell=number(np.tanh(c)), shown=number(o * np.tanh(c)))
    elif trace.cell == "gru":
        r, z, n = (at(lt.gates[name], t) for name in ("reset", "update", "candidate"))
        out.update(h_prev_in=out["h_prev"], reset=number(r), update=number(z), candidate=number(n),
                   kept=number(z * h_prev), one_minus=number(1 - z), written=number((1 - z) * n))
    else:
        out["hidden_gate"] = out["hidden"]
    return out


def frame(trace: Trace, sequence: int, layer: int, unit: int | None) -> pd.DataFrame:
    """Every number the diagram shows at every step, for download: a row per step t."""
    T = trace.layers[layer].hidden.shape[1]
    return pd.DataFrame([{"t": t, **values(trace, sequence, layer, t, unit)} for t in range(T)])
