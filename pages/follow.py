"""Following a run from a follow link (`follow=<token>`): which run a follower sees now, the
owner's side of the link (make, revoke, keep on Reset, the QR code), and how often a
follower's page refreshes. The rules are explorer/follow.py's."""
from __future__ import annotations

import io
import logging
import time

import segno
import streamlit as st

from explorer import Run, Status
from explorer.data import env_number
from explorer.follow import FigureCache, FollowBoard, Followed
from explorer.store import FollowRefused, RunNotFound, StoreError
from pages.session import live_runs, run_store, session

# A follower's view redraws this often while the run trains (GATE_EXPLORER_FOLLOW_S): its
# browser polls the Train page's charts (pages/live.py), its other pages rerun. WAIT_SECONDS:
# how often it checks otherwise, to see the owner press Train.
FOLLOW_SECONDS = env_number("GATE_EXPLORER_FOLLOW_S", 0.7)
WAIT_SECONDS = 2.0
# A page whose charts the browser polls for (the Train page, pages/live.py) reruns this
# often while the run trains: only to see it pause, end or move, which the poll also shows.
POLLED_SECONDS = 10.0
SAVED_TTL_S = 10.0       # a run that is no longer live is read from the store again after this
MOVED_NOTE_S = 60.0      # how long a follower is told that the owner started a new run
QR_WIDTH = 420           # px: most of a 720-pixel-high projector, scannable from the back of the room
# Why a follow link does not open while the store cannot be read; the store's own words (which
# may name a server path) go to the server's log only.
UNREADABLE = ("this follow link cannot be opened now: the server cannot read its run store (where follow links and "
              "saved runs are kept). Reload this page in a moment; if it still does not open, tell the run's owner")
LOG = logging.getLogger("gate_explorer")


@st.cache_resource(show_spinner=False)
def follow_board() -> FollowBoard | None:
    store = run_store()
    return FollowBoard(store) if store is not None else None


@st.cache_resource(show_spinner=False)
def figure_cache() -> FigureCache:
    """The server's figures, shared by every session (explorer.follow.FigureCache)."""
    return FigureCache()


@st.cache_resource(ttl=SAVED_TTL_S, max_entries=8, show_spinner=False)
def _saved(run_id: str) -> Run:
    """A run no longer in memory, as last saved: one read-only copy for all its followers."""
    return Run.open(run_store(), run_id)


def watched() -> tuple[Followed | None, str | None]:
    """The run this session follows, and a note when it is not the live run: (None, why) when
    the link is refused (revoked, unknown) or cannot be read now."""
    where, board = session(), follow_board()
    if board is None:
        return None, "follow links need the run store, which this server could not open"
    try:
        run_id = board.run_of(where.follow_token)
    except FollowRefused as refused:
        return None, str(refused)
    except StoreError:                  # unreadable now (damaged, locked): refused_follow says so
        return None, UNREADABLE
    if where.followed_id not in (None, run_id):
        where.moved_at = time.monotonic()
    where.followed_id = run_id
    note = None
    if where.moved_at is not None and time.monotonic() - where.moved_at < MOVED_NOTE_S:
        note = "Its owner started a new run and kept its followers: you follow the new one now."
    live = live_runs().get(run_id)
    if live is None:
        try:
            live = _saved(run_id)
        except RunNotFound:
            return None, "the run this link follows has ended before it trained a step"
        except StoreError as error:
            board.problem = str(error)
            return None, UNREADABLE
        except (ValueError, OSError) as error:          # its saved data no longer loads (a CSV run's file)
            return None, f"the run this link follows cannot be opened any more: {error}"
        note = ("This run is not training any more (its owner left it, or started over without its "
                "followers): you see it as last saved.")
    if where.watching is None or where.watching.run is not live:
        where.watching = Followed(live, where.follow_token, tick=FOLLOW_SECONDS)
    return where.watching, note


