"""The app's state in its URL, so a link reproduces what its sender sees: every setting that
differs from the default, the sequence, layer, unit and step picked, the lesson and
presentation mode (the page is the URL's path), and the run: `run=<id>&key=<owner key>` (a
lesson's: `runs=<id>.<id>...`), so a reload reattaches to it or reopens it from the store. On
the Compare page, `compare=<id>.<id>...`: the runs it compares; on the Gates page,
`clamp=<JSON>`: the what-if panel's clamp (explorer.clamp's normal form). A follower's link holds
`follow=<token>` (pages/follow.py) and its own view choices, no settings and no run.
Parameters from a URL are untrusted: each is checked by Config's own rules (ids and keys by
their form; the view choices against the model the link opens on), and what is rejected is
named on the page, in one warning, never raised. The settings are checked together, once, as
Config checks any settings, so the order of a link's parameters means nothing.
"""
from __future__ import annotations

import json
import re
from typing import Callable

import streamlit as st

from explorer import Config, Status
from explorer.config import FIELDS, field_value
from pages import keys

# URL name -> the kept widget value (pages/sequence.kept) it restores.
VIEW = {"seq": keys.PICK_SEQUENCE, "layer": keys.PICK_LAYER, "unit": keys.STEP_UNIT, "t": keys.STEP_T}
NOT_SHARED = {"csv_path"}          # a file on the sender's server: meaningless to anyone else
TRUE = ("1", "true", "yes", "on")
TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")    # a run id or owner key (explorer.store.new_id)
# A view choice: ASCII digits only (str.isdigit takes "²", which int() refuses), and few enough
# that int() takes them (Python refuses more than 4,300 digits) and they say something.
WHOLE = re.compile(r"^[0-9]{1,18}$")
LINKED_VIEW = "linked_view"        # URL name -> the number a link asked for, until view_problems checks it


def read_link() -> tuple[dict, list[str]]:
    """The configuration draft the URL asks for, and what in it was rejected (and why).

    Also restores the view choices, the lesson and presentation mode into session state."""
    params = st.query_params.to_dict()
    draft, problems = linked_settings(params)
    for name, value in params.items():
        if name in FIELDS and name not in NOT_SHARED:
            continue                                 # read by linked_settings, together
        if name in VIEW:
            if WHOLE.match(value):
                # Whether the model has it is known once its run is: view_problems says.
                st.session_state.setdefault(keys.KEPT, {})[VIEW[name]] = int(value)
                st.session_state.setdefault(LINKED_VIEW, {})[name] = int(value)
            else:
                problems.append(f"{name}={_shown(value)}: must be a whole number from 0")
        elif name == "present":
            st.session_state[keys.PRESENT] = value.lower() in TRUE
        elif name == "lesson":
            st.session_state[keys.LESSON] = value       # the Lessons page checks it against its lessons
        elif name == "compare":
            tokens = value.split(".")
            if all(TOKEN.match(t) for t in tokens):
                st.session_state[keys.LINKED_COMPARE] = tokens      # the Compare page looks them up
            else:
                problems.append("compare: not a list of run ids (<id>.<id>...)")
        elif name == "sweep":
            if TOKEN.match(value):
                st.session_state[keys.LINKED_SWEEP] = value             # the Sweep page looks it up
            else:
                problems.append("sweep: not a sweep id")
        elif name == "clamp":
            st.session_state[keys.LINKED_CLAMP] = value       # the Gates page's what-if panel checks it
            layer = linked_layer(value)
            if layer is not None and "layer" not in params:    # the picker opens on the layer it clamps
                st.session_state.setdefault(keys.KEPT, {})[keys.PICK_LAYER] = layer
        elif name == "follow":
            if TOKEN.match(value):
                st.session_state[keys.LINKED_FOLLOW] = value
            else:
                problems.append("follow: not a follow token")
        elif name in ("run", "key", "runs"):
            tokens = value.split(".") if name == "runs" else [value]
            if all(TOKEN.match(t) for t in tokens):
                st.session_state[{"run": keys.LINKED_RUN, "key": keys.LINKED_KEY, "runs": keys.LINKED_LESSON_RUNS}[name]] = \
                    tokens if name == "runs" else value
            else:
                problems.append(f"{name}: not a run id or key")
        else:
            problems.append(f"{_shown(name)[1:-1]}: not a setting of this app")
    return draft, problems


def linked_settings(params: dict[str, str]) -> tuple[dict, list[str]]:
    """The settings draft a link's parameters ask for (the others are ignored), and what in it
    was rejected (and why). Each value is first checked alone, by its own field's rules: one
    that fails is named and its default stands in. Then all of them are checked together, once,
    as Config checks any settings, whatever their order. Settings that fail only together (this
    server's memory budget) are kept, as if typed into the sidebar, which says what to lower:
    the reader sees what the sender ran, and changes one value rather than retyping them all."""
    draft, problems = Config().to_dict(), []
    for name, value in params.items():
        if name in FIELDS and name not in NOT_SHARED:
            try:
                draft[name] = field_value(name, value)
            except ValueError as error:
                problems.append(f"{name}={_shown(value)}: {error}")
    try:
        Config.from_dict(draft)
    except ValueError as error:
        problems.append(f"its settings, together: {error} They stay in the sidebar, not run: change one to train")
    return draft, problems


