"""The load test (tests/load.py) as CI runs it: 4 browser sessions train for 30 s on a server
of their own; no errors, no starved run, and the server's memory and threads back near their
baseline once the sessions have ended. Then a class that leaves with nobody after it: its
memory must come back all the same."""
import json

from _server import OUT

from tests.load import options, run


def test_four_sessions_train_30_s_without_errors_starvation_or_leaks(browser):
    result = run(options(["--sessions", "4", "--seconds", "30", "--settle", "12", "--session-ttl", "5",
                          "--leave", "0"]), browser=browser)
    (OUT.parent / "load" / "ci-load.json").write_text(json.dumps(result, indent=2, default=str))
    assert not result["failures"], "\n".join(result["failures"])


def test_a_class_that_leaves_gives_its_memory_back_with_nobody_coming_after(browser):
    # Three runs of a wide model train at once (each holds ~50 MB of weights and Adam state in
    # the server's copy, and more in its worker; short batches keep its steps quick), then their
    # tabs close and nobody comes for 30 s: no request at all. A 5 s TTL (the app's is 30 s) and
    # the sweep every 10 s fit that wait; throughput is not judged here (the test above does).
    # About 2 minutes.
    result = run(options(["--sessions", "3", "--max-runs", "3", "--seconds", "10", "--settle", "20",
                          "--session-ttl", "5", "--leave", "30", "--min-share", "0", "--settings",
                          "steps=100000&hidden=512&layers=2&batch_size=8&seq_len=20"]), browser=browser)
    (OUT.parent / "load" / "ci-leave.json").write_text(json.dumps(result, indent=2, default=str))
    left = result["cohorts"][0]["left"]
    assert left is not None and len(left["workers_mb"]) == 3
    assert not result["failures"], "\n".join(result["failures"])
