"""A store that cannot be read, through a real server and Chromium (issue 33): a follow link
whose `follows` table is gone answers its poll with 503 and a JSON reason and shows the
follower a message; the Runs page's downloads of a run deleted after the page listed it, or
from a store damaged since, bring a file saying so. None of it leaves a traceback in the
server's log. The server is this module's own: the tests break its store."""
import json
import re
import sqlite3
import urllib.error
import urllib.request

import pytest
from _app import TIMEOUT_MS, AppPage, wait_ready
from _server import Server

from explorer import Config, Trainer
from explorer.store import RunStore, new_id

OWNER = "c" * 32                 # the runs' owner: not the test's browser, which sees them read-only
SMALL = dict(seq_len=12, hidden=8, batch_size=8, probe_every=5, eval_every=5, probe_count=3)
DOWNLOAD_S = 30                  # a download that never comes (today's failure) fails the test in this time


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """This module's server log and screenshots (out/screenshots is the shared server's)."""
    return tmp_path_factory.mktemp("store-errors")


@pytest.fixture(scope="module")
def broken(folder):
    """A server on a store of its own (the tests damage it), and that store's path."""
    path = folder / "runs.sqlite"
    RunStore(path)
    srv = Server(folder / "streamlit.log", env={"GATE_EXPLORER_DB": str(path)})
    try:
        srv.start()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    yield srv, path
    srv.stop()


@pytest.fixture
def tab(browser, broken, folder, request):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = AppPage(context.new_page(), broken[0].url, folder)
    yield page
    call = getattr(request.node, "rep_call", None)
    if call is not None and call.failed:
        page.shot(f"FAILED-{request.node.name}")
    context.close()


def log_since(srv: Server, start: int) -> str:
    return srv.log_path.read_text(errors="replace")[start:]


def save_run(path, name: str) -> str:
    trainer = Trainer(Config(**SMALL))
    for _ in range(3):
        trainer.step()
    run_id = new_id()
    RunStore(path).save(run_id, trainer, owner_key=OWNER, status="paused", name=name)
    return run_id


def runs_page_showing(tab: AppPage, run_id: str) -> None:
    """The Runs page with everyone's runs listed and run_id picked (the newest is)."""
    tab.open()
    tab.go_to("Runs", ".st-key-runs_everyone")
    tab.page.locator(".st-key-runs_everyone").get_by_text("Everyone's runs", exact=False).click()
    tab.page.get_by_text(f"id {run_id}", exact=False).wait_for()      # the picked run's caption
    wait_ready(tab.page, ".st-key-dl_metrics")


def download_text(tab: AppPage, label: str) -> str:
    with tab.page.expect_download(timeout=DOWNLOAD_S * 1000) as got:
        tab.page.get_by_role("button", name=label, exact=True).click()
    return open(got.value.path(), encoding="utf-8").read()


def test_a_follow_link_whose_follows_table_is_gone_answers_503_and_tells_the_follower(broken, tab):
    srv, path = broken
    token = RunStore(path).create_follow("0" * 32, OWNER)
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE follows")
    start = len(srv.log_path.read_text(errors="replace"))

    with pytest.raises(urllib.error.HTTPError) as answered:
        urllib.request.urlopen(f"{srv.url}/follow-live/{token}?since=-1", timeout=30)
    assert answered.value.code == 503
    assert answered.value.headers["Content-Type"] == "application/json"
    reason = json.loads(answered.value.read())["message"]
    assert "cannot be opened now" in reason and str(path) not in reason

    tab.page.goto(f"{srv.url}/?follow={token}")
    tab.page.get_by_text("cannot be opened now").first.wait_for()
    tab.page.get_by_role("button", name="Train a run of my own").wait_for()
    wait_ready(tab.page)
    tab.shot("store-errors-follower")
    assert not tab.problems()
    log = log_since(srv, start)
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]
    assert log.count("follow-live/") == 1 and "no such table: follows" in log, log[-3000:]   # one line a poll


def test_downloading_a_run_deleted_after_the_page_listed_it_brings_a_file_saying_so(broken, tab):
    srv, path = broken
    run_id = save_run(path, "gone soon")
    runs_page_showing(tab, run_id)
    RunStore(path).delete(run_id)                  # its owner deletes it, in their own browser
    start = len(srv.log_path.read_text(errors="replace"))

    for label in ("Metrics (CSV)", "Traces (Parquet)"):
        said = download_text(tab, label)
        assert said.startswith("No data") and "was deleted" in said and run_id in said, said
    assert not tab.problems()
    assert "Traceback" not in log_since(srv, start)


def test_downloading_from_a_store_damaged_after_the_page_listed_the_run_brings_a_file_saying_so(broken, tab):
    srv, path = broken
    run_id = save_run(path, "kept")
    runs_page_showing(tab, run_id)
    for extra in ("-wal", "-shm"):
        path.with_name(path.name + extra).unlink(missing_ok=True)
    path.write_bytes(b"this is not a database " * 200)
    start = len(srv.log_path.read_text(errors="replace"))

    said = download_text(tab, "Config (JSON)")
    assert said.startswith("No data") and "could not read" in said and str(path) not in said, said
    assert not tab.problems()
    log = log_since(srv, start)
    assert "Traceback" not in log, log[-3000:]
    assert len(re.findall(rf"download of run {run_id}", log)) == 1, log[-3000:]
