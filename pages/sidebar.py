"""The sidebar every page shares: presentation mode and the run's configuration, every Config
field grouped and with its help, shown only where the task and cell read it."""
from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from pathlib import Path
from typing import NamedTuple

import streamlit as st

from explorer import Config
from explorer.cells import CELLS
from explorer.config import DEVICES, FIELDS
from explorer.lessons import LESSONS
from explorer.models import resolve_device
from explorer.tasks import SERIES, TASKS
from explorer.data import UPLOAD_ENV, max_upload_mb
from pages import keys
from pages.errors import plain
from pages.follow import audience, follow_card, watched
from pages.link import not_used, read_link, view_problems
from pages.multipage import inside_app
from pages.session import Session, current_run, session, setup_refusal
from pages.share import link_to, share_menu

# Sidebar groups, in order; a field shows only where `_relevant` says it matters.
GROUPS = {
    "Task": ("task", "seq_len", "series", "horizon", "digits_source", "text", "csv_columns", "csv_target"),
    "Model": ("cell", "hidden", "layers", "dropout", "forget_bias", "init"),
    "Training": ("optimizer", "lr", "batch_size", "steps", "clip", "weight_decay", "l1", "seed", "device"),
    "Recording": ("probe_every", "probe_count", "eval_every"),
}
LABELS = {
    "seq_len": "sequence length T", "csv_columns": "input columns", "csv_target": "target column",
    "digits_source": "digits", "hidden": "hidden units", "forget_bias": "forget-gate bias",
    "lr": "learning rate", "batch_size": "batch size", "clip": "clip gradient norm at",
    "weight_decay": "weight decay (L2)", "l1": "L1 penalty", "init": "initialisation",
    "probe_every": "trace gates every (steps)", "probe_count": "probe sequences",
    "eval_every": "held-out loss every (steps)", "trace_loss": "traced loss (last or UNIT@STEP)",
}
FLOAT_STEPS = {"lr": 0.001, "dropout": 0.1, "clip": 0.5, "weight_decay": 0.0001, "l1": 0.0001,
               "forget_bias": 0.5}
# Fields only some tasks read; each task's entry in TASKS says which are its own.
TASK_FIELDS = {name for spec in TASKS.values() for name in spec.fields}


def _relevant(name: str, draft: dict) -> bool:
    if name in TASK_FIELDS:
        return name in TASKS[draft["task"]].fields
    return {
        "forget_bias": CELLS[draft["cell"]].forget_block is not None,
        "dropout": int(draft["layers"]) > 1,
    }.get(name, True)


def _device_label(device: str) -> str:
    missing = resolve_device(device)[1] is not None
    return f"{device} (not found here: trains on the CPU)" if missing else device


def _widget(name: str, draft: dict) -> None:
    """One config field's widget; its value lands in draft[name]."""
    spec, key = FIELDS[name], keys.config_widget(name)
    if key not in st.session_state:     # first show, or shown again after being hidden
        st.session_state[key] = draft[name]
    label, kind = LABELS.get(name, name.replace("_", " ")), type(getattr(Config(), name))
    if name == "device":
        # Every device is offered, so a shared configuration or a habit from another machine
        # still works here: one that is absent says so, and the run warns and uses the CPU.
        st.selectbox(label, DEVICES, key=key, help=spec.help, format_func=_device_label)
    elif name == "task":
        # Your own model (an untrainable task) is opened from the Runs page, not chosen here.
        st.selectbox(label, [t for t, s in TASKS.items() if s.trainable], key=key, help=spec.help)
        st.caption(TASKS[st.session_state[key]].help)
    elif spec.choices is not None:
        st.selectbox(label, spec.choices, key=key, help=spec.help)
        if name == "task":
            st.caption(TASKS[st.session_state[key]].help)
    elif name == "series":
        st.selectbox(label, SERIES, key=key, help=spec.help)
    elif name == "text":
        st.text_area(label, key=key, help=spec.help, height=100,
                     placeholder="Empty: Python's standard-library source")
    elif kind is str:
        st.text_input(label, key=key, help=spec.help)
    elif kind is int:
        st.number_input(label, int(spec.lo), int(spec.hi), step=1, key=key, help=spec.help)
    else:
        st.number_input(label, float(spec.lo), float(spec.hi), step=FLOAT_STEPS.get(name, 0.01),
                        format="%g", key=key, help=spec.help)
    draft[name] = st.session_state[key]


def _file_name(name: str) -> str:
    """An uploaded file's name, safe as one path component on the server; spaces kept, since
    messages about the file name it by this name."""
    safe = re.sub(r"[^\w. -]+", "_", Path(name).name).strip("._ ")[-100:]
    return safe or "upload.csv"


