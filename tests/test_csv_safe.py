"""CSV exports are safe to open in a spreadsheet: a text cell or header that starts a formula
(=, +, -, @, tab, CR) is written with a leading ', as OWASP advises, at every place the project
writes CSV; numbers, negative ones included, read back as the same numbers."""
import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from explorer import Config, Trainer, analysis, csvsafe, diagram, trace
from explorer.store import RunStore, new_key
from explorer.whatif import compare

ROOT = Path(__file__).resolve().parents[1]
FORMULAS = ["=1+1", "+1", "-0.5", "@SUM(1)", "\tcmd", "\rcmd"]
SMALL = dict(task="adding", seq_len=8, hidden=4, batch_size=4, probe_every=2, eval_every=2, probe_count=3,
             steps=4, seed=1, device="cpu")


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def assert_no_formula(text: str) -> None:
    """Every cell a spreadsheet would run as a formula is a plain negative number."""
    for row in cells(text):
        for cell in row:
            if cell.startswith(csvsafe.TRIGGERS):
                float(cell)         # ValueError: text that a spreadsheet would take for a formula


def assert_numbers_kept(frame: pd.DataFrame) -> None:
    """The safe CSV of a frame with no formula text reads back as pandas' own CSV of it does."""
    safe = csvsafe.to_csv(frame)
    assert_no_formula(safe)
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(safe)), pd.read_csv(io.StringIO(frame.to_csv(index=False))))


def test_formula_text_gets_a_quote_and_numbers_stay_numbers(tmp_path):
    frame = pd.DataFrame({
        "=total": [*FORMULAS, "plain", np.nan],
        "-x": [-1.5, 2.0, np.nan, 0.0, 1.0, 1.0, 1.0, -0.0],
        "@n": np.arange(-3, 5),
        "mixed": pd.Series(["=A1", -2, None, "ok", "a", "b", "c", "d"], dtype=object),
        "kind": pd.Categorical(["=k", "k"] * 4),
    })
    kept = frame.copy()
    text = csvsafe.to_csv(frame)
    assert cells(text)[0] == ["'=total", "'-x", "'@n", "mixed", "kind"]
    back = pd.read_csv(io.StringIO(text))
    assert list(back["'=total"].iloc[:7]) == [f"'{f}" for f in FORMULAS] + ["plain"] and pd.isna(back["'=total"].iloc[7])
    np.testing.assert_array_equal(back["'-x"], frame["-x"])              # NaN and -1.5 as they were
    assert back["'@n"].dtype == np.int64 and list(back["'@n"]) == list(range(-3, 5))
    assert [row[3] for row in cells(text)[1:3]] == ["'=A1", "-2"]         # a number in a text column: a number
    assert [row[4] for row in cells(text)[1:3]] == ["'=k", "k"]
    pd.testing.assert_frame_equal(frame, kept)                            # the caller's frame is not changed
    assert csvsafe.to_csv(frame, tmp_path / "out.csv") is None
    assert (tmp_path / "out.csv").read_bytes().decode() == text


@pytest.mark.slow
def test_a_sweep_of_a_csv_task_writes_its_formula_column_names_escaped(tmp_path):
    """The issue's case: a CSV whose columns are named as formulas, swept from the CLI with
    --out rows.csv (7-13 s here: a subprocess that imports torch and trains one tiny run)."""
    columns = ["=cmd|' /C calc'!A0", "@SUM(1+1)"]
    t = np.arange(60)
    pd.DataFrame({columns[0]: np.sin(t / 5), columns[1]: np.cos(t / 7) - 0.5}).to_csv(tmp_path / "f.csv", index=False)
    out = tmp_path / "rows.csv"
    done = subprocess.run(
        [sys.executable, "-m", "explorer", "sweep", "--grid", "seed=0", "--task", "csv",
         "--csv-path", str(tmp_path / "f.csv"), f"--csv-columns={','.join(columns)}", f"--csv-target={columns[1]}",
         "--seq-len", "5", "--steps", "4", "--eval-every", "2", "--hidden", "4", "--workers", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "GATE_EXPLORER_DB": str(tmp_path / "runs.sqlite")})
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert_no_formula(text)
    row = pd.read_csv(out).iloc[0]
    assert row["csv_columns"] == "'" + ",".join(columns) and row["csv_target"] == "'@SUM(1+1)"
    assert row["status"] == "finished" and row["steps"] == 4 and np.isfinite(row["eval_loss"])


def test_a_runs_csv_export_changes_no_number(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    trainer = Trainer(Config(**SMALL))
    for _ in range(SMALL["steps"]):
        trainer.step()
    store.save("r", trainer, owner_key=new_key(), name='=HYPERLINK("http://example.com","x")')
    metrics, traces = store.export("r", "csv", tmp_path / "out")
    for path, frame in ((metrics, store.metrics_frame("r")), (traces, store.traces_frame("r"))):
        assert_no_formula(path.read_text())
        pd.testing.assert_frame_equal(pd.read_csv(path), pd.read_csv(io.StringIO(frame.to_csv(index=False))))
    assert (store.traces_frame("r")["value"] < 0).any()          # negative numbers were among them


def test_the_whatif_diagram_and_weight_share_downloads_keep_their_numbers():
    trainer = Trainer(Config(**SMALL))
    for _ in range(SMALL["steps"]):
        trainer.step()
    x, y = trainer.probe_set
    assert_numbers_kept(compare(trainer.model, trainer.task, x, y, {"forget": 0.0}).frame(trainer.task, y, 0, 0))
    assert_numbers_kept(analysis.weight_share_frame(trainer.history.view().traces, 0, 0))
    torch.manual_seed(0)
    table = diagram.frame(trace(nn.LSTM(2, 3, batch_first=True), torch.randn(2, 6, 2)), 1, 0, 2)
    assert (table["hidden"] < 0).any()
    assert_numbers_kept(table)
