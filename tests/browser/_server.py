"""Start the app's Streamlit server and a Chromium for Playwright.

Shared by the browser tests (conftest.py) and bench_app.py, so both drive the same server.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "out" / "screenshots"

CHROMIUM = "/usr/bin/chromium"   # Debian's; Playwright never downloads a browser here
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
INSTALL_HINT = ("The browser tests need Chromium at /usr/bin/chromium and the Python package "
                "playwright (requirements-dev.txt). Install Chromium with: "
                "apt-get update && apt-get install -y chromium  (.ci/run does this). "
                "Never run `playwright install`.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`streamlit run app.py` (or launch: another command that runs it, taking its flags) on a
    free port, its output in log_path."""

    def __init__(self, log_path: Path, app: str = "app.py", cwd: Path = REPO, env: dict | None = None,
                 launch: list[str] | None = None):
        self.log_path, self.cwd = Path(log_path), cwd
        self.launch = launch or [sys.executable, "-m", "streamlit", "run", app]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> "Server":
        self.port = free_port()
        # No file watcher: the server serves the code as it was at start.
        cmd = [*self.launch, "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(self.port),
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {self.proc.returncode} before it was ready. "
                                   f"Its output ({self.log_path}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"streamlit was not healthy on port {self.port} after {timeout:g} s. "
                                   f"Its output ({self.log_path}):\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 10.0) -> None:
        """End the server this object started, and only it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def launch_chromium(playwright):
    """Debian's Chromium, driven by Playwright; a clear error when it is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(f"No Chromium at {CHROMIUM}. {INSTALL_HINT}")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
