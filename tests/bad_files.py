"""Files that are not a usable model or sequence array, each made here from a real one (torch.save,
safetensors, numpy.save), with the words its refusal must hold: the loader's, the CLI's and the
upload form's tests share them, so each path is tried on the same bytes."""
import io
import pickle
import zipfile

import numpy as np
import torch
from safetensors.torch import save
from torch import nn


def real_model_bytes(suffix: str = ".pt", seed: int = 0) -> bytes:
    """A real LSTM state_dict (2 inputs, 5 units: the sequences below fit it), as torch.save or
    safetensors writes it."""
    torch.manual_seed(seed)
    state = nn.LSTM(2, 5, batch_first=True).state_dict()
    if suffix == ".safetensors":
        return save({k: v.contiguous() for k, v in state.items()})
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def real_npy_bytes(shape=(3, 6, 2), seed: int = 1) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    return buffer.getvalue()


def _zip_of_text() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes/readme.txt", "not a model")
    return buffer.getvalue()


def _flipped(raw: bytes, at: int) -> bytes:
    damaged = bytearray(raw)
    damaged[at] ^= 0xFF
    return bytes(damaged)


def bad_models() -> dict[str, tuple[bytes, str]]:
    """file name -> (its bytes, words the refusal must contain)."""
    pt, st = real_model_bytes(".pt"), real_model_bytes(".safetensors")
    text = b"epoch,loss\n1,0.5\n2,0.25\n" * 4
    return {
        "random.pt": (np.random.default_rng(7).bytes(600), "not a readable PyTorch file"),
        "text_model.pt": (text, "text file"),
        "text_model.pth": (b"hello\n", "text file"),
        "cut_short.pt": (pt[:len(pt) // 2], "cut short"),
        # a byte of the first record's name: the zip opens, torch finds no data.pkl in it (most
        # flips hit the weights' values, and the file still loads: the fuzz tests cover those)
        "flipped.pt": (_flipped(pt, 64), "damaged PyTorch file"),
        "archive.pt": (_zip_of_text(), "zip archive, but not one torch.save wrote"),
        "array.pt": (real_npy_bytes(), "NumPy array"),
        "empty.pt": (b"", "empty"),
        "random.safetensors": (np.random.default_rng(8).bytes(600), "not a readable .safetensors file"),
        "text.safetensors": (text, "text file"),
        "cut_short.safetensors": (st[:len(st) // 2], "not a readable .safetensors file"),
        "saved_by_torch.safetensors": (pt, "name it .pt"),
        "saved_as_safetensors.pt": (st, "name it .safetensors"),
    }


def bad_sequences() -> dict[str, tuple[bytes, str]]:
    npy = real_npy_bytes()
    objects = io.BytesIO()
    np.save(objects, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return {
        "garbage.npy": (np.random.default_rng(9).bytes(400), "not a readable .npy array"),
        "text.npy": (b"1,2\n3,4\n", "text file"),
        "cut_short.npy": (npy[:len(npy) - 20], "cut short"),
        "cut_header.npy": (npy[:40], "cut short"),
        "objects.npy": (objects.getvalue(), "Python objects"),
        "pickle.npy": (pickle.dumps([1, 2, 3]), "not a readable .npy array"),
        "binary.csv": (np.random.default_rng(10).bytes(400), "binary.csv"),
        "cut_short.csv": (b"a,b\n1,2\n3", "cut_short.csv"),
        "empty.csv": (b"", "empty"),
    }
