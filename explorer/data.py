"""Loaders for the real data the tasks train on: shipped assets, MNIST files, the
stdlib text corpus and users' CSVs; `read_user_file`, the one bounded read of a user's file.
Every problem a user can fix raises DataError."""

import codecs
import csv
import gzip
import importlib.util
import io
import itertools
import math
import os
import re
import stat
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


UPLOAD_ENV = "GATE_EXPLORER_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 64.0      # a 4-layer LSTM of 512 units (the run caps) is about 34 MB in float32


def max_upload_mb() -> float:
    """The cap on one file of a user's, an upload to the app or a file the CLI reads:
    GATE_EXPLORER_MAX_UPLOAD_MB, else 64 MB (an unreadable value falls back to the default)."""
    return env_number(UPLOAD_ENV, DEFAULT_MAX_UPLOAD_MB)


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
          (stat.S_ISFIFO, "a pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def read_user_file(source, suffixes: tuple[str, ...], name: str | None = None) -> bytes | str:
    """The bytes of a user's file (a path, or a file object such as an upload), read only once
    they are known to be bounded: a path must lead, through its symlinks, to a regular file (a
    device such as /dev/zero or a FIFO never ends, and is refused before it is opened for
    reading); its name (`name`, else the path's or the object's) must end in one of `suffixes`;
    it must be within max_upload_mb(), and no more than that is read even if it grows
    meanwhile. A file object without a name is read without the suffix check. DataError says
    "<file name>: <problem>": never the folder (an upload lives in one the user never chose),
    never what the file holds."""
    is_path = isinstance(source, (str, os.PathLike))
    label = Path(name or (os.fspath(source) if is_path else getattr(source, "name", None) or "")).name
    cap = max_upload_mb()
    limit = int(cap * 2**20)

    def too_big(size: float) -> DataError:
        return DataError(f"{label or 'the file'}: it is {size / 2**20:.1f} MB; files are capped at {cap:g} MB "
                         f"({UPLOAD_ENV} on the server, or in the environment of the command line)")

    if is_path:
        try:
            info = os.stat(source)                 # through the symlinks: what would be read
        except FileNotFoundError:
            raise DataError(f"{label}: cannot read it: not found") from None
        except OSError as error:
            raise DataError(f"{label}: cannot read it: {error.strerror or error}") from None
        _regular(info, label)
    suffix = Path(label).suffix.lower()
    if label and suffix not in suffixes:
        raise DataError(f"{label}: expected a {' or '.join(suffixes)} file, not "
                        f"{suffix or 'a file without a suffix'}")
    if not is_path:
        if hasattr(source, "seek"):
            source.seek(0)         # a file object read before (e.g. for a preview) starts over
        raw = source.read(limit + 1)
        if len(raw) > limit:
            raise too_big(len(raw))
        return raw
    if info.st_size > limit:
        raise too_big(info.st_size)
    try:
        # O_NONBLOCK: should the path have become a FIFO since the stat, opening it does not wait
        # for a writer; fstat then says what was opened.
        with os.fdopen(os.open(source, os.O_RDONLY | os.O_NONBLOCK), "rb") as opened:
            _regular(os.fstat(opened.fileno()), label)
            raw = opened.read(limit + 1)
    except OSError as error:
        raise DataError(f"{label}: cannot read it: {error.strerror or error}") from None
    if len(raw) > limit:
        raise too_big(len(raw))
    return raw


def _regular(info: os.stat_result, label: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((word for test, word in _KINDS if test(info.st_mode)), "not a file")
        raise DataError(f"{label}: not a regular file ({kind}, which is never read here); "
                        "give a file saved on disk")


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


CSV_SUFFIXES = (".csv", ".txt", ".tsv")


def _read_text(source) -> tuple[str, str]:
    """The CSV's text and a name for messages: UTF-8, or UTF-16/32 with a byte-order mark;
    binary and other encodings are refused."""
    # What is in the file is said of its name, not its path: an uploaded file lives under a
    # server folder the user never chose.
    label = Path(source if isinstance(source, (str, Path)) else getattr(source, "name", "the uploaded CSV")).name
    raw = read_user_file(source, CSV_SUFFIXES)
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


def lines(text: str):
    """The text's lines, one at a time, as csv.reader takes them: a reader that stops early
    never copies the rest (io.StringIO would copy all of it, at up to 4 bytes a character)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _past(text: str, delimiter: str, rows: int) -> bool:
    """Whether the text holds more than `rows` data rows under its header, found by splitting
    no more than that many (blank lines, which pandas skips, are not counted)."""
    try:
        found = sum(1 for _ in itertools.islice((row for row in csv.reader(lines(text), delimiter=delimiter)
                                                 if row), rows + 2))
    except csv.Error:             # a field csv cannot split: pandas says what is wrong with it
        return False
    return found > rows + 1


def _delimiter(text: str) -> str:
    """The delimiter that splits the first rows into the most columns, the same number in
    each (a European Excel export is semicolon-separated, its "Unicode Text" tab-separated);
    failing that, the one that splits the header into the most (so a broken row is reported
    against the right columns); a comma when none splits anything."""
    consistent, header = (1, ","), (1, ",")
    for delimiter in DELIMITERS:
        try:
            rows = [row for row in itertools.islice(csv.reader(lines(text), delimiter=delimiter),
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


def _not_numeric(frame: pd.DataFrame, column: str, label: str, numeric: list[str], quote: bool) -> DataError:
    values = frame[column]
    bad = (pd.to_numeric(values, errors="coerce").isna() & values.notna()).to_numpy()
    row = int(np.argmax(bad))
    holds = f" holds {values.iloc[row]!r}" if quote else " is not a number"
    listed = ", ".join(numeric) if quote else f"{len(numeric)} of {len(frame.columns)}"
    return DataError(f"{_column(frame, column, quote)} of {label} is not numeric (data row {row + 1}{holds}); "
                     f"numeric columns: {listed or 'none'}. Fix that value, or choose the input columns.")


def _column(frame: pd.DataFrame, column: str, quote: bool) -> str:
    """A column as a message names it: by its name, or by its place when nothing of the file is quoted."""
    return f"Column {column!r}" if quote else f"Column {list(frame.columns).index(column) + 1}"


def load_csv(source, columns: list[str] | None = None, target: str | None = None, *,
             max_rows: int | None = None, quote: bool = True) -> CsvTable:
    """Read a CSV (path or file object; read_user_file's checks and cap) and keep numeric
    columns: `columns` (default: every numeric one) plus `target` (default: the last of them).
    The target is always kept as an input too, since forecasting it needs its own past. The
    delimiter (comma, semicolon, tab or pipe) and decimal commas are detected. A file of more
    than `max_rows` data rows is refused once that many are split, before it is parsed.
    Messages quote the header and the value at fault, so a user can fix their own upload; with
    quote=False (a file named on a command line may be anyone's) they quote nothing of the file
    and name columns by their place."""
    text, label = _read_text(source)
    if not text.strip():
        raise DataError(f"{label} is empty.")
    delimiter = _delimiter(text)
    read_as = "" if delimiter == "," else f" (read as {DELIMITERS[delimiter]}-separated)"
    if max_rows is not None and _past(text, delimiter, max_rows):
        raise DataError(f"{label} has more than {max_rows} data rows{read_as}; at most {max_rows} are "
                        f"read here. Keep its first {max_rows} rows.")
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
        # pandas's own words may quote a field
        detail = f": {str(error).strip().splitlines()[0].rstrip('.')}" if quote else ""
        raise DataError(f"{label} is not a well-formed CSV{read_as}{detail}. Every row needs one "
                        f"value per header column.") from None
    if frame.empty:
        header = f" ({', '.join(map(str, frame.columns))})" if quote else ""
        raise DataError(f"{label} has a header{header} but no data rows.")
    frame.columns = [str(c) for c in frame.columns]
    count = f"{len(frame.columns)} column{'s' * (len(frame.columns) != 1)}"
    its_columns = f"its columns are {', '.join(frame.columns)}" if quote else f"it has {count}"
    columns_of = f"the columns of {label} are {', '.join(frame.columns)}" if quote else f"{label} has {count}"
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    wanted = list(columns) if columns is not None else list(numeric)
    if target is not None:
        wanted.append(target)
    wanted = list(dict.fromkeys(wanted))  # drop repeats, keep the order
    unknown = [c for c in wanted if c not in frame.columns]
    if unknown:
        asked = ", ".join(map(repr, unknown)) if quote else "named as asked"
        raise DataError(f"{label} has no column {asked}; {its_columns}.")
    if columns is None:
        # A column of numbers with a stray word in it is a typo, not a text column: say so
        # rather than leave it out unseen.
        for column in frame.columns:
            if column not in numeric and _mostly_numbers(frame[column]):
                raise _not_numeric(frame, column, label, numeric, quote)
    if not wanted:
        problem = f"{label} has no numeric columns" if columns is None else "No column was chosen"
        raise DataError(f"{problem}{read_as} ({columns_of}); "
                        f"choose numeric columns to forecast.")
    for column in wanted:
        if column not in numeric:
            raise _not_numeric(frame, column, label, numeric, quote)
    chosen = frame[wanted].astype(np.float64)
    for column in wanted:
        values = chosen[column].to_numpy()
        for problem, mask in (("a missing value (NaN or empty)", np.isnan(values)),
                              ("an infinite value", np.isinf(values))):
            if mask.any():
                row = int(np.argmax(mask)) + 1
                raise DataError(f"{_column(frame, column, quote)} of {label} has {problem} on data row {row} "
                                f"(not counting the header) and {int(mask.sum())} in all; "
                                f"fill or remove those rows.")
    return CsvTable(chosen, target if target is not None else wanted[-1])
