"""What the app costs the training it shows, measured side by side in one run.

    .venv/bin/python tests/browser/bench_app.py [--seconds 20] [--rounds 2] [--json out.json]

For the default configuration (adding, LSTM(64), T = 50, batch 64) it alternates, round by
round, so a noisy machine hurts both sides alike:

* page:    the app's Streamlit server with the Train page open in Chromium, training and
           refreshing its live charts; steps/s is read off the run's own step counter.
* no page: the same run (explorer.Run, same torch thread count as the app) in a plain
           Python process with nothing polling it.

--split adds a third side, "undrawn", which splits the page's cost from the app's own path:
the Train page open and training as in "page", but the browser's polls of /train-live/ are
refused before they leave it, so nothing is drawn and no figure is built; steps are read from
the run's route (pages/live.py) at the start and the end. page / undrawn is what the drawing
costs, undrawn / no page what the rest of the app costs (its worker process, autosave, the
server).

--browser-apart measures the classroom's layout, where the browser is on another machine: the
server, its training worker and the no-page run are held to one core and Chromium to the
other, so the browser's drawing no longer takes the training's core (the server still shares
it). Without it everything shares the machine's cores, as when one laptop runs both.

It reports the ratio of their steps/s in each round (and the median and the worst), the bytes the server sends per refresh of the live
part of the page (and the refresh rate: the answers with a new step to the page's polls of
/train-live/, pages/live.py, their bytes as sent), the cores the server, its training worker
and Chromium used meanwhile (from /proc), and how long a fresh tab takes, on the warm
server, to show the Train page's first chart. Targets (issue 3): ratio >= 0.8, < 500 KB per
refresh, first chart < 3 s.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _app import STEP, AppPage, plot, wait_ready  # noqa: E402
from _server import OUT, REPO, Server, launch_chromium  # noqa: E402

sys.path.insert(0, str(REPO))
from tests.load import CpuMeter, generator_kind  # noqa: E402

BASELINE = """
import json, sys, time
sys.path.insert(0, {repo!r})
import pages.session                     # the app's torch thread setting, nothing more
from explorer.memory import settle_for_training
settle_for_training()                    # a process that only trains, as the app's worker is
from explorer import Config, Run
run = Run(Config(steps=200_000))
run.start()
time.sleep({warmup})
first = run.snapshot().step; start = time.monotonic()
time.sleep({seconds})
last = run.snapshot().step; took = time.monotonic() - start
run.stop()
print(json.dumps({{"steps_per_second": (last - first) / took}}))
"""


def no_page(seconds: float, warmup: float, cores: set[int] | None = None) -> float:
    code = BASELINE.format(repo=str(REPO), seconds=seconds, warmup=warmup)
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         preexec_fn=pin)
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_second"]


def with_page(browser, server: Server, seconds: float, warmup: float) -> dict:
    """The page's side of a round: steps/s, refreshes, and the cores each process used."""
    own = server.proc.pid
    served = CpuMeter(own, kind=lambda pid, name: "server" if pid == own else "worker")
    browsing = CpuMeter(os.getpid(), skip=own, kind=generator_kind)
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(60_000)
    app = AppPage(context.new_page(), server.url, OUT)
    polls: list[tuple[float, int]] = []        # (time, bytes sent) of each poll answered with a new step
    app.page.on("response", lambda r: "/train-live/" in r.url and r.status == 200 and polls.append(
        (time.monotonic(), int(r.headers.get("content-length", 0)))))
    try:
        app.open(plot("loss_chart"))
        app.configure({"steps": 200_000})
        app.press("Train")
        app.page.wait_for_timeout(warmup * 1000)
        first, start = app.step(), time.monotonic()
        served.mark(), browsing.mark()
        app.page.wait_for_timeout(seconds * 1000)
        last, took = app.step(), time.monotonic() - start
        cores = {**served.cores(), **{k: v for k, v in browsing.cores().items() if k in ("chromium", "playwright")}}
        refreshes = [(at, size) for at, size in polls if start <= at <= start + took]
        app.press("Pause")
    finally:
        context.close()
    sizes = [size for _, size in refreshes]
    return {"steps_per_second": (last - first) / took, "refreshes_per_second": len(refreshes) / took,
            "bytes_per_refresh_median": statistics.median(sizes) if sizes else None,
            "bytes_per_refresh_max": max(sizes) if sizes else None, "cores": cores}


