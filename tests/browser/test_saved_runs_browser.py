"""Runs that outlive the tab, in a real browser (Chromium via Playwright): a reload brings back
the same run (paused at its step, or still training), the Share menu's read-only link opens
it in another browser that cannot train it, and the Runs page downloads its tables in forms
pandas reads back. The server saves into a fresh store of its own (conftest.py)."""
import json
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pandas as pd
import pytest
from _app import STEP, TIMEOUT_MS, AppPage, plot, step, wait_ready, wait_until
from safetensors.numpy import load

# Small and quick, and long enough never to finish during a test (test_app_browser.FAST), as
# the link's parameters.
FAST = {"seq_len": 20, "hidden": 16, "batch_size": 16, "steps": 100_000}
TRACE_COLUMNS = ["step", "layer", "sequence", "t", "unit", "quantity", "value"]


# --- reading the page ----------------------------------------------------------------------------
def metric(page, label: str) -> str:
    """The value labelled exactly `label` (e.g. "Status"): an st.metric's, or a cell of the
    Train page's step line (drawn by its chart element, pages/live.py)."""
    box = page.locator('[data-testid="stMetric"], .live-step').filter(
        has=page.locator('[data-testid="stMetricLabel"], .live-label',
                         has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")))
    return box.locator('[data-testid="stMetricValue"], .live-value').first.inner_text(timeout=TIMEOUT_MS).strip()


def url_params(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def chart_x(page, key: str) -> dict[str, list[float]]:
    """Each trace's x values (by trace name) of the Plotly graph keyed `key`, as the browser
    holds them: plain arrays, typed arrays, or Plotly's base64 typed-array specs."""
    return page.evaluate("""sel => { const g = document.querySelector(sel);
        if (!g || !g.data) return {};
        const types = {i1: Int8Array, u1: Uint8Array, u1c: Uint8ClampedArray, i2: Int16Array,
                       u2: Uint16Array, i4: Int32Array, u4: Uint32Array, f4: Float32Array, f8: Float64Array};
        const values = x => {
            if (!x) return [];
            if (x.bdata) {
                const bin = atob(x.bdata), bytes = new Uint8Array(bin.length);
                for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
                return Array.from(new types[x.dtype](bytes.buffer));
            }
            return x.length !== undefined ? Array.from(x, Number) : [];
        };
        const out = {};
        g.data.forEach((t, i) => { out[t.name || String(i)] = values(t.x); });
        return out; }""", plot(key))


def wait_loss_chart_up_to(page, held: int, timeout: float = 30) -> list[float]:
    """The loss chart's training-loss x values, once it draws the run's steps up to `held`.

    The live chart shows at most 400 points (means of blocks of steps past that), so its last x
    is `held` exactly up to 400 steps, and within the last block above."""
    bucket = max(1, -(-held // 400))
    def drawn():
        xs = chart_x(page, "loss_chart").get("training loss", [])
        return xs if xs and held - bucket <= xs[-1] <= held else None
    try:
        return wait_until(page, drawn, timeout, f"the loss chart to draw the steps up to {held}")
    except AssertionError as error:
        raise AssertionError(f"{error}; it holds x = {chart_x(page, 'loss_chart')}") from None


def readings_over(page, seconds: float, every: float = 0.25) -> list[int]:
    values = [step(page)]
    for _ in range(int(seconds / every)):
        page.wait_for_timeout(every * 1000)
        values.append(step(page))
    return values


def pause_and_hold(app) -> int:
    """Press Pause; the step the run holds at once it has settled."""
    app.press("Pause")
    return app.wait_until(lambda: len(set(r := readings_over(app.page, 1.0))) == 1 and r[0], 10,
                          "the step counter to hold still after Pause")


def wait_for_run_in_url(app) -> dict[str, str]:
    return app.wait_until(lambda: (p := url_params(app.page)).get("run") and p, 15,
                          "the address bar to name the run (run=<id>)")


def choose(app, label: str, option: re.Pattern) -> str:
    """Pick the option matching `option` in the selectbox labelled `label` (a combobox);
    return the value it shows."""
    box = app.page.get_by_role("combobox", name=label, exact=True)
    if not option.search(box.input_value()):
        box.click()
        before = app.frames.full_reruns()
        app.page.get_by_role("option", name=option).first.click()
        app.wait_until(lambda: app.frames.full_reruns() > before, TIMEOUT_MS / 1000, f"the rerun after picking {label}")
        wait_ready(app.page)
    value = box.input_value()
    assert option.search(value), f"the {label!r} selectbox shows {value!r}"
    return value


def open_with(app, settings: dict[str, object]) -> None:
    """Open the Train page with settings from its link (one rerun, not one per field)."""
    app.page.goto(f"{app.url}/?{urlencode(settings)}")
    wait_ready(app.page, STEP)
    cell = f"({settings['hidden']})" if "hidden" in settings else ""
    assert cell in app.page.locator('[data-testid="stMain"]').inner_text(), "the link's settings were not taken"


def start_training(app, above: int = 0, settings: dict[str, object] = FAST) -> int:
    open_with(app, settings)
    app.press("Train")
    return app.wait_step_above(above)


def fresh_tab(browser, app):
    """A tab in another browser context: no cookie, so not the owner."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    return context, AppPage(context.new_page(), app.url, app.shots)


# --- the tests -----------------------------------------------------------------------------------
def test_reload_brings_back_the_paused_run_at_its_step_with_its_charts(app):
    start_training(app, above=20)
    held = pause_and_hold(app)
    before = wait_for_run_in_url(app)
    assert before.get("key"), f"the owner's address bar lacks the owner key: {app.page.url}"
    assert metric(app.page, "Status") == "paused"
    wait_loss_chart_up_to(app.page, held)

    app.page.reload()
    wait_ready(app.page, plot("loss_chart"))
    assert app.step() == held, "the reload did not bring back the run at the step it was paused at"
    assert metric(app.page, "Status") == "paused"
    after = url_params(app.page)
    assert after.get("run") == before["run"], f"the reload shows another run: {app.page.url}"
    assert after.get("key") == before["key"]
    xs = wait_loss_chart_up_to(app.page, held)
    block = -(-held // 400)                       # steps per point past 400 (bucket means)
    assert len(xs) == -(-held // block) and xs[0] <= block, \
        f"the reloaded loss chart lacks the run's history: {len(xs)} points from step {xs[0]}"
    assert "Read-only" not in app.page.locator('[data-testid="stMain"]').inner_text()
    assert app.page.get_by_role("button", name="Resume", exact=True).is_enabled()
    assert set(readings_over(app.page, 1.5)) == {held}, "the reloaded run moved while paused"
    assert not app.problems()
    app.shot("saved-run-reloaded")


def reload_finds_it_training(app, run_id: str, before: int, shot: str) -> None:
    app.page.reload()
    wait_ready(app.page, STEP)
    assert url_params(app.page).get("run") == run_id, f"the reload shows another run: {app.page.url}"
    after = app.step()
    assert after >= before, f"the reload shows step {after}, below the {before} it had reached: a new run"
    assert metric(app.page, "Status") == "running"
    later = app.wait_step_above(after, timeout=15)          # it goes on training: two more steps
    app.wait_step_above(later, timeout=15)
    assert metric(app.page, "Status") == "running"
    # the chart carries the run's history from its first step, not from the reload
    xs = app.wait_until(lambda: (x := chart_x(app.page, "loss_chart").get("training loss")) and x[-1] >= before and x,
                        15, f"the loss chart to draw the steps up to {before}")
    assert xs[0] <= -(-xs[-1] // 400), f"the loss chart starts at step {xs[0]}"
    assert not app.problems()
    app.shot(shot)


# Steps of over a second here: the first lands after the rerun that pressing Train makes.
SLOW = {"seq_len": 1000, "hidden": 128, "batch_size": 64, "steps": 100_000, "probe_count": 2}


# Steps slower than a page draw (about 1.2 s each here): the run must be named in the address
# bar before its first step lands, from the rerun that pressing Train makes.
def test_reload_while_training_finds_the_run_still_training(app):
    before = start_training(app, above=1, settings=SLOW)
    run_id = app.wait_until(lambda: url_params(app.page).get("run"), 5,
                            f"the address bar to name the training run (run=<id>); it reads {app.page.url}")
    reload_finds_it_training(app, run_id, before, "saved-run-reloaded-training")


def test_reload_while_training_after_pause_and_resume_finds_the_run_still_training(app):
    """The same, where a full rerun after the first step (Pause, Resume) put the run in the URL."""
    start_training(app, above=5)
    app.press("Pause")
    app.press("Resume")
    run_id = wait_for_run_in_url(app)["run"]
    before = app.wait_step_above(app.step() + 10)
    reload_finds_it_training(app, run_id, before, "saved-run-reloaded-training-resumed")


def test_the_share_menus_run_link_opens_it_read_only_in_a_fresh_browser(app, browser):
    start_training(app, above=20)
    held = pause_and_hold(app)
    owner = wait_for_run_in_url(app)

    sidebar = app.page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_role("button", name=re.compile(r"Share")).first.click()
    code = app.page.locator('[data-testid="stCode"]').filter(has_text="run=").first
    code.wait_for(state="visible")
    link = code.inner_text().strip()
    app.page.keyboard.press("Escape")
    shared = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    assert shared == {"run": owner["run"]}, f"the Share menu's run link is {link!r}: it must name the run, no key"
    assert link.startswith(app.url), link

    context, viewer_tab = fresh_tab(browser, app)
    page = viewer_tab.page
    try:
        assert not context.cookies()
        page.goto(link)
        wait_ready(page, plot("loss_chart"))
        main = page.locator('[data-testid="stMain"]')
        main.get_by_text("Read-only:", exact=False).first.wait_for(state="visible", timeout=10_000)
        for label in ("Train", "Pause", "Resume", "Step"):
            assert page.get_by_role("button", name=label, exact=True).is_disabled(), f"{label} is enabled"
        assert step(page) == held, f"the read-only run shows step {step(page)}, saved at {held}"
        assert metric(page, "Status") == "paused"
        wait_loss_chart_up_to(page, held)
        viewer = url_params(page)
        assert viewer.get("run") == owner["run"] and "key" not in viewer, f"the viewer's address bar: {page.url}"
        assert not viewer_tab.problems()
        viewer_tab.shot("saved-run-read-only")
    finally:
        context.close()
    # The owner still controls it.
    assert app.page.get_by_role("button", name="Resume", exact=True).is_enabled()
    assert not app.problems()


def test_the_runs_page_downloads_the_runs_traces_metrics_and_config(app, tmp_path):
    open_with(app, {**FAST, "probe_every": 10})
    choose(app, "steps per Step", re.compile(r"^10$"))
    for done in (10, 20, 30):
        app.press("Step")
        app.wait_until(lambda: app.step() == done and metric(app.page, "Status") == "paused", 30,
                       f"{done} steps, paused")
    run_id = wait_for_run_in_url(app)["run"]

    app.go_to("Runs", '.st-key-runs_pick')
    picked = choose(app, "Run", re.compile(re.escape(run_id)))
    assert "30 steps" in picked, picked
    app.page.locator('[data-testid="stDataFrame"]').first.wait_for(state="visible")
    assert app.page.get_by_role("button", name="Continue it", exact=True).is_visible()

    def download(label: str):
        with app.page.expect_download(timeout=TIMEOUT_MS) as info:
            app.page.get_by_role("button", name=label, exact=True).click()
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        return path

    traces = pd.read_parquet(download("Traces (Parquet)"))
    assert list(traces.columns) == TRACE_COLUMNS
    assert sorted(traces["step"].unique()) == [0, 10, 20, 30], sorted(traces["step"].unique())
    hidden = traces[(traces["quantity"] == "hidden") & (traces["step"] == 30)]
    assert sorted(hidden["unit"].unique()) == list(range(16))             # hidden = 16
    assert sorted(hidden["sequence"].unique()) == list(range(8))        # probe_count's default
    assert set(hidden["layer"].unique()) == {0}
    assert {"hidden", "cell", "grad_input"} <= set(traces["quantity"])
    assert traces["value"].notna().any()

    metrics = pd.read_csv(download("Metrics (CSV)"))
    assert list(metrics["step"]) == list(range(1, 31)), "not one row per trained step"
    assert "loss" in metrics.columns and metrics["loss"].notna().all()

    config = json.loads(download("Config (JSON)").read_text())
    assert (config["probe_every"], config["hidden"], config["seq_len"]) == (10, 16, 20), config
    assert sorted(hidden["t"].unique()) == list(range(20))             # T = 20 time steps
    assert len(hidden) == 8 * 20 * 16

    weights = load(download("Weights (.safetensors)").read_bytes())
    assert weights and all(v.size for v in weights.values())
    assert not app.problems()
    app.shot("runs-page")


def test_the_same_browser_later_finds_its_runs_on_the_runs_page_and_continues_one(app):
    # "Close the browser, reopen the next day": a new tab at the app's root, no run in its
    # address; only the browser's cookie (its owner key) says whose runs these are.
    start_training(app, above=10)
    held = pause_and_hold(app)
    run_id = wait_for_run_in_url(app)["run"]
    later = AppPage(app.page.context.new_page(), app.url, app.shots)
    app.page.close()
    later.page.goto(f"{later.url}/runs")
    wait_ready(later.page, '.st-key-runs_pick')
    choose(later, "Run", re.compile(re.escape(run_id)))
    later.page.get_by_role("button", name="Continue it", exact=True).click()
    wait_ready(later.page, STEP)
    assert later.step() == held and url_params(later.page).get("run") == run_id
    assert "Read-only" not in later.page.locator('[data-testid="stMain"]').inner_text()
    later.press("Resume")
    later.wait_step_above(held)
    assert not later.problems()
    later.shot("saved-run-continued-later")
    later.press("Pause")
