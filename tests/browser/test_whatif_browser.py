"""The Gates page's what-if panel ("What if a gate were held constant?") in a real browser, on a
brackets run configured in the sidebar and trained for a while: the forget gate held shut
changes the model's output, the units that follow the depth are named and clamped, the page's
link (clamp=<JSON>) reopens the same clamp in a fresh browser, and a link with a clamp that does
not fit says so instead of raising."""
import json
import re
from urllib.parse import parse_qs, quote, urlsplit

from _app import exceptions, plot, wait_ready, wait_until

# Small and quick, and long enough never to finish during a test (brackets wants an even T).
BRACKETS = {"sequence length T": 20, "hidden units": 16, "batch size": 16, "steps": 100_000}
TRAINED_PAST = 150
HEADING = "What if a gate were held constant?"
WAIT_MS = 20_000                 # for an element of a page that has finished its rerun
NAMES = ["target", "as trained", "clamped"]
FOLLOW = "units that follow the depth"

# Each trace of a chart as {name: [y...]}, read from Plotly's full data (typed arrays included).
SERIES = """sel => { const g = document.querySelector(sel);
    return g && g._fullData ? g._fullData.map(t => [t.name, Array.from(t.y || [])]) : null; }"""


def series(page, key: str) -> list | None:
    """[(trace name, y values)] of the chart keyed `key`, or None while it is not drawn."""
    drawn = page.evaluate(SERIES, plot(key))
    return [(name, [float(v) for v in y]) for name, y in drawn] if drawn else None


def slider_values(page, key: str) -> list[float]:
    """The values of the slider keyed `key` (two for a range), once it has drawn."""
    thumbs = page.locator(f'.st-key-{key} input[type="range"]')
    thumbs.first.wait_for(state="attached", timeout=WAIT_MS)
    return [float(thumb.input_value()) for thumb in thumbs.all()]


def clamp_of(url: str) -> dict | None:
    values = parse_qs(urlsplit(url).query).get("clamp")
    return json.loads(values[0]) if values else None


def choose_task(app, name: str) -> None:
    """Pick the task in the sidebar's selectbox (labelled "task"), and wait for its rerun."""
    box = app.page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="task", exact=True)
    box.wait_for(state="visible")
    if box.input_value() == name:
        return
    box.click()
    app._rerun(lambda: app.page.get_by_role("option", name=name, exact=True).click(), f"choosing the {name} task",
               None)
    assert box.input_value() == name, f"the task selectbox reads {box.input_value()!r}"


def panel_shot(app, name: str, page=None) -> None:
    """Two pictures of the panel for a person to judge: `name`-window.png, the window (1600 × 1000)
    scrolled to the panel's heading, as a projector would show it; `name`.png, the whole panel
    alone, from its heading to the download button (or the end of the page), taken with the
    window grown to the page's height (the app scrolls inside its own container). The names
    start whatif-panel-: test_whatif_diagram_browser.py saves whatif-forget-shut.png."""
    page = page or app.page
    page.get_by_text(HEADING, exact=True).evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)                          # Plotly settles after the scroll
    page.screenshot(path=app.shots / f"{name}-window.png")
    size = page.viewport_size
    height = page.evaluate("""() => Math.max(...[...document.querySelectorAll(
        '[data-testid="stMain"], [data-testid="stAppScrollToBottomContainer"], section')].map(e => e.scrollHeight))""")
    try:
        page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(height, 8000))})
        page.wait_for_timeout(500)                      # the charts redraw at the new size
        top = page.get_by_text(HEADING, exact=True).bounding_box()
        button = page.locator(".st-key-whatif_csv")
        end = button.bounding_box() if button.count() else None
        bottom = end["y"] + end["height"] if end else page.viewport_size["height"]
        page.screenshot(path=app.shots / f"{name}.png",
                        clip={"x": 0, "y": max(0, top["y"] - 16), "width": size["width"],
                              "height": bottom + 16 - max(0, top["y"] - 16)})
    finally:
        page.set_viewport_size(size)


