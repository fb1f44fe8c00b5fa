"""docs/LESSONS.md's table: every lesson's claim judged on seeds 0-9 with two kernel sets.

    python tests/lessons_table.py                 # both sets, every lesson (about 40 min on 2 cores)
    python tests/lessons_table.py --only vanishing,clipping --seeds 0,1,2
    python tests/lessons_table.py --time          # the seconds column: each lesson's own seed, alone
    python tests/lessons_table.py --app-time      # the app's seconds: its variants two at a time
    python tests/lessons_table.py --render        # the table again from the saved verdicts

Each lesson runs as `python -m explorer lesson KEY --seeds ... --json` in a process of its own,
once as this machine's torch picks its kernels ("native") and once with
ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 ("plain"): ATen's scalar kernels and
oneDNN's SSE4.1 ones, which round differently, standing in for another machine. The two sets
run side by side (each lesson trains on one thread); the verdicts go to out/lessons/SET/KEY.json
and the table to stdout. Side by side, and with a sweep's two processes, their seconds are
shared-machine ones: `--time` judges each lesson on its own seed alone, one after another,
(out/lessons/time/KEY.json), and the table's seconds are those. `--app-time` times each lesson
as the app trains it (out/lessons/app/KEY.json): its variants as runs of one server admitting
two at a time (explorer.admission, as on 2 cores), each in a worker process with one thread,
from Train all to the verdict, with the 1-minute load average before and after.
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


def app_timed(keys: list[str], slots: int = 2) -> None:
    """Each lesson trained as the app trains it (pages/session.py: an Admission of `slots`
    places lending worker processes, one torch thread a run), timed to its verdict; saved as
    out/lessons/app/KEY.json. Not the sweep lessons: the Sweep page trains those."""
    import tempfile
    import time

    sys.path.insert(0, str(ROOT))         # (run as a script: tests/ is on the path, not the checkout)
    from explorer import Run, threads
    from explorer.admission import Admission, threads_per_run
    from explorer.lessons import LESSONS
    from explorer.store import RunStore
    from explorer.worker import shared

    threads.use(threads_per_run(slots))
    admission = Admission(slots, workers=shared(keep=slots))
    store = RunStore(Path(tempfile.mkdtemp(prefix="lessons-app-time-")) / "runs.sqlite")   # runs save as they train
    time.sleep(10)                        # the workers start, as a server's do before the first Train
    for lesson in (item for item in LESSONS if item.key in keys):
        load = os.getloadavg()[0]
        runs = {v.label: Run(v.config, idle_timeout=1e9, store=store, name=v.label, admission=admission)
                for v in lesson.variants}
        started = time.monotonic()
        for run in runs.values():
            run.start()
        ended = {}
        while len(ended) < len(runs):
            for label, run in runs.items():
                if label not in ended and run.snapshot().ended:
                    ended[label] = round(time.monotonic() - started, 1)
            time.sleep(0.1)
        holds, _ = lesson.check({label: run.trainer for label, run in runs.items()})
        result = {"key": lesson.key, "seconds": round(time.monotonic() - started, 1), "holds": bool(holds),
                  "variants_ended": ended, "load_before": load, "load_after": os.getloadavg()[0]}
        for run in runs.values():
            run.stop()
        path = OUT / "app" / f"{lesson.key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        print(json.dumps(result, ensure_ascii=False), file=sys.stderr, flush=True)


def app_seconds(key: str) -> float | None:
    path = OUT / "app" / f"{key}.json"
    return json.loads(path.read_text())["seconds"] if path.exists() else None


def render(names: list[str]) -> str:
    rows = ["| lesson | seeds held, native kernels | seeds held, plain kernels | seconds, its own seed alone "
            "| seconds in the app, busy |",
            "|---|---|---|---|---|"]
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
        seconds, app = timed(key), app_seconds(key)
        rows.append(f"| `{key}` | {cells[0]} | {cells[1]} | {'' if seconds is None else f'{seconds:.0f}'} "
                    f"| {'' if app is None else f'{app:.0f}'} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated lesson keys (default: every lesson)")
    parser.add_argument("--seeds", default=",".join(str(s) for s in range(10)))
    parser.add_argument("--sets", default=",".join(SETS), help="native, plain or both")
    parser.add_argument("--render", action="store_true", help="only print the table from the saved verdicts")
    parser.add_argument("--time", action="store_true", help="judge each lesson on its own seed alone, for the seconds")
    parser.add_argument("--app-time", action="store_true", help="time each lesson as the app trains it")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else keys()
    if args.app_time:
        app_timed(names)
    elif args.time:
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
