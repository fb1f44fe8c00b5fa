"""Load test: many browser sessions training at once on one app server.

    python -m tests.load [--sessions 10] [--seconds 60] [--cohorts 1] [--leave 60] [--max-runs M] [--json out.json]

It starts the app's Streamlit server itself (on a free loopback port, with a fresh temporary
run store), warms it up with one short run, and reads its baseline memory (VmRSS) and thread
count. Then, per cohort, N Chromium contexts (N browser sessions) open the Train page with the
settings in the link and press Train, one after another (the next opens once the last one's run
has started or shown a queue place: the browser shares the machine with the server). For the window, the step counter's values are
taken from the websocket as the server sends them (timed on arrival: a busy browser reads its
page late), and each page is read every second for its queue place and any error. The cohort's tabs
then close, and after --settle seconds the server's memory and threads are read again.

The class leaves, and nobody comes: after the last cohort's tabs close, the server is left alone
for --leave seconds (no visitor, no request at all: a visitor's arrival is what used to make
Streamlit let go of the ended sessions), and its memory and each worker's are read then, against
the baseline and against a fresh worker's (one this test starts as the server would and reads
once it has warmed up). The server keeps a closed tab's session for its own
`server.disconnectedSessionTTL` (.streamlit/config.toml), unless --session-ttl says otherwise.

Per session it reports steps/s (over the window, and over the time it was admitted: its step
counter advancing, no queue place shown), the view's refresh interval (median and p95), the
queue places it showed, and its errors (tracebacks, st.error boxes, JS and console errors,
timeouts, requests off the loopback interface). It also reports the server's RSS and threads
before, during and after, and the CPU the server and the load generator (this process, the
Playwright driver and Chromium) each used, so the browser's work is not read as the server's.

It exits non-zero on any error, on starvation (an admitted run below --min-share of the fair
share, or a run that waited over --start-grace s to train without showing its queue place), or
on a leak (after a cohort, RSS more than --rss-slack-mb above the baseline, or threads more
than --thread-slack above it; --leave s after the class left, the server's RSS more than
--rss-slack-mb above the baseline, or a worker's that much above a fresh worker's).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "browser"))

from _app import EXCEPTION, IDLE, STEP, TIMEOUT_MS, AppPage, wait_ready  # noqa: E402
from _server import OUT, Server, launch_chromium  # noqa: E402
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

from explorer.memory import ARENAS, ARENAS_ENV  # noqa: E402

QUEUE = ".st-key-queue_place"                       # a queued run's place (fair admission)
ERROR_BOX = '[data-testid="stAlertContentError"]'   # st.error
# Bounded: other values are refused. The server's idle I/O threads (anyio's, serving files) end
# once idle 10 s, but only at its next request: so "at rest" readings come 12 s or more after a
# cohort, just after one request.
LIMITS = {"sessions": (1, 20), "seconds": (1, 600), "cohorts": (1, 5), "settle": (12, 120), "leave": (0, 300)}
# s a closed tab's Streamlit session is kept for a reconnect, for a caller without --session-ttl
# (tests/classroom.py); this test's own default is the app's (.streamlit/config.toml: 30 s).
SESSION_TTL = 5
RELOAD_GRACE = 2       # s a closed session's training run waits for a reload (default 30), without --reload-grace
SAMPLE_EVERY = 1.0     # s between readings of every tab and of the server
TICK = os.sysconf("SC_CLK_TCK")

# What one tab reads in one round trip: its step counter, queue place, tracebacks, error boxes.
READ_TAB = f"""() => {{
    const text = sel => {{ const e = document.querySelector(sel); return e ? e.innerText.trim() : null; }};
    const all = sel => [...document.querySelectorAll(sel)].map(e => e.innerText.trim());
    return {{step: text({json.dumps(STEP)}), queue: text({json.dumps(QUEUE)}),
             exceptions: all({json.dumps(EXCEPTION)}), errors: all({json.dumps(ERROR_BOX)})}};
}}"""


# --- the server's and the generator's processes, from /proc --------------------------------

def _stat(pid: int) -> tuple[str, int, float] | None:
    """(command name, parent pid, CPU seconds used: user + system) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, rest = raw[raw.index("(") + 1:raw.rindex(")")], raw[raw.rindex(")") + 2:].split()
    return name, int(rest[1]), (int(rest[11]) + int(rest[12])) / TICK


def memory(pid: int) -> dict:
    """The process's resident memory (MB) and thread count, from /proc/<pid>/status; and its
    worker processes' (explorer.worker): how many, their memory together, and each one's."""
    rss, threads = _status(pid) or (0.0, 0)
    workers = [status[0] for child in tree(pid) if child != pid and (status := _status(child))]
    return {"rss_mb": rss, "threads": threads, "workers": len(workers), "workers_rss_mb": sum(workers),
            "workers_mb": [round(w, 1) for w in workers]}


