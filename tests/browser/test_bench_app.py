"""The app's side of the benchmark suite (tests/browser/bench_app.py) as CI runs it: a short
round that must not crash and must report every figure. Its numbers mean little this short;
docs/PERFORMANCE.md has the measured ones."""
import json
import subprocess
import sys

from _server import OUT, REPO


def test_bench_app_short_round_reports_every_figure():
    out = OUT.parent / "bench" / "bench-app-short.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, str(REPO / "tests" / "browser" / "bench_app.py"), "--seconds", "3",
                           "--warmup", "1", "--rounds", "1", "--split", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["steps_per_second_page"] > 0 and result["steps_per_second_no_page"] > 0
    assert len(result["ratio_per_round"]) == 1 and result["ratio_median"] > 0
    assert result["kb_per_refresh_median"] > 0 and result["first_chart_seconds_max"] > 0
    assert result["steps_per_second_undrawn"] > 0 and len(result["undrawn_over_no_page_per_round"]) == 1
    assert result["page_over_undrawn_median"] > 0
    cores = result["cores_median"]
    assert cores["worker"] > 0 and cores["chromium"] > 0 and cores["server"] > 0     # the training, the page
