"""Browser fixtures: one Streamlit server and one Chromium per test session, a fresh browser
context per test. Screenshots and the server's log go to out/screenshots/.

Without Chromium or Playwright these tests fail (never skip), saying how to install them.
"""
import shutil

import pytest
from _app import TIMEOUT_MS, AppPage
from _server import INSTALL_HINT, OUT, Server, launch_chromium

_used = []   # set once the screenshot folder is made, for the summary line


def pytest_terminal_summary(terminalreporter):
    if _used:
        terminalreporter.write_line(f"browser tests: screenshots and server log in {OUT}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)   # lets the page fixture see a failed test
    return report


@pytest.fixture(scope="session")
def shots():
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    _used.append(OUT)
    return OUT


@pytest.fixture(scope="session")
def server_store(tmp_path_factory):
    """The run store the server saves into: a fresh one of its own, never the user's. A test
    may save runs into it too (SQLite in WAL mode serves both processes)."""
    return tmp_path_factory.mktemp("store") / "runs.sqlite"


@pytest.fixture(scope="session")
def server(shots, server_store):
    srv = Server(shots / "streamlit.log", env={"GATE_EXPLORER_DB": str(server_store)})
    try:
        srv.start()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.fail(f"playwright is not installed. {INSTALL_HINT}", pytrace=False)
    with sync_playwright() as playwright:
        try:
            chromium = launch_chromium(playwright)
        except (RuntimeError, Error) as error:
            pytest.fail(f"Chromium did not start: {error}\n{INSTALL_HINT}", pytrace=False)
        yield chromium
        chromium.close()


@pytest.fixture
def app(browser, server, shots, request):
    """A fresh tab (its own browser context, so its own Streamlit session) on the app."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    tab = AppPage(context.new_page(), server.url, shots)
    yield tab
    call = getattr(request.node, "rep_call", None)
    if call is not None and call.failed:
        tab.page.screenshot(path=shots / f"FAILED-{request.node.name}.png")
    # A closed tab's session lingers on the server for a while: pause its run so it does
    # not take the CPU from the next test.
    pause = tab.page.get_by_role("button", name="Pause", exact=True)
    try:
        if pause.count() and pause.is_enabled():
            pause.click(timeout=5000)
            tab.page.wait_for_timeout(500)
    except Exception:   # noqa: BLE001 - best effort; the test's verdict stands
        pass
    context.close()
