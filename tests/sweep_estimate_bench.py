"""The Sweep page's estimate against the sweep's measured time, for a few small grids.

    python tests/sweep_estimate_bench.py [--json PATH]

For each grid, in turn and under the same load: the estimate as the page makes it
(explorer.sweep.estimate_seconds: the workers' start and end timed on new processes, each kind of run timed
here), then the sweep itself, local, on max_runs() workers as the page starts it, into a store
in a temporary folder. Prints estimate, actual and their ratio; the machine's load average
before each grid says under what load. Beside it, the old estimate's figure (the training steps
alone, spread over the workers). Not part of the test suite: wall-clock times.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.admission import cores, max_runs  # noqa: E402
from explorer.store import RunStore  # noqa: E402
from explorer.sweep import estimate_seconds, grid, run_cost, sweep  # noqa: E402

# name -> (axes, seeds, fixed settings): the page's grids, smaller (its default is 36 runs × 800 steps).
GRIDS = {
    "4 runs: rnn, gru × T 5, 10 × 50 steps": ({"cell": ["rnn", "gru"], "seq_len": [5, 10]}, 1, {"steps": 50}),
    "6 runs: rnn, lstm, gru × T 10, 25 × 100 steps": (
        {"cell": ["rnn", "lstm", "gru"], "seq_len": [10, 25]}, 1, {"steps": 100}),
    "8 runs: rnn, lstm × T 10, 50 × 2 seeds × 200 steps": (
        {"cell": ["rnn", "lstm"], "seq_len": [10, 50]}, 2, {"steps": 200}),
    "12 runs: rnn, lstm, gru × T 10, 25 × 2 seeds × 300 steps": (
        {"cell": ["rnn", "lstm", "gru"], "seq_len": [10, 25]}, 2, {"steps": 300}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    workers = max_runs()
    print(f"{cores()} cores, {workers} workers")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(Path(folder) / "runs.sqlite")
        for name, (axes, seeds, fixed) in GRIDS.items():
            configs = grid(axes, seeds=seeds, device="cpu", **fixed)
            load = os.getloadavg()[0]
            costs = {}

            def measure(config):
                costs[config.cell] = cost = run_cost(config)
                return cost

            started = time.perf_counter()
            estimate = estimate_seconds(configs, workers, measure)
            estimating = time.perf_counter() - started
            # What the page said before the workers' start and end and a run's other parts were
            # counted: the training steps alone, spread over the workers.
            steps_only = sum(costs[c.cell].step * c.seq_len / costs[c.cell].seq_len * c.steps
                             for c in configs) / min(workers, len(configs))
            started = time.perf_counter()
            sweep(configs, store=store, workers=workers)
            actual = time.perf_counter() - started
            results.append(dict(grid=name, runs=len(configs), load=load, estimate=estimate, actual=actual,
                                ratio=actual / estimate, estimating=estimating, steps_only=steps_only))
            print(f"{name}: load {load:.1f}; estimate {estimate:.1f} s (made in {estimating:.1f} s), "
                  f"actual {actual:.1f} s, actual/estimate {actual / estimate:.2f}; the steps alone "
                  f"{steps_only:.1f} s, actual/that {actual / steps_only:.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
