"""Command line: `gate-explorer train ...` trains one run; `gate-explorer bench` measures;
`gate-explorer runs` lists, exports and deletes the runs in the run store; `gate-explorer
trace MODEL INPUT --out PATH.parquet` traces your own model's state_dict on your sequences;
`gate-explorer sweep --grid cell=rnn,lstm,gru --seeds 3 --out results.parquet` runs a grid of
configs and writes one row per run; `gate-explorer lesson NAME --seeds 0,1,2` checks a lesson's claim on
other seeds; `gate-explorer app` starts the browser app. From a checkout, `python -m explorer` is
the same command.

Every Config field is an option (--seq-len for seq_len), validated by Config itself, so
the CLI accepts exactly what the app and the URL accept, the memory budget included. A bad
argument, or any other failure (an unknown run id, a locked or damaged store, training that
runs out of memory...), prints one line and exits with status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

import torch

from .bench import run_suite
from . import csvsafe, lesson_seeds, threads
from .clamp import describe
from .config import FIELDS, Config
from .data import DataError, app_dir
from .loading import NONLINEARITIES, cell_name, check_inputs, load_module, parse_loss, read_sequences, unit_loss
from .memory import ARENAS, ARENAS_ENV, settle_for_training
from .run import Status
from .store import ExportExists, RunStore, StoreError, check_name, new_id, new_key
from .sweep import ENGINES, Cancelled, grid, resume, sweep
from .trace import trace
from .trainer import Trainer

# What .streamlit/config.toml sets for a checkout, as flags: an installed app is started from
# anywhere, where that file is not read. Without static serving the charts stay blank.
APP_FLAGS = ("--server.enableStaticServing", "true", "--server.disconnectedSessionTTL", "30",
             "--client.toolbarMode", "minimal",
             "--client.showErrorDetails", "none",
             "--runner.postScriptGC", "false", "--browser.gatherUsageStats", "false",
             "--server.headless", "true")
# A command waits this long for another program's transaction (the app saving a run), not
# the store's 30 s: at a terminal, an error that says "locked" beats a silent half minute.
STORE_TIMEOUT_S = 5.0
# The name help and errors give the command: the installed script's, which is what the README
# and a user type (`python -m explorer` is the same program, from a checkout).
PROG = "gate-explorer"
RUN_COLUMNS = ("id", "name", "task", "cell", "steps", "eval_loss", "eval_metric", "eval_sequences", "created")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise SystemExit(_fail(f"{message} (see: {PROG} --help)"))


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)
    train = sub.add_parser("train", help="train one run and report held-out results")
    for f in dataclasses.fields(Config):
        spec = FIELDS[f.name]
        choices = f" ({', '.join(spec.choices)})" if spec.choices else ""
        span = f" [{spec.lo:g}..{spec.hi:g}]" if spec.lo is not None else ""
        train.add_argument("--" + f.name.replace("_", "-"), dest=f.name, metavar=f.name.upper(),
                           help=f"{spec.help}{choices}{span} default: {f.default!r}")
    train.add_argument("--text-file", help="text task: read the text to model from this UTF-8 file")
    train.add_argument("--json", dest="json_path", metavar="PATH", help="write the results as JSON here")
    train.add_argument("--quiet", action="store_true", help="no progress lines")
    train.add_argument("--save", action="store_true",
                       help="keep the run in the run store (GATE_EXPLORER_DB) and add its run_id to the JSON")
    train.add_argument("--name", help="with --save: the saved run's name")
    bench = sub.add_parser("bench", help="the benchmark suite: the trainer against a bare PyTorch loop, a "
                                         "hand-written cell loop and the fused LSTM, side by side")
    bench.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train (default: cpu)")
    bench.add_argument("--size", choices=("small", "all"), default="small",
                       help="small: T=100, hidden 64, batch 64; all adds T=200/256/128 and T=100/512/256")
    bench.add_argument("--rounds", type=int, default=3, help="rounds per figure; each figure is their median")
    bench.add_argument("--chunk", type=int, default=10, help="steps per turn when the loops take turns")
    bench.add_argument("--short", action="store_true", help="a tiny, quick version (CI): it must not crash")
    bench.add_argument("--out", "--json", dest="json_path", metavar="PATH", help="also write the JSON here")
    for command in (train, bench):
        _add_threads(command)
    _add_sweep_parser(sub)
    _add_lesson_parser(sub)
    sub.add_parser("app", help="start the browser app; further arguments go to `streamlit run` "
                              "(e.g. --server.port 8600)")
    _add_runs_parser(sub)
    _add_trace_parser(sub)
    return parser


def _add_sweep_parser(sub) -> None:
    sw = sub.add_parser("sweep", help="train a grid of configs (cells x lengths x seeds...) and write one "
                                      "row per run: held-out loss, steps to solve, gradient ratio...")
    sw.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                    help="a Config field and its values, e.g. cell=rnn,lstm,gru; repeat for more axes")
    sw.add_argument("--seeds", type=int, metavar="N", help="run every grid point with seeds 0..N-1")
    for f in dataclasses.fields(Config):
        sw.add_argument("--" + f.name.replace("_", "-"), dest=f.name, metavar=f.name.upper(),
                        help=argparse.SUPPRESS)      # (as for train; every run gets the value)
    sw.add_argument("--engine", choices=ENGINES, default="local",
                    help="local: a process pool here; ray: Ray tasks (RAY_ADDRESS or --address joins a cluster)")
    sw.add_argument("--workers", type=int, metavar="N", help="local: processes at once (default: one per core)")
    sw.add_argument("--address", help="ray: the cluster's address (default: RAY_ADDRESS, else a local instance)")
    sw.add_argument("--out", metavar="PATH.parquet", help="write the rows here (.parquet, or .csv)")
    sw.add_argument("--resume", metavar="SWEEP_ID", help="go on with a stored sweep: its done runs are skipped")
    sw.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_threads(sw)


def _add_lesson_parser(sub) -> None:
    ls = sub.add_parser("lesson", help="train a lesson's variants with other seeds and say, for each, whether "
                                       "its claim holds")
    ls.add_argument("name", nargs="?", metavar="NAME", help="the lesson's key (--list prints them)")
    ls.add_argument("--seeds", metavar="S1,S2,...",
                    help="seeds to train with in place of the lesson's own, comma-separated (default: its own); "
                         "a sweep lesson's verdict for seed s uses seeds s, s+1 and s+2")
    ls.add_argument("--json", action="store_true", help="print one JSON document instead of a line per seed")
    ls.add_argument("--list", action="store_true", help="print the lessons' keys")
    _add_threads(ls)


def _add_threads(command) -> None:
    command.add_argument("--threads", type=int, metavar="N",
                         help="torch threads per run (default: OMP_NUM_THREADS, else 1: on 2 cores one thread is 0.7x "
                              "of two when the machine is idle and 3x when it is busy; docs/PERFORMANCE.md)")


def _add_trace_parser(sub) -> None:
    tr = sub.add_parser("trace", help="trace your own nn.LSTM/GRU/RNN state_dict on your sequences into a "
                                      "Parquet table (layer, sequence, t, unit, quantity, value)")
    tr.add_argument("model", metavar="MODEL", help="the module's state_dict: .safetensors, or .pt/.pth "
                                                   "(read with weights_only=True: no code is run)")
    tr.add_argument("input", metavar="INPUT", help="sequences: a .npy array, 3-D (batch, time, features; "
                                                   "time first with --time-first) or 2-D (time, features); or "
                                                   "a CSV of one sequence, a row per step, a header")
    tr.add_argument("--out", required=True, metavar="PATH.parquet", help="where to write the table")
    tr.add_argument("--time-first", action="store_true", help="INPUT's 3-D array is (time, batch, features)")
    tr.add_argument("--nonlinearity", choices=NONLINEARITIES, default="tanh",
                    help="a plain RNN's activation, which a state_dict does not record (default: tanh)")
    tr.add_argument("--loss", default="last", metavar="last|UNIT@STEP",
                    help="the loss whose gradient is traced: last (default; the sum of the top layer's "
                         "output at the last step) or UNIT@STEP, one top-layer unit's h at one step")
    tr.add_argument("--prefix", help="which recurrent module, when the state_dict holds several "
                                     "(e.g. encoder.)")
    tr.add_argument("--clamp", metavar="JSON",
                    help='a what-if: gates held constant, as trace(clamp=...) takes them, e.g. \'{"forget": 0}\' '
                         'or \'{"input": {"value": 1, "units": [3], "steps": [10, 20], "layers": [0]}}\'')


def _add_runs_parser(sub) -> None:
    runs = sub.add_parser("runs", help="list the saved runs (newest first); export or delete one")
    runs.add_argument("--json", action="store_true", help="print the list as JSON")
    runs.add_argument("--task", help="only this task's runs")
    runs.add_argument("--cell", help="only this cell's runs")
    action = runs.add_subparsers(dest="runs_command", metavar="{export,delete}")
    export = action.add_parser("export", help="write a run's metrics and probe traces as files")
    export.add_argument("id", help="the run's id (see: gate-explorer runs)")
    export.add_argument("--format", choices=("parquet", "csv"), default="parquet", help="default: parquet")
    export.add_argument("--out", required=True, metavar="DIR",
                        help="folder for metrics.<ext> and traces.<ext>, created if missing")
    export.add_argument("--force", action="store_true", help="overwrite metrics.<ext> and traces.<ext> if there")
    delete = action.add_parser("delete", help="delete a saved run")
    delete.add_argument("id", help="the run's id")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        # Known args only: `app` hands the rest to Streamlit, whose flags argparse cannot know.
        args, rest = parser.parse_known_args(argv)
        if rest and args.command != "app":
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.command == "app":
        _app(rest)                        # does not return: this process becomes Streamlit
    if args.command in ("train", "bench", "sweep", "lesson"):
        settle_for_training()             # this process trains: a step's memory stays mapped (explorer/memory.py)
        if args.threads is not None and args.threads < 1:
            return _fail("--threads must be at least 1")
        # One policy for every run (explorer/threads.py): --threads, else OMP_NUM_THREADS, else one.
        threads.use(args.threads)
    if args.command == "bench":
        if args.rounds < 1 or args.chunk < 1:
            return _fail("--rounds and --chunk must be at least 1")
        try:
            result = run_suite(device=args.device, size=args.size, short=args.short, rounds=args.rounds,
                               chunk=args.chunk, progress=lambda text: print(text, file=sys.stderr, flush=True))
        except ValueError as error:          # (cuda asked for where there is none)
            return _fail(str(error))
        return _emit(result, args.json_path)
    if args.command == "runs":
        return _runs(args)
    if args.command == "trace":
        return _trace(args)
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "lesson":
        return _lesson(args)
    return _train(args)


def _app(streamlit_args: list[str]) -> NoReturn:
    """Become `streamlit run app.py` with the app's settings; later flags override them.

    Exec, not a child process: the server is this very process, so a signal (Ctrl-C, a test
    stopping it by pid) reaches Streamlit, Streamlit's exit status is the command's, and explorer/
    never imports Streamlit. The new process starts with glibc's arenas capped (unless the
    environment already says), which glibc reads only at start (explorer/memory.py).
    """
    command = [sys.executable, "-m", "streamlit", "run", str(app_dir() / "app.py"), *APP_FLAGS,
               *streamlit_args]
    os.execve(sys.executable, command, {ARENAS_ENV: str(ARENAS), **os.environ})


def _train(args) -> int:
    if args.name is not None and not args.save:
        return _fail("--name needs --save")
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
              if getattr(args, f.name) is not None}
    try:
        if args.text_file:
            try:
                values["text"] = Path(args.text_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                return _fail(f"cannot read --text-file {args.text_file}: {error}")
        config = Config.from_dict(values)
        trainer = Trainer(config)
    except (ValueError, DataError) as error:
        return _fail(str(error))
    except (RuntimeError, MemoryError) as error:    # torch.OutOfMemoryError is a RuntimeError
        return _fail(f"the run could not start: {_first_line(error)}")
    store = name = None
    if args.save:
        try:
            name = check_name(args.name) if args.name is not None else None
            # Opened before training, so a store that cannot be opened fails now, not after it.
            store = RunStore(timeout=STORE_TIMEOUT_S)
        except StoreError as error:
            return _fail(str(error))
    if trainer.device_warning:
        print(f"warning: {trainer.device_warning}", file=sys.stderr)

    try:
        training_seconds = _train_steps(trainer, args.quiet)
        final = trainer.final_eval()        # the numbers the store keeps with the run, too
    except (RuntimeError, MemoryError) as error:
        return _fail(f"training stopped at step {trainer.steps_done}: {_first_line(error)}")
    task = trainer.task
    result = {
        "config": config.to_dict(),
        "device": str(trainer.device),
        "threads": torch.get_num_threads(),
        "steps": trainer.steps_done,
        "eval_sequences": final.sequences,
        "eval_loss": final.loss,
        "eval_metric": final.metric,
        "loss_name": task.loss_name,
        "metric_name": task.metric_name,
        "baseline_loss": task.baseline_loss,
        "baseline_metric": task.baseline_metric,
        "baseline_name": task.baseline_name,
        "steps_per_second": trainer.steps_done / training_seconds if training_seconds > 0 else None,
        "diverged": trainer.diverged,
        "message": trainer.divergence_message,
    }
    if store is not None:
        run_id = new_id()
        # The owner key is the app's, for a browser session; nobody holds this one, so the
        # app opens a CLI run read-only.
        try:
            store.save(run_id, trainer, owner_key=new_key(), name=name,
                       status=Status.DIVERGED if trainer.diverged else Status.FINISHED)
        except StoreError as error:
            return _fail(str(error))
        result["run_id"] = run_id
    return _emit(result, args.json_path)


def _train_steps(trainer: Trainer, quiet: bool) -> float:
    """Train to the end (or divergence), with progress lines; the seconds it took."""
    every = max(1, trainer.config.steps // 10)
    started = time.perf_counter()
    while not trainer.finished:
        record = trainer.step()
        if record is None:
            print(trainer.divergence_message, file=sys.stderr)
            break
        if not quiet and (trainer.steps_done % every == 0):
            print(f"step {trainer.steps_done:6d}  loss {record['loss']:.4f}  "
                  f"{trainer.task.metric_name} {record['metric']:.4f}", file=sys.stderr)
    return time.perf_counter() - started


def _sweep(args) -> int:
    """Run (or resume) a sweep with a progress line per run; the rows to --out, a summary to stdout."""
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".parquet", ".csv"):
        return _fail(f"--out must name a .parquet or .csv file, not {out.name}")
    if args.workers is not None and args.workers < 1:
        return _fail("--workers must be at least 1")
    fixed = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
    try:
        store = RunStore(timeout=STORE_TIMEOUT_S)
        if args.resume:
            if args.grid or args.seeds is not None or fixed:
                return _fail("--resume runs the stored sweep as it was: give no --grid, --seeds or settings")
            total, done = len(store.sweep_configs(args.resume)), len(store.sweep_rows(args.resume))
            heading = f"resuming, {done} of {total} runs done"
        else:
            axes = {}
            for text in args.grid:
                name, sep, values = text.partition("=")
                name = name.strip().replace("-", "_")
                if not sep or not name or not values.strip():
                    return _fail(f"--grid takes FIELD=V1,V2,..., got {text!r}")
                if name in axes:
                    return _fail(f"--grid {name} is given twice")
                axes[name] = [v.strip() for v in values.split(",")]
            configs = grid(axes, seeds=args.seeds, **fixed)
            heading = f"{len(configs)} runs"
    except (ValueError, StoreError) as error:
        return _fail(str(error))
    sweep_id = args.resume or new_id()
    if not args.quiet:
        print(f"sweep {sweep_id}: {heading} on the {args.engine} engine", file=sys.stderr, flush=True)
    options = dict(engine=args.engine, store=store, workers=args.workers, address=args.address, threads=args.threads,
                   progress=None if args.quiet else _progress_line)
    try:
        frame = resume(sweep_id, **options) if args.resume else sweep(configs, sweep_id=sweep_id, **options)
    except (ValueError, StoreError) as error:
        return _fail(str(error))
    except (Cancelled, KeyboardInterrupt):
        print(f"sweep {sweep_id} stopped; its finished runs are stored. Go on with: "
              f"gate-explorer sweep --resume {sweep_id}", file=sys.stderr)
        return 130
    if out is not None:
        try:
            frame.to_parquet(out, index=False) if out.suffix.lower() == ".parquet" else csvsafe.to_csv(frame, out)
        except OSError as error:
            return _fail(f"cannot write {out}: {error.strerror or error} (the rows are stored: "
                         f"--resume {sweep_id} --out PATH writes them again)")
    _print(_sweep_table(frame))
    return 0


def _lesson(args) -> int:
    """A line per seed (or one JSON document): whether the lesson's claim holds, and its numbers.
    Exits 0 whichever way the claims come out: the verdicts are the answer."""
    if args.list:
        if args.name or args.seeds is not None or args.json:
            return _fail("--list takes no lesson, --seeds or --json")
        _print("\n".join(lesson_seeds.keys()))
        return 0
    if not args.name:
        return _fail(f"name a lesson: {', '.join(lesson_seeds.keys())}")
    try:
        item = lesson_seeds.find(args.name)
        seeds = lesson_seeds.parse_seeds(args.seeds) if args.seeds is not None else [lesson_seeds.own_seed(item)]
    except ValueError as error:
        return _fail(str(error))

    def line(verdict) -> None:
        if not args.json:
            said = "holds" if verdict.holds else "does NOT hold"
            print(f"seed {verdict.seed}: {said} ({verdict.seconds:.1f} s). {verdict.message}", flush=True)

    try:
        verdicts = lesson_seeds.judge(item.key, seeds, progress=line, threads=args.threads)
    except ValueError as error:
        return _fail(str(error))
    except (RuntimeError, MemoryError) as error:
        return _fail(f"training stopped: {_first_line(error)}")
    held = sum(verdict.holds for verdict in verdicts)
    if args.json:
        _print(json.dumps({"lesson": item.key, "seeds": [verdict.to_dict() for verdict in verdicts],
                           "held": held, "of": len(verdicts)}, ensure_ascii=False))
    else:
        print(f"{item.key}: the claim held on {held} of {len(verdicts)} seed(s)")
    return 0


def _progress_line(done: int, total: int, row: dict) -> None:
    width = 20
    bar = "#" * (width * done // total) + "." * (width - width * done // total)
    what = f"{row['cell']} seq_len={row['seq_len']} seed={row['seed']}"
    if row["status"] == "failed":
        result = f"failed: {row['message']}"
    else:
        result = f"{row['status']}, held-out loss {row['eval_loss']:.4g} ({row['seconds']:.1f} s)"
    print(f"[{bar}] {done}/{total}  {what}: {result}", file=sys.stderr, flush=True)


def _sweep_table(frame) -> str:
    """The rows in a few columns: the fields that vary, then the results."""
    varying = [c for c in Config.__dataclass_fields__ if frame[c].nunique(dropna=False) > 1]
    shown = frame[varying + ["eval_loss", "baseline_loss", "solved_step", "grad_ratio_final", "status"]]
    return f"sweep {frame.attrs['sweep_id']}\n" + shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _first_line(error: BaseException) -> str:
    """An exception as one line (torch's messages run to several; MemoryError's is often empty)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _trace(args) -> int:
    """Trace a state_dict on sequences into a Parquet file; every failure is one line."""
    out = Path(args.out)
    if out.suffix.lower() != ".parquet":
        return _fail(f"--out must name a .parquet file, not {out.name}")
    try:
        module = load_module(args.model, args.nonlinearity, batch_first=not args.time_first, prefix=args.prefix)
        # A CSV's rows past the app's step cap are not parsed: one sequence that long is refused.
        x, _ = read_sequences(args.input, time_first=args.time_first,
                              max_steps=int(FIELDS["seq_len"].hi))           # (batch, time, features)
        check_inputs(x, module, Path(args.input).name)
        chosen = parse_loss(args.loss)
        # Handed over in the file's own layout, as the module (built with that layout) reads it.
        xs = x.transpose(1, 0, 2) if args.time_first else x
        if chosen is None:
            loss_fn = None
        else:
            loss_fn = unit_loss(*chosen, hidden=module.hidden_size, steps=x.shape[1], batch_first=not args.time_first)
        result = trace(module, torch.from_numpy(xs), loss_fn=loss_fn, clamp=_clamp(args.clamp))
        result.to_frame().to_parquet(out, index=False)
    except (ValueError, DataError) as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"cannot write {args.out}: {error.strerror or error}")
    except (RuntimeError, MemoryError) as error:
        return _fail(f"tracing failed: {_first_line(error)}")
    _print(f"traced {x.shape[0]} sequence{'s' * (x.shape[0] > 1)} × {x.shape[1]} steps through "
           f"{cell_name(module)} ({module.num_layers} × {module.hidden_size} units)"
           f"{f' with {describe(result.clamp)}' if result.clamp else ''}, loss {result.loss:.6g}: {out}")
    return 0