# A worker as the server starts one (explorer.worker), asked for its state once it has warmed
# up (it answers only then), its RSS printed; in a process of its own, so that this one never
# imports torch.
FRESH_WORKER = """
from pathlib import Path
from explorer.worker import Worker
worker = Worker()
worker.send("sync")
assert worker.receive() == ("state", None)
print(Path(f"/proc/{worker.pid}/status").read_text())
worker.close()
"""


def fresh_worker_mb() -> float:
    """A fresh worker's resident memory, MB (started with the server's arena cap)."""
    done = subprocess.run([sys.executable, "-c", FRESH_WORKER], cwd=HERE.parent, capture_output=True, text=True,
                          env={**os.environ, ARENAS_ENV: str(ARENAS)}, timeout=180, check=True)
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024


def _status(pid: int) -> tuple[float, int] | None:
    """(RSS in MB, threads), or None for a process that has ended: gone as it was read, or a
    worker the server is ending (exited, not yet reaped: it has no memory left)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if "VmRSS" not in fields:
        return None
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def thread_names(pid: int) -> dict[str, int]:
    """How many of the process's threads carry each name (torch's and the OS's name theirs;
    Python's threads are all "python")."""
    names: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        names[name] = names.get(name, 0) + 1
    return dict(sorted(names.items()))


def tree(root: int, skip: int | None = None) -> dict[int, tuple[str, float]]:
    """root and its descendants (not skip's branch): pid -> (command name, CPU seconds)."""
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))):
            procs[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _) in procs.items():
        children.setdefault(parent, []).append(pid)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid == skip or pid not in procs:
            continue
        out[pid] = (procs[pid][0], procs[pid][2])
        todo.extend(children.get(pid, []))
    return out


class CpuMeter:
    """CPU time a process tree used since mark(), by kind of process. Sampled often, so a
    process that ends between samples loses at most its last interval."""

    def __init__(self, root: int, skip: int | None = None, kind=lambda pid, name: "all"):
        self.root, self.skip, self.kind = root, skip, kind
        self.start: dict[int, float] = {}
        self.seen: dict[int, tuple[str, float]] = {}
        self.since = time.monotonic()

    def mark(self) -> None:
        self.seen = {pid: (self.kind(pid, name), cpu) for pid, (name, cpu) in tree(self.root, self.skip).items()}
        self.start = {pid: cpu for pid, (_, cpu) in self.seen.items()}
        self.since = time.monotonic()

    def sample(self) -> None:
        for pid, (name, cpu) in tree(self.root, self.skip).items():
            self.seen[pid] = (self.kind(pid, name), cpu)

    def cores(self) -> dict[str, float]:
        """Cores used since mark(), in all and by kind."""
        self.sample()
        took = max(time.monotonic() - self.since, 1e-9)
        used: dict[str, float] = {}
        for pid, (kind, cpu) in self.seen.items():
            used[kind] = used.get(kind, 0.0) + (cpu - self.start.get(pid, 0.0)) / took
        return {"total": round(sum(used.values()), 3), **{k: round(v, 3) for k, v in sorted(used.items())}}


def generator_kind(pid: int, name: str) -> str:
    if pid == os.getpid():
        return "driver"          # this Python process
    if name.startswith("node"):
        return "playwright"      # Playwright's driver
    return "chromium" if name.startswith("chrom") else "other"


# --- one browser session ------------------------------------------------------------------

