"""RNN Gate Explorer: the entry point. Declares the pages and draws the shared sidebar."""
import streamlit as st

from pages.common import current_run, sidebar

st.set_page_config(page_title="RNN Gate Explorer", page_icon=":material/cycle:", layout="wide")

pages = st.navigation([
    st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train", default=True),
    st.Page("pages/gates.py", title="Gates", icon=":material/grid_on:", url_path="gates"),
    st.Page("pages/gradients.py", title="Gradients", icon=":material/trending_down:", url_path="gradients"),
], position="top")

current_run(sidebar())
pages.run()
