"""Train: the controls, and live charts of the run as it learns."""
import streamlit as st

from explorer import Status
from explorer.config import FIELDS
from explorer.follow import Followed
from pages import keys
from pages.charts import chart_grid
from pages.errors import plain
from pages.follow import FOLLOW_SECONDS, POLLED_SECONDS, follow_every, follow_link, keep_followers, state_words
from pages.live import OWNER_PATH, WIDE, head, owner_head, poll, train_figures
from pages.session import (current_run, ended_note, refresh_every, session, setup_refusal, siblings_training,
                           waiting_note)
from pages.sidebar import applied_config, show_settings

REFRESH_SECONDS = 0.4           # live charts refresh at least twice a second while training
# A queued run's page has only its place to show, and its refresh takes the interpreter from the
# runs that train: with ten in a class, 0.4 s scaled by the crowd cost the followed run 0.06×.
QUEUED_SECONDS = 4.0

config = applied_config()
run = current_run(config)
# Settings that start no run (a csv task before its file, a file that cannot be used): the page
# keeps the run it had, and says so under the heading, since the sidebar now reads otherwise.
refusal = (setup_refusal(config) or "").rstrip(".")
if run is None:
    if refusal:
        st.markdown(f"#### {config.task.capitalize()} · no run yet")
        st.caption(f"The sidebar's settings start no run yet: {refusal}.")
    st.stop()
task = run.trainer.task
cfg = run.trainer.config

# Your own model: nothing to train, so this page says where to look instead (no st.stop: the
# app writes the page's link after it).
if not task.trainable:
    st.markdown(f"#### Your model · {cfg.cell.upper()}({cfg.hidden}) × {cfg.layers} · T = {task.seq_len}")
    st.info(f"“{run.name}” was trained elsewhere: it is looked at here, not trained. Its traced loss is "
            f"{task.loss_name} (change it in the sidebar).")
    for page, label, icon in (("pages/gates.py", "Gates: every gate, c_t and h_t over time", ":material/grid_on:"),
                              ("pages/gradients.py", "Gradients: ‖∂L/∂h_t‖ at every step", ":material/trending_down:"),
                              ("pages/step.py", "Step through: one unit's equations with its numbers",
                               ":material/calculate:")):
        st.page_link(page, label=label, icon=icon)
else:
    st.markdown(f"#### {task.name.capitalize()} · {cfg.cell.upper()}({cfg.hidden}) × {cfg.layers} · "
                f"T = {task.seq_len} · baseline: {task.baseline_name} ({task.loss_name} {task.baseline_loss:.3g})")
    if refusal:
        st.caption(f"**Shown: the previous run.** The sidebar's settings ({config.task} task) start no run "
                   f"yet: {refusal}.")

    following = isinstance(run, Followed)
    if following:
        with st.container(key="follow_banner"):
            st.info(f"Following “{run.name}”: {state_words(run.status)}. Its owner trains it; this page "
                    "shows it as it learns, and your choices on every page are your own.")
    elif run.deleted:
        st.warning(run.snapshot(look=False).message)   # (deleted in another tab: explorer.run.DELETED_NOTE)
    elif run.read_only and run.store is not None and run.store.read_only:
        st.info(f"Read-only: “{run.name}” is shown as it was saved; this server's run store cannot be "
                "written. **Reset** starts a run of your own with the sidebar's settings (not saved).")
    elif run.read_only:
        st.info(f"Read-only: this link shows the saved run “{run.name}” as it was saved. Only its owner can train "
                "it; **Reset** starts a run of your own with the sidebar's settings.")
    elif run.name and not st.session_state.get(keys.PRESENT):    # (a projector's lines go to the charts)
        st.caption(f"Run “{run.name}” · saved as it trains · reopen it from the Runs page or with this page's address")


