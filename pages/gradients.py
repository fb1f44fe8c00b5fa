"""Gradients: how far back the gradient reaches. ‖∂L/∂h_t‖ (and ‖∂L/∂c_t‖) against t, the
same over training, where the recurrent weights' gradient comes from in time, the input's
connectivity, and the recurrent weights' singular values."""
import streamlit as st

from explorer import analysis, csvsafe, plots
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

    weight_share(shown, k)

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


def weight_share(shown, k: int) -> None:
    """Where the learning comes from in time: each step's share of a W_hh block's gradient."""
    tr, b = shown.trace, shown.sequence
    st.subheader("Where the learning comes from in time")
    shares = tr.layers[k].weight_grad_share
    if not shares:
        st.info("This probe was saved before runs kept the weight gradient's share per step: train on, or "
                "pick a sequence built by hand, to see it.")
        return
    blocks = tuple(shares)
    cell = tr.cell
    block = kept(st.radio, "Block of W_hh", blocks, key="share_block", default=blocks[0], horizontal=True,
                 format_func=lambda name: "W_hh" if name == "W_hh" else plots.quantity_title(cell, name))
    salient = task.salient_steps(shown.x)
    row = shares[block][b]
    last = f"the last 5 steps hold {row[-5:].sum():.1%}"
    said = (f"The steps marked on the axis (t = {', '.join(map(str, salient))}) hold "
            f"{row[list(salient)].sum():.1%} of it; {last}" if salient else last.capitalize())
    st.caption(f"Layer {k + 1}: dL/dW_hh is a sum over steps of δ_t h_{{t−1}}ᵀ (Cashman et al.'s RNNbow). "
               f"Each point is one step's share of that block's sum for this sequence. {said}. A learning "
               "signal that vanishes on its way back in time leaves the early steps orders of magnitude below "
               "the late ones.")
    chart(lambda: plots.weight_share_figure(tr, b, k, [block], salient), key="weight_share_plot",
          shared=shown.shared(run, k, block, "share"))
    if shown.recorded is not None and task.trainable:
        st.caption("The same over training, one row per recorded probe.")
        chart(lambda: plots.weight_share_history_figure(shown.recorded, b, k, block, salient),
              key="weight_share_history_plot", shared=shown.shared(run, k, block, "share history"))
    history = shown.recorded if shown.recorded is not None else [(shown.step, tr)]
    st.download_button("Download the share per step (CSV)",
                       lambda: csvsafe.to_csv(analysis.weight_share_frame(history, b, k)),
                       "weight-gradient-share.csv", "text/csv", key="share_csv", on_click="ignore")


view()
