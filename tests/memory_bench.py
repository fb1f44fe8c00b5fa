"""The memory budget against measurement: each config's estimate beside the peak RSS its run grew by.

    python tests/memory_bench.py [--steps 20] [--only NAME ...]

Each config trains in a fresh process with one torch thread (as the app on a small machine):
the process's RSS is read once explorer is imported, then a Trainer is built and trains
--steps steps, with an eval and a probe every 5, and the peak RSS (VmHWM, reset before the
run) less that first reading is what the run measured. Prints a markdown table; the budget
(explorer/budget.py) must keep every ratio, estimate / measured, within [1, 2]. Not a test:
it takes a few minutes.
"""
import argparse
import gc
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Varied where the estimate's parts differ: the cells, the tasks' inputs and heads, each size.
CONFIGS = {
    "default": {},
    "long sequences": dict(seq_len=1000, batch_size=16),
    "big hidden": dict(hidden=512, seq_len=100, batch_size=32),
    "4 layers": dict(layers=4, hidden=128, seq_len=100, batch_size=64),
    "big batch": dict(batch_size=1024, seq_len=50, hidden=128),
    "text": dict(task="text", seq_len=100, hidden=128, batch_size=64),
    "copy, GRU": dict(task="copy", cell="gru", seq_len=100, hidden=128, batch_size=64),
    "peephole": dict(cell="peephole", hidden=128, seq_len=100, batch_size=64),
    "CIFG, 2 layers": dict(cell="cifg", layers=2, hidden=128, seq_len=100, batch_size=64),
    "RNN, big probe": dict(cell="rnn", hidden=128, seq_len=200, batch_size=32, probe_count=64),
    "one long, wide sequence": dict(batch_size=1, seq_len=1000, hidden=256, layers=2, probe_count=1),
    "2 big layers (8 steps)": dict(batch_size=256, seq_len=200, hidden=256, layers=2, steps=8),
}
EVERY = 5


def _status(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def measure(values: dict) -> dict:
    """Run one config here; called in a fresh process (--child)."""
    import torch

    from explorer import Config, Trainer
    torch.set_num_threads(1)
    config = Config(**values)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as refs:   # restart VmHWM from the current RSS
        refs.write("5")
    before = _status("VmRSS:")
    trainer = Trainer(config)
    while not trainer.finished:
        trainer.step()
    return {"measured": _status("VmHWM:") - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--only", nargs="+", choices=CONFIGS, metavar="NAME", help="these configs only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return
    from explorer import Config
    from explorer.budget import MB, estimate
    print("| config | estimate MB | measured MB | ratio | biggest part |")
    print("|---|---:|---:|---:|---|")
    for name in args.only or CONFIGS:
        values = dict(dict(steps=args.steps, probe_every=EVERY, eval_every=EVERY, device="cpu"), **CONFIGS[name])
        guess = estimate(Config(**values))
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps(values)], check=True,
                              capture_output=True, text=True, cwd=ROOT)
        measured = json.loads(done.stdout.splitlines()[-1])["measured"]
        print(f"| {name} | {guess.total / MB:.0f} | {measured / MB:.0f} | {guess.total / measured:.2f} | "
              f"{guess.biggest} |", flush=True)


if __name__ == "__main__":
    main()
