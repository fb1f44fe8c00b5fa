"""Loaders for the real data the tasks train on: shipped assets, MNIST files, the
stdlib text corpus and users' CSVs. Every problem a user can fix raises DataError."""

import codecs
import csv
import gzip
import importlib.util
import io
import itertools
import math
import os
import re
import struct
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd


def env_number(name: str, default: float, *, allow_zero: bool = False) -> float:
    """A server setting from the environment: the default when it is unset, unreadable, not
    finite, negative, or zero (unless allow_zero)."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    usable = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    return value if usable else default


def app_dir(package: Path = Path(__file__).resolve().parent) -> Path:
    """The folder holding app.py, pages/ and assets/: explorer/_app in an installed package
    (pyproject.toml puts them there), else the checkout's root, beside explorer/."""
    installed = package / "_app"
    return installed if installed.is_dir() else package.parent


ASSETS = app_dir() / "assets"
SHIPPED_SERIES = ("co2", "sunspots", "elnino")
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_ENV = "GATE_EXPLORER_MNIST"
CORPUS_MODULES = ("textwrap", "string", "json.encoder", "json.decoder", "csv", "heapq",
                  "bisect", "fractions", "functools", "dataclasses")
CORPUS_MAX_CHARS = 200_000


class DataError(ValueError):
    """Data the user supplied (or pointed to) cannot be used; the message says how to fix it."""


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 shipped 8×8 digits: images (n, 8, 8) float32 in [0, 1], labels (n,) int64."""
    path = ASSETS / "digits.csv.gz"
    if not path.is_file():
        raise DataError(f"The shipped digits file {path} is missing; reinstall the app.")
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)  # (n, 64 pixels + label)
    images = (table[:, :64] / 16.0).reshape(-1, 8, 8)  # pixel counts are 0..16
    return images, table[:, 64].astype(np.int64)


def load_series(name: str) -> np.ndarray:
    """One shipped time series from assets/series/ as a float64 array of its values."""
    if name not in SHIPPED_SERIES:
        raise ValueError(f"Unknown series {name!r}; shipped: {', '.join(SHIPPED_SERIES)}.")
    table = load_csv(ASSETS / "series" / f"{name}.csv", columns=["value"])
    return table.frame["value"].to_numpy()


def _mnist_help(problem: str) -> str:
    return (f"{problem}. Real MNIST is not shipped: download the four files "
            f"{', '.join(MNIST_FILES)} (each may be .gz) from Yann LeCun's MNIST page "
            f"(http://yann.lecun.com/exdb/mnist/) or any mirror, put them in one directory "
            f"and pass that directory, or set the environment variable {MNIST_ENV} to it.")


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes (LeCun's format): magic 0000080N, N big-endian sizes, data."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise DataError(f"Cannot read MNIST file {path}: {error}.") from None
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:4] != bytes([0, 0, 0x08, ndim]):
        raise DataError(f"{path} is not an IDX file of {ndim}-D unsigned bytes "
                        f"(its first bytes are {raw[:4].hex()}, expected 000008{ndim:02x}).")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(f"{path} is truncated or padded: its header says {shape} "
                        f"({header + int(np.prod(shape))} bytes) but it has {len(raw)} bytes.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_mnist(directory: str | Path | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST from its IDX files: {"train": (images, labels), "test": (...)}, images (n, 28, 28)
    uint8, labels (n,) uint8. directory defaults to $GATE_EXPLORER_MNIST."""
    directory = directory or os.environ.get(MNIST_ENV)
    if not directory:
        raise DataError(_mnist_help("No MNIST directory was given"))
    if not Path(directory).is_dir():
        raise DataError(_mnist_help(f"The MNIST directory {directory} does not exist"))
    paths, missing = [], []
    for name in MNIST_FILES:
        found = [p for p in (Path(directory) / name, Path(directory) / f"{name}.gz") if p.is_file()]
        paths.append(found[0] if found else None)
        if not found:
            missing.append(name)
    if missing:
        raise DataError(_mnist_help(f"{directory} lacks {', '.join(missing)}"))
    splits = {}
    for split, images_path, labels_path in (("train", *paths[:2]), ("test", *paths[2:])):
        images, labels = _read_idx(images_path, 3), _read_idx(labels_path, 1)
        if images.shape[1:] != (28, 28):
            raise DataError(f"{images_path} holds {images.shape[1]}×{images.shape[2]} images, "
                            f"not MNIST's 28×28.")
        if len(labels) != len(images):
            raise DataError(f"{labels_path} has {len(labels)} labels for {len(images)} images "
                            f"in {images_path}.")
        if labels.size and labels.max() > 9:
            raise DataError(f"{labels_path} holds label {labels.max()}; MNIST labels are 0..9.")
        splits[split] = (images, labels)
    return splits


