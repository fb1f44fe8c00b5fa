"""One thread policy (explorer/threads.py): a run takes one torch thread unless its user chose
otherwise: --threads wins, then OMP_NUM_THREADS; a library run leaves a count its caller set.

Each case runs in a fresh interpreter: torch's count is per process, and what it is at import
is part of the rule."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.admission import cores, threads_per_run

ROOT = Path(__file__).resolve().parents[1]
TRAINER = "from explorer import Config, Trainer; Trainer(Config(steps=1, hidden=4, seq_len=5, batch_size=2))"


def _python(code: str, omp: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.slow
def test_a_trainer_takes_one_thread_where_nobody_chose():
    # torch's own default is one per core (2 here); the run takes one.
    assert _python(f"import torch, explorer; {TRAINER}; print(torch.get_num_threads())") == "1"


@pytest.mark.parametrize("chosen", ["omp", "caller"])
@pytest.mark.slow
def test_a_trainer_leaves_a_count_its_user_chose(chosen):
    # torch reads OMP_NUM_THREADS at start (at most one per core: 2 here, torch's own default too,
    # so only the rule tells the library to keep it); the library must not undo either choice.
    if chosen == "omp":
        out = _python(f"import torch, explorer; {TRAINER}; print(torch.get_num_threads())", omp="2")
        assert out == "2"
    else:                     # a notebook's own choice, made after importing explorer
        out = _python(f"import torch, explorer; torch.set_num_threads(3); {TRAINER}; print(torch.get_num_threads())")
        assert out == "3"


@pytest.mark.parametrize("omp, flag, expected", [(None, None, 1), ("2", None, 2), ("2", "3", 3), (None, "3", 3)])
@pytest.mark.slow
def test_train_uses_threads_then_omp_then_one(omp, flag, expected, tmp_path):
    args = ["train", "--steps", "2", "--hidden", "4", "--seq-len", "5", "--quiet", "--json", str(tmp_path / "r.json")]
    if flag:
        args += ["--threads", flag]
    _python(f"import sys; from explorer.__main__ import main; sys.exit(main({args!r}))", omp=omp)
    assert json.loads((tmp_path / "r.json").read_text())["threads"] == expected


def test_threads_below_one_is_refused_with_one_line():
    done = subprocess.run([sys.executable, "-m", "explorer", "train", "--threads", "0", "--steps", "2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == "error: --threads must be at least 1\n"


def test_the_apps_share_of_the_cores_gives_way_to_omp_num_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_per_run(1) == cores() and threads_per_run(cores()) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_run(1) == threads_per_run(cores()) == 3
