"""Lessons: presets that reproduce a classic result. Each loads with one click; its variants
(say a tanh RNN, an LSTM and a GRU) train side by side with one more, and when they finish
the page checks the lesson's claim against their real numbers."""
import streamlit as st

from explorer import Status, plots
from explorer.lessons import ALIASES, LESSONS
from pages.charts import chart
from pages.errors import plain
from pages import keys
from pages.session import ended_note, refresh_every, session, siblings_training, waiting_note
from pages.sidebar import applied_config, show_settings, take_settings

REFRESH_SECONDS = 0.5
SETTINGS_SHOWN = "lesson_settings_shown"     # the lesson whose settings the sidebar was last given
KNOWN = {lesson.key: lesson for lesson in LESSONS}

applied_config()                        # runs the page inside the app's shell
where = session()
if where.follow_token:
    st.info("You are following a run: lessons train runs of their own. Stop following (in the sidebar) "
            "to load one.")
    st.stop()


def _load(key: str) -> None:
    st.session_state[keys.LESSON] = key
    _show_settings(KNOWN[key])


def _show_settings(lesson) -> None:
    """The sidebar shows the lesson's settings (its first variant's; the sidebar says so), not
    the previous run's, once per load: changed there afterwards, they stay changed."""
    show_settings(lesson.variants[0].config)
    st.session_state[SETTINGS_SHOWN] = lesson.key


def _train_all(runs: dict) -> None:
    for run in runs.values():
        run.start()


def _pause_all(runs: dict) -> None:
    for run in runs.values():
        run.pause()
    for run in runs.values():
        run.wait_until_idle(timeout=2.0)


def _explore(label: str) -> None:
    """Hand one variant (trained as far as it got) to the other pages, settings included."""
    run = where.lesson_runs[label]
    where.adopt(run)
    take_settings(run)
    st.session_state[keys.GO_TO] = "pages/gates.py"
    chosen = KNOWN.get(st.session_state.get(keys.LESSON))
    if chosen is not None and chosen.what_if is not None:
        st.session_state[keys.LINKED_CLAMP] = chosen.what_if     # the Gates page's what-if opens on it

wanted = ALIASES.get(st.session_state.get(keys.LESSON), st.session_state.get(keys.LESSON))
st.session_state[keys.LESSON] = wanted           # a former key: the link gets the current one
if wanted and wanted not in KNOWN:
    st.warning(f"This link names a lesson {plain(repr(wanted))} that does not exist; pick one below.")
    st.session_state[keys.LESSON] = wanted = None
if wanted and st.session_state.get(SETTINGS_SHOWN) != wanted:     # a lesson link: not loaded by its button
    _show_settings(KNOWN[wanted])
    st.rerun()                          # the sidebar, drawn before this page, shows them now

with st.expander("All lessons", expanded=wanted is None):
    columns = st.columns(3)
    for i, lesson in enumerate(LESSONS):
        with columns[i % 3].container(border=True):
            st.markdown(f"**{lesson.title}**")
            st.caption(f"{' vs '.join(v.label for v in lesson.variants)} · {lesson.how_long_briefly}")
            st.button("Load", key=f"load_{lesson.key}", on_click=_load, args=(lesson.key,),
                      type="primary" if lesson.key == wanted else "secondary")

lesson = KNOWN.get(wanted)
if lesson is None:
    st.info("Load a lesson. Each card gives the time its variants took to train here on 2 cores, measured: "
            "idle, and busy with other work (a browser drawing this page on the same machine is work too).")
    st.stop()

linked = st.session_state.pop(keys.LINKED_LESSON_RUNS, None)
if linked:                              # a lesson link with its runs: the trained lesson, reopened
    problem = where.open_lesson(lesson, linked, st.session_state.get(keys.LINKED_KEY))
    if problem:
        st.warning(f"This link's runs could not be opened ({problem}); the lesson starts afresh.")
runs = where.lesson(lesson)
locked = any(run.read_only for run in runs.values())
first = next(iter(runs.values()))
task = first.trainer.task
st.markdown(f"### {lesson.title}")
# On a 1280×720 projector the lesson's text alone fills the screen and pushes the charts below
# it: presenting, it is folded (one click opens it), and the charts show.
presenting = bool(st.session_state.get(keys.PRESENT))
with st.expander("The lesson: press, look at, expect, how often, how long") if presenting else st.container():
    st.markdown(f"**Press** {lesson.press}  \n**Look at** {lesson.look}  \n**Expect** {lesson.expect}  \n"
                f"**How often** {lesson.how_often}  \n**How long** {lesson.how_long}")
    st.caption(f"Source: {lesson.source}")

train, pause, again = st.columns(3)
if locked:
    st.info("Read-only: this link shows the lesson's saved runs. **Start over** trains the lesson yourself.")
# Enabled only where they act: Train all while a variant can (re)start, Pause all while one trains
# or waits its turn (in callbacks, so the buttons show the state a press made).
statuses = {run.snapshot().status for run in runs.values()}
train.button("Train all", type="primary", width="stretch", key="lesson_train", on_click=_train_all, args=(runs,),
             disabled=locked or not statuses & {Status.IDLE, Status.PAUSED})
pause.button("Pause all", width="stretch", key="lesson_pause", on_click=_pause_all, args=(runs,),
             disabled=locked or Status.RUNNING not in statuses)
if again.button("Start over", width="stretch", key="lesson_again"):
    runs = where.lesson(lesson, fresh=True)
    st.rerun()

polling = any(run.snapshot().running for run in runs.values())


@st.fragment(run_every=refresh_every(REFRESH_SECONDS) if polling else None)
def live() -> None:
    snaps = {label: run.snapshot() for label, run in runs.items()}
    if polling and not any(s.running for s in snaps.values()):
        st.rerun()
    for i, (column, (label, snap)) in enumerate(zip(st.columns(len(snaps)), snaps.items())):
        with column.container(key=f"lesson_status_{i}"):
            st.metric(label, f"{snap.step} / {snap.total_steps}", help=f"{snap.status}, "
                      f"{snap.steps_per_second:.0f} steps/s")
            if snap.status in (Status.DIVERGED, Status.ERROR):
                st.error(ended_note(snap, runs[label].trainer))
            elif snap.queue_place:
                st.caption(waiting_note(snap.queue_place, runs[label].admission.slots,
                                        siblings_training(where, runs[label])))
    with st.container(key="lesson_loss"):
        chart(plots.compare_loss_figure({label: s.history for label, s in snaps.items()}, task.baseline_loss,
                                        task.loss_name, task.baseline_name), key="lesson_loss_plot")
    traces = {label: s.history.traces[-1][1] for label, s in snaps.items() if s.history.traces}
    if traces:
        st.caption("‖∂L/∂h_t‖ of probe sequence 0 as of each variant's newest probe: a line falling "
                   "towards t = 0 by orders of magnitude is a gradient vanishing on its way back.")
        chart(plots.compare_grad_time_figure(traces, 0), key="lesson_grad_plot")
    if all(s.status in (Status.FINISHED, Status.DIVERGED) for s in snaps.values()):   # a lesson may mean to diverge
        holds, why = lesson.check({label: run.trainer for label, run in runs.items()})
        (st.success if holds else st.warning)(("The claim holds: " if holds else "Not this time: ") + why)


live()
st.caption("Open one variant, trained as far as it got, in the Gates, Gradients and Step through pages:")
for i, (column, label) in enumerate(zip(st.columns(len(runs)), runs)):
    column.button(f"Explore {label}", key=f"explore_{i}", on_click=_explore, args=(label,), width="stretch")
