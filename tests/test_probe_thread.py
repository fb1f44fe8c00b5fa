"""The probe traced in the background (Trainer(background_probe=True)): a CPU copy of the model,
traced in a thread of its own while training goes on. Its traces are checked against the in-line
probe's (itself checked against the fused modules in test_trace.py), step for step."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import explorer.trainer as trainer_module
from explorer.config import Config
from explorer.trainer import Trainer

PROBE_EVERY = 5


def small(**changes) -> Config:
    return Config(**dict(dict(task="adding", seq_len=12, hidden=8, batch_size=8, steps=3 * PROBE_EVERY,
                              probe_every=PROBE_EVERY, eval_every=PROBE_EVERY, probe_count=3), **changes))


def traces(trainer: Trainer) -> dict:
    return {step: tr for step, tr in trainer.history.view().traces}


@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole"])
def test_background_probes_trace_what_in_line_probes_trace(cell):
    inline, background = Trainer(small(cell=cell)), Trainer(small(cell=cell), background_probe=True)
    while not inline.finished:
        inline.step()
        background.step()
    # The run finished, so its last probe has been waited for: every probe step is there.
    want, got = traces(inline), traces(background)
    assert sorted(got) == sorted(want) == [0, 5, 10, 15]
    for step in want:
        a, b = want[step], got[step]
        assert a.loss == pytest.approx(b.loss, rel=1e-5)
        for la, lb in zip(a.layers, b.layers):
            for name in la.gates:
                np.testing.assert_allclose(lb.gates[name], la.gates[name], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(lb.grad_hidden, la.grad_hidden, rtol=1e-4, atol=1e-7)
    # Followers trace with the copy the probe was made from: on the CPU, the weights of step 15.
    step, model = background.probe_copy
    assert step == 15 and all(p.device.type == "cpu" and not p.requires_grad for p in model.parameters())
    for p, q in zip(model.parameters(), inline.model.parameters()):
        torch.testing.assert_close(p, q)


def test_training_goes_on_while_the_probe_is_traced(monkeypatch):
    trainer = Trainer(small(), background_probe=True)
    trainer.wait_for_probe()                      # the untrained network's probe
    release, started = threading.Event(), threading.Event()
    real_trace = trainer_module.trace

    def held(*args, **kwargs):                    # a probe that takes until the test says
        started.set()
        assert release.wait(30)
        return real_trace(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "trace", held)
    for _ in range(PROBE_EVERY + 2):              # past the probe at step 5, which is held
        assert trainer.step() is not None
    assert started.wait(30)
    assert trainer.steps_done == PROBE_EVERY + 2 and trainer.history.latest_trace()[0] == 0
    release.set()
    trainer.wait_for_probe()
    assert trainer.history.latest_trace()[0] == PROBE_EVERY
    assert trainer.probe_copy[0] == PROBE_EVERY


def test_a_failed_background_probe_is_raised_when_it_is_waited_for(monkeypatch):
    trainer = Trainer(small(), background_probe=True)
    trainer.wait_for_probe()

    def failing(*args, **kwargs):
        raise RuntimeError("out of memory in the probe")

    monkeypatch.setattr(trainer_module, "trace", failing)
    for _ in range(PROBE_EVERY):
        assert trainer.step() is not None         # the step that started the probe is whole
    with pytest.raises(RuntimeError, match="out of memory in the probe"):
        trainer.wait_for_probe()
    trainer.wait_for_probe()                       # said once; nothing is pending after
