"""Sweep: the vanishing-gradient lab. A grid of cells x sequence lengths x seeds, every run
starting from the sidebar's settings; its cost before it starts (runs, steps, a time measured on
this server), a progress bar while it runs, and the picture as runs finish: held-out loss, steps
to solve and the gradient ratio against the length, per cell. A click on a run's point opens it
on the Gates or Gradients page. The page's link names the sweep; its rows download as CSV or
Parquet. One sweep runs on a server at a time, bounded by GATE_EXPLORER_MAX_SWEEP_RUNS."""
from __future__ import annotations

import functools
import io
import threading

import streamlit as st

from explorer import csvsafe, plots
from explorer.admission import max_runs
from explorer.config import Config
from explorer.lessons import SWEEP_LESSONS, SweepLesson
from explorer.store import StoreError
from explorer.sweep import RunCost, SweepJob, estimate_seconds, grid, max_page_runs, results, run_cost, worker_seconds
from pages import keys
from pages.charts import PRESENT_FONT
from pages.errors import plain
from pages.session import ERRORS, run_store, session, store_problem
from pages.sidebar import applied_config, show_settings, take_settings

CELL_CHOICES = ("rnn", "lstm", "gru", "rnn-relu", "peephole", "cifg")
LENGTHS = (5, 10, 25, 50, 75, 100, 150, 200, 300)
REFRESH_SECONDS = 1.0
PICK_BOX = "sweep_pick_box"
LINKED = "sweep_linked"        # (kept) the sweeps this session opened by their links, other owners' included
SHOWN = ["cell", "seq_len", "seed", "eval_loss", "baseline_loss", "solved_step", "grad_ratio_init",
         "grad_ratio_final", "steps_per_second", "status", "message"]

config = applied_config()               # runs the page inside the app's shell
where = session()
store = run_store()
if store is None:
    st.error(f"Sweeps need the run store, which is not available on this server: {store_problem()}")
    st.stop()


class _Jobs:
    """The server's sweeps started from the app (id -> SweepJob); one runs at a time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_id: dict[str, SweepJob] = {}

    def running(self) -> SweepJob | None:
        with self.lock:
            return next((j for j in self.by_id.values() if j.state()["status"] == "running"), None)



@st.cache_resource(show_spinner=False)
def _jobs() -> _Jobs:
    return _Jobs()


@st.cache_data(max_entries=64, show_spinner="Timing a run of each cell at the longest length on this server…")
def _measured(config_json: dict) -> RunCost:
    return run_cost(Config.from_dict(config_json))


# A worker's start and end are mostly torch's imports and exit (seconds, more on a busy server):
# timed once per task, first cell and number of workers.
@st.cache_data(max_entries=16, show_spinner="Timing the start and end of a sweep's workers on this server…")
def _workers(config_json: dict, workers: int) -> float:
    return worker_seconds(Config.from_dict(config_json), workers)


def _duration(seconds: float) -> str:
    if seconds < 5:
        return "a few seconds"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _kept() -> dict:
    return st.session_state.setdefault(keys.KEPT, {})


linked = st.session_state.pop(keys.LINKED_SWEEP, None)
if linked:
    _kept()[keys.SWEEP_PICK] = linked
jobs = _jobs()

st.markdown("### Sweep: as the sequences grow, which cell still learns?")
st.caption("Every run starts from the sidebar's settings (task, hidden units, optimiser, learning rate…); "
           "the grid sets the cell, the sequence length and the seed. One seed does not settle which cell is "
           "better: the band shows the range over seeds.")


def _set_up(lesson: SweepLesson) -> None:
    """The lesson's grid in the widgets, and its settings in the sidebar."""
    st.session_state.update(sweep_cells=list(lesson.cells), sweep_lengths=list(lesson.lengths),
                            sweep_seeds=lesson.seeds, sweep_steps=lesson.settings["steps"])
    show_settings(Config(**lesson.settings))