def stdlib_corpus(max_chars: int = CORPUS_MAX_CHARS) -> str:
    """Python standard-library source read from this installation: real, always present text."""
    parts = []
    for module in CORPUS_MODULES:
        spec = importlib.util.find_spec(module)
        # Frozen or compiled-only installs have no .py to read; the others still make a corpus.
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            parts.append(Path(spec.origin).read_text(encoding="utf-8"))
    if not parts:
        raise DataError("This Python installation ships no standard-library sources to use as "
                        "the text corpus; paste a text instead.")
    return "".join(parts)[:max_chars]


class CsvTable(NamedTuple):
    frame: pd.DataFrame  # the chosen numeric columns as float64, target included
    target: str


# Byte-order marks of the encodings a spreadsheet writes besides UTF-8 (Excel's "Unicode
# Text" is UTF-16 with a BOM); UTF-32's come first, since UTF-32-LE's starts with UTF-16-LE's.
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _read_text(source) -> tuple[str, str]:
    """The CSV's text and a name for messages: UTF-8, or UTF-16/32 with a byte-order mark;
    binary and other encodings are refused."""
    if isinstance(source, (str, Path)):
        # What is in the file is said of its name, not its path: an uploaded file lives under
        # a server folder the user never chose. Only a path that cannot be read is given whole.
        label = Path(source).name
        try:
            raw = Path(source).read_bytes()
        except FileNotFoundError:
            raise DataError(f"CSV file {source} not found.") from None
        except OSError as error:
            raise DataError(f"Cannot read CSV file {source}: {error.strerror}.") from None
    else:
        label = getattr(source, "name", "the uploaded CSV")
        if hasattr(source, "seek"):
            source.seek(0)  # a file object read before (e.g. for a preview) starts over
        raw = source.read()
    if isinstance(raw, str):
        text = raw
    elif encoding := next((name for bom, name in BOMS if raw.startswith(bom)), None):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            raise DataError(f"{label} starts as {encoding.upper()} text (its byte-order mark) but is "
                            f"not valid {encoding.upper()}; re-save it as 'CSV UTF-8'.") from None
    else:
        head = raw[:4096]
        controls = sum(b < 32 and b not in b"\t\n\r\f" for b in head)
        if b"\x00" in head or controls > 0.05 * len(head):
            raise DataError(f"{label} holds binary data, not CSV text. Export a spreadsheet as "
                            f"'CSV UTF-8'; a UTF-16 file is read only with its byte-order mark, "
                            f"so re-save one without it as UTF-8.")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = raw[:error.start].count(b"\n") + 1
            raise DataError(f"{label} is not UTF-8 text: byte 0x{raw[error.start]:02x} on line "
                            f"{line} is not valid UTF-8 (probably Latin-1 or Windows-1252). "
                            f"Re-save the file as UTF-8 (in Excel: 'CSV UTF-8').") from None
    if "\x00" in text:
        raise DataError(f"{label} holds binary data (NUL characters), not CSV text.")
    return text, label


DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
SNIFF_ROWS = 50          # rows that show the delimiter
SNIFF_CHARS = 65_536     # characters that show the decimal mark


def _delimiter(text: str) -> str:
    """The delimiter that splits the first rows into the most columns, the same number in
    each (a European Excel export is semicolon-separated, its "Unicode Text" tab-separated);
    failing that, the one that splits the header into the most (so a broken row is reported
    against the right columns); a comma when none splits anything."""
    consistent, header = (1, ","), (1, ",")
    for delimiter in DELIMITERS:
        try:
            rows = [row for row in itertools.islice(csv.reader(io.StringIO(text), delimiter=delimiter),
                                                    SNIFF_ROWS) if row]
        except csv.Error:         # e.g. a field longer than csv's limit: not this delimiter's table
            continue
        widths = {len(row) for row in rows}
        if len(widths) == 1 and len(rows[0]) > consistent[0]:
            consistent = (len(rows[0]), delimiter)
        if rows and len(rows[0]) > header[0]:
            header = (len(rows[0]), delimiter)
    return consistent[1] if consistent[0] > 1 else header[1]


