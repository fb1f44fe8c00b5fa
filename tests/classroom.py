"""Classroom load test: a teacher's run followed by a class, beside students training their own.

    python -m tests.classroom [--followers 20] [--own 10] [--idle 0] [--seconds 60] [--solo 20]
                              [--cohorts 1] [--browser-teacher] [--json out.json]

It starts the app's Streamlit server itself (a free loopback port, a fresh run store), warms it
up and reads its baseline memory and threads, as tests/load.py does. Per cohort:

1. The teacher opens the Train page, makes a follow link in the Share menu and presses Train.
   For --solo seconds the teacher's run trains alone: its solo steps/s.
2. The class joins: --followers sessions open the follow link, --own sessions open the Train page
   and press Train (part 1's admission queues them), --idle sessions open the Train page and do
   nothing.
3. For --seconds: the teacher's steps/s (as the server sends its step counter) against its solo
   figure; each follower's refresh interval (median and p95, between its page's finished
   fragment reruns and its answered polls of the follow route) and the steps it saw; each own
   run's steps; every error (tracebacks, st.error boxes, dropped connections, the server's log).
4. Everyone leaves; after --settle seconds, the server's memory and threads against the baseline.

Every session is a client of Streamlit's own websocket protocol (tests/wsclient.py): it renders
nothing, but asks for every rerun a browser would (each fragment's auto-rerun included),
sends the cached message hashes a browser sends, and polls the follow route as a follower's
chart element does (pages/live.py). Thirty Chromium front-ends do not fit beside
the server on two cores (ten already held back the generator's own tabs, tests/load.py), and
even the teacher's one tab drawing five live charts took 0.7 of the two cores from the server
it measured; in a lecture every browser runs on its own laptop. --browser-teacher puts the
teacher in Chromium all the same.

It exits non-zero on any error, a follower whose p95 refresh is over --max-follow-p95 s, a
teacher's run below --min-solo-ratio of its solo steps/s, or a leak.
"""
from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "browser"))

from _app import STEP, TIMEOUT_MS, wait_ready  # noqa: E402
from _server import Server  # noqa: E402
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

from tests import load  # noqa: E402
from tests.load import (Tab, Watch, _n, bounded, finish, memory, open_tab, server_errors,  # noqa: E402
                        server_failures, settle, step_at, thread_names, wait)
from tests.wsclient import StreamlitClient  # noqa: E402

LIMITS = {"followers": (0, 40), "own": (0, 20), "idle": (0, 20), "seconds": (5, 600), "solo": (5, 120),
          "cohorts": (1, 5), "settle": (12, 120)}
FRAGMENT_DONE = ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY


class Class:
    """The class's websocket clients, on an event loop of their own (the main thread drives
    Playwright's synchronous API for the teacher)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="classroom-clients", daemon=True)
        self.thread.start()
        self.clients: dict[str, list[StreamlitClient]] = {"follower": [], "own": [], "idle": []}

    def call(self, coroutine, timeout: float = 120.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def join(self, url: str, role: str, query: str, number: int) -> StreamlitClient:
        client = StreamlitClient(url, path="", query=query, name=f"{role} {number}")
        self.clients[role].append(client)
        try:
            self.call(client.connect())
            if role == "own":
                self.call(client.click("Train"))
        except Exception as problem:   # noqa: BLE001 - reported as that session's error
            client.errors.append(f"joining: {problem!r}")
        return client

    def leave(self) -> None:
        for clients in self.clients.values():
            for client in clients:
                try:
                    self.call(client.close(), timeout=10)
                except Exception:   # noqa: BLE001 - closing the rest matters more
                    pass

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def teacher_link(tab: Tab) -> str:
    """Make the follow link in the teacher's Share menu; its token."""
    page = tab.app.page
    page.get_by_role("button", name="Share", exact=True).click()
    page.get_by_role("button", name="Make a follow link").click()
    code = page.locator('[data-testid="stCode"]', has_text="follow=").first
    code.wait_for(timeout=TIMEOUT_MS)
    text = code.inner_text()
    page.keyboard.press("Escape")
    return text.split("follow=")[1].split()[0].strip()


