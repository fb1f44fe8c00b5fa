"""The weight-gradient share (Gradients) and the live cell diagram (Step through) in a real
browser: each draws, its buttons do what they say, and no traceback shows. The what-if panel
has its own file (test_whatif_browser.py)."""
from _app import STEP, plot, plot_data, wait_ready, wait_until

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


def test_the_cell_diagram_plays_along_time_and_moves_with_the_page(app):
    app.page.goto(app.url + "/step" + ADDING)
    wait_ready(app.page, plot("cell_diagram"))
    assert layout_of(app.page, "cell_diagram")["title"] == "LSTM, layer 1, unit 0, t = 0"
    app.page.locator(".st-key-cell_diagram").evaluate("e => e.scrollIntoView({block: 'start'})")
    app.page.screenshot(path=app.shots / "cell-diagram.png")
    # Plotly's own ▶ Play runs the frames in the browser, with no rerun of the page.
    app.page.locator(".st-key-cell_diagram .updatemenu-button", has_text="Play").click()
    wait_until(app.page, lambda: (layout_of(app.page, "cell_diagram")["active"] or 0) >= 3, 20,
               "the diagram to play a few steps")
    assert not app.problems(), "playing"
    app.page.locator(".st-key-cell_diagram .updatemenu-button", has_text="Pause").click()
    app.page.wait_for_timeout(500)
    paused = layout_of(app.page, "cell_diagram")
    assert paused["title"].endswith(f"t = {paused['active']}")       # the frame shown is the slider's step
    assert not app.problems(), "pausing"
    # The page's ▶ moves the diagram and the equations together.
    app.press("▶", plot("cell_diagram"))
    wait_until(app.page, lambda: layout_of(app.page, "cell_diagram")["title"] == "LSTM, layer 1, unit 0, t = 1", 20,
               "the diagram to show t = 1 after ▶")
    assert not app.problems()
