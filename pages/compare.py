"""Compare: two to four runs side by side (saved ones, this session's run, a lesson's variants):
their held-out loss and metric as last saved, their learning curves against each task's
baseline, ‖∂L/∂h_t‖ against t at a training step they all recorded, their gates' mean and
saturation, and the settings that differ. The page's link holds the runs' ids, so a comparison
can be sent. It only reads: nothing here trains or saves."""
from __future__ import annotations

import dataclasses

import streamlit as st

from explorer import Status, plots
from explorer.compare import (MAX_RUNS, Compared, baselines, common_steps, comparability, differing_fields,
                              final_evals, from_run, from_store, gate_summary, heldout_loss, labels,
                              relative_losses, same_probes)
from explorer.store import RunStore, StoreError
from pages import keys
from pages.charts import chart
from pages.sequence import kept
from pages.session import ERRORS, refresh_every, run_store, session, store_problem
from pages.share import link_to
from pages.sidebar import applied_config

REFRESH_SECONDS = 1.0     # while a live run on show trains

applied_config()                        # runs the page inside the app's shell
where = session()
store = run_store()
if store is None:
    st.error(f"Runs cannot be compared on this server: its run store is not available ({store_problem()}).")
    st.stop()


@st.cache_resource(max_entries=8, show_spinner="Reading a saved run…")
def _saved(_store: RunStore, path: str, run_id: str, updated: str) -> Compared:
    """A saved run, read once per save (its `updated` time) and shared by every session."""
    return from_store(_store, run_id)


def _label(name: str, task: str, cell: str, steps: int, role: str = "") -> str:
    return f"{name} · {task} · {cell} · {steps} steps" + (f" · {role}" if role else "")


def _offered() -> tuple[dict, dict]:
    """The runs on offer: this session's own, live (run id -> (Run, role)), then the saved ones
    (run id -> RunInfo): this browser's, or everyone's on this server."""
    live = {}
    for run, role in [(where.run, "this session's run"), *((v, "lesson variant") for v in where.lesson_runs.values())]:
        if run is not None and run.id and (run.trainer.steps_done or run.status == Status.RUNNING):
            live.setdefault(run.id, (run, role))        # one that has not trained a step has nothing to show
    everyone = st.toggle("Everyone's runs on this server", key="compare_everyone",
                         help="Off: the runs made in this browser, this session's run and the lesson's variants.")
    try:
        saved = {info.id: info for info in store.list(owner_key=None if everyone else where.owner_key)}
    except StoreError as error:
        st.error(f"The saved runs cannot be read: {error}")
        saved = {}
    return live, saved


def _pick(live: dict, saved: dict) -> list[str]:
    """The multiselect of the runs on offer, preset from a Compare link; the ids picked."""
    def look_up(run_id: str) -> bool:
        """Whether the run is on offer; one of another browser's (a link's) is added."""
        if run_id not in live and run_id not in saved:
            try:
                saved[run_id] = store.info(run_id)
            except StoreError:
                return False
        return True

    linked = st.session_state.pop(keys.LINKED_COMPARE, None)
    if linked is not None:              # a Compare link: its runs, those this server has
        linked = list(dict.fromkeys(linked))
        missing = [run_id for run_id in linked if not look_up(run_id)]
        found = [run_id for run_id in linked if run_id not in missing]
        if missing:
            st.warning(f"This link names {len(missing)} run{'s' * (len(missing) > 1)} this server does not have "
                       f"(deleted, or saved on another server): {', '.join(missing)}.")
        if len(found) > MAX_RUNS:
            st.warning(f"This link names {len(found)} runs; the first {MAX_RUNS} are compared.")
        st.session_state.setdefault(keys.KEPT, {})[keys.COMPARE_PICK] = found[:MAX_RUNS]
        st.session_state[keys.COMPARE_PICK] = found[:MAX_RUNS]
    for run_id in st.session_state.get(keys.KEPT, {}).get(keys.COMPARE_PICK, []):
        look_up(run_id)                 # still offered when the toggle changes, while it exists
    options = {run_id: _label(run.name or run_id, run.trainer.config.task, run.trainer.config.cell,
                              run.trainer.steps_done, role) for run_id, (run, role) in live.items()}
    options.update({run_id: _label(info.name, info.task, info.cell, info.steps) for run_id, info in saved.items()
                    if run_id not in options})
    picked = kept(st.multiselect, "Runs to compare", list(options), key=keys.COMPARE_PICK, default=[],
                  valid=lambda v: isinstance(v, list) and len(v) <= MAX_RUNS and all(i in options for i in v),
                  format_func=options.get, max_selections=MAX_RUNS, placeholder="Pick two to four runs")
    if not options:
        st.info("No runs to compare yet. Train a run on the Train page or a lesson's variants (they are saved as "
                "they train), or switch on everyone's runs.")
    elif len(picked) < 2:
        st.info("Pick two to four runs to compare: saved runs, this session's run or a lesson's variants.")
    return picked


def _read(run_id: str, live: dict) -> tuple[Compared | None, str | None]:
    if run_id in live:
        return from_run(live[run_id][0]), None
    try:
        info = store.info(run_id)
        return dataclasses.replace(_saved(store, str(store.path), run_id, info.updated), name=info.name), None
    except ERRORS as error:
        return None, f"The run {run_id} cannot be read: {error}"


def comparison(picked: list[str], live: dict) -> None:
    runs = []
    for run_id in picked:
        run, problem = _read(run_id, live)
        if problem:
            st.warning(problem)
        elif run is not None:
            runs.append(run)
    if len(runs) < 2:
        st.info("Fewer than two of these runs can be read: pick others.")
        return
    names = labels(runs)
    _final(runs, names)
    probe = _probe(runs)
    loss_column, grad_column = st.columns(2, gap="large")
    with loss_column:
        _loss(runs, names)
    with grad_column:
        _gradients(runs, names, probe)
    if probe is not None:
        _gates(runs, names, probe)
    _settings(runs, names)


