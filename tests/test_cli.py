"""The CLI as a user runs it: a real `python -m explorer` process."""
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from explorer.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def explorer(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "explorer", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


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


def test_same_seed_gives_the_same_result():
    args = ("train", "--task", "brackets", "--seq-len", "10", "--hidden", "8", "--steps", "10",
            "--seed", "5", "--quiet")
    first, second = json.loads(explorer(*args).stdout), json.loads(explorer(*args).stdout)
    assert first["eval_loss"] == second["eval_loss"]


def test_divergence_is_reported_not_raised():
    done = explorer("train", "--cell", "rnn-relu", "--seq-len", "30", "--hidden", "64", "--optimizer", "sgd",
                    "--lr", "10", "--steps", "50", "--batch-size", "16", "--quiet")
    assert done.returncode == 0
    result = json.loads(done.stdout)
    assert result["diverged"] is True and result["steps"] < 50
    assert "diverged" in done.stderr


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


def test_text_file_option_trains_on_that_text(tmp_path):
    text = tmp_path / "poem.txt"
    text.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    done = explorer("train", "--task", "text", "--text-file", str(text), "--seq-len", "16", "--hidden", "8",
                    "--steps", "5", "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["config"]["text"].startswith("the cat sat")


def test_bench_reports_the_three_loops_side_by_side():
    done = explorer("bench", "--steps", "4", "--chunk", "2")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for key in ("bare_steps_per_s", "trainer_steps_per_s", "hand_written_steps_per_s"):
        assert result[key] > 0
    assert result["trainer_over_bare"] == pytest.approx(result["trainer_steps_per_s"] / result["bare_steps_per_s"])
    assert result["probe_in_bare_steps"] == pytest.approx(result["probe_seconds"] / result["bare_step_seconds"])


def test_app_becomes_streamlit_with_the_checkout_s_settings_then_the_user_s_flags(monkeypatch):
    started = []

    def execv(path, argv):
        started.append(argv)
        raise SystemExit(0)        # as if the process had become Streamlit

    monkeypatch.setattr(os, "execv", execv)
    with pytest.raises(SystemExit):
        main(["app", "--server.port", "8600"])
    (argv,) = started
    assert argv[:4] == [sys.executable, "-m", "streamlit", "run"] and Path(argv[4]) == ROOT / "app.py"
    flags = dict(zip(argv[5::2], argv[6::2]))
    # An installed app does not read .streamlit/config.toml: every setting in it must be a flag.
    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    for section, values in settings.items():
        for name, value in values.items():
            assert flags.get(f"--{section}.{name}") == str(value).lower(), f"{section}.{name}"
    assert flags["--server.headless"] == "true"
    assert argv[-2:] == ["--server.port", "8600"]   # last, so the user's flags win