@dataclass
class Tab:
    """One browser session in a cohort: the step counter's values as the server sent them,
    what its page showed every second, and what went wrong."""

    number: int
    app: AppPage
    context: object
    pressed_at: float | None = None
    start_step: int = 0
    steps: list[tuple[float, int]] = field(default_factory=list)                        # (arrival, step)
    samples: list[tuple[float, int | None, str | None]] = field(default_factory=list)   # (time, step, queue)
    errors: dict[str, int] = field(default_factory=dict)                                 # text -> times seen
    first_seen: dict[str, float] = field(default_factory=dict)                           # text -> when
    refused: dict[str, int] = field(default_factory=dict)      # URL off loopback -> times refused
    polls: list[float] = field(default_factory=list)           # arrivals of the live poll's answers

    def error(self, text: str) -> None:
        text = text.strip()[:500]
        self.errors[text] = self.errors.get(text, 0) + 1
        self.first_seen.setdefault(text, time.monotonic())

    def frame(self, payload) -> None:
        """A websocket frame: keep the step counter's value if it carries it. Timed on arrival,
        so a busy browser (which reads its DOM late) does not blur the rates."""
        data = payload if isinstance(payload, bytes) else payload.encode()
        if b"Step" not in data:
            return
        msg = ForwardMsg()
        try:
            msg.ParseFromString(data)
        except Exception:   # noqa: BLE001 - not a ForwardMsg
            return
        element = msg.delta.new_element
        if element.WhichOneof("type") == "metric" and element.metric.label == "Step" and element.metric.body.isdigit():
            self.steps.append((time.monotonic(), int(element.metric.body)))

    def response(self, response) -> None:
        """An answer to the Train page's live poll (pages/live.py): while the run trains, its
        step counter moves by these, not by the websocket. Timed on arrival, like `frame`."""
        if "/train-live/" not in response.url or response.status not in (200, 204):
            return
        self.polls.append(time.monotonic())
        if response.status == 200:
            try:
                self.steps.append((time.monotonic(), int(response.json()["head"]["step"])))
            except Exception as problem:   # noqa: BLE001 - an unreadable answer is the app's error
                self.error(f"reading a live poll's answer: {problem}")

    def read(self) -> None:
        try:
            seen = self.app.page.evaluate(READ_TAB)
        except Exception as problem:   # noqa: BLE001 - a tab that cannot be read is an error, not a crash
            self.error(f"reading the tab: {problem}")
            return
        for text in seen["exceptions"]:
            self.error(f"traceback: {text}")
        for text in seen["errors"]:
            self.error(f"st.error: {text}")
        step = int(seen["step"]) if seen["step"] and seen["step"].isdigit() else None
        self.samples.append((time.monotonic(), step, seen["queue"]))

    def close_errors(self) -> None:
        for text in self.app.js_errors:
            self.error(f"JS error: {text}")
        self.app.js_errors.clear()


def open_tab(browser, url: str, number: int, shots: Path) -> Tab:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    tab = Tab(number, AppPage(context.new_page(), url.split("/?")[0], shots), context)
    # Loopback only: a request elsewhere (the browser fetches a Material page icon from Google's
    # font server) is refused and reported, and its failure is not counted as the app's error.
    host = re.escape(url.split("/?")[0])

    def refuse(route) -> None:
        tab.refused[route.request.url] = tab.refused.get(route.request.url, 0) + 1
        route.abort()

    def console(msg) -> None:
        if msg.type == "error" and msg.location.get("url") not in tab.refused:
            tab.error(f"console: {msg.text}")

    context.route(re.compile(rf"^(?!{host}(/|$))"), refuse)
    page = tab.app.page
    page.on("console", console)
    page.on("websocket", lambda ws: "/_stcore/stream" in ws.url and ws.on("framereceived", tab.frame))
    page.on("response", tab.response)
    page.goto(url, wait_until="commit")
    return tab


def step_at(steps: list[tuple[float, int]], t: float) -> tuple[float, int] | None:
    """The last (arrival, step) at or before t."""
    before = [event for event in steps if event[0] <= t]
    return before[-1] if before else None


def summarise(tab: Tab, since: float, until: float) -> dict:
    """A tab's figures over the window [since, until]."""
    out = {"session": tab.number, "errors": dict(tab.errors), "refused": dict(tab.refused)}
    events = [(t, s) for t, s in tab.steps if since <= t <= until]
    first, last = step_at(tab.steps, since) or (events[0] if events else None), step_at(tab.steps, until)
    # Over the whole window: a page that stops hearing from the server shows a low rate.
    out["steps_per_second"] = (last[1] - first[1]) / (until - max(since, first[0])) if first and last else None
    # Admitted: from the first refresh that shows the step advancing to the last, leaving out any
    # stretch in which it did not advance while the page showed a queue place. Counting from a
    # refresh (not from Train) keeps a slow first refresh out of the rate.
    places = [(t, q) for t, _, q in tab.samples if q]
    advanced = [i for i in range(1, len(events)) if events[i][1] > events[i - 1][1]]
    admitted_s = admitted_steps = 0.0
    for i in range(advanced[0] + 1, advanced[-1] + 1) if advanced else ():
        (t0, s0), (t1, s1) = events[i - 1], events[i]
        if s1 > s0 or not any(t0 <= t <= t1 for t, _ in places):
            admitted_s += t1 - t0
            admitted_steps += s1 - s0
    out["admitted_seconds"] = round(admitted_s, 2)
    out["admitted_steps"] = int(admitted_steps)
    out["admitted_steps_per_second"] = admitted_steps / admitted_s if admitted_s else None
    out["queue_seen"] = bool(places)
    out["queue_seen_in_window"] = any(since <= t <= until for t, _ in places)
    out["moved_in_window"] = bool(first and last and last[1] > first[1])
    out["queue_places"] = sorted({int(m.group()) for _, q in places if (m := re.search(r"\d+", q))}, reverse=True)
    out["queue_text"] = places[0][1] if places else None
    # How long after Train its step first moved (as the server told the page).
    first_move = next((t for t, s in tab.steps if tab.pressed_at and t > tab.pressed_at and s > tab.start_step), None)
    out["pressed"] = tab.pressed_at is not None
    out["start_delay"] = round(first_move - tab.pressed_at, 2) if first_move else None
    # The live view's refresh interval: between consecutive finished fragment reruns or answered
    # polls (a training run's page is refreshed by its polls), from the last one before the
    # window to the window's end (so a view that froze shows its wait).
    done = sorted([t for t, status, _ in tab.app.frames.finished
                   if status == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY] + tab.polls)
    edges = [t for t in done if t < since][-1:] + [t for t in done if since <= t <= until] + [until]
    gaps = sorted(b - a for a, b in zip(edges, edges[1:]))
    out["refreshes"] = sum(since <= t <= until for t in done)
    out["refresh_median_s"] = round(statistics.median(gaps), 3) if gaps else None
    out["refresh_p95_s"] = round(gaps[min(len(gaps) - 1, int(0.95 * len(gaps)))], 3) if gaps else None
    out["errors_first_seen"] = {text: round(t - since, 2) for text, t in tab.first_seen.items()}   # s in the window
    out["pressed_at"] = round(tab.pressed_at - since, 2) if tab.pressed_at else None
    out["step_events"] = [(round(t - since, 2), s) for t, s in tab.steps]
    # What the page showed each second (time in the window, step, queue place): a cross-check.
    out["page_readings"] = [(round(t - since, 2), s, q) for t, s, q in tab.samples]
    return out


