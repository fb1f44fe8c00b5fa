"""The Gates page's what-if panel: hold a gate at a constant on chosen units and steps, trace the
same sequences again with the same weights, and show both side by side (explorer.whatif)."""
from __future__ import annotations

import json

import streamlit as st

from explorer import analysis, csvsafe, plots
from explorer.cells import CELLS
from explorer.clamp import RANGES, check, describe
from explorer.whatif import VARIANTS, compare
from pages import keys
from pages.charts import chart
from pages.sequence import Choice, kept

UNITS = ("all units", "units I pick", "units that follow the {target}")
# Up to this many layers × steps × units the what-if traces every probe sequence, twice (about a
# second on one core); a larger model traces the chosen sequence alone: the largest the app
# allows (4 × 1,000 × 512) took 43 s for the 8 probe sequences unclamped, 55 s clamped.
WHOLE_PROBE_SET = 50_000


def panel(run, choice: Choice) -> None:
    """Draw the panel; compute the what-if only while its toggle is on."""
    trainer, task = run.trainer, run.trainer.task
    cell = CELLS[trainer.config.cell] if trainer.config.cell in CELLS else None
    st.subheader("What if a gate were held constant?")
    if cell is None or not cell.gates:
        kept_clamp(None)
        st.info("A plain RNN has no gates to hold constant.")
        return
    x, y = choice.built if choice.built is not None else trainer.probe_set
    T, hidden, layers = x.shape[1], trainer.config.hidden, trainer.config.layers
    sequence = 0 if choice.built is not None else choice.sequence
    alone = len(x) > 1 and layers * T * hidden > WHOLE_PROBE_SET
    if alone:
        x, y, sequence = x[sequence:sequence + 1], y[sequence:sequence + 1], 0
    restore_link(cell, layers, hidden, T, choice.layer)
    st.caption("Force a gate to a value of your choosing on some units and steps, and run the same "
               "sequence again with the same weights. The clamped gate is a constant: everything after it "
               "(the cell state, the output, the loss, every gradient) follows.")
    on = kept(st.toggle, "Clamp a gate", key="whatif_on", default=False)
    if not on:
        kept_clamp(None)
        return
    clamp = choose(cell, task, run, x, y, choice.layer, layers, hidden, T)
    if clamp is None:
        kept_clamp(None)
        return
    try:
        result = run.inspect(lambda model: compare(model, task, x, y, clamp))
    except ValueError as error:                       # a clamp the library refuses: say why
        kept_clamp(None)
        st.warning(f"That clamp can't be applied: {error}")
        return
    kept_clamp(result.clamp)
    if alone:
        st.caption("A model this large is traced on the chosen sequence alone, not the whole probe set: "
                   "tracing it twice takes seconds a sequence.")
    show(result, task, y, sequence, choice.layer, clamp_steps(result.clamp), T, len(x))


def choose(cell, task, run, x, y, layer: int, layers: int, hidden: int, T: int) -> dict | None:
    """The panel's widgets; the clamp they describe, for the layer the page shows."""
    left, middle, right = st.columns([1, 1, 2])
    gate = kept(left.selectbox, "Gate", cell.gates, key="whatif_gate", default=cell.gates[1 if len(cell.gates) > 1 else 0],
                format_func=lambda g: plots.quantity_title(cell.name, g))
    lo, hi = RANGES[cell.roles[gate]]
    value = kept(middle.slider, "Held at", key="whatif_value", default=lo, min_value=lo, max_value=hi, step=0.05,
                 valid=lambda v: lo <= v <= hi)
    first, last = kept(right.slider, "Steps clamped (first, last)", key="whatif_steps", default=(0, T - 1),
                       min_value=0, max_value=T - 1, valid=lambda r: 0 <= r[0] <= r[1] < T)   # (T ≥ 2 everywhere)
    target = task.step_target_name
    modes = UNITS[:3 if target else 2]
    labels = {m: m.format(target=target) for m in modes}
    mode_column, units_column = st.columns([2, 3])
    mode = kept(mode_column.radio, "Units", modes, key="whatif_units_mode", default=modes[0],
                format_func=labels.get)
    units = None
    if mode == UNITS[1]:
        units = kept(units_column.multiselect, "Units", tuple(range(hidden)), key="whatif_units", default=[0],
                     valid=lambda us: all(u < hidden for u in us))
        if not units:
            st.info("Pick at least one unit.")
            return None
    elif mode == UNITS[2]:
        most = min(hidden, 16)
        count = kept(units_column.slider, "How many", key="whatif_top", default=min(3, hidden), min_value=1,
                     max_value=most, valid=lambda n: 1 <= n <= most) if most > 1 else 1
        quantity = "cell" if cell.has_cell else "hidden"
        traced = run.trace(x, y)
        units = analysis.most_correlated(getattr(traced.layers[layer], quantity), y.cpu().numpy(), count)
        units_column.caption(f"The {count} unit{'s' * (count > 1)} whose {'c_t' if cell.has_cell else 'h_t'} "
                             f"follows the {target} most closely over these sequences (|Pearson r|): "
                             f"{', '.join(map(str, sorted(units)))}.")
    return {gate: {"value": float(value), "units": units, "steps": (int(first), int(last) + 1),
                   "layers": [layer] if layers > 1 else None}}


