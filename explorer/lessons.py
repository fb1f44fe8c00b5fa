"""Lessons: presets that reproduce a classic result about recurrent networks in minutes.

Each lesson trains one to three variants (a tanh RNN, an LSTM and a GRU, say) side by side,
says what to press, which chart to look at and what to expect, names the claim's source, and
checks the claim on the variants' real numbers once they have trained: `check` takes each
variant's Trainer after its `config.steps` steps, keyed by the variant's label, and returns
(whether the claim holds, one line with the numbers).

Every config has a fixed seed and runs on the CPU, so on one machine, with one torch thread
(as the app sets on a two-core machine), a lesson trains the same curves every time. Another
machine's kernels round differently and another seed draws other weights, so a claim is only
made where it held on at least 9 of seeds 0-9, with this machine's kernels and with ATen's and
oneDNN's plainest ones (`held`, shown on the lesson's page; docs/LESSONS.md has the table and
`python -m explorer lesson KEY --seeds ...` judges any seed). tests/test_lessons.py checks every
claim on the lesson's own seed and two others. Each lesson states its measured time on two
cores (`seconds_2_cores`, docs/LESSONS.md's table): idle, about a minute at most; beside other
work, as the app trains them, up to a few minutes. Plain library: nothing here imports Streamlit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .config import Config

if TYPE_CHECKING:
    import pandas as pd

    from .trace import Trace
    from .trainer import Trainer


@dataclass(frozen=True)
class Variant:
    label: str          # short, e.g. "tanh RNN", "LSTM", "forget bias 0"
    config: Config


@dataclass(frozen=True)
class Lesson:
    key: str            # url-safe id
    title: str
    variants: tuple[Variant, ...]   # 1 to 3 configs compared side by side
    press: str          # what to press
    look: str           # which chart to look at
    expect: str         # what the class should see
    source: str         # the claim's source
    check: Callable[[dict[str, "Trainer"]], tuple[bool, str]]
    held: tuple[int, int]        # seeds of 0-9 the claim held on: native kernels, plain ones (docs/LESSONS.md)
    # Seconds to the verdict on 2 cores, measured (docs/LESSONS.md): idle, its variants one after
    # another; busy, as the app trains them (two at a time) beside other work.
    seconds_2_cores: tuple[int, int]
    what_if: str | None = None   # a clamp (JSON, explorer.clamp) the Gates page's what-if opens with on Explore

    @property
    def how_often(self) -> str:
        return how_often(self.held)

    @property
    def how_long(self) -> str:
        """What the lesson's page says of its time: measured, not promised."""
        idle, busy = self.seconds_2_cores
        return (f"{about(idle).capitalize()} on 2 idle cores ({idle} s measured, its variants one after "
                f"another); {about(busy)} ({busy} s) on 2 busy ones, the app training them two at a time beside "
                f"other work. A browser drawing the page on the same machine takes its share too.")

    @property
    def how_long_briefly(self) -> str:
        idle, busy = self.seconds_2_cores
        return f"{about(idle)} on 2 idle cores, {about(busy)} on busy ones"


def about(seconds: float) -> str:
    """A measured time in words, to the precision a class plans with."""
    if seconds < 10:
        return "under 10 seconds"
    if seconds < 50:
        return f"about {5 * round(seconds / 5)} seconds"
    minutes = round(seconds / 60)
    return "about a minute" if minutes == 1 else f"about {minutes} minutes"


def how_often(held: tuple[int, int]) -> str:
    """What a lesson's page says of its claim's record over seeds 0-9 (tests/lessons_table.py)."""
    native, plain = held
    if native == plain:
        return (f"Checked on seeds 0–9: the claim held on {native} of 10, with this machine's fast CPU kernels "
                f"and with the plainest ones alike.")
    return (f"Checked on seeds 0–9: the claim held on {native} of 10 with this machine's fast CPU kernels and "
            f"on {plain} of 10 with the plainest ones.")


class _NotReady(Exception):
    """A check needs numbers a run has not recorded (yet): the claim cannot be judged."""


# -- reading a trained run ----------------------------------------------------------------------

def _evals(trainer: "Trainer", label: str) -> dict[str, np.ndarray]:
    evals = trainer.history.view().evals
    if not len(evals["step"]):
        raise _NotReady(f"{label} has no held-out loss recorded yet (step {trainer.steps_done})")
    return evals


def _final(trainer: "Trainer", label: str, column: str = "eval_loss") -> float:
    """The newest held-out loss (or metric) of a run."""
    return float(_evals(trainer, label)[column][-1])


def _first_below(trainer: "Trainer", label: str, level: float) -> int | None:
    """The first step whose held-out loss is below level, None if none is."""
    evals = _evals(trainer, label)
    below = evals["step"][evals["eval_loss"] < level]
    return int(below[0]) if len(below) else None