def undrawn(browser, server: Server, seconds: float, warmup: float) -> float:
    """The page's side with its polls refused in the browser: steps/s, read from the route."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(60_000)
    app = AppPage(context.new_page(), server.url, OUT)
    asked: list[str] = []

    def refuse(route):
        asked.append(route.request.url.split("?")[0])
        route.abort()

    def step() -> int:
        with urllib.request.urlopen(asked[-1] + "?since=-1", timeout=30) as answer:
            return json.loads(answer.read())["head"]["step"]
    try:
        app.open(plot("loss_chart"))
        app.configure({"steps": 200_000})
        context.route("**/train-live/**", refuse)
        app.press("Train")
        app.page.wait_for_timeout(warmup * 1000)
        first, start = step(), time.monotonic()
        app.page.wait_for_timeout(seconds * 1000)
        last, took = step(), time.monotonic() - start
        context.unroute("**/train-live/**")
        app.press("Pause")
    finally:
        context.close()
    return (last - first) / took


def first_chart_seconds(browser, server: Server) -> float:
    """A fresh tab on a warm server: from navigation to the loss chart drawn."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        page = context.new_page()
        start = time.monotonic()
        page.goto(server.url + "/")
        page.locator(f"{plot('loss_chart')} .main-svg").first.wait_for(state="visible", timeout=60_000)
        took = time.monotonic() - start
        wait_ready(page, STEP)
        return took
    finally:
        context.close()


def split_summary(results: dict) -> dict:
    """The undrawn side's ratios, round by round: to no page (the app's own path) and the
    page's to it (the drawing)."""
    path = [u / n for u, n in zip(results["undrawn"], results["no_page"])]
    drawing = [r["steps_per_second"] / u for r, u in zip(results["page"], results["undrawn"])]
    return {"steps_per_second_undrawn": round(statistics.median(results["undrawn"]), 1),
            "undrawn_over_no_page_per_round": [round(r, 3) for r in path],
            "undrawn_over_no_page_median": round(statistics.median(path), 3),
            "page_over_undrawn_per_round": [round(r, 3) for r in drawing],
            "page_over_undrawn_median": round(statistics.median(drawing), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per side per round")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--split", action="store_true",
                        help="also measure the page open with its drawing refused (the 'undrawn' side)")
    parser.add_argument("--browser-apart", action="store_true",
                        help="the server and training on one core, Chromium on the other")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    results = {"page": [], "no_page": [], "undrawn": [], "first_chart_seconds": []}
    cores = sorted(os.sched_getaffinity(0))
    training_core = {cores[0]} if args.browser_apart and len(cores) > 1 else None
    if training_core:
        os.sched_setaffinity(0, training_core)      # the server and its workers inherit it
    with Server(OUT / "bench-streamlit.log") as server:
        if training_core:     # Playwright's driver and Chromium, started next, inherit the other cores
            os.sched_setaffinity(0, set(cores) - training_core)
        playwright = sync_playwright().start()
        try:
            browser = launch_chromium(playwright)
            first_chart_seconds(browser, server)                 # warm the server (imports, torch)
            for round_ in range(args.rounds):
                results["first_chart_seconds"].append(first_chart_seconds(browser, server))
                results["page"].append(with_page(browser, server, args.seconds, args.warmup))
                if args.split:
                    results["undrawn"].append(undrawn(browser, server, args.seconds, args.warmup))
                results["no_page"].append(no_page(args.seconds, args.warmup, training_core))
                split = f", undrawn {results['undrawn'][-1]:.1f}" if args.split else ""
                print(f"round {round_ + 1}: page {results['page'][-1]['steps_per_second']:.1f} steps/s{split}, "
                      f"no page {results['no_page'][-1]:.1f} steps/s", file=sys.stderr)
            browser.close()
        finally:
            playwright.stop()
    page = statistics.median(r["steps_per_second"] for r in results["page"])
    alone = statistics.median(results["no_page"])
    ratios = [r["steps_per_second"] / n for r, n in zip(results["page"], results["no_page"])]   # per round
    summary = {
        "steps_per_second_page": round(page, 1), "steps_per_second_no_page": round(alone, 1),
        "ratio_per_round": [round(r, 3) for r in ratios],
        "ratio_median": round(statistics.median(ratios), 3), "ratio_min": round(min(ratios), 3),
        "refreshes_per_second": round(statistics.median(r["refreshes_per_second"] for r in results["page"]), 2),
        "kb_per_refresh_median": round(statistics.median(r["bytes_per_refresh_median"] for r in results["page"]) / 1e3, 1),
        "kb_per_refresh_max": round(max(r["bytes_per_refresh_max"] for r in results["page"]) / 1e3, 1),
        "first_chart_seconds_max": round(max(results["first_chart_seconds"]), 2),
        # Cores each process used while the page trained (median over rounds): steadier than
        # the ratio on a shared machine, and it says who takes the training's processor.
        "cores_median": {kind: round(statistics.median(r["cores"].get(kind, 0.0) for r in results["page"]), 3)
                         for kind in ("server", "worker", "chromium", "playwright")},
        "browser_apart": bool(training_core),
        **(split_summary(results) if args.split else {}),
        "rounds": results,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
