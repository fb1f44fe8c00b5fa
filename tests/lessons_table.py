"""docs/LESSONS.md's table: every lesson's claim judged on seeds 0-9 with two kernel sets.

    python tests/lessons_table.py                 # both sets, every lesson (about 40 min on 2 cores)
    python tests/lessons_table.py --only vanishing,clipping --seeds 0,1,2
    python tests/lessons_table.py --time          # the seconds column: each lesson's own seed, alone
    python tests/lessons_table.py --render        # the table again from the saved verdicts

Each lesson runs as `python -m explorer lesson KEY --seeds ... --json` in a process of its own,
once as this machine's torch picks its kernels ("native") and once with
ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 ("plain"): ATen's scalar kernels and
oneDNN's SSE4.1 ones, which round differently, standing in for another machine. The two sets
run side by side (each lesson trains on one thread); the verdicts go to out/lessons/SET/KEY.json
and the table to stdout. Side by side, and with a sweep's two processes, their seconds are
shared-machine ones: `--time` judges each lesson on its own seed alone, one after another,
(out/lessons/time/KEY.json), and the table's seconds are those.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "lessons"
SETS = {
    "native": {},
    "plain": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def keys() -> list[str]:
    listed = subprocess.run([sys.executable, "-m", "explorer", "lesson", "--list"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    return listed.stdout.split()


def judge(kernel_set: str, key: str, seeds: str | None) -> dict:
    """The lesson's verdicts (on its own seed when seeds is None), saved as out/lessons/SET/KEY.json."""
    env = {**os.environ, **SETS.get(kernel_set, {})}
    listed = ["--seeds", seeds] if seeds else []
    done = subprocess.run([sys.executable, "-m", "explorer", "lesson", key, *listed, "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{key} ({kernel_set}) failed: {done.stderr.strip()}")
    result = json.loads(done.stdout)
    path = OUT / kernel_set / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"{kernel_set:6s} {key}: {result['held']} of {result['of']}", file=sys.stderr, flush=True)
    return result


def timed(key: str) -> float | None:
    path = OUT / "time" / f"{key}.json"
    return json.loads(path.read_text())["seeds"][0]["seconds"] if path.exists() else None


def render(names: list[str]) -> str:
    rows = ["| lesson | seeds held, native kernels | seeds held, plain kernels | seconds, its own seed alone |",
            "|---|---|---|---|"]
    for key in names:
        cells = []
        for kernel_set in SETS:
            path = OUT / kernel_set / f"{key}.json"
            if not path.exists():
                cells.append("not run")
                continue
            result = json.loads(path.read_text())
            failed = [str(s["seed"]) for s in result["seeds"] if not s["holds"]]
            cells.append(f"{result['held']} of {result['of']}" + (f" (not {', '.join(failed)})" if failed else ""))
        seconds = timed(key)
        rows.append(f"| `{key}` | {cells[0]} | {cells[1]} | {'' if seconds is None else f'{seconds:.0f}'} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated lesson keys (default: every lesson)")
    parser.add_argument("--seeds", default=",".join(str(s) for s in range(10)))
    parser.add_argument("--sets", default=",".join(SETS), help="native, plain or both")
    parser.add_argument("--render", action="store_true", help="only print the table from the saved verdicts")
    parser.add_argument("--time", action="store_true", help="judge each lesson on its own seed alone, for the seconds")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else keys()
    if args.time:
        for key in names:
            judge("time", key, None)
    elif not args.render:
        chosen = args.sets.split(",")

        def one_set(kernel_set: str) -> None:
            for key in names:
                judge(kernel_set, key, args.seeds)

        with ThreadPoolExecutor(len(chosen)) as pool:
            list(pool.map(one_set, chosen))
    print(render(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