def _newest_trace(trainer: "Trainer", label: str) -> tuple[int, "Trace"]:
    newest = trainer.history.latest_trace()
    if newest is None:
        raise _NotReady(f"{label} has no probe trace recorded yet")
    return newest


def _decay(trace: "Trace", layer: int = 0) -> tuple[float, float]:
    """‖∂L/∂h_t‖ averaged over the probe sequences at the last step and at t = 0."""
    grad = trace.layers[layer].grad_hidden.astype(np.float64).mean(axis=0)   # (time,)
    return float(grad[-1]), float(grad[0])


def _ratio(last: float, first: float) -> float:
    return last / first if first > 0 else math.inf


def _times(ratio: float) -> str:
    return "∞ (‖∂L/∂h_0‖ underflowed to 0 in float32)" if math.isinf(ratio) else f"{ratio:.3g}"


def _step(step: int | None) -> str:
    return "never" if step is None else f"at step {step}"


def _checked(labels: tuple[str, ...], claim: Callable[[dict[str, "Trainer"]], tuple[bool, str]]):
    """claim, after checking it got a Trainer for each label; missing numbers make a 'no'."""
    def check(trainers: dict[str, "Trainer"]) -> tuple[bool, str]:
        if set(trainers) != set(labels):
            raise ValueError(f"this lesson's check needs a Trainer for each of {', '.join(labels)}; "
                             f"got {', '.join(trainers) or 'none'}")
        try:
            return claim(trainers)
        except _NotReady as missing:
            return False, f"Cannot judge the claim: {missing}. Train every variant to its last step."
    return check


# -- 1. vanishing gradients --------------------------------------------------------------------
# The adding problem at T = 100: only two of the 100 steps matter, one in each half, so the
# loss reaches the first one only through ~50-99 steps of recurrence.

# 2,500 steps, not 1,500: over seeds 0-9 the LSTM first fell below 0.05 at step 700-1,400, and
# seed 3's at 1,950 (lr 0.03 or a forget bias of 2 did not bring the slowest seed under 1,400).
_VANISHING = dict(task="adding", seq_len=100, hidden=32, batch_size=32, optimizer="adam", lr=0.02,
                  steps=2500, seed=0, eval_every=50, probe_every=100, device="cpu")


def _check_vanishing(t: dict[str, "Trainer"]) -> tuple[bool, str]:
    loss = {label: _final(trainer, label) for label, trainer in t.items()}
    ratio, probed = {}, {}
    for label, trainer in t.items():
        probed[label], trace = _newest_trace(trainer, label)
        ratio[label] = _ratio(*_decay(trace))
    baseline = t["tanh RNN"].task.baseline_loss
    left = {label: _first_below(t[label], label, 0.05) for label in ("LSTM", "GRU")}
    holds = (loss["tanh RNN"] > 0.12 and loss["LSTM"] < 0.05 and loss["GRU"] < 0.05
             and ratio["tanh RNN"] > 100 and ratio["LSTM"] < 1000 and ratio["GRU"] < 1000)
    T = t["tanh RNN"].config.seq_len
    return holds, (
        f"Held-out MSE (baseline {baseline:.3f}): tanh RNN {loss['tanh RNN']:.3f}, "
        f"LSTM {loss['LSTM']:.4f} (first below 0.05 {_step(left['LSTM'])}), "
        f"GRU {loss['GRU']:.4f} ({_step(left['GRU'])}). ‖∂L/∂h_t‖ at t = {T - 1} over t = 0 "
        f"(mean over the probe sequences, newest probe, step {probed['tanh RNN']}): "
        f"tanh RNN {_times(ratio['tanh RNN'])}, LSTM {_times(ratio['LSTM'])}, GRU {_times(ratio['GRU'])}.")


VANISHING = Lesson(
    key="vanishing",
    title="Vanishing gradients: a tanh RNN against an LSTM and a GRU",
    variants=(Variant("tanh RNN", Config(cell="rnn", **_VANISHING)),
              Variant("LSTM", Config(cell="lstm", **_VANISHING)),
              Variant("GRU", Config(cell="gru", **_VANISHING))),
    press="Train all: the three cells learn the adding problem with T = 100 (sum the two marked "
          "numbers of a 100-step sequence), same data, same settings, 2,500 steps each.",
    look="the held-out loss against the 'predict 1' line (MSE 1/6); then, for each variant, the "
         "Gradients page: ‖∂L/∂h_t‖ against t and its heatmap over training.",
    expect="The tanh RNN never leaves the 1/6 line, and its ‖∂L/∂h_t‖ falls to nothing long before "
           "t = 0; the GRU (after about 200 steps) and the LSTM (after 700 to 2,000, by the seed) drop to "
           "almost zero loss, and as they do their gradient at t = 0 comes up to within a factor of "
           "5–250 of the last step's.",
    source="Hochreiter 1991; Bengio, Simard & Frasconi 1994; Hochreiter & Schmidhuber 1997 (LSTM); "
           "Cho et al. 2014 (GRU); the adding problem as in Arjovsky, Shah & Bengio 2016.",
    check=_checked(("tanh RNN", "LSTM", "GRU"), _check_vanishing),
    held=(10, 10),
    seconds_2_cores=(65, 359),
)


