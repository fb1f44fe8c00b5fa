"""How big a saved default run is, and how long saving and reopening it take.

    python tests/store_bench.py [--steps 2000]

Trains the default Config (adding, LSTM(64), T=50, batch 64) for --steps steps on the CPU,
then saves it into a fresh store: the first save (every trace new), a second save (nothing
new: what an autosave costs between probes), the file's size, and a reopen. Not a test:
times depend on the machine; tests/test_store.py holds the size bound.
"""
import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer import Config, Trainer  # noqa: E402
from explorer.store import RunStore, new_id, new_key  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    trainer = Trainer(Config(steps=args.steps, device="cpu"))
    while not trainer.finished:
        trainer.step()
    store = RunStore(Path(tempfile.mkdtemp()) / "runs.sqlite")
    run_id, key = new_id(), new_key()
    timed = {}
    for label, call in (("first save", lambda: store.save(run_id, trainer, owner_key=key)),
                        ("second save", lambda: store.save(run_id, trainer, owner_key=key)),
                        ("reopen", lambda: store.load(run_id))):
        started = time.perf_counter()
        call()
        timed[label] = time.perf_counter() - started
    with sqlite3.connect(store.path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    traces = len(trainer.history.view().traces)
    print(f"{args.steps} steps, {traces} traces: {store.path.stat().st_size / 2**20:.2f} MB; "
          + ", ".join(f"{label} {seconds * 1000:.0f} ms" for label, seconds in timed.items()))


if __name__ == "__main__":
    main()