# Where each control acts (explorer.run.Status): it is enabled there and only there. A queued
# run is running (waiting its turn), so Pause takes it out of the queue.
ACTS_IN = {
    "Train": {Status.IDLE},
    "Pause": {Status.RUNNING},
    "Resume": {Status.PAUSED},
    "Step": {Status.IDLE, Status.PAUSED},
}
MORE_PROBLEM = "train_more_problem"     # why the last "Train N more steps" could not add them
STEP_SIZE = "step_size"                 # the "steps per Step" box (tests set it by this key)
MORE_STEPS = "more_steps"               # the "more steps" box of a finished run


# The controls act in callbacks, before the page is drawn: the buttons then show the state
# their press made (a press acted on inline would leave Pause drawn disabled under a run it started).
def _pause(run) -> None:
    run.pause()
    # Let the step in flight land, so this rerun draws the step the run holds at.
    run.wait_until_idle(timeout=2.0)


def _step(run) -> None:
    run.step(st.session_state.get(STEP_SIZE, 1))


def _train_more(run) -> None:
    more = st.session_state.get(MORE_STEPS, 1)
    try:
        run.extend(more)
    except ValueError as error:            # a total Config refuses (too many steps for the memory budget)
        st.session_state[MORE_PROBLEM] = f"Could not add {more:,} steps: {error}"
        return
    run.start()
    show_settings(run.trainer.config)      # the sidebar's steps follow the run's


def controls() -> None:
    """Train, Pause, Resume, Step and Reset: the owner's (a follower has none). Each is enabled
    only in the states where it acts; an ended run says what can still be done."""
    train, pause, resume, step, size, reset = st.columns([1, 1, 1, 1, 1.2, 1], vertical_alignment="bottom")
    snap = run.snapshot()
    off = {name: run.read_only or snap.status not in states for name, states in ACTS_IN.items()}
    train.button("Train", type="primary", width="stretch",
                 help="Start training, on until the run's last step (Resume continues a paused run).",
                 disabled=off["Train"], on_click=run.start)
    pause.button("Pause", width="stretch", disabled=off["Pause"], on_click=_pause, args=(run,))
    resume.button("Resume", width="stretch", help="Continue from the step where it paused.",
                  disabled=off["Resume"], on_click=run.resume)
    size.selectbox("steps per Step", (1, 10, 100), key=STEP_SIZE)
    step.button("Step", width="stretch", help="Do that many steps, then pause.", disabled=off["Step"],
                on_click=_step, args=(run,))
    keep = follow_link(run) is not None and size.checkbox(
        "keep followers", value=True, key="keep_followers",
        help="Reset moves the follow link to the new run: whoever follows this run follows the new one.")
    if reset.button("Reset", width="stretch",
                    help="Start over: a new, untrained model with the sidebar's settings."):
        if config is None:
            st.error("Fix the settings in the sidebar first; the current run is kept.")
        else:
            problem = session().replace(config)
            if problem:
                st.error(f"Could not reset: {plain(problem.rstrip('.'))}. The current run is kept.")
            else:
                if keep:
                    keep_followers(run, session().run)
                st.rerun()                  # draw the page, header included, from the new run
    if snap.ended and not run.read_only:
        ended_offer(snap)


def ended_offer(snap) -> None:
    """What an ended run offers: a finished one trains on for more steps; any can be Reset."""
    room = int(FIELDS["steps"].hi) - snap.total_steps
    with st.container(key="run_ended"):
        if snap.status != Status.FINISHED:
            st.caption("This run cannot train further. **Reset** starts a new one with the sidebar's settings.")
            return
        if room < 1:
            st.caption(f"This run has the most steps a run can have ({snap.total_steps:,}). **Reset** starts "
                       "a new one with the sidebar's settings.")
            return
        words, amount, more = st.columns([3, 1.2, 1.3], vertical_alignment="bottom")
        words.markdown("Train has nothing left to do. **Train on** from where the run finished (same weights, "
                       "same optimiser), or press **Reset** for a new run with the sidebar's settings.")
        count = amount.number_input("more steps", 1, room, value=min(snap.total_steps, room), step=100,
                                    key=MORE_STEPS)
        more.button(f"Train {count:,} more steps", key="train_more", type="primary", width="stretch",
                    on_click=_train_more, args=(run,))
        if problem := st.session_state.pop(MORE_PROBLEM, None):
            st.error(problem)

