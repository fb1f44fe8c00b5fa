"""RNN Gate Explorer: the router. Run with `streamlit run app.py`.

Declares the pages, draws what they share (the sidebar, this session's run), runs the page
the address asks for, then writes the app's state into the address bar.
"""
import streamlit as st

from explorer.data import ASSETS
from pages import keys
from pages.charts import preload
from pages.errors import reported
from pages.follow import refused_follow
from pages.identity import remember
from pages.link import write_link
from pages.session import current_run, session, store_notice
from pages.sidebar import sidebar

# Presentation mode, for a 1280×720 projector. Streamlit sizes its text in rem, so a larger
# root font enlarges it all (charts scale their own fonts, pages/charts.py). The sidebar holds
# nothing a projected lesson needs (pages/sidebar.py draws a strip in the main column instead),
# and Streamlit only collapses it at a page's first load, so it is hidden here, with the
# buttons that would bring it back; the columns take the width it and the margins had.
PRESENT_CSS = """
html { font-size: 20px; }
[data-testid='stMetricValue'] { font-size: 2.5rem; }
[data-testid='stSidebar'], [data-testid='stExpandSidebarButton'], [data-testid='stSidebarCollapseButton'] {
  display: none; }
[data-testid='stMainBlockContainer'] { padding: 4rem 1.5rem 3rem; }
.st-key-present_strip p { font-size: 0.8rem; }
.st-key-present_strip button { min-height: 2rem; padding-top: 0; padding-bottom: 0; }
.live-step { flex-direction: row; align-items: baseline; gap: 0.5rem; }
.live-value { font-size: 1.6rem; line-height: 1.3; }
"""
# Less empty space above the page, so a projected lesson shows more of the charts. Step
# through's ◀ and ▶ sit in narrow columns: without side padding their glyph is never clipped.
PAGE_CSS = """
[data-testid='stMainBlockContainer'] { padding-top: 4.5rem; }
.st-key-step_back button, .st-key-step_forward button { padding-left: 0; padding-right: 0; }
"""
# Served inline (a data: URL), not fetched: a :material/ icon as page_icon had every page ask
# fonts.gstatic.com for it, which an offline classroom network cannot answer.
FAVICON = ASSETS / "favicon.svg"

def pages() -> list:
    """The app's pages (made in a script run: st.Page wants one)."""
    return [
        st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train", default=True),
        st.Page("pages/gates.py", title="Gates", icon=":material/grid_on:", url_path="gates"),
        st.Page("pages/gradients.py", title="Gradients", icon=":material/trending_down:", url_path="gradients"),
        st.Page("pages/step.py", title="Step through", icon=":material/calculate:", url_path="step"),
        st.Page("pages/lessons.py", title="Lessons", icon=":material/school:", url_path="lessons"),
        st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:", url_path="runs"),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
        st.Page("pages/sweep.py", title="Sweep", icon=":material/stacked_line_chart:", url_path="sweep"),
    ]


def main() -> None:
    st.set_page_config(page_title="RNN Gate Explorer", page_icon=str(FAVICON), layout="wide")
    page = st.navigation(pages(), position="top")
    if st.session_state.get(keys.GO_TO):   # a callback can't switch pages itself
        st.switch_page(st.session_state.pop(keys.GO_TO))
    st.html(f"<style>{PAGE_CSS}</style>")
    where = session()
    with st.sidebar:
        preload()
        remember(where.owner_key)         # this browser keeps its owner key (pages/identity.py)
    config = sidebar()
    if st.session_state.get(keys.PRESENT):
        st.html(f"<style>{PRESENT_CSS}</style>")
    if (notice := store_notice()) is not None:
        st.warning(notice)
    if current_run(config) is None and where.follow_token:
        refused_follow(where)           # a revoked or unknown follow link: say so, nothing else
    else:
        with reported():            # an unexpected error: a reference, never a stack
            page.run()
    # after the page: its choices (sequence, unit...) and the run it left the session with
    write_link(config, where.run, where.lesson_runs, page.url_path, where.follow_token)


if __name__ == "__main__":          # each session's run of this script
    main()
else:
    # `streamlit run app.py` finds this (by reading the file) and serves it: Streamlit's own
    # server, plus the route a follower's browser polls for the live charts (pages/live.py).
    from explorer.memory import freeze_startup_objects
    from pages.live import ROUTES
    app = st.App(__file__, routes=ROUTES)
    freeze_startup_objects()
