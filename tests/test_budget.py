"""The memory budget: a run's peak memory estimated from its settings, and refused by Config (so by
the sidebar, the URL and the CLI alike) when it is over GATE_EXPLORER_MAX_RUN_MB. The estimate
against measured memory is tests/memory_bench.py's job: it takes minutes."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import explorer.__main__ as cli
from explorer import Config, Trainer
from explorer.budget import COSTS, DEFAULT_MAX_RUN_MB, MAX_RUN_ENV, MB, PARTS, estimate, max_run_mb
from explorer.cells import CELLS
from explorer.lessons import LESSONS
from explorer.tasks import TASKS, task_for

ROOT = Path(__file__).resolve().parents[1]
# The example: today its first training step asks for one 32 GB allocation.
HUGE = dict(seq_len=1000, hidden=512, layers=4, batch_size=1024, probe_count=1)
HUGE_ARGS = ("--seq-len", "1000", "--hidden", "512", "--layers", "4", "--batch-size", "1024", "--probe-count", "1")


@pytest.fixture(autouse=True)
def default_budget(monkeypatch):
    monkeypatch.delenv(MAX_RUN_ENV, raising=False)


def test_the_32_gb_run_is_refused_with_an_estimate_its_biggest_part_and_what_to_lower():
    with pytest.raises(ValueError) as refused:
        Config(**HUGE)
    message = str(refused.value)
    assert "estimated" in message and "GB" in message and f"{DEFAULT_MAX_RUN_MB:g} MB" in message
    assert MAX_RUN_ENV in message
    assert PARTS["activations"][0] in message and "lower batch_size, seq_len, hidden or layers" in message


def test_the_refusal_names_whichever_part_is_biggest():
    # One sequence at a time: the 256 held-out sequences of the periodic eval outweigh training.
    with pytest.raises(ValueError, match="held-out evaluation .*: lower seq_len, hidden or layers"):
        Config(batch_size=1, seq_len=1000, hidden=512, layers=4, probe_count=1)
    assert estimate(Config(batch_size=1, seq_len=1000, hidden=512, layers=1, probe_count=1)).biggest == "eval"


def test_the_environment_raises_and_lowers_the_limit(monkeypatch):
    monkeypatch.setenv(MAX_RUN_ENV, "200000")
    assert Config(**HUGE).batch_size == 1024            # admitted: nothing is allocated until it trains
    monkeypatch.setenv(MAX_RUN_ENV, "100")
    with pytest.raises(ValueError, match=r"over this server's 100 MB per run"):
        Config()


@pytest.mark.parametrize("value", ["lots", "", "-5", "0", "nan", "inf"])
def test_an_invalid_limit_falls_back_to_the_default(monkeypatch, value):
    monkeypatch.setenv(MAX_RUN_ENV, value)
    assert max_run_mb() == DEFAULT_MAX_RUN_MB


def test_the_default_config_and_every_lesson_fit_the_default_budget():
    configs = [Config()] + [variant.config for lesson in LESSONS for variant in lesson.variants]
    for config in configs:
        assert estimate(config).total <= DEFAULT_MAX_RUN_MB * MB, config


def test_a_link_is_checked_as_a_whole():
    # pages/link.py and pages/sidebar.py build their Config with from_dict, from strings.
    with pytest.raises(ValueError, match="estimated"):
        Config.from_dict({name: str(value) for name, value in HUGE.items()})
    assert Config.from_dict({"seq_len": "1000"}).seq_len == 1000      # each setting alone fits


@pytest.mark.parametrize("field,small,large", [("batch_size", 8, 16), ("seq_len", 50, 100),
                                               ("hidden", 32, 64), ("layers", 1, 2)])
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("task", ["adding", "text"])
def test_the_estimate_grows_with_each_size(field, small, large, cell, task):
    base = Config(task=task, cell=cell)
    smaller, larger = (estimate(dataclasses.replace(base, **{field: n})) for n in (small, large))
    assert larger.total > smaller.total
    assert larger.activations > smaller.activations


def test_every_cell_has_measured_costs():
    assert set(COSTS) == set(CELLS)


def test_adam_costs_more_than_sgd():
    assert estimate(Config(optimizer="adam")).parameters > estimate(Config(optimizer="sgd")).parameters


@pytest.mark.parametrize("task", [name for name, spec in TASKS.items() if spec.trainable and name != "csv"])
def test_a_tasks_sizes_are_its_built_tasks_without_building_it(task):
    config = Config(task=task, seq_len=20, text="def f(x):\n    return x + 1\n" * 20)
    sizes, built = TASKS[task].sizes(config), task_for(config)
    assert (sizes.seq_len, sizes.input_size, sizes.output_size, sizes.output_mode) == \
        (built.seq_len, built.input_size, built.output_size, built.output_mode)


def test_the_stdlib_corpus_is_counted_with_every_character_text_keeps():
    sizes, built = TASKS["text"].sizes(Config(task="text")), task_for(Config(task="text"))
    assert sizes.input_size >= built.input_size and sizes.heldout >= len(built.heldout(10**6, 0)[0])


def test_a_csv_counts_the_columns_its_header_names(tmp_path):
    path = tmp_path / "weather.csv"
    path.write_text("day,rain,wind,temperature\n" + "".join(f"{i},{i % 3},{i % 5},{i % 7}\n" for i in range(100)))
    config = Config(task="csv", csv_path=str(path), seq_len=10)
    assert TASKS["csv"].sizes(config).input_size >= task_for(config).input_size == 4
    chosen = Config(task="csv", csv_path=str(path), csv_columns="rain", csv_target="wind", seq_len=10)
    assert TASKS["csv"].sizes(chosen).input_size >= task_for(chosen).input_size == 2
    assert TASKS["csv"].sizes(Config(task="csv", csv_path=str(tmp_path / "missing.csv"))).input_size == 1


def test_the_cli_refuses_the_32_gb_run_in_one_line():
    done = subprocess.run([sys.executable, "-m", "explorer", "train", *HUGE_ARGS], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: this run needs an estimated")


def test_the_cli_refuses_before_anything_is_built(monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("a Trainer was built for a refused run")
    monkeypatch.setattr(cli, "Trainer", never)
    assert cli.main(["train", *HUGE_ARGS]) == 2
    assert capsys.readouterr().err.startswith("error: this run needs an estimated")


@pytest.mark.parametrize("error", [RuntimeError("boom\nat a place in the kernel"), MemoryError(),
                                   torch.OutOfMemoryError("out of memory")])
def test_a_failure_while_training_is_one_line_and_status_2(monkeypatch, capsys, error):
    def fail(self):
        raise error
    monkeypatch.setattr(Trainer, "step", fail)
    assert cli.main(["train", "--steps", "3", "--hidden", "4", "--seq-len", "5", "--device", "cpu", "--quiet"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    expected = str(error).splitlines()[0] if str(error) else type(error).__name__
    assert lines == [f"error: training stopped at step 0: {expected}"] and captured.out == ""


def test_evaluating_many_sequences_in_parts_equals_evaluating_them_at_once():
    trainer = Trainer(Config(task="brackets", seq_len=10, hidden=8, device="cpu"))
    x, y = trainer.task.heldout(600, seed=1)                       # three parts of at most 256
    with torch.no_grad():
        output = trainer.model.eval()(x)
        whole = trainer.task.loss(output, y).item(), trainer.task.metric(output, y)
    assert trainer.evaluate(x, y) == pytest.approx(whole, rel=1e-6)
