"""Presentation mode on a 1280×720 projector, in Chromium: on Train, Gates, Gradients, Step
through and Lessons the sidebar is hidden, the page's first chart starts on the screen, every
button and label shows its text whole, no axis crowds more than 10 tick labels, and the browser asks no
host but the app's server for anything (an offline classroom). Screenshots of what the
projector shows: presentation-<page>.png, and presentation-<page>-full.png of the whole page."""
from urllib.parse import urlsplit

import pytest
from _app import STEP, TIMEOUT_MS, AppPage, plot, wait_ready

PROJECTOR = {"width": 1280, "height": 720}
# The link keeps presentation mode (pages/link.py); a short run's probes feed Gates and Gradients.
LINK = "/?present=1&task=adding&seq_len=30&hidden=16&steps=100000"
MAX_TICK_LABELS = 10
# Each page's first chart: the container (or live-grid cell) of its first Plotly graph.
FIRST_CHART = {"Train": "loss_chart", "Gates": "gate_heatmaps", "Gradients": "grad_time",
               "Step through": "cell_diagram", "Lessons": "lesson_loss"}
# Pages whose first chart starts on the screen (a lesson's text is folded when presenting).
CHART_ON_SCREEN = ("Train", "Gates", "Gradients", "Step through", "Lessons")

# Every button the page lays out (not those of the hidden sidebar, or of a closed popover):
# its label (text, else aria-label), and whether any part of it clips its text (an element
# that hides its overflow and has more to show than its box: Streamlit's button label is
# one, and at the projector's root font a narrow button's padding left it no width at all).
BUTTONS = """() => [...document.querySelectorAll('button')]
  .filter(b => b.checkVisibility({visibilityProperty: true}))
  .map(b => ({
    label: b.innerText.trim() || (b.getAttribute('aria-label') || '').trim(),
    clipped: [b, ...b.querySelectorAll('*')].some(e => getComputedStyle(e).overflowX !== 'visible'
                                                      && e.scrollWidth > e.clientWidth + 1),
    html: b.outerHTML.slice(0, 200)}))"""

# Text cut short: a label or a button's text ends in an ellipsis, or a select box's choice (an
# input's value) runs past its box. What each hides.
CUT_SHORT = """() => [...document.querySelectorAll('[data-testid="stMain"] *')]
  .filter(e => e.checkVisibility({visibilityProperty: true}) && e.scrollWidth > e.clientWidth + 1 &&
               (e.tagName === 'INPUT' ? e.type === 'text' && e.value.trim()
                                      : getComputedStyle(e).textOverflow === 'ellipsis' && (e.innerText || '').trim()))
  .map(e => (e.tagName === 'INPUT' ? e.value : e.innerText).trim().slice(0, 80))"""

# Tick labels per axis of every Plotly chart: each subplot draws its axes in its own layer.
TICKS = """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(graph =>
  [...graph.querySelectorAll('.xaxislayer-above, .yaxislayer-above')].map(axis => ({
    chart: (graph.closest('[class*="st-key-"], [class*="chart-"]') || graph).className.slice(0, 80),
    axis: axis.className.baseVal,
    labels: [...axis.querySelectorAll('.xtick text, .ytick text')].map(t => t.textContent).filter(t => t.trim())})))"""


def first_chart_top(page, name: str) -> float:
    """Where the page's first chart starts, in the viewport, scrolled to the top."""
    graph = page.locator(plot(name)).first
    graph.wait_for(state="visible", timeout=TIMEOUT_MS)
    page.wait_for_timeout(500)          # the element's height settles once Plotly has drawn
    return graph.evaluate("g => g.getBoundingClientRect().top")


def check_projected(tab: AppPage, title: str) -> list[str]:
    """What a projector at 1280×720 would show wrong on this page; screenshots of it."""
    page, problems = tab.page, []
    top = first_chart_top(page, FIRST_CHART[title])
    slug = title.lower().replace(" ", "-")
    page.screenshot(path=tab.shots / f"presentation-{slug}.png")
    tab.shot(f"presentation-{slug}-full")
    if title in CHART_ON_SCREEN and not 0 <= top < PROJECTOR["height"]:
        problems.append(f"{title}: the first chart starts at y = {top:.0f}, off a {PROJECTOR['height']}-pixel screen")
    if page.locator('[data-testid="stSidebar"]').is_visible():
        problems.append(f"{title}: the sidebar shows")
    if page.locator('[data-testid="stExpandSidebarButton"]').is_visible():
        problems.append(f"{title}: the button that opens the sidebar shows")
    for button in page.evaluate(BUTTONS):
        if not button["label"]:
            problems.append(f"{title}: a button with no label: {button['html']}")
        elif button["clipped"]:
            problems.append(f"{title}: the button {button['label']!r} clips its label")
    for text in page.evaluate(CUT_SHORT):
        problems.append(f"{title}: a label cut short: {text!r}")
    for axis in page.evaluate(TICKS):
        if len(axis["labels"]) > MAX_TICK_LABELS:
            problems.append(f"{title}: {len(axis['labels'])} tick labels on {axis['axis']} of {axis['chart']}: "
                            f"{axis['labels']}")
    return problems + tab.problems()


@pytest.mark.slow
def test_presentation_mode_fits_a_1280x720_projector_and_asks_only_its_server(browser, server, shots):
    context = browser.new_context(viewport=PROJECTOR)
    context.set_default_timeout(TIMEOUT_MS)
    tab = AppPage(context.new_page(), server.url, shots)
    asked = []
    tab.page.on("request", lambda request: asked.append(request.url))
    tab.page.on("websocket", lambda socket: asked.append(socket.url))
    try:
        tab.page.goto(server.url + LINK)
        wait_ready(tab.page, STEP)
        problems = check_projected(tab, "Train")
        # Exit presentation and the follow QR code are on the screen, not in the hidden sidebar.
        strip = tab.page.locator(".st-key-present_strip")
        assert strip.get_by_role("button", name="Exit presentation").is_visible()
        assert strip.get_by_role("button", name="Follow link / QR").is_visible()

        tab.press("Train")
        tab.wait_step_above(5)
        tab.press("Pause")
        problems += check_projected(tab, "Train")
        for title in ("Gates", "Gradients", "Step through"):
            tab.go_to(title, plot(FIRST_CHART[title]))
            problems += check_projected(tab, title)
        tab.go_to("Lessons", ".st-key-load_vanishing button")
        tab.page.locator(".st-key-load_vanishing button").click()         # loaded, not trained
        problems += check_projected(tab, "Lessons")

        elsewhere = sorted({url for url in asked
                            if urlsplit(url).scheme not in ("data", "blob") and
                            urlsplit(url).netloc != urlsplit(server.url).netloc})
        assert not elsewhere, f"the browser asked another host than the app's server: {elsewhere}"
        assert not problems, "\n".join(problems)
    finally:
        context.close()
