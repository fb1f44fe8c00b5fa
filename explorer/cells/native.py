"""The time loops of the peephole and CIFG LSTMs with each step's pointwise part compiled
(kernels.c).

PyTorch has no fused kernel for these cells, so each step was the recurrent matmul and up to
ten elementwise operations forward (four backward), each costing its dispatch at this size.
Here each step is the matmul (still PyTorch's) and one C call: measured here, a peephole
training step takes about 0.6 of the time (docs/PERFORMANCE.md, `python -m explorer bench`).

The C file is compiled at first use with the system's C compiler (`CC`, else `cc`) into the
per-user cache directory, named by a hash of the source, flags and compiler, so a change to
any of them compiles again. Without a compiler, or with GATE_EXPLORER_NATIVE=0, `library()`
is None and the cells keep their PyTorch loop, which gives the same numbers. Only float32 on
the CPU takes this path; float64 (the tests' reference precision) and GPUs keep PyTorch's.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from .base import LayerGradients, LayerStates, LayerWeights, input_projection

NATIVE_ENV = "GATE_EXPLORER_NATIVE"     # "0" turns the compiled step off
SOURCE = Path(__file__).with_name("kernels.c")
# -fno-trapping-math lets the loops' clips become vector selects; no -ffast-math (the source says why).
FLAGS = ["-O3", "-std=c11", "-fPIC", "-shared", "-fopenmp-simd", "-fno-trapping-math", "-fno-math-errno"]
# Vector width from what PyTorch found this CPU can do (not -march=native: a cache directory
# shared by two machines must not hand one the other's instructions; the hash keys on this).
ISA_FLAGS = {"AVX512": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mavx2", "-mfma",
                        "-mprefer-vector-width=512"],
             "AVX2": ["-mavx2", "-mfma"]}

# Each C function's pointer arguments, after (batch, hidden).
ARGUMENTS = {"peephole_forward": 9, "peephole_backward": 12, "cifg_forward": 6, "cifg_backward": 7}
BLOCKS = {"peephole": ("input", "forget", "candidate", "output"),     # the gate blocks of W_ih, W_hh
          "cifg": ("forget", "candidate", "output")}
GATES = ("input", "forget", "candidate", "output")       # the order a LayerStates lists them in
PEEPHOLES = ("weight_ci", "weight_cf", "weight_co")

_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}
_held_off = [0]                         # > 0 inside `pytorch_loop()`


def cache_dir() -> Path:
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("rnn-gate-explorer", appauthor=False)) / "native"


def _isa() -> str:
    capability = torch.backends.cpu.get_cpu_capability()
    return capability if capability in ISA_FLAGS else "DEFAULT"


def build(directory: Path | None = None) -> Path:
    """The compiled library's path, compiling it first if this source, compiler and CPU
    capability have not been compiled into `directory` yet. Raises RuntimeError (with the
    compiler's message) if there is no compiler or it fails."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise RuntimeError(f"no C compiler ({os.environ.get('CC', 'cc')}) on PATH")
    flags = FLAGS + ISA_FLAGS.get(_isa(), [])
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), *flags, version, _isa()]).encode()).hexdigest()[:16]
    directory = Path(directory) if directory is not None else cache_dir()
    target = directory / f"kernels-{key}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    # Into a file of our own, then renamed into place: two processes compiling at once (the
    # app's workers) each finish with a whole library, never one half-written by the other.
    fd, scratch = tempfile.mkstemp(suffix=".so", dir=directory)
    os.close(fd)
    try:
        done = subprocess.run([compiler, *flags, str(SOURCE), "-o", scratch], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {done.stderr.strip()[-2000:]}")
        os.replace(scratch, target)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
    return target


@contextmanager
def pytorch_loop():
    """Within it, the cells take PyTorch's loops (the benchmark's side-by-side
    comparison of the two; not meant for threads that train at the same time)."""
    _held_off[0] += 1
    try:
        yield
    finally:
        _held_off[0] -= 1


def library() -> ctypes.CDLL | None:
    """The compiled steps, loaded once per process; None if they are turned off or cannot be
    built (said once, as a warning, and the PyTorch loops are used)."""
    if os.environ.get(NATIVE_ENV, "1") == "0" or _held_off[0]:
        return None
    with _lock:
        if "lib" not in _loaded:
            _loaded["lib"] = None
            try:
                lib = ctypes.CDLL(str(build()))
            except (OSError, RuntimeError, subprocess.SubprocessError) as error:
                warnings.warn(f"the compiled steps of the peephole and CIFG LSTMs are unavailable, using "
                              f"PyTorch's loop: {error}",
                              RuntimeWarning, stacklevel=2)
            else:
                for name, pointers in ARGUMENTS.items():       # as the C file declares them
                    function = getattr(lib, name)
                    function.argtypes = [ctypes.c_long, ctypes.c_long, *[ctypes.c_void_p] * pointers]
                    function.restype = None
                _loaded["lib"] = lib
        return _loaded["lib"]


def usable(*tensors: Tensor) -> bool:
    """Whether these tensors can take the compiled steps: float32 on the CPU, and the library built."""
    return all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors) and library() is not None


