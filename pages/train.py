"""Train: the controls, and live charts of the run as it learns."""
import streamlit as st

from explorer import Status
from explorer.follow import Followed
from pages import keys
from pages.charts import chart_grid
from pages.follow import FOLLOW_SECONDS, POLLED_SECONDS, follow_every, follow_link, keep_followers, state_words
from pages.live import OWNER_PATH, WIDE, head, owner_head, poll, train_figures
from pages.session import current_run, refresh_every, session, waiting_note
from pages.sidebar import applied_config

REFRESH_SECONDS = 0.4           # live charts refresh at least twice a second while training
# A queued run's page has only its place to show, and its refresh takes the interpreter from the
# runs that train: with ten in a class, 0.4 s scaled by the crowd cost the followed run 0.06×.
QUEUED_SECONDS = 4.0

config = applied_config()
run = current_run(config)
if run is None:
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

    following = isinstance(run, Followed)
    if following:
        with st.container(key="follow_banner"):
            st.info(f"Following “{run.name}”: {state_words(run.status)}. Its owner trains it; this page "
                    "shows it as it learns, and your choices on every page are your own.")
    elif run.read_only:
        st.info(f"Read-only: this link shows the saved run “{run.name}” as it was saved. Only its owner can train "
                "it; **Reset** starts a run of your own with the sidebar's settings.")
    elif run.name:
        st.caption(f"Run “{run.name}” · saved as it trains · reopen it from the Runs page or with this page's address")


def controls() -> None:
    """Train, Pause, Resume, Step and Reset: the owner's (a follower has none)."""
    train, pause, resume, step, size, reset = st.columns([1, 1, 1, 1, 1.2, 1], vertical_alignment="bottom")
    ended = run.snapshot().ended
    locked = run.read_only
    if train.button("Train", type="primary", width="stretch", help="Train until the run's last step.", disabled=locked):
        if ended:
            st.toast("This run has ended. Press Reset to start a new one.")
        else:
            run.start()
    if pause.button("Pause", width="stretch", disabled=locked):
        run.pause()
        # Let the step in flight land, so this rerun draws the step the run holds at.
        run.wait_until_idle(timeout=2.0)
    if resume.button("Resume", width="stretch", help="Continue from the step where it paused.", disabled=locked):
        run.resume()
    step_size = size.selectbox("steps per Step", (1, 10, 100), key="step_size")
    if step.button("Step", width="stretch", help="Do that many steps, then pause.", disabled=locked):
        run.step(step_size)
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
                st.error(f"Could not reset: {problem.rstrip('.')}. The current run is kept.")
            else:
                if keep:
                    keep_followers(run, session().run)
                st.rerun()                  # draw the page, header included, from the new run

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
                st.info(waiting_note(snap.queue_place, run.admission.slots))
        if run.trainer.device_warning:
            st.warning(run.trainer.device_warning)
        if snap.status in (Status.DIVERGED, Status.ERROR):
            st.error(snap.message)
        elif snap.status == Status.FINISHED:
            st.success(snap.message)
        elif snap.message and snap.message != run.trainer.device_warning:
            st.info(snap.message)
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
