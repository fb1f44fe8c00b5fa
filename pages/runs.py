"""Runs: the saved runs. Filter by task and cell; open one on every page (continue it if it is
yours); rename or delete yours; download its metrics (CSV), traces (Parquet), config (JSON)
and weights (safetensors). Above them: look inside your own model (pages/your_model.py)."""
import io
import json
import logging

import pandas as pd
import streamlit as st

from explorer import csvsafe
from explorer.cells import CELLS
from explorer.store import RunNotFound, StoreError
from explorer.tasks import TASKS
from pages import keys
from pages.errors import new_ref
from pages.session import live_runs, run_store, session, store_problem
from pages.sidebar import applied_config, take_settings
from pages.your_model import your_model_form

applied_config()                        # runs the page inside the app's shell
where = session()
with st.expander("Look inside your own model", icon=":material/upload_file:",
                 expanded=st.session_state.get(keys.YOURS_MODEL_FILE) is not None):
    your_model_form(where)
store = run_store()
if store is None:
    st.error(f"Saved runs are not available on this server: {store_problem()}")
    st.stop()

ANY = "any"
left, middle, right = st.columns([1, 1, 1.4], vertical_alignment="bottom")
task = left.selectbox("Task", (ANY, *TASKS), key="runs_task")
cell = middle.selectbox("Cell", (ANY, *CELLS), key="runs_cell")
everyone = right.toggle("Everyone's runs on this server (read-only)", key="runs_everyone",
                        help="Off: the runs made in this browser, which you can continue, rename and delete.")
try:
    listed = store.list(task=None if task == ANY else task, cell=None if cell == ANY else cell,
                        owner_key=None if everyone else where.owner_key)
except StoreError as error:
    st.error(f"The saved runs cannot be read: {error}")
    st.stop()

if not listed:
    st.info("No saved runs here yet. A run is saved as it trains: press Train on the Train page, or "
            "Train all on a lesson." if not everyone else "No saved runs match.")
    st.stop()

table = pd.DataFrame([{"name": r.name, "task": r.task, "cell": r.cell, "steps": r.steps, "status": r.status,
                       "held-out loss": r.eval_loss, "metric": r.eval_metric, "held-out sequences": r.eval_sequences,
                       "created": r.created[:16].replace("T", " ")} for r in listed])
st.dataframe(table, hide_index=True, width="stretch", key="runs_table")
st.caption("Held-out loss and metric: the run's weights as saved, on its task's held-out set (1,000 sequences, or "
           "all it has: the digits' 360), the numbers `python -m explorer train` prints. Measured when a run "
           "pauses or ends: empty while it trains, for your own model, and for a run not saved since the "
           "store kept them.")
info = st.selectbox("Run", listed, key="runs_pick", format_func=lambda r: f"{r.name} · {r.steps} steps · {r.id}")
mine = store.owns(info.id, where.owner_key) and not store.read_only     # (a read-only store: shown, never changed)


def _open(run_id: str) -> None:
    run, problem = where.open(run_id, where.owner_key)
    if run is None:
        st.session_state[keys.RUNS_PROBLEM] = problem
        return
    where.adopt(run)
    take_settings(run)
    # your own model is never trained: it opens where it is looked at
    st.session_state[keys.GO_TO] = "pages/train.py" if run.trainer.task.trainable else "pages/gates.py"


if st.session_state.get(keys.RUNS_PROBLEM):
    st.error(f"Could not open that run: {st.session_state.pop(keys.RUNS_PROBLEM)}")

st.markdown(f"### {info.name}")
st.caption(f"{info.task} · {info.cell} · {info.steps} steps · {info.status} · created {info.created} · id {info.id}"
           + ("" if mine else " · read-only: this server's run store cannot be written" if store.read_only
              else " · read-only: made in another browser"))
open_col, rename_col, delete_col = st.columns([1, 2, 1.2], vertical_alignment="bottom")
trainable = TASKS[info.task].trainable if info.task in TASKS else True
open_col.button("Look inside" if not trainable else "Continue it" if mine else "View it", type="primary", key="runs_open", on_click=_open,
                args=(info.id,), width="stretch",
                help="Make it this session's run: every page shows it"
                     + (", and Train continues it." if mine and trainable else "."))
