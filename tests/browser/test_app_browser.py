"""The app in a real browser (Chromium via Playwright): every page draws without a traceback,
Train makes the live charts grow, Pause holds the step and Resume carries on from it,
switching pages in-app keeps the session's run training, and a hidden tab asks for no charts."""
from _app import STEP, exceptions, plot, plot_json, plot_points, wait_ready

# Small and quick, and long enough never to finish during a test.
FAST = {"sequence length T": 20, "hidden units": 16, "batch size": 16, "steps": 100_000}


def start_training(app) -> int:
    app.open()
    app.configure(FAST)
    app.press("Train")
    return app.wait_step_above(0)


def steps_over(app, seconds: float, every: float = 0.25) -> list[int]:
    readings = [app.step()]
    for _ in range(int(seconds / every)):
        app.page.wait_for_timeout(every * 1000)
        readings.append(app.step())
    return readings


def test_every_page_opens_without_a_traceback(app):
    app.open()
    assert not app.problems()
    app.shot("open-train")
    for title in ("Gates", "Gradients", "Step through", "Lessons", "Runs", "Compare", "Sweep", "Train"):
        app.go_to(title)
        assert not app.problems(), title
        app.shot(f"open-{title.lower().replace(' ', '-')}")


def test_train_grows_the_loss_chart_and_the_step_counter(app):
    app.open(plot("loss_chart"))
    app.configure(FAST)
    step, points, figure = app.step(), plot_points(app.page, "loss_chart"), plot_json(app.page, "loss_chart")
    app.press("Train")
    app.wait_step_above(step + 20)
    grown = app.wait_until(lambda: plot_points(app.page, "loss_chart") > points + 20, 30,
                           "the loss chart to gain 20 points")
    assert grown and plot_json(app.page, "loss_chart") != figure
    for key in ("metric_chart", "grad_norm_chart", "param_grad_chart", "gate_strip"):
        app.page.locator(plot(key)).first.wait_for(state="visible")
    assert app.step() > step + 20
    assert not app.problems()
    app.shot("train-running")


def test_pause_holds_the_step_and_resume_continues_from_it(app):
    start_training(app)
    app.press("Pause")
    # Pausing takes effect within a step; allow the page a few seconds to settle on it.
    held = app.wait_until(lambda: len(set(r := steps_over(app, 1.0))) == 1 and r[0], 5,
                          "the step counter to hold still after Pause")
    assert set(steps_over(app, 2.0)) == {held}
    # Paused, Pause has nothing left to do: it is disabled, and Resume is the way on.
    assert app.page.get_by_role("button", name="Pause", exact=True).is_disabled()
    app.go_to("Gates", plot("gate_heatmaps"))
    app.go_to("Train", STEP)   # a fresh rerun reads the run's own step, not the last drawn one
    assert app.step() == held
    app.shot("paused")
    app.press("Resume")
    assert app.step() >= held
    app.wait_step_above(held)
    assert app.step() > held
    assert not app.problems()


def test_switching_pages_keeps_the_run_training(app):
    before = start_training(app)
    app.go_to("Gates", plot("gate_heatmaps"))
    assert not app.problems()
    app.shot("gates-while-training")
    app.go_to("Gradients", plot("grad_time"))
    assert not app.problems()
    app.shot("gradients-while-training")
    app.go_to("Train", STEP)
    back = app.step()
    assert back > before, "the run lost its steps: a new session, or training stopped"
    app.wait_step_above(back)
    assert not app.problems()
    app.shot("train-after-switching")


def test_a_link_opens_the_same_configuration_in_a_fresh_browser(app, browser):
    app.open()
    app.configure({"sequence length T": 30, "hidden units": 24})
    link = app.page.url
    assert "seq_len=30" in link and "hidden=24" in link, link
    other = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        page = other.new_page()
        page.goto(link)
        wait_ready(page, STEP)
        sidebar = page.locator('[data-testid="stSidebar"]')
        assert sidebar.get_by_label("sequence length T", exact=True).input_value() == "30"
        assert sidebar.get_by_label("hidden units", exact=True).input_value() == "24"
        assert "LSTM(24)" in page.get_by_text("Adding ·").first.inner_text()
        page.goto(link + "&present=1")                    # the same lesson, locked for a projector
        wait_ready(page, STEP)
        # presentation mode: the sidebar hidden, its way out in the main column
        assert not sidebar.is_visible() and page.get_by_role("button", name="Exit presentation").is_visible()
        assert sidebar.get_by_label("sequence length T", exact=True).count() == 0
        assert "LSTM(24)" in page.get_by_text("Adding ·").first.inner_text()
        assert not exceptions(page)
        page.screenshot(path=app.shots / "presentation-mode.png", full_page=True)
    finally:
        other.close()


def test_a_lesson_link_opens_that_lesson(app):
    app.page.goto(app.url + "/lessons?lesson=vanishing")
    wait_ready(app.page, '.st-key-lesson_loss .js-plotly-plot')
    assert app.page.get_by_role("heading", name="Vanishing gradients: a tanh RNN", exact=False).first.is_visible()
    assert "lesson=vanishing" in app.page.url and "/lessons" in app.page.url
    assert not app.problems()
    app.shot("lesson-vanishing")


def test_a_hidden_tab_asks_for_no_charts_and_catches_up_when_shown(app):
    """A tab behind another (or a minimised window) neither polls nor draws; shown again, it
    asks at once. The page's visibility is set as the browser would report it."""
    start_training(app)
    polls: list[str] = []
    app.page.on("request", lambda request: "/train-live/" in request.url and polls.append(request.url))
    app.wait_until(lambda: len(polls) >= 2, 10, "the page to poll while it shows")
    show = """(hidden) => {
        Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
        Object.defineProperty(document, "visibilityState", {configurable: true, get: () => hidden ? "hidden" : "visible"});
        document.dispatchEvent(new Event("visibilitychange"));
    }"""
    app.page.evaluate(show, True)
    app.page.wait_for_timeout(1000)              # a poll already on its way is answered
    asked = len(polls)
    app.page.wait_for_timeout(3000)
    assert len(polls) == asked, "a hidden tab kept polling"
    step = app.step()
    app.page.evaluate(show, False)
    app.wait_until(lambda: len(polls) > asked, 2, "the shown tab to poll at once")
    app.wait_step_above(step)
    assert not app.problems()
