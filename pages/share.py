"""The Share menu: a read-only link to this run, and a link to these settings. The address
bar's own link also carries the run's owner key, so it gives control: the menu says so."""
from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

import streamlit as st

from explorer import Config
from pages.link import settings_params


def link_to(params: dict[str, str]) -> str:
    """A link to the page on show, holding only params (no owner key)."""
    # st.context.url is the page's address as the browser has it (with its path, the page)
    parts = urlsplit(st.context.url or "")
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(params), ""))


def share_menu(run, config: Config | None) -> None:
    with st.popover("Share", icon=":material/share:", width="stretch"):
        if run is not None and run.id and run.worth_reopening:
            st.markdown("**This run**, read-only: opens it as last saved (it saves as it trains).")
            st.code(link_to({"run": run.id}), language=None, wrap_lines=True)
        else:
            st.caption("Train a step, and a read-only link to this run appears here.")
        st.markdown("**These settings**: a fresh run with them trains the same curve.")
        st.code(link_to(settings_params(config)), language=None, wrap_lines=True)
        st.caption("The address bar's link also holds this run's owner key: whoever opens it controls "
                   "the run. Share the links above instead.")
