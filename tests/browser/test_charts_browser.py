"""The live charts' own JavaScript (pages/charts.JS) in Chromium, with no Streamlit server: the
module is imported into a blank page, given the data the app gives it, and Plotly's script is
served (or held back) by the test.

Issue 31: figures that came one after another for the same graph (a follower's polls while
Plotly still loaded, or a rerun's data beside a poll's answer) each started a Plotly.react, and
a second react on a graph while the first was still drawing took its data from under it:
"TypeError: Cannot read properties of undefined (reading 'length') at drawFramework"."""
import json

import plotly.graph_objects as go

from pages import charts

ORIGIN = "http://charts.test"
PAGE = "<!doctype html><html><body><div id='root'></div></body></html>"
MODULE = charts.JS % {"script": charts.SCRIPT, "config": json.dumps(charts.CONFIG)}


def grid(n: int) -> str:
    """A follower's first grid (its poll off): two charts whose data say which figure it is."""
    figures = {name: (go.Figure(go.Scatter(x=list(range(n)), y=[k * n for k in range(n)]),
                                layout={"height": 250}), None, None) for name in ("loss_chart", "metric_chart")}
    return charts.grid_data(figures, (), present=False, extra={"head": {"step": n, "status": "running",
                                                                          "line": f"step {n}"}, "poll": None})


def open_page(browser, hold_plotly: bool = False):
    """A blank page on ORIGIN that serves Plotly's script (held back until the test lets it go,
    when hold_plotly) and records the page's uncaught errors with their stacks."""
    context = browser.new_context()
    page = context.new_page()
    errors, held = [], []
    page.on("pageerror", lambda error: errors.append(error.stack or error.message))
    page.route(f"{ORIGIN}/", lambda route: route.fulfill(body=PAGE, content_type="text/html"))

    def plotly(route):
        if hold_plotly:
            held.append(route)
        else:
            route.fulfill(path=charts.SOURCE, content_type="text/javascript")

    page.route(f"{ORIGIN}/app/static/{charts.SCRIPT}", plotly)
    page.goto(f"{ORIGIN}/")
    page.evaluate("""async (source) => {
        const url = URL.createObjectURL(new Blob([source], {type: "text/javascript"}));
        window.chartModule = (await import(url)).default;
        window.mount = (data) => window.chartModule({data, parentElement: document.getElementById("root"),
                                                     setTriggerValue: () => {}});
    }""", MODULE)
    return context, page, errors, held


def drawn(page, n: int) -> None:
    """Wait until both graphs show figure n (Plotly drew it)."""
    page.wait_for_function("""(n) => ["loss_chart", "metric_chart"].every(name => {
        const graph = document.querySelector(".chart-" + name + " .live-chart");
        return graph && graph.data && graph.data[0].x.length === n; })""", arg=n, timeout=30_000)


def test_figures_that_come_while_a_graph_draws_wait_for_it_and_the_newest_is_drawn(browser):
    context, page, errors, _ = open_page(browser)
    try:
        page.evaluate("async () => { window.mount('preload'); await window.__gateExplorerPlotly; }")
        # Plotly is loaded: a new figure for each graph, then another before the first is drawn
        # (one task, as a rerun's data and a poll's answer can come).
        page.evaluate("([a, b]) => { window.mount(a); window.mount(b); }", [grid(3), grid(5)])
        drawn(page, 5)
        page.evaluate("([a, b, c]) => { window.mount(a); window.mount(b); window.mount(c); }",
                      [grid(7), grid(9), grid(11)])
        drawn(page, 11)
        page.wait_for_timeout(300)      # any draw still under way has finished
        assert not errors, "\n\n".join(errors)
    finally:
        context.close()


def test_figures_that_come_while_plotly_loads_are_drawn_once_it_has_loaded(browser):
    """A follower's page: its grid, then each poll's answer, comes while Plotly's script still
    loads (slowly, on a busy machine); when it arrives each graph draws the newest figure."""
    context, page, errors, held = open_page(browser, hold_plotly=True)
    try:
        for n in (3, 5, 7, 9):
            page.evaluate("(data) => window.mount(data)", grid(n))
        page.wait_for_timeout(200)
        assert len(held) == 1, "the page asks for Plotly's script once"
        assert page.evaluate("() => document.querySelectorAll('.js-plotly-plot').length") == 0
        held[0].fulfill(path=charts.SOURCE, content_type="text/javascript")
        drawn(page, 9)
        page.wait_for_timeout(300)
        assert not errors, "\n\n".join(errors)
    finally:
        context.close()