if task.trainable:
    if not following:
        controls()
    drawn_status = run.snapshot().status
    polling = drawn_status == Status.RUNNING
    every = follow_every(run, polled=True) if following else (refresh_every(REFRESH_SECONDS) if polling else None)
    queued = polling and not following and bool(run.snapshot().queue_place)
    if queued:
        every = max(every, QUEUED_SECONDS)
    # While the owner's run trains, its browser polls for the charts and the step line
    # (pages/live.py) at `every`; the page itself reruns only now and then, to catch what the
    # poll cannot show (it also reruns at once when a poll finds the run no longer training).
    owner_poll = polling and not following and not queued
    if owner_poll:
        poll_every, every = every, POLLED_SECONDS


    def poll_stopped() -> None:
        st.session_state[keys.FOLLOW_STOPPED] = True

    @st.fragment(run_every=every)
    def live() -> None:
        if st.session_state.pop(keys.FOLLOW_STOPPED, False):
            # The poll found the run paused, ended (or the follow link revoked): the whole
            # page (its buttons, its sidebar's "live", its charts) says so now, not at the next rerun.
            st.rerun()
        snap = run.snapshot()
        if not following and run.priority and snap.running:
            # A class follows this run: its owner's page shows the moment the class sees, so the
            # figures are built once for all of them (Run.published).
            snap = run.published(FOLLOW_SECONDS)
        if (polling and not snap.running) or (following and snap.status != drawn_status) or \
                (queued and not snap.queue_place):
            st.rerun()                      # polling changes: redraw the page once, quietly
        if snap.queue_place:
            with st.container(key="queue_place"):
                st.info(waiting_note(snap.queue_place, run.admission.slots, siblings_training(session(), run)))
        if run.trainer.device_warning:
            st.warning(run.trainer.device_warning)
        # A run reopened from the store has no message of its own: never an empty alert.
        if snap.status in (Status.DIVERGED, Status.ERROR):
            st.error(ended_note(snap, run.trainer))
        elif snap.status == Status.FINISHED:
            st.success(ended_note(snap, run.trainer))
        elif snap.message and snap.message != run.trainer.device_warning and (following or not run.deleted):
            st.info(snap.message)
        if snap.save_problem:
            st.warning(snap.save_problem)
        gate, sequence = st.session_state.get(keys.STRIP_GATE), st.session_state.get(keys.STRIP_SEQUENCE, 0)
        figures, caption = train_figures(run, snap, gate, sequence)
        # The step line is drawn by the chart element: while the run trains, the browser's
        # polls move it on with the charts (pages/live.py), and this fragment reruns only
        # now and then. The owner's has step, speed, device, status and progress.
        present = bool(st.session_state.get(keys.PRESENT))
        if following:
            extra = {"head": head(run, snap), "poll": poll(run.token, gate, sequence, present, FOLLOW_SECONDS)
                     if snap.running else None}
        else:
            extra = {"head": owner_head(run, snap), "poll": poll(session().watch_token, gate, sequence, present,
                                                                 poll_every, OWNER_PATH)
                     if owner_poll and snap.running else None}
        # One element for every chart (each element costs the server more than its figure).
        chart_grid(figures, key="live_charts", wide=WIDE, extra=extra, on_stopped=poll_stopped)
        if caption:
            st.caption(caption)


    def strip_pickers() -> None:
        traces = run.snapshot().history.traces
        if not traces:
            return
        tr = traces[-1][1]
        pick, which = st.columns([1, 3])
        pick.selectbox("Gate", list(tr.layers[0].gates) or ["hidden"], key=keys.STRIP_GATE)
        which.selectbox("Probe sequence", range(len(tr.grad_input)), key=keys.STRIP_SEQUENCE,
                        format_func=lambda b: f"{b}: {run.trainer.probe_labels[b]}")


    live()
    strip_pickers()
