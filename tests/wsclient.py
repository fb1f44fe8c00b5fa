"""A Streamlit session without a browser: Streamlit's own websocket protocol, rendering nothing.

For load tests that need more sessions than a small machine can run Chromium tabs. Each
client asks the server for exactly the reruns a browser tab would, with the same messages, so
the server does the same work as for a tab; what it sends back is decoded, not drawn.

    client = StreamlitClient("http://127.0.0.1:8501", path="", query="steps=400&hidden=16")
    await client.connect()                      # the page's first run
    await client.wait_for(lambda c: "Train" in c.buttons, timeout=60)
    await client.click("Train")                 # waits for the button, presses it
    await client.wait_for(lambda c: int(c.metrics.get("Step", 0)) >= 50, timeout=60)
    await client.close()

API: StreamlitClient(base_url, path="", query="", name="client", *, timezone, timezone_offset,
locale, color_scheme, preflight=True); await connect(timeout); await click(label, timeout);
await rerun() (the R key: only when no run is in progress); await wait_for(predicate, timeout,
what) (checked after every message; TimeoutError, or ConnectionError once the connection has
ended); await close(). Also an async context manager.

Only 127.0.0.1 / localhost / ::1 are accepted, never through a proxy. Everything waits at most
a given time.

Checked against Chromium on this app (not in the test suite): on each of its seven pages the
first rerun_script and a full rerun carried the same fields, widget states and byte count as
Chromium's (apart from the hashes held); and Chromium's received frames fed to this client's
handler gave, at each of the 40 frames Chromium sent in a Train / Pause / Step / Resume
session, the same cached hashes (in order), widget states, query, page, url and fragment timer.

What is mirrored, from Streamlit 1.67's frontend (static/js/index.*.js, read for this module)
-------------------------------------------------------------------------------------------
* Connection: an HTTP GET of the page's address first (the tab loads index.html, and gets the
  `_streamlit_xsrf` cookie there), then `/_stcore/health` and `/_stcore/host-config` (the
  frontend pings both before it connects), then a websocket to `/_stcore/stream` with the
  subprotocols `["streamlit", <xsrf cookie or "PLACEHOLDER_AUTH_TOKEN">]`, the Origin and
  Cookie headers a same-origin tab sends, permessage-deflate offered (as Chromium does; the
  server takes it only with server.enableWebsocketCompression), and no client pings (a
  browser only answers the server's).
* Every rerun is a `rerun_script` BackMsg with a ClientState like the frontend's
  `sendRerunBackMsg`: query_string (no "?"); page_name = the URL path on the first run and
  page_script_hash empty, later page_script_hash = the page the server last said it runs
  (new_session / navigation / page_not_found) and page_name empty; widget_states (always
  present); fragment_id and is_auto_rerun for a fragment's timer; cached_message_hashes; and
  context_info: timezone, timezone_offset, locale, url, is_embedded, color_scheme. The url is
  the address without its query or fragment, as the frontend sends it, and follows the
  address bar: after a `navigation` message the default page's address becomes the app's root
  (`/`), as the frontend's history.pushState makes it.
* The query string: the one asked for, then each `page_info_changed`'s.
* ForwardMsg cache: every message with metadata.cacheable is kept by its hash; `ref_hash`
  messages are answered from it (a miss is a protocol error); entries expire as the
  frontend's ForwardMessageCache expires them (age in finished runs above the session's
  max_cached_message_age; a fragment run ages only that fragment's entries; a run counts only
  if its new_session came after this client's last rerun request), and every rerun lists the
  hashes held, in insertion order.
* Fragment timers (`auto_rerun`): one repeating timer per fragment, like setInterval: a tick
  sends a rerun of that fragment (is_auto_rerun true, all widget states) whether or not a run
  is in progress; the same interval again keeps the timer, another one restarts it;
  `stop_auto_rerun` stops the fragments named; a full run's new_session stops them all (the
  server restarts the ones still wanted).
* Widget states: like the frontend's WidgetStateManager, each widget's value is taken when its
  element first arrives (its default, or its value when the element has set_value) and sent
  with every rerun; a widget whose element was not drawn again by a finished run (or, for a
  fragment run, a widget of that fragment) is dropped; a button press adds a trigger_value for
  that one rerun, and reruns the button's fragment if it is in one. Derived as the frontend
  derives them for: checkbox/toggle, number_input, selectbox, radio, multiselect, text_input,
  text_area, slider/select_slider, file_uploader (empty). Other widget kinds are not sent (this
  app has none); the server then keeps the value it holds, which is the one a browser echoes.
  The order of the states can differ from a tab's (a tab's follows the order its lazily
  loaded widget components mounted in); the server does not depend on it.
* No app heartbeats: a standalone tab sends them only when a host frame asks.
* The follow poll (pages/live.py, pages/charts.py's `follow`): when the app's chart element
  carries a "poll", the client asks that route as the element's JavaScript does: every
  every_ms after the previous answer's start, with since (the step shown) and have (the
  figures' versions shown), over one keep-alive HTTP/1.1 connection accepting gzip; a 200
  brings the new step, a 204 nothing new; a head whose status is not "running", or any
  other answer, stops it until the element is drawn again, and sends the element's
  "stopped" trigger as setTriggerValue does: a rerun of its fragment with the event.

Not mirrored: static files (JS, CSS, fonts, the charts' Plotly script), the browser's
rendering and its timing (a busy tab's timers fire late; these fire on time), URL-bound
widgets' seeding from the address, history navigation, forms, uploads, page switching.

What it records (plain attributes; times from time.monotonic())
--------------------------------------------------------------------
finished       [(time, status, fragment_ids)] for every script_finished: status is
               ForwardMsg.FINISHED_SUCCESSFULLY (0, full run), FINISHED_FRAGMENT_RUN_SUCCESSFULLY
               (3), FINISHED_EARLY_FOR_RERUN (2) or FINISHED_WITH_COMPILE_ERROR (1);
               full_runs() and fragment_runs() pick them out.
bytes_received, messages, ref_hits, bytes_per_kind {message kind: bytes}
metrics        {label: latest value} of every st.metric; metric_times [(time, label, value)]
               (a follower's chart element's step counts as the metric "Step", as it shows)
polls          [(time, HTTP status)] of every follow poll answered; poll_messages: the
               messages of answers other than 200 and 204 (403: the link was revoked)
texts          the markdown, caption, heading, alert, toast, progress and exception texts on
               the page now (a property); find(substring) returns the first one holding it
errors         strings: tracebacks (exception elements), st.error boxes, compile errors, a
               dropped connection, protocol errors. An error box re-sent unchanged at the same
               place by a later run is not counted again.
page_not_found the page names of page_not_found messages (the browser shows a dialog)
buttons        {label: Button} of the buttons on the page now
auto_reruns    {fragment id: interval s} of the fragment timers running now
widgets        {widget id: WidgetState} that the next rerun sends
running, session_id, script_run_id, page_script_hash, query, url, reruns_sent, auto_reruns_sent
"""
from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import time
import urllib.request
from dataclasses import dataclass
from typing import Callable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import websockets
from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.NumberInput_pb2 import NumberInput
from streamlit.proto.Slider_pb2 import Slider
from streamlit.proto.WidgetStates_pb2 import WidgetState

