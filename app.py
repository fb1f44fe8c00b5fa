"""RNN Gate Explorer: the entry point. Run with `streamlit run app.py`."""
import streamlit as st

from pages.common import shell

st.set_page_config(page_title="RNN Gate Explorer", page_icon=":material/cycle:", layout="wide")
shell()
