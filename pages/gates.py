"""Gates: every gate, c_t and h_t of one sequence as unit × time heatmaps under its input;
picked units as lines; gate saturation per unit; units that are on in a time range; and a
what-if: a gate held constant, the sequence run again (pages/whatif.py)."""
import numpy as np
import streamlit as st

from explorer import analysis, plots
from pages import keys
from pages.charts import chart
from pages.sequence import kept, picked, resolve, weights_note
from pages.whatif import panel

run, choice, run_every = picked()
task = run.trainer.task


@st.fragment(run_every=run_every)
def view() -> None:
    shown = resolve(run, choice)
    if shown is None:
        st.info("No probe recorded yet.")
        return
    tr, b, k, x = shown.trace, shown.sequence, choice.layer, shown.x
    layer = tr.layers[k]
    labels, features = task.time_labels(x), task.feature_names()
    st.caption(f"{weights_note(run, shown.step)}. Rows are units, columns time steps; "
               "the input is drawn on the same time axis on top.")
    with st.container(key="gate_heatmaps"):
        chart(lambda: plots.gate_figure(tr, b, k, x, time_labels=labels, feature_names=features),
              key="gate_heatmaps_plot", shared=shown.shared(run, k))

    hidden = layer.hidden.shape[-1]
    st.subheader("Units over time")
    units = kept(st.multiselect, "Units", tuple(range(hidden)), key="gates_units", default=[0, 1, 2][:hidden],
                 max_selections=12, valid=lambda us: all(u < hidden for u in us))
    if units:
        chart(lambda: plots.unit_lines_figure(tr, b, k, list(units)), key="unit_lines_plot",
              shared=shown.shared(run, k, tuple(units)))

    st.subheader("Saturation")
    saturation = analysis.gate_saturation(layer, tr.cell)
    if saturation:
        st.caption("Each dot is a unit: how often its gate is nearly shut (< 0.1) and nearly open (> 0.9) "
                   f"over {'the probe sequences' if shown.recorded else 'this sequence'} (Karpathy et al. 2015).")
        chart(lambda: plots.saturation_figure(saturation, tr.cell), key="saturation_plot", shared=shown.shared(run, k))
    else:
        st.info("A plain RNN has no gates to saturate.")

    find_units(tr, k, b, x)


def find_units(tr, k: int, b: int, x) -> None:
    """LSTMVis-style (Strobelt et al. 2018): units on inside a time range and off outside it."""
    st.subheader("Find units that are on in a time range")
    layer, T = tr.layers[k], len(x)
    quantities = ("hidden", *(("cell",) if layer.cell is not None else ()), *layer.gates)
    left, middle, right = st.columns([1, 3, 1])
    quantity = kept(left.selectbox, "Quantity", quantities, key="find_quantity", default="hidden")
    values = (layer.gates.get(quantity) if quantity in layer.gates else getattr(layer, quantity))[b]
    # Each quantity opens on a range and threshold that find a unit on this sequence (c_t's
    # values are not in −1..1 like the rest, so each has its own); a choice made is kept. The
    # search sorts the whole trace: made only while there is no choice, not on every refresh.
    range_key, threshold_key = f"find_range_{quantity}", f"find_threshold_{quantity}"

    def fits(r) -> bool:
        return 0 <= r[0] <= r[1] <= T

    chosen = st.session_state.get(range_key, st.session_state.get(keys.KEPT, {}).get(range_key))
    start, stop, threshold = (T // 4, T // 2, 0.5) if chosen is not None and fits(chosen) else \
        analysis.opening_search(values)
    finite = values[np.isfinite(values)]
    low, high = (min(-1.0, float(np.floor(finite.min()))), max(1.0, float(np.ceil(finite.max())))) \
        if finite.size else (-1.0, 1.0)
    start, stop = kept(middle.slider, "Time range (steps)", key=range_key, default=(start, stop),
                       min_value=0, max_value=T, valid=fits)
    threshold = kept(right.number_input, "'On' means above", key=threshold_key, default=threshold,
                     min_value=low, max_value=high, step=0.05, valid=lambda v: low <= v <= high)
    try:
        found = analysis.units_on(values, int(start), int(stop), threshold=threshold)
    except ValueError as error:
        st.warning(str(error))
        return
    if found.empty:
        st.info("No unit is on more often inside this range than outside it. Try another range or threshold.")
        return
    st.dataframe(found.round(3), hide_index=True, width="stretch")
    figure = plots.unit_lines_figure(tr, b, k, found["unit"].head(5).tolist(), quantities=[quantity])
    figure.add_vrect(x0=start - 0.5, x1=stop - 0.5, fillcolor="gold", opacity=0.2, line_width=0)
    chart(figure, key="found_units_plot")


view()
panel(run, choice)
