"""The Runs page's "Look inside your own model": upload a state_dict and (optionally) sequences,
say what a state_dict cannot (a plain RNN's activation, the array's layout, the traced loss),
and the model becomes this session's run: Gates, Gradients and Step through show it."""
from __future__ import annotations

import io
import math
from pathlib import Path

import streamlit as st

from explorer.data import UPLOAD_ENV, max_upload_mb
from explorer.loading import (NONLINEARITIES, ModelFileError, build_module, infer_architecture, naming,
                              read_sequences, read_state_dict, recurrent_prefixes)
from explorer.store import StoreError
from explorer.yours import MAX_STEPS, WAVE_COUNT, look_inside
from pages import keys
from pages.errors import plain
from pages.session import Session
from pages.sidebar import take_settings

LAYOUTS = {"batch": "batch, time, features", "time": "time, batch, features"}


def _too_big(upload, what: str) -> bool:
    """Say so when an upload is over the cap (each file has its own message)."""
    cap = max_upload_mb()
    if upload.size > cap * 2**20:
        st.error(f"The {what} {plain(upload.name)} is {upload.size / 2**20:.1f} MB; uploads here are capped at "
                 f"{cap:g} MB ({UPLOAD_ENV} on the server). Nothing was read.")
        return True
    return False


def _named(upload) -> io.BytesIO:
    data = io.BytesIO(upload.getvalue())
    data.name = upload.name
    return data


def your_model_form(where: Session) -> None:
    st.caption("A state_dict of an nn.LSTM, nn.GRU or nn.RNN you trained anywhere: see its gates, cell state "
               "and gradient at every step on your own sequences. Files are read as tensors only: nothing in "
               f"them is run. Each file can be up to {max_upload_mb():g} MB.")
    left, right = st.columns(2)
    model_file = left.file_uploader("Model: its state_dict (.safetensors, .pt or .pth)",
                                    type=["safetensors", "pt", "pth"], key=keys.YOURS_MODEL_FILE,
                                    max_upload_size=math.ceil(max_upload_mb()),
                                    help="torch.save(module.state_dict(), 'model.pt') or safetensors' save_file. "
                                         "A whole model's state_dict works too: the recurrent module is found "
                                         "by its parameter names (weight_ih_l0...).")
    sequences_file = right.file_uploader("Sequences (.npy or .csv), optional", type=["npy", "csv"],
                                         key=keys.YOURS_SEQUENCES_FILE, max_upload_size=math.ceil(max_upload_mb()),
                                         help="A .npy array, 3-D (several sequences) or 2-D (time, features: one "
                                              "sequence); or a CSV of one sequence, a row per step, a column per "
                                              "feature, a header. Without one: sine waves; the Gates page also "
                                              "builds sequences by hand.")
    if model_file is None:
        st.info(f"Upload a model's state_dict (up to {max_upload_mb():g} MB; the uploader refuses a larger "
                "file) to look inside it.")
        return
    if _too_big(model_file, "model file") or (sequences_file is not None and _too_big(sequences_file, "sequence file")):
        return
    try:
        state = read_state_dict(_named(model_file), name=model_file.name)
        prefixes = recurrent_prefixes(state)
        prefix = None
        if len(prefixes) > 1:
            prefix = st.selectbox("This file holds several recurrent modules: which one?", prefixes,
                                  key=keys.YOURS_PREFIX, format_func=lambda p: p.rstrip(".") or "(no prefix)")
        arch = infer_architecture(state, prefix)
    except ModelFileError as error:
        st.error(f"This model can't be used: {plain(naming(error, model_file.name))}")
        return
    under = f" (under “{plain(arch.prefix.rstrip('.'))}”)" if arch.prefix else ""    # a key in the user's file
    st.success(f"Found {arch.describe()}{under}.")

    one, two, three, four = st.columns(4)
    activation = one.radio("Activation of the plain RNN", NONLINEARITIES, key=keys.YOURS_NONLINEARITY,
                           horizontal=True, disabled=arch.kind != "rnn",
                           help="A state_dict does not record whether an nn.RNN used tanh or ReLU. "
                                "LSTMs and GRUs have no such choice.")
    layout = two.radio("A 3-D .npy's layout", tuple(LAYOUTS), key=keys.YOURS_LAYOUT, format_func=LAYOUTS.get,
                       horizontal=True, help="How your array is laid out (weights carry no layout). "
                                             "A 2-D array or a CSV is one sequence, (time, features).")
    steps = three.number_input("Steps of the sine waves", 2, 1000, 50, key=keys.YOURS_STEPS,
                               disabled=sequences_file is not None,
                               help="Without a sequence file, the model is shown on 8 sine waves this long.")
    loss = four.text_input("Traced loss", "last", key=keys.YOURS_LOSS, max_chars=20,
                           help="Whose gradient the Gradients page follows back in time: 'last' (the top "
                                "layer's h at the last step, summed) or UNIT@STEP (one top-layer unit at one "
                                "step, e.g. 3@10).")
    name = st.text_input("Name", Path(model_file.name).stem, key=keys.YOURS_NAME, max_chars=200)
    if sequences_file is None:
        # The browser drops a file over the cap without a word to the server: what is missing is
        # said here, so sine waves are never taken for the file the user chose.
        st.info(f"No sequence file is uploaded: **Look inside** shows the model on {WAVE_COUNT} sine waves of "
                f"{int(steps)} steps. To use yours, upload a .npy or .csv of up to {max_upload_mb():g} MB "
                f"above (a larger file is refused by the uploader and never arrives).")
    if not st.button("Look inside", type="primary", key="yours_open", icon=":material/visibility:"):
        return
    try:
        module = build_module(state, activation, batch_first=True, prefix=prefix)
        x = features = None
        source = "sine waves"
        if sequences_file is not None:
            x, features = read_sequences(_named(sequences_file), time_first=layout == "time",
                                         name=sequences_file.name, max_steps=MAX_STEPS)
            source = sequences_file.name
        config, task, note = look_inside(module, x, loss.strip() or "last", features, source, int(steps))
        run = where.look_inside(config, task, name.strip() or Path(model_file.name).stem)
    except (ModelFileError, ValueError, StoreError, OSError) as error:
        st.error(f"Could not look inside this model: {plain(error)}")
        return
    take_settings(run)
    if note:
        st.session_state[keys.YOURS_NOTE] = note
    st.session_state[keys.GO_TO] = "pages/gates.py"
    st.rerun()
