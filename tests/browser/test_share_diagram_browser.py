"""The weight-gradient share (Gradients) and the live cell diagram (Step through) in a real
browser: each draws, its buttons do what they say, and no traceback shows. The what-if panel
has its own file (test_whatif_browser.py)."""
from _app import STEP, plot, plot_data, wait_ready

ADDING = "?task=adding&seq_len=30&hidden=16&steps=100000"


def trained(app, query: str, past: int = 60) -> None:
    """Open the app with these settings, train past `past` steps, pause."""
    app.page.goto(app.url + "/" + query)
    wait_ready(app.page, STEP)
    app.press("Train")
    app.wait_step_above(past)
    app.press("Pause")


def layout_of(page, key: str) -> dict:
    return page.evaluate("""sel => { const g = document.querySelector(sel);
        return g && g._fullLayout ? {title: g._fullLayout.title.text,
                                     active: g._fullLayout.sliders && g._fullLayout.sliders.length
                                             ? g._fullLayout.sliders[0].active : null,
                                     shapes: (g.layout.shapes || []).length} : null; }""", plot(key))


def test_the_gradients_page_shows_the_weight_gradient_share_with_the_markers(app):
    trained(app, ADDING)
    app.go_to("Gradients", plot("weight_share_plot"))
    share = plot_data(app.page, "weight_share_plot")
    assert len(share) == 1 and share[0]["name"] == "input gate i_t"
    assert layout_of(app.page, "weight_share_plot")["shapes"] == 2          # the two markers
    assert plot_data(app.page, "weight_share_history_plot")[0]["type"] == "heatmap"
    assert not app.problems()
    app.page.get_by_text("Where the learning comes from in time").evaluate("e => e.scrollIntoView({block: 'start'})")
    app.page.screenshot(path=app.shots / "weight-gradient-share.png")


def shown_steps(page) -> tuple[int, int] | None:
    """The step the diagram's title says and the step the equations' caption says."""
    steps = page.evaluate("""sel => { const g = document.querySelector(sel);
        const said = document.body.innerText.match(/time step t = (\\d+)/);
        const title = g && g._fullLayout ? g._fullLayout.title.text.match(/t = (\\d+)$/) : null;
        return title && said ? [Number(title[1]), Number(said[1])] : null; }""", plot("cell_diagram"))
    return tuple(steps) if steps else None


def nodes_overflowing(page) -> list[str]:
    """The diagram's nodes whose text (label and number, written inside) is wider than the node."""
    return page.evaluate("""sel => { const g = document.querySelector(sel);
        const trace = g.querySelector('.scatterlayer .trace');
        const marks = [...trace.querySelectorAll('.point')], texts = [...trace.querySelectorAll('.textpoint')];
        const inside = g._fullData[0].textposition;
        return texts.map((t, i) => [t, marks[i], inside[i]])
            .filter(([t, m, at]) => at === 'middle center' && t.getBBox().width > m.getBBox().width)
            .map(([t]) => t.textContent); }""", plot("cell_diagram"))


def test_the_cell_diagram_plays_along_time_with_the_equations(app):
    app.page.goto(app.url + "/step" + ADDING)
    wait_ready(app.page, plot("cell_diagram"))
    assert layout_of(app.page, "cell_diagram")["title"] == "LSTM, layer 1, unit 0, t = 0"
    app.page.locator(".st-key-cell_diagram").evaluate("e => e.scrollIntoView({block: 'start'})")
    app.page.screenshot(path=app.shots / "cell-diagram.png")
    assert not nodes_overflowing(app.page)
    # The page's ▶ Play steps its one t on a timer: the diagram and the equations move together.
    app.page.get_by_role("button", name="▶ Play", exact=True).click()
    app.wait_until(lambda: (s := shown_steps(app.page)) and s[0] >= 3 and s[0] == s[1], 30,
                   "the diagram and the equations to play to t = 3 together")
    assert not app.problems(), "playing"
    app.page.get_by_role("button", name="❚❚ Pause", exact=True).click()
    app.page.get_by_role("button", name="▶ Play", exact=True).wait_for()
    wait_ready(app.page)
    paused = shown_steps(app.page)
    app.page.wait_for_timeout(2000)                      # more than two steps' time: it has stopped
    assert shown_steps(app.page) == paused and paused[0] == paused[1]
    assert not app.problems(), "pausing"
    # The page's ▶ moves them together by one (a rerun of the fragment they are drawn in).
    app.page.get_by_role("button", name="▶", exact=True).click()
    app.wait_until(lambda: shown_steps(app.page) == (paused[0] + 1,) * 2, 20, "the diagram and the equations to step on")
    app.wait_until(lambda: f"t={paused[0] + 1}" in app.page.url, 20, "the link to hold the step")
    assert not nodes_overflowing(app.page)
    assert not app.problems()