# --- a cohort -----------------------------------------------------------------------------

class Watch:
    """The server's memory and threads, and both sides' CPU, sampled every second."""

    def __init__(self, server_pid: int):
        self.pid = server_pid
        self.server_cpu = CpuMeter(server_pid, kind=lambda pid, name: "server" if pid == server_pid else "workers")
        self.generator_cpu = CpuMeter(os.getpid(), skip=server_pid, kind=generator_kind)
        self.readings: list[dict] = []

    def mark(self) -> None:
        self.server_cpu.mark()
        self.generator_cpu.mark()
        self.readings = []

    def sample(self) -> dict:
        reading = {"t": time.monotonic(), **memory(self.pid)}
        self.readings.append(reading)
        self.server_cpu.sample()
        self.generator_cpu.sample()
        return reading

    def during(self) -> dict:
        rss, threads = [r["rss_mb"] for r in self.readings], [r["threads"] for r in self.readings]
        return {"rss_mb_max": round(max(rss), 1), "rss_mb_mean": round(statistics.mean(rss), 1),
                "threads_max": max(threads), "threads_mean": round(statistics.mean(threads), 1)}

    def cpu(self) -> dict:
        return {"server_cores": self.server_cpu.cores(), "generator_cores": self.generator_cpu.cores()}


def set_up(tab: Tab, pressed: list[Tab], watch: Watch, timeout: float) -> None:
    """Press Train in `tab` as soon as its page is ready, reading the tabs already pressed every
    second meanwhile (so each one's start delay is seen); a pressed tab joins `pressed`."""
    deadline, next_read = time.monotonic() + timeout, 0.0
    while time.monotonic() < deadline:
        try:
            if tab.app.page.locator(IDLE).count() and tab.app.page.locator(STEP).first.is_visible():
                tab.read()
                tab.start_step = tab.steps[-1][1] if tab.steps else 0
                tab.app.page.get_by_role("button", name="Train", exact=True).click()
                tab.pressed_at = time.monotonic()
                pressed.append(tab)
                return
        except Exception as problem:   # noqa: BLE001 - a timeout is one of the errors the test reports
            tab.error(f"pressing Train: {problem}")
            return
        if time.monotonic() >= next_read:
            next_read = time.monotonic() + SAMPLE_EVERY
            for other in pressed:
                other.read()
            watch.sample()
        tab.app.page.wait_for_timeout(200)
    tab.error(f"the Train page was not ready {timeout:g} s after the tab opened")


def started(tab: Tab, pressed: list[Tab], watch: Watch, limit: float) -> None:
    """Wait (at most `limit` s) until a pressed tab's run has moved or its page shows a queue
    place, reading the pressed tabs meanwhile. The next tab opens only then: a front-end loading
    in the generator's own Chromium held the last one's fragment timer back for up to 17 s in CI,
    which measured the generator, not the server."""
    end = time.monotonic() + limit
    while tab.pressed_at is not None and time.monotonic() < end:
        if any(s > tab.start_step for t, s in tab.steps if t > tab.pressed_at) or any(q for _, _, q in tab.samples):
            return
        tick = time.monotonic()
        for other in pressed:
            other.read()
        watch.sample()
        tab.app.page.wait_for_timeout(max(0.0, SAMPLE_EVERY - (time.monotonic() - tick)) * 1000)


