"""Step through: the chosen cell's equations with the real numbers of one unit at one time
step of the chosen sequence, traced with the weights as they are now; and the cell drawn as
the classic diagram with the same numbers; ▶ Play moves both along time on one clock."""
import streamlit as st

from explorer import csvsafe, diagram, plots
from explorer.stepthrough import step_through
from pages import keys
from pages.charts import chart
from pages.session import current_run
from pages.sidebar import applied_config
from pages.sequence import choose, kept, weights_note

run = current_run(applied_config())
if run is None:
    st.stop()
task, trainer = run.trainer.task, run.trainer
choice = choose(run, replay=False)

if choice.built is not None:
    x, y = choice.built
else:
    probe_x, probe_y = trainer.probe_set
    x, y = probe_x[choice.sequence:choice.sequence + 1], probe_y[choice.sequence:choice.sequence + 1]
T, H = x.shape[1], trainer.config.hidden


# ▶ Play steps the page's own t on a timer (the view below is a fragment that reruns itself),
# so the slider, the diagram and the equations always show one step. Plotly's frames played in
# the browser, which never told the page: the equations stayed at their step.
PLAYING = "step_playing"
PLAY_EVERY = 0.8               # seconds per step: time to read what changed
# A step or unit picked by hand: the view reruns the whole page, which writes it into the link.
MOVED = "step_moved"


def _move(by: int) -> None:
    # kept() below takes the widget's own value first, so setting it is enough. A step by
    # hand pauses the clock, which would otherwise take the next step on its own.
    st.session_state[keys.STEP_T] = min(max(st.session_state.get(keys.STEP_T, 0) + by, 0), T - 1)
    st.session_state[PLAYING] = False
    _moved()


def _moved() -> None:
    st.session_state[MOVED] = True


def _play() -> None:
    st.session_state[PLAYING] = not st.session_state.get(PLAYING, False)


def _tick() -> None:
    """The clock's step: t + 1; from 0 again when Play was pressed at the end; stop at the last step."""
    t = st.session_state.get(keys.STEP_T, 0)
    t = t + 1 if isinstance(t, int) and 0 <= t < T - 1 else 0
    st.session_state[keys.STEP_T] = t
    if t == T - 1:
        st.session_state[PLAYING] = False


playing = bool(st.session_state.get(PLAYING, False))


@st.fragment(run_every=PLAY_EVERY if playing else None)
def worked() -> None:
    """The step picker, the diagram and the equations: one t, moved by the clock while it plays."""
    if st.session_state.get(PLAYING, False) != playing:
        st.rerun()             # Play, Pause or the last step: the page starts or stops the timer
    if st.session_state.pop(MOVED, False):
        st.rerun()             # the link (app.py writes it after a whole run) holds the new t and unit
    if playing:
        _tick()
    back, slider, forward, play, pick = st.columns([0.5, 6, 0.5, 1.3, 2], vertical_alignment="bottom")
    back.button("◀", on_click=_move, args=(-1,), help="One time step back", key="step_back")
    forward.button("▶", on_click=_move, args=(1,), help="One time step on", key="step_forward")
    play.button("❚❚ Pause" if playing else "▶ Play", on_click=_play, key="step_play", width="stretch",
                help="Step through time, the diagram and the equations together, one step every "
                     f"{PLAY_EVERY:g} s")
    t = kept(slider.slider, "time step t", key=keys.STEP_T, default=0, min_value=0, max_value=T - 1,
             valid=lambda v: isinstance(v, int) and 0 <= v < T, on_change=_moved)
    unit = kept(pick.number_input, "unit", key=keys.STEP_UNIT, default=0, min_value=0, max_value=H - 1,
                valid=lambda v: isinstance(v, int) and 0 <= v < H, on_change=_moved)

    def traced(model):
        # Traced and read under one lock: the weights cannot change between the two.
        tr = trainer.trace(x, y)
        return (step_through(model.rnn, tr, x[0].cpu().numpy(), 0, choice.layer, int(t), int(unit)),
                trainer.steps_done, tr)

    s, weights_step, tr = run.inspect(traced)
    labels = task.time_labels(x[0].cpu().numpy())
    at = f" (input “{labels[t]}”)" if labels else ""
    st.caption(f"Layer {choice.layer + 1}, unit {unit}, time step t = {t}{at}; "
               f"{weights_note(run, weights_step).lower()}. Each W·v is that unit's row of the weight matrix times "
               f"the vector; ‖x_t‖ = {s.input_norm:.4g} for this layer's input.")

    mean = kept(st.toggle, "Diagram: the mean over units", key="step_diagram_mean", default=False,
                help="The diagram shows the unit picked above, or each quantity's mean over the layer's units.")
    layer_input = x[0].cpu().numpy() if choice.layer == 0 else None
    with st.container(key="cell_diagram"):
        chart(plots.cell_diagram_figure(tr, 0, choice.layer, None if mean else int(unit), int(t), layer_input),
              key="cell_diagram_plot")
    st.download_button("Download the diagram's numbers at every step (CSV)",
                       lambda: csvsafe.to_csv(diagram.frame(tr, 0, choice.layer, None if mean else int(unit))),
                       "cell-diagram.csv", "text/csv", key="diagram_csv", on_click="ignore")
    st.caption("Each box is a gate, coloured by its value (σ gates white at 0 to blue at 1; tanh and states blue "
               "at −1, white at 0, red at +1); the top line carries the state from t−1 to t. ▶ Play, ◀ ▶ and the "
               "slider move the diagram and the equations together.")

    for line in s.lines:
        st.latex(line)

    with st.container(key="step_check"):
        st.caption(f"The trace recorded h_t = {s.traced_hidden:.6g} for this unit; recomputed from the numbers "
                   f"above: {s.hidden:.6g}.")

    st.info(s.note)


worked()