def rate(steps: list[tuple[float, int]], since: float, until: float) -> float | None:
    first, last = step_at(steps, since), step_at(steps, until)
    if not first or not last or until <= first[0]:
        return None
    return (last[1] - first[1]) / (until - max(since, first[0]))


def intervals(done: list[float], since: float, until: float) -> list[float]:
    """Gaps between refreshes, from the last one before the window to the window's end (a view
    that froze shows its wait)."""
    edges = [t for t in done if t < since][-1:] + [t for t in done if since <= t <= until] + [until]
    return sorted(b - a for a, b in zip(edges, edges[1:]))


def p95(gaps: list[float]) -> float | None:
    return gaps[min(len(gaps) - 1, int(0.95 * len(gaps)))] if gaps else None


def client_summary(client: StreamlitClient, since: float, until: float) -> dict:
    # A view is refreshed by its fragment's reruns, and a follower's Train page by each answered
    # poll of the follow route too (pages/live.py): a 204 says what it shows is the newest.
    done = sorted([t for t, status, *_ in client.finished if status == FRAGMENT_DONE]
                  + [t for t, status in client.polls if status in (200, 204)])
    gaps = intervals(done, since, until)
    steps = [(t, int(v)) for t, label, v in client.metric_times if label == "Step" and str(v).isdigit()]
    return {"name": client.name, "errors": list(client.errors),
            "refreshes": sum(since <= t <= until for t in done),
            "polls": sum(since <= t <= until for t, _ in client.polls),
            "fragment_runs": sum(since <= t <= until for t, status, *_ in client.finished if status == FRAGMENT_DONE),
            "refresh_median_s": round(statistics.median(gaps), 3) if gaps else None,
            "refresh_p95_s": round(p95(gaps), 3) if gaps else None,
            "steps_per_second": rate(steps, since, until), "last_step": steps[-1][1] if steps else None,
            "waiting_seen": any("Waiting:" in text for text in client.texts),
            "bytes": client.bytes_received, "ref_hits": client.ref_hits}


class BrowserTeacher:
    """The teacher in Chromium (--browser-teacher): the projector's browser, on this machine."""

    def __init__(self, browser, server: Server, options: argparse.Namespace):
        self.tab = open_tab(browser, f"{server.url}/?{options.settings}", 0, options.shots)

    def start(self) -> str:
        wait_ready(self.tab.app.page, STEP)
        token = teacher_link(self.tab)
        self.tab.app.press("Train")
        self.tab.app.wait_step_above(0)
        return token

    def wait(self, seconds: float, watch: Watch) -> None:
        wait(self.tab.app.page, seconds, watch, [self.tab])

    @property
    def steps(self) -> list[tuple[float, int]]:
        return self.tab.steps

    def errors(self) -> list[str]:
        self.tab.close_errors()
        return list(self.tab.errors)

    def close(self) -> None:
        self.tab.context.close()


class ClientTeacher:
    """The teacher as a websocket client (the default): in a lecture the teacher's browser runs
    on the teacher's laptop, and here a Chromium tab drawing five live charts took 0.7 of the
    machine's two cores from the server it was measuring."""

    def __init__(self, crowd: Class, server: Server, options: argparse.Namespace):
        self.crowd, self.server = crowd, server
        self.client = StreamlitClient(server.url, query=options.settings, name="teacher")

    def start(self) -> str:
        # The link is in the Share menu's code block; the run store holds it too (this cohort's
        # is the one made after the links of the cohorts before).
        store = sqlite3.connect(self.server.env["GATE_EXPLORER_DB"])
        made = store.execute("SELECT count(*) FROM follows").fetchone()[0]
        self.crowd.call(self.client.connect())
        self.crowd.call(self.client.click("Make a follow link"))
        try:
            deadline = time.monotonic() + 30
            while (row := store.execute("SELECT token FROM follows ORDER BY rowid LIMIT 1 OFFSET ?",
                                        (made,)).fetchone()) is None:
                assert time.monotonic() < deadline, "the teacher's follow link was never made"
                time.sleep(0.2)
        finally:
            store.close()
        self.crowd.call(self.client.click("Train"))
        self.crowd.call(self.client.wait_for(lambda c: int(c.metrics.get("Step", "0") or 0) > 0, 60))
        return row[0]

    def wait(self, seconds: float, watch: Watch) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            watch.sample()
            time.sleep(min(left, 1.0))

    @property
    def steps(self) -> list[tuple[float, int]]:
        return [(t, int(v)) for t, label, v in self.client.metric_times if label == "Step" and str(v).isdigit()]

    def errors(self) -> list[str]:
        return list(self.client.errors)

    def close(self) -> None:
        self.crowd.call(self.client.close(), timeout=10)