def wait(page, seconds: float, watch: Watch, tabs: list[Tab] = ()) -> None:
    """Sample the tabs and the server every SAMPLE_EVERY for `seconds`, waiting with a page's
    clock so Playwright keeps delivering websocket frames meanwhile."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        tick = time.monotonic()
        for tab in tabs:
            tab.read()
        watch.sample()
        page.wait_for_timeout(max(0.0, min(left, SAMPLE_EVERY - (time.monotonic() - tick))) * 1000)


def settle(watch: Watch, seconds: float, url: str | None) -> dict:
    """After a cohort: wait, sampling; the server's memory and threads at rest, and its CPU use
    over the last half of the wait (a run that trains on after its tab closed shows here).
    Without url, no request is made: the reading is of a server nobody has visited since."""
    watch.mark()
    end, half = time.monotonic() + seconds, time.monotonic() + seconds / 2
    watch.sample()
    while time.monotonic() < end:
        if time.monotonic() >= half:
            watch.server_cpu.mark()
            half = float("inf")
        watch.sample()
        time.sleep(min(SAMPLE_EVERY, max(0.0, end - time.monotonic())))
    if url is not None:
        with urllib.request.urlopen(url + "/", timeout=10) as response:   # lets idle I/O threads end
            response.read()
        time.sleep(1)
    return {**memory(watch.pid), "thread_names": thread_names(watch.pid),
            "server_cores_at_rest": watch.server_cpu.cores()["total"],
            "readings": [{**r, "t": round(r["t"] - watch.readings[0]["t"], 2)} for r in watch.readings]}


def warm_up(browser, server: Server, shots: Path, settings: str) -> None:
    """One short run, paused and closed: the server imports torch, builds a model and trains
    before its baseline is read, so the baseline is that of a warm, idle server."""
    tab = open_tab(browser, f"{server.url}/?{settings}", 0, shots)
    try:
        wait_ready(tab.app.page, STEP)
        tab.app.press("Train")
        tab.app.wait_step_above(0)
        tab.app.press("Pause")
        tab.read()
        tab.close_errors()
        if tab.errors:
            raise RuntimeError(f"the warm-up session failed: {tab.errors}")
    finally:
        tab.context.close()


def server_errors(log: str) -> list[str]:
    """Each traceback in the server's log, as the line before it (what failed) and its
    exception; a chained one ("During handling of the above exception...") joins the last."""
    lines = [line for line in log.splitlines() if line.strip()]
    found = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            before = lines[i - 1] if i else ""
            last = next((x for x in lines[i + 1:] if not x.startswith((" ", "Traceback"))), "")
            if before.startswith(("During handling", "The above exception")) and found:
                found[-1] += f" → {last}"
            else:
                found.append(f"{before}: {last}" if before and not before.startswith(" ") else last)
    return found


def cohort(browser, server: Server, options: argparse.Namespace, watch: Watch, number: int) -> dict:
    before = memory(server.proc.pid)
    log_start = server.log_path.stat().st_size
    tabs: list[Tab] = []
    try:
        # One tab at a time: the generator's Chromium shares this machine's cores with the server,
        # and ten front-ends loading at once starved its own first tabs (their fragment timers and
        # websocket frames ran 20-40 s late while the server answered in milliseconds).
        pressed: list[Tab] = []
        for i in range(options.sessions):
            tabs.append(open_tab(browser, f"{server.url}/?{options.settings}", i + 1, options.shots))
            set_up(tabs[-1], pressed, watch, TIMEOUT_MS / 1000)
            started(tabs[-1], pressed, watch, options.start_grace + 5)
        watch.mark()
        since = time.monotonic()
        wait(tabs[0].app.page, options.seconds, watch, tabs)
        until = time.monotonic()
        during, cpu = {**watch.during(), "thread_names": thread_names(server.proc.pid)}, watch.cpu()
        for tab in tabs:
            tab.close_errors()
        sessions = [summarise(tab, since, until) for tab in tabs]
    finally:
        for tab in tabs:
            try:
                tab.context.close()
            except Exception:   # noqa: BLE001 - closing the rest matters more
                pass
    # The last class leaves and nobody comes: no request at all before `left` is read. Then one
    # request, so idle I/O threads end before the threads are counted in `after`.
    left = settle(watch, options.leave, None) if number == options.cohorts and options.leave else None
    after = settle(watch, 1 if left else options.settle, server.url)
    with open(server.log_path, "rb") as log:
        log.seek(log_start)
        errors = server_errors(log.read().decode(errors="replace"))
    return {"cohort": number, "window_seconds": round(until - since, 2), "before": before, "during": during,
            "left": left, "after": after, "cpu": cpu, "sessions": sessions, "server_errors": errors}


# --- verdict and report -------------------------------------------------------------------

def judge(result: dict, baseline: dict, options: argparse.Namespace) -> list[str]:
    """What fails this cohort: errors, starvation, leaks."""
    failures = []
    sessions = result["sessions"]
    for s in sessions:
        for text, count in s["errors"].items():
            failures.append(f"session {s['session']}: {text}" + (f" (×{count})" if count > 1 else ""))
    judged = [s for s in sessions if s["admitted_seconds"] >= options.min_admitted]
    # The fair share of an admitted run: all admitted steps over all admitted run-seconds,
    # i.e. the machine's training rate divided by the number of runs training at a time.
    seconds = sum(s["admitted_seconds"] for s in judged)
    fair = sum(s["admitted_steps"] for s in judged) / seconds if seconds else None
    result["fair_share_steps_per_second"] = round(fair, 2) if fair else None
    window = result["window_seconds"]
    for s in sessions:
        name = f"session {s['session']}"
        # Its share: while admitted if it was queued for part of the window; else over the
        # whole window, as its page showed no queue place (a view that froze counts against it).
        rate = s["admitted_steps_per_second"] if s["queue_seen_in_window"] else s["steps_per_second"]
        judged_here = s["pressed"] and (s["admitted_seconds"] >= options.min_admitted or not s["queue_seen_in_window"])
        s["share"] = round(rate / fair, 3) if fair and rate is not None and judged_here else None
        if not s["pressed"]:
            continue                                # its error says why
        if not s["queue_seen"] and (s["start_delay"] is None or s["start_delay"] > options.start_grace):
            waited = "the whole test" if s["start_delay"] is None else f"{s['start_delay']:.1f} s"
            failures.append(f"{name}: waited {waited} after Train to start training, without showing a queue place")
        elif not s["queue_seen_in_window"] and not s["moved_in_window"]:
            failures.append(f"{name}: its step counter did not move in the {window:.0f} s window, "
                            "and it showed no queue place")
        elif s["share"] is not None and s["share"] < options.min_share:
            failures.append(f"{name}: starved, {rate:.1f} steps/s "
                            f"{'while admitted' if s['queue_seen_in_window'] else 'over the window'}, "
                            f"{s['share']:.2f}× the fair share of {fair:.1f}")
    return failures + server_failures(result, baseline, options) + left_failures(result, baseline, options)


def left_failures(result: dict, baseline: dict, options: argparse.Namespace) -> list[str]:
    """The class left and nobody came: the server's memory back near its baseline, and each
    worker's near a fresh worker's, --leave s later."""
    left = result.get("left")
    if not left:
        return []
    failures, slack = [], options.rss_slack_mb
    if left["rss_mb"] - baseline["rss_mb"] > slack:
        failures.append(f"memory kept: RSS {left['rss_mb']:.0f} MB {options.leave:g} s after the class left with "
                        f"nobody coming, {left['rss_mb'] - baseline['rss_mb']:+.0f} MB on the baseline "
                        f"{baseline['rss_mb']:.0f} MB")
    fresh = baseline["fresh_worker_mb"]
    for rss in left["workers_mb"]:
        if rss - fresh > slack:
            failures.append(f"memory kept: a worker holds {rss:.0f} MB {options.leave:g} s after the class left, "
                            f"{rss - fresh:+.0f} MB on a fresh worker's {fresh:.0f} MB")
    return failures


def left_line(left: dict, baseline: dict, options: argparse.Namespace) -> str:
    return (f"class left, nobody came: {options.leave:g} s later (no request since) server RSS "
            f"{left['rss_mb']:.0f} MB ({left['rss_mb'] - baseline['rss_mb']:+.0f} on the baseline), workers "
            f"{', '.join(f'{w:.0f}' for w in left['workers_mb']) or 'none'} MB (a fresh one: "
            f"{baseline['fresh_worker_mb']:.0f} MB)")


def server_failures(result: dict, baseline: dict, options: argparse.Namespace) -> list[str]:
    """The server's side of a cohort's verdict: its log's tracebacks, and a leak."""
    failures = [f"server log: {text}" for text in result["server_errors"]]
    after = result["after"]
    if after["rss_mb"] - baseline["rss_mb"] > options.rss_slack_mb:
        failures.append(f"leak: RSS {after['rss_mb']:.0f} MB after the cohort left, "
                        f"{after['rss_mb'] - baseline['rss_mb']:+.0f} MB on the baseline {baseline['rss_mb']:.0f} MB")
    if after["threads"] > baseline["threads"] + options.thread_slack:
        failures.append(f"leak: {after['threads']} threads after the cohort left, baseline {baseline['threads']}")
    # (the baseline is read after the warm-up, when the server's pool holds its warm workers)
    if after["workers"] > baseline["workers"]:
        failures.append(f"leak: {after['workers']} worker processes after the cohort left, "
                        f"baseline {baseline['workers']}")
    return failures