for lesson in SWEEP_LESSONS:
    with st.expander(f"Lesson: {lesson.title}", icon=":material/school:"):
        st.markdown(f"**Press:** {lesson.press}\n\n**Look at:** {lesson.look}\n\n**Expect:** {lesson.expect}"
                    f"\n\n**How often:** {lesson.how_often}")
        st.caption(f"Source: {lesson.source}")
        st.button("Set up this lesson's sweep", on_click=_set_up, args=(lesson,), key=f"sweep_lesson_{lesson.key}")
if config is None:
    st.info("Fix the sidebar's settings first: every run of a sweep starts from them.")
    st.stop()

left, middle, right, far = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
cells = left.multiselect("Cells", CELL_CHOICES, default=["rnn", "lstm", "gru"], key="sweep_cells")
lengths = middle.multiselect("Sequence lengths T", LENGTHS, default=[10, 25, 50, 100], key="sweep_lengths")
seeds = right.number_input("Seeds", 1, 10, 3, key="sweep_seeds", help="Each grid point runs with seeds 0..N-1.")
steps = far.number_input("Steps per run", 50, 20_000, 800, step=50, key="sweep_steps")

configs, problem = [], None
try:
    if not cells or not lengths:
        problem = "Pick at least one cell and one length."
    else:
        fixed = {k: v for k, v in config.to_dict().items() if k not in ("cell", "seq_len", "seed", "steps", "probe_every")}
        configs = grid({"cell": cells, "seq_len": sorted(lengths)}, seeds=int(seeds), steps=int(steps), **fixed)
except ValueError as error:
    problem = str(error)
cap, places = max_page_runs(), max_runs()
running = jobs.running()
if problem is None and len(configs) > cap:
    problem = (f"{len(configs)} runs is more than this server allows in one sweep ({cap}). Fewer cells, "
               f"lengths or seeds; or run it from the command line: python -m explorer sweep.")
if problem:
    st.warning(problem)
else:
    try:
        estimate = estimate_seconds(configs, places, measure=lambda c: _measured(c.to_dict()),
                                    worker=lambda c, workers: _workers(c.to_dict(), workers))
        st.markdown(f"**Cost:** {len(configs)} runs × {int(steps):,} steps = {len(configs) * int(steps):,} training "
                    f"steps, {places} at a time on this server: about **{_duration(estimate)}** (its workers' "
                    f"start and end, and a run of each cell at T = {max(lengths)}, timed here).")
    except ERRORS as error:
        problem = f"These settings cannot train here: {error}"
        st.error(problem)


def _start() -> None:
    with jobs.lock:                       # (two sessions pressing at once: one sweep starts)
        if any(j.state()["status"] == "running" for j in jobs.by_id.values()):
            return
        try:
            job = SweepJob(store, configs, workers=places, owner_key=where.owner_key)
        except (StoreError, ValueError) as error:
            st.session_state[keys.SWEEP_PROBLEM] = f"The sweep could not start: {error}"
            return
        jobs.by_id[job.sweep_id] = job
    _kept()[keys.SWEEP_PICK] = job.sweep_id


st.button("Run the sweep", type="primary", on_click=_start, disabled=bool(problem) or running is not None,
          key="sweep_run", help="Runs in the background: this page can be left and come back to (its link "
                                "names the sweep).")
if running is not None and running.sweep_id != _kept().get(keys.SWEEP_PICK):
    st.info("Another sweep is running on this server; one runs at a time. Start yours when it ends.")
if st.session_state.get(keys.SWEEP_PROBLEM):
    st.error(st.session_state.pop(keys.SWEEP_PROBLEM))

# -- the sweep on show ----------------------------------------------------------------------------------
try:
    stored = store.list_sweeps()
    mine = {s["id"] for s in store.list_sweeps(owner_key=where.owner_key)}
except StoreError as error:
    st.error(f"The sweeps cannot be read: {error}")
    st.stop()
shown = _kept().get(keys.SWEEP_PICK)
if shown and shown not in {s["id"] for s in stored}:
    st.warning(f"No sweep with id {plain(shown)} on this server.")
    shown = None