def cohort(browser, server: Server, options: argparse.Namespace, watch: Watch, number: int) -> dict:
    before = memory(server.proc.pid)
    log_start = server.log_path.stat().st_size
    crowd = Class()
    teacher = BrowserTeacher(browser, server, options) if options.browser_teacher else ClientTeacher(crowd, server, options)
    try:
        token = teacher.start()
        # Alone: the teacher's run, and its page.
        watch.mark()
        solo_since = time.monotonic()
        teacher.wait(options.solo, watch)
        solo_until = time.monotonic()
        solo = rate(teacher.steps, solo_since, solo_until)
        # The class joins, one session after another.
        for i in range(options.followers):
            crowd.join(server.url, "follower", f"follow={token}", i + 1)
        for i in range(options.own):
            crowd.join(server.url, "own", options.settings, i + 1)
        for i in range(options.idle):
            crowd.join(server.url, "idle", options.settings, i + 1)
        teacher.wait(options.join_grace, watch)
        watch.mark()
        since = time.monotonic()
        teacher.wait(options.seconds, watch)
        until = time.monotonic()
        during, cpu = {**watch.during(), "thread_names": thread_names(server.proc.pid)}, watch.cpu()
        followed = rate(teacher.steps, since, until)
        result = {
            "cohort": number, "token": token, "window_seconds": round(until - since, 2),
            "teacher": "Chromium" if options.browser_teacher else "websocket client",
            "solo_steps_per_second": solo, "followed_steps_per_second": followed,
            "solo_ratio": followed / solo if solo and followed is not None else None,
            "teacher_errors": teacher.errors(),
            "clients": {role: [client_summary(c, since, until) for c in clients]
                        for role, clients in crowd.clients.items()},
            "before": before, "during": during, "cpu": cpu,
        }
    finally:
        try:
            teacher.close()
        except Exception:   # noqa: BLE001 - closing the rest matters more
            pass
        crowd.leave()
        crowd.stop()
    result["after"] = settle(watch, options.settle, server.url)
    with open(server.log_path, "rb") as log:
        log.seek(log_start)
        result["server_errors"] = server_errors(log.read().decode(errors="replace"))
    return result


def judge(result: dict, baseline: dict, options: argparse.Namespace) -> list[str]:
    failures = [f"teacher: {text}" for text in result["teacher_errors"]]
    for role, clients in result["clients"].items():
        for c in clients:
            failures += [f"{c['name']}: {text}" for text in c["errors"]]
    for c in result["clients"]["follower"]:
        if c["refresh_p95_s"] is None or c["refresh_p95_s"] > options.max_follow_p95:
            failures.append(f"{c['name']}: refresh p95 {c['refresh_p95_s']} s (at most {options.max_follow_p95:g} s)")
        if not c["steps_per_second"]:
            failures.append(f"{c['name']}: saw the followed run make no steps")
    for c in result["clients"]["own"]:
        if not c["steps_per_second"] and not c["waiting_seen"]:
            failures.append(f"{c['name']}: its run neither trained nor showed a queue place")
    ratio = result["solo_ratio"]
    if ratio is None or ratio < options.min_solo_ratio:
        failures.append(f"the followed run: {result['followed_steps_per_second']} steps/s against "
                        f"{result['solo_steps_per_second']} solo (at least {options.min_solo_ratio:g}×)")
    return failures + server_failures(result, baseline, options)


