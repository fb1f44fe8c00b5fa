"""Feedback that matches the state (issue 32): a finished run trains on for more steps, a
queued run's note tells its place as explorer.admission numbers it and whom it waits for, and a
run reopened from the store still says how it ended."""
import time

import pytest
import torch

from explorer.admission import Admission
from explorer.config import FIELDS, Config
from explorer.run import Run, Status
from explorer.store import RunStore
from pages.session import Session, ended_note, siblings_training, waiting_note

TINY = dict(task="adding", seq_len=12, hidden=8, batch_size=8, probe_every=5, eval_every=5, probe_count=2)
# The clipping lesson's unclipped run: plain SGD at lr 0.6 on a tanh RNN diverges within ~20 steps.
DIVERGES = dict(task="series", series="sine", seq_len=50, cell="rnn", hidden=32, batch_size=32,
                optimizer="sgd", lr=0.6, steps=100, eval_every=25, probe_every=100)


def trained(run: Run) -> Run:
    run.start()
    deadline = time.monotonic() + 60
    while not run.snapshot().ended:
        assert time.monotonic() < deadline, "the run never ended"
        time.sleep(0.05)
    run.join(10)
    return run


def test_a_finished_run_extended_trains_on_exactly_as_a_longer_run_would():
    """Extending a finished 6-step run by 4 ends where a 10-step run of the same seed ends: the
    same weights (same batches, same optimiser state), and a record of steps 1-10."""
    run = trained(Run(Config(**TINY, steps=6)))
    assert run.status == Status.FINISHED
    run.extend(4)
    assert run.status == Status.PAUSED and run.snapshot().total_steps == 10 and not run.trainer.finished
    trained(run)
    straight = trained(Run(Config(**TINY, steps=10)))
    assert run.status == Status.FINISHED and run.snapshot().step == 10
    assert run.trainer.history.view().steps["step"].tolist() == list(range(1, 11))
    for (name, extended), (_, reference) in zip(run.trainer.model.state_dict().items(),
                                                straight.trainer.model.state_dict().items()):
        torch.testing.assert_close(extended, reference, rtol=0, atol=0, msg=name)


def test_only_a_finished_run_is_extended_and_never_past_what_config_allows():
    idle = Run(Config(**TINY, steps=6))
    with pytest.raises(ValueError, match="only a finished run trains on for more steps; this one is idle"):
        idle.extend(5)
    run = trained(Run(Config(**TINY, steps=6)))
    with pytest.raises(ValueError, match="steps must be between 1 and 200000"):
        run.extend(int(FIELDS["steps"].hi))
    assert run.status == Status.FINISHED and run.trainer.config.steps == 6      # nothing changed


def test_the_first_queued_run_is_next_in_line_and_the_others_count_the_runs_ahead():
    places = Admission(slots=1)
    holders = [object() for _ in range(4)]
    assert [places.ask(who) for who in holders] == [0, 1, 2, 3]        # admitted, then 1 = next
    notes = [waiting_note(places.place(who), places.slots) for who in holders[1:]]
    assert notes[0].startswith("Waiting: next in line. This server trains 1 run at a time")
    assert notes[1].startswith("Waiting: 1 run ahead in line.")
    assert notes[2].startswith("Waiting: 2 runs ahead in line.")
    assert not any("0 runs" in note for note in notes)
    places.leave(holders[0])                                            # the next one takes the place
    assert places.place(holders[1]) == 0
    assert waiting_note(places.place(holders[2]), places.slots).startswith("Waiting: next in line.")


def test_a_variant_queued_behind_its_own_lesson_says_it_waits_for_them():
    """Three variants on a server of two places: the third waits for the other two, and says so;
    with a stranger's run in one place, it names the one sibling in the other."""
    config = Config(**TINY, steps=6)
    places = Admission(slots=2)
    where = Session()
    where.lesson_runs = {label: Run(config, admission=places) for label in ("tanh RNN", "LSTM", "GRU")}
    for run in where.lesson_runs.values():
        places.ask(run)
    gru = where.lesson_runs["GRU"]
    assert siblings_training(where, gru) == ["tanh RNN", "LSTM"]
    assert waiting_note(places.place(gru), places.slots, siblings_training(where, gru)) == (
        "Waiting: next in line. This server trains 2 runs at a time, and this lesson's tanh RNN and LSTM are "
        "training in them now: this variant starts by itself as soon as a place frees up.")

    shared = Admission(slots=2)
    where.lesson_runs = {label: Run(config, admission=shared) for label in ("forget bias 0", "forget bias 1")}
    stranger = object()
    shared.ask(stranger)
    for run in where.lesson_runs.values():
        shared.ask(run)
    second = where.lesson_runs["forget bias 1"]
    assert siblings_training(where, second) == ["forget bias 0"]
    assert "this lesson's forget bias 0 is training in 1 of them now" in waiting_note(
        shared.place(second), shared.slots, siblings_training(where, second))
    assert siblings_training(where, where.lesson_runs["forget bias 0"]) == []    # it holds a place itself


def test_a_run_reopened_from_the_store_says_how_it_ended(tmp_path):
    """A reopened run has no message of its own: its page still says it finished (with its
    step count) or why it diverged, never nothing."""
    store = RunStore(tmp_path / "runs.sqlite")
    finished = trained(Run(Config(**TINY, steps=10), store=store))
    diverged = trained(Run(Config(**DIVERGES), store=store))
    assert diverged.status == Status.DIVERGED
    said = diverged.snapshot().message
    assert "diverged" in said.lower()
    again = Run.open(store, finished.id, finished.owner_key)
    snap = again.snapshot()
    assert snap.status == Status.FINISHED and snap.message == ""
    assert ended_note(snap, again.trainer) == "Finished 10 steps."
    again = Run.open(store, diverged.id, diverged.owner_key)
    snap = again.snapshot()
    assert snap.status == Status.DIVERGED and snap.message == ""
    assert ended_note(snap, again.trainer) == said
