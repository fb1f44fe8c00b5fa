"""What a user's file brings into an error box is shown as text, not markdown (AppTest): a CSV
column or a file named like a link stays a literal string; and the "Look inside your own model"
form says when no sequence file arrived, so sine waves are never taken for the user's file."""
import re

from bad_files import real_model_bytes
from streamlit.testing.v1 import AppTest
from test_app import APP, app, fresh_session, no_exception  # noqa: F401 (autouse: a store per test)

from pages import keys

LINK = "[x](http://evil.example)"
# A markdown link as Streamlit would draw it: brackets and a parenthesis no backslash escapes.
LIVE_LINK = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\(")
BARE_ADDRESS = re.compile(r"https?://|www\.")      # GitHub-flavoured markdown links these unasked


def shown(markdown: str) -> str:
    """The text a markdown body displays, for bodies that only escape punctuation."""
    return re.sub(r"\\(.)", r"\1", markdown)


def assert_text_not_markdown(bodies: list[str], expected: str) -> None:
    carrying = [b for b in bodies if expected in shown(b)]
    assert carrying, bodies
    for body in carrying:
        assert not LIVE_LINK.search(body) and not BARE_ADDRESS.search(body), body


def runs_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    return at.switch_page("pages/runs.py").run()


def test_a_csv_column_named_as_a_link_is_shown_as_text_in_the_sidebars_error():
    at = app()
    at.sidebar.selectbox(key="cfg_task").set_value("csv").run()
    rows = "".join(f"{'oops' if i == 50 else i},{i}\n" for i in range(100))     # a number column with a word in it
    at.file_uploader(key="cfg_csv_upload").set_value(("links.csv", f"{LINK},b\n{rows}".encode(), "text/csv")).run()
    no_exception(at)
    errors = [e.value for e in at.sidebar.error]
    assert any("links.csv" in e and "not numeric" in e for e in errors), errors
    assert_text_not_markdown(errors, LINK)


def test_a_model_file_named_as_a_link_is_named_as_text():
    at = runs_page()
    name = "[x](http:evil.example) **loud**.pt"
    at.file_uploader(key=keys.YOURS_MODEL_FILE).set_value((name, b"hello\n", "application/octet-stream")).run()
    no_exception(at)
    errors = [e.value for e in at.error]
    assert any("can't be used" in e and "text file" in e for e in errors), errors
    assert_text_not_markdown(errors, name)
    assert not any("**loud**" in e for e in errors), errors          # not bold either


def test_without_a_sequence_file_the_form_says_sine_waves_stand_in():
    at = runs_page()
    model = ("mine.pt", real_model_bytes(), "application/octet-stream")
    at.file_uploader(key=keys.YOURS_MODEL_FILE).set_value(model).run()
    no_exception(at)
    infos = [i.value for i in at.info]
    assert any("No sequence file" in i and "8 sine waves of 50 steps" in i and "64 MB" in i for i in infos), infos
    assert any(b.label == "Look inside" for b in at.button)


def test_a_link_whose_values_are_markdown_is_refused_in_plain_text():
    """A link is anyone's text: its rejected values are quoted in the warning, as text."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"cell": LINK, "lesson": LINK})
    at.run()
    no_exception(at)
    warnings = [w.value for w in at.warning]
    assert any("Not used from this link" in w for w in warnings), warnings
    assert_text_not_markdown(warnings, LINK)
