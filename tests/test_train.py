"""Config validation, the model, the Trainer's records, History's bound, and Run's controls."""
import copy
import re
import time

import numpy as np
import pytest
import torch

from explorer.cells import CELLS
from explorer.config import Config
from explorer.history import RECORD_BLOCK, History, trace_nbytes
from explorer.models import SequenceModel, resolve_device
from explorer.run import Run, Status
from explorer.tasks import task_for
from explorer.trainer import Trainer

SMALL = dict(task="adding", seq_len=12, hidden=8, batch_size=8, steps=1000, probe_every=1000, eval_every=1000)


def small(**changes) -> Config:
    return Config(**dict(SMALL, **changes))


def held_out_by_hand(config: Config, weights: dict) -> tuple[float, float, int]:
    """A run's held-out (loss, metric, sequences) worked out apart from the Trainer: a new
    SequenceModel with the weights, on the task's first 1,000 held-out sequences of the seed,
    in one pass (Trainer.evaluate goes 256 at a time)."""
    task = task_for(config)
    model = SequenceModel(config, task.input_size, task.output_size, task.output_mode)
    model.load_state_dict(weights)
    x, y = task.heldout(1000, config.seed)
    with torch.no_grad():
        output = model.eval()(x)
    return task.loss(output, y).item(), task.metric(output, y), len(x)


# --- Config ------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, words", [
    ("hidden", 0, "hidden must be between 1 and 512"),
    ("hidden", 10_000, "hidden must be between 1 and 512"),
    ("lr", -0.1, "lr must be between"),
    ("lr", float("nan"), "lr must be a finite number"),
    ("cell", "transformer", "cell must be one of " + ", ".join(CELLS)),
    ("optimizer", "lbfgs", "optimizer must be one of"),
    ("layers", 2.5, "layers must be a whole number"),
    ("device", "tpu", "device must be one of"),
    ("seq_len", 1, "seq_len must be between 2 and 1000"),
])
def test_config_rejects_bad_values_naming_field_and_range(field, value, words):
    with pytest.raises(ValueError, match=words):
        Config(**{field: value})


def test_config_from_dict_coerces_strings_and_rejects_junk():
    config = Config.from_dict({"hidden": "32", "lr": "0.01", "cell": "gru", "clip": "1"})
    assert (config.hidden, config.lr, config.cell, config.clip) == (32, 0.01, "gru", 1.0)
    with pytest.raises(ValueError, match="hidden must be a whole number"):
        Config.from_dict({"hidden": "3.5"})
    with pytest.raises(ValueError, match="lr must be a number"):
        Config.from_dict({"lr": "fast"})
    with pytest.raises(ValueError, match="unknown setting 'hiden'"):
        Config.from_dict({"hiden": "3"})
    assert Config.from_dict(config.to_dict()) == config


# --- the model -----------------------------------------------------------------------------

def test_forget_bias_sets_the_lstm_forget_gate_bias_and_opens_the_gate():
    config = small(cell="lstm", forget_bias=3.0, layers=2)
    model = SequenceModel(config, 2, 1, "last")
    H = config.hidden
    for k in range(2):
        b = getattr(model.rnn, f"bias_ih_l{k}") + getattr(model.rnn, f"bias_hh_l{k}")
        assert torch.allclose(b[H:2 * H], torch.full((H,), 3.0))
    trainer = Trainer(config)
    trainer.model = model
    forget = trainer.trace(torch.zeros(1, 5, 2)).layers[0].gates["forget"]
    # With zero input and zero state the forget gate is sigmoid(3) exactly.
    np.testing.assert_allclose(forget[0, 0], 1 / (1 + np.exp(-3.0)), rtol=1e-6)


def test_orthogonal_init_makes_each_recurrent_gate_block_orthogonal():
    model = SequenceModel(small(cell="gru", init="orthogonal"), 2, 1, "last")
    for block in model.rnn.weight_hh_l0.detach().split(8):
        np.testing.assert_allclose((block @ block.T).numpy(), np.eye(8), atol=1e-5)


def test_missing_device_falls_back_to_cpu_with_a_warning():
    device, warning = resolve_device("cuda")
    if torch.cuda.is_available():
        assert device.type == "cuda" and warning is None
    else:
        assert device.type == "cpu" and "CUDA" in warning


# --- the Trainer ---------------------------------------------------------------------------

