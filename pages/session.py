"""This browser session's runs: its own run and a lesson's, kept in a session-scoped resource,
so they survive page switches and stop when the browser session ends."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field

import streamlit as st
import torch

from explorer import Config, DataError, Run, Status

IDLE_TIMEOUT = 600   # seconds without a page polling before a run pauses itself
ERRORS = (ValueError, DataError, OSError, RuntimeError)

# Leave a core to the server and the browser. On a small machine, OpenMP threads that must
# wait for a core held by the UI stall every operator: measured here on 2 cores, a default
# run fell from ~70 to ~4 steps/s with 2 threads under load, and kept ~100 with 1.
torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))


@dataclass
class Session:
    """One browser session's run, and the folder its uploaded CSV files live in."""

    run: Run | None = None
    upload_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="gate-explorer-"))
    lesson_key: str | None = None
    lesson_runs: dict[str, Run] = field(default_factory=dict)   # variant label -> its run

    def replace(self, config: Config) -> str | None:
        """Start over with a new run of config; on failure keep the old run, return why."""
        try:
            run = Run(config, idle_timeout=IDLE_TIMEOUT)
        except ERRORS as error:
            return str(error)
        old, self.run = self.run, run
        self._retire(old)
        return None

    def lesson(self, lesson, fresh: bool = False) -> dict[str, Run]:
        """The runs of lesson's variants, made when the lesson is new here (or fresh is asked)."""
        if fresh or self.lesson_key != lesson.key:
            self.stop_lesson()
            self.lesson_runs = {v.label: Run(v.config, idle_timeout=IDLE_TIMEOUT) for v in lesson.variants}
            self.lesson_key = lesson.key
        return self.lesson_runs

    def stop_lesson(self) -> None:
        old, self.lesson_runs, self.lesson_key = self.lesson_runs, {}, None
        for run in old.values():
            self._retire(run)

    def adopt(self, run: Run) -> None:
        """Make run (a lesson's variant) the session's run, for the other pages to explore."""
        old, self.run = self.run, run
        self._retire(old)

    def _retire(self, run: Run | None) -> None:
        """Stop a run this session let go of, unless it still holds it in its other role (a
        lesson's variant adopted as the session's run, or the reverse)."""
        if run is not None and run is not self.run and run not in self.lesson_runs.values():
            run.stop()

    def close(self) -> None:
        if self.run is not None:
            self.run.stop()
        self.stop_lesson()
        shutil.rmtree(self.upload_dir, ignore_errors=True)


@st.cache_resource(scope="session", on_release=Session.close, show_spinner=False)
def session() -> Session:
    return Session()


def current_run(config: Config | None) -> Run | None:
    """This session's run, built from config when there is none yet or when it has not
    trained a step (so changing a setting before pressing Train just takes effect)."""
    where = session()
    run = where.run
    untouched = run is not None and run.trainer.steps_done == 0 and run.snapshot().status == Status.IDLE
    if config is not None and (run is None or (untouched and run.trainer.config != config)):
        problem = where.replace(config)
        if problem:
            st.error(f"Could not set up this run: {problem}")
    return where.run
