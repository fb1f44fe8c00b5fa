"""The Sweep page in a real browser: a stored sweep drawn from its link, and a click on one run's
point opening that run on the Gates page. The sweep is run here, into the server's own store
(conftest.py's server_store)."""
from urllib.parse import parse_qs, urlsplit

import pytest
from _app import TIMEOUT_MS, plot, wait_ready

from explorer.store import RunStore
from explorer.sweep import grid, sweep


@pytest.fixture(scope="module")
def stored_sweep(server_store):
    configs = grid({"cell": ["rnn", "gru"], "seq_len": [5, 10]}, seeds=2, steps=40, hidden=8, eval_every=20,
                   device="cpu")
    return sweep(configs, store=RunStore(server_store), workers=2)


POINT = """sel => {
    const gd = document.querySelector(sel);
    const k = gd._fullData.findIndex(t => t.mode === 'markers');
    const trace = gd._fullData[k], layout = gd._fullLayout, box = gd.getBoundingClientRect();
    const i = trace.x.length - 1;               // the trace's last run: its longest length
    return {x: box.left + layout._size.l + layout.xaxis.c2p(trace.x[i]),
            y: box.top + layout._size.t + layout.yaxis.c2p(trace.y[i]),
            run: trace.customdata[i][0], cell: trace.legendgroup, T: trace.x[i], seed: trace.customdata[i][1]};
}"""


def test_a_stored_sweep_from_its_link_and_a_click_opens_a_run_on_the_gates_page(app, stored_sweep):
    sweep_id = stored_sweep.attrs["sweep_id"]
    page = app.page
    page.goto(f"{app.url}/sweep?sweep={sweep_id}")
    loss = plot(f"sweep_chart_loss_{sweep_id}")
    wait_ready(page, loss)
    for name in ("solved", "grad"):
        page.locator(plot(f"sweep_chart_{name}_{sweep_id}")).first.wait_for(state="visible")
    assert not app.problems()
    assert parse_qs(urlsplit(page.url).query)["sweep"] == [sweep_id]
    app.shot("sweep")

    point = page.evaluate(POINT, loss)
    assert point["run"] in set(stored_sweep["run_id"])
    page.locator(loss).first.scroll_into_view_if_needed()
    point = page.evaluate(POINT, loss)                # (where it is once scrolled to)
    page.mouse.move(point["x"], point["y"])
    page.mouse.click(point["x"], point["y"])
    picked = page.locator('[data-testid="stMarkdownContainer"]', has_text="Picked:")
    picked.wait_for(timeout=TIMEOUT_MS)
    row = stored_sweep[stored_sweep["run_id"] == point["run"]].iloc[0]
    assert f"{row['cell']}, T = {row['seq_len']}, seed {row['seed']}" in picked.first.inner_text()
    app.shot("sweep-picked")
    app.press("Open it on the Gates page")
    app.wait_until(lambda: "/gates" in page.url and "run=" in page.url, 30, "the Gates page with the picked run")
    assert parse_qs(urlsplit(page.url).query)["run"] == [point["run"]]
    assert not app.problems()
    app.shot("sweep-opened-on-gates")