# -- 2. the forget-gate bias -------------------------------------------------------------------
# SGD with momentum, not Adam: Adam's steps are about lr whatever the gradient, so the bias
# walks away from its starting value within ~100 steps and the difference fades (measured:
# with Adam, lr 0.01, T = 50, bias 0 even escaped first). Clipping at 1 keeps SGD at lr 0.2 stable.

_FORGET = dict(task="adding", seq_len=30, cell="lstm", hidden=32, batch_size=32, optimizer="momentum",
               lr=0.2, clip=1.0, steps=2500, seed=0, eval_every=25, probe_every=250, device="cpu")


def _first_trace(trainer: "Trainer", label: str) -> "Trace":
    """The probe of the untrained network (History always keeps a run's first trace)."""
    traces = trainer.history.view().traces
    if not traces or traces[0][0] != 0:
        raise _NotReady(f"{label} has no probe of its untrained network")
    return traces[0][1]


def _check_forget_bias(t: dict[str, "Trainer"]) -> tuple[bool, str]:
    zero, one = t["forget bias 0"], t["forget bias 1"]
    half = zero.task.baseline_loss / 2
    s0, s1 = _first_below(zero, "forget bias 0", half), _first_below(one, "forget bias 1", half)
    f0 = float(_newest_trace(zero, "forget bias 0")[1].layers[0].gates["forget"].mean())
    f1 = float(_newest_trace(one, "forget bias 1")[1].layers[0].gates["forget"].mean())
    d0 = _ratio(*_decay(_first_trace(zero, "forget bias 0")))
    d1 = _ratio(*_decay(_first_trace(one, "forget bias 1")))
    holds = s1 is not None and (s0 is None or s1 < s0) and f1 > f0 and d1 < d0
    T = zero.config.seq_len
    return holds, (
        f"Held-out MSE first below half the baseline ({half:.3f}): bias 1 {_step(s1)}, bias 0 {_step(s0)}; "
        f"final MSE bias 1 {_final(one, 'forget bias 1'):.4f}, bias 0 {_final(zero, 'forget bias 0'):.4f}. "
        f"Mean forget gate, newest probe: bias 1 {f1:.2f}, bias 0 {f0:.2f}. Untrained, ‖∂L/∂h_t‖ at "
        f"t = {T - 1} over t = 0: bias 1 {_times(d1)}, bias 0 {_times(d0)}.")


FORGET_BIAS = Lesson(
    key="forget-bias",
    title="The forget gate's bias: start it at 1, not 0",
    variants=(Variant("forget bias 0", Config(forget_bias=0.0, **_FORGET)),
              Variant("forget bias 1", Config(forget_bias=1.0, **_FORGET))),
    press="Train all: two LSTMs that differ only in the forget gate's initial bias learn the adding "
          "problem (T = 30) with SGD and momentum, 2,500 steps each.",
    look="the held-out loss (which one leaves the 1/6 line first); then, for each variant, the Gates page "
         "(the forget gate's heatmap and the saturation scatter) and the Gradients page's heatmap over "
         "training, whose first row is the untrained network.",
    expect="With bias 1 the forget gate starts at σ(1) ≈ 0.73 instead of 0.5, so the cell keeps what it "
           "stored and, untrained, ‖∂L/∂h_t‖ fades about 10³ times from the last step to t = 0 instead of "
           "10⁷; that LSTM leaves the baseline earlier (by 100 to 900 steps, about 500 on most seeds), its "
           "forget gate more open to the end (about 0.7 against 0.5).",
    source="Gers, Schmidhuber & Cummins 2000 (Learning to forget); Jozefowicz, Zaremba & Sutskever 2015.",
    check=_checked(("forget bias 0", "forget bias 1"), _check_forget_bias),
    held=(10, 10),
    seconds_2_cores=(10, 56),
)


# -- 3. exploding gradients and clipping -------------------------------------------------------
# Plain SGD at lr 0.6 on a tanh RNN: the recurrent weights' gradient jumps a thousandfold within
# ~15 steps, the update throws the weights off, and the loss overflows. Measured on seeds 0-3:
# every unclipped run diverged by step 19 and every clipped one trained (MSE 0.025-0.045 at step 600).

_CLIPPING = dict(task="series", series="sine", seq_len=50, cell="rnn", hidden=32, batch_size=32,
                 optimizer="sgd", lr=0.6, steps=500, seed=0, eval_every=25, probe_every=100, device="cpu")


