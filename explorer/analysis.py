"""Analyses the Gates and Gradients pages show: gate saturation, units "on" in a time range,
units that follow a per-step target, and the recurrent weights' singular values against the
vanishing-gradient bound."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from .cells import CELLS, cell_of, layer_weights
from .trace import LayerTrace, Trace

# 1/γ, where γ bounds the derivative of the block's activation: σ' ≤ 1/4, tanh' ≤ 1, relu' ≤ 1.
SIGMOID_BOUND, TANH_BOUND, RELU_BOUND = 4.0, 1.0, 1.0
BOUND = {"gate": SIGMOID_BOUND, "tanh": TANH_BOUND, "relu": RELU_BOUND}


def saturation(values: np.ndarray, low: float = 0.1, high: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, the fraction of all (sequence, step) entries below `low` and above `high`.

    values (batch, time, hidden) of one gate. Karpathy, Johnson & Fei-Fei (2015) call a gate
    left-saturated below 0.1 and right-saturated above 0.9; a forget gate right-saturated
    most of the time is a unit that remembers. Returns two (hidden,) float64 arrays.
    """
    values = np.asarray(values)
    if values.ndim != 3:
        raise ValueError(f"values must be (batch, time, hidden), got shape {values.shape}")
    if not low < high:
        raise ValueError(f"low must be below high, got low={low} and high={high}")
    left = (values < low).mean(axis=(0, 1), dtype=np.float64)    # (hidden,)
    right = (values > high).mean(axis=(0, 1), dtype=np.float64)  # (hidden,)
    return left, right


def gate_saturation(layer_trace: LayerTrace, cell: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """saturation() of each sigmoid gate of one traced layer: gate name -> (left, right).

    `cell` is the trace's cell name (Trace.cell). The candidate is left out: it is a tanh in
    (-1, 1), not a gate in [0, 1], so "below 0.1" would not mean "closed" for it.
    """
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(CELLS)}")
    spec = CELLS[cell]
    return {name: saturation(layer_trace.gates[name]) for name in spec.gates if spec.roles[name] == "gate"}


