"""A lesson's claim judged on other seeds: does it hold whatever the seed and the machine?

A lesson's claim is a promise to a teacher, so it must not rest on its own seed's luck nor on
one machine's rounding. `judge(key, seeds)` trains the lesson's variants with each seed in
place of the lesson's own and runs its check; a sweep lesson's verdict for seed s is judged on
its grid trained with seeds s, s+1 and s+2 (its check takes the median over them). The
`lesson` command (explorer/__main__.py) prints these; docs/LESSONS.md tabulates them over
seeds 0-9 with the native kernels and with ATen's and oneDNN's plainest ones.

Every run trains with one torch thread, as the app trains a lesson's variants, unless its user
chose otherwise (explorer/threads.py: --threads, OMP_NUM_THREADS). Plain library:
nothing here imports Streamlit.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from .config import FIELDS
from .lessons import LESSONS, SWEEP_LESSONS, Lesson, SweepLesson, lesson

if TYPE_CHECKING:
    import pandas as pd

MAX_SEED = int(FIELDS["seed"].hi)        # Config's own range for a seed


@dataclass(frozen=True)
class Verdict:
    seed: int
    holds: bool
    message: str           # the check's line, with the numbers
    seconds: float         # the training and checking this seed took (a sweep: its runs' own seconds)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def keys() -> list[str]:
    """Every lesson's key, the sweep lessons' last."""
    return [item.key for item in LESSONS] + [item.key for item in SWEEP_LESSONS]


def find(key: str) -> Lesson | SweepLesson:
    """The lesson (or sweep lesson) with this key; ValueError naming the known keys otherwise."""
    for item in SWEEP_LESSONS:
        if item.key == key:
            return item
    try:
        return lesson(key)
    except ValueError:
        raise ValueError(f"unknown lesson {key!r}; known lessons: {', '.join(keys())}") from None


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' as [0, 1, 2]; ValueError saying what is wrong with anything else."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ValueError(f"--seeds takes a comma-separated list of whole numbers such as 0,1,2; got {text!r}")
        seed = int(part)
        if seed > MAX_SEED:
            raise ValueError(f"a seed is at most {MAX_SEED}; got {seed}")
        if seed in seeds:
            raise ValueError(f"seed {seed} is listed twice in {text!r}")
        seeds.append(seed)
    return seeds


def own_seed(item: Lesson | SweepLesson) -> int:
    """The seed a lesson trains with in the app (a sweep lesson: its first)."""
    return 0 if isinstance(item, SweepLesson) else item.variants[0].config.seed


def judge(key: str, seeds: Iterable[int], progress: Callable[[Verdict], None] | None = None, *,
          workers: int = 1, lengths: tuple[int, ...] | None = None, threads: int | None = None) -> list[Verdict]:
    """The lesson's verdict on each seed, in the seeds' order; progress(verdict) as each is known.
    workers > 1 trains that many seeds at once, each in a process of its own (a sweep lesson's
    runs always are). lengths, for a sweep lesson only, trains its grid at those lengths: its
    check reads the shortest and the longest, so (10, 100) gives the full grid's verdict.
    threads: torch threads per run, where the lesson trains in processes of its own (else
    explorer/threads.py's policy: OMP_NUM_THREADS, or one); here, this process's own count."""
    item, seeds = find(key), list(seeds)
    if lengths is not None and not isinstance(item, SweepLesson):
        raise ValueError(f"{key} is not a sweep lesson: it has no lengths to choose")
    if isinstance(item, SweepLesson):
        if seeds and max(seeds) > MAX_SEED - 2:
            raise ValueError(f"a sweep lesson's verdict for seed s trains seeds s to s+2: a seed is at most "
                             f"{MAX_SEED - 2} here")
        verdicts = sweep_verdicts(item, train_sweep(item, seeds, lengths, workers, threads), seeds)
    elif workers > 1:
        verdicts = judge_pairs([(key, seed) for seed in seeds], workers, threads)
    else:                    # lazily, so that each seed's line shows as soon as it is judged
        verdicts = (judge_one(item, seed) for seed in seeds)
    judged = []
    for verdict in verdicts:
        judged.append(verdict)
        if progress is not None:
            progress(verdict)
    return judged


def judge_pairs(pairs: list[tuple[str, int]], workers: int = 1, threads: int | None = None) -> list[Verdict]:
    """The verdict of each (lesson key, seed), in order; workers > 1 judges that many at once,
    each in a process of its own with `threads` torch threads (not for sweep lessons, whose runs
    have their own pool)."""
    from . import threads as thread_policy
    if workers <= 1 or len(pairs) < 2:
        return [judge_one(find(key), seed) for key, seed in pairs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    # Spawned, not forked: a fork of a process that has run torch's thread pools can hang.
    with ProcessPoolExecutor(min(workers, len(pairs)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_judge_worker_start, initargs=(thread_policy.resolve(threads),)) as pool:
        return list(pool.map(_judge_by_key, *zip(*pairs)))


def _judge_worker_start(threads: int) -> None:
    from . import threads as thread_policy
    from .memory import settle_for_training
    thread_policy.use(threads)
    settle_for_training()


def _judge_by_key(key: str, seed: int) -> Verdict:
    return judge_one(find(key), seed)


def train_variants(item: Lesson, seed: int, trained: dict | None = None) -> dict:
    """Each variant of the lesson, with `seed` for its own, trained to its last step (or its
    divergence): {label: Trainer}. `trained`, a dict kept between calls, lends a Trainer already
    trained on the same config (two lessons share one: learning-in-time's are vanishing's);
    the checks only read their trainers."""
    from .trainer import Trainer
    trainers = {}
    for variant in item.variants:
        config = dataclasses.replace(variant.config, seed=seed)
        key = repr(config.to_dict())
        if trained is not None and key in trained:
            trainers[variant.label] = trained[key]
            continue
        trainer = Trainer(config)
        while not trainer.finished and trainer.step() is not None:
            pass
        trainers[variant.label] = trainer
        if trained is not None:
            trained[key] = trainer
    return trainers


def judge_one(item: Lesson, seed: int, trained: dict | None = None) -> Verdict:
    """The lesson's verdict on one seed (see train_variants for `trained`)."""
    started = time.perf_counter()
    trainers = train_variants(item, seed, trained)
    holds, message = item.check(trainers)
    return Verdict(seed, bool(holds), message, time.perf_counter() - started)


def sweep_seeds(seed: int) -> tuple[int, int, int]:
    """The seeds a sweep lesson's verdict for `seed` is judged on."""
    return seed, seed + 1, seed + 2


def train_sweep(item: SweepLesson, seeds: list[int], lengths: tuple[int, ...] | None = None,
                workers: int = 1, threads: int | None = None) -> "pd.DataFrame":
    """The sweep lesson's grid with every seed the verdicts on `seeds` need, each trained once
    (seeds 0-9 need 0-11), as one sweep's rows. The sweep is kept in a store of its own that is
    thrown away after: these runs are a check, not the user's."""
    from .store import RunStore
    from .sweep import sweep
    needed = sorted({s for seed in seeds for s in sweep_seeds(seed)})
    with tempfile.TemporaryDirectory(prefix="gate-explorer-lesson-") as folder:
        return sweep(item.configs(lengths=lengths, seeds=needed), store=RunStore(Path(folder) / "runs.sqlite"),
                     workers=workers if workers > 1 else None, threads=threads)


def sweep_verdicts(item: SweepLesson, frame: "pd.DataFrame", seeds: list[int]) -> list[Verdict]:
    """The verdict for each seed s, on frame's rows of seeds s, s+1 and s+2; its seconds are
    those rows' own (the sweep trains them side by side)."""
    verdicts = []
    for seed in seeds:
        rows = frame[frame["seed"].isin(sweep_seeds(seed))]
        holds, message = item.check(rows)
        verdicts.append(Verdict(seed, bool(holds), message, float(rows["seconds"].sum())))
    return verdicts