def _probe(runs: list[Compared]) -> tuple[int, int, int] | None:
    """A row of pickers for the gradients and gates: (probe sequence, layer, training step),
    at a step every run recorded; None (after saying why) where there is none."""
    steps = common_steps(runs)
    if not steps:
        st.warning("These runs kept no probe at a common training step (their 'trace gates every' settings "
                   "never meet): their gradients and gates cannot be matched.")
        return None
    sequences = min(run.config.probe_count for run in runs)
    layers = min(run.config.layers for run in runs)
    pick_seq, pick_layer, pick_step = st.columns([1, 0.6, 2.4], gap="large")
    sequence = kept(pick_seq.selectbox, "Probe sequence (gradients)", tuple(range(sequences)),
                    key="compare_sequence", default=0)
    layer = kept(pick_layer.selectbox, "Layer", tuple(range(layers)), key="compare_layer", default=0,
                 format_func=lambda k: f"layer {k + 1}", disabled=layers == 1)
    if len(steps) > 1:
        step = kept(pick_step.select_slider, "Gradients and gates at training step (one every run recorded)",
                    steps, key="compare_step", default=steps[-1])
    else:
        step = steps[0]
        pick_step.caption(f"Gradients and gates at training step {step}, the only one every run recorded.")
    return sequence, layer, step


def _final(runs: list[Compared], names: dict[str, str]) -> None:
    st.subheader("Held-out loss and metric")
    st.caption("Each run's weights at its last save, on its task's held-out set (1,000 sequences, or all it has: "
               "the digits' 360), as `python -m explorer runs` lists them. Measured when a run pauses or ends: "
               "empty while it trains, and for a run not saved since the store kept them.")
    st.dataframe(final_evals(runs, names), key="compare_final")


def _loss(runs: list[Compared], names: dict[str, str]) -> None:
    st.subheader("Held-out loss while training")
    fair = comparability(runs)
    if fair.scale is None:
        st.warning(fair.message)
        return
    st.caption(fair.message + " Measured every eval_every steps on 256 held-out sequences; the lowest line "
               "has learnt the most.")
    losses = heldout_loss if fair.scale == "absolute" else relative_losses
    y_title = runs[0].loss_name if fair.scale == "absolute" else "held-out loss ÷ its task's baseline"
    with st.container(key="compare_loss"):
        chart(plots.compare_heldout_figure({names[run.id]: losses(run) for run in runs}, baselines(runs, fair.scale),
                                           y_title), key="compare_loss_plot")
    waiting = [names[run.id] for run in runs if not len(run.history.evals["step"])]
    if waiting:
        st.caption(f"No held-out loss yet from {', '.join(waiting)}: it is measured every eval_every steps.")


def _gradients(runs: list[Compared], names: dict[str, str], probe: tuple[int, int, int] | None) -> None:
    st.subheader("Gradients through time")
    if probe is None:
        return
    sequence, layer, step = probe
    st.caption(f"‖∂L/∂h_t‖ of probe sequence {sequence} at step {step}: lines that fall towards t = 0 are "
               "gradients vanishing on their way back.")
    traces = {names[run.id]: run.trace_at(step) for run in runs}
    with st.container(key="compare_grad"):
        chart(plots.compare_grad_time_figure(traces, sequence, layer), key="compare_grad_plot")
    if not same_probes(runs):
        differ = "tasks" if len({run.task for run in runs}) > 1 else "task settings, T or seeds"
        st.caption(f"These runs have different {differ}, so probe sequence {sequence} is a different sequence in "
                   "each (and T may differ): compare the lines' slopes, not their values at one t.")


def _gates(runs: list[Compared], names: dict[str, str], probe: tuple[int, int, int]) -> None:
    st.subheader("Gates")
    _, layer, step = probe
    summaries = {names[run.id]: gate_summary(run.trace_at(step), layer) for run in runs}
    plain = [label for label, gates in summaries.items() if not gates]
    if len(plain) == len(runs):
        st.info("None of these runs has gates: they are plain RNNs.")
        return
    st.caption(f"Layer {layer + 1} at step {step}, over every probe sequence, time step and unit: each gate's mean, "
               "and how often it is shut (< 0.1) or open (> 0.9). A forget or update gate open most of the "
               "time is a network that remembers.")
    with st.container(key="compare_gates"):
        chart(plots.compare_gates_figure(summaries, {names[run.id]: run.config.cell for run in runs}),
              key="compare_gates_plot")
    if plain:
        st.caption(f"{', '.join(plain)}: a plain RNN, with no gates.")


def _settings(runs: list[Compared], names: dict[str, str]) -> None:
    st.subheader("Settings that differ")
    table = differing_fields({names[run.id]: run.config for run in runs})
    if table.empty:
        st.caption("These runs share every setting: their differences are the run itself (continued, "
                   "or trained on another machine).")
        return
    st.caption("Only the settings that differ; — where a run's task or cell does not read the setting.")
    st.table(table)


live, saved = _offered()
picked = _pick(live, saved)
if len(picked) >= 2:
    polling = any(run_id in live and live[run_id][0].snapshot().running for run_id in picked)
    st.fragment(comparison, run_every=refresh_every(REFRESH_SECONDS) if polling else None)(picked, live)
    st.caption("A link to this comparison (read-only: it opens these runs as last saved):")
    st.code(link_to({"compare": ".".join(picked)}), language=None, wrap_lines=True)