linked_ids = _kept().setdefault(LINKED, [])
if shown and shown not in mine and shown not in linked_ids:
    linked_ids.append(shown)
# The page offers this browser's own sweeps and the ones this session opened by a link: a
# stranger's sweep only through its link, never as what /sweep opens on.
stored = [s for s in stored if s["id"] in mine or s["id"] in linked_ids]
ids = [s["id"] for s in stored]
if not ids:
    st.caption("No sweep of yours on this server yet: the sweeps you run here are listed here. "
               "Someone else's opens from its link.")
    st.stop()
labels = {s["id"]: f"{s['created'][:16].replace('T', ' ')} · {s['done']} of {s['runs']} runs · {s['id']}" for s in stored}


def _picked() -> None:
    _kept()[keys.SWEEP_PICK] = st.session_state[PICK_BOX]


# The box shows the sweep the page shows: a linked one, one just started, or the one picked in it.
st.session_state[PICK_BOX] = shown or ids[0]
shown = st.selectbox("Sweep", ids, format_func=labels.get, key=PICK_BOX, on_change=_picked)
_kept()[keys.SWEEP_PICK] = shown


def _clicked(key: str) -> None:
    points = (st.session_state.get(key) or {}).get("selection", {}).get("points", [])
    ids = [p["customdata"][0] for p in points if p.get("customdata") and p["customdata"][0]]
    _kept()[keys.SWEEP_RUN_PICK] = ids[-1] if ids else None


def _open(run_id: str, page: str) -> None:
    run, why = where.open(run_id, where.owner_key)
    if run is None:
        st.session_state[keys.SWEEP_PROBLEM] = f"Could not open that run: {why}"
        return
    where.adopt(run)
    take_settings(run)
    st.session_state[keys.GO_TO] = page