def unroll(cell: str, pre: Tensor, weight_hh: Tensor, peepholes: tuple[Tensor, ...], h: Tensor,
           c: Tensor, keep: bool = True) -> tuple[Tensor | None, Tensor, Tensor | None, Tensor]:
    """One layer of `cell` ("peephole" or "cifg") from state h, c (batch, hidden); pre (time,
    batch, blocks*hidden) holds each step's input term and biases, and is overwritten with
    W_hh h_{t-1} added. peepholes: (w_ci, w_cf, w_co), each (hidden,), for the peephole LSTM;
    () for the CIFG. Returns gates (time, batch, blocks*hidden) and cell, tanh(cell) and
    hidden (time, batch, hidden), time-major. keep=False (a forward pass that nobody will
    differentiate or look inside): gates and tanh(cell) are None and cell is c_T alone
    (batch, hidden), so that a layer holds its input terms and h_t and little else."""
    step = getattr(library(), f"{cell}_forward")
    T, B, G = pre.shape
    H = G // len(BLOCKS[cell])
    pre = pre.contiguous()
    wide, narrow = B * G * 4, B * H * 4                             # bytes per step (float32)
    hidden = pre.new_empty(T, B, H)                                 # (time, batch, hidden)
    if keep:
        gates = torch.empty_like(pre)                               # (time, batch, blocks*hidden)
        cell_state, tanh_cell = pre.new_empty(T, B, H), pre.new_empty(T, B, H)   # each (time, batch, hidden)
        gates_step, cell_step, tanh_step = wide, narrow, narrow
    else:
        # Each step's gates over its own pre-activations (the C step reads an element before it
        # writes it), tanh(c_t) into one scratch step, c_t into two that take turns.
        gates, tanh_cell, cell_state = pre, pre.new_empty(B, H), pre.new_empty(2, B, H)
        gates_step, cell_step, tanh_step = wide, narrow, 0
    w_hh_t = weight_hh.t()                                          # (hidden, blocks*hidden)
    kept_alive = tuple(w.detach().contiguous() for w in peepholes)  # held while C reads their addresses
    own = tuple(w.data_ptr() for w in kept_alive)
    c = c.detach().contiguous()
    pre_t, hidden_t = pre.unbind(0), hidden.unbind(0)               # per-step views, taken once
    at_pre, at_gates, at_cell, at_tanh, at_hidden = (v.data_ptr() for v in (pre, gates, cell_state, tanh_cell, hidden))
    c_previous = c.data_ptr()
    for t in range(T):
        pre_t[t].addmm_(h, w_hh_t)
        c_now = at_cell + (t if keep else t % 2) * cell_step
        step(B, H, at_pre + t * wide, c_previous, *own, at_gates + t * gates_step, c_now,
             at_tanh + t * tanh_step, at_hidden + t * narrow)
        c_previous = c_now
        h = hidden_t[t]
    if not keep:
        return None, cell_state[(T - 1) % 2], None, hidden
    return gates, cell_state, tanh_cell, hidden


def backprop(cell: str, grad_h: Tensor, weight_hh: Tensor, peepholes: tuple[Tensor, ...], gates: Tensor,
             cell_state: Tensor, tanh_cell: Tensor, c0: Tensor,
             grad_cell_last: Tensor | None) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """BPTT through one layer of `cell`, time-major: grad_h (time, batch, hidden) contiguous,
    dL/dh_t from above, is completed in place with each step's term through W_hh; gates (time,
    batch, blocks*hidden), cell_state and tanh_cell (time, batch, hidden) contiguous, as
    `unroll` gives them. Returns dL/dc_t (time, batch, hidden), δ_t (time, batch,
    blocks*hidden) and, for the peephole LSTM, the gradients of w_ci, w_cf, w_co (each
    (hidden,), summed over batch and time in double as the backward goes; () for the CIFG)."""
    step = getattr(library(), f"{cell}_backward")
    T, B, H = cell_state.shape
    G = len(BLOCKS[cell]) * H
    grad_c, grad_pre = cell_state.new_empty(T, B, H), cell_state.new_empty(T, B, G)
    carried = (cell_state.new_zeros(B, H) if grad_cell_last is None        # dL/dc through the next step
               else grad_cell_last.detach().to(cell_state.dtype).contiguous().clone())
    kept_alive = tuple(w.detach().contiguous() for w in peepholes)
    own = tuple(w.data_ptr() for w in kept_alive)
    sums = torch.zeros(3, H, dtype=torch.float64) if peepholes else None   # Σ δ c: w_ci, w_cf, w_co
    c0 = c0.detach().contiguous()
    dh_t, d_pre_t = grad_h.unbind(0), grad_pre.unbind(0)            # per-step views, taken once
    wide, narrow = B * G * 4, B * H * 4
    at_dh, at_gates, at_cell, at_tanh, at_grad_c, at_grad_pre = (
        v.data_ptr() for v in (grad_h, gates, cell_state, tanh_cell, grad_c, grad_pre))
    at_carried, at_sums = carried.data_ptr(), sums.data_ptr() if sums is not None else None
    for t in reversed(range(T)):
        if t < T - 1:
            dh_t[t].addmm_(d_pre_t[t + 1], weight_hh)
        c_previous = at_cell + (t - 1) * narrow if t > 0 else c0.data_ptr()
        if peepholes:    # the peephole LSTM's step also reads c_t (w_co's gradient) and sums into `sums`
            step(B, H, at_dh + t * narrow, at_gates + t * wide, c_previous, at_cell + t * narrow,
                 at_tanh + t * narrow, *own, at_carried, at_grad_c + t * narrow, at_grad_pre + t * wide, at_sums)
        else:
            step(B, H, at_dh + t * narrow, at_gates + t * wide, c_previous, at_tanh + t * narrow,
                 at_carried, at_grad_c + t * narrow, at_grad_pre + t * wide)
    return grad_c, grad_pre, tuple(sums.to(cell_state.dtype).unbind(0)) if sums is not None else ()


