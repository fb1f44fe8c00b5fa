"""The Share menu: a read-only link to this run, a link to these settings, and a follow link
(a class watches the run live, pages/follow.py). The address bar's own link also carries the
run's owner key, so it gives control: the menu says so."""
from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

import streamlit as st

from explorer import Config
from pages.follow import follow_link, followers, revoke
from pages.link import settings_params


def link_to(params: dict[str, str]) -> str:
    """A link to the page on show, holding only params (no owner key)."""
    # st.context.url is the page's address as the browser has it (with its path, the page)
    parts = urlsplit(st.context.url or "")
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(params), ""))


def share_menu(run, config: Config | None, following: str | None = None) -> None:
    if following:                       # a follower passes its follow link on, nothing more
        with st.popover("Share", icon=":material/share:", width="stretch"):
            st.markdown("**Follow live**: this link shows the same run, live and read-only.")
            st.code(link_to({"follow": following}), language=None, wrap_lines=True)
        return
    with st.popover("Share", icon=":material/share:", width="stretch"):
        if run is not None and run.id and run.worth_reopening:
            st.markdown("**This run**, read-only: opens it as last saved (it saves as it trains).")
            st.code(link_to({"run": run.id}), language=None, wrap_lines=True)
        else:
            st.caption("Train a step, and a read-only link to this run appears here.")
        st.markdown("**These settings**: a fresh run with them trains the same curve.")
        st.code(link_to(settings_params(config)), language=None, wrap_lines=True)
        _follow_live(run)
        st.caption("The address bar's link also holds this run's owner key: whoever opens it controls "
                   "the run. Share the links above instead.")


def _follow_live(run) -> None:
    """The follow link: made on request, shown with how many follow, revocable."""
    if run is None or run.read_only or not run.id or not run.trainer.task.trainable:
        return
    st.markdown("**Follow live**: a class watches this run as it trains, read-only, each student on "
                "their own page, sequence and unit. Presentation mode shows it as a QR code.")
    token = follow_link(run)
    if token is None:
        st.button("Make a follow link", key="follow_make", on_click=follow_link, args=(run, True))
        return
    st.code(link_to({"follow": token}), language=None, wrap_lines=True)
    count = followers(run)
    st.caption(f"{count} following now. Reset on the Train page can keep them.")
    st.button("Revoke the follow link", key="follow_revoke", on_click=revoke, args=(run,),
              help="Whoever follows it sees a message instead of the run; a new link can be made after.")
