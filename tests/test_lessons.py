"""Every lesson makes its point: each variant trains for its config.steps steps (one torch
thread, as the app runs), and the lesson's check must find its claim holds on the real numbers,
on the lesson's own seed and on two others (OTHER_SEEDS, named in docs/LESSONS.md).

docs/LESSONS.md has each lesson's record over seeds 0-9 with two kernel sets (tests/lessons_table.py
makes it), the spread of its numbers and what changed to get there; each lesson's `held` must be
that table's. On its own seed (0), measured on the 2-core development machine (AMD EPYC,
AVX-512, torch 2.13.0 CPU, one thread):

  vanishing    tanh RNN / LSTM / GRU, adding T=100, 2500 steps: held-out MSE 0.180 / 0.0002 / 0.0000
               (LSTM first below 0.05 at step 1000, GRU at 200); ‖∂L/∂h_99‖ / ‖∂L/∂h_0‖ at step 2500:
               ∞ (underflow) / 136 / 13.
  forget-bias  LSTM bias 0 / 1, adding T=30, momentum SGD, 2500 steps: first below half the baseline
               at step 2025 / 1325; untrained, ‖∂L/∂h_29‖ / ‖∂L/∂h_0‖ 2.5e7 / 3.3e3.
  clipping     tanh RNN, sine series, SGD lr 0.6, 500 steps: unclipped diverges at step 17; clip 1
               trains to MSE 0.030 (baseline 0.086).
  tutorial-digits  3 x LSTM(50) on the 8x8 digits, 400 steps: held-out accuracy 91.0%.
  counting     LSTM(16) on 40 brackets, 1000 steps: a unit's h_t follows the depth at |r| > 0.9.
  forget-gate  the same LSTM; from t = 20 on, 100% as trained, 47-54% with every forget gate shut at
               t = 20 alone, 98-99% with it held open.
  learning-in-time  the vanishing lesson's tanh RNN and LSTM: the first marker's share of the LSTM's
               input-gate gradient 2.7e-6 untrained -> 12.9% trained; the tanh RNN's stays under 1e-20.
  gru-vs-lstm  LSTM / GRU / CIFG (64) on Python source, 500 steps: held-out CE 2.052 / 1.897 / 2.092
               nats (unigram 3.117).

Time: this file trains each lesson on seed 0 in this process (a config two lessons share once),
then every (lesson, other seed) pair two at a time in processes of their own: about 4 minutes
on two cores (the own seeds 100 s, the other seeds 140 s).
"""
import re
import time
from pathlib import Path

import pytest
import torch

from explorer.config import Config
from explorer.lesson_seeds import judge_pairs, train_variants
from explorer.lessons import LESSONS, SWEEP_LESSONS, Lesson, Variant, lesson
from explorer.trainer import Trainer

KEYS = ("vanishing", "forget-bias", "clipping", "tutorial-digits", "counting", "forget-gate", "learning-in-time",
        "gru-vs-lstm")
URL_SAFE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_TRAINED: dict[str, dict[str, Trainer]] = {}
_BY_CONFIG: dict[str, Trainer] = {}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread per process, as the app sets on a 2-core machine: the seeds' curves
    are the ones measured only then (intra-op threads change the float sums)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def trained(key: str) -> dict[str, Trainer]:
    """Each variant of the lesson trained to its last step (or its divergence), once per session;
    a config two lessons share (learning-in-time's are vanishing's) is trained once."""
    if key not in _TRAINED:
        item = lesson(key)
        _TRAINED[key] = train_variants(item, item.variants[0].config.seed, _BY_CONFIG)
    return _TRAINED[key]


# --- structure ---------------------------------------------------------------------------------

def test_the_six_lessons_in_order():
    assert tuple(item.key for item in LESSONS) == KEYS
    assert all(isinstance(item, Lesson) for item in LESSONS)