def _check_clipping(t: dict[str, "Trainer"]) -> tuple[bool, str]:
    free, clipped = t["no clipping"], t["clip 1"]
    baseline = free.task.baseline_loss
    view = free.history.view()
    norms, losses = view.steps["grad_norm"], view.steps["loss"]
    if not len(norms):
        raise _NotReady("'no clipping' has not taken a step")
    blew_up = free.diverged or float(losses.max()) > 100 * baseline
    spike = float(norms.max()) / float(norms[0])
    first = int(np.argmax(norms > 100 * norms[0])) if spike > 100 else None
    leader = None if first is None else view.param_names[int(np.argmax(view.steps["param_grad_norm"][first]))]
    final = _final(clipped, "clip 1")
    recurrent = leader is not None and leader.startswith("rnn.weight_hh")
    holds = blew_up and spike > 1000 and recurrent and not clipped.diverged and final < baseline / 2
    outcome = (f"diverged at step {free.steps_done + 1}" if free.diverged
               else f"did not diverge; its largest training loss was {losses.max():.3g}")
    return holds, (
        f"No clipping: {outcome}; its gradient norm rose from {norms[0]:.3g} at step 1 to {norms.max():.3g}"
        + (f", {leader} leading the first jump past 100× (step {first + 1})" if leader else "")
        + f". Clip 1: {'diverged' if clipped.diverged else 'trained'} to held-out MSE {final:.3f} "
          f"(repeat-last-value baseline {baseline:.3f}).")


CLIPPING = Lesson(
    key="clipping",
    title="Exploding gradients, and clipping",
    variants=(Variant("no clipping", Config(clip=0.0, **_CLIPPING)),
              Variant("clip 1", Config(clip=1.0, **_CLIPPING))),
    press="Train all: the same tanh RNN learns to forecast sine waves with plain SGD at a high learning "
          "rate (0.6), once as it is and once with the gradient's norm clipped to 1.",
    look="the global gradient-norm chart (log axis, the clip line at 1) and the per-parameter gradient "
         "norms, for each variant; and the held-out loss.",
    expect="Within about 15 steps the unclipped run's gradient norm shoots up by many orders of magnitude, "
           "led by the recurrent weights W_hh, and the run stops as diverged; the clipped run, whose every "
           "step is at most lr × 1 long, trains on to well below 'repeat the last value'.",
    source="Pascanu, Mikolov & Bengio 2013 (On the difficulty of training recurrent neural networks).",
    check=_checked(("no clipping", "clip 1"), _check_clipping),
    held=(10, 10),
    seconds_2_cores=(2, 16),
)


# -- 4. the LSTM/GRU tutorial's network (docs/TUTORIAL.md) -------------------------------------

_DIGITS = Config(task="digits", digits_source="digits8", cell="lstm", layers=3, hidden=50, optimizer="adam",
                 lr=0.003, batch_size=64, steps=400, seed=0, eval_every=25, probe_every=50, device="cpu")


def _check_digits(t: dict[str, "Trainer"]) -> tuple[bool, str]:
    trainer = t["3 × LSTM(50)"]
    accuracy = _final(trainer, "3 × LSTM(50)", "eval_metric")
    loss = _final(trainer, "3 × LSTM(50)")
    holds = accuracy > 0.7
    return holds, (f"Held-out accuracy after {trainer.steps_done} steps: {accuracy:.1%} (uniform guess 10%); "
                   f"cross-entropy {loss:.3f} nats (guess {trainer.task.baseline_loss:.3f}).")


TUTORIAL_DIGITS = Lesson(
    key="tutorial-digits",
    title="The LSTM/GRU tutorial's network: three LSTM(50) layers read digits row by row",
    variants=(Variant("3 × LSTM(50)", _DIGITS),),
    press="Train all: three stacked LSTM layers of 50 units, Adam and cross-entropy read each 8×8 "
          "handwritten digit one pixel row per step (8 steps) and name it at the end, 400 steps.",
    look="the metric chart (held-out accuracy against the 10% of a guess); then the Gates page with a "
         "probe digit, layer by layer.",
    expect="Held-out accuracy climbs past 70% within a few hundred steps (86–93% at the end, by the "
           "seed), from 10% for a guess.",
    source="The LSTM/GRU tutorial this project follows, docs/TUTORIAL.md (3 × LSTM(50), Adam, "
           "cross-entropy, MNIST read row by row); data: UCI "
           "optical digits, Alpaydin & Kaynak 1998.",
    check=_checked(("3 × LSTM(50)",), _check_digits),
    held=(10, 10),
    seconds_2_cores=(3, 23),
)


# -- 5. what the cells count -------------------------------------------------------------------

# 1,000 steps, not 600: at 600 some seeds' models were still at 51-87% held-out accuracy after
# t = 20 (with the plainest kernels), too unsure of the count for the forget-gate lesson to wipe it.
_COUNTING = Config(task="brackets", seq_len=40, cell="lstm", hidden=16, optimizer="adam", lr=0.01,
                   batch_size=32, steps=1000, seed=0, eval_every=25, probe_every=50, device="cpu")