def units_on(values: np.ndarray, start: int, stop: int, threshold: float = 0.5,
             top: int = 10) -> pd.DataFrame:
    """The units most specifically "on" in steps [start, stop) of one sequence (LSTMVis).

    values (time, hidden), e.g. h_t or one gate of one sequence. A unit is on at a step when
    its value exceeds `threshold`. As in Strobelt et al. (2018), a unit scores by how much
    more often it is on inside the range than outside it: a unit that is always on matches
    every range and tells nothing. When the range covers the whole sequence the score is
    the inside fraction alone, and the outside columns are NaN.

    Returns at most `top` rows with score > 0, best first, columns unit, score, on_inside,
    on_outside, mean_inside, mean_outside.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must be (time, hidden) for one sequence, got shape {values.shape}")
    steps = values.shape[0]
    if not 0 <= start < stop <= steps:
        raise ValueError(f"the time range [{start}, {stop}) must hold at least one step and lie "
                         f"within the sequence's steps 0..{steps - 1}")
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    inside = np.zeros(steps, dtype=bool)
    inside[start:stop] = True
    on = values > threshold                                       # (time, hidden)
    on_inside = on[inside].mean(axis=0, dtype=np.float64)        # (hidden,)
    mean_inside = values[inside].mean(axis=0, dtype=np.float64)  # (hidden,)
    if inside.all():
        on_outside = mean_outside = np.full(values.shape[1], np.nan)
        score = on_inside
    else:
        on_outside = on[~inside].mean(axis=0, dtype=np.float64)
        mean_outside = values[~inside].mean(axis=0, dtype=np.float64)
        score = on_inside - on_outside
    table = pd.DataFrame({"unit": np.arange(values.shape[1]), "score": score,
                          "on_inside": on_inside, "on_outside": on_outside,
                          "mean_inside": mean_inside, "mean_outside": mean_outside})
    table = table[table["score"] > 0].sort_values("score", ascending=False, kind="stable")
    return table.head(top).reset_index(drop=True)


def opening_search(values: np.ndarray) -> tuple[int, int, float]:
    """A time range [start, stop) and threshold for units_on that find a unit on this sequence:
    where "Find units" opens, rather than on an empty answer.

    values (time, hidden). The first of these ranges where some unit can be more often on
    inside than outside: the second quarter of the sequence, the others, then the whole of it
    (where any unit above the threshold counts). Its threshold is the one that best separates
    the best unit's values inside the range from those outside (a little below its strongest
    activations inside), rounded to as few decimals as keep the same steps on. Values all the
    same: the second quarter and 0.5, where nothing is on.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be (time, hidden) for one sequence, got shape {values.shape}")
    T = values.shape[0]
    quarters = [(k * T // 4, (k + 1) * T // 4) for k in (1, 0, 2, 3)]
    for start, stop in [*(r for r in quarters if r[0] < r[1] and r != (0, T)), (0, T)]:
        found = _best_threshold(values, start, stop)
        if found is not None:
            return start, stop, found
    return T // 4, max(T // 2, T // 4 + 1), 0.5


def _best_threshold(values: np.ndarray, start: int, stop: int) -> float | None:
    """The threshold with the best units_on score of any unit for [start, stop), or None when
    no threshold puts a unit on more often inside than outside."""
    T = len(values)
    inside = np.zeros(T, dtype=bool)
    inside[start:stop] = True
    # NaN is never on, as −∞ is never on: ranking it as −∞ lets a threshold split a unit's
    # finite values from its NaN steps too.
    ranks = np.where(np.isnan(values), -np.inf, values)                 # (time, hidden)
    order = np.argsort(-ranks, axis=0, kind="stable")                   # (time, hidden): highest first
    ranked = np.take_along_axis(ranks, order, axis=0)                   # (time, hidden)
    # A threshold just below the k-th highest value puts exactly the top k on, where that value
    # is above the next: the score of each such k from cumulative counts inside and outside.
    on_in = np.cumsum(inside[order], axis=0) / (stop - start)           # (time, hidden)
    outside = T - (stop - start)
    on_out = np.cumsum(~inside[order], axis=0) / outside if outside else np.zeros_like(on_in)
    score = on_in - on_out
    separable = np.zeros_like(score, dtype=bool)
    separable[:-1] = ranked[:-1] > ranked[1:]
    score = np.where(separable, score, -np.inf)
    k, unit = np.unravel_index(np.argmax(score), score.shape)
    if not score[k, unit] > 0:
        return None
    above, below = float(ranked[k, unit]), float(ranked[k + 1, unit])
    if np.isfinite(above) and np.isfinite(below):
        middle = (above + below) / 2
    elif np.isfinite(below):                 # above is +∞
        middle = below + 1.0
    else:                                    # below is −∞ (or NaN): any number under above
        middle = above - 1.0 if np.isfinite(above) else 0.0
    for decimals in (1, 2, 3, 4, 6):
        threshold = round(middle, decimals)
        if below < threshold < above:
            return threshold
    if below < middle < above:
        return middle
    # Neighbours too close for a midpoint (denormals): a value is on when it *exceeds* the
    # threshold, so `below` itself puts exactly the top k on.
    return below if np.isfinite(below) else float(np.nextafter(above, -np.inf))


def target_correlations(values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson r of each unit's value with a per-step target (the bracket depth, say), over
    every (sequence, step): values (batch, time, hidden), target (batch, time) -> (hidden,).
    A unit that never changes correlates with nothing: 0."""
    values = np.asarray(values, dtype=np.float64).reshape(-1, np.shape(values)[-1])   # (batch·time, hidden)
    target = np.asarray(target, dtype=np.float64).reshape(-1)                         # (batch·time,)
    if len(target) != len(values):
        raise ValueError(f"the target has {len(target)} steps in all, the values {len(values)}")
    centred, d = values - values.mean(axis=0), target - target.mean()
    spread = np.sqrt((centred ** 2).sum(axis=0) * (d ** 2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = centred.T @ d / spread
    return np.nan_to_num(r)


def most_correlated(values: np.ndarray, target: np.ndarray, count: int) -> list[int]:
    """The `count` units whose value follows the target most closely (largest |r|), best first."""
    r = target_correlations(values, target)
    return [int(u) for u in np.argsort(-np.abs(r), kind="stable")[:count]]


def weight_share_frame(traces: list[tuple[int, Trace]], sequence: int, layer: int) -> pd.DataFrame:
    """One sequence's weight-gradient share over training, for download: a row per recorded
    step and time step, a column per block (LayerTrace.weight_grad_share)."""
    frames = []
    for step, tr in traces:
        share = tr.layers[layer].weight_grad_share
        if share:
            T = next(iter(share.values())).shape[1]
            frames.append(pd.DataFrame({"step": step, "t": np.arange(T),
                                        **{block: values[sequence] for block, values in share.items()}}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["step", "t"])


def salient_share(share: np.ndarray, salient: list[dict[int, str]]) -> np.ndarray:
    """Each sequence's weight-gradient share (batch, time) summed over its own salient steps
    (Task.salient_steps, one dict per sequence): (batch,)."""
    return np.array([share[b, list(steps)].sum() if steps else 0.0 for b, steps in enumerate(salient)])


def recurrent_spectra(module: nn.Module) -> list[dict]:
    """Singular values of each layer's recurrent matrix W_hh, one gate block at a time.

    For every layer k and block of W_hh in the module's order (the cell's `blocks`, e.g. LSTM:
    input, forget, candidate, output; GRU: reset, update, candidate; RNN: the whole "W_hh"), a dict
    {"layer": k, "block": name, "values": descending float64 array, "bound": 1/γ}, where γ
    bounds the derivative of the block's activation (sigmoid 1/4, tanh and relu 1).

    Pascanu, Mikolov & Bengio (2013): if the largest singular value is below 1/γ, the
    gradient vanishes over time. It is a sufficient condition, exact for the plain RNN,
    whose step Jacobian is diag(φ') W_hh. In a gated cell the step Jacobian mixes several
    blocks with the gate values (and the LSTM's cell path bypasses W_hh), so per block the
    comparison is only indicative.
    """
    cell = cell_of(module)
    spectra = []
    for k in range(module.num_layers):
        weight_hh = layer_weights(module, k).weight_hh.detach().cpu().double()  # (blocks*hidden, hidden)
        for name, block in zip(cell.blocks, weight_hh.split(module.hidden_size)):   # each (hidden, hidden)
            spectra.append({"layer": k, "block": name, "values": torch.linalg.svdvals(block).numpy(),
                            "bound": BOUND[cell.roles[name]]})
    return spectra
