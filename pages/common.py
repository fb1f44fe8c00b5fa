"""What every page shares: the sidebar's run configuration and this browser session's run.

Not a page itself (st.navigation only shows the pages app.py registers). The run lives in
a session-scoped resource, so it survives page switches and is stopped when the browser
session ends.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field

import streamlit as st
import torch

from explorer import Config, DataError, Run, Status
from explorer.config import FIELDS
from pages.charts import preload
from pages.link import read_link, write_link

# Presentation mode: Streamlit sizes its text in rem, so a larger root font enlarges it all
# (charts scale their own fonts, pages/charts.py).
PRESENT_CSS = "html { font-size: 20px; } [data-testid='stMetricValue'] { font-size: 3rem; }"
IDLE_TIMEOUT = 600   # seconds without a page polling before a run pauses itself

# Leave a core to the server and the browser. On a small machine, OpenMP threads that must
# wait for a core held by the UI stall every operator: measured here on 2 cores, a default
# run fell from ~70 to ~4 steps/s with 2 threads under load, and kept ~100 with 1.
torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))

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
    "eval_every": "held-out loss every (steps)",
}
FLOAT_STEPS = {"lr": 0.001, "dropout": 0.1, "clip": 0.5, "weight_decay": 0.0001, "l1": 0.0001,
               "forget_bias": 0.5}
ERRORS = (ValueError, DataError, OSError, RuntimeError)


def _relevant(name: str, draft: dict) -> bool:
    task, cell = draft["task"], draft["cell"]
    return {
        "seq_len": task != "digits",          # the images fix the length
        "series": task == "series",
        "horizon": task in ("series", "csv"),
        "digits_source": task == "digits",
        "text": task == "text",
        "csv_columns": task == "csv", "csv_target": task == "csv",
        "forget_bias": cell in ("lstm", "peephole"),
        "dropout": int(draft["layers"]) > 1,
    }.get(name, True)


def _present(device: str) -> bool:
    if device == "cuda":
        return torch.cuda.is_available()
    if device == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return True


def _device_label(device: str) -> str:
    return device if _present(device) else f"{device} (not found here: trains on the CPU)"


@dataclass
class Session:
    """One browser session's run, and the folder its uploaded CSV files live in."""

    run: Run | None = None
    upload_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="gate-explorer-"))
    lesson_key: str | None = None
    lesson_runs: dict[str, Run] = field(default_factory=dict)   # variant label -> its run

    def replace(self, config: Config) -> str | None:
        """Start over with a new run of config; on failure keep the old run, return why."""
        try:
            run = Run(config, idle_timeout=IDLE_TIMEOUT)
        except ERRORS as error:
            return str(error)
        old, self.run = self.run, run
        self._retire(old)
        return None

    def lesson(self, lesson, fresh: bool = False) -> dict[str, Run]:
        """The runs of lesson's variants, made when the lesson is new here (or fresh is asked)."""
        if fresh or self.lesson_key != lesson.key:
            self.stop_lesson()
            self.lesson_runs = {v.label: Run(v.config, idle_timeout=IDLE_TIMEOUT) for v in lesson.variants}
            self.lesson_key = lesson.key
        return self.lesson_runs

    def stop_lesson(self) -> None:
        old, self.lesson_runs, self.lesson_key = self.lesson_runs, {}, None
        for run in old.values():
            self._retire(run)

    def adopt(self, run: Run) -> None:
        """Make run (a lesson's variant) the session's run, for the other pages to explore."""
        old, self.run = self.run, run
        self._retire(old)

    def _retire(self, run: Run | None) -> None:
        """Stop a run this session let go of, unless it still holds it in its other role (a
        lesson's variant adopted as the session's run, or the reverse)."""
        if run is not None and run is not self.run and run not in self.lesson_runs.values():
            run.stop()

    def close(self) -> None:
        if self.run is not None:
            self.run.stop()
        self.stop_lesson()
        shutil.rmtree(self.upload_dir, ignore_errors=True)


@st.cache_resource(scope="session", on_release=Session.close, show_spinner=False)
def session() -> Session:
    return Session()


def _widget(name: str, draft: dict) -> None:
    """One config field's widget; its value lands in draft[name]."""
    spec, key = FIELDS[name], f"cfg_{name}"
    if key not in st.session_state:     # first show, or shown again after being hidden
        st.session_state[key] = draft[name]
    label, kind = LABELS.get(name, name.replace("_", " ")), type(getattr(Config(), name))
    if name == "device":
        # Every device is offered, so a shared configuration or a habit from another machine
        # still works here: one that is absent says so, and the run warns and uses the CPU.
        st.selectbox(label, ("auto", "cpu", "cuda", "mps"), key=key, help=spec.help, format_func=_device_label)
    elif spec.choices is not None:
        st.selectbox(label, spec.choices, key=key, help=spec.help)
    elif name == "series":
        from explorer.tasks import SERIES
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


