"""Drive the app's pages with Playwright, by its DOM contract (keyed containers, button labels)."""
from __future__ import annotations

import json
import re
import time

from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
# The owner's step metric, or the step a follower's chart element draws from its polls
# (pages/live.py).
STEP = '.st-key-step_counter [data-testid="stMetricValue"], .st-key-live_charts .live-value'
EXCEPTION = '[data-testid="stException"]'
# title: url path; the default page is also served at the root
PAGES = {"Train": "(train)?", "Gates": "gates", "Gradients": "gradients", "Step through": "step",
         "Lessons": "lessons", "Runs": "runs", "Compare": "compare", "Sweep": "sweep"}
TIMEOUT_MS = 60_000   # generous: two noisy cores, and torch warming up in the server


def plot(key: str) -> str:
    """A chart's Plotly graph: in the container keyed `key`, or the Train page's chart grid's
    cell of that name (pages/charts.chart_grid)."""
    return f".st-key-{key} .js-plotly-plot, .chart-{key} .js-plotly-plot"


def wait_until(page, check, timeout: float, what: str, interval: float = 0.2):
    """Poll check() until it returns something truthy; fail naming `what` after timeout s.

    Waits with the page's clock, so Playwright keeps delivering events (websocket frames)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        page.wait_for_timeout(interval * 1000)


class Frames:
    """What the server sends this page over Streamlit's websocket: bytes, and each finished
    rerun (full or fragment) with the running byte count at its end."""

    def __init__(self, page):
        self.bytes = 0
        self.finished: list[tuple[float, int, int]] = []   # (monotonic time, status, bytes so far)
        page.on("websocket", self._attach)

    def _attach(self, ws) -> None:
        if "/_stcore/stream" in ws.url:
            ws.on("framereceived", self._frame)

    def _frame(self, payload) -> None:
        data = payload if isinstance(payload, bytes) else payload.encode()
        self.bytes += len(data)
        msg = ForwardMsg()
        try:
            msg.ParseFromString(data)
        except Exception:   # noqa: BLE001 - not a ForwardMsg: still counted in bytes
            return
        if msg.WhichOneof("type") == "script_finished":
            self.finished.append((time.monotonic(), msg.script_finished, self.bytes))

    def full_reruns(self) -> int:
        return sum(status == ForwardMsg.FINISHED_SUCCESSFULLY for _, status, _ in self.finished)

    def fragment_runs(self, since: float = 0.0) -> list[tuple[float, int]]:
        """(time, bytes since the previous finished rerun) of each fragment run after `since`."""
        out, before = [], None
        for at, status, total in self.finished:
            if at > since and before is not None and status == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY:
                out.append((at, total - before))
            before = total
        return out


def wait_ready(page, selector: str | None = None, timeout_ms: int = TIMEOUT_MS) -> None:
    """A finished rerun, and (if given) the element we need is visible."""
    page.wait_for_selector(IDLE, state="attached", timeout=timeout_ms)
    if selector:
        page.locator(selector).first.wait_for(state="visible", timeout=timeout_ms)


def nav_link(page, title: str):
    # The link's accessible name may carry the page's icon before the title.
    return page.get_by_role("link", name=re.compile(rf"(^|\s){re.escape(title)}$"))


class AppPage:
    """One browser tab on the app: its page, what the server sent it, its JS errors."""

    def __init__(self, page, url: str, shots):
        self.page, self.url, self.shots = page, url, shots
        self.frames = Frames(page)
        self.js_errors: list[str] = []
        page.on("pageerror", self._js_error)

    def _js_error(self, error) -> None:
        """An uncaught JS error, with its stack (where it came from: the chart component's own
        JavaScript, pages/charts.py, or Streamlit's), printed too, so the test's log has it."""
        text = error.stack or f"{error.name or 'Error'}: {error.message}"
        if error.message and error.message not in text:
            text = f"{error.message}\n{text}"
        print(f"JS error on {self.page.url}:\n{text}", flush=True)
        self.js_errors.append(text)

    def open(self, selector: str = STEP) -> None:
        self.page.goto(self.url + "/")
        wait_ready(self.page, selector)

    def _rerun(self, action, what: str, selector: str | None) -> None:
        """Do action, then wait for the full rerun it causes to finish (and for selector)."""
        before = self.frames.full_reruns()
        action()
        wait_until(self.page, lambda: self.frames.full_reruns() > before, TIMEOUT_MS / 1000, f"the rerun after {what}")
        wait_ready(self.page, selector)

    def go_to(self, title: str, selector: str | None = None) -> None:
        """Switch page in-app (same browser session, so the run goes on)."""
        self._rerun(lambda: nav_link(self.page, title).first.click(), f"opening {title}", selector)
        assert re.search(rf"/{PAGES[title]}/?(\?.*)?$", self.page.url), f"{title} opened {self.page.url}"

    def press(self, label: str, selector: str | None = None) -> None:
        self._rerun(lambda: self.page.get_by_role("button", name=label, exact=True).click(),
                    f"pressing {label}", selector)

    def step(self) -> int:
        return step(self.page)

    def wait_until(self, check, timeout: float, what: str):
        return wait_until(self.page, check, timeout, what)

    def wait_step_above(self, value: int, timeout: float = 60) -> int:
        return wait_until(self.page, lambda: (s := self.step()) > value and s, timeout,
                          f"the step counter to pass {value}")

    def configure(self, values: dict[str, object]) -> None:
        """Type values into the sidebar's inputs, by label, each followed by its rerun."""
        sidebar = self.page.locator('[data-testid="stSidebar"]')
        for label, value in values.items():
            field = sidebar.get_by_label(label, exact=True)
            # Open the field's expander by its own state, not by the field's visibility,
            # which is briefly false while the sidebar draws (a click then would close it).
            details = sidebar.locator('[data-testid="stExpander"] details').filter(
                has=self.page.get_by_label(label, exact=True))
            if details.get_attribute("open") is None:
                details.locator("summary").click()
            field.wait_for(state="visible")
            if field.input_value() != str(value):
                field.fill(str(value))
                self._rerun(lambda: field.press("Enter"), f"setting {label!r} to {value}", None)
            assert field.input_value() == str(value), f"the sidebar's {label!r} reads {field.input_value()!r}"

    def shot(self, name: str):
        """A screenshot of the whole page; the viewport grows to fit it (the app scrolls inside)."""
        size = self.page.viewport_size
        height = self.page.evaluate("""() => Math.max(...[...document.querySelectorAll(
            '[data-testid="stMain"], [data-testid="stAppScrollToBottomContainer"], section')]
            .map(e => e.scrollHeight), document.body.scrollHeight)""")
        path = self.shots / f"{name}.png"
        try:
            self.page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(height, 8000))})
            self.page.screenshot(path=path, full_page=True)
        finally:
            self.page.set_viewport_size(size)
        return path

    def problems(self) -> list[str]:
        """Tracebacks shown to the user and uncaught JS errors: there must be none."""
        return [f"traceback on {self.page.url}: {text}" for text in exceptions(self.page)] + \
               [f"JS error: {text}" for text in self.js_errors]