def follow_every(run, polled: bool = False) -> float | None:
    """A page's refresh interval for run: None for a run of one's own (its page decides).
    `polled`: the page's browser polls for the newest step itself (pages/live.py)."""
    if not isinstance(run, Followed):
        return None
    if run.status != Status.RUNNING:
        return WAIT_SECONDS
    return POLLED_SECONDS if polled else FOLLOW_SECONDS


def state_words(status: Status) -> str:
    return {Status.RUNNING: "live", Status.IDLE: "not started yet", Status.PAUSED: "paused"}.get(status, "finished")


def follow_link(run, make: bool = False) -> str | None:
    """The follow token of the session's own run (made now when make is set)."""
    board = follow_board()
    if board is None or run is None or run.read_only or not run.id or not run.owner_key:
        return None
    try:
        token = board.link(run.id, run.owner_key, make=make)
    except StoreError:
        return None
    run.priority = token is not None     # a lecture's run trains first (explorer.admission)
    return token


def revoke(run) -> None:
    token = follow_link(run)
    if token:
        follow_board().revoke(token, run.owner_key)
        run.priority = False


def keep_followers(old, new) -> None:
    """A Reset that keeps followers: the old run's follow link now names the new run."""
    token = follow_link(old)
    if token and new is not None and new.id:
        follow_board().move(token, new.id, new.owner_key)
        new.priority = True


def followers(run) -> int:
    board = follow_board()
    token = follow_link(run)
    return board.count(token) if board is not None and token else 0


def qr_png(url: str) -> bytes:
    """The link as a QR code (PNG), large enough to scan from the back of a lecture room."""
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="png", scale=10, border=2)
    return buffer.getvalue()


# --- drawn on the follower's side ------------------------------------------------------------

def _stop_following(where) -> None:
    where.unfollow()          # the next rerun gives the session a run of its own


def refused_follow(where) -> None:
    """The page of a follower whose link does not open (revoked, unknown, its store unreadable)."""
    why = watched()[1] or "this follow link does not open"
    if why == UNREADABLE:                # one line a view in the server's log, with the store's own words
        LOG.warning("follow link %s...: %s", where.follow_token[:6], follow_board().problem)
    st.error(f"{why[0].upper()}{why[1:]}.")
    st.button("Train a run of my own", on_click=_stop_following, args=(where,), key="follow_refused_leave")


def follow_card(where) -> None:
    """The sidebar of a follower: whose run, its state, and the way out."""
    run, note = watched()
    st.subheader("Following")
    if run is not None:
        cfg = run.trainer.config
        st.markdown(f"**{run.name}**: {state_words(run.status)}  \n{cfg.cell.upper()}({cfg.hidden}) × {cfg.layers} "
                    f"on {cfg.task}")
        st.caption("Its owner trains, pauses and resets it; you watch it learn, each page your own way: "
                   "pick your own sequence, layer, unit and step, or build sequences of your own.")
        if note:
            st.info(note)
    st.button("Stop following: train my own", on_click=_stop_following, args=(where,), key="follow_leave",
              help="Leave this run to its owner and start a run of your own with the default settings.")


# --- drawn on the owner's side --------------------------------------------------------------

def audience(run, url_of) -> None:
    """Presentation mode's follow controls, compact for its strip (pages/sidebar.py): how many
    follow the run now, and a popover with its follow link as a QR code, or the button that
    makes one (url_of(params) makes the link)."""
    token = follow_link(run)
    if token:
        @st.fragment(run_every=3.0)
        def count() -> None:
            with st.container(key="present_followers", width="content"):
                st.markdown(f":material/group: **{followers(run)}** following")

        count()
    with st.popover("Follow link / QR", icon=":material/qr_code_2:", key="present_follow"):
        if not token:
            st.markdown("A follow link lets the class watch this run live, read-only, each on their own page.")
            st.button("Make a follow link", key="present_follow_make", on_click=follow_link, args=(run, True))
            return
        st.image(qr_png(url_of({"follow": token})), caption="Scan to follow this run live", width=QR_WIDTH)
        st.code(url_of({"follow": token}), language=None, wrap_lines=True)