def _check_counting(t: dict[str, "Trainer"]) -> tuple[bool, str]:
    trainer = t["LSTM"]
    step, trace = _newest_trace(trainer, "LSTM")
    depth = trainer.probe_set[1].cpu().numpy()                                 # (batch, time) depths
    from .analysis import target_correlations         # Pearson r with the depth, over every (sequence, step)
    r_h = target_correlations(trace.layers[0].hidden, depth)
    r_c = target_correlations(trace.layers[0].cell, depth)
    uh, uc = int(np.argmax(np.abs(r_h))), int(np.argmax(np.abs(r_c)))
    strong = int((np.abs(r_h) > 0.8).sum())
    accuracy = _final(trainer, "LSTM", "eval_metric")
    holds = abs(r_h[uh]) > 0.8
    return holds, (
        f"Over the {depth.shape[0]} probe sequences (probe at step {step}): unit {uh}'s h_t has Pearson "
        f"r = {r_h[uh]:+.3f} with the depth ({strong} of {len(r_h)} units beyond |r| 0.8); unit {uc}'s "
        f"c_t has r = {r_c[uc]:+.3f}. Held-out accuracy {accuracy:.1%} "
        f"(majority depth {trainer.task.baseline_metric:.1%}).")


COUNTING = Lesson(
    key="counting",
    title="What the cells count: units that track bracket depth",
    variants=(Variant("LSTM", _COUNTING),),
    press="Train all: an LSTM of 16 units reads strings of 40 brackets and outputs the nesting depth after "
          "each one, 1,000 steps.",
    look="the Gates page with a probe sequence: the h_t and c_t heatmaps under the brackets, and 'Find units "
         "that are on in a time range' over a deeply nested stretch.",
    expect="Some units rise and fall with the depth, step by step, like a counter: their h_t correlates with "
           "the depth at |r| ≈ 0.9 (c_t, which tanh does not squash, closer still).",
    source="Karpathy, Johnson & Fei-Fei 2015 (Visualizing and understanding recurrent networks).",
    check=_checked(("LSTM",), _check_counting),
    held=(10, 10),
    seconds_2_cores=(4, 38),
)


# -- 5b. what the forget gate is for ---------------------------------------------------------

# The step the what-if wipes: the middle of the 40 brackets, so a count is carried across it.
_WIPED_STEP = _COUNTING.seq_len // 2


def _check_forget_gate(t: dict[str, "Trainer"]) -> tuple[bool, str]:
    from .whatif import compare

    trainer = t["LSTM"]
    x, y = trainer.eval_set                                                    # the held-out sequences
    model, task = trainer.model, trainer.task
    after, unchanged = {}, True
    for value in (0.0, 1.0):
        clamp = {"forget": {"value": value, "steps": (_WIPED_STEP, _WIPED_STEP + 1)}}
        right = compare(model, task, x, y, clamp).correct                      # (batch, time) each
        before_free, before = (right[v][:, :_WIPED_STEP].mean() for v in ("as trained", "clamped"))
        unchanged &= bool(before == before_free)       # a clamp cannot reach back in time
        after["as trained"] = float(right["as trained"][:, _WIPED_STEP:].mean())
        after[value] = float(right["clamped"][:, _WIPED_STEP:].mean())
    # Over seeds 0-9 with both kernel sets (1,000 steps), shutting cost 38-57 points and opening
    # 1-11. "Opening costs under 10 points" failed on 2 seeds of 10 at 600 steps (a model at 92%
    # lost 16), so the claim is the comparison the lesson makes: shutting costs over 25 points,
    # and over twice what opening does.
    shut, opened = after["as trained"] - after[0.0], after["as trained"] - after[1.0]
    holds = unchanged and shut > 0.25 and opened < shut / 2
    return holds, (
        f"Over the {len(x)} held-out sequences, from t = {_WIPED_STEP} on: per-step accuracy "
        f"{after['as trained']:.1%} as trained; {after[0.0]:.1%} with every forget gate shut (f = 0) at "
        f"t = {_WIPED_STEP} alone; {after[1.0]:.1%} with it held wide open (f = 1) there instead. Before "
        f"t = {_WIPED_STEP} nothing changes ({before_free:.1%}). The majority depth scores "
        f"{task.baseline_metric:.1%}.")