def _csv_upload(draft: dict, where: Session):
    """The CSV uploader; returns the place under it where a problem with the file is said."""
    cap = max_upload_mb()
    upload = st.file_uploader("CSV file", type=["csv", "txt"], key=keys.config_widget("csv_upload"),
                              max_upload_size=math.ceil(cap),
                              help="Your own time series: one row per time step, a header row "
                                   "naming the columns; comma, semicolon or tab between values; "
                                   f"UTF-8 or UTF-16. Up to {cap:g} MB.")
    if upload is not None and upload.size > cap * 2**20:
        # The browser enforces the uploader's cap too, but a client's word is not a check.
        st.error(f"The CSV file {plain(upload.name)} is {upload.size / 2**20:.1f} MB; uploads here are capped at "
                 f"{cap:g} MB ({UPLOAD_ENV} on the server). Nothing was read; the run keeps its data.")
    elif upload is not None:
        # In a folder named by the upload, so the path (part of the config) is stable across
        # reruns; under the file's own name, so messages about it name the file the user chose.
        folder = Path(where.upload_dir) / hashlib.sha1(upload.file_id.encode()).hexdigest()[:16]
        folder.mkdir(exist_ok=True)
        path = folder / _file_name(upload.name)
        path.write_bytes(upload.getbuffer())
        draft["csv_path"] = str(path)
    if not draft["csv_path"]:
        st.info("Upload a CSV file to train on it.")
    return st.container()


def sidebar() -> Config | None:
    """Draw the configuration; return it validated, or None after showing what is wrong."""
    where = session()
    if keys.DRAFT not in st.session_state:           # a session's first run: start from its link
        st.session_state[keys.DRAFT], rejected = read_link()
        if token := st.session_state.pop(keys.LINKED_FOLLOW, None):
            where.follow(token)
        else:
            _open_linked_run(where)
        # The view choices (unit, layer...) are checked against the model the link opens on.
        rejected += view_problems(lambda: current_run(_valid(st.session_state[keys.DRAFT])))
        if rejected:
            st.warning(plain(not_used(rejected)))
    draft = st.session_state[keys.DRAFT]
    # Presentation mode hides the sidebar (app.py): what a projected lesson needs of it, the
    # Share menu, the follow QR code and the way out, is a strip atop the main column instead.
    present = bool(st.session_state.get(keys.PRESENT))
    strip = _presentation_strip() if present else None
    # Presenting, the sidebar is hidden: what it would warn of shows atop the page instead.
    say = st.container() if present else st.sidebar
    with st.sidebar:
        st.toggle("Presentation mode", key=keys.PRESENT,
                  help="Hide the settings and enlarge text and charts for a projector. "
                       "The link keeps it: send it to show the lesson, locked.")
        share_slot = strip.share if present else st.container()     # filled once the settings are read, below
        if where.follow_token:             # a follower: whose run it is, no settings
            if watched()[0] is not None:   # (a revoked link is not passed on)
                with share_slot:
                    share_menu(None, None, following=where.follow_token)
            follow_card(where)
            st.session_state[keys.CONFIG] = None
            return None
        problem_slot = say if present else None    # where a run these settings cannot start says why
        if present:
            st.caption("Settings hidden. Switch presentation mode off to change them.")
        elif not TASKS[draft["task"]].trainable:
            _your_model_card(draft, where)
        else:
            st.subheader("Run configuration")
            whose = st.container()         # whose settings these are: known once every widget is read
            for group, names in GROUPS.items():
                with st.expander(group, expanded=group in ("Task", "Model")):
                    for name in names:
                        if _relevant(name, draft):
                            _widget(name, draft)
                    if group == "Task" and _relevant("csv_path", draft):
                        problem_slot = _csv_upload(draft, where)
            with whose:
                _lesson_note(draft)
        try:
            config = Config.from_dict(draft)
        except ValueError as error:
            say.error(f"Invalid setting: {plain(error)}")
            config = None
        st.session_state[keys.CONFIG] = config
        shown = current_run(config) if config is not None else where.run
        _refusal(config, draft, problem_slot)
        with share_slot:
            share_menu(shown, config)
        if present and shown is not None and shown.trainer.task.trainable:
            with strip.follow:
                audience(shown, link_to)
        if config is None:
            return None
        run = where.run
        if _traced_loss_changed(run, config):
            try:
                run.retrace(config)
            except ValueError as error:
                say.error(f"That loss can't be traced: {plain(error)}")
        elif run is not None and run.trainer.config != config and run.trainer.steps_done and not present:
            say.info("These settings differ from the running model's. Press **Reset** on the "
                     "Train page to start a new run with them.")
    return config


