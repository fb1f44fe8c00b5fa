"""What-if clamps: hold a gate at a constant on chosen units, steps and layers, and trace again.

`trace(module, x, clamp={...})` takes a clamp as users write it:

    {"forget": 0.0}                                       # every unit, step and layer
    {"input": {"value": 0.0, "units": [3, 7], "steps": (0, 20), "layers": [0]}}

`check` validates it against the cell and the sequence and returns its normal form (what a
Trace keeps and a page's link carries); `layer_clamps` turns that into the per-layer masks the
cells' unrolls and backward passes read (cells/base.py: LayerClamp). Plain library: no Streamlit.
"""
from __future__ import annotations

import math
import numbers
from typing import Mapping

import torch

from .cells import Cell, LayerClamp

KEYS = ("value", "units", "steps", "layers")
# The range of each kind of gate (Cell.roles): sigmoid gates 0..1, tanh candidates −1..1.
RANGES = {"gate": (0.0, 1.0), "tanh": (-1.0, 1.0)}


def check(clamp: Mapping | None, cell: Cell, layers: int, hidden: int, time: int) -> dict | None:
    """The clamp in normal form, {gate: {"value", "units", "steps", "layers"}} with lists (None
    meaning all), or None for no clamp (None or empty). ValueError naming the valid choices for
    an unknown gate, an out-of-range unit, step or layer, or a value outside the gate's range."""
    if not clamp:
        return None
    if not isinstance(clamp, Mapping):
        raise ValueError(f"clamp must map gate names to values, got {type(clamp).__name__}")
    if not cell.gates:
        raise ValueError(f"the {cell.title} has no gates to clamp")
    if cell.name == "cifg" and {"input", "forget"} <= set(clamp):
        raise ValueError("the CIFG LSTM's input gate is 1 − its forget gate: clamp one of them, not both")
    normal = {}
    for gate, spec in clamp.items():
        if gate not in cell.gates:
            raise ValueError(f"the {cell.title} has no gate {gate!r}; choose from {', '.join(cell.gates)}")
        if not isinstance(spec, Mapping):
            spec = {"value": spec}
        unknown = set(spec) - set(KEYS)
        if unknown:
            raise ValueError(f"clamp {gate!r}: unknown key {sorted(unknown)[0]!r}; the keys are {', '.join(KEYS)}")
        if "value" not in spec:
            raise ValueError(f"clamp {gate!r} needs a value")
        normal[gate] = {
            "value": _value(gate, spec["value"], cell),
            "units": _indices(gate, "unit", spec.get("units"), hidden),
            "steps": _steps(gate, spec.get("steps"), time),
            "layers": _indices(gate, "layer", spec.get("layers"), layers),
        }
    return normal


def layer_clamps(normal: dict | None, cell: Cell, layers: int, hidden: int, time: int,
                 device=None) -> list[LayerClamp | None]:
    """One LayerClamp per layer (None for a layer nothing clamps), from check()'s normal form.
    The CIFG's input gate is clamped as its forget gate at 1 − value: the coupling holds."""
    found: list[dict] = [{} for _ in range(layers)]
    for gate, spec in (normal or {}).items():
        value = spec["value"]
        if cell.name == "cifg" and gate == "input":
            gate, value = "forget", 1.0 - value
        mask = torch.zeros(time, hidden, dtype=torch.bool, device=device)     # (time, hidden)
        start, stop = spec["steps"] if spec["steps"] is not None else (0, time)
        units = slice(None) if spec["units"] is None else torch.tensor(spec["units"], device=device)
        mask[start:stop, units] = True
        for k in spec["layers"] if spec["layers"] is not None else range(layers):
            found[k][gate] = (value, mask)
    return [LayerClamp(fixed) if fixed else None for fixed in found]


def describe(normal: dict | None) -> str:
    """The clamp in words, e.g. "forget = 0 on units 3, 7 at steps 0–19 in layer 1"."""
    if not normal:
        return "no clamp"
    parts = []
    for gate, spec in normal.items():
        text = f"{gate} = {spec['value']:g}"
        if spec["units"] is not None:
            units = spec["units"]
            text += f" on unit{'s' * (len(units) > 1)} {', '.join(map(str, units))}"
        if spec["steps"] is not None:
            start, stop = spec["steps"]
            text += f" at step {start}" if stop == start + 1 else f" at steps {start}–{stop - 1}"
        if spec["layers"] is not None:
            layers = spec["layers"]
            text += f" in layer{'s' * (len(layers) > 1)} {', '.join(str(k + 1) for k in layers)}"
        parts.append(text)
    return "; ".join(parts)


def _value(gate: str, value, cell: Cell) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"clamp {gate!r}: the value must be a finite number, got {value!r}")
    lo, hi = RANGES[cell.roles[gate]]
    if not lo <= value <= hi:
        raise ValueError(f"clamp {gate!r}: {value:g} is outside the gate's range [{lo:g}, {hi:g}]")
    return float(value)


def _indices(gate: str, what: str, chosen, count: int) -> list[int] | None:
    """Units or layers: None (all) or a sorted list of valid indices."""
    if chosen is None:
        return None
    try:
        items = list(chosen)
    except TypeError:
        raise ValueError(f"clamp {gate!r}: {what}s must be a list of indices or None, got {chosen!r}") from None
    if not items:
        raise ValueError(f"clamp {gate!r}: no {what}s chosen; None means all of them")
    valid = f"{what}s run from 0 to {count - 1}"
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise ValueError(f"clamp {gate!r}: {what} {item!r} is not an index; {valid}")
        if not 0 <= item < count:
            raise ValueError(f"clamp {gate!r}: {what} {item} is out of range; {valid}")
    return sorted({int(item) for item in items})


def _steps(gate: str, steps, time: int) -> list[int] | None:
    """Steps: None (all) or [start, stop), half-open on the batch-first time axis."""
    if steps is None:
        return None
    try:
        start, stop = steps
    except (TypeError, ValueError):
        raise ValueError(f"clamp {gate!r}: steps must be (start, stop) or None, got {steps!r}") from None
    if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in (start, stop)):
        raise ValueError(f"clamp {gate!r}: steps must be whole numbers, got {steps!r}")
    if not 0 <= start < stop <= time:
        raise ValueError(f"clamp {gate!r}: steps ({start}, {stop}) are out of range; a range "
                         f"[start, stop) with 0 ≤ start < stop ≤ {time} (the sequence has {time} steps)")
    return [int(start), int(stop)]
