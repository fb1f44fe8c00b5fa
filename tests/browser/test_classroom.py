"""The classroom load test (tests/classroom.py) as CI runs it: a teacher trains a run with a
follow link, three followers watch it for 30 s (all of them websocket clients); no errors, the
server's memory and threads back near their baseline, and no follower or run starved: every
follower refreshes at least every 2 s at p95 and the followed run keeps half its solo steps/s.
(The targets themselves, 1 s and 0.7× with 30 sessions, are measured with the full test on a
quiet machine; this shared one's noise would make them a coin toss here.)"""
import json

from _server import OUT

from tests.classroom import options, run


def test_a_teacher_and_three_followers_for_30_s(browser):
    result = run(options(["--followers", "3", "--own", "0", "--seconds", "30", "--solo", "10", "--settle", "12",
                          "--max-follow-p95", "2", "--min-solo-ratio", "0.5"]), browser=browser)
    (OUT.parent / "classroom" / "ci-classroom.json").write_text(json.dumps(result, indent=2, default=str))
    assert not result["failures"], "\n".join(result["failures"])