def _clamp(text: str | None):
    """--clamp's JSON, or None; ValueError (one line) when it is not JSON."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--clamp is not JSON: {error}") from None


def _runs(args) -> int:
    try:
        store = RunStore(timeout=STORE_TIMEOUT_S)
        if args.runs_command == "export":
            return _runs_export(store, args)
        if args.runs_command == "delete":
            return _runs_delete(store, args)
        return _runs_list(store, args)
    except StoreError as error:
        return _fail(str(error))


def _runs_list(store: RunStore, args) -> int:
    runs = [info.to_dict() for info in store.list(task=args.task, cell=args.cell)]
    if args.json:
        _print(json.dumps(runs, indent=2))
    else:
        _print(_table(runs) if runs else "No saved runs.")
    return 0


def _table(runs: list[dict]) -> str:
    """Runs as aligned columns, one row each; numbers right-aligned."""
    def cell(value) -> str:
        if value is None:
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    rows = [RUN_COLUMNS, *([cell(run[column]) for column in RUN_COLUMNS] for run in runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(RUN_COLUMNS))]
    numeric = {"steps", "eval_loss", "eval_metric", "eval_sequences"}
    return "\n".join("  ".join(value.rjust(width) if column in numeric else value.ljust(width)
                               for column, value, width in zip(RUN_COLUMNS, row, widths)).rstrip()
                     for row in rows)


def _runs_export(store: RunStore, args) -> int:
    try:
        paths = store.export(args.id, args.format, args.out, overwrite=args.force)
    except ExportExists as error:
        return _fail(f"{error} (add --force to overwrite them)")
    _print("\n".join(str(path) for path in paths))
    return 0


def _runs_delete(store: RunStore, args) -> int:
    name = store.info(args.id).name
    store.delete(args.id)
    _print(f"deleted run {args.id} ({name})")
    return 0


def _print(text: str) -> None:
    try:
        print(text)
    except BrokenPipeError:  # e.g. piped into `head`; what comes after the print still happens
        sys.stdout = None


def _emit(result: dict, json_path: str | None) -> int:
    text = json.dumps(result, indent=2)
    _print(text)
    if json_path:
        try:
            Path(json_path).write_text(text + "\n")
        except OSError as error:
            return _fail(f"cannot write {json_path}: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
