"""tests/wsclient.py against the real app: a session over Streamlit's websocket, no Chromium.

One server; a client on the Train page presses Train, and its step counter advances through
the page's polls of /train-live/ (pages/live.py); Pause stops them and the live fragment's timer; unchanged large elements come
back as references to its cache; a second client is a session of its own.
"""
from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from _server import Server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wsclient import FRAGMENT, StreamlitClient  # noqa: E402

# Enough steps that the run cannot end during the test, whatever the machine's speed.
QUERY = "steps=5000&hidden=16"
WAIT = 60.0          # s for anything to show up: two noisy cores, torch warming up in the server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wsclient")
    srv = Server(tmp / "streamlit.log", env={"GATE_EXPLORER_DB": str(tmp / "runs.sqlite")})
    try:
        srv.start()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    yield srv
    srv.stop()


def run(coro, timeout: float = 120.0):
    """asyncio.run on a thread of its own: an earlier test may leave this thread's loop running."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coro, timeout)).result(timeout + 10)


def step(client: StreamlitClient) -> int:
    return int(client.metrics.get("Step", "-1"))


async def ready(client: StreamlitClient) -> None:
    """Connected, and the page's first run finished, Train drawn."""
    await client.connect()
    await client.wait_for(lambda c: c.full_runs() and not c.running and "Train" in c.buttons, WAIT,
                          "the first run")


async def pressed(client: StreamlitClient, label: str) -> None:
    """Press a button and wait for the full run it causes to finish."""
    before = len(client.full_runs())
    await client.click(label, timeout=WAIT)
    await client.wait_for(lambda c: len(c.full_runs()) > before and not c.running, WAIT, f"the run after {label}")


async def scenario(url: str) -> dict:
    a = StreamlitClient(url, query=QUERY, name="a")
    b = StreamlitClient(url, query=QUERY, name="b")
    try:
        await ready(a)
        assert a.session_id and a.page_script_hash and a.widgets, "no session, page or widgets after the first run"
        assert a.page_not_found == [] and step(a) == 0, (a.page_not_found, a.metrics)

        # Train: the page polls the owner's route, and the step counter advances by its answers
        # (the live fragment keeps a slow timer, to catch what only a rerun shows)
        await pressed(a, "Train")
        assert a.auto_reruns, "no fragment timer after Train"
        trained_at = time.monotonic()
        await a.wait_for(lambda c: len({v for at, v in c.metric_values("Step") if at > trained_at}) >= 4
                         and len([t for t, status in c.polls if t > trained_at and status == 200]) >= 3, WAIT,
                         "the step counter to advance through the page's polls")
        live = [int(v) for at, v in a.metric_values("Step") if at > trained_at]
        assert live == sorted(live) and live[-1] > live[0], f"the step went back or stood still: {live}"
        fragment_finishes = [(status, ids) for at, status, ids in a.finished if at > trained_at and status == FRAGMENT]
        assert all(ids for _, ids in fragment_finishes), "a fragment run's script_finished named no fragment"
        # The fragment's own timer (every 10 s while the page polls) still reruns it
        await a.wait_for(lambda c: c.auto_reruns_sent >= 1, WAIT, "a timed rerun of the live fragment")

        # Pause: the run holds its step, the timer stops, no more fragment runs
        await pressed(a, "Pause")
        await a.wait_for(lambda c: c.metrics.get("Status") == "paused", WAIT, "the Paused status")
        held, paused_at = step(a), time.monotonic()
        await asyncio.sleep(2.0)
        assert step(a) == held, f"the step moved while paused: {held} -> {step(a)}"
        assert not a.auto_reruns, f"a fragment timer outlived the pause: {a.auto_reruns}"
        assert not [t for t in a.fragment_runs() if t > paused_at + 0.5], "fragment runs went on after the pause"
        assert not [t for t, _ in a.polls if t > paused_at + 0.5], "the page went on polling after the pause"

        # Reruns after the pause: the large unchanged elements come back as references
        refs, hashes = a.ref_hits, len(a._cache)
        assert hashes, "nothing cacheable was ever sent"
        await pressed(a, "Step")
        # the Step's run polls until the step is done, then redraws the page once
        await a.wait_for(lambda c: step(c) == held + 1 and not c.running and not c.auto_reruns, WAIT,
                         "one more step after Step, and the page at rest")
        runs = len(a.full_runs())
        assert await a.rerun(), "a rerun was refused while no run was in progress"
        await a.wait_for(lambda c: len(c.full_runs()) > runs and not c.running, WAIT, "the rerun")
        assert a.ref_hits > refs, f"no reference messages after the pause ({a.ref_hits} in all, {hashes} cached)"

        # A second client: a session and a run of its own
        await ready(b)
        assert b.session_id != a.session_id
        assert step(b) == 0 and step(a) == held + 1, (b.metrics, a.metrics)
        await pressed(b, "Train")
        b_from = time.monotonic()
        await b.wait_for(lambda c: step(c) >= 3 and len([t for t, _ in c.polls if t > b_from]) >= 2, WAIT,
                         "the second client's run to train")
        assert step(a) == held + 1 and not a.auto_reruns, "the second client's run moved the first's"
        await pressed(b, "Pause")

        assert a.errors == [] and b.errors == [], (a.errors, b.errors)
        return {"a": a, "b": b}
    finally:
        await a.close()
        await b.close()


def test_wsclient_drives_the_train_page(server):
    clients = run(scenario(server.url))
    a = clients["a"]
    assert a.closed and a.bytes_received > 0 and a.messages > 0 and a.ref_hits > 0
    assert a.bytes_per_kind.get("delta", 0) > 0 and "ref_hash" in a.bytes_per_kind
    assert "Traceback" not in server.log_tail(200_000), server.log_tail()