@pytest.mark.parametrize("item", LESSONS, ids=lambda item: item.key)
def test_lesson_is_well_formed(item):
    assert URL_SAFE.match(item.key), item.key
    assert 1 <= len(item.variants) <= 3
    labels = [v.label for v in item.variants]
    assert len(set(labels)) == len(labels), labels
    for text in (item.title, item.press, item.look, item.expect, item.source, *labels):
        assert isinstance(text, str) and text.strip()
    assert callable(item.check)
    for variant in item.variants:
        assert isinstance(variant, Variant) and isinstance(variant.config, Config)
        config = variant.config
        assert config == Config.from_dict(config.to_dict())        # a valid, serialisable config
        assert config.device == "cpu"          # the claims were measured there
        # a budget of its own that trains within a minute, and the last step is evaluated and probed
        assert 100 <= config.steps <= 3000
        assert config.steps % config.eval_every == 0 and config.steps % config.probe_every == 0
    # a lesson compares like with like: one budget and one seed for all its variants
    assert len({v.config.steps for v in item.variants}) == 1
    assert len({v.config.seed for v in item.variants}) == 1


def test_keys_are_unique_and_lookup_names_the_known_ones():
    assert len({item.key for item in LESSONS}) == len(LESSONS)
    for item in LESSONS:
        assert lesson(item.key) is item
    assert lesson("seed-digits") is lesson("tutorial-digits")        # a former key, kept for old links
    with pytest.raises(ValueError, match="unknown lesson 'nope'; known lessons: vanishing, forget-bias, "
                                         "clipping, tutorial-digits, counting, forget-gate, "
                                         "learning-in-time, gru-vs-lstm"):
        lesson("nope")


def test_check_wants_every_variant_and_numbers_to_judge():
    item = lesson("counting")
    with pytest.raises(ValueError, match="needs a Trainer for each of LSTM"):
        item.check({})
    untrained = Trainer(item.variants[0].config)          # probed at step 0, never evaluated
    holds, why = item.check({"LSTM": untrained})
    assert not holds and "no held-out loss recorded yet" in why


# --- the claims -------------------------------------------------------------------------------

@pytest.mark.parametrize("key", KEYS)
@pytest.mark.slow
def test_lesson_claim_holds(key):
    started = time.perf_counter()
    trainers = trained(key)
    seconds = time.perf_counter() - started
    for label, trainer in trainers.items():
        assert trainer.finished or trainer.diverged, label
    holds, why = lesson(key).check(trainers)
    print(f"\n{key}: trained in {seconds:.1f} s; {why}")
    assert holds, why
    assert why and "\n" not in why


# Two seeds other than each lesson's own (docs/LESSONS.md names them): a claim that holds on
# the lesson's seed by luck, or on this machine's rounding only, fails here, not in a classroom.
OTHER_SEEDS = (3, 7)


@pytest.fixture(scope="module")
def on_other_seeds() -> dict:
    """Every lesson judged on OTHER_SEEDS, two (lesson, seed) pairs at a time in processes of
    their own, as `python -m explorer lesson KEY --seeds 3,7` judges them."""
    pairs = [(key, seed) for key in KEYS for seed in OTHER_SEEDS]
    return dict(zip(pairs, judge_pairs(pairs, workers=2)))


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.slow
def test_lesson_claim_holds_on_two_seeds_other_than_its_own(key, on_other_seeds):
    assert lesson(key).variants[0].config.seed not in OTHER_SEEDS
    for seed in OTHER_SEEDS:
        verdict = on_other_seeds[key, seed]
        print(f"\n{key}, seed {seed}: {verdict.seconds:.1f} s; {verdict.message}")
        assert verdict.seed == seed and verdict.holds, f"seed {seed}: {verdict.message}"


