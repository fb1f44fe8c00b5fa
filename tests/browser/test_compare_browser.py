"""The Compare page in a real browser (Chromium via Playwright): two saved runs on one loss
chart, and the page's link, sent to a fresh browser, showing the same comparison. The runs are
trained here and saved into the server's own store (conftest.py's server_store)."""
from urllib.parse import parse_qs, urlsplit

import pytest
from _app import TIMEOUT_MS, AppPage, plot, plot_data, wait_ready

from explorer import Config, Trainer
from explorer.store import RunStore, new_id, new_key

SMALL = dict(task="adding", seq_len=10, hidden=8, steps=30, probe_every=10, eval_every=10, batch_size=8)


@pytest.fixture(scope="module")
def two_runs(server_store) -> dict[str, str]:
    """Two small runs (an LSTM, a GRU) saved by another browser: name -> id."""
    store, runs = RunStore(server_store), {}
    for cell, name in (("lstm", "Compared LSTM"), ("gru", "Compared GRU")):
        trainer = Trainer(Config(**SMALL, cell=cell))
        for _ in range(trainer.config.steps):
            trainer.step()
        runs[name] = new_id()
        store.save(runs[name], trainer, owner_key=new_key(), name=name)
    return runs


def shows_the_comparison(tab: AppPage, runs: dict[str, str]) -> None:
    """Both runs picked, both in the one loss chart, the other sections drawn, no traceback."""
    page = tab.page
    wait_ready(page, plot("compare_loss"))
    names = list(runs)
    tab.wait_until(lambda: [t.get("name") for t in plot_data(page, "compare_loss")] == names, 30,
                   f"the loss chart to draw {names}; it has {[t.get('name') for t in plot_data(page, 'compare_loss')]}")
    assert page.locator(plot("compare_loss")).count() == 1
    assert [t.get("name") for t in plot_data(page, "compare_grad")] == names
    page.locator(plot("compare_gates")).first.wait_for(state="visible")
    # (read until drawn: a rerun on a busy machine can leave the picker empty for a moment)
    picker = page.locator(".st-key-compare_pick")
    tab.wait_until(lambda: all(name in picker.inner_text() for name in names), 15,
                   f"the picker to show {names}")
    assert "cell" in page.locator('[data-testid="stTable"]').first.inner_text()
    assert not tab.problems()


def test_two_saved_runs_on_one_chart_and_the_link_shows_them_in_a_fresh_browser(app, browser, two_runs):
    ids = ".".join(two_runs.values())
    app.page.goto(f"{app.url}/compare?compare={ids}")
    shows_the_comparison(app, two_runs)
    link = app.wait_until(lambda: "compare=" in app.page.url and app.page.url, 15,
                          "the address bar to name the compared runs")
    assert parse_qs(urlsplit(link).query)["compare"] == [ids] and urlsplit(link).path == "/compare", link
    app.shot("compare")

    context = browser.new_context(viewport={"width": 1600, "height": 1000})   # no cookie: someone else
    context.set_default_timeout(TIMEOUT_MS)
    try:
        other = AppPage(context.new_page(), app.url, app.shots)
        other.page.goto(link)
        shows_the_comparison(other, two_runs)
        assert parse_qs(urlsplit(other.page.url).query)["compare"] == [ids]
        other.shot("compare-sent-link")
    finally:
        context.close()
