"""Store errors on the follow path (issue 33): a follow link whose store cannot be read gives
the follower's page a message and the follow route a JSON reason (503), never a traceback or
a 500. The same through a real server, and the Runs page's downloads, are driven in
tests/browser/test_store_errors_browser.py."""
from __future__ import annotations

import json
import sqlite3

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from explorer.store import RunStore
from tests.test_app import APP, no_exception

OWNER = "a" * 32


@pytest.fixture
def store_path(tmp_path, monkeypatch):
    path = tmp_path / "runs.sqlite"
    monkeypatch.setenv("GATE_EXPLORER_DB", str(path))
    st.cache_resource.clear()
    yield path
    st.cache_resource.clear()


def token_without_follows_table(path) -> str:
    """A follow token made in the store at path, whose `follows` table is then dropped."""
    token = RunStore(path).create_follow("0" * 32, OWNER)
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE follows")
    return token


def test_a_follower_is_told_when_the_follow_links_cannot_be_read(store_path):
    token = token_without_follows_table(store_path)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["follow"] = token
    at.run()
    no_exception(at)
    said = [e.value for e in at.error]
    assert any("cannot be opened now" in text and "run store" in text for text in said), said
    assert not any("Traceback" in text or str(store_path) in text for text in said)
    assert [b.label for b in at.button if b.label == "Train a run of my own"]


def test_the_follow_route_answers_503_with_a_reason_when_the_follow_links_cannot_be_read(store_path):
    from pages import live
    token = token_without_follows_table(store_path)
    status, body, zipped = live.answer(token, None, 0, False, since=-1, have=frozenset())
    assert status == 503 and zipped is None
    reason = json.loads(body)["message"]
    assert "cannot be opened now" in reason and str(store_path) not in reason


def test_an_unexpected_error_in_a_poll_answers_json_with_a_reference_and_logs_it(caplog):
    import asyncio
    import re
    from concurrent.futures import ThreadPoolExecutor

    from starlette.requests import Request

    from pages import live

    def broken(*args):
        raise RuntimeError("a bug in answering")

    scope = {"type": "http", "method": "GET", "scheme": "http", "server": ("127.0.0.1", 8501),
             "path": "/follow-live/abc", "query_string": b"since=-1", "headers": [], "path_params": {"token": "abc"}}
    with caplog.at_level("WARNING", logger="gate_explorer"), ThreadPoolExecutor(1) as thread:
        # On a thread of its own: in a whole suite, the browser tests' Playwright (session-scoped)
        # holds a running event loop on this one, where asyncio.run refuses to start another.
        response = thread.submit(asyncio.run, live._respond(Request(scope), broken)).result(timeout=60)
    assert response.status_code == 500 and response.media_type == "application/json"
    ref = re.fullmatch(r"Something went wrong \(ref ([0-9a-f]{8})\)", json.loads(response.body)["message"]).group(1)
    assert [r for r in caplog.records if ref in r.getMessage() and r.exc_info]    # the traceback, under its ref
