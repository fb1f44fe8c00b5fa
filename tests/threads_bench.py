"""How many torch threads a run should take: `train`'s steps/s with the policy's default
(explorer/threads.py), with OMP_NUM_THREADS=1 and with torch's own default (one per core),
on an idle machine and beside busy processes, side by side in one run.

    python tests/threads_bench.py [--steps 300] [--rounds 3] [--busy 2] [--json PATH]

Each figure is the median over rounds; within a round the settings take turns, so a change in
the machine's load touches them alike. The busy processes are `python -c "while True: pass"`,
started here and ended by their ids. docs/PERFORMANCE.md quotes its output.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {      # the app's default run, and a larger one of the sizes it offers: (arguments, share of --steps)
    "default (T=50, hidden 64, batch 64)": (["--seq-len", "50", "--hidden", "64", "--batch-size", "64"], 1.0),
    "large (T=100, hidden 256, batch 128)": (["--seq-len", "100", "--hidden", "256", "--batch-size", "128"], 0.25),
}


def settings() -> dict[str, tuple[dict, list[str]]]:
    """name -> (environment changes, extra arguments)."""
    cores = len(os.sched_getaffinity(0))
    return {"policy (no setting)": ({}, []),
            "OMP_NUM_THREADS=1": ({"OMP_NUM_THREADS": "1"}, []),
            f"--threads {cores} (torch's default)": ({}, ["--threads", str(cores)])}


def steps_per_second(size: list[str], env: dict, extra: list[str], steps: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        environ = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | env
        subprocess.run([sys.executable, "-m", "explorer", "train", "--task", "adding", "--steps", str(steps),
                        "--eval-every", str(steps), "--probe-every", str(steps), *size, *extra, "--quiet",
                        "--json", str(out)], cwd=ROOT, env=environ, check=True, capture_output=True, timeout=1800)
        return json.loads(out.read_text())["steps_per_second"]


def measure(steps: int, rounds: int) -> dict:
    table = {}
    for size_name, (size, share) in SIZES.items():
        rates = {name: [] for name in settings()}
        for _ in range(rounds):
            for name, (env, extra) in settings().items():
                rates[name].append(steps_per_second(size, env, extra, max(10, int(steps * share))))
        table[size_name] = {name: statistics.median(values) for name, values in rates.items()}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="steps per run of the default size (a quarter for the large)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", type=int, default=2, help="busy processes beside the loaded measurement")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    result = {"cores": len(os.sched_getaffinity(0)), "steps": args.steps, "rounds": args.rounds,
              "idle": measure(args.steps, args.rounds)}
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        result[f"{args.busy} busy processes"] = measure(args.steps, args.rounds)
    finally:
        for process in busy:            # only the processes this script started
            process.kill()
            process.wait()
    for load in ("idle", f"{args.busy} busy processes"):
        for size_name, rates in result[load].items():
            policy = rates["policy (no setting)"]
            print(f"{load:>18} | {size_name:<38} | " + " | ".join(f"{name} {rate:7.1f}" for name, rate in rates.items())
                  + f" | policy / OMP=1 {policy / rates['OMP_NUM_THREADS=1']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
