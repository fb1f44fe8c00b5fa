"""Your own model: `load_module` rebuilds an nn.LSTM, nn.GRU or nn.RNN from a state_dict file,
and `read_sequences` reads the sequences to trace it on, so `trace` can look inside a model
trained anywhere.

Nothing in a file is executed: .safetensors holds tensors only, and a .pt is read with
`torch.load(weights_only=True)`, which refuses a pickle that would build anything but tensors.
The architecture comes from the parameters' names and shapes (nn.LSTM's own naming,
`weight_ih_l0`...); what a state_dict cannot say (tanh or ReLU, the layout) comes from the
arguments. Every refusal is a ModelFileError naming what is wrong. A file is read through
`read_user_file` (explorer.data): a regular file within the upload cap, or nothing is read.
"""
from __future__ import annotations

import csv
import io
import math
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .data import DataError, lines, load_csv, read_user_file

# A recurrent parameter as nn.LSTM/GRU/RNN name it, after whatever prefix its owner gave it.
_PARAM = re.compile(r"^(?P<prefix>(?:.*\.)?)(?P<base>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)"
                    r"_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
_BASES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
# Gate blocks in W_hh: what each module kind stacks.
_KINDS = {4: ("lstm", nn.LSTM), 3: ("gru", nn.GRU), 1: ("rnn", nn.RNN)}
NONLINEARITIES = ("tanh", "relu")
SUFFIXES = (".safetensors", ".pt", ".pth")
SEQUENCE_SUFFIXES = (".npy", ".csv", ".txt")
# Checkpoints that wrap the state_dict in a dict of their own (Lightning, many training scripts).
_WRAPPERS = ("state_dict", "model_state_dict", "model")
SAVE_HINT = "Save a model with torch.save(module.state_dict(), 'model.pt') or safetensors' save_file."
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"          # torch.save's format since PyTorch 1.6
NPY_HINT = "Save sequences with numpy.save('x.npy', array) (an array of numbers), or as a CSV."


class ModelFileError(ValueError):
    """A model or sequence file that cannot be used, and why."""


@dataclass(frozen=True)
class Architecture:
    """What a state_dict says about its module."""

    kind: str                 # "lstm", "gru" or "rnn"
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    prefix: str               # stripped from the keys, e.g. "rnn." ("" for a bare module)

    def describe(self) -> str:
        return (f"{self.kind.upper()}, {self.num_layers} layer{'s' * (self.num_layers > 1)} × "
                f"{self.hidden_size} units, {self.input_size} input feature{'s' * (self.input_size > 1)}")


def load_module(path, nonlinearity: str = "tanh", batch_first: bool = True,
                prefix: str | None = None) -> nn.LSTM | nn.GRU | nn.RNN:
    """The nn.LSTM, nn.GRU or nn.RNN whose state_dict is in `path` (.safetensors, or .pt/.pth
    read with weights_only=True), in eval mode. A state_dict holding several recurrent modules
    needs `prefix` (e.g. "encoder."); a plain RNN's nonlinearity and the layout are the
    arguments'. ModelFileError (a ValueError) names the file and what is wrong."""
    state = read_state_dict(path)
    try:
        return build_module(state, nonlinearity, batch_first, prefix)
    except ModelFileError as error:
        raise naming(error, Path(path).name) from None


def naming(error: ModelFileError, name: str) -> ModelFileError:
    """The error, led by the file's name where its message does not say which file it is."""
    return error if name in str(error) else ModelFileError(f"{name}: {error}")


def read_state_dict(path, name: str | None = None) -> dict[str, Tensor]:
    """The tensors in a state_dict file: a path, or a file object with `name` giving its type."""
    label = name or str(path)
    suffix = Path(label).suffix.lower()
    if suffix not in SUFFIXES:
        raise ModelFileError(f"{Path(label).name}: a model file must be .safetensors or .pt/.pth "
                             f"(a state_dict), not {suffix or 'a file without a suffix'}")
    raw = _read_bytes(path, label, SUFFIXES)
    name = Path(label).name
    if suffix == ".safetensors":
        from safetensors.torch import load
        try:
            return load(bytes(raw))
        except Exception:   # a parser of untrusted bytes: its exception types are not a contract
            looks = ("it is a PyTorch file (torch.save wrote it): name it .pt" if _zip_names(raw, "data.pkl")
                     else _looks_like(raw) or "it is damaged, cut short, or another kind of file")
            raise ModelFileError(f"{name} is not a readable .safetensors file: {looks}. {SAVE_HINT}") from None
    try:
        # A plain pickle (not torch.save's zip) makes torch warn about its protocol: the refusal
        # below says all there is, and the CLI promises one line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_object(error, raw)
        if refused is None:
            raise ModelFileError(_unreadable_torch(name, raw)) from None
        raise ModelFileError(
            f"{name} was refused: it is not a plain state_dict of tensors ({refused}), "
            f"and code in a file is never run here. Save `module.state_dict()`, not the module or "
            f"optimiser.") from None
    except Exception:
        # torch.load's unpickler, fed text or damaged bytes, raises whatever its parsing hits
        # (KeyError: 101 for a text file, IndexError for another): none of it is news to the
        # user, what the file looks like is.
        raise ModelFileError(_unreadable_torch(name, raw)) from None
    if isinstance(loaded, dict) and not all(isinstance(v, Tensor) for v in loaded.values()):
        wrapped = next((loaded[w] for w in _WRAPPERS if isinstance(loaded.get(w), dict)), None)
        loaded = wrapped if wrapped is not None else loaded
    if not isinstance(loaded, dict) or not all(isinstance(k, str) and isinstance(v, Tensor)
                                               for k, v in loaded.items()):
        raise ModelFileError(f"{Path(label).name} holds a {type(loaded).__name__}, not a state_dict "
                             f"(a dict of parameter names to tensors)")
    return dict(loaded)


def recurrent_prefixes(state: dict[str, Tensor]) -> list[str]:
    """The prefixes of the recurrent modules in a state_dict ("" for a bare module), sorted."""
    return sorted({m["prefix"] for m in map(_PARAM.match, state) if m})


def infer_architecture(state: dict[str, Tensor], prefix: str | None = None) -> Architecture:
    """The module a state_dict describes; ModelFileError naming what does not fit."""
    found: dict[str, dict[str, Tensor]] = {}       # prefix -> {base_lk: tensor}
    for key, value in state.items():
        match = _PARAM.match(key)
        if match:
            found.setdefault(match["prefix"], {})[key[len(match["prefix"]):]] = value
    if not found:
        raise ModelFileError("no recurrent layer found: a state_dict of nn.LSTM, nn.GRU or nn.RNN "
                             "names its weights weight_ih_l0, weight_hh_l0, ... (the keys here start "
                             f"{', '.join(list(state)[:4]) or '(none: it is empty)'})")
    if prefix is not None:
        chosen = prefix if prefix == "" or prefix.endswith(".") else prefix + "."
        if chosen not in found:
            raise ModelFileError(f"no recurrent module with prefix {prefix!r}; found "
                                 f"{_list_prefixes(found)}")
    elif len(found) > 1:
        raise ModelFileError(f"this state_dict holds {len(found)} recurrent modules "
                             f"({_list_prefixes(found)}); say which with prefix=")
    else:
        chosen = next(iter(found))
    params = found[chosen]
    # Keys with no dot after the prefix are the module's own; a deeper key belongs to another
    # module (a head, an encoder) and is left alone.
    extra = sorted(k[len(chosen):] for k in state if k.startswith(chosen) and "." not in k[len(chosen):]
                   and k[len(chosen):] not in params)
    name = chosen or "the state_dict"
    if any(k.endswith("_reverse") for k in params):
        raise ModelFileError(f"{name} is a bidirectional module (keys ending _reverse): only "
                             "one-directional modules can be traced")
    if any(k.startswith("weight_hr") for k in params):
        raise ModelFileError(f"{name} is a projected LSTM (weight_hr_l*, proj_size > 0), which "
                             "cannot be traced")
    layers = sorted({int(_PARAM.match(k)["layer"]) for k in params})
    num_layers = layers[-1] + 1
    hh = params.get("weight_hh_l0")
    if hh is None:
        raise ModelFileError(f"{name} does not match a recurrent module: missing keys: weight_hh_l0")
    if hh.dim() != 2 or hh.shape[1] == 0 or hh.shape[0] % hh.shape[1]:
        raise ModelFileError(f"weight_hh_l0 has shape {tuple(hh.shape)}: a recurrent weight is "
                             "(blocks × hidden, hidden)")
    hidden = hh.shape[1]
    blocks = hh.shape[0] // hidden
    if blocks not in _KINDS:
        raise ModelFileError(f"weight_hh_l0 has shape {tuple(hh.shape)}: {blocks} blocks of {hidden}, "
                             "but an LSTM has 4, a GRU 3 and an RNN 1")
    kind = _KINDS[blocks][0]
    bias = "bias_ih_l0" in params or "bias_hh_l0" in params
    expected = {f"{base}_l{k}" for k in range(num_layers) for base in (_BASES if bias else _BASES[:2])}
    missing = sorted(expected - set(params), key=_layer_order)
    extra = sorted(set(extra) | (set(params) - expected), key=_layer_order)
    if missing or extra:
        parts = ([f"missing keys: {', '.join(missing)}"] if missing else []) + \
                ([f"extra keys: {', '.join(extra)}"] if extra else [])
        raise ModelFileError(f"{name} does not match a {num_layers}-layer {kind.upper()}: " + "; ".join(parts))
    ih = params["weight_ih_l0"]
    if ih.dim() != 2 or ih.shape[1] == 0:
        raise ModelFileError(f"weight_ih_l0 has shape {tuple(ih.shape)}: expected ({blocks * hidden}, input size)")
    input_size = ih.shape[1]
    for k in range(num_layers):
        wanted = {"weight_ih": (blocks * hidden, input_size if k == 0 else hidden),
                  "weight_hh": (blocks * hidden, hidden), "bias_ih": (blocks * hidden,), "bias_hh": (blocks * hidden,)}
        for base, shape in wanted.items():
            value = params.get(f"{base}_l{k}")
            if value is not None and tuple(value.shape) != shape:
                raise ModelFileError(f"{base}_l{k} has shape {tuple(value.shape)} but a {num_layers}-layer "
                                     f"{kind.upper()} with {hidden} units and {input_size} inputs needs {shape}")
    for key, value in params.items():
        if not value.is_floating_point():
            raise ModelFileError(f"{key} holds {value.dtype} values, not floating point weights")
        if not torch.isfinite(value).all():
            raise ModelFileError(f"{key} holds NaN or infinite values")
    return Architecture(kind, input_size, hidden, num_layers, bias, chosen)


def build_module(state: dict[str, Tensor], nonlinearity: str = "tanh", batch_first: bool = True,
                 prefix: str | None = None) -> nn.LSTM | nn.GRU | nn.RNN:
    """The module a state_dict describes, with its weights (see load_module)."""
    if nonlinearity not in NONLINEARITIES:
        raise ModelFileError(f"nonlinearity must be tanh or relu, not {nonlinearity!r}")
    arch = infer_architecture(state, prefix)
    module_class = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[arch.kind]
    options = {"nonlinearity": nonlinearity} if arch.kind == "rnn" else {}
    module = module_class(arch.input_size, arch.hidden_size, arch.num_layers, bias=arch.bias,
                          batch_first=batch_first, **options)
    own = {k[len(arch.prefix):]: v for k, v in state.items()
           if k.startswith(arch.prefix) and "." not in k[len(arch.prefix):]}
    # float64 stays float64 (whoever saved doubles wants to check at that precision); half
    # precision is widened, since a CPU unroll in float16 loses the small gradients we show.
    dtype = torch.float64 if any(v.dtype == torch.float64 for v in own.values()) else torch.float32
    module.load_state_dict({k: v.to(dtype) for k, v in own.items()})
    return module.to(dtype).eval()


def cell_name(module: nn.Module) -> str:
    """The registry name (explorer.cells) of a loaded module: lstm, gru, rnn or rnn-relu."""
    if isinstance(module, nn.RNN):
        return "rnn-relu" if module.nonlinearity == "relu" else "rnn"
    return "lstm" if isinstance(module, nn.LSTM) else "gru"


def read_sequences(source, time_first: bool = False, name: str | None = None,
                   max_steps: int | None = None) -> tuple[np.ndarray, list[str] | None]:
    """Sequences to trace on, batch-first (batch, time, features), and the features' names
    (a CSV's header; None for .npy). A .npy is 3-D in the given layout, or 2-D (time,
    features) for one sequence; a CSV is one sequence, a row per step and a column per
    feature, under a header, and one of more than `max_steps` rows is refused before it is
    parsed. ModelFileError names what is wrong, and quotes nothing the file holds."""
    label = name or str(source)
    suffix = Path(label).suffix.lower()
    if suffix not in SEQUENCE_SUFFIXES:
        raise ModelFileError(f"{Path(label).name}: sequences must be a .npy array or a .csv file, "
                             f"not {suffix or 'a file without a suffix'}")
    raw = _read_bytes(source, label, SEQUENCE_SUFFIXES)
    if suffix == ".npy":
        x = _read_npy(raw, Path(label).name)
        if x.ndim == 2:
            x = x[None]                                   # (1, time, features)
        elif x.ndim == 3:
            x = x.transpose(1, 0, 2) if time_first else x  # (batch, time, features)
        else:
            raise ModelFileError(f"{Path(label).name} has shape {x.shape}: sequences are 3-D "
                                 f"({'time, batch' if time_first else 'batch, time'}, features) or 2-D "
                                 "(time, features) for one sequence")
        names = None
    else:
        # Every column is a feature: the header's names are asked for, so a text column is
        # refused rather than left out. Only the first line is decoded for them.
        text = raw if isinstance(raw, str) else raw[:raw.find(b"\n") + 1 or len(raw)].decode("utf-8-sig", "replace")
        try:
            header = next(csv.reader(lines(text)), [])
        except csv.Error:     # a header csv cannot split: load_csv says what is wrong with the file
            header = []
        named = io.BytesIO(raw if isinstance(raw, bytes) else raw.encode())
        named.name = Path(label).name
        try:
            table = load_csv(named, columns=[h.strip() for h in header] if header else None,
                             max_rows=max_steps, quote=False)
        except DataError as error:
            raise ModelFileError(str(error)) from None
        names = list(table.frame.columns)
        x = table.frame.to_numpy()[None]                  # (1, time, features)
    if 0 in x.shape:
        raise ModelFileError(f"{Path(label).name} holds no data (shape {x.shape})")
    x = x.astype(np.float64 if x.dtype == np.float64 else np.float32)
    if not np.isfinite(x).all():
        raise ModelFileError(f"{Path(label).name} holds NaN or infinite values")
    return x, names


def _read_npy(raw: bytes, name: str) -> np.ndarray:
    """A .npy file's array of real numbers. Its header is checked before any data is read, so
    a damaged one is named as such (numpy would offer to unpickle it) and a header claiming
    more data than the file holds allocates nothing."""
    def unreadable(why: str) -> ModelFileError:
        return ModelFileError(f"{name} is not a readable .npy array of numbers: {why}. {NPY_HINT}")

    if not raw.startswith(NPY_MAGIC):
        if not raw:
            raise unreadable("it is empty")
        if _is_text(raw):
            raise unreadable("it is a text file; a sequence written as text goes in a .csv file")
        if raw.startswith(ZIP_MAGIC):
            raise unreadable("it is a zip archive (numpy.savez writes those), not one array")
        raise unreadable("it does not start as a .npy file does")
    stream = io.BytesIO(raw)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        version = np.lib.format.read_magic(stream)
        if version not in readers:
            raise unreadable(f"it is a .npy file of format version {version[0]}.{version[1]}, which "
                             "only arrays of text fields need")
        shape, fortran_order, dtype = readers[version](stream)
    except ModelFileError:
        raise
    except Exception:   # numpy parses the header with ast: its errors are a parser's, not news
        raise unreadable("its header is damaged or cut short") from None
    if not (np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)):
        kind = "Python objects" if dtype.hasobject else f"{dtype} values"
        raise ModelFileError(f"{name} holds {kind}, not real numbers. {NPY_HINT}")
    count = math.prod(shape)
    if len(raw) - stream.tell() < count * dtype.itemsize:
        raise unreadable(f"it is cut short: its header promises {count} values of shape {shape}, and "
                         "the file ends before them")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=stream.tell())
    return data.reshape(shape[::-1]).T if fortran_order else data.reshape(shape)


