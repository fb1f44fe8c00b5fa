"""Following a live run in Chromium: the teacher makes a follow link and trains; a student's
tab (a browser session of its own) follows it live with no controls, looks at the Gates page
its own way, and is locked out with a message, at once, when the teacher revokes the link. Screenshots:
follow-teacher-presenting.png (the QR code and the count), follow-student-train.png,
follow-student-gates.png, follow-revoked.png."""
from _app import STEP, TIMEOUT_MS, AppPage, exceptions, wait_ready



def follow_link(teacher: AppPage) -> str:
    page = teacher.page
    page.get_by_role("button", name="Share", exact=True).click()
    page.get_by_role("button", name="Make a follow link").click()
    code = page.locator('[data-testid="stCode"]', has_text="follow=").first
    code.wait_for()
    link = code.inner_text().strip()
    page.keyboard.press("Escape")
    return link


def test_a_student_follows_the_teachers_run_live_and_is_locked_out_when_it_is_revoked(app, browser, server, shots):
    teacher = app
    teacher.page.goto(server.url + "/?steps=100000&hidden=16")
    wait_ready(teacher.page, STEP)
    link = follow_link(teacher)
    assert "follow=" in link and "key=" not in link
    teacher.press("Train")
    teacher.wait_step_above(5)

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        student = AppPage(context.new_page(), server.url, shots)
        polls = []
        student.page.on("request", lambda request: polls.append(request.url) if "/follow-live/" in request.url else None)
        # Plotly's script comes late, as on a busy machine: the polls' figures arrive before it
        # (issue 31: the draws that waited for it then ran over each other, a JS error).
        plotly = []
        student.page.route("**/app/static/plotly*", lambda route: plotly.append(route))
        student.page.goto(link, wait_until="domcontentloaded")   # (the page's load event waits for Plotly)
        wait_ready(student.page, STEP)
        seen = student.step()
        # Live, with nobody pressing anything: the chart element polls the server for new steps
        # (pages/live.py); the page itself does not rerun for them.
        student.wait_until(lambda: len(polls) >= 4, 30, "four polls of the follow route")
        student.wait_step_above(seen + 20, timeout=30)
        assert len(plotly) == 1, "the page asks for Plotly's script once"
        plotly[0].continue_()
        student.wait_until(lambda: student.page.locator(".st-key-live_charts .js-plotly-plot").count() >= 4, 30,
                           "the charts, drawn once Plotly came")
        assert not student.problems()
        assert all("since=" in url and "have=" in url for url in polls), polls[:3]
        assert student.page.get_by_role("button", name="Train", exact=True).count() == 0
        assert student.page.get_by_text("Following “").count() >= 1
        student.shot("follow-student-train")

        # The teacher's projector: presentation mode, the count and the QR code (in its strip).
        teacher.page.locator('[data-testid="stSidebar"]').get_by_text("Presentation mode", exact=True).click()
        teacher.wait_until(lambda: teacher.page.locator(".st-key-present_followers", has_text="1 following").count() > 0,
                           30, "one student following")
        teacher.page.get_by_role("button", name="Follow link / QR").click()
        teacher.wait_until(lambda: teacher.page.locator('[data-testid="stPopoverBody"] img').count() == 1, 30,
                           "the QR code")
        teacher.shot("follow-teacher-presenting")
        teacher.page.keyboard.press("Escape")

        student.go_to("Gates", '[data-testid="stSelectbox"]')
        assert "follow=" in student.page.url
        student.shot("follow-student-gates")
        assert not student.problems() and not teacher.problems()
        student.go_to("Train", STEP)

        # Revoked: the student's page says so, and shows the run no more.
        teacher.press("Exit presentation")
        teacher.page.get_by_role("button", name="Share", exact=True).click()
        teacher.press("Revoke the follow link")
        # The student's next poll is refused: the message shows, the charts go (no rerun needed).
        student.wait_until(lambda: student.page.get_by_text("revoked this follow link").count() > 0, 30,
                           "the poll's revocation message")
        assert student.page.locator(".st-key-live_charts .js-plotly-plot").count() == 0
        # ... and the page reruns at once to say so (its own rerun is 10 s away): the way out.
        student.wait_until(lambda: student.page.get_by_role("button", name="Train a run of my own").count() > 0,
                           6, "the page rerun the refused poll asked for")
        student.page.reload()
        wait_ready(student.page)
        student.wait_until(lambda: student.page.get_by_text("revoked this follow link").count() > 0, 30,
                           "the revocation message")
        assert student.page.locator(STEP).count() == 0 and not exceptions(student.page)
        student.shot("follow-revoked")
    finally:
        context.close()