FULL = ForwardMsg.FINISHED_SUCCESSFULLY
FRAGMENT = ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY
EARLY = ForwardMsg.FINISHED_EARLY_FOR_RERUN
COMPILE_ERROR = ForwardMsg.FINISHED_WITH_COMPILE_ERROR
ERROR_FORMAT = Alert.Format.ERROR
PLACEHOLDER_AUTH_TOKEN = "PLACEHOLDER_AUTH_TOKEN"   # the frontend's subprotocol without an xsrf cookie
XSRF_COOKIE = "_streamlit_xsrf"
HTTP_TIMEOUT = 15.0
# A components-v2 element's events go to one widget: "<internal prefix>_<component id>__events".
TRIGGER_PREFIX = "$$STREAMLIT_INTERNAL_KEY_"
DEFAULT_MAX_CACHED_MESSAGE_AGE = 2    # Streamlit's global.maxCachedMessageAge, until new_session says
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # never through a proxy


@dataclass
class Button:
    label: str
    id: str
    fragment_id: str        # "" outside a fragment
    disabled: bool


@dataclass
class _Placed:
    """What the client keeps of an element at one place of the page."""
    kind: str
    text: str
    run_id: str
    fragment_id: str
    widget_id: str = ""


@dataclass
class _Cached:
    msg: ForwardMsg
    run_count: int
    fragment_id: str


