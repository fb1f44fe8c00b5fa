"""The app as a user of the package starts it: `gate-explorer app` from a non-editable install,
in a folder outside the checkout, where .streamlit/config.toml is not read. Its charts must
draw (they need the static serving that the command turns on) and Train must train."""
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from _app import TIMEOUT_MS, AppPage, plot
from _install import installed_env
from _server import Server

from explorer.memory import ARENAS, ARENAS_ENV

BLANK = "The charts cannot be drawn"   # pages/charts.py's message when Plotly cannot load


@pytest.fixture(scope="module")
def installed_server(tmp_path_factory, shots, installed_package):
    target = installed_package
    srv = Server(shots / "installed-streamlit.log", cwd=tmp_path_factory.mktemp("elsewhere"),
                 env=installed_env(target), launch=[str(target / "bin" / "gate-explorer"), "app"])
    try:
        srv.start()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    yield srv, target
    srv.stop()


def test_the_installed_app_draws_its_charts_and_trains(installed_server, browser, shots):
    server, target = installed_server
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        app = AppPage(context.new_page(), server.url, shots)
        app.open(plot("loss_chart"))
        # Drawn by Plotly, from the script the installed app copied into its own static/.
        assert app.page.locator(f"{plot('loss_chart')} .main-svg").count() > 0
        assert list((target / "explorer" / "_app" / "static").glob("plotly*.js"))
        assert app.page.get_by_text(BLANK).count() == 0
        app.press("Train")
        app.wait_step_above(0)
        assert not app.problems()
        app.shot("installed-app-train")
        app.press("Pause")
    finally:
        context.close()


def test_the_installed_app_starts_with_the_arena_cap(installed_server):
    server, _ = installed_server
    # `gate-explorer app` execs Streamlit in its own process (same pid) with the cap set,
    # unless the environment already chose one.
    environ = Path(f"/proc/{server.proc.pid}/environ").read_bytes().split(b"\0")
    expected = os.environ.get(ARENAS_ENV, str(ARENAS))
    assert f"{ARENAS_ENV}={expected}".encode() in environ


def test_the_installed_app_serves_the_follow_route(installed_server):
    # app.py's st.App (pages/live.py's route beside Streamlit's own) is what `gate-explorer app` runs.
    server, _ = installed_server
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(f"{server.url}/follow-live/{'0' * 32}?since=-1", timeout=30)
    assert refused.value.code == 403
    assert "not known here" in json.loads(refused.value.read())["message"]
