"""The app's state in its URL, so a link reproduces what its sender sees: every setting that
differs from the default, the sequence, layer, unit and step picked, the lesson and
presentation mode (the page is the URL's path). Parameters from a URL are untrusted: each is
checked by Config's own rules, and what is rejected is named on the page, never raised.
"""
from __future__ import annotations

import streamlit as st

from explorer import Config
from explorer.config import FIELDS
from pages import keys

# URL name -> the kept widget value (pages/sequence.kept) it restores.
VIEW = {"seq": keys.PICK_SEQUENCE, "layer": keys.PICK_LAYER, "unit": keys.STEP_UNIT, "t": keys.STEP_T}
NOT_SHARED = {"csv_path"}          # a file on the sender's server: meaningless to anyone else
TRUE = ("1", "true", "yes", "on")


def read_link() -> tuple[dict, list[str]]:
    """The configuration draft the URL asks for, and what in it was rejected (and why).

    Also restores the view choices, the lesson and presentation mode into session state."""
    defaults = Config().to_dict()
    draft, problems = dict(defaults), []
    params = st.query_params.to_dict()
    for name, value in params.items():
        if name in FIELDS and name not in NOT_SHARED:
            try:
                draft[name] = Config.from_dict({**draft, name: value}).to_dict()[name]
            except ValueError as error:
                problems.append(f"{name}={value!r}: {error}")
        elif name in VIEW:
            if value.isdigit():
                st.session_state.setdefault(keys.KEPT, {})[VIEW[name]] = int(value)
            else:
                problems.append(f"{name}={value!r}: must be a whole number from 0")
        elif name == "present":
            st.session_state[keys.PRESENT] = value.lower() in TRUE
        elif name == "lesson":
            st.session_state[keys.LESSON] = value       # the Lessons page checks it against its lessons
        else:
            problems.append(f"{name}: not a setting of this app")
    try:
        Config.from_dict(draft)
    except ValueError as error:                      # each fine alone, not together
        problems.append(f"the combination: {error}")
        draft = defaults
    return draft, problems


def write_link(config: Config | None) -> None:
    """Put the current state in the URL (only what differs from the defaults)."""
    params = {}
    if config is not None:
        defaults = Config().to_dict()
        params = {k: str(v) for k, v in config.to_dict().items() if v != defaults[k] and k not in NOT_SHARED}
    kept = st.session_state.get(keys.KEPT, {})
    for name, key in VIEW.items():
        if kept.get(key):                            # 0, the default, is left out
            params[name] = str(kept[key])
    if st.session_state.get(keys.PRESENT):
        params["present"] = "1"
    if st.session_state.get(keys.LESSON):
        params["lesson"] = st.session_state[keys.LESSON]
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)