if mine:
    new_name = rename_col.text_input("Name", value=info.name, key=f"runs_name_{info.id}", max_chars=200)
    if new_name.strip() and new_name != info.name:
        try:
            store.rename(info.id, new_name)
        except StoreError as error:
            st.error(str(error))
        else:
            for run in (where.run, *where.lesson_runs.values()):
                if run is not None and run.id == info.id:
                    run.name = new_name.strip()
            st.rerun()
    with delete_col.popover("Delete", icon=":material/delete:", width="stretch"):
        st.write(f"Delete “{info.name}” and everything saved with it? This cannot be undone.")
        if st.button("Delete for good", type="primary", key="runs_delete"):
            held = [r for r in (where.run, *where.lesson_runs.values()) if r is not None and r.id == info.id]
            if held:
                st.error("This is the run the other pages show; Reset it on the Train page (or load another "
                         "run) before deleting it.")
            else:
                try:
                    store.delete(info.id)
                except StoreError as error:
                    st.error(f"Could not delete it: {error}")
                else:
                    # Another tab of this browser may hold it: it stops, and is never saved again.
                    if (live := live_runs().get(info.id)) is not None:
                        live.forget()
                    st.rerun()

st.markdown("**Download**")
files = st.columns(4)
slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in info.name)[:60] or info.id


def _traces() -> bytes:
    out = io.BytesIO()
    store.traces_frame(info.id).to_parquet(out, index=False)
    return out.getvalue()


def _or_why(build):
    """build, run at the click; when the run cannot be read then (its owner deleted it since this
    page listed it, or the store is damaged or busy), a few lines saying so are the file instead.
    A callable that raises gets no file, a generic line under the button for five seconds, and
    two tracebacks in the server's log."""
    def data():
        try:
            return build()
        except RunNotFound:
            return (f"No data: the run {info.name!r} (id {info.id}) was deleted after the Runs page listed it. "
                    "Reload the Runs page to see the runs saved now.\n")
        except StoreError as error:
            logging.getLogger("gate_explorer").warning("download of run %s: %s", info.id, error)
            return (f"No data: the server could not read the run {info.name!r} (id {info.id}) from its run store "
                    "(damaged, or busy with another program). Try again in a moment; if it goes on, tell "
                    "whoever runs this server.\n")
        except Exception:           # unexpected: a reference to the log's traceback, as a page's (pages/errors.py)
            ref = new_ref()
            logging.getLogger("gate_explorer").exception("Something went wrong (ref %s)", ref)
            return f"No data: something went wrong (ref {ref}).\n"
    return data


# Built when a button is pressed (a run's traces are millions of rows), not on every rerun;
# a download reruns nothing, so the other buttons' deferred data stays valid.
files[0].download_button("Metrics (CSV)", _or_why(lambda: csvsafe.to_csv(store.metrics_frame(info.id))),
                         f"{slug}-metrics.csv", "text/csv", key="dl_metrics", on_click="ignore",
                         help="One row per step: losses, metric, gradient norms, each parameter's.")
files[1].download_button("Traces (Parquet)", _or_why(_traces), f"{slug}-traces.parquet",
                         "application/vnd.apache.parquet", key="dl_traces", on_click="ignore",
                         help="Every stored probe: layer, sequence, t, unit, quantity, value, and its step.")
files[2].download_button("Config (JSON)", _or_why(lambda: json.dumps(store.config(info.id).to_dict(), indent=2)),
                         f"{slug}-config.json", "application/json", key="dl_config", on_click="ignore")
files[3].download_button("Weights (.safetensors)", _or_why(lambda: store.weights(info.id)), f"{slug}.safetensors",
                         "application/octet-stream",
                         key="dl_weights", on_click="ignore", help="The model's state_dict (recurrent stack and head).")
st.caption("In a notebook: `pd.read_parquet(traces)`; the same tables from the command line: "
           "`python -m explorer runs export ID --format parquet --out DIR`.")
