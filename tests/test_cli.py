"""The CLI as a user runs it: a real `python -m explorer` process, or main() in this one."""
import json
import os
import sqlite3
import subprocess
import sys
import tomllib
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load as load_tensors

import explorer.__main__ as cli
from explorer.__main__ import main
from explorer.config import Config
from explorer.store import RunStore
from tests.test_train import held_out_by_hand

ROOT = Path(__file__).resolve().parents[1]
RUN_KEYS = ["id", "name", "task", "cell", "steps", "eval_loss", "eval_metric", "eval_sequences", "created"]
SMALL = ("--task", "adding", "--cell", "gru", "--seq-len", "12", "--hidden", "8", "--batch-size", "8",
         "--steps", "20", "--probe-every", "5", "--eval-every", "5", "--probe-count", "3", "--seed", "3",
         "--device", "cpu", "--quiet")


@pytest.fixture(autouse=True)
def store_path(tmp_path, monkeypatch):
    """Every test's run store is its own file (subprocesses inherit the variable), never the
    user's real one; in a folder not yet made, so a test can see whether it was created."""
    path = tmp_path / "store" / "runs.sqlite"
    monkeypatch.setenv("GATE_EXPLORER_DB", str(path))
    return path


def explorer(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "explorer", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_train_writes_the_promised_json(tmp_path):
    out = tmp_path / "run.json"
    done = explorer("train", "--task", "adding", "--seq-len", "20", "--cell", "gru", "--hidden", "16",
                    "--layers", "1", "--steps", "30", "--batch-size", "16", "--lr", "0.01",
                    "--optimizer", "adam", "--clip", "1", "--forget-bias", "1", "--seed", "3",
                    "--device", "cpu", "--json", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result == json.loads(done.stdout)
    assert result["config"]["cell"] == "gru" and result["config"]["seq_len"] == 20
    assert result["steps"] == 30 and result["eval_sequences"] == 1000
    assert result["baseline_loss"] == pytest.approx(1 / 6)
    assert 0 < result["eval_loss"] < 10 and 0 <= result["eval_metric"] <= 1
    assert result["steps_per_second"] > 0 and result["diverged"] is False
    assert "run_id" not in result


@pytest.mark.slow
def test_same_seed_gives_the_same_result():
    args = ("train", "--task", "brackets", "--seq-len", "10", "--hidden", "8", "--steps", "10",
            "--seed", "5", "--quiet")
    first, second = json.loads(explorer(*args).stdout), json.loads(explorer(*args).stdout)
    assert first["eval_loss"] == second["eval_loss"]


@pytest.mark.slow
def test_divergence_is_reported_not_raised():
    done = explorer("train", "--cell", "rnn-relu", "--seq-len", "30", "--hidden", "64", "--optimizer", "sgd",
                    "--lr", "10", "--steps", "50", "--batch-size", "16", "--quiet", "--save")
    assert done.returncode == 0
    result = json.loads(done.stdout)
    assert result["diverged"] is True and result["steps"] < 50
    assert "diverged" in done.stderr
    assert RunStore().info(result["run_id"]).status == "diverged"


@pytest.mark.parametrize("args, words", [
    (("train", "--hidden", "0"), "hidden must be between 1 and 512"),
    (("train", "--cell", "transformer"), "cell must be one of"),
    (("train", "--lr", "fast"), "lr must be a number"),
    (("train", "--nonsense", "1"), "unrecognized arguments"),
    (("train", "--task", "csv"), "csv_path"),
    (("train", "--task", "csv", "--csv-path", "/nonexistent.csv"), "not found"),
    (("train", "--task", "brackets", "--seq-len", "11"), "even"),
    (("fly",), "invalid choice"),
])
def test_bad_arguments_print_one_line_and_return_2(args, words, capsys):
    assert main(list(args)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("error:")


def test_bad_argument_exits_the_process_with_status_2_and_no_traceback():
    done = explorer("train", "--seq-len", "5000")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: seq_len must be between 2 and 1000; got 5000"


@pytest.mark.slow
def test_text_file_option_trains_on_that_text(tmp_path):
    text = tmp_path / "poem.txt"
    text.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    done = explorer("train", "--task", "text", "--text-file", str(text), "--seq-len", "16", "--hidden", "8",
                    "--steps", "5", "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["config"]["text"].startswith("the cat sat")


@pytest.mark.slow
def test_bench_short_reports_every_figure_of_the_suite(tmp_path):
    out = tmp_path / "bench.json"
    done = explorer("bench", "--short", "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert json.loads(out.read_text()) == result
    for cell in ("lstm", "gru", "rnn", "peephole"):
        assert result["trainer_over_bare"][cell]["small"] > 0
        assert result["probe_in_bare_steps"][cell]["small"] > 0
        rates = result["steps_per_second"][cell]["small"]
        assert rates["bare"] > 0 and rates["trainer"] > 0
    assert result["trainer_over_hand_written"]["small"] > 0 and result["peephole_over_lstm"]["small"] > 0
    assert result["cifg_over_lstm"]["small"] > 0
    if result["setting"]["unfused_step"] == "compiled":          # built with this machine's C compiler
        assert all(result["compiled_over_pytorch"][cell]["small"] > 0 for cell in ("peephole", "cifg"))
    assert result["background_probe_over_inline"]["small"] > 0
    bound = result["rss_history_bound"]
    assert bound["steps"] == [50, 200] and bound["ratio"] == pytest.approx(bound["rss_mb"][1] / bound["rss_mb"][0])
    assert result["setting"]["device"] == "cpu" and result["setting"]["short"] is True


def test_bench_refuses_a_device_this_machine_lacks_in_one_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = explorer("bench", "--short", "--device", "cuda")
    assert done.returncode == 2 and "CUDA" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_help_and_errors_name_the_installed_command_when_run_as_python_m_explorer():
    """What a user reads (README, --help) is `gate-explorer`, however the CLI was started; the
    installed script's own help is checked in tests/test_package.py."""
    done = explorer("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: gate-explorer ")
    assert "usage: explorer" not in done.stdout
    wrong = explorer("nonsense")
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines()[-1].endswith("(see: gate-explorer --help)")


def test_app_becomes_streamlit_with_the_checkout_s_settings_then_the_user_s_flags(monkeypatch):
    started = []

    def execve(path, argv, env):
        started.append((argv, env))
        raise SystemExit(0)        # as if the process had become Streamlit

    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    with pytest.raises(SystemExit):
        main(["app", "--server.port", "8600"])
    ((argv, env),) = started
    assert env["MALLOC_ARENA_MAX"] == "2"   # glibc reads the arena cap only at start
    assert argv[:4] == [sys.executable, "-m", "streamlit", "run"] and Path(argv[4]) == ROOT / "app.py"
    flags = dict(zip(argv[5::2], argv[6::2]))
    # An installed app does not read .streamlit/config.toml: every setting in it must be a flag.
    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    for section, values in settings.items():
        for name, value in values.items():
            assert flags.get(f"--{section}.{name}") == str(value).lower(), f"{section}.{name}"
    assert flags["--server.headless"] == "true"
    assert argv[-2:] == ["--server.port", "8600"]   # last, so the user's flags win


# -- the run store: train --save, runs, runs export, runs delete --------------------------------

def run(capsys, *args) -> str:
    """main(args) in this process; its stdout, after checking it succeeded."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def saved_run(capsys, tmp_path, name="my gru") -> dict:
    out = run(capsys, "train", *SMALL, "--save", "--name", name, "--json", tmp_path / "run.json")
    result = json.loads(out)
    assert result == json.loads((tmp_path / "run.json").read_text())
    return result


def fails(capsys, *args, words: str) -> None:
    """main(args) fails as promised: status 2, one line on stderr that says what went wrong."""
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err, err
    assert words in err, err


def test_train_without_save_leaves_the_store_alone(capsys, store_path):
    result = json.loads(run(capsys, "train", *SMALL, "--steps", "2"))
    assert "run_id" not in result
    assert not store_path.parent.exists()


def test_a_saved_run_is_listed_with_exactly_the_promised_keys(capsys, tmp_path):
    result = saved_run(capsys, tmp_path)
    runs = json.loads(run(capsys, "runs", "--json"))
    assert len(runs) == 1 and list(runs[0]) == RUN_KEYS
    listed = runs[0]
    assert (listed["id"], listed["name"], listed["task"], listed["cell"], listed["steps"]) == (
        result["run_id"], "my gru", "adding", "gru", 20)
    assert datetime.fromisoformat(listed["created"]).tzinfo is not None
    assert isinstance(listed["eval_loss"], float) and isinstance(listed["eval_metric"], float)
    assert RunStore().info(result["run_id"]).status == "finished"


@pytest.mark.parametrize("task, sequences", [("adding", 1000), ("digits", 360)])
def test_runs_lists_the_held_out_numbers_train_printed(capsys, tmp_path, task, sequences):
    result = saved_run(capsys, tmp_path) if task == "adding" else json.loads(
        run(capsys, "train", *SMALL, "--task", "digits", "--steps", "3", "--save"))
    listed = json.loads(run(capsys, "runs", "--json"))[0]
    numbers = ("eval_loss", "eval_metric", "eval_sequences")
    assert [listed[k] for k in numbers] == [result[k] for k in numbers]
    assert result["eval_sequences"] == sequences
    # Worked out again from the weights the store kept, on the task's held-out set, by hand.
    loss, metric, count = held_out_by_hand(Config.from_dict(result["config"]),
                                           load_tensors(RunStore().weights(result["run_id"])))
    assert count == sequences
    assert result["eval_loss"] == pytest.approx(loss, rel=1e-5)
    assert result["eval_metric"] == pytest.approx(metric, abs=1e-6)
    row = run(capsys, "runs").splitlines()[1].split()
    shown = dict(zip(RUN_KEYS[2:], row[-(len(RUN_KEYS) - 2):]))      # (after the name, which may hold spaces)
    assert shown["eval_loss"] == f"{result['eval_loss']:.4g}" and shown["eval_sequences"] == str(sequences)


def test_a_run_from_a_schema_3_store_lists_its_held_out_numbers_as_unknown(capsys, store_path):
    from tests.test_store import SCHEMA_3
    store_path.parent.mkdir()
    with sqlite3.connect(store_path) as db:
        db.executescript(SCHEMA_3)        # its eval_loss and eval_metric: the last periodic eval
        db.execute("INSERT INTO runs VALUES ('r', 'h', 'old run', '{}', 'adding', 'lstm', 30, 'finished', 0.25, 0.5, "
                   "'2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00+00:00')")
    (listed,) = json.loads(run(capsys, "runs", "--json"))
    assert (listed["id"], listed["steps"]) == ("r", 30)
    assert (listed["eval_loss"], listed["eval_metric"], listed["eval_sequences"]) == (None, None, None)
    row = run(capsys, "runs").splitlines()[1].split()
    assert row[-4:-1] == ["-", "-", "-"]


def test_runs_are_listed_newest_first_and_filtered(capsys, tmp_path):
    first = saved_run(capsys, tmp_path, name="first")["run_id"]
    second = saved_run(capsys, tmp_path, name="second")["run_id"]
    assert [r["id"] for r in json.loads(run(capsys, "runs", "--json"))] == [second, first]
    assert len(json.loads(run(capsys, "runs", "--json", "--task", "adding", "--cell", "gru"))) == 2
    assert json.loads(run(capsys, "runs", "--json", "--cell", "lstm")) == []
    assert run(capsys, "runs", "--task", "copy") == "No saved runs.\n"


def test_runs_prints_an_aligned_table(capsys, tmp_path):
    assert run(capsys, "runs") == "No saved runs.\n"
    run_id = saved_run(capsys, tmp_path, name="table run")["run_id"]
    header, row = run(capsys, "runs").splitlines()
    assert header.split() == RUN_KEYS
    assert row.startswith(run_id) and "table run" in row and " adding " in row and " 20 " in row
    assert row.index("table run") == header.index("name") and row.index("gru") == header.index("cell")


@pytest.mark.parametrize("fmt, read", [("parquet", pd.read_parquet), ("csv", pd.read_csv)])
def test_export_writes_metrics_and_traces(capsys, tmp_path, fmt, read):
    run_id = saved_run(capsys, tmp_path)["run_id"]
    out = tmp_path / "not" / "yet" / "made"
    paths = run(capsys, "runs", "export", run_id, "--format", fmt, "--out", out).splitlines()
    assert paths == [str(out / f"metrics.{fmt}"), str(out / f"traces.{fmt}")]
    metrics, traces = read(paths[0]), read(paths[1])
    assert len(metrics) == 20 and list(metrics["step"]) == list(range(1, 21))
    assert {"loss", "metric", "eval_loss"} <= set(metrics.columns)
    assert sorted(set(traces["step"])) == [0, 5, 10, 15, 20]
    assert {"layer", "sequence", "t", "unit", "quantity", "value"} <= set(traces.columns)


def test_delete_removes_the_run(capsys, tmp_path):
    kept = saved_run(capsys, tmp_path, name="kept")["run_id"]
    gone = saved_run(capsys, tmp_path, name="gone")["run_id"]
    said = run(capsys, "runs", "delete", gone)
    assert said.count("\n") == 1 and gone in said
    assert [r["id"] for r in json.loads(run(capsys, "runs", "--json"))] == [kept]
    fails(capsys, "runs", "delete", gone, words=f"the run {gone!r} was deleted by its owner")


@pytest.mark.parametrize("args, words", [
    (("runs", "export", "no-such-id", "--out", "{tmp}/out"), "no saved run has the id 'no-such-id'"),
    (("runs", "delete", "no-such-id"), "no saved run has the id 'no-such-id'"),
    (("runs", "export", "x", "--format", "xlsx", "--out", "{tmp}/out"), "invalid choice: 'xlsx'"),
    (("runs", "export", "x"), "--out"),
    (("runs", "rename", "x"), "invalid choice"),
    (("train", "--name", "lonely"), "--name needs --save"),
    (("train", "--save", "--name", "  "), "name cannot be empty"),
])
def test_bad_runs_arguments_print_one_line(args, words, capsys, tmp_path):
    fails(capsys, *(a.format(tmp=tmp_path) for a in args), words=words)


@pytest.mark.parametrize("args", [("runs",), ("runs", "--json"), ("runs", "delete", "x"),
                                  ("train", *SMALL, "--save")])
def test_a_corrupt_store_is_one_line_not_a_traceback(args, capsys, store_path):
    store_path.parent.mkdir()
    store_path.write_text("this is not SQLite, " * 100)
    fails(capsys, *args, words="not a database")


@pytest.mark.parametrize("args", [("runs", "--json"), ("train", *SMALL, "--save")])
def test_a_store_folder_that_cannot_be_made_is_one_line(args, capsys, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("GATE_EXPLORER_DB", str(tmp_path / "a-file" / "runs.sqlite"))
    fails(capsys, *args, words="cannot create the folder for the run store")


def test_a_locked_store_is_one_line_after_a_short_wait(capsys, tmp_path, store_path, monkeypatch):
    run_id = saved_run(capsys, tmp_path)["run_id"]
    monkeypatch.setattr(cli, "STORE_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for args in (("runs", "--json"), ("runs", "delete", run_id), ("train", *SMALL, "--save")):
            fails(capsys, *args, words="locked")
    finally:
        holder.rollback()
        holder.close()
    assert [r["id"] for r in json.loads(run(capsys, "runs", "--json"))] == [run_id]


def test_export_into_a_folder_that_cannot_be_written_is_one_line(capsys, tmp_path):
    run_id = saved_run(capsys, tmp_path)["run_id"]
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    # Tests run as root, whom permissions do not stop: a folder can be made neither where
    # a file is, nor under one.
    fails(capsys, "runs", "export", run_id, "--out", a_file, words=f"{a_file} is not a folder")
    fails(capsys, "runs", "export", run_id, "--out", a_file / "sub", words="cannot write into")
    fails(capsys, "runs", "export", run_id, "--out", "/dev/null", words="/dev/null is not a folder")


def test_export_keeps_files_already_there_unless_forced(capsys, tmp_path):
    run_id = saved_run(capsys, tmp_path)["run_id"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.csv").write_text("mine")
    fails(capsys, "runs", "export", run_id, "--format", "csv", "--out", out,
          words="already holds metrics.csv: they are not overwritten (add --force")
    assert (out / "metrics.csv").read_text() == "mine" and not (out / "traces.csv").exists()
    run(capsys, "runs", "export", run_id, "--format", "csv", "--out", out, "--force")
    assert (out / "metrics.csv").read_text().startswith("step,") and (out / "traces.csv").exists()


@pytest.mark.slow
def test_runs_json_as_a_process(capsys, tmp_path, store_path):
    run_id = saved_run(capsys, tmp_path)["run_id"]
    done = explorer("runs", "--json")
    assert done.returncode == 0 and done.stderr == ""
    assert [r["id"] for r in json.loads(done.stdout)] == [run_id]
    store_path.write_bytes(b"not SQLite" * 100)
    done = explorer("runs", "--json")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error:") and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