def workers_line(baseline: dict, after: dict) -> str:
    return (f"worker processes: baseline {baseline['workers']} ({baseline['workers_rss_mb']:.0f} MB), "
            f"after {after['workers']} ({after['workers_rss_mb']:.0f} MB)")


def cpu_line(cpu: dict) -> str:
    """Both sides' CPU in cores, each split by kind of process (the server's own, its workers)."""
    def split(cores):
        return ", ".join(f"{k} {v:.2f}" for k, v in cores.items() if k != "total")
    return (f"CPU over the window, in cores: server {_n(cpu['server_cores']['total'], 2)} "
            f"({split(cpu['server_cores'])}), load generator {_n(cpu['generator_cores']['total'], 2)} "
            f"({split(cpu['generator_cores'])})")


def _n(value, digits=1, scale=1.0) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def report(result: dict, baseline: dict, options: argparse.Namespace) -> str:
    lines = [f"cohort {result['cohort']}: {len(result['sessions'])} sessions, {result['window_seconds']:.0f} s window, "
             f"fair share {_n(result['fair_share_steps_per_second'])} steps/s per admitted run",
             f"{'session':>7} {'admitted s':>10} {'steps/s':>8} {'admitted':>9} {'share':>6} "
             f"{'refresh ms med/p95':>19} {'queue':>12} {'errors':>6}"]
    for s in result["sessions"]:
        queue = ("place " + "→".join(map(str, s["queue_places"]))) if s["queue_places"] else (
            "shown" if s["queue_seen"] else "-")
        lines.append(f"{s['session']:>7} {s['admitted_seconds']:>10.1f} {_n(s['steps_per_second']):>8} "
                     f"{_n(s['admitted_steps_per_second']):>9} {_n(s.get('share'), 2):>6} "
                     f"{_n(s['refresh_median_s'], 0, 1e3) + ' / ' + _n(s['refresh_p95_s'], 0, 1e3):>19} "
                     f"{queue:>12} {sum(s['errors'].values()):>6}")
    b, d, a, cpu = result["before"], result["during"], result["after"], result["cpu"]
    lines += [f"server RSS MB: baseline {baseline['rss_mb']:.0f}, before {b['rss_mb']:.0f}, during max "
              f"{d['rss_mb_max']:.0f} mean {d['rss_mb_mean']:.0f}, after {a['rss_mb']:.0f} "
              f"({a['rss_mb'] - baseline['rss_mb']:+.0f} on the baseline)",
              f"server threads: baseline {baseline['threads']}, before {b['threads']}, during max {d['threads_max']} "
              f"mean {d['threads_mean']:.0f}, after {a['threads']}",
              workers_line(baseline, a), cpu_line(cpu)
              + f"; server after the cohort left: {a['server_cores_at_rest']:.2f}"]
    if result.get("left"):
        lines.append(left_line(result["left"], baseline, options))
    refused = sorted({url for s in result["sessions"] for url in s["refused"]})
    if refused:
        lines.append(f"requests off loopback refused (not counted as errors): {', '.join(refused)}")
    failures = result["failures"]
    lines.append("verdict: ok" if not failures else "verdict: FAIL\n  " + "\n  ".join(failures))
    return "\n".join(lines)


