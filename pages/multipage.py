"""The one workaround for Streamlit's older pages-folder mode.

A folder named pages/ next to the main script switches that mode on: Streamlit runs a page
file on its own until the first st.navigation call in the server's life (and AppTest
switches it back on before every run). So a fresh server's first request for /gates, say,
would draw that page with no sidebar and no run. `inside_app()` makes such a stray run draw
the whole app instead — app.main() runs the page properly, inside this same run (a rerun
would drop a button's click) — and then ends it. tests/test_app.py and the browser tests
open pages directly, which pins this.
"""
import streamlit as st


def inside_app() -> None:
    from streamlit.runtime.pages_manager import PagesManager
    if PagesManager.uses_pages_directory:
        import app                       # the main script's folder is on sys.path
        app.main()
        st.stop()
