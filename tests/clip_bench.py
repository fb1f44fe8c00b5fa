"""Trainer.step's gradient norms and clipping: public torch API against the private foreach calls.

    .venv/bin/python tests/clip_bench.py [--steps 400] [--chunk 10] [--clip 0.1]

Two Trainers train the default configuration (adding, LSTM(64), T = 50, batch 64, Adam) on
the CPU with one torch thread, on the same batches from the same weights:

* public:  Trainer.step as it is (torch.linalg.vector_norm, clip_grads_with_norm_).
* foreach: the step it replaced (torch._foreach_norm / _foreach_mul_ / _foreach_sub, and
           `grad_norm > clip` deciding on the host whether to clip), kept here verbatim.

After `chunk` untimed steps each, they take turns `chunk` steps at a time, in alternating
order, so a slow spell of this shared machine hits both alike. It prints steps/s of each,
their ratio overall and the median of the ratios round by round, and the largest relative
difference between their records (both measure the same thing, so it stays near rounding).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer import Config, Trainer  # noqa: E402


class _ForeachTrainer(Trainer):
    def step(self) -> dict | None:
        if self.diverged:
            return None
        started = time.perf_counter()
        model, params = self.model, list(self.model.parameters())
        model.train()
        x, y = self.task.sample(self.config.batch_size, self.batch_generator)
        x, y = x.to(self.device), y.to(self.device)
        output = model(x)
        task_loss = self.task.loss(output, y)
        loss = task_loss
        if self.config.l1 > 0:
            loss = loss + self.config.l1 * sum(p.abs().sum() for p in params)
        self.optimizer.zero_grad()
        loss.backward()
        grads = [p.grad for p in params]
        param_grad_norm = torch.stack(torch._foreach_norm(grads))             # (params,)
        grad_norm = param_grad_norm.norm()
        if not (torch.isfinite(task_loss) and torch.isfinite(grad_norm)):
            return self._diverge(f"the loss or its gradient became non-finite at step {self.steps_done + 1}")
        clipped = grad_norm
        if self.config.clip > 0 and grad_norm > self.config.clip:
            torch._foreach_mul_(grads, self.config.clip / (grad_norm + 1e-6))
            clipped = grad_norm.new_tensor(self.config.clip)
        before = [p.detach().clone() for p in params]
        self.optimizer.step()
        update = torch.stack(torch._foreach_norm(torch._foreach_sub([p.detach() for p in params], before)))
        weight = torch.stack(torch._foreach_norm([p.detach() for p in params]))
        if not torch.isfinite(weight).all():
            with torch.no_grad():
                torch._foreach_copy_(params, before)
            return self._diverge(f"the weights became non-finite at step {self.steps_done + 1}")
        metric = self.task.metric(output.detach(), y)
        self.steps_done += 1
        if self.steps_done % self.config.eval_every == 0:
            self.evaluate_and_record()
        if self.steps_done % self.config.probe_every == 0:
            self.probe()
        record = {
            "loss": task_loss.item(), "metric": metric, "grad_norm": grad_norm.item(),
            "grad_norm_clipped": clipped.item(),
            "param_grad_norm": param_grad_norm.cpu().numpy(),
            "update_ratio": (update / weight.clamp_min(1e-12)).cpu().numpy(),
            "seconds": time.perf_counter() - started,
        }
        self.history.record_step(self.steps_done, record)
        return record


def measure(steps: int, chunk: int, clip: float) -> dict:
    torch.set_num_threads(1)
    config = Config(device="cpu", clip=clip, steps=200_000)
    trainers = {"public": Trainer(config), "foreach": _ForeachTrainer(config)}
    generator = torch.Generator().manual_seed(0)
    batches = [trainers["public"].task.sample(config.batch_size, generator) for _ in range(chunk + steps)]
    for trainer in trainers.values():
        feed = iter(batches)
        trainer.task.sample = lambda n, generator, feed=feed: next(feed)
    for trainer in trainers.values():           # warm-up: first calls pay for allocations
        for _ in range(chunk):
            trainer.step()
    rounds = []                                 # per round, each trainer's seconds for its chunk
    order = list(trainers)
    for _ in range(0, steps, chunk):
        took = {}
        for name in order:
            started = time.perf_counter()
            for _ in range(chunk):
                trainers[name].step()
            took[name] = time.perf_counter() - started
        rounds.append(took)
        order.reverse()
    public, foreach = (trainers[name].history.view().steps for name in ("public", "foreach"))

    def apart(key: str) -> float:
        return float(np.max(np.abs(public[key] - foreach[key]) / np.abs(foreach[key]).clip(1e-12)))

    rate = {name: steps / sum(took[name] for took in rounds) for name in trainers}
    return {
        "setting": {"steps": steps, "chunk": chunk, "clip": clip, "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "public_steps_per_s": rate["public"],
        "foreach_steps_per_s": rate["foreach"],
        "public_over_foreach": rate["public"] / rate["foreach"],
        # Robust to the machine's load changing between rounds.
        "median_round_public_over_foreach": statistics.median(t["foreach"] / t["public"] for t in rounds),
        "steps_clipped": float(np.mean(foreach["grad_norm"] > clip)) if clip > 0 else 0.0,
        "largest_relative_difference": {key: apart(key) for key in
                                        ("loss", "grad_norm", "grad_norm_clipped", "param_grad_norm",
                                         "update_ratio")},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps of each trainer")
    parser.add_argument("--chunk", type=int, default=10, help="steps per turn")
    parser.add_argument("--clip", type=float, default=0.1, help="clip (0: off; 0.1 clips most steps here)")
    args = parser.parse_args()
    print(json.dumps(measure(args.steps, args.chunk, args.clip), indent=2))
