"""The README's screenshots: the Train page after a short run, and the Gates page of that run.

    python tests/screenshots.py [--out docs] [--steps N]

Run it by hand when one of the two pages changes, and look at the pictures before committing
them; the test suite never runs it. It starts the app's server itself (a free loopback port, a
run store in a temporary folder, never yours), drives Chromium (/usr/bin/chromium, as the
browser tests do: tests/browser/_server.py and _app.py) at 1600×1000, trains the default run
(the adding problem, an LSTM of 64 units, T = 50, 2,000 steps, by when it has learned the task;
--steps N changes only its steps) to its end, and writes the visible window of each page:
OUT/train.png and OUT/gates.png. It exits 1, saving nothing, if a page
shows a traceback or a JavaScript error.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "browser"), str(HERE.parent)]

from _app import STEP, TIMEOUT_MS, AppPage, plot  # noqa: E402
from _server import REPO, Server, launch_chromium  # noqa: E402

from explorer.config import Config  # noqa: E402

VIEWPORT = {"width": 1600, "height": 1000}
SIDEBAR_TO_TOP = """() => { const s = document.querySelector('[data-testid="stSidebarContent"]');
                           if (s) s.scrollTop = 0; }"""
# (the page's nav title, what must be drawn before the picture, the file)
SHOTS = (("Train", plot("loss_chart"), "train.png"), ("Gates", plot("gate_heatmaps"), "gates.png"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="the folder for the PNGs (docs/)")
    parser.add_argument("--steps", type=int, help="the run's steps (default: the default run's)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory() as folder, \
            Server(Path(folder) / "streamlit.log", env={"GATE_EXPLORER_DB": str(Path(folder) / "runs.sqlite")}) as server, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.set_default_timeout(TIMEOUT_MS)
            app = AppPage(context.new_page(), server.url, Path(folder))
            app.open(plot("loss_chart"))
            steps = args.steps or Config().steps
            if args.steps:
                app.configure({"steps": steps})
                app.page.evaluate(SIDEBAR_TO_TOP)          # (configure scrolled it down to the field)
            app.press("Train")
            app.wait_until(lambda: app.step() >= steps, 600, f"the run to reach step {steps}")
            pictures = {}
            for title, drawn, name in SHOTS:
                app.go_to(title, drawn)
                app.page.wait_for_timeout(1500)            # (Plotly's transitions and the fonts settle)
                problems = app.problems()
                if problems:
                    print("\n".join(problems), file=sys.stderr)
                    return 1
                pictures[name] = app.page.screenshot()     # the window a reader sees, not the whole page
        finally:
            browser.close()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, png in pictures.items():
        (args.out / name).write_bytes(png)
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
