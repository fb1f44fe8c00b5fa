"""Never a traceback in the app (AppTest): every bad model or sequence file uploaded on the Runs
page is a plain message naming the user's file, with no stException, no "Traceback" and no
server path; the csv task says once what it waits for, names a bad upload by its own name, and
the Train page says which run it shows; and an exception no page expected shows "Something went
wrong (ref …)" while the server logs its traceback under the same reference. Streamlit's
st.stop and st.rerun pass."""
import logging
import re
from pathlib import Path

import pytest
import streamlit as st
from bad_files import bad_models, bad_sequences, real_model_bytes
from streamlit.testing.v1 import AppTest
from test_app import APP, app, fresh_session, no_exception  # noqa: F401 (autouse: a store per test)
from test_hostile import series_csv

import pages.your_model
from pages import keys

ROOT = Path(__file__).resolve().parents[1]
BAD_MODELS = bad_models()
BAD_SEQUENCES = bad_sequences()
REF = re.compile(r"Something went wrong \(ref ([0-9a-f]{8})\)")


def page_text(at: AppTest) -> str:
    """Everything the page sends (every element's protobuf, main column and sidebar) as text."""
    def walk(node):
        yield str(getattr(node, "proto", ""))
        for child in getattr(node, "children", {}).values():
            yield from walk(child)
    return "\n".join([*walk(at.main), *walk(at.sidebar)])


def assert_no_traceback(at: AppTest, tmp_path: Path) -> None:
    no_exception(at)
    shown = page_text(at)
    for leak in ("Traceback", "/tmp/", str(tmp_path), str(ROOT), "site-packages", 'File "'):
        assert leak not in shown, leak


def runs_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    return at.switch_page("pages/runs.py").run()


def upload(at: AppTest, key: str, name: str, raw: bytes) -> AppTest:
    return at.file_uploader(key=key).set_value((name, raw, "application/octet-stream")).run()


@pytest.mark.slow
def test_every_bad_model_file_is_a_plain_message_naming_it(tmp_path):
    at = runs_page()
    for name, (raw, words) in sorted(BAD_MODELS.items()):
        upload(at, keys.YOURS_MODEL_FILE, name, raw)
        assert_no_traceback(at, tmp_path)
        errors = [e.value for e in at.error]
        assert any(e.startswith(f"This model can't be used: {name} ") and words in e for e in errors), (name, errors)


@pytest.mark.slow
def test_every_bad_sequence_file_is_a_plain_message_naming_it(tmp_path):
    at = upload(runs_page(), keys.YOURS_MODEL_FILE, "good.pt", real_model_bytes(".pt"))
    assert any("Found LSTM, 1 layer × 5 units" in s.value for s in at.success)
    for name, (raw, words) in sorted(BAD_SEQUENCES.items()):
        upload(at, keys.YOURS_SEQUENCES_FILE, name, raw)
        at.button(key="yours_open").click().run()
        assert_no_traceback(at, tmp_path)
        errors = [e.value for e in at.error]
        assert any(name in e and words in e for e in errors), (name, errors)


# -- an exception no page expected ---------------------------------------------------------------------

@pytest.fixture
def server_log(caplog):
    """The records of pages/errors.py's logger (Streamlit's loggers do not propagate to the root)."""
    logger = logging.getLogger("pages.errors")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def logged_refs(log) -> list:
    return [r for r in log.records if r.name == "pages.errors"]


def test_an_unexpected_exception_in_a_page_is_a_reference_and_the_log_has_its_traceback(
        monkeypatch, server_log, tmp_path):
    def broken_form(where):
        raise RuntimeError(f"secret detail at {tmp_path}/internal.py")
    monkeypatch.setattr(pages.your_model, "your_model_form", broken_form)
    at = runs_page()
    assert_no_traceback(at, tmp_path)
    shown = [e.value for e in at.error]
    found = [REF.fullmatch(e) for e in shown]
    assert [m for m in found if m], shown
    ref = next(m for m in found if m)[1]
    assert "secret detail" not in page_text(at)
    # The server's log: the same reference, with the traceback and the exception's own words.
    records = [r for r in logged_refs(server_log) if ref in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.ERROR
    logged = server_log.handler.format(records[0])
    assert "Traceback" in logged and "broken_form" in logged and "secret detail" in logged


def test_st_stop_and_st_rerun_in_a_page_pass_through_the_handler(monkeypatch, server_log):
    def stops(where):
        st.markdown("before the stop")
        st.stop()

    monkeypatch.setattr(pages.your_model, "your_model_form", stops)
    at = runs_page()
    no_exception(at)
    assert any(m.value == "before the stop" for m in at.markdown)
    assert not [e for e in at.error if REF.search(e.value)] and not logged_refs(server_log)

    def reruns_once(where):
        if not st.session_state.get("reran"):
            st.session_state["reran"] = True
            st.rerun()
        st.markdown("after the rerun")

    monkeypatch.setattr(pages.your_model, "your_model_form", reruns_once)
    at.run()
    no_exception(at)
    assert at.session_state["reran"] and any(m.value == "after the rerun" for m in at.markdown)
    assert not [e for e in at.error if REF.search(e.value)] and not logged_refs(server_log)


# -- the csv task -----------------------------------------------------------------------------------

def alerts(at: AppTest) -> list[str]:
    return [e.value for kind in (at.error, at.warning, at.info) for e in kind]


def train_lines(at: AppTest) -> list[str]:
    return [m.value for m in at.main.markdown] + [c.value for c in at.main.caption]


def test_the_csv_task_before_an_upload_says_so_once_and_the_train_page_says_what_it_shows(tmp_path):
    at = app()                                                    # the adding task's run
    assert "Adding" in at.markdown[0].value
    at.sidebar.selectbox(key="cfg_task").set_value("csv").run()
    assert_no_traceback(at, tmp_path)
    assert alerts(at) == ["Upload a CSV file to train on it."]    # once, not once per current_run
    lines = train_lines(at)
    assert "Adding" in lines[0]                                   # the run shown is still adding's...
    assert any("Shown: the previous run" in line and "csv task" in line and "CSV file" in line
               for line in lines), lines                          # ...and the page says so


def test_a_bad_csv_upload_is_one_message_naming_the_users_file_not_the_servers_path(tmp_path):
    at = app()
    at.sidebar.selectbox(key="cfg_task").set_value("csv").run()
    at.file_uploader(key="cfg_csv_upload").set_value(("my data.csv", b"a,b\n1,x\n2,3\n", "text/csv")).run()
    assert_no_traceback(at, tmp_path)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and len(at.sidebar.error) == 1, errors
    assert "my data.csv" in errors[0] and "not numeric" in errors[0], errors
    assert "gate-explorer-" not in " ".join(alerts(at) + train_lines(at))   # the upload folder's name
    assert any("Shown: the previous run" in line and "my data.csv" in line for line in train_lines(at))
    at.file_uploader(key="cfg_csv_upload").set_value(("good.csv", series_csv().encode(), "text/csv")).run()
    no_exception(at)
    assert not at.error and at.markdown[0].value.startswith("#### Csv ·"), at.markdown[0].value
    assert not any("Shown: the previous run" in line for line in train_lines(at))