def show(result, task, y, sequence: int, layer: int, steps, T: int, count: int) -> None:
    """Both runs of the sequence side by side: output against target, loss, ‖∂L/∂h_t‖."""
    loss = {v: float(result.losses[v][sequence]) for v in VARIANTS}
    a, b, c = st.columns(3)
    a.metric(f"{task.loss_name}, as trained", f"{loss['as trained']:.4g}")
    b.metric(f"{task.loss_name}, clamped", f"{loss['clamped']:.4g}",
             delta=f"{loss['clamped'] - loss['as trained']:+.3g}", delta_color="inverse")
    if result.correct is not None:
        right = {v: float(result.correct[v][sequence].mean()) for v in VARIANTS}
        c.metric("accuracy on this sequence, clamped", f"{right['clamped']:.1%}",
                 delta=f"{right['clamped'] - right['as trained']:+.1%} from {right['as trained']:.1%}")
    if count > 1:
        st.caption(f"Over all {count} probe sequences: {result.summary(task.loss_name)}.")
    quantity, target, outputs = result.series(task, y, sequence)
    left, right_column = st.columns(2)
    with left:
        st.markdown(f"**The output against the target** ({describe(result.clamp)})")
        chart(plots.whatif_output_figure(quantity, target, outputs, steps, T), key="whatif_output_plot")
    with right_column:
        st.markdown(f"**‖∂L/∂h_t‖, layer {layer + 1}**")
        chart(plots.whatif_grad_figure(result.traces, sequence, layer, steps), key="whatif_grad_plot")
    st.download_button("Download the what-if (CSV)", csvsafe.to_csv(result.frame(task, y, sequence, layer)),
                       "what-if.csv", "text/csv", key="whatif_csv", on_click="ignore")


def clamp_steps(clamp: dict) -> tuple[int, int] | None:
    steps = next(iter(clamp.values()))["steps"]
    return tuple(steps) if steps is not None else None


def kept_clamp(clamp: dict | None) -> None:
    """The clamp shown (normal form) where the page's link reads it; None: none shown."""
    store = st.session_state.setdefault(keys.KEPT, {})
    if clamp:
        store[keys.WHATIF_CLAMP] = clamp
    else:
        store.pop(keys.WHATIF_CLAMP, None)


def restore_link(cell, layers: int, hidden: int, T: int, shown_layer: int) -> None:
    """A link's clamp=..., once: set the panel's widgets to it, or say why it does not fit. The
    panel clamps the layer the page shows; a clamp of other or several layers says so."""
    linked = st.session_state.pop(keys.LINKED_CLAMP, None)
    if linked is None:
        return
    try:
        clamp = check(json.loads(linked), cell, layers, hidden, T)
        if clamp is None or len(clamp) != 1:
            raise ValueError("the panel holds one gate at a time")
    except ValueError as error:                       # json's errors are ValueErrors too
        st.warning(f"The link's clamp was left out: {error}")
        return
    (gate, spec), = clamp.items()
    store = st.session_state.setdefault(keys.KEPT, {})
    first, stop = spec["steps"] if spec["steps"] is not None else (0, T)
    values = {"whatif_on": True, "whatif_gate": gate, "whatif_value": spec["value"],
              "whatif_steps": (first, stop - 1), "whatif_units_mode": UNITS[0] if spec["units"] is None else UNITS[1]}
    if spec["units"] is not None:
        values["whatif_units"] = spec["units"]
    for key, value in values.items():
        store[key] = value
        st.session_state.pop(key, None)               # the kept value, not a stale widget's
    if layers > 1 and spec["layers"] != [shown_layer]:
        named = "every layer" if spec["layers"] is None else \
            "layers " + ", ".join(str(k + 1) for k in spec["layers"])
        st.info(f"The link's clamp named {named}; the panel clamps one layer, the one the page shows "
                f"(layer {shown_layer + 1}). Pick another in 'Layer' above.")