def _refusal(config: Config | None, draft: dict, slot) -> None:
    """Why these settings start no run, said once (every page's current_run tries them): under
    the CSV uploader for a CSV's problem, else here. A csv task with no file yet has its one
    line already (the uploader's "Upload a CSV file")."""
    problem = setup_refusal(config)
    if problem is None or (_relevant("csv_path", draft) and not draft["csv_path"]):
        return
    with slot if slot is not None else st.container():
        st.error(f"Could not set up this run: {plain(problem)}")


class Strip(NamedTuple):
    """Presentation mode's strip: its slots for the Share menu and the follow QR code."""

    share: object
    follow: object


def _presentation_strip() -> Strip:
    """One row atop the main column: the Share menu and the follow link's QR code and count
    (filled once the run is known), and Exit presentation."""
    with st.container(horizontal=True, horizontal_alignment="right", vertical_alignment="center",
                      key="present_strip"):
        strip = Strip(st.container(width="content"),
                      st.container(horizontal=True, wrap=False, width="content", vertical_alignment="center"))
        st.button("Exit presentation", key="present_exit", icon=":material/close_fullscreen:",
                  on_click=_exit_presentation, help="Show the settings again (the sidebar) and the usual text size.")
    return strip


def _exit_presentation() -> None:
    st.session_state[keys.PRESENT] = False        # the sidebar's toggle, hidden while presenting


def _lesson_note(draft: dict) -> None:
    """Say so when the settings are one variant's of the lesson loaded (the Lessons page puts
    its first variant's here, Explore the one explored), and what the other variants change."""
    loaded = next((item for item in LESSONS if item.key == st.session_state.get(keys.LESSON)), None)
    variant = next((v for v in loaded.variants if v.config.to_dict() == draft), None) if loaded else None
    if variant is None:
        return
    if len(loaded.variants) == 1:
        st.info(f"These are the settings of the lesson “{loaded.title}”.")
        return
    differ = [LABELS.get(name, name.replace("_", " ")) for name in FIELDS
              if len({getattr(v.config, name) for v in loaded.variants}) > 1]
    st.info(f"These are the settings of the lesson's {variant.label} variant (“{loaded.title}”). Its other "
            f"variants differ only in {' and '.join(differ)}.")


def _your_model_card(draft: dict, where: Session) -> None:
    """Your model instead of the settings: what it is, its traced loss, and the way back."""
    st.subheader("Your model")
    run = where.run
    if run is not None and not run.trainer.task.trainable:
        task, cfg = run.trainer.task, run.trainer.config
        st.markdown(f"**{run.name}**  \n{cfg.cell.upper()}, {cfg.layers} × {cfg.hidden} units · "
                    f"{len(task.x)} sequence{'s' * (len(task.x) > 1)} × {task.seq_len} steps from "
                    f"{task.options['source']}")
        if st.session_state.get(keys.YOURS_NOTE):
            st.info(st.session_state.pop(keys.YOURS_NOTE))
        _widget("trace_loss", draft)
    else:
        st.info("No model is open: look inside one from the Runs page.")
    st.button("Train a model instead", key="yours_leave", on_click=_leave_model, args=(where,),
              help="A new run of the default settings; your model stays saved on the Runs page.")


def _leave_model(where: Session) -> None:
    problem = where.replace(Config())
    if problem is None:
        take_settings(where.run)


def _traced_loss_changed(run, config: Config) -> bool:
    """The sidebar asks for your model with another traced loss (and nothing else changed)."""
    if run is None or run.trainer.task.trainable or run.trainer.config == config:
        return False
    return dataclasses.replace(run.trainer.config, trace_loss=config.trace_loss) == config


def _valid(draft: dict) -> Config | None:
    try:
        return Config.from_dict(draft)
    except ValueError:
        return None


def _open_linked_run(where: Session) -> None:
    """The run a link names (run=<id>, with key=<owner key> for control): the live one or the
    saved one becomes this session's run, and its settings the sidebar's."""
    run_id = st.session_state.pop(keys.LINKED_RUN, None)
    if run_id is None:
        return
    run, problem = where.open(run_id, st.session_state.get(keys.LINKED_KEY))
    if run is None:
        st.warning(f"This link's run could not be opened ({problem}); a new run starts instead.")
        return
    where.adopt(run)
    take_settings(run)


def applied_config() -> Config | None:
    """The sidebar's configuration as app.py validated it this rerun (None if invalid)."""
    inside_app()
    return st.session_state.get(keys.CONFIG)


def take_settings(run) -> None:
    """The sidebar shows run's settings: the draft becomes its config, and the widgets drop
    the values they held, so they show it afresh."""
    show_settings(run.trainer.config)


def show_settings(config: Config) -> None:
    """The sidebar shows these settings (as take_settings, for a config of no run)."""
    st.session_state[keys.DRAFT] = config.to_dict()
    for key in [k for k in st.session_state if str(k).startswith(keys.CONFIG_WIDGET)]:
        del st.session_state[key]