def _csv_upload(draft: dict, where: Session) -> None:
    upload = st.file_uploader("CSV file", type=["csv", "txt"], key="cfg_csv_upload",
                              help="Your own time series: one row per time step, a header row "
                                   "naming the columns.")
    if upload is not None:
        # Named by the upload, so the path (part of the config) is stable across reruns.
        path = f"{where.upload_dir}/{hashlib.sha1(upload.file_id.encode()).hexdigest()[:16]}.csv"
        with open(path, "wb") as out:
            out.write(upload.getbuffer())
        draft["csv_path"] = path
    if not draft["csv_path"]:
        st.info("Upload a CSV file to train on it.")


def sidebar() -> Config | None:
    """Draw the configuration; return it validated, or None after showing what is wrong."""
    if "draft" not in st.session_state:              # a session's first run: start from its link
        st.session_state["draft"], rejected = read_link()
        if rejected:
            st.warning("Some settings in this link were not used (the defaults stand in): " + "; ".join(rejected))
    draft = st.session_state["draft"]
    where = session()
    with st.sidebar:
        present = st.toggle("Presentation mode", key="present",
                            help="Hide the settings and enlarge text and charts for a projector. "
                                 "The link keeps it: send it to show the lesson, locked.")
        if present:
            st.caption("Settings hidden. Switch presentation mode off to change them.")
        else:
            st.subheader("Run configuration")
            for group, names in GROUPS.items():
                with st.expander(group, expanded=group in ("Task", "Model")):
                    for name in names:
                        if _relevant(name, draft):
                            _widget(name, draft)
                    if group == "Task" and draft["task"] == "csv":
                        _csv_upload(draft, where)
        try:
            config = Config.from_dict(draft)
        except ValueError as error:
            st.error(f"Invalid setting: {error}")
            st.session_state["config"] = None
            return None
        st.session_state["config"] = config
        run = where.run
        if run is not None and run.trainer.config != config and run.trainer.steps_done:
            st.info("These settings differ from the running model's. Press **Reset** on the "
                    "Train page to start a new run with them.")
    return config


def applied_config() -> Config | None:
    """The sidebar's configuration as app.py validated it this rerun (None if invalid)."""
    _through_app()
    return st.session_state.get("config")


def _through_app() -> None:
    """Make sure this page runs inside the app's shell, under its sidebar and navigation.

    A folder named pages/ next to the main script switches on Streamlit's older multipage
    mode, which runs a page file on its own until the first st.navigation call in the
    server's life (and AppTest switches it back on before every run). So a fresh server's
    first request for /gates, say, would draw that page with no sidebar and no run. Here
    the page draws the shell instead, which runs the page properly, inside this same run
    (a rerun would drop a button's click), and then ends the stray run.
    """
    from streamlit.runtime.pages_manager import PagesManager
    if PagesManager.uses_pages_directory:
        shell()
        st.stop()


def shell() -> None:
    """The app: navigation, the shared sidebar and this session's run, then the chosen page."""
    st.set_page_config(page_title="RNN Gate Explorer", page_icon=":material/cycle:", layout="wide")
    pages = st.navigation([
        st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train",
                default=True),
        st.Page("pages/gates.py", title="Gates", icon=":material/grid_on:", url_path="gates"),
        st.Page("pages/gradients.py", title="Gradients", icon=":material/trending_down:", url_path="gradients"),
        st.Page("pages/step.py", title="Step through", icon=":material/calculate:", url_path="step"),
        st.Page("pages/lessons.py", title="Lessons", icon=":material/school:", url_path="lessons"),
    ], position="top")
    # Less empty space above the page, so a projected lesson shows more of the charts.
    st.html("<style>[data-testid='stMainBlockContainer'] { padding-top: 4.5rem; }</style>")
    with st.sidebar:
        preload()
    config = sidebar()
    if st.session_state.get("present"):
        st.html(f"<style>{PRESENT_CSS}</style>")
    current_run(config)
    pages.run()
    write_link(config)                    # after the page: its choices (sequence, unit...) too


def current_run(config: Config | None) -> Run | None:
    """This session's run, built from config when there is none yet or when it has not
    trained a step (so changing a setting before pressing Train just takes effect)."""
    where = session()
    run = where.run
    untouched = run is not None and run.trainer.steps_done == 0 and run.snapshot().status == Status.IDLE
    if config is not None and (run is None or (untouched and run.trainer.config != config)):
        problem = where.replace(config)
        if problem:
            st.error(f"Could not set up this run: {problem}")
    return where.run