def test_each_lesson_says_how_often_its_claim_held_as_docs_lessons_md_records_it():
    """A lesson's page states its record over seeds 0-9 (Lesson.held); it must be the table's,
    at least 9 of 10 with either kernel set, and the table names the seeds CI checks."""
    table = (Path(__file__).resolve().parents[1] / "docs" / "LESSONS.md").read_text()
    for item in (*LESSONS, *SWEEP_LESSONS):
        row = re.search(rf"^\| `{item.key}` \| (\d+) of 10[^|]*\| (\d+) of 10", table, re.M)
        assert row, f"docs/LESSONS.md has no row for {item.key}"
        assert item.held == (int(row[1]), int(row[2])), item.key
        assert min(item.held) >= 9, item.key
        assert f"{item.held[0]} of 10" in item.how_often
    assert f"seeds {OTHER_SEEDS[0]} and {OTHER_SEEDS[1]}" in table


def test_each_lesson_states_the_seconds_docs_lessons_md_measured():
    """A lesson's page says how long it took on 2 cores, not a promise: idle (its variants one
    after another) and busy (as the app trains them), both the table's measured seconds."""
    table = (Path(__file__).resolve().parents[1] / "docs" / "LESSONS.md").read_text()
    for item in LESSONS:
        row = re.search(rf"^\| `{item.key}` \|[^|]*\|[^|]*\| (\d+) \| (\d+) \|$", table, re.M)
        assert row, f"docs/LESSONS.md has no seconds for {item.key}"
        idle, busy = int(row[1]), int(row[2])
        assert item.seconds_2_cores == (idle, busy), item.key
        assert f"({idle} s measured" in item.how_long and f"({busy} s) on 2 busy ones" in item.how_long


def test_the_forget_gate_claim_needs_a_model_that_counts():
    """Untrained, the LSTM has no count to lose: shutting its forget gate cannot cost 30 points."""
    untrained = Trainer(lesson("forget-gate").variants[0].config)
    holds, why = lesson("forget-gate").check({"LSTM": untrained})
    assert not holds and "with every forget gate shut (f = 0) at t = 20 alone" in why


@pytest.mark.slow
def test_the_learning_in_time_claim_needs_a_trained_lstm():
    """Barely trained (50 steps), the LSTM's first marker gives its weights next to nothing."""
    item = lesson("learning-in-time")
    barely = {}
    for variant in item.variants:
        barely[variant.label] = Trainer(variant.config)
        for _ in range(50):
            barely[variant.label].step()
    holds, why = item.check(barely)
    assert not holds and "LSTM input-gate block" in why


@pytest.mark.slow
def test_checks_can_fail():
    """The checks are not vacuous: with the variants' labels swapped, the claims no longer hold."""
    runs = trained("vanishing")
    swapped = {"tanh RNN": runs["GRU"], "LSTM": runs["LSTM"], "GRU": runs["tanh RNN"]}
    assert not lesson("vanishing").check(swapped)[0]
    runs = trained("forget-bias")
    assert not lesson("forget-bias").check({"forget bias 0": runs["forget bias 1"],
                                            "forget bias 1": runs["forget bias 0"]})[0]
    runs = trained("clipping")
    assert not lesson("clipping").check({"no clipping": runs["clip 1"], "clip 1": runs["no clipping"]})[0]


@pytest.mark.slow
def test_the_forget_gate_lesson_names_the_accuracy_its_what_if_panel_shows():
    """The Gates page's what-if panel (pages/whatif.py) prints accuracy over every step of the
    probe sequences, not the check's held-out steps after the clamp: the lesson's text gives the
    panel's range too, and on the lesson's own seed the panel's number is in it."""
    import json

    from explorer.whatif import compare

    item = lesson("forget-gate")
    trainer = trained("forget-gate")["LSTM"]
    x, y = trainer.probe_set
    result = compare(trainer.model, trainer.task, x, y, json.loads(item.what_if))   # the clamp Explore opens
    shown = float(result.correct["clamped"].mean())
    assert f"accuracy 100.0% → {shown:.1%}" in result.summary()          # what the panel prints
    assert 0.65 <= shown <= 0.90 and "to 65–90% over the 8 sequences" in item.expect