def test_trainer_records_every_metric_each_step():
    trainer = Trainer(small(cell="lstm"))
    for _ in range(4):
        trainer.step()
    view = trainer.history.view()
    P = len(trainer.param_names)
    assert list(view.steps["step"]) == [1, 2, 3, 4]
    for name in ("loss", "metric", "grad_norm", "grad_norm_clipped", "seconds"):
        assert view.steps[name].shape == (4,) and np.isfinite(view.steps[name]).all()
    assert view.steps["param_grad_norm"].shape == (4, P)
    assert view.steps["update_ratio"].shape == (4, P) and (view.steps["update_ratio"] > 0).all()
    # The global norm is the norm of the per-parameter norms.
    np.testing.assert_allclose(view.steps["grad_norm"], np.linalg.norm(view.steps["param_grad_norm"], axis=1),
                               rtol=1e-5)


def test_clipping_bounds_the_applied_update_exactly():
    lr, clip = 0.1, 1e-3
    trainer = Trainer(small(optimizer="sgd", lr=lr, clip=clip))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    record = trainer.step()
    assert record["grad_norm"] > clip and record["grad_norm_clipped"] == pytest.approx(clip)
    update = torch.cat([(p.detach() - b).flatten() for p, b in zip(trainer.model.parameters(), before)])
    # Plain SGD moves the weights by lr times the (clipped) gradient.
    assert update.norm().item() == pytest.approx(lr * clip, rel=1e-3)


@pytest.mark.parametrize("clip", [1e-3, 1e3])
def test_clipped_gradient_matches_clip_grad_norm_on_a_copy_of_the_model(clip):
    trainer = Trainer(small(clip=clip))
    reference = copy.deepcopy(trainer.model)
    batches = torch.Generator().set_state(trainer.batch_generator.get_state())   # the batch step() will draw
    x, y = trainer.task.sample(trainer.config.batch_size, batches)
    trainer.task.loss(reference(x), y).backward()
    norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), clip).item()
    record = trainer.step()
    assert (norm > clip) == (clip == 1e-3)                   # one clip binds, the other does not
    assert record["grad_norm"] == pytest.approx(norm, rel=1e-5)
    assert record["grad_norm_clipped"] == pytest.approx(min(norm, clip), rel=1e-5)
    # step() leaves the gradient it applied in .grad until the next step.
    for p, q in zip(trainer.model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    applied = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in trainer.model.parameters()]))
    assert applied.item() == pytest.approx(min(norm, clip), rel=1e-5)


def test_update_ratio_is_update_norm_over_weight_norm():
    lr = 0.05
    trainer = Trainer(small(optimizer="sgd", lr=lr))
    record = trainer.step()
    weights = np.array([p.detach().norm().item() for p in trainer.model.parameters()])
    np.testing.assert_allclose(record["update_ratio"].numpy(), lr * record["param_grad_norm"].numpy() / weights,
                               rtol=1e-4)


def test_probes_trace_the_same_heldout_sequences_at_the_cadence():
    trainer = Trainer(small(probe_every=3, probe_count=4))
    for _ in range(9):
        trainer.step()
    traces = trainer.history.view().traces
    assert [step for step, _ in traces] == [0, 3, 6, 9]
    assert traces[-1][1].output.shape == (4, 12, 8)
    # The recorded trace is the model's current behaviour on the probe sequences.
    again = trainer.trace(*trainer.probe_set)
    np.testing.assert_allclose(traces[-1][1].output, again.output, atol=1e-6)
    assert traces[0][1].loss != traces[-1][1].loss


def test_heldout_loss_is_recorded_at_the_eval_cadence():
    trainer = Trainer(small(eval_every=2))
    for _ in range(6):
        trainer.step()
    evals = trainer.history.view().evals
    assert list(evals["step"]) == [2, 4, 6]
    assert evals["eval_loss"][-1] == pytest.approx(trainer.evaluate()[0], rel=1e-5)


def test_final_eval_is_the_weights_on_up_to_1000_held_out_sequences_measured_once_per_step():
    trainer = Trainer(small(eval_every=5))
    for _ in range(10):
        trainer.step()
    final = trainer.final_eval()
    loss, metric, sequences = held_out_by_hand(trainer.config, trainer.model.state_dict())
    assert (final.step, final.sequences) == (10, sequences) == (10, 1000)
    assert final.loss == pytest.approx(loss, rel=1e-5) and final.metric == pytest.approx(metric, abs=1e-6)
    # Not the periodic eval at the same step, on 256 other sequences: the learning curve.
    assert trainer.history.view().evals["eval_loss"][-1] != pytest.approx(final.loss, rel=1e-6)
    assert trainer.final_eval() is final                  # the same step: not measured again
    trainer.step()
    later = trainer.final_eval()
    assert later.step == 11 and later.loss == pytest.approx(held_out_by_hand(trainer.config,
                                                                          trainer.model.state_dict())[0], rel=1e-5)


