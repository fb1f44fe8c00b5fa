"""The load test (tests/load.py) as CI runs it: 4 browser sessions train for 30 s on a server
of their own; no errors, no starved run, and the server's memory and threads back near their
baseline once the sessions have ended."""
import json

from _server import OUT

from tests.load import options, run


def test_four_sessions_train_30_s_without_errors_starvation_or_leaks(browser):
    result = run(options(["--sessions", "4", "--seconds", "30", "--settle", "12"]), browser=browser)
    (OUT.parent / "load" / "ci-load.json").write_text(json.dumps(result, indent=2, default=str))
    assert not result["failures"], "\n".join(result["failures"])
