"""Gradients: how far back the gradient reaches. ‖∂L/∂h_t‖ (and ‖∂L/∂c_t‖) against t, the
same over training, the input's connectivity, and the recurrent weights' singular values."""
import streamlit as st

from explorer import analysis, plots
from explorer.follow import Followed
from pages.charts import chart
from pages.sequence import kept, picked, resolve, weights_note

run, choice, run_every = picked()
task = run.trainer.task


@st.fragment(run_every=run_every)
def view() -> None:
    shown = resolve(run, choice)
    if shown is None:
        st.info("No probe recorded yet.")
        return
    tr, b, k = shown.trace, shown.sequence, choice.layer
    st.subheader("Gradient norm at every time step")
    loss = "the task's" if task.trainable else task.loss_name
    st.caption(f"{weights_note(run, shown.step)}. The loss is {loss}, on this sequence; "
               "a line that falls towards t = 0 is a gradient vanishing on its way back in time.")
    with st.container(key="grad_time"):
        chart(lambda: plots.grad_time_figure(tr, b), key="grad_time_plot", shared=shown.shared(run))

    if task.trainable:                  # (your model was not trained here: it has no history)
        st.subheader("Over training")
        if shown.recorded is None:
            st.info("Recorded at every probe for the probe sequences only; pick one to see this.")
        else:
            quantities = ("grad_hidden", "grad_cell") if tr.layers[k].grad_cell is not None else ("grad_hidden",)
            quantity = kept(st.radio, "Quantity", quantities, key="grad_quantity", default="grad_hidden",
                            horizontal=True, format_func={"grad_hidden": "‖∂L/∂h_t‖", "grad_cell": "‖∂L/∂c_t‖"}.get)
            st.caption(f"Layer {k + 1}, one row per recorded probe: as the model learns, the gradient "
                       "should reach further back (or not).")
            chart(lambda: plots.grad_history_figure(shown.recorded, b, k, quantity), key="grad_history_plot",
                  shared=shown.shared(run, k, quantity))

    st.subheader("Input connectivity ‖∂L/∂x_t‖")
    st.caption("How much each input step moves the loss (Distill, 'Memorization in RNNs').")
    chart(lambda: plots.input_grad_figure(tr, b, shown.x, time_labels=task.time_labels(shown.x),
                                          feature_names=task.feature_names()),
          key="input_grad_plot", shared=shown.shared(run))

    st.subheader("Singular values of the recurrent weights")
    st.caption("Now, per layer and gate block of W_hh. Pascanu et al. (2013): when the largest singular "
               "value is below 1/γ (γ bounds the activation's slope), the gradient must vanish over long "
               "spans. Exact for a plain RNN; for gated cells a guide per block.")
    # The owner's are of the weights now; a follower's, of the copy at the newest probe (shared).
    weights_step = run.trainer.steps_done if isinstance(run, Followed) else None
    chart(lambda: plots.singular_values_figure(run.inspect(lambda model: analysis.recurrent_spectra(model.rnn))),
          key="spectra_plot", shared=(run.id, run.trainer.config, weights_step) if weights_step is not None and run.id else None)


view()
