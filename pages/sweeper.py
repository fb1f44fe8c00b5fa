"""Ended browser sessions are let go of on time, whether or not anyone visits the server after.

Streamlit keeps a closed tab's session in its store of disconnected sessions for
`server.disconnectedSessionTTL` (.streamlit/config.toml: 30 s), in case the tab reconnects. But it
drops an expired one only when that store is next written to, that is when another tab closes:
the session's state and its pages' objects (a run's model and figures among them) stay until
then. A class of six that left, with nobody after it, kept the server at 1,305 MB against a
446 MB baseline for the five minutes it was watched (issue 33). So, while ended sessions wait
in the store, it is swept every SWEEP_S: expired sessions are shut down as Streamlit's own
close_session does, and their memory given back.

The sweep runs on Streamlit's event loop (the server's main thread), where the store is read
and written: it is not thread-safe. It is scheduled there by the hook a session's end calls
(pages/session.py), which runs on that loop: no thread of its own, and no work on a server
nobody has left. Reaching the store takes Streamlit's private attributes (it offers no way
to expire it); where they are not found, the server's log says so once.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time

from explorer.memory import give_back

SWEEP_S = 10.0
NOT_FOUND = ("This Streamlit keeps its disconnected sessions where the app cannot sweep them: an ended "
             "session's memory is let go only when another tab closes (pages/sweeper.py).")

_due: float | None = None    # when the scheduled sweep runs (read and written on the event loop only)
_collect_next = False        # the last sweep let sessions go: collect once more at the next
_warned = False


def expect() -> None:
    """A browser session has ended: sweep the store every SWEEP_S until it holds none. Called on
    Streamlit's event loop, which runs on the server's main thread; anywhere else (a script's
    thread, a test) it does nothing, and the next session to end schedules it."""
    global _due
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    now = time.monotonic()
    if _due is None or now > _due + SWEEP_S:     # (one that never ran, its loop gone, is replaced)
        _due = now + SWEEP_S
        loop.call_later(SWEEP_S, _sweep)


def disconnected_sessions():
    """Streamlit's store of disconnected sessions: the TTL cache inside its MemorySessionStorage
    (streamlit/runtime/memory_session_storage.py), or None where it is kept otherwise."""
    from streamlit.runtime import Runtime
    if not Runtime.exists():
        return None
    storage = getattr(getattr(Runtime.instance(), "_session_mgr", None), "_session_storage", None)
    cache = getattr(storage, "_cache", None)
    return cache if callable(getattr(cache, "expire", None)) else None


def sweep() -> int:
    """Shut down the stored sessions whose time is up, and give their memory back; how many.
    The sweep after one that let sessions go collects again: what a session's end still held
    then (its runs' saves, a run's reload grace: pages/session.py) lets go within seconds.
    On Streamlit's event loop only."""
    global _warned, _collect_next
    store = disconnected_sessions()
    if store is None:
        if not _warned:
            _warned = True
            logging.getLogger("gate_explorer").warning(NOT_FOUND)
        return 0
    count = _shut_down_expired(store)
    if count or _collect_next:
        gc.collect()                  # a session's objects sit in reference cycles
        give_back()
    _collect_next = count > 0
    return count


def _shut_down_expired(store) -> int:
    """Shut down the sessions whose time is up, as Streamlit's close_session does (their uploads
    and media go too); how many. (A function of its own: nothing of theirs is left on the
    caller's frame when it collects.)"""
    expired = store.expire()
    for _, info in expired:
        info.session.shutdown()
    return len(expired)


def _sweep() -> None:
    global _due
    _due = None
    try:
        gone = sweep()
    except Exception:   # noqa: BLE001 - the loop would only print it; the next session's end retries
        logging.getLogger("gate_explorer").exception("sweeping ended sessions failed")
        return
    store = disconnected_sessions()
    if gone or (store is not None and any(True for _ in store)):
        expect()                      # more sessions wait there, or one more collection is due