def _peepholes(cell: str, w: LayerWeights) -> tuple[Tensor, ...]:
    return tuple(w.extra[name] for name in PEEPHOLES) if cell == "peephole" else ()


def layer_unroll(cell: str, x: Tensor, w: LayerWeights, h: Tensor, c: Tensor,
                 keep_gates: bool = True) -> LayerStates:
    """One layer over x (batch, time, input), no autograd: the cell's unroll (lstm.unroll with
    peephole=True, cifg.unroll) with each step compiled. The buffers stay time-major underneath
    (batch-first views of them), as the backward reads them. keep_gates=False (an eval, a
    prediction): h_t of every step and c_T only, `cell` (batch, 1, hidden), no gates."""
    H = h.shape[-1]
    pre = input_projection(x, w, fold_hh_bias=True, time_major=True)          # (time, batch, blocks*hidden)
    gates, cell_state, tanh_cell, hidden = unroll(cell, pre, w.weight_hh, _peepholes(cell, w), h, c, keep_gates)
    batch_major = lambda v: v.transpose(0, 1)                                 # noqa: E731 - (batch, time, ...) views
    if not keep_gates:
        return LayerStates(hidden=batch_major(hidden), cell=cell_state.unsqueeze(1), saved={}, gates={})
    blocks = dict(zip(BLOCKS[cell], (batch_major(v) for v in gates.split(H, dim=2))))
    if "input" not in blocks:
        blocks["input"] = 1 - blocks["forget"]                                # the CIFG: i_t = 1 − f_t
    return LayerStates(hidden=batch_major(hidden), cell=batch_major(cell_state),
                       saved={"tanh_cell": batch_major(tanh_cell), "gates": gates},
                       gates={name: blocks[name] for name in GATES})


def layer_backprop(cell: str, u: LayerStates, w: LayerWeights, grad_output: Tensor, c0: Tensor,
                   grad_cell_last: Tensor | None) -> LayerGradients:
    """The cell's BPTT (lstm.backprop with peephole=True, cifg.backprop) with each step compiled;
    the peepholes' gradients come summed (LayerGradients.extra)."""
    time_major = lambda v: v.transpose(0, 1)                                  # noqa: E731 - (time, batch, ...) views
    gates = u.saved.get("gates")                                              # as `layer_unroll` wrote it
    if gates is None:
        gates = torch.cat([time_major(u.gates[name]) for name in BLOCKS[cell]], dim=2)
    cell_state = time_major(u.cell).contiguous()                              # (time, batch, hidden)
    tanh_cell = (time_major(u.saved["tanh_cell"]).contiguous() if "tanh_cell" in u.saved
                 else torch.tanh(cell_state))
    T, B, H = cell_state.shape
    grad_h = cell_state.new_empty(T, B, H).copy_(time_major(grad_output))   # a copy: completed in place
    grad_c, grad_pre, own = backprop(cell, grad_h, w.weight_hh, _peepholes(cell, w), gates.contiguous(),
                                     cell_state, tanh_cell, c0, grad_cell_last)
    grad_input = (grad_pre.flatten(0, 1) @ w.weight_ih).view(T, B, -1)    # (time, batch, input): one 2-D matmul
    return LayerGradients(time_major(grad_h), time_major(grad_c), time_major(grad_input), time_major(grad_pre),
                          extra=dict(zip(PEEPHOLES, own)) if own else None)