def check_inputs(x: np.ndarray, module: nn.Module, label: str = "the sequences") -> None:
    """The sequences fit the module's input."""
    if x.shape[-1] != module.input_size:
        raise ModelFileError(f"{label} have {x.shape[-1]} feature{'s' * (x.shape[-1] != 1)} per step but "
                             f"the model reads {module.input_size}")


def parse_loss(spec: str) -> tuple[int, int] | None:
    """`last` -> None (trace's default loss); `UNIT@STEP` -> (unit, step); ValueError otherwise.
    A negative step counts from the end, as Python indexes."""
    text = spec.strip().lower()
    if text == "last":
        return None
    match = re.fullmatch(r"(\d+)@(-?\d+)", text)
    if not match:
        raise ValueError(f"the loss must be 'last' or UNIT@STEP (e.g. 3@10: unit 3 of the top layer at "
                         f"step 10), not {spec!r}")
    return int(match[1]), int(match[2])


def unit_loss(unit: int, step: int, hidden: int, steps: int, batch_first: bool = True):
    """A trace loss_fn: the sum over sequences of one top-layer unit's h at one step,
    checked against the model's units and the sequences' steps."""
    if not 0 <= unit < hidden:
        raise ValueError(f"unit {unit} is out of range: the top layer has {hidden} units (0 to {hidden - 1})")
    if not -steps <= step < steps:
        raise ValueError(f"step {step} is out of range: the sequences have {steps} steps (0 to {steps - 1})")

    def loss_fn(output: Tensor, target=None) -> Tensor:
        if output.dim() == 2:                             # one unbatched sequence (time, hidden)
            return output[step, unit]
        return (output[:, step, unit] if batch_first else output[step, :, unit]).sum()
    return loss_fn