FORGET_GATE = Lesson(
    key="forget-gate",
    title="What is the forget gate for? Shut it for one step and the count is lost",
    variants=(Variant("LSTM", _COUNTING),),
    press=f"Train all: the bracket-counting LSTM of the lesson before (16 units, 40 brackets, 1,000 steps). "
          f"Then press Explore LSTM: the Gates page opens with its what-if on every unit's forget gate held at "
          f"0 at step {_WIPED_STEP} alone. Then move 'Held at' to 1.",
    look="the what-if panel: the predicted depth against the true depth, as trained and clamped, and the "
         "accuracy over the probe sequences.",
    # The check's accuracy is over the held-out sequences from the clamped step on; the what-if
    # panel's over every step of the probe sequences. Measured on seeds 0-9: shut, the panel read
    # 65-90% over its 8 sequences and 52-100% on sequence 0; held open, 94-100% (0-3.4 points
    # below as trained). tests/test_lessons.py checks the lesson's own seed reads in that range.
    expect=f"Shut for that one step, the cells keep nothing of c_{{t−1}}: the depth predicted after "
           f"t = {_WIPED_STEP} goes wrong and stays wrong: over the held-out sequences, per-step accuracy from "
           f"there falls from 93–100% to 42–62% (by the seed; the verdict gives this run's). The what-if panel "
           f"counts differently, so it reads higher: every one of the {_COUNTING.seq_len} steps of its "
           f"{_COUNTING.probe_count} probe sequences, the {_WIPED_STEP} before the clamp included, which a clamp "
           f"cannot change. There the same clamp takes accuracy from about 100% to 65–90% over the "
           f"{_COUNTING.probe_count} sequences, and to anywhere from 50% to 100% on a single one. The counting "
           f"units hold their forget gate near 0.8, not 1, so forcing it fully open for one step costs far less "
           f"(1 to 11 points from t = {_WIPED_STEP} on; 0 to 4 on the panel). Remembering is the forget gate's "
           f"job: f ≈ 1 is 'keep', and the state carries the count from step to step only through it.",
    source="Gers, Schmidhuber & Cummins 2000 (Learning to forget: continual prediction with LSTM); "
           "Greff et al. 2017 (removing the forget gate hurts most of the LSTM's parts).",
    check=_checked(("LSTM",), _check_forget_gate),
    held=(10, 10),
    seconds_2_cores=(4, 41),
    what_if=f'{{"forget": {{"value": 0, "steps": [{_WIPED_STEP}, {_WIPED_STEP + 1}]}}}}',
)


# -- 5c. where the learning comes from in time ------------------------------------------------
# The adding problem at T = 100 again, from the weights' side: how much of each recurrent
# weight gradient comes from the first marker's step, the one the answer needs from far back.

def _first_marker_share(trainer: "Trainer", trace: "Trace", block: str) -> float:
    """The mean over the probe sequences of block's weight-gradient share at each sequence's
    first marker (explorer.analysis.salient_share)."""
    from .analysis import salient_share
    share = trace.layers[0].weight_grad_share.get(block)
    if share is None:
        raise _NotReady("the probe keeps no weight-gradient share (a run saved before it was kept)")
    x = trainer.probe_set[0].cpu().numpy()
    first = [dict([min(trainer.task.salient_steps(seq).items())]) for seq in x]
    return float(salient_share(share, first).mean())


def _check_learning_in_time(t: dict[str, "Trainer"]) -> tuple[bool, str]:
    rnn, lstm = t["tanh RNN"], t["LSTM"]
    probed, newest = _newest_trace(lstm, "LSTM")
    _, rnn_newest = _newest_trace(rnn, "tanh RNN")
    share = {
        ("tanh RNN", "start"): _first_marker_share(rnn, _first_trace(rnn, "tanh RNN"), "W_hh"),
        ("tanh RNN", "end"): _first_marker_share(rnn, rnn_newest, "W_hh"),
        ("LSTM", "start"): _first_marker_share(lstm, _first_trace(lstm, "LSTM"), "input"),
        ("LSTM", "end"): _first_marker_share(lstm, newest, "input"),
    }
    last = float(rnn_newest.layers[0].weight_grad_share["W_hh"][:, -5:].sum(axis=1).mean())
    # The tanh RNN's bound is 10⁻³, a tenth of a step's fair share: over seeds 0-9 with both kernel
    # sets its trained share reached 1.7e-5 at 1,500 steps (and its last 5 steps held 48-100% of the
    # gradient, so that is reported, not asserted); the LSTM's was 10-27% once it had learned.
    holds = (share["LSTM", "end"] > 0.05 and share["LSTM", "end"] > 1000 * share["LSTM", "start"]
             and max(share["tanh RNN", "start"], share["tanh RNN", "end"]) < 1e-3)
    return holds, (
        f"Share of the recurrent weight gradient from the first marker's step (mean over the probe "
        f"sequences; a step's fair share would be 1%): LSTM input-gate block {share['LSTM', 'start']:.1e} "
        f"untrained, {share['LSTM', 'end']:.1%} at step {probed}; tanh RNN W_hh {share['tanh RNN', 'start']:.1e} "
        f"untrained, {share['tanh RNN', 'end']:.1e} after training, whose last 5 steps hold {last:.1%} of it. "
        f"Held-out MSE: LSTM {_final(lstm, 'LSTM'):.4f}, tanh RNN {_final(rnn, 'tanh RNN'):.3f}.")


