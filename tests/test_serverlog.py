"""A tab closing while the server sends to it (the race seen in the load test): Streamlit's real
websocket writer and endpoint over a real Starlette WebSocket whose connection goes away."""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from starlette.websockets import WebSocket
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.web.server.starlette.starlette_websocket import StarletteSessionClient, create_websocket_handler

from pages.serverlog import ASGI_LOGGER, CLOSED_TAB, WEBSOCKET_LOGGER, ClosedTabSend, quiet_closed_tab_sends

SCOPE = {"type": "websocket", "path": "/_stcore/stream", "headers": [(b"host", b"127.0.0.1:8501")],
         "query_string": b"", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8501), "scheme": "ws"}


def run_async(coro) -> None:
    """Run coro on a thread of its own: an earlier test (Playwright's sync API) can leave this
    thread's event loop running, and asyncio.run refuses to start inside it."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


async def send_after_close() -> None:
    """Accept a websocket, close it (the tab went away), then let Streamlit send to it."""
    sent = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message["type"])

    websocket = WebSocket(SCOPE, receive, send)
    await websocket.accept()
    client = StarletteSessionClient(websocket)
    await websocket.close()
    msg = ForwardMsg()
    msg.script_finished = ForwardMsg.FINISHED_SUCCESSFULLY
    client.write_forward_msg(msg)
    for _ in range(50):                      # the writer is a task of its own
        await asyncio.sleep(0.01)
        if client._closed.is_set():
            break
    assert sent == ["websocket.accept", "websocket.close"]      # nothing went out after the close


class Runtime:
    """The part of Streamlit's runtime its websocket endpoint calls: a session that sends the
    browser its first message as soon as it connects."""

    def __init__(self):
        self.disconnected = []

    def connect_session(self, client, user_info, existing_session_id):
        msg = ForwardMsg()
        msg.script_finished = ForwardMsg.FINISHED_SUCCESSFULLY
        client.write_forward_msg(msg)
        return "session-1"

    def handle_backmsg(self, session_id, back_msg, client=None):
        pass

    def disconnect_session(self, session_id, client=None):
        self.disconnected.append(session_id)


async def endpoint_after_the_tab_went(runtime: Runtime) -> None:
    """Streamlit's endpoint, where the tab goes away as the first message is sent to it; the
    exception that escapes is logged as uvicorn logs it."""
    connected = False

    async def receive():
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        await asyncio.sleep(0.1)                    # the first message goes out meanwhile, and fails
        return {"type": "websocket.receive", "bytes": b""}

    async def send(message):
        if message["type"] == "websocket.send":
            raise OSError("the tab has gone")      # Starlette marks the socket disconnected

    endpoint = create_websocket_handler(runtime)
    try:
        await asyncio.wait_for(endpoint(WebSocket(SCOPE, receive, send)), 5)
    except Exception:   # noqa: BLE001 - what uvicorn does with it
        logging.getLogger(ASGI_LOGGER).exception("Exception in ASGI application\n")


@pytest.fixture
def websocket_log():
    loggers = [logging.getLogger(WEBSOCKET_LOGGER), logging.getLogger(ASGI_LOGGER)]
    handler, filters = Records(), [list(logger.filters) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield loggers[0], handler.records
    finally:
        for logger, kept in zip(loggers, filters):
            logger.removeHandler(handler)
            logger.filters[:] = kept


def without_filter() -> None:
    for name in (WEBSOCKET_LOGGER, ASGI_LOGGER):
        logger = logging.getLogger(name)
        logger.filters[:] = [f for f in logger.filters if not isinstance(f, ClosedTabSend)]


def test_without_the_filter_streamlit_logs_the_closed_tab_as_an_error_with_a_traceback(websocket_log):
    logger, records = websocket_log
    without_filter()
    run_async(send_after_close())
    (record,) = records
    assert record.levelno == logging.ERROR and record.exc_info
    assert type(record.exc_info[1]).__name__ == "WebSocketDisconnected"


def test_with_the_filter_it_is_one_info_line_and_other_errors_keep_their_tracebacks(websocket_log):
    logger, records = websocket_log
    quiet_closed_tab_sends()
    without_filter()
    quiet_closed_tab_sends()
    quiet_closed_tab_sends()                                    # installed once
    assert sum(isinstance(f, ClosedTabSend) for f in logger.filters) == 1
    run_async(send_after_close())
    (record,) = records
    assert record.levelno == logging.INFO and record.exc_info is None
    assert logging.Formatter().format(record) == CLOSED_TAB     # one line, no traceback
    try:
        raise ValueError("something else")
    except ValueError:
        logger.exception("Error sending websocket payload")
    assert records[-1].levelno == logging.ERROR and records[-1].exc_info      # not hidden


def test_the_endpoint_tripping_over_a_gone_tab_is_one_info_line_and_the_session_still_ends(websocket_log):
    _, records = websocket_log
    without_filter()
    runtime = Runtime()
    run_async(endpoint_after_the_tab_went(runtime))
    assert runtime.disconnected == ["session-1"]                # Streamlit's finally ran: nothing kept
    (record,) = [r for r in records if r.name == ASGI_LOGGER]
    assert record.levelno == logging.ERROR and type(record.exc_info[1]).__name__ == "WebSocketDisconnected"
    records.clear()
    quiet_closed_tab_sends()
    runtime = Runtime()
    run_async(endpoint_after_the_tab_went(runtime))
    assert runtime.disconnected == ["session-1"]
    (record,) = [r for r in records if r.name == ASGI_LOGGER]
    assert record.levelno == logging.INFO and logging.Formatter().format(record) == CLOSED_TAB


def test_the_app_installs_the_filter():
    import pages.session  # noqa: F401 - the server-wide set-up runs on import
    for name in (WEBSOCKET_LOGGER, ASGI_LOGGER):
        assert any(isinstance(f, ClosedTabSend) for f in logging.getLogger(name).filters)