def step(page) -> int:
    text = page.locator(STEP).first.inner_text(timeout=TIMEOUT_MS).strip()
    assert re.fullmatch(r"\d+", text), f"step counter shows {text!r}, not a plain integer"
    return int(text)


def plot_data(page, key: str) -> list:
    """The traces of the Plotly figure in the container keyed `key` ([] if not drawn yet)."""
    return page.evaluate("""sel => { const g = document.querySelector(sel);
        return g && g.data ? JSON.parse(JSON.stringify(g.data)) : []; }""", plot(key))


def plot_points(page, key: str) -> int:
    """How many x values the figure's traces hold (plain arrays or Plotly's base64 typed arrays)."""
    return page.evaluate("""sel => { const g = document.querySelector(sel);
        const size = {i1: 1, u1: 1, u1c: 1, i2: 2, u2: 2, i4: 4, u4: 4, f4: 4, f8: 8};
        const n = x => !x ? 0 : x.length !== undefined ? x.length
                      : x.bdata ? atob(x.bdata).length / size[x.dtype] : 0;
        return g && g.data ? g.data.reduce((sum, t) => sum + n(t.x), 0) : 0; }""", plot(key))


def plot_json(page, key: str) -> str:
    return json.dumps(plot_data(page, key), sort_keys=True)


def exceptions(page) -> list[str]:
    """Tracebacks shown to the user; the app must never show one."""
    return [e.inner_text() for e in page.locator(EXCEPTION).all()]