def _refused_object(error: Exception, raw: bytes) -> str | None:
    """What torch.load refused (the class or, in a plain pickle, the operand), without the
    advice its message opens with (how to load the file with weights_only=False); None when
    the bytes were never a pickle (random bytes, a .npy), whatever opcode they happened to hold."""
    found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL [\w.]+", str(error))
    if found:
        return found[0]
    is_pickle = len(raw) > 1 and raw[0] == pickle.PROTO[0] and 2 <= raw[1] <= pickle.HIGHEST_PROTOCOL
    found = re.search(r"[Uu]nsupported operand \d+", str(error))
    return found[0] if found and is_pickle else None


def _unreadable_torch(name: str, raw: bytes) -> str:
    return (f"{name} is not a readable PyTorch file: "
            f"{_looks_like(raw) or 'its bytes are not a file torch.save wrote'}. {SAVE_HINT}")


def _looks_like(raw: bytes) -> str | None:
    """What a file no reader accepted looks like, said so a student can act on it; None when
    it looks like nothing in particular."""
    if not raw:
        return "it is empty"
    if raw.startswith(NPY_MAGIC):
        return "it is a NumPy array (.npy), not a model"
    if raw.startswith(ZIP_MAGIC):
        found = _zip_names(raw, "data.pkl")
        if found is None:
            return "it is damaged or cut short (its end is missing)"
        return "it is a damaged PyTorch file; save it again" if found else \
            "it is a zip archive, but not one torch.save wrote"
    if raw[8:10] == b'{"' and int.from_bytes(raw[:8], "little") <= len(raw) - 8:
        return "it looks like a safetensors file: name it .safetensors"   # 8-byte length, a JSON header
    if _is_text(raw):
        return "it is a text file, not a saved model"
    return None


def _zip_names(raw: bytes, ending: str) -> bool | None:
    """Whether a zip archive holds a file whose name ends so (torch.save's zip holds a
    data.pkl); None when the bytes are not a zip that opens."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            return any(n.endswith(ending) for n in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None


def _is_text(raw: bytes) -> bool:
    """The file's start reads as UTF-8 text (a character cut at the 4 KiB mark allowed)."""
    head = raw[:4096]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if len(raw) <= len(head) or error.start < len(head) - 3:
            return False
    return not any(b < 32 and b not in b"\t\n\r\f" for b in head)


def _read_bytes(source, label: str, suffixes: tuple[str, ...]) -> bytes:
    """A path's or a file object's bytes, read within the upload cap (read_user_file)."""
    try:
        return read_user_file(source, suffixes, name=label)
    except DataError as error:
        raise ModelFileError(str(error)) from None


def _layer_order(key: str):
    match = _PARAM.match(key)
    return (int(match["layer"]), match["base"]) if match else (10**9, key)


def _list_prefixes(found: dict) -> str:
    return ", ".join(repr(p) if p else "'' (no prefix)" for p in sorted(found))