def report(result: dict, baseline: dict, options: argparse.Namespace) -> str:
    followers, own = result["clients"]["follower"], result["clients"]["own"]
    p95s = [c["refresh_p95_s"] for c in followers if c["refresh_p95_s"] is not None]
    medians = [c["refresh_median_s"] for c in followers if c["refresh_median_s"] is not None]
    lines = [f"cohort {result['cohort']}: teacher ({result['teacher']}) + {len(followers)} followers, {len(own)} own, "
             f"{len(result['clients']['idle'])} idle (websocket clients); {result['window_seconds']:.0f} s window",
             f"followed run: {_n(result['followed_steps_per_second'])} steps/s with the class, "
             f"{_n(result['solo_steps_per_second'])} solo: {_n(result['solo_ratio'], 2)}×",
             f"followers' refresh: median of medians {_n(statistics.median(medians) if medians else None, 0, 1e3)} ms, "
             f"worst p95 {_n(max(p95s) if p95s else None, 0, 1e3)} ms, median p95 "
             f"{_n(statistics.median(p95s) if p95s else None, 0, 1e3)} ms; "
             f"bytes received per follower (median) {_n(statistics.median([c['bytes'] for c in followers]) / 1e6 if followers else None, 2)} MB, "
             f"references instead of resent elements {sum(c['ref_hits'] for c in followers)}; polls per follower "
             f"(median) {_n(statistics.median([c['polls'] for c in followers]) if followers else None, 0)}, page reruns "
             f"{_n(statistics.median([c['fragment_runs'] for c in followers]) if followers else None, 0)}",
             "own runs, steps/s: " + ", ".join(_n(c["steps_per_second"]) for c in own)
             + f" ({sum(c['waiting_seen'] for c in own)} showed a queue place)"]
    b, d, a, cpu = result["before"], result["during"], result["after"], result["cpu"]
    lines += [f"server RSS MB: baseline {baseline['rss_mb']:.0f}, before {b['rss_mb']:.0f}, during max "
              f"{d['rss_mb_max']:.0f}, after {a['rss_mb']:.0f} ({a['rss_mb'] - baseline['rss_mb']:+.0f} on the baseline)",
              f"server threads: baseline {baseline['threads']}, during max {d['threads_max']}, after {a['threads']}",
              load.workers_line(baseline, a), load.cpu_line(cpu)]
    failures = result["failures"]
    lines.append("verdict: ok" if not failures else "verdict: FAIL\n  " + "\n  ".join(failures))
    return "\n".join(lines)


def run(options: argparse.Namespace, browser=None, echo=print) -> dict:
    """The server, its warm-up and baseline, and the cohorts, as tests/load.py runs them."""
    return load.run(options, browser, echo, kind="classroom", cohort=cohort, judge=judge, report=report)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.classroom", description=__doc__.split("\n\n")[0])
    p.add_argument("--followers", type=int, default=20, help="sessions following the teacher's run")
    p.add_argument("--own", type=int, default=10, help="sessions training their own runs")
    p.add_argument("--idle", type=int, default=0, help="sessions that open the Train page and do nothing")
    p.add_argument("--seconds", type=float, default=60.0, help="the measured window with the class")
    p.add_argument("--solo", type=float, default=20.0, help="seconds the teacher's run trains alone first")
    p.add_argument("--browser-teacher", action="store_true",
                   help="the teacher in Chromium on this machine (default: a websocket client, as the class)")
    p.add_argument("--join-grace", type=float, default=5.0, help="seconds after the class joined before the window")
    p.add_argument("--cohorts", type=int, default=1, help="classes one after another (the leak check wants 3)")
    p.add_argument("--settle", type=float, default=15.0, help="seconds after a class leaves before 'after' is read")
    p.add_argument("--settings", default="steps=100000", help="every run's settings, as link parameters")
    p.add_argument("--max-follow-p95", type=float, default=1.0, help="a follower's largest p95 refresh interval, s")
    p.add_argument("--min-solo-ratio", type=float, default=0.7,
                   help="the followed run's least steps/s with the class, as a fraction of its solo steps/s")
    p.add_argument("--rss-slack-mb", type=float, default=50.0, help="RSS after a class may exceed the baseline by this")
    p.add_argument("--thread-slack", type=int, default=2, help="threads after a class may exceed the baseline by this")
    p.add_argument("--json", type=Path, help="write everything measured here")
    return p


def options(argv: list[str] | None = None) -> argparse.Namespace:
    return bounded(parser(), LIMITS, argv)


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    return finish(args, run(args), "classroom load test")


if __name__ == "__main__":
    sys.exit(main())