def view_problems(opened: Callable[[], object]) -> list[str]:
    """The view choices the link asked for (seq, layer, unit, t) that the model it opens on does
    not have, each named with what the model has; they are dropped, so the pickers open on
    their defaults. Checked once, on the session's first run; opened() gives the run the link
    opens on (or None), asked only when the link has view choices."""
    linked = st.session_state.pop(LINKED_VIEW, {})
    run = opened() if linked else None
    if run is None:
        return []
    trainer = run.trainer
    probes = trainer.probe_set[0]                                  # (batch, time, features)
    has = {"seq": (len(probes), "this model has {} probe sequence{}"),
           "layer": (trainer.config.layers, "this model has {} layer{}"),
           "unit": (trainer.config.hidden, "this model has {} unit{}"),
           "t": (probes.shape[1], "its sequences have {} step{}")}
    problems, kept = [], st.session_state.setdefault(keys.KEPT, {})
    for name, value in linked.items():
        count, phrase = has[name]
        if value >= count:
            kept.pop(VIEW[name], None)
            numbered = "0" if count == 1 else f"0 to {count - 1}"
            problems.append(f"{name}={value} ({phrase.format(count, 's' * (count != 1))}: {numbered})")
    return problems


def not_used(problems: list[str]) -> str:
    """The one warning a link's rejected parameters get: each named, and why."""
    return "Not used from this link (the defaults stand in): " + "; ".join(problems)


def _shown(value: str) -> str:
    """A value from the URL as a message quotes it: a hostile one is cut short."""
    return repr(value if len(value) <= 40 else value[:40] + "…")


def linked_layer(text: str) -> int | None:
    """The one layer a link's clamp names, if it names exactly one (the Gates page's layer picker
    opens on it); None otherwise, or for text that is not such a clamp (the what-if panel says why)."""
    try:
        clamp = json.loads(text)
    except ValueError:
        return None
    specs = list(clamp.values()) if isinstance(clamp, dict) else []
    chosen = specs[0].get("layers") if len(specs) == 1 and isinstance(specs[0], dict) else None
    if isinstance(chosen, list) and len(chosen) == 1 and isinstance(chosen[0], int) and not isinstance(chosen[0], bool):
        return chosen[0] if chosen[0] >= 0 else None
    return None


def settings_params(config: Config | None) -> dict[str, str]:
    """The settings that differ from the defaults, as URL parameters: a link that trains the
    same curve from scratch."""
    if config is None:
        return {}
    defaults = Config().to_dict()
    return {k: str(v) for k, v in config.to_dict().items() if v != defaults[k] and k not in NOT_SHARED}


def run_params(run, lesson_runs: dict) -> dict[str, str]:
    """The session's run (and a lesson's runs) by id, with the owner key where it owns them.
    A run that has neither stepped nor started is left out: there is nothing to reopen. One
    that has just started is in: the rerun of the Train press is the last full rerun before a
    reload, while only the live charts refresh."""
    params = {}
    if run is not None and run.id and (run.worth_reopening or run.read_only or run.status == Status.RUNNING):
        params["run"] = run.id
        if not run.read_only:
            params["key"] = run.owner_key
    lesson = [r for r in lesson_runs.values() if r.id]
    if lesson and len(lesson) == len(lesson_runs) and any(r.trainer.steps_done or r.status == Status.RUNNING
                                                          for r in lesson):
        params["runs"] = ".".join(r.id for r in lesson)
        params.setdefault("key", next((r.owner_key for r in lesson if not r.read_only), None))
        if params["key"] is None:
            del params["key"]
    return params


def write_link(config: Config | None, run=None, lesson_runs: dict | None = None, page: str = "",
               follow: str | None = None) -> None:
    """Put the current state in the URL (only what differs from the defaults). `page` is the
    page's url_path: only the Compare page's link names the runs it compares. A follower's
    (`follow`: its token) holds the token instead of settings and runs."""
    params = {"follow": follow} if follow else {**settings_params(config), **run_params(run, lesson_runs or {})}
    kept = st.session_state.get(keys.KEPT, {})
    if page == "compare" and kept.get(keys.COMPARE_PICK):
        params["compare"] = ".".join(kept[keys.COMPARE_PICK])
    if page == "sweep" and kept.get(keys.SWEEP_PICK):
        params["sweep"] = kept[keys.SWEEP_PICK]
    if page == "gates" and kept.get(keys.WHATIF_CLAMP):
        params["clamp"] = json.dumps(kept[keys.WHATIF_CLAMP], separators=(",", ":"))
    for name, key in VIEW.items():
        if kept.get(key):                            # 0, the default, is left out
            params[name] = str(kept[key])
    if st.session_state.get(keys.PRESENT):
        params["present"] = "1"
    if st.session_state.get(keys.LESSON):
        params["lesson"] = st.session_state[keys.LESSON]
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)
