"""CSV that is safe to open in a spreadsheet: every CSV the project writes goes through to_csv,
which gives a text cell or header that a spreadsheet would run as a formula a leading '."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

# The first characters that make Excel, LibreOffice or Sheets read a cell as a formula (OWASP,
# "CSV Injection"); the quote in front makes the cell plain text, shown without the quote.
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def escape(value):
    """value with a leading ' if it is text that starts with a trigger; anything else unchanged."""
    return "'" + value if isinstance(value, str) and value.startswith(TRIGGERS) else value


def to_csv(frame: pd.DataFrame, path: str | Path | None = None) -> str | None:
    """frame as CSV without its index, its header and text cells escaped: the text, or None
    once written to path. Numbers stay numbers (a negative value is not text): only columns that
    can hold text (object, string, categorical) are looked at, and in them only str cells."""
    safe = frame.rename(columns=escape)
    for i in range(safe.shape[1]):
        values = safe.iloc[:, i]
        if (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)
                or isinstance(values.dtype, pd.CategoricalDtype)):
            safe.isetitem(i, values.map(escape))
    # Rows end in CRLF, as RFC 4180 has it: with pandas' "\n" a cell holding a lone CR is not
    # quoted, and a reader ends the row there.
    return safe.to_csv(path, index=False, lineterminator="\r\n")
