"""The classroom load test (tests/classroom.py) as CI runs it: a teacher in Chromium trains a
run with a follow link, three followers (websocket clients) watch it for 30 s; no errors, each
follower's view refreshes at least once a second at p95, the followed run keeps 0.7× its solo
steps/s, and the server's memory and threads come back near their baseline."""
import json

from _server import OUT

from tests.classroom import options, run


def test_a_teacher_and_three_followers_for_30_s(browser):
    result = run(options(["--followers", "3", "--own", "0", "--seconds", "30", "--solo", "10", "--settle", "12"]),
                 browser=browser)
    (OUT.parent / "classroom" / "ci-classroom.json").write_text(json.dumps(result, indent=2, default=str))
    assert not result["failures"], "\n".join(result["failures"])
