"""The peephole LSTM's time loop with its pointwise step compiled (peephole_kernel.c).

PyTorch has no fused kernel for the peephole LSTM, so each step is the recurrent matmul and
ten elementwise operations forward (four backward), each costing its dispatch at this size.
Here each step is the matmul (still PyTorch's) and one C call: measured here, the forward
and backward take about half as long (docs/PERFORMANCE.md, `python -m explorer bench`).

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

NATIVE_ENV = "GATE_EXPLORER_NATIVE"     # "0" turns the compiled step off
SOURCE = Path(__file__).with_name("peephole_kernel.c")
# -fno-trapping-math lets the loops' clips become vector selects; no -ffast-math (the source says why).
FLAGS = ["-O3", "-std=c11", "-fPIC", "-shared", "-fopenmp-simd", "-fno-trapping-math", "-fno-math-errno"]
# Vector width from what PyTorch found this CPU can do (not -march=native: a cache directory
# shared by two machines must not hand one the other's instructions; the hash keys on this).
ISA_FLAGS = {"AVX512": ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mavx2", "-mfma",
                        "-mprefer-vector-width=512"],
             "AVX2": ["-mavx2", "-mfma"]}

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
    target = directory / f"peephole-{key}.so"
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
    """Within it, the peephole LSTM takes PyTorch's loop (the benchmark's side-by-side
    comparison of the two; not meant for threads that train at the same time)."""
    _held_off[0] += 1
    try:
        yield
    finally:
        _held_off[0] -= 1


def library() -> ctypes.CDLL | None:
    """The compiled step, loaded once per process; None if it is turned off or cannot be built
    (said once, as a warning, and the PyTorch loop is used)."""
    if os.environ.get(NATIVE_ENV, "1") == "0" or _held_off[0]:
        return None
    with _lock:
        if "lib" not in _loaded:
            _loaded["lib"] = None
            try:
                lib = ctypes.CDLL(str(build()))
            except (OSError, RuntimeError, subprocess.SubprocessError) as error:
                warnings.warn(f"the peephole LSTM's compiled step is unavailable, using PyTorch's loop: {error}",
                              RuntimeWarning, stacklevel=2)
            else:
                sizes, pointer = [ctypes.c_long] * 2, ctypes.c_void_p
                lib.peephole_forward.argtypes = [*sizes, *[pointer] * 9]     # as the C file declares them
                lib.peephole_backward.argtypes = [*sizes, *[pointer] * 12]
                lib.peephole_forward.restype = lib.peephole_backward.restype = None
                _loaded["lib"] = lib
        return _loaded["lib"]


def usable(*tensors: Tensor) -> bool:
    """Whether these tensors can take the compiled step: float32 on the CPU, and the library built."""
    return all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors) and library() is not None


def _address(t: Tensor) -> int:
    return t.data_ptr()


def peephole_forward(pre: Tensor, weight_hh: Tensor, peepholes: tuple[Tensor, Tensor, Tensor],
                     h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The peephole LSTM's unroll from state h, c (batch, hidden); pre (time, batch, 4*hidden)
    holds each step's input term and biases, and is overwritten with the full pre-activations
    (but for the peepholes' terms). Returns gates (time, batch, 4*hidden) and cell, tanh(cell)
    and hidden (time, batch, hidden), time-major."""
    step = library().peephole_forward
    T, B, G = pre.shape
    H = G // 4
    pre = pre.contiguous()
    gates = torch.empty_like(pre)                                   # (time, batch, 4*hidden): i, f, g, o
    cell, tanh_cell, hidden = (pre.new_empty(T, B, H) for _ in range(3))   # each (time, batch, hidden)
    w_hh_t = weight_hh.t()                                          # (hidden, 4*hidden)
    kept_alive = tuple(w.detach().contiguous() for w in peepholes)  # held while C reads their addresses
    w_ci, w_cf, w_co = (_address(w) for w in kept_alive)
    c = c.detach().contiguous()
    pre_t, hidden_t = pre.unbind(0), hidden.unbind(0)               # per-step views, taken once
    step_big, step_small = B * G * 4, B * H * 4                     # bytes per step (float32)
    at_pre, at_gates, at_cell, at_tanh, at_hidden = (_address(v) for v in (pre, gates, cell, tanh_cell, hidden))
    c_previous = _address(c)
    for t in range(T):
        pre_t[t].addmm_(h, w_hh_t)
        step(B, H, at_pre + t * step_big, c_previous, w_ci, w_cf, w_co, at_gates + t * step_big,
             at_cell + t * step_small, at_tanh + t * step_small, at_hidden + t * step_small)
        c_previous = at_cell + t * step_small
        h = hidden_t[t]
    return gates, cell, tanh_cell, hidden


def peephole_backward(grad_h: Tensor, weight_hh: Tensor, peepholes: tuple[Tensor, Tensor, Tensor],
                      gates: Tensor, cell: Tensor, tanh_cell: Tensor, c0: Tensor,
                      grad_cell_last: Tensor | None) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
    """BPTT through the peephole LSTM, time-major: grad_h (time, batch, hidden) contiguous, dL/dh_t
    from above, is completed in place with each step's term through W_hh; gates (time, batch,
    4*hidden), cell and tanh_cell (time, batch, hidden) contiguous, as peephole_forward gives
    them. Returns dL/dc_t (time, batch, hidden), δ_t (time, batch, 4*hidden) and the gradients
    of w_ci, w_cf, w_co (each (hidden,), summed in double)."""
    step = library().peephole_backward
    T, B, H = cell.shape
    grad_c, grad_pre = cell.new_empty(T, B, H), cell.new_empty(T, B, 4 * H)
    carried = (cell.new_zeros(B, H) if grad_cell_last is None
               else grad_cell_last.detach().to(cell.dtype).contiguous().clone())   # dL/dc through the next step
    kept_alive = tuple(w.detach().contiguous() for w in peepholes)
    w_ci, w_cf, w_co = (_address(w) for w in kept_alive)
    c0 = c0.detach().contiguous()
    dh_t, d_pre_t = grad_h.unbind(0), grad_pre.unbind(0)            # per-step views, taken once
    step_big, step_small = B * 4 * H * 4, B * H * 4
    at_dh, at_gates, at_cell, at_tanh, at_grad_c, at_grad_pre = (
        _address(v) for v in (grad_h, gates, cell, tanh_cell, grad_c, grad_pre))
    sums = torch.zeros(3, H, dtype=torch.float64)                  # Σ δ c over batch and time: w_ci, w_cf, w_co
    at_carried, at_sums = _address(carried), _address(sums)
    for t in reversed(range(T)):
        if t < T - 1:
            dh_t[t].addmm_(d_pre_t[t + 1], weight_hh)
        c_previous = at_cell + (t - 1) * step_small if t > 0 else _address(c0)
        step(B, H, at_dh + t * step_small, at_gates + t * step_big, c_previous, at_cell + t * step_small,
             at_tanh + t * step_small, w_ci, w_cf, w_co, at_carried, at_grad_c + t * step_small,
             at_grad_pre + t * step_big, at_sums)
    return grad_c, grad_pre, tuple(sums.to(cell.dtype).unbind(0))