def test_final_eval_of_the_digits_is_over_their_360_held_out_images():
    trainer = Trainer(small(task="digits", steps=2))
    trainer.step()
    final = trainer.final_eval()
    assert final.sequences == 360
    loss, metric, _ = held_out_by_hand(trainer.config, trainer.model.state_dict())
    assert final.loss == pytest.approx(loss, rel=1e-5) and final.metric == pytest.approx(metric, abs=1e-6)


def test_same_seed_same_run_different_seed_different_run():
    def losses(seed):
        trainer = Trainer(small(seed=seed))
        return [trainer.step()["loss"] for _ in range(3)]
    assert losses(1) == losses(1)
    assert losses(1) != losses(2)


def test_divergence_stops_the_run_and_keeps_the_last_finite_weights():
    trainer = Trainer(small(cell="rnn-relu", seq_len=30, hidden=64, optimizer="sgd", lr=10.0))
    states = {0: {k: v.clone() for k, v in trainer.model.state_dict().items()}}   # step -> weights after it
    for _ in range(50):
        if trainer.step() is None:
            break
        states[trainer.steps_done] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.diverged and "diverged" in trainer.divergence_message
    assert "learning rate" in trainer.divergence_message
    bad = int(re.search(r"at step (\d+)", trainer.divergence_message).group(1))
    # Found at the block's end, at most RECORD_BLOCK steps on; the run is back at the step before.
    assert max(states) - bad < RECORD_BLOCK and trainer.steps_done == bad - 1
    assert len(trainer.history) == bad - 1 and trainer.history.view().steps["step"][-1] == bad - 1
    for k, v in trainer.model.state_dict().items():
        assert torch.isfinite(v).all()
        assert torch.equal(v, states[bad - 1][k])
    assert trainer.step() is None


def _blow_up_every_update(trainer: Trainer, value: float) -> None:
    """From now on each optimiser update also sets a weight to `value` (inf or nan)."""
    step = trainer.optimizer.step

    def blow_up():
        step()
        with torch.no_grad():
            next(trainer.model.parameters())[0] = value

    trainer.optimizer.step = blow_up


def test_weights_an_update_makes_non_finite_are_restored():
    trainer = Trainer(small(eval_every=1000, probe_every=1000))     # no eval or probe to end a block early
    trainer.step()
    last_good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    _blow_up_every_update(trainer, float("inf"))
    returned = [trainer.step() for _ in range(RECORD_BLOCK - 1)]
    # Steps 2 .. RECORD_BLOCK-1 return records (the host has not looked yet); the block's end, None.
    assert returned[-1] is None and all(r is not None for r in returned[:-1])
    assert "weights became non-finite at step 2" in trainer.divergence_message
    assert trainer.steps_done == 1 and len(trainer.history) == 1
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, last_good[k])


def test_reading_the_history_finds_a_divergence_before_the_block_ends():
    trainer = Trainer(small())
    trainer.step()
    _blow_up_every_update(trainer, float("nan"))
    assert trainer.step() is not None and not trainer.diverged     # gone wrong on the device, not yet known
    view = trainer.history.view()                                  # a page reads the run
    assert list(view.steps["step"]) == [1]                         # the bad step is not shown
    assert trainer.step() is None and trainer.diverged and trainer.steps_done == 1
    assert "at step 2" in trainer.divergence_message


def test_history_keeps_at_most_max_traces_and_states_its_memory():
    trainer = Trainer(small(probe_every=1), max_traces=6)
    for _ in range(40):
        trainer.step()
    view = trainer.history.view()
    steps = [s for s, _ in view.traces]
    assert len(steps) <= 6 and steps[0] == 0 and steps[-1] == 40 and steps == sorted(steps)
    one_trace = trace_nbytes(view.traces[-1][1])
    # The bound: max_traces traces plus about 4 bytes per scalar field per recorded step
    # (columns double when full, so at most twice what is in use).
    P = len(trainer.param_names)
    scalar_bound = 2 * 40 * (8 + 4 * (5 + 2 * P)) + 2 * 1 * (8 + 4 * 2) + 4096
    assert trainer.history.nbytes <= 6 * one_trace + scalar_bound
    assert len(trainer.history) == 40