def test_the_what_if_on_a_trained_brackets_run_and_its_link(app, browser):
    page = app.page
    page.set_default_timeout(WAIT_MS)
    # 1. A small brackets run, set in the sidebar, trained past TRAINED_PAST steps and paused.
    app.open()
    choose_task(app, "brackets")
    app.configure(BRACKETS)
    app.press("Train")
    app.wait_step_above(TRAINED_PAST, timeout=90)
    app.press("Pause")
    app.go_to("Gates", plot("gate_heatmaps"))
    page.get_by_text(HEADING, exact=True).scroll_into_view_if_needed()
    toggle = page.get_by_role("switch", name="Clamp a gate")
    assert not toggle.is_checked(), "the what-if is on before anyone switched it on"
    assert page.locator(plot("whatif_output_plot")).count() == 0
    assert clamp_of(page.url) is None, page.url

    # The forget gate held shut (the panel's defaults: the forget gate at its lowest, 0, on every step).
    app._rerun(page.get_by_text("Clamp a gate", exact=True).click, "turning the what-if on",
               plot("whatif_output_plot"))
    assert toggle.is_checked()
    page.locator(plot("whatif_grad_plot")).first.wait_for(state="visible")
    gate = page.locator(".st-key-whatif_gate").get_by_role("combobox")
    assert gate.input_value() == "forget gate f_t", gate.input_value()
    assert slider_values(page, "whatif_value") == [0.0]
    assert slider_values(page, "whatif_steps") == [0.0, 19.0]
    drawn = series(page, "whatif_output_plot")
    assert [name for name, _ in drawn] == NAMES
    target, trained, shut = (y for _, y in drawn)
    assert len(target) == len(trained) == len(shut) == 20
    assert trained != shut, f"holding the forget gate shut changed no output: {trained}"
    grads = series(page, "whatif_grad_plot")
    assert [name for name, _ in grads] == ["‖∂L/∂h_t‖ as trained", "‖∂L/∂h_t‖ clamped"]
    assert grads[0][1] != grads[1][1]
    metrics = page.locator('[data-testid="stMetric"]')
    assert metrics.filter(has_text="clamped").count() == 2, metrics.all_inner_texts()   # loss and accuracy
    assert page.get_by_role("button", name="Download the what-if (CSV)").is_visible()
    assert page.get_by_text("The output against the target (forget = 0 at steps 0–19)", exact=True).is_visible()
    assert "clamp=" in page.url and "forget" in page.url
    assert clamp_of(page.url) == {"forget": {"value": 0.0, "units": None, "steps": [0, 20], "layers": None}}
    assert app.problems() == []
    panel_shot(app, "whatif-panel-forget-shut")

    # 2. The units that follow the depth: named in a caption, clamped, drawn, in the link.
    mode = page.locator(".st-key-whatif_units_mode")
    app._rerun(mode.get_by_text(FOLLOW, exact=True).click, f"choosing {FOLLOW!r}", plot("whatif_output_plot"))
    assert mode.get_by_role("radio", name=FOLLOW).is_checked()
    caption = page.get_by_text(re.compile(r"^The \d+ units? whose c_t follows the depth most closely"))
    found = re.fullmatch(r"The 3 units whose c_t follows the depth most closely over these sequences "
                         r"\(\|Pearson r\|\): (\d+), (\d+), (\d+)\.", caption.inner_text())
    assert found, caption.inner_text()
    units = sorted(int(u) for u in found.groups())
    assert len(set(units)) == 3 and all(0 <= u < 16 for u in units), units
    wanted = {"forget": {"value": 0.0, "units": units, "steps": [0, 20], "layers": None}}
    app.wait_until(lambda: clamp_of(page.url) == wanted, 10, f"the link to hold {wanted}")
    title = f"The output against the target (forget = 0 on units {', '.join(map(str, units))} at steps 0–19)"
    page.get_by_text(title, exact=True).wait_for()
    app.wait_until(lambda: (g := series(page, "whatif_grad_plot")) and g[1][1] != grads[1][1], 10,
                   "the gradient chart to redraw for the three units")
    drawn = series(page, "whatif_output_plot")
    assert [name for name, _ in drawn] == NAMES and drawn[1][1] == trained
    assert app.problems() == []
    panel_shot(app, "whatif-panel-depth-units")

    # 3. The link, opened in a fresh browser: the same clamp, the panel on, the same what-if drawn.
    link, expected = page.url, {key: series(page, key) for key in ("whatif_output_plot", "whatif_grad_plot")}
    other = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        fresh = other.new_page()
        fresh.set_default_timeout(WAIT_MS)
        fresh.goto(link)
        wait_ready(fresh, plot("whatif_output_plot"))
        fresh.locator(plot("whatif_grad_plot")).first.wait_for(state="visible")
        assert fresh.get_by_role("switch", name="Clamp a gate").is_checked()
        assert fresh.locator(".st-key-whatif_gate").get_by_role("combobox").input_value() == "forget gate f_t"
        picked = fresh.locator(".st-key-whatif_units_mode").get_by_role("radio", name="units I pick")
        assert picked.is_checked(), "a link's units open as units picked"
        chosen = fresh.locator(".st-key-whatif_units [data-tag]")        # the multiselect's tags
        wait_until(fresh, lambda: chosen.count() == len(units), 10, "the units picked to draw")
        assert sorted(int(t) for t in chosen.all_inner_texts()) == units, chosen.all_inner_texts()
        fresh.get_by_text(title, exact=True).wait_for()
        assert clamp_of(fresh.url) == wanted, fresh.url
        for key, want in expected.items():
            wait_until(fresh, lambda: series(fresh, key) == want, 10, f"{key} to match the sender's")
        assert not exceptions(fresh)
        panel_shot(app, "whatif-panel-from-link", fresh)
    finally:
        other.close()


def test_a_link_whose_clamp_does_not_fit_says_so(app):
    page = app.page
    page.set_default_timeout(WAIT_MS)
    for clamp, why in ((json.dumps({"forget": {"value": 2}}), "2 is outside the gate's range [0, 1]"),
                       ("{forget: 0", "Expecting property name"),
                       (json.dumps({"forget": 0, "input": 1}), "the panel holds one gate at a time")):
        page.goto(f"{app.url}/gates?task=brackets&seq_len=20&hidden=16&clamp={quote(clamp)}")
        wait_ready(page, plot("gate_heatmaps"))
        warning = page.locator('[data-testid="stAlert"]', has_text="The link's clamp was left out")
        warning.first.wait_for()
        assert why in warning.first.inner_text(), warning.first.inner_text()
        assert not page.get_by_role("switch", name="Clamp a gate").is_checked()
        assert page.locator(plot("whatif_output_plot")).count() == 0
        app.wait_until(lambda: clamp_of(page.url) is None, 10, "the page's link to drop the clamp it left out")
        assert app.problems() == [], clamp
    panel_shot(app, "whatif-panel-bad-link")