LEARNING_IN_TIME = Lesson(
    key="learning-in-time",
    title="Where does the learning come from? The weight gradient, step by step",
    variants=(Variant("tanh RNN", Config(cell="rnn", **_VANISHING)),
              Variant("LSTM", Config(cell="lstm", **_VANISHING))),
    press="Train all: a tanh RNN and an LSTM learn the adding problem with T = 100, 2,500 steps each "
          "(the vanishing-gradient lesson's settings).",
    look="for each variant, the Gradients page's 'Where the learning comes from in time' with a probe "
         "sequence: the share of W_hh's gradient at every step, the markers drawn on the axis (the LSTM's "
         "input-gate block), and its heatmap over training.",
    expect="dL/dW_hh is a sum over the steps. Untrained, both take almost all of it from the last few "
           "steps: the first marker's share is 10⁻⁷–10⁻⁵ for the LSTM and 10⁻¹¹ or less for the RNN. The "
           "tanh RNN stays that way (under 10⁻⁴; its last 5 steps hold 70–100% of it), so it never learns "
           "what the first marker says. As the LSTM learns, the first marker's step alone comes to give its "
           "input gate some 10–27% of its gradient: the learning signal now reaches the step where the value "
           "was written.",
    source="Cashman et al. 2018 (RNNbow: visualizing learning via backpropagation gradients in RNNs); "
           "Hochreiter & Schmidhuber 1997; the adding problem as in Arjovsky, Shah & Bengio 2016.",
    check=_checked(("tanh RNN", "LSTM"), _check_learning_in_time),
    held=(10, 10),
    seconds_2_cores=(23, 145),
)


# -- 6. GRU against LSTM -----------------------------------------------------------------------

_TEXT = dict(task="text", seq_len=50, hidden=64, batch_size=32, optimizer="adam", lr=0.01, steps=500,
             seed=0, eval_every=25, probe_every=100, device="cpu")


def _check_gru_lstm(t: dict[str, "Trainer"]) -> tuple[bool, str]:
    baseline = t["LSTM"].task.baseline_loss
    loss = {label: _final(trainer, label) for label, trainer in t.items()}
    bits = {label: _final(trainer, label, "eval_metric") for label, trainer in t.items()}
    holds = all(value < 0.8 * baseline for value in loss.values())
    ranked = sorted(loss, key=loss.get)
    verdict = "All beat it by 20% or more" if holds else "Not all beat it by 20%"
    numbers = ", ".join(f"{label} {loss[label]:.3f} nats ({bits[label]:.2f} bits/char)" for label in t)
    return holds, (
        f"Held-out cross-entropy after {t['LSTM'].steps_done} steps: {numbers}; unigram baseline "
        f"{baseline:.3f}. {verdict}; the {ranked[0]} is lowest, {loss[ranked[-1]] - loss[ranked[0]]:.3f} "
        f"below the {ranked[-1]} here, which one seed and a short run do not settle.")


GRU_VS_LSTM = Lesson(
    key="gru-vs-lstm",
    title="GRU against LSTM (and the LSTM with coupled gates): same task, same budget",
    variants=(Variant("LSTM", Config(cell="lstm", **_TEXT)),
              Variant("GRU", Config(cell="gru", **_TEXT)),
              Variant("CIFG", Config(cell="cifg", **_TEXT))),
    press="Train all: an LSTM, a GRU and a CIFG LSTM (one gate decides both what to forget and what to "
          "write, i_t = 1 − f_t) of 64 units learn to predict the next character of Python's own source, "
          "same data, same settings, 500 steps each.",
    look="the held-out loss against the unigram line, and the metric chart (bits per character); then "
         "the Gates page with the text: the GRU's update gate against the LSTM's forget gate.",
    expect="All three fall well below the unigram baseline (to about two thirds of it) and end close "
           "together. In this short run the GRU ends lowest on every seed tried, 0.07–0.2 nats below the "
           "others: it starts faster, which is not a verdict. Careful comparisons across many tasks find "
           "neither GRU nor LSTM clearly better, and the CIFG, with a quarter fewer recurrent weights, "
           "about as good as the LSTM.",
    source="Chung, Gulcehre, Cho & Bengio 2014 (Empirical evaluation of gated recurrent neural networks); "
           "Jozefowicz, Zaremba & Sutskever 2015; Greff et al. 2017 (LSTM: a search space odyssey).",
    check=_checked(("LSTM", "GRU", "CIFG"), _check_gru_lstm),
    held=(10, 10),
    seconds_2_cores=(18, 67),
)


LESSONS: tuple[Lesson, ...] = (VANISHING, FORGET_BIAS, CLIPPING, TUTORIAL_DIGITS, COUNTING, FORGET_GATE,
                                LEARNING_IN_TIME, GRU_VS_LSTM)
# Keys lessons had before, so links already sent keep working.
ALIASES = {"seed-digits": "tutorial-digits"}


def lesson(key: str) -> Lesson:
    """The lesson with this key (or a former key); ValueError naming the known keys for any other."""
    key = ALIASES.get(key, key)
    for candidate in LESSONS:
        if candidate.key == key:
            return candidate
    raise ValueError(f"unknown lesson {key!r}; known lessons: {', '.join(item.key for item in LESSONS)}")