def test_history_thinning_keeps_start_and_recent_past():
    history = History(["w"], max_traces=4)
    trace = Trainer(small()).probe()
    for step in range(0, 100, 10):
        history.record_trace(step, trace)
    steps = [s for s, _ in history.view().traces]
    assert len(steps) <= 4 and steps[0] == 0 and steps[-1] == 90


# --- Run -------------------------------------------------------------------------------------

def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_status_is_a_str_enum_that_prints_and_compares_as_its_string():
    assert [s.value for s in Status] == ["idle", "running", "paused", "finished", "diverged", "stopped", "error"]
    assert Status.RUNNING == "running" and str(Status.DIVERGED) == "diverged" and f"{Status.PAUSED}" == "paused"
    assert Status("finished") is Status.FINISHED


def test_run_pause_really_stops_steps_and_resume_continues():
    run = Run(small())
    try:
        assert run.snapshot().status is Status.IDLE
        run.start()
        snap = run.snapshot()
        assert snap.running and not snap.ended
        assert _wait_for(lambda: run.snapshot().step >= 5)
        run.pause()
        assert run.wait_until_idle(5.0)
        paused_at = run.snapshot().step
        time.sleep(0.5)
        snap = run.snapshot()
        assert snap.step == paused_at and snap.status == "paused"
        assert not snap.running and not snap.ended
        run.resume()
        assert _wait_for(lambda: run.snapshot().step >= paused_at + 5)
        steps = run.snapshot().history.steps["step"]
        assert list(steps) == list(range(1, len(steps) + 1))   # continued from the same step
    finally:
        run.stop()


def does_exactly_n_steps(run: Run, wait: float = 20.0) -> None:
    """step(7), then step(3): 7 steps, paused, then 10 (tests/test_worker.py: in a worker too)."""
    run.step(7)
    assert run.wait_until_idle(wait)
    assert run.snapshot().step == 7 and run.snapshot().status == "paused"
    run.step(3)
    assert run.wait_until_idle(wait)
    time.sleep(0.2)
    assert run.snapshot().step == 10


def test_run_step_n_does_exactly_n_steps():
    run = Run(small())
    try:
        does_exactly_n_steps(run)
    finally:
        run.stop()


def test_run_finishes_at_its_step_budget():
    run = Run(small(steps=15))
    run.start()
    assert _wait_for(lambda: run.snapshot().status == "finished")
    snap = run.snapshot()
    assert snap.step == 15 and snap.ended and not snap.running
    run.stop()


def test_run_reports_divergence_as_its_status():
    run = Run(small(cell="rnn-relu", seq_len=30, hidden=64, optimizer="sgd", lr=10.0))
    run.start()
    assert _wait_for(lambda: run.snapshot().status == "diverged")
    snap = run.snapshot()
    assert "learning rate" in snap.message and snap.ended and not snap.running
    run.stop()


def test_run_pauses_when_nobody_polls_and_resumes_from_the_same_step():
    run = Run(small(), idle_timeout=0.3)
    run.start()
    run.join(10.0)
    assert not run._thread.is_alive()
    snap = run.snapshot()
    assert snap.status == "paused" and "nobody looked" in snap.message
    run.idle_timeout = 60.0
    run.resume()
    assert _wait_for(lambda: run.snapshot().step > snap.step)
    assert run.snapshot().history.steps["step"][snap.step] == snap.step + 1   # no step lost or redone
    run.stop()


def test_run_stop_ends_the_thread_and_says_so():
    run = Run(small(device="cuda"))            # on a CPU-only machine this starts with a warning
    run.start()
    assert _wait_for(lambda: run.snapshot().step >= 3)
    snap = run.snapshot()
    seconds = snap.history.steps["seconds"]
    assert snap.steps_per_second == pytest.approx(len(seconds[-50:]) / seconds[-50:].sum())
    run.stop()
    assert not run._thread.is_alive()
    snap = run.snapshot()
    assert snap.status == "stopped" and snap.message == "Stopped." and snap.ended


# --- learning ------------------------------------------------------------------------------

