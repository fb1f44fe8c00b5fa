"""`python -m explorer lesson`: its contract, as a user runs it (a real process), on the
clipping lesson (about 1.5 s a seed). The claims themselves, on other seeds, are in
tests/test_lessons.py and tests/test_sweep_lesson.py."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from explorer import lesson_seeds, lessons
from explorer.__main__ import main
from explorer.config import Config
from explorer.lessons import LESSONS, SWEEP_LESSONS, Lesson, Variant
from explorer.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def explorer(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "explorer", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_list_prints_every_lesson_s_key_the_sweep_lessons_last():
    done = explorer("lesson", "--list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [item.key for item in LESSONS] + [item.key for item in SWEEP_LESSONS]


@pytest.mark.slow
def test_json_is_the_promised_document_with_each_listed_seed_in_order():
    done = explorer("lesson", "clipping", "--seeds", "5,2", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert list(result) == ["lesson", "seeds", "held", "of"]
    assert result["lesson"] == "clipping" and result["of"] == 2
    assert [entry["seed"] for entry in result["seeds"]] == [5, 2]
    for entry in result["seeds"]:
        assert list(entry) == ["seed", "holds", "message", "seconds"]
        assert isinstance(entry["holds"], bool) and isinstance(entry["message"], str)
        assert isinstance(entry["seconds"], float) and entry["seconds"] > 0
    assert result["held"] == sum(entry["holds"] for entry in result["seeds"])
    # Each verdict is that seed's own run: the unclipped tanh RNN trained here with seed 5
    # diverges at the step the verdict names (explorer.trainer, not the lesson's seed 0).
    torch.set_num_threads(1)
    config = dataclasses.replace(lessons.CLIPPING.variants[0].config, seed=5)
    trainer = Trainer(config)
    while not trainer.finished and trainer.step() is not None:
        pass
    assert trainer.diverged
    assert f"diverged at step {trainer.steps_done + 1}" in result["seeds"][0]["message"]
    own = Trainer(lessons.CLIPPING.variants[0].config)
    while not own.finished and own.step() is not None:
        pass
    assert own.steps_done != trainer.steps_done          # (so the seed above made a difference)


@pytest.mark.slow
def test_without_seeds_it_judges_the_lesson_s_own_seed_a_line_each():
    done = explorer("lesson", "clipping")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("seed 0: holds (") and "Clip 1: trained" in lines[0]
    assert lines[1] == "clipping: the claim held on 1 of 1 seed(s)"


@pytest.mark.parametrize("args, words", [
    (["lesson", "nope"], "unknown lesson 'nope'; known lessons: vanishing,"),
    (["lesson", "clipping", "--seeds", "1,,2"], "comma-separated list of whole numbers"),
    (["lesson", "clipping", "--seeds", "-1"], "comma-separated list of whole numbers"),
    (["lesson", "clipping", "--seeds", "1 2"], "comma-separated list of whole numbers"),
    (["lesson", "clipping", "--seeds", "three"], "comma-separated list of whole numbers"),
    (["lesson", "clipping", "--seeds", ""], "comma-separated list of whole numbers"),
    (["lesson", "clipping", "--seeds", "1,1"], "seed 1 is listed twice"),
    (["lesson", "clipping", "--seeds", "4294967296"], "a seed is at most 2147483647"),
    (["lesson", "holds-out-longest", "--seeds", "2147483647"], "trains seeds s to s+2"),
    (["lesson"], "name a lesson: vanishing, forget-bias"),
    (["lesson", "clipping", "--list"], "--list takes no lesson"),
])
def test_an_unknown_lesson_or_bad_seeds_is_one_error_line_and_status_2(args, words, capsys):
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and words in err, err


def test_a_claim_that_does_not_hold_still_exits_0(monkeypatch, capsys):
    """The verdict is the answer, not an error: a lesson whose claim fails (the clipping lesson
    with its variants' configs swapped, so the clipped run is the one called 'no clipping')
    prints 'does NOT hold' and the command exits 0."""
    clipping = lessons.CLIPPING
    swapped = Lesson(**{**{f.name: getattr(clipping, f.name) for f in dataclasses.fields(Lesson)},
                        "key": "clipping-swapped",
                        "variants": (Variant("no clipping", clipping.variants[1].config),
                                     Variant("clip 1", clipping.variants[0].config))})
    monkeypatch.setattr(lessons, "LESSONS", (*LESSONS, swapped))
    assert main(["lesson", "clipping-swapped", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("seed 1: does NOT hold (") and "the claim held on 0 of 1" in out


def test_a_sweep_lesson_s_seed_s_is_judged_on_seeds_s_to_s_plus_2():
    configs = lessons.HOLDS_OUT.configs(lengths=(10,), seeds=[4, 5, 6])
    assert [c.seed for c in configs] == [4, 5, 6] * 3
    assert lesson_seeds.sweep_seeds(4) == (4, 5, 6)
    assert isinstance(configs[0], Config) and configs[0].steps == lessons.HOLDS_OUT.settings["steps"]
