"""Deletes win, in a real browser: a run deleted on the Runs page of one tab stops in the other
tab of the same browser that was training it, which says so, and no save there brings it back
(it used to: deleted at 295 steps, back at 3,802 with the other tab's next autosave)."""
import re
import sqlite3

import pytest
from _app import STEP, AppPage, wait_ready
from test_saved_runs_browser import choose, pause_and_hold, readings_over, start_training, wait_for_run_in_url

pytestmark = pytest.mark.browser


def saved_ids(path) -> tuple[set[str], set[str]]:
    """(the runs, the deleted ids) in the server's store, read as another process would."""
    with sqlite3.connect(path) as db:
        return ({r for (r,) in db.execute("SELECT id FROM runs")},
                {r for (r,) in db.execute("SELECT id FROM deleted")})


def test_a_run_deleted_in_another_tab_stops_there_says_so_and_stays_deleted(app, server_store):
    # ~40 s: train, pause (the run is saved), train on; delete it from a second tab.
    start_training(app, above=10)
    held = pause_and_hold(app)
    run_id = wait_for_run_in_url(app)["run"]
    app.press("Resume")
    app.wait_step_above(held)
    assert run_id in saved_ids(server_store)[0]

    other = AppPage(app.page.context.new_page(), app.url, app.shots)    # same browser: same owner key
    other.page.goto(f"{other.url}/runs")
    wait_ready(other.page, ".st-key-runs_pick")
    choose(other, "Run", re.compile(re.escape(run_id)))
    other.page.locator('[data-testid="stPopover"] button').filter(has_text="Delete").first.click()
    other.press("Delete for good")
    runs, deleted = saved_ids(server_store)
    assert run_id not in runs and run_id in deleted

    main = app.page.locator('[data-testid="stMain"]')
    app.wait_until(lambda: "This run was deleted" in main.inner_text(), 60, "the training tab to say its run was deleted")
    app.wait_until(lambda: len(set(readings_over(app.page, 1.5))) == 1, 30, "the training tab's run to stop")
    for name in ("Train", "Resume", "Step"):
        assert app.page.get_by_role("button", name=name, exact=True).is_disabled(), f"{name} is enabled"
    app.shot("deleted-in-another-tab")
    stopped_at = app.step()
    assert stopped_at > held and run_id not in saved_ids(server_store)[0]
    # A reload of the training tab: its link's run is gone, and the page says why.
    app.page.reload()
    wait_ready(app.page, STEP)
    assert f"the run '{run_id}' was deleted by its owner" in main.inner_text()
    assert run_id not in saved_ids(server_store)[0]
    assert not app.problems() and not other.problems()
    other.page.close()
