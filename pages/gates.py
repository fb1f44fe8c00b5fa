"""Gates: every gate, c_t and h_t of one sequence as unit × time heatmaps under its input;
picked units as lines; gate saturation per unit; units that are on in a time range; and a
what-if: a gate held constant, the sequence run again (pages/whatif.py)."""
import streamlit as st

from explorer import analysis, plots
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
    start, stop = kept(middle.slider, "Time range (steps)", key="find_range", default=(T // 4, T // 2),
                       min_value=0, max_value=T, valid=lambda r: 0 <= r[0] <= r[1] <= T)
    threshold = kept(right.number_input, "'On' means above", key="find_threshold", default=0.5,
                     min_value=-1.0, max_value=1.0, step=0.05)
    values = (layer.gates.get(quantity) if quantity in layer.gates else getattr(layer, quantity))[b]
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