# --- the whole test -----------------------------------------------------------------------

def run(options: argparse.Namespace, browser=None, echo=print, kind: str = "load", **parts) -> dict:
    """Start a server, warm it, run the cohorts; return everything measured, with `failures`.
    Uses `browser` (a Playwright Chromium) if given, else starts one of its own. `parts` may
    replace this test's cohort, judge and report (tests/classroom.py does); `kind` names its
    folder under out/ and its run store."""
    cohort_of, judge_of, report_of = (parts.get(name, default) for name, default in
                                      (("cohort", cohort), ("judge", judge), ("report", report)))
    options.shots = Path(getattr(options, "shots", None) or OUT.parent / kind)
    options.shots.mkdir(parents=True, exist_ok=True)
    store = Path(tempfile.mkdtemp(prefix=f"gate-explorer-{kind}-")) / "runs.sqlite"
    # A closed tab's training run keeps going RELOAD_GRACE s for a reload (pages/session.py):
    # short here, so "after" is read once the runs of the cohort have ended; --reload-grace
    # sets it (the app's own is 30 s). The arena cap is part of how the README starts the
    # server (explorer/memory.py).
    env = {"GATE_EXPLORER_DB": str(store), ARENAS_ENV: str(ARENAS),
           "GATE_EXPLORER_RELOAD_GRACE_S": f"{getattr(options, 'reload_grace', RELOAD_GRACE):g}"}
    if getattr(options, "max_runs", None):
        env["GATE_EXPLORER_MAX_RUNS"] = str(options.max_runs)
    ttl = getattr(options, "session_ttl", SESSION_TTL)        # None: the app's own
    server = Server(options.shots / "streamlit.log", env=env,
                    launch=[sys.executable, "-m", "streamlit", "run", "app.py",
                            *(("--server.disconnectedSessionTTL", f"{ttl:g}") if ttl is not None else ())])
    results = {"options": {k: v for k, v in vars(options).items() if k != "shots"}, "cohorts": [],
               "server_log": str(server.log_path), "store": str(store)}
    playwright = None
    try:
        server.start()
        pid = server.proc.pid
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        assert exe.startswith("python") and b"streamlit" in Path(f"/proc/{pid}/cmdline").read_bytes(), \
            f"pid {pid} is {exe}, not the Streamlit server's Python"
        if browser is None:
            from playwright.sync_api import sync_playwright
            playwright = sync_playwright().start()
            browser = launch_chromium(playwright)
        watch = Watch(pid)
        warm_up(browser, server, options.shots, options.settings)
        results["baseline"] = baseline = {k: v for k, v in settle(watch, options.settle, server.url).items() if k != "readings"}
        fresh = ""
        if getattr(options, "leave", 0):          # (the class-leaves check compares workers with it)
            baseline["fresh_worker_mb"] = round(fresh_worker_mb(), 1)
            fresh = f", a fresh one {baseline['fresh_worker_mb']:.0f} MB"
        echo(f"server pid {pid} on {server.url}: baseline RSS {baseline['rss_mb']:.0f} MB, "
             f"{baseline['threads']} threads (after a warm-up run and {options.settle:g} s); workers "
             f"{', '.join(f'{w:.0f}' for w in baseline['workers_mb'])} MB{fresh}")
        for number in range(1, options.cohorts + 1):
            result = cohort_of(browser, server, options, watch, number)
            result["failures"] = judge_of(result, baseline, options)
            results["cohorts"].append(result)
            echo(report_of(result, baseline, options))
    finally:
        if playwright is not None:
            if browser is not None:
                browser.close()
            playwright.stop()
        server.stop()
    results["failures"] = [f"cohort {c['cohort']}: {f}" for c in results["cohorts"] for f in c["failures"]]
    return results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=10, help="browser sessions per cohort, each training")
    p.add_argument("--seconds", type=float, default=60.0, help="the measured training window per cohort")
    p.add_argument("--cohorts", type=int, default=1, help="cohorts one after another (the memory check wants 3)")
    p.add_argument("--settle", type=float, default=45.0,
                   help="seconds after a cohort's tabs close before 'after' is read (a closed tab's session is "
                        "kept the TTL, 30 s, then let go at the server's next sweep, within 10 s)")
    p.add_argument("--leave", type=float, default=60.0,
                   help="after the last cohort, seconds with no visitor and no request before the server's and its "
                        "workers' memory are read (0: no such reading)")
    p.add_argument("--reload-grace", type=float, default=RELOAD_GRACE,
                   help="GATE_EXPLORER_RELOAD_GRACE_S for the server: seconds a closed tab's run trains on for a "
                        "reload (the app's own: 30)")
    p.add_argument("--session-ttl", type=float,
                   help="the server's server.disconnectedSessionTTL, s (default: the app's, .streamlit/config.toml)")
    p.add_argument("--max-runs", type=int, help="GATE_EXPLORER_MAX_RUNS for the server: runs training at once")
    p.add_argument("--settings", default="steps=100000",
                   help="the run's settings as link parameters (default: the defaults, long enough not to finish)")
    p.add_argument("--min-share", type=float, default=0.8, help="an admitted run's least share of the fair share")
    p.add_argument("--min-admitted", type=float, default=5.0,
                   help="seconds admitted before a run's share is judged (shorter is too noisy to call)")
    p.add_argument("--start-grace", type=float, default=15.0,
                   help="seconds after Train a run may take to start without showing a queue place")
    p.add_argument("--rss-slack-mb", type=float, default=50.0, help="RSS after a cohort may exceed the baseline by this")
    p.add_argument("--thread-slack", type=int, default=2,
                   help="threads after a cohort may exceed the baseline by this: a closed session's thread still "
                        "saving, a second I/O worker if two requests overlapped (each run that trains holds one)")
    p.add_argument("--json", type=Path, help="write everything measured here")
    return p


def bounded(p: argparse.ArgumentParser, limits: dict, argv: list[str] | None) -> argparse.Namespace:
    """argv parsed by p, each option named in limits refused outside its (low, top)."""
    args = p.parse_args(argv)
    for name, (low, top) in limits.items():
        if not low <= getattr(args, name) <= top:
            p.error(f"--{name} must be from {low} to {top}")
    return args


def options(argv: list[str] | None = None) -> argparse.Namespace:
    return bounded(parser(), LIMITS, argv)


def finish(args: argparse.Namespace, results: dict, what: str) -> int:
    """Write the results where --json says, print the verdict; the exit status."""
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    print(f"{what}: " + ("ok" if not results["failures"] else f"FAIL ({len(results['failures'])} problems)"))
    return 1 if results["failures"] else 0


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    return finish(args, run(args), "load test")


if __name__ == "__main__":
    sys.exit(main())