def _loopback(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    ok = host == "localhost"
    try:
        ok = ok or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if parts.scheme != "http" or not ok or parts.port is None:
        raise ValueError(f"StreamlitClient talks only to http://127.0.0.1:PORT (or localhost), not {base_url!r}")
    return host, parts.port


def _initial_widget_state(element: Element) -> WidgetState | None:
    """The value the frontend's widget takes when its element first arrives (or arrives with
    set_value): its getDefaultStateFromProto / getCurrStateFromProto, as updateWidgetMgrState
    stores it. None for a kind this client does not send."""
    kind = element.WhichOneof("type")
    w = getattr(element, kind) if kind else None
    state = WidgetState()
    if kind == "checkbox":                                  # st.checkbox, st.toggle
        state.id = w.id
        state.bool_value = w.value if w.set_value else w.default
    elif kind == "number_input":
        state.id = w.id
        if w.set_value:
            value = w.value if w.HasField("value") else (w.default if w.HasField("default") else None)
        else:
            value = w.default if w.HasField("default") else None
        if value is not None:
            if w.data_type == NumberInput.INT:
                state.int_value = int(value)
            else:
                state.double_value = value
    elif kind in ("selectbox", "radio"):
        state.id = w.id
        if w.set_value:
            value = w.raw_value if w.HasField("raw_value") else None
        else:
            value = w.options[w.default] if w.options and w.HasField("default") and w.default < len(w.options) else None
        if value is not None:
            state.string_value = value
    elif kind in ("text_input", "text_area"):
        state.id = w.id
        if w.set_value:
            value = w.value if w.HasField("value") else None
        else:
            value = w.default if w.HasField("default") else None
        if value is not None:
            state.string_value = value
    elif kind == "slider":                                  # st.slider, st.select_slider
        state.id = w.id
        if w.type == Slider.SELECT_SLIDER:
            default = [int(i) for i in w.default]
            if w.set_value and len(w.raw_value):
                indices = [w.options.index(v) if v in w.options else (default[i] if i < len(default) else 0)
                           for i, v in enumerate(w.raw_value)]
            else:
                indices = default
            state.string_array_value.data.extend(w.options[i] if 0 <= i < len(w.options) else "" for i in indices)
        else:
            values = [v for v in (w.value if w.set_value else w.default) if v == v]   # NaN dropped
            if not values:
                return None
            state.double_array_value.data.extend(values)
    elif kind == "multiselect":
        state.id = w.id
        state.string_array_value.SetInParent()
        state.string_array_value.data.extend(
            w.raw_values if w.set_value else [w.options[i] if 0 <= i < len(w.options) else "" for i in w.default])
    elif kind == "file_uploader":
        state.id = w.id
        state.file_uploader_state_value.SetInParent()       # no files
    else:
        return None
    return state


def _text_of(element: Element) -> tuple[str, str]:
    """(kind, text) of an element, text "" when it shows none this client keeps."""
    kind = element.WhichOneof("type") or ""
    if kind == "markdown":
        return kind, element.markdown.body
    if kind == "alert":
        return kind, element.alert.body
    if kind == "heading":
        return kind, element.heading.body
    if kind == "toast":
        return kind, element.toast.body
    if kind == "progress":
        return kind, element.progress.text
    if kind == "exception":
        return kind, f"{element.exception.type}: {element.exception.message}"
    return kind, ""


class StreamlitClient:
    """One Streamlit session over the websocket, asking for the reruns a browser tab would.

    base_url: http://127.0.0.1:PORT; path: the page's URL path ("" for the default page, served
    at the root; "gates"); query: the address's query string, without "?"."""

    def __init__(self, base_url: str, path: str = "", query: str = "", name: str = "client", *,
                 timezone: str = "UTC", timezone_offset: int = 0, locale: str = "en-US",
                 color_scheme: str = "light", preflight: bool = True):
        self.host, self.port = _loopback(base_url)
        self.base_url = base_url.rstrip("/")
        self.path = path.strip("/")
        self.query = query.lstrip("?")
        self.name = name
        self.timezone, self.timezone_offset, self.locale = timezone, timezone_offset, locale
        self.color_scheme, self.preflight = color_scheme, preflight
        self.url = f"{self.base_url}/{quote(self.path)}"      # the address bar, without its query
        # what it records
        self.finished: list[tuple[float, int, tuple[str, ...]]] = []
        self.bytes_received = 0
        self.messages = 0
        self.ref_hits = 0
        self.bytes_per_kind: dict[str, int] = {}
        self.metrics: dict[str, str] = {}
        self.metric_times: list[tuple[float, str, str]] = []
        self.errors: list[str] = []
        self.polls: list[tuple[float, int]] = []
        self.poll_messages: list[str] = []
        self.page_not_found: list[str] = []
        self.buttons: dict[str, Button] = {}
        self.widgets: dict[str, WidgetState] = {}
        self.running = False
        self.session_id = ""
        self.script_run_id = ""
        self.fragment_ids_this_run: tuple[str, ...] = ()
        self.page_script_hash = ""
        self.main_script_hash = ""
        self.reruns_sent = 0
        self.auto_reruns_sent = 0
        self.connected_at: float | None = None
        self.closed = False
        # the frontend's state
        self._cache: dict[str, _Cached] = {}
        self._cache_run_count = 0
        self._max_cached_message_age = DEFAULT_MAX_CACHED_MESSAGE_AGE
        self._session_set = False
        self._received_new_session = False      # the frontend's hasReceivedNewSession
        self._placed: dict[tuple[int, ...], _Placed] = {}
        self._timers: dict[str, tuple[float, asyncio.Task]] = {}
        self._cookies: dict[str, str] = {}
        self._ws = None
        self._receiver: asyncio.Task | None = None
        self._changed = asyncio.Event()
        self._closing = False
        self._poller: asyncio.Task | None = None
        self._chart_data = ""
        self._http: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    # ---- what it shows ----------------------------------------------------------------

    @property
    def texts(self) -> list[str]:
        return [p.text for _, p in sorted(self._placed.items()) if p.text]

    def find(self, substring: str) -> str | None:
        return next((t for t in self.texts if substring in t), None)

    def full_runs(self) -> list[float]:
        return [at for at, status, _ in self.finished if status == FULL]

    def fragment_runs(self) -> list[float]:
        return [at for at, status, _ in self.finished if status == FRAGMENT]

    @property
    def auto_reruns(self) -> dict[str, float]:
        """{fragment id: interval s} of the fragment timers running now."""
        return {fragment_id: interval for fragment_id, (interval, _) in self._timers.items()}

    def metric_values(self, label: str = "Step") -> list[tuple[float, str]]:
        return [(at, value) for at, name, value in self.metric_times if name == label]

    def __repr__(self) -> str:
        return (f"<StreamlitClient {self.name} {self.url}?{self.query} runs={len(self.finished)} "
                f"bytes={self.bytes_received} errors={len(self.errors)}>")

    # ---- connecting -------------------------------------------------------------------

    def _get(self, url: str) -> None:
        request = urllib.request.Request(url)
        if self._cookies:
            request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in self._cookies.items()))
        with _DIRECT.open(request, timeout=HTTP_TIMEOUT) as response:
            response.read()
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self._cookies[name.strip()] = rest.split(";", 1)[0].strip()

    async def connect(self, timeout: float = 30.0) -> None:
        """Load the page (index.html, health, host-config), open the websocket, and ask for the
        page's first run. Returns once the request is sent."""
        deadline = time.monotonic() + timeout
        if self.preflight:
            page = self.url + (f"?{self.query}" if self.query else "")
            for url in (page, f"{self.base_url}/_stcore/health", f"{self.base_url}/_stcore/host-config"):
                await asyncio.wait_for(asyncio.to_thread(self._get, url), max(0.1, deadline - time.monotonic()))
        token = self._cookies.get(XSRF_COOKIE) or PLACEHOLDER_AUTH_TOKEN
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self._cookies.items())} if self._cookies else None
        host = f"[{self.host}]" if ":" in self.host else self.host
        ws_url = f"ws://{host}:{self.port}/_stcore/stream"
        self._ws = await websockets.connect(
            ws_url, subprotocols=["streamlit", token], origin=self.base_url, additional_headers=headers,
            proxy=None, ping_interval=None, max_size=None, max_queue=None,
            open_timeout=max(0.1, deadline - time.monotonic()), close_timeout=5)
        self.connected_at = time.monotonic()
        self._receiver = asyncio.create_task(self._receive(), name=f"{self.name}-receive")
        await self._send_rerun(self._widget_states())

    async def close(self) -> None:
        """Close the socket (1001, as a closing tab does) and stop the timers and the reader."""
        self._closing = True
        for _, task in self._timers.values():
            task.cancel()
        self._timers.clear()
        self._follow(None)
        if self._http is not None:
            self._http[1].close()
            self._http = None
        if self._ws is not None:
            try:
                await asyncio.wait_for(self._ws.close(code=1001), 10)
            except (asyncio.TimeoutError, websockets.WebSocketException, OSError):
                pass
        if self._receiver is not None:
            self._receiver.cancel()
            try:
                await asyncio.wait_for(self._receiver, 5)
            except (asyncio.CancelledError, asyncio.TimeoutError, Exception):  # noqa: BLE001 - closing
                pass
        self.closed = True
        self._notify()

    async def __aenter__(self) -> "StreamlitClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ---- doing what a user does -------------------------------------------------------

    async def wait_for(self, predicate: Callable[["StreamlitClient"], object], timeout: float,
                       what: str = "") -> object:
        """Wait until predicate(client) is truthy (checked after every message); its value.
        TimeoutError after timeout s; ConnectionError if the connection ends first."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if self.closed:
                raise ConnectionError(f"{self.name}: connection ended while waiting for {what or predicate}: "
                                      f"{self.errors[-3:]}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: timed out after {timeout:g} s waiting for {what or predicate}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def click(self, label: str, timeout: float = 30) -> None:
        """Press the button labelled `label` (waiting for it to be drawn and enabled): a rerun
        with its trigger, of its fragment when it is in one, as the frontend's setTriggerValue."""
        button = await self.wait_for(lambda c: (b := c.buttons.get(label)) is not None and not b.disabled and b,
                                     timeout, f"an enabled button {label!r}")
        states = self._widget_states()
        states.append(WidgetState(id=button.id, trigger_value=True))
        await self._send_rerun(states, fragment_id=button.fragment_id)

    async def rerun(self) -> bool:
        """Rerun the whole page, as the frontend's rerunScript (the R key): only when no run is
        in progress; False when one is."""
        if self.running:
            return False
        await self._send_rerun(self._widget_states())
        return True

    # ---- sending ----------------------------------------------------------------------

    def _widget_states(self) -> list[WidgetState]:
        return [_copy(s) for s in self.widgets.values()]

    async def _send_rerun(self, states: list[WidgetState], fragment_id: str = "", auto: bool = False) -> None:
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = self.query
        cs.widget_states.SetInParent()
        cs.widget_states.widgets.extend(states)
        if self.page_script_hash:
            cs.page_script_hash = self.page_script_hash
        else:
            cs.page_name = self.path
        if fragment_id:
            cs.fragment_id = fragment_id
        if auto:
            cs.is_auto_rerun = True
        cs.cached_message_hashes.extend(self._cache)
        info = cs.context_info
        info.timezone = self.timezone
        info.timezone_offset = self.timezone_offset
        info.locale = self.locale
        info.url = self.url
        info.is_embedded = any(k.lower() == "embed" and v.lower() == "true"
                               for k, v in parse_qsl(self.query, keep_blank_values=True))
        info.color_scheme = self.color_scheme
        self._received_new_session = False
        if auto:
            self.auto_reruns_sent += 1
        else:
            self.reruns_sent += 1
        await self._send(msg)

    async def _send(self, msg: BackMsg) -> None:
        if self._ws is None or self.closed:
            raise ConnectionError(f"{self.name}: not connected")
        try:
            await asyncio.wait_for(self._ws.send(msg.SerializeToString()), 30)
        except (websockets.ConnectionClosed, asyncio.TimeoutError) as error:
            self._error(f"send failed: {error!r}")
            raise ConnectionError(f"{self.name}: send failed: {error!r}") from error

    # ---- fragment timers --------------------------------------------------------------

    def _start_timer(self, fragment_id: str, interval: float) -> None:
        current = self._timers.get(fragment_id)
        if current is not None and current[0] == interval:
            return                               # the same interval: the timer goes on
        self._stop_timer(fragment_id)
        task = asyncio.create_task(self._tick(fragment_id, interval), name=f"{self.name}-auto-{fragment_id[:8]}")
        self._timers[fragment_id] = (interval, task)

    def _stop_timer(self, fragment_id: str) -> None:
        current = self._timers.pop(fragment_id, None)
        if current is not None:
            current[1].cancel()

    async def _tick(self, fragment_id: str, interval: float) -> None:
        """setInterval(() => sendUpdateWidgetsMessage(fragmentId, true), interval): ticks on a
        fixed schedule; a late tick is not made up for."""
        interval = max(interval, 0.004)          # browsers clamp nested timers to 4 ms
        due = time.monotonic() + interval
        try:
            while not self._closing:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if self._closing or self.closed:
                    return
                await self._send_rerun(self._widget_states(), fragment_id=fragment_id, auto=True)
                due += interval
                if due < time.monotonic():
                    due = time.monotonic() + interval
        except ConnectionError:
            return

    # ---- receiving --------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()

    def _error(self, text: str) -> None:
        self.errors.append(text)
        self._notify()

    async def _receive(self) -> None:
        try:
            async for data in self._ws:
                if isinstance(data, str):
                    self._error("protocol: a text frame (Streamlit sends binary protobufs)")
                    continue
                self.bytes_received += len(data)
                self.messages += 1
                msg = ForwardMsg()
                try:
                    msg.ParseFromString(data)
                except Exception as error:  # noqa: BLE001 - reported, the connection goes on
                    self._error(f"protocol: undecodable ForwardMsg ({error})")
                    continue
                kind = msg.WhichOneof("type") or "none"
                self.bytes_per_kind[kind] = self.bytes_per_kind.get(kind, 0) + len(data)
                try:
                    self._handle(msg, time.monotonic())
                except Exception as error:  # noqa: BLE001 - a bug here must not kill the session
                    self._error(f"protocol: handling {kind} failed: {error!r}")
                self._notify()
        except websockets.ConnectionClosed as closed:
            if not self._closing:
                self._error(f"connection closed: {closed!r}")
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001
            if not self._closing:
                self._error(f"connection failed: {error!r}")
        finally:
            if not self._closing:
                for _, task in self._timers.values():
                    task.cancel()
                self._timers.clear()
                self.closed = True
            self._notify()

    def _handle(self, msg: ForwardMsg, now: float) -> None:
        # the frontend's ForwardMessageCache.processMessagePayload
        if msg.WhichOneof("type") == "ref_hash":
            cached = self._cache.get(msg.ref_hash)
            if cached is None:
                self._error(f"protocol: cached ForwardMsg MISS [hash={msg.ref_hash}]")
                return
            cached.run_count = self._cache_run_count
            self.ref_hits += 1
            resolved = ForwardMsg()
            resolved.CopyFrom(cached.msg)
            resolved.metadata.CopyFrom(msg.metadata)
            msg = resolved
        elif msg.metadata.cacheable:
            if not msg.hash:
                self._error("protocol: a cacheable ForwardMsg without a hash")
            elif msg.hash in self._cache:
                self._cache[msg.hash].run_count = self._cache_run_count
            else:
                kept = ForwardMsg()
                kept.CopyFrom(msg)
                self._cache[msg.hash] = _Cached(kept, self._cache_run_count,
                                                msg.delta.fragment_id if msg.HasField("delta") else "")
        kind = msg.WhichOneof("type")
        if kind == "delta":
            self._delta(msg, now)
        elif kind == "new_session":
            self._new_session(msg)
        elif kind == "script_finished":
            self._script_finished(msg, now)
        elif kind == "session_status_changed":
            self.running = msg.session_status_changed.script_is_running
        elif kind == "auto_rerun":
            if msg.auto_rerun.fragment_id:
                self._start_timer(msg.auto_rerun.fragment_id, msg.auto_rerun.interval)
        elif kind == "stop_auto_rerun":
            for fragment_id in msg.stop_auto_rerun.fragment_ids:
                self._stop_timer(fragment_id)
        elif kind == "page_info_changed":
            self.query = msg.page_info_changed.query_string
        elif kind == "navigation":
            self._navigation(msg)
        elif kind == "page_not_found":
            self.page_not_found.append(msg.page_not_found.page_name)
            self.page_script_hash = self.main_script_hash
        elif kind == "session_event":
            event = msg.session_event
            if event.WhichOneof("type") == "script_compilation_exception":
                e = event.script_compilation_exception
                self._error(f"compile error: {e.type}: {e.message}")
        elif kind == "auth_redirect":
            self._error(f"auth redirect to {msg.auth_redirect.url} (not followed)")
        # page_config_changed, page_profile, git_info_changed, logo, parent_message (for a host
        # frame), file_urls_response, heartbeat_ack, backend_operation_response: nothing to do

    def _new_session(self, msg: ForwardMsg) -> None:
        ns = msg.new_session
        self._received_new_session = True
        if not self._session_set:
            self._session_set = True
            self.session_id = ns.initialize.session_id
        if ns.config.max_cached_message_age:
            self._max_cached_message_age = ns.config.max_cached_message_age
        run = msg.metadata.run
        self.script_run_id = run.script_run_id
        self.fragment_ids_this_run = tuple(run.fragment_ids)
        if not run.fragment_ids:                 # a full run: timers stop, the page is the server's
            for fragment_id in list(self._timers):
                self._stop_timer(fragment_id)
            self.main_script_hash = ns.main_script_hash
            self.page_script_hash = ns.page_script_hash

    def _navigation(self, msg: ForwardMsg) -> None:
        nav = msg.navigation
        self.page_script_hash = nav.page_script_hash
        page = next((p for p in nav.app_pages if p.page_script_hash == nav.page_script_hash), None)
        main = next((p for p in nav.app_pages if p.is_default), None)
        if page is None:
            return
        # the frontend's maybeUpdatePageUrl: the address bar follows the page the server runs
        here = self.path
        if (here if here else (main.url_pathname if main else "")) != page.url_pathname:
            self.path = "" if page.is_default else page.url_pathname
            self.url = f"{self.base_url}/{quote(self.path)}"

    def _script_finished(self, msg: ForwardMsg, now: float) -> None:
        status = msg.script_finished
        has_run = msg.metadata.HasField("run") and bool(msg.metadata.run.script_run_id)
        run = msg.metadata.run
        fragments = tuple(run.fragment_ids) if has_run else ()
        self.finished.append((now, status, fragments))
        if has_run and status in (FULL, FRAGMENT) and (fragments or run.script_run_id == self.script_run_id):
            self._clear_stale(run.script_run_id, fragments)
        if has_run and status != EARLY and self._session_set and self._received_new_session:
            self._age_cache(fragments)
        if status == COMPILE_ERROR:
            self._error("script finished with a compile error")

    def _age_cache(self, fragments: tuple[str, ...]) -> None:
        """ForwardMessageCache.incrementRunCount."""
        self._cache_run_count += 1
        for key, entry in list(self._cache.items()):
            if fragments and (not entry.fragment_id or entry.fragment_id not in fragments):
                continue
            if self._cache_run_count - entry.run_count > self._max_cached_message_age:
                del self._cache[key]

    def _clear_stale(self, run_id: str, fragments: tuple[str, ...]) -> None:
        """The frontend's clearStaleNodes and removeInactiveWidgetState after a finished run."""
        def stale(p: _Placed) -> bool:
            return p.run_id != run_id and (not fragments or p.fragment_id in fragments)
        self._placed = {path: p for path, p in self._placed.items() if not stale(p)}
        live = {p.widget_id for p in self._placed.values() if p.widget_id}
        for widget_id in [w for w in self.widgets if w not in live]:
            del self.widgets[widget_id]
        self.buttons = {label: b for label, b in self.buttons.items() if b.id in live}

    def _delta(self, msg: ForwardMsg, now: float) -> None:
        delta = msg.delta
        path = tuple(msg.metadata.delta_path)
        which = delta.WhichOneof("type")
        if which == "new_element":
            self._element(delta.new_element, path, delta.fragment_id, now)
        elif which == "add_block":
            self._place(path, _Placed("block", "", self.script_run_id, delta.fragment_id))
        elif which == "new_transient":
            for element in delta.new_transient.elements:
                kind, text = _text_of(element)
                if kind == "exception" and not element.exception.is_warning:
                    self._error(f"exception: {text}")
                elif kind == "alert" and element.alert.format == ERROR_FORMAT:
                    self._error(f"st.error: {text}")

    def _place(self, path: tuple[int, ...], placed: _Placed) -> None:
        before = self._placed.get(path)
        self._placed[path] = placed
        if placed.kind in ("exception", "alert-error"):
            if before is None or (before.kind, before.text) != (placed.kind, placed.text):
                self._error(("exception: " if placed.kind == "exception" else "st.error: ") + placed.text)

    def _element(self, element: Element, path: tuple[int, ...], fragment_id: str, now: float) -> None:
        kind, text = _text_of(element)
        inner = getattr(element, kind) if kind else None
        widget_id = ""
        if kind == "metric":
            label, value = element.metric.label, element.metric.body
            self.metrics[label] = value
            self.metric_times.append((now, label, value))
            text = f"{label}: {value}"
        elif kind == "bidi_component":
            self._chart_element(element.bidi_component, fragment_id, now)
        elif kind == "button":
            b = element.button
            widget_id = b.id
            self.buttons[b.label] = Button(b.label, b.id, fragment_id, b.disabled)
        elif kind not in ("alert", "markdown", "exception") and isinstance(getattr(inner, "id", None), str):
            widget_id = inner.id
            if widget_id and (widget_id not in self.widgets or getattr(inner, "set_value", False)):
                state = _initial_widget_state(element)
                if state is not None:
                    self.widgets[widget_id] = state     # a dict keeps its first insertion place
        if kind == "exception" and element.exception.is_warning:
            kind = "warning"
        elif kind == "alert" and element.alert.format == ERROR_FORMAT:
            kind = "alert-error"
        self._place(path, _Placed(kind, text, self.script_run_id, fragment_id, widget_id))

    # ---- the follow poll (what the chart element's JavaScript does) ---------------------------

    def _chart_element(self, component, fragment_id: str, now: float) -> None:
        if component.WhichOneof("data") != "json":
            return
        data = json.loads(component.json)
        if not isinstance(data, str) or not data.startswith('{"grid"'):
            return
        parsed = json.loads(data)
        if "head" not in parsed or data == self._chart_data:
            return                      # the same data: the element is not drawn again
        self._chart_data = data
        shown = {"step": -1, "have": {}}
        self._shown(parsed, shown, now)
        self._follow(parsed.get("poll"), shown, (component.id, fragment_id))

    def _shown(self, parsed: dict, shown: dict, now: float) -> None:
        for name, entry in parsed["grid"].items():
            shown["have"][name] = entry["version"]
        if parsed.get("head"):
            shown["step"] = parsed["head"]["step"]
            # The owner's head has the cells the page draws as its step line (step, speed,
            # device, status); a follower's only the step.
            for label, value in parsed["head"].get("cells") or [["Step", str(shown["step"])]]:
                self.metrics[label] = value
                self.metric_times.append((now, label, value))

    def _follow(self, poll: dict | None, shown: dict | None = None, element: tuple[str, str] = ("", "")) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if poll and not self._closing:
            self._poller = asyncio.get_running_loop().create_task(self._poll(poll, shown, element))

    async def _stopped(self, element: tuple[str, str], why: str) -> None:
        """The element's setTriggerValue("stopped", why): a rerun of its fragment with the trigger
        in the component's event aggregator (Streamlit's components v2: one JSON list of events)."""
        component_id, fragment_id = element
        states = self._widget_states()
        states.append(WidgetState(id=f"{TRIGGER_PREFIX}{component_id}__events",
                                  json_trigger_value=json.dumps([{"event": "stopped", "value": why}])))
        await self._send_rerun(states, fragment_id=fragment_id)

    async def _poll(self, poll: dict, shown: dict, element: tuple[str, str]) -> None:
        every = poll["every_ms"] / 1000
        await asyncio.sleep(every)
        while not self._closing:
            started = time.monotonic()
            query = {**poll["query"], "since": shown["step"], "have": ".".join(shown["have"].values())}
            try:
                status, body = await asyncio.wait_for(self._http_get(f"/{poll['url']}?{urlencode(query)}"),
                                                      HTTP_TIMEOUT)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
                self._http = None
                self._error(f"follow poll failed: {error!r}")
                return
            now = time.monotonic()
            self.polls.append((now, status))
            if status == 200:
                fresh = json.loads(body)
                self._shown(fresh, shown, now)
                self._notify()
                if fresh["head"]["status"] != "running":
                    return await self._stopped(element, fresh["head"]["status"])
            elif status != 204:
                message = json.loads(body or b"{}").get("message", "")
                self.poll_messages.append(message)
                if status >= 500:
                    self._error(f"follow poll: HTTP {status} {message}")
                return await self._stopped(element, str(status))
            await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))

    async def _http_get(self, target: str) -> tuple[int, bytes]:
        """One GET on the keep-alive connection (opened when there is none): (status, body)."""
        if self._http is None:
            self._http = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._http
        cookies = "; ".join(f"{k}={v}" for k, v in self._cookies.items())
        writer.write((f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept: */*\r\n"
                      f"Accept-Encoding: gzip\r\n" + (f"Cookie: {cookies}\r\n" if cookies else "") + "\r\n").encode())
        await writer.drain()
        status = int((await reader.readuntil(b"\r\n")).split()[1])
        headers = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += await reader.readexactly(size)
                await reader.readexactly(2)
            await reader.readuntil(b"\r\n")
        else:
            body = await reader.readexactly(int(headers.get("content-length", 0)))
        self.bytes_received += len(body)
        if headers.get("connection", "").lower() == "close":
            writer.close()
            self._http = None
        return status, gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body


def _copy(state: WidgetState) -> WidgetState:
    copy = WidgetState()
    copy.CopyFrom(state)
    return copy