# -- sweep lessons (the Sweep page) ----------------------------------------------------------------
# A curve rather than a run: the same settings over cells x lengths x seeds (explorer.sweep).

@dataclass(frozen=True)
class SweepLesson:
    key: str
    title: str
    cells: tuple[str, ...]
    lengths: tuple[int, ...]
    seeds: int
    settings: dict                 # every other Config field the runs share
    press: str
    look: str
    expect: str
    source: str
    check: Callable[["pd.DataFrame"], tuple[bool, str]]   # on the sweep's rows (explorer.sweep.COLUMNS)
    held: tuple[int, int]          # as Lesson.held; the verdict for seed s is on seeds s, s+1, s+2

    @property
    def how_often(self) -> str:
        return how_often(self.held) + " (Each verdict is the median over three seeds in a row.)"

    def configs(self, lengths: tuple[int, ...] | None = None,
                seeds: int | Sequence[int] | None = None) -> list[Config]:
        """The lesson's grid (or another: other lengths; seeds 0..n-1 for a number, or the seeds
        listed), in sweep order."""
        from .sweep import grid
        seeds = seeds or self.seeds
        listed = {} if isinstance(seeds, int) else {"seed": list(seeds)}
        return grid({"cell": list(self.cells), "seq_len": list(lengths or self.lengths), **listed},
                    seeds=seeds if isinstance(seeds, int) else None, **self.settings)

    def is_its_sweep(self, configs: list[dict]) -> bool:
        """Whether a stored sweep's configs are this lesson's grid (its claim applies to them)."""
        return [c.to_dict() for c in self.configs()] == configs


def _check_holds_out(frame) -> tuple[bool, str]:
    """At the grid's longest length: the tanh RNN's median held-out loss is at the baseline
    (above 0.9 of it), the LSTM's and the GRU's well below it (under a quarter of it); and at
    its shortest, the tanh RNN solves the task (median under half the baseline): its loss rises
    with the length."""
    done = frame[frame["status"] != "failed"]
    if done.empty:
        return False, "No run of the sweep has finished yet."
    T = int(done["seq_len"].max())
    at = done[done["seq_len"] == T]
    median = at.groupby("cell")["eval_loss"].median()
    missing = [cell for cell in ("rnn", "lstm", "gru") if cell not in median]
    if missing:
        return False, f"No finished run of {', '.join(missing)} at T = {T} yet."
    baseline = float(at["baseline_loss"].iloc[0])
    holds = median["rnn"] > 0.9 * baseline and median["lstm"] < 0.25 * baseline and median["gru"] < 0.25 * baseline
    seeds = at.groupby("cell")["seed"].nunique()
    curve = done[done["cell"] == "rnn"].groupby("seq_len")["eval_loss"].median()
    if len(curve) > 1:
        holds = holds and curve.iloc[0] < 0.5 * baseline
    return bool(holds), (
        f"At T = {T}, median held-out MSE over {seeds['rnn']} seed(s) (baseline {baseline:.3f}): tanh RNN "
        f"{median['rnn']:.3f}, LSTM {median['lstm']:.4f}, GRU {median['gru']:.4f}. The tanh RNN's median by "
        f"length: " + ", ".join(f"T = {t}: {v:.3f}" for t, v in curve.items()) + ".")


HOLDS_OUT = SweepLesson(
    key="holds-out-longest",
    title="Which cell holds out longest? The vanishing gradient as a curve",
    cells=("rnn", "lstm", "gru"),
    lengths=(10, 25, 50, 100),
    seeds=3,
    # The vanishing lesson's settings with 1,500 steps: the claim is on medians over three seeds,
    # which a slow LSTM seed does not move, and 36 runs of 2,500 steps would take five minutes.
    settings={**{k: v for k, v in _VANISHING.items() if k not in ("seq_len", "seed", "probe_every")},
              "steps": 1500},
    press="Run the sweep: a tanh RNN, an LSTM and a GRU learn the adding problem at T = 10, 25, 50 and 100, "
          "three seeds each, with the vanishing-gradient lesson's settings but 1,500 steps (36 runs).",
    look="held-out loss against T, and the gradient ratio ‖∂L/∂h_0‖ / ‖∂L/∂h_T‖ on its log axis; click a "
         "point to open that run on the Gradients page.",
    expect="The tanh RNN solves T = 10 (a median MSE under 0.01) but is on the 'predict 1' line from T = 25 "
           "on, as its gradient ratio falls by orders of magnitude; the LSTM and the GRU stay far below the "
           "line up to T = 100.",
    source="Bengio, Simard & Frasconi 1994; Hochreiter & Schmidhuber 1997; the adding problem as in "
           "Arjovsky, Shah & Bengio 2016.",
    check=_check_holds_out,
    held=(10, 10),
)
SWEEP_LESSONS: tuple[SweepLesson, ...] = (HOLDS_OUT,)
