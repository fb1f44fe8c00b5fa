"""RNN Gate Explorer: the entry point. Run with `streamlit run app.py`."""
from pages.common import shell

shell()
