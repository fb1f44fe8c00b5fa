"""This browser's owner key: whoever holds it controls the runs made with it.

Kept in a cookie, so a reload or a visit the next day from the same browser is the same
owner, and its saved runs can be continued from the Runs page. A link with `key=` hands the
key to another browser (the address bar's link gives control; the Share menu says so).
"""
from __future__ import annotations

import streamlit as st

from explorer.store import new_key
from pages.link import TOKEN

COOKIE = "gate_explorer_owner"
MAX_AGE_S = 400 * 24 * 3600            # about the longest browsers keep a cookie

_JS = """
export default function ({ data }) {
  document.cookie = `%(name)s=${data}; max-age=%(age)d; path=/; SameSite=Strict`;
}
"""
_component = st.components.v2.component("gate_explorer.owner_cookie", js=_JS % {"name": COOKIE, "age": MAX_AGE_S})


def browser_key() -> str:
    """The owner key this browser sent, or a new one (remembered in the cookie)."""
    key = st.context.cookies.get(COOKIE)
    if not isinstance(key, str) or not TOKEN.match(key):
        key = new_key()
    return key


def remember(key: str) -> None:
    """Write the key into this browser's cookie (a zero-height component)."""
    _component(data=key, key="owner_cookie", height=0)
