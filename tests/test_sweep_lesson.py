"""The sweep lesson "Which cell holds out longest?": its claim checked on real runs. CI runs the
lesson's settings on its shortest and longest lengths with seed 0 (6 runs, about 30-60 s on two
cores); the full grid's numbers (36 runs) are in the closing note of issue 14 and
docs/SWEEPS.md."""
import time

from explorer.lessons import HOLDS_OUT, SWEEP_LESSONS
from explorer.store import RunStore
from explorer.sweep import sweep


def test_the_lesson_grid_is_cells_by_lengths_by_seeds_with_its_settings():
    configs = HOLDS_OUT.configs()
    assert len(configs) == 3 * 4 * 3 and [lesson.key for lesson in SWEEP_LESSONS] == ["holds-out-longest"]
    assert {(c.task, c.lr, c.steps, c.hidden) for c in configs} == {("adding", 0.02, 1500, 32)}
    assert HOLDS_OUT.is_its_sweep([c.to_dict() for c in configs])
    assert not HOLDS_OUT.is_its_sweep([c.to_dict() for c in HOLDS_OUT.configs(lengths=(10, 100), seeds=1)])


def test_the_sweep_lessons_claim_holds_and_its_check_can_fail(tmp_path):
    started = time.perf_counter()
    frame = sweep(HOLDS_OUT.configs(lengths=(10, 100), seeds=1), store=RunStore(tmp_path / "runs.sqlite"), workers=2)
    holds, why = HOLDS_OUT.check(frame)
    print(f"\nholds-out-longest, T = 10 and 100, seed 0: {time.perf_counter() - started:.1f} s; {why}")
    assert holds, why
    # Not vacuous: with the tanh RNN's rows and the GRU's swapped, the claim no longer holds.
    swapped = frame.assign(cell=frame["cell"].map({"rnn": "gru", "gru": "rnn", "lstm": "lstm"}))
    assert not HOLDS_OUT.check(swapped)[0]
    # Nor does it when the tanh RNN did not solve the short sequences either.
    short_failed = frame.copy()
    short_failed.loc[(frame["cell"] == "rnn") & (frame["seq_len"] == 10), "eval_loss"] = frame["baseline_loss"].iloc[0]
    assert not HOLDS_OUT.check(short_failed)[0]
    assert not HOLDS_OUT.check(frame.iloc[0:0])[0]