def _show(sweep_id: str) -> None:
    if st.session_state.get(keys.GO_TO) or st.session_state.get(keys.SWEEP_PROBLEM):
        st.rerun()         # an Open button's callback: only a whole rerun switches page (or says why not)
    job = jobs.by_id.get(sweep_id)
    state = job.state() if job is not None else None
    if state is not None and state["status"] == "running":
        done, total = state["done"], state["total"]
        left = state["seconds"] / max(done, 1) * (total - done) if done else None
        st.progress(done / total, text=f"{done} of {total} runs done · {_duration(state['seconds'])}"
                                       + (f" · about {_duration(left)} left" if left is not None else ""))
        if job.owner_key == where.owner_key:          # (whoever started it; others watch)
            st.button("Cancel the sweep", on_click=job.cancel, key="sweep_cancel",
                      help="Stops it; the runs done are kept, and Resume runs the rest.")
    elif state is not None and state["status"] == "failed":
        st.error(f"The sweep stopped: {state['message']}")
    elif state is not None and state["status"] == "cancelled":
        st.info(state["message"])
    try:
        frame = results(sweep_id, store)
        configs = store.sweep_configs(sweep_id)
        total = len(configs)
    except StoreError as error:
        st.error(f"The sweep cannot be read: {error}")
        return
    if state is not None and state["status"] != "running" and st.session_state.get(keys.SWEEP_WAS_RUNNING) == sweep_id:
        st.session_state.pop(keys.SWEEP_WAS_RUNNING)
        st.rerun()                         # (the whole page: the fragment stops refreshing)
    if state is not None and state["status"] == "running":
        st.session_state[keys.SWEEP_WAS_RUNNING] = sweep_id
    missing = total - int((frame["status"] != "failed").sum())       # (a resume runs failed runs again)
    if missing and (state is None or state["status"] != "running"):
        st.button(f"Resume: run the {missing} runs not done", key="sweep_resume",
                  on_click=_resume, args=(sweep_id,), disabled=jobs.running() is not None)
    if frame.empty:
        st.info("No run of this sweep has finished yet.")
        return
    for lesson in SWEEP_LESSONS:
        if lesson.is_its_sweep(configs):
            if len(frame) < total:
                st.caption(f"This is the lesson \u201c{lesson.title}\u201d: its claim is checked when every run "
                           "has finished.")
            else:
                holds, numbers = lesson.check(frame)
                (st.success if holds else st.warning)(
                    ("The lesson's claim holds on these runs. " if holds else
                     "The lesson's claim does not hold on these runs. ") + numbers)
    failed = frame[frame["status"] == "failed"]
    if len(failed):
        st.warning(f"{len(failed)} run(s) failed: " + "; ".join(sorted(set(failed["message"].astype(str))))[:400])
    figures = {"loss": plots.sweep_loss_figure(frame), "solved": plots.sweep_solved_figure(frame),
               "grad": plots.sweep_grad_ratio_figure(frame)}
    if st.session_state.get(keys.PRESENT):          # legible from the back of a room
        for figure in figures.values():
            figure.update_layout(font={"size": PRESENT_FONT}, height=560)
    top = st.columns(2)
    for column, name in zip([*top, st.container()], figures):
        with column:
            key = f"sweep_chart_{name}_{sweep_id}"
            # Each chart keeps its own selection: the newest click, on any chart, is the run picked.
            # theme=None: Streamlit's theme would set its own small grey tick labels over the builder's.
            st.plotly_chart(figures[name], on_select=functools.partial(_clicked, key), selection_mode="points",
                            key=key, width="stretch", theme=None)
    newest = _kept().get(keys.SWEEP_RUN_PICK)
    run_ids = [newest] if newest and (frame["run_id"] == newest).any() else []
    if run_ids:
        row = frame[frame["run_id"] == run_ids[-1]].iloc[0]
        st.markdown(f"**Picked:** {row['cell']}, T = {row['seq_len']}, seed {row['seed']}: held-out loss "
                    f"{row['eval_loss']:.4g} (baseline {row['baseline_loss']:.4g})")
        gates, grads = st.columns(2)
        gates.button("Open it on the Gates page", on_click=_open, args=(run_ids[-1], "pages/gates.py"),
                     key="sweep_open_gates", width="stretch")
        grads.button("Open it on the Gradients page", on_click=_open, args=(run_ids[-1], "pages/gradients.py"),
                     key="sweep_open_grads", width="stretch")
    else:
        st.caption("Click a run's point on a chart to open that run on the Gates or Gradients page.")
    st.dataframe(frame[SHOWN], hide_index=True, width="stretch", key=f"sweep_rows_{sweep_id}", column_config={
        "eval_loss": st.column_config.NumberColumn("held-out loss", format="%.3g"),
        "baseline_loss": st.column_config.NumberColumn("baseline", format="%.3g"),
        "solved_step": st.column_config.NumberColumn("solved at step", format="%d"),
        "grad_ratio_init": st.column_config.NumberColumn("gradient ratio, start", format="%.2e"),
        "grad_ratio_final": st.column_config.NumberColumn("gradient ratio, end", format="%.2e"),
        "steps_per_second": st.column_config.NumberColumn("steps/s", format="%.0f")})
    csv, parquet = st.columns(2)
    csv.download_button("Download the rows (CSV)", csvsafe.to_csv(frame), f"sweep-{sweep_id}.csv",
                        "text/csv", key="sweep_csv", width="stretch")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    parquet.download_button("Download the rows (Parquet)", buffer.getvalue(), f"sweep-{sweep_id}.parquet",
                            "application/vnd.apache.parquet", key="sweep_parquet", width="stretch")


def _resume(sweep_id: str) -> None:
    with jobs.lock:
        if any(j.state()["status"] == "running" for j in jobs.by_id.values()):
            return
        try:
            job = SweepJob(store, sweep_id=sweep_id, workers=places, owner_key=where.owner_key)
        except (StoreError, ValueError) as error:
            st.session_state[keys.SWEEP_PROBLEM] = f"The sweep could not start: {error}"
            return
        jobs.by_id[sweep_id] = job


is_running = (jobs.by_id.get(shown) is not None and jobs.by_id[shown].state()["status"] == "running")
st.fragment(run_every=REFRESH_SECONDS if is_running else None)(_show)(shown)
