"""The server's log: one quiet line, not a traceback, when a tab closes mid-send.

When a tab closes while the server is sending it a message, Starlette marks the websocket
disconnected, and Streamlit's websocket code (`streamlit/web/server/starlette/
starlette_websocket.py`) then trips over Starlette's `WebSocketDisconnected`, a RuntimeError it
does not expect, in one of two places:
- its writer logs "Error sending websocket payload" with a traceback;
- its endpoint takes the RuntimeError from the next receive for a text frame, calls close()
  on the closed socket, which raises again, and uvicorn logs "Exception in ASGI application"
  with both tracebacks.
Nothing is lost: the endpoint's own `finally` disconnects the session as for any closed tab.
But a teacher watching the server's console while a class closes its laptops reads a
traceback as a crash (the load test saw one in about three cohorts of ten tabs closing at
once). So a record whose exception is a `WebSocketDisconnected` raised through Streamlit's
websocket code becomes one line at INFO; every other record passes as it is.
"""
from __future__ import annotations

import logging
import traceback
from pathlib import PurePath

WEBSOCKET_LOGGER = "streamlit.web.server.starlette.starlette_websocket"
ASGI_LOGGER = "uvicorn.error"        # where uvicorn logs an exception that escaped the app
WEBSOCKET_CODE = ("streamlit", "web", "server", "starlette", "starlette_websocket.py")
CLOSED_TAB = "A tab closed while a message was on its way to it; the message was dropped."


def _through_streamlit_websocket(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return any(PurePath(frame.filename).parts[-len(WEBSOCKET_CODE):] == WEBSOCKET_CODE for frame in frames)


class ClosedTabSend(logging.Filter):
    """Turns a closed tab's record into one INFO line; every other record passes as is."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if type(error).__name__ == "WebSocketDisconnected" and _through_streamlit_websocket(error):
            record.msg, record.args = CLOSED_TAB, ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_closed_tab_sends() -> None:
    """Install the filter on Streamlit's websocket logger and uvicorn's (once each)."""
    for name in (WEBSOCKET_LOGGER, ASGI_LOGGER):
        logger = logging.getLogger(name)
        if not any(isinstance(f, ClosedTabSend) for f in logger.filters):
            logger.addFilter(ClosedTabSend())