def _train_adding(cell, seq_len, steps=600):
    trainer = Trainer(Config(task="adding", cell=cell, seq_len=seq_len, hidden=32, batch_size=32, lr=0.01,
                             steps=steps, probe_every=10**5, eval_every=10**5))
    for _ in range(steps):
        trainer.step()
    return trainer.evaluate()[0], trainer.task.baseline_loss


@pytest.mark.slow
def test_gru_solves_the_adding_problem_while_a_tanh_rnn_at_t100_stays_at_baseline():
    gru_loss, baseline = _train_adding("gru", 50)
    rnn_loss, _ = _train_adding("rnn", 100)
    assert gru_loss < 0.1 * baseline          # measured: about 0.0005 vs baseline 0.167
    assert rnn_loss > 0.12                    # measured: about 0.169


def test_run_turns_an_exception_into_an_error_status_with_its_message():
    trainer = Trainer(small())

    def broken(n, generator):
        raise RuntimeError("the data source went away")

    trainer.task.sample = broken
    run = Run(trainer.config, trainer=trainer)
    run.start()
    assert _wait_for(lambda: run.snapshot().status == "error")
    snap = run.snapshot()
    assert "the data source went away" in snap.message and snap.ended and not snap.running
    run.stop()


def test_history_keeps_its_traces_within_the_byte_budget():
    trainer = Trainer(small(probe_every=1))
    one_trace = trace_nbytes(trainer.history.latest_trace()[1])
    history = History(trainer.param_names, max_traces=100, max_trace_bytes=5 * one_trace)
    for step in range(30):
        history.record_trace(step, trainer.history.latest_trace()[1])
        assert history.nbytes - 2048 <= 5 * one_trace       # scalar columns are empty but allocated
    steps = [s for s, _ in history.view().traces]
    assert steps[0] == 0 and steps[-1] == 29 and 2 < len(steps) <= 5


def test_config_refuses_a_probe_trace_too_large_for_a_shared_server():
    with pytest.raises(ValueError, match="probe trace would hold about .* MB"):
        Config(seq_len=1000, hidden=512, layers=4, probe_count=64)
    assert Config(seq_len=1000, hidden=256, probe_count=8, batch_size=16).probe_trace_bytes < 64 * 2**20


def test_run_traces_hand_built_sequences_between_steps_while_training():
    run = Run(small())
    try:
        run.start()
        x, y = run.trainer.task.sample(3, torch.Generator().manual_seed(9))
        traces = [run.trace(x, y) for _ in range(5)]
        assert all(t.output.shape == (3, 12, 8) and np.isfinite(t.layers[0].grad_hidden).all() for t in traces)
        assert _wait_for(lambda: run.snapshot().step >= 5)
        run.pause()
        run.wait_until_idle()
        np.testing.assert_allclose(run.trace(x, y).output, run.trainer.trace(x, y).output)
    finally:
        run.stop()


# --- no host synchronisation in a training step (issue 13) -----------------------------------

READS = ("item", "cpu", "numpy", "tolist", "__bool__", "__float__", "__int__", "__index__")


@pytest.fixture
def host_reads(monkeypatch):
    """Every way a tensor's value reaches the host (each a synchronisation on a GPU), counted:
    the CPU stands in for the device, and the counter for torch.cuda's sync debug mode."""
    counted = []
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            counted.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counting)
    return counted


# (RMSprop is left out: it has no fused kernel, so on the CPU its step counters are host
# numbers it reads; on a GPU they stay there, capturable, as tests/gpu_check.py shows.)
@pytest.mark.parametrize("changes", [dict(), dict(cell="gru", optimizer="sgd", clip=0.5, l1=1e-4),
                                     dict(cell="peephole", task="brackets", optimizer="momentum"),
                                     dict(cell="cifg", task="copy", layers=2, dropout=0.2, weight_decay=1e-4)])
def test_only_the_last_step_of_a_block_reads_the_device(host_reads, changes):
    trainer = Trainer(small(eval_every=4 * RECORD_BLOCK, probe_every=4 * RECORD_BLOCK, **changes))
    reads_per_step = []
    for _ in range(3 * RECORD_BLOCK):
        host_reads.clear()
        assert trainer.step() is not None
        reads_per_step.append(len(host_reads))
    blocks = np.array(reads_per_step).reshape(3, RECORD_BLOCK)
    assert (blocks[:, :-1] == 0).all(), f"host reads per step: {reads_per_step}"
    assert (blocks[:, -1] > 0).all()               # the block's records come to the host at its end
    assert len(trainer.history) == 3 * RECORD_BLOCK
