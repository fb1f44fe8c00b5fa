"""The sequence picker the Gates and Gradients pages share: a probe sequence (recorded at
every probe, so its training history can be replayed) or one built by hand (traced now,
with the current weights). Choices are kept when the user switches pages."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from explorer import Run, Status, Trace
from explorer.follow import Followed
from explorer.tasks import HandMade, Task
from pages import keys
from pages.follow import follow_every
from pages.session import current_run, refresh_every
from pages.sidebar import applied_config

REFRESH_SECONDS = 1.0   # how often a page following a training run redraws its newest probe
# The Streamlit widget that draws each kind of hand-built sequence control (explorer.tasks.Control).
WIDGETS = {"number": "number_input", "slider": "slider", "text": "text_input", "textarea": "text_area",
           "select": "selectbox"}


@dataclass
class Choice:
    """What the user picked; `resolve` turns it into a trace as the run stands."""

    sequence: int                       # index into the probe set (hand-built: 0)
    built: tuple | None                 # (x, y) of a hand-built sequence, batch of one
    layer: int
    follow: bool                        # show the newest probe rather than a replayed one
    replay_step: int | None
    drawn_status: Status | None = None  # the run's status when the page was drawn


@dataclass
class Shown:
    trace: Trace
    sequence: int                       # the sequence's index in trace
    x: np.ndarray                       # (time, features) the input as drawn
    step: int                           # training step of the weights traced
    recorded: list | None               # the probe traces over training; None if hand-built

    def shared(self, run, *view) -> tuple | None:
        """The key under which this view's figure is shared (pages/charts.chart): a probe
        sequence's, of a saved run; None for a sequence built by hand. The config is in it:
        your model traced again with another loss is another figure at the same step."""
        if not run.id or self.recorded is None:
            return None
        return (run.id, run.trainer.config, self.step, self.sequence, *view)


def kept(widget, label, options=None, *, key: str, default, valid=None, **kwargs):
    """A widget whose value survives page switches (Streamlit drops the state of widgets a
    page does not draw, so the value is also kept under our own name). A kept value that no
    longer fits (a new run with fewer steps or units) falls back to the default."""
    if valid is None:
        valid = (lambda v: v in options) if options is not None else (lambda v: True)
    store = st.session_state.setdefault(keys.KEPT, {})
    value = store.get(key, default)
    if not valid(value):
        value = default
    if key in st.session_state and valid(st.session_state[key]):
        value = st.session_state[key]       # the user's latest, from this page or the last
    # Always assigned: a widget that a page switch made new ignores a value left under its
    # key by the last page's widget (the follow toggle fell back to off), not one set here.
    st.session_state[key] = value
    result = widget(label, options, key=key, **kwargs) if options is not None else widget(label, key=key, **kwargs)
    store[key] = result
    return result


def _build_by_hand(task: Task, spec: HandMade):
    """Draw spec's controls, in two columns; return (x, y) or None after an error message."""
    columns = st.columns(2)
    values = {}
    for i, control in enumerate(spec.controls):
        widget = getattr(columns[i % 2], WIDGETS[control.kind])
        bounds = {arg: v for arg, v in (("min_value", control.lo), ("max_value", control.hi), ("step", control.step))
                  if v is not None}
        values[control.name] = kept(widget, control.label, control.options, key=f"hand_{control.name}",
                                    default=control.default, **bounds)
    try:
        return spec.build(task, values)
    except ValueError as error:
        st.error(f"That sequence can't be built: {error}")
        return None


def choose(run: Run, replay: bool = True) -> Choice:
    """Draw the picker; the choice is resolved later, on every refresh. Without replay, no
    follow toggle or replay slider: the page traces with the weights as they are now."""
    task, trainer = run.trainer.task, run.trainer
    spec = task.handmade()
    sources = ("probe set", "build your own") if spec else ("probe set",)
    top = st.columns([1.3, 2, 1, 1.6])
    source = kept(top[0].radio, "Sequence", sources, key=keys.PICK_SOURCE, default="probe set", horizontal=True)
    layer = kept(top[2].selectbox, "Layer", tuple(range(trainer.config.layers)), key=keys.PICK_LAYER, default=0,
                 format_func=lambda k: f"layer {k + 1}")
    if source == "build your own":
        with st.container(border=True):
            built = _build_by_hand(task, spec)
        if built is not None:
            top[1].caption(f"Built by hand: {task.describe_sequence(built[0][0], built[1][0])}. "
                           "Traced with the current weights.")
            return Choice(0, built, layer, True, None)
    probe_x, probe_y = trainer.probe_set
    sequence = kept(top[1].selectbox, "Probe sequence", tuple(range(len(probe_x))), key=keys.PICK_SEQUENCE,
                    default=0, format_func=lambda b: f"{b}: {trainer.probe_labels[b]}")
    if not replay or not task.trainable:            # your model has one probe: nothing to follow
        return Choice(sequence, None, layer, True, None)
    steps = [step for step, _ in run.snapshot().history.traces]
    follow = kept(top[3].toggle, "Follow training (newest probe)", key=keys.PICK_FOLLOW, default=True)
    replay = None
    if not follow and len(steps) > 1:
        if st.session_state.get(keys.PICK_REPLAY) not in steps:     # thinned away, or a new run
            st.session_state[keys.PICK_REPLAY] = steps[-1]
        replay = st.select_slider("Replay: the probe recorded at training step", steps, key=keys.PICK_REPLAY)
    return Choice(sequence, None, layer, follow, replay)


def weights_note(run: Run, step: int) -> str:
    """Which weights a chart shows: a training step's, or your model's as uploaded."""
    return f"Weights as of training step {step}" if run.trainer.task.trainable else "Your model's weights as uploaded"


def resolve(run: Run, choice: Choice) -> Shown | None:
    """What to draw, as the run stands. A follower's page is drawn again when the followed run
    starts or stops (its refresh interval changes)."""
    snap = run.snapshot()
    if isinstance(run, Followed) and snap.status != choice.drawn_status:
        st.rerun()
    if choice.built is not None:
        x, y = choice.built
        return Shown(run.trace(x, y), 0, x[0].cpu().numpy(), snap.step, None)
    recorded = snap.history.traces
    if not recorded:
        return None
    chosen = recorded[-1]
    if not choice.follow and choice.replay_step is not None:
        chosen = next((item for item in recorded if item[0] == choice.replay_step), chosen)
    x = run.trainer.probe_set[0][choice.sequence].cpu().numpy()
    return Shown(chosen[1], choice.sequence, x, chosen[0], recorded)


def picked() -> tuple[Run, Choice, float | None]:
    """The session's run, the sequence picked (the picker is drawn here), and the run_every
    for the page's fragment: it refreshes while following a run that trains, else draws once."""
    run = current_run(applied_config())
    if run is None:
        st.stop()
    choice = choose(run)
    choice.drawn_status = run.snapshot().status
    if isinstance(run, Followed):       # watching: always refreshing, to see its owner press Train
        return run, choice, follow_every(run)
    following = choice.follow and choice.drawn_status == Status.RUNNING
    return run, choice, refresh_every(REFRESH_SECONDS) if following else None
