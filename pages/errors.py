"""Defence in depth: an exception no page expected shows the user a short reference and nothing
more (no stack, no server path); the server's log holds the traceback under the same reference,
so a teacher who reads it out can find what happened. `plain` shows a user's text as text."""
from __future__ import annotations

import re
import secrets
from contextlib import contextmanager
from typing import Iterator

import streamlit as st
from streamlit.logger import get_logger

LOG = get_logger(__name__)
# What starts a link, an image, code, HTML, a Streamlit directive (:red[...]) or a LaTeX formula in
# st.error and its kin, and the start of a bare address, which GitHub-flavoured markdown makes a
# link. Underscores are left: file names hold them (my_data.csv), and at worst they make italics.
_MARKUP = re.compile(r"([\\`*\[\]<>#|~$])|(?<=[A-Za-z])(:)(?=//)|(?<=\bwww)(\.)", re.IGNORECASE)


def plain(text: object) -> str:
    """Text a user or their file supplied (a file's name, a CSV's column, a message quoting
    them), escaped so an error box shows it as written: `[x](http://evil)` is not a link,
    `**x**` is not bold. Letters, digits and sentence punctuation are left as they are."""
    return _MARKUP.sub(lambda m: "\\" + next(g for g in m.groups() if g), str(text))


def new_ref() -> str:
    """8 hex characters: short enough to read aloud, enough to find one line in a day's log."""
    return secrets.token_hex(4)


@contextmanager
def reported() -> Iterator[None]:
    """Run a page inside this: an exception that escapes it is logged with a reference, and the
    page shows only "Something went wrong (ref …)". Streamlit's st.stop, st.rerun and
    st.switch_page raise its control-flow exceptions, which derive from BaseException, not
    Exception, so they pass through untouched, as do KeyboardInterrupt and SystemExit.

    Not a decorator under @st.fragment: tried on the Train page's live fragment, its page no
    longer reran when a poll found the run paused (under load, Step stayed disabled for over a
    minute). A fragment's own timed reruns are left to client.showErrorDetails = "none"."""
    try:
        yield
    except Exception:
        ref = new_ref()
        LOG.exception("Something went wrong (ref %s)", ref)
        st.error(f"Something went wrong (ref {ref})")