def _decimal(text: str, delimiter: str) -> str:
    """A semicolon- or tab-separated file written with decimal commas (3,5) reads them as such."""
    head = text[:SNIFF_CHARS]
    if delimiter == ",":
        return "."
    return "," if len(re.findall(r"\d,\d", head)) > len(re.findall(r"\d\.\d", head)) else "."


def _mostly_numbers(values: pd.Series) -> bool:
    """At least half of the column's values are numbers (the rest text, not gaps)."""
    given = values.notna().sum()
    return bool(given) and pd.to_numeric(values, errors="coerce").notna().sum() * 2 >= given


def _not_numeric(frame: pd.DataFrame, column: str, label: str, numeric: list[str]) -> DataError:
    values = frame[column]
    bad = (pd.to_numeric(values, errors="coerce").isna() & values.notna()).to_numpy()
    row = int(np.argmax(bad))
    return DataError(f"Column {column!r} of {label} is not numeric (data row {row + 1} holds "
                     f"{values.iloc[row]!r}); numeric columns: {', '.join(numeric) or 'none'}. "
                     f"Fix that value, or choose the input columns.")


def load_csv(source, columns: list[str] | None = None, target: str | None = None) -> CsvTable:
    """Read a CSV (path or file object) and keep numeric columns: `columns` (default: every
    numeric one) plus `target` (default: the last of them). The target is always kept as an
    input too, since forecasting it needs its own past. The delimiter (comma, semicolon, tab or
    pipe) and decimal commas are detected."""
    text, label = _read_text(source)
    if not text.strip():
        raise DataError(f"{label} is empty.")
    delimiter = _delimiter(text)
    read_as = "" if delimiter == "," else f" (read as {DELIMITERS[delimiter]}-separated)"
    try:
        with warnings.catch_warnings():
            # pandas only warns (and drops fields) when a row is longer than the header
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.StringIO(text), sep=delimiter, decimal=_decimal(text, delimiter),
                                index_col=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{label} is empty.") from None
    except pd.errors.ParserWarning:
        raise DataError(f"{label} is not a well-formed CSV{read_as}: a data row has more fields than "
                        f"the header. Every row needs one value per header column.") from None
    except (pd.errors.ParserError, ValueError) as error:
        detail = str(error).strip().splitlines()[0].rstrip(".")
        raise DataError(f"{label} is not a well-formed CSV{read_as}: {detail}. Every row needs one "
                        f"value per header column.") from None
    if frame.empty:
        raise DataError(f"{label} has a header ({', '.join(map(str, frame.columns))}) "
                        f"but no data rows.")
    frame.columns = [str(c) for c in frame.columns]
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    wanted = list(columns) if columns is not None else list(numeric)
    if target is not None:
        wanted.append(target)
    wanted = list(dict.fromkeys(wanted))  # drop repeats, keep the order
    unknown = [c for c in wanted if c not in frame.columns]
    if unknown:
        raise DataError(f"{label} has no column {', '.join(map(repr, unknown))}; "
                        f"its columns are {', '.join(frame.columns)}.")
    if columns is None:
        # A column of numbers with a stray word in it is a typo, not a text column: say so
        # rather than leave it out unseen.
        for column in frame.columns:
            if column not in numeric and _mostly_numbers(frame[column]):
                raise _not_numeric(frame, column, label, numeric)
    if not wanted:
        problem = f"{label} has no numeric columns" if columns is None else "No column was chosen"
        raise DataError(f"{problem}{read_as} (the columns of {label} are {', '.join(frame.columns)}); "
                        f"choose numeric columns to forecast.")
    for column in wanted:
        if column not in numeric:
            raise _not_numeric(frame, column, label, numeric)
    chosen = frame[wanted].astype(np.float64)
    for column in wanted:
        values = chosen[column].to_numpy()
        for problem, mask in (("a missing value (NaN or empty)", np.isnan(values)),
                              ("an infinite value", np.isinf(values))):
            if mask.any():
                row = int(np.argmax(mask)) + 1
                raise DataError(f"Column {column!r} of {label} has {problem} on data row {row} "
                                f"(not counting the header) and {int(mask.sum())} in all; "
                                f"fill or remove those rows.")
    return CsvTable(chosen, target if target is not None else wanted[-1])
