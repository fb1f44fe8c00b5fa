"""The "Look inside your own model" form in Chromium, where only a browser can show it: a sequence
file over the cap is dropped by the uploader before it reaches the server, and the form then
says that no sequence file arrived and sine waves stand in; a file named like a markdown link is
named in the error box as text, with no link drawn."""
from pathlib import Path

from _app import TIMEOUT_MS, wait_ready, wait_until

from bad_files import real_model_bytes
from explorer.data import DEFAULT_MAX_UPLOAD_MB


def _form(page, url: str) -> None:
    page.goto(url + "/runs")
    wait_ready(page, '[data-testid="stExpander"]')
    page.get_by_text("Look inside your own model").click()
    wait_ready(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.wait_for(state="attached")


def _upload(page, index: int, name: str, raw: bytes | Path) -> None:
    files = raw if isinstance(raw, Path) else {"name": name, "mimeType": "application/octet-stream", "buffer": raw}
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').nth(index).set_input_files(files)
    wait_ready(page)


def test_a_sequence_file_over_the_cap_leaves_the_form_saying_sine_waves_stand_in(app, tmp_path):
    page = app.page
    _form(page, app.url)
    _upload(page, 0, "mine.pt", real_model_bytes())
    wait_until(page, lambda: page.get_by_text("Found LSTM, 1 layer × 5 units").count(), TIMEOUT_MS / 1000,
               "the architecture read from the state_dict")
    too_big = tmp_path / "walks.npy"
    with open(too_big, "wb") as out:
        out.truncate(int((DEFAULT_MAX_UPLOAD_MB + 1) * 2**20))     # sparse: a size, no disk
    _upload(page, 1, "walks.npy", too_big)
    alerts = page.locator('[data-testid="stAlert"]')
    wait_until(page, lambda: alerts.filter(has_text="No sequence file is uploaded").count(), TIMEOUT_MS / 1000,
               "the note that no sequence file arrived")
    note = alerts.filter(has_text="No sequence file is uploaded").inner_text()
    assert "sine waves" in note and f"{DEFAULT_MAX_UPLOAD_MB:g} MB" in note, note
    app.shot("upload-over-the-cap")
    assert not app.problems()


def test_a_file_named_like_a_link_is_named_as_text_in_the_error_box(app):
    page = app.page
    _form(page, app.url)
    name = "[x](http:evil.example) **loud**.pt"
    _upload(page, 0, name, b"hello\n")
    alerts = page.locator('[data-testid="stAlert"]')
    wait_until(page, lambda: alerts.filter(has_text="can't be used").count(), TIMEOUT_MS / 1000,
               "the refusal of a text file")
    box = alerts.filter(has_text="can't be used")
    assert name in box.inner_text(), box.inner_text()            # the name as written, brackets and stars
    assert box.locator("a").count() == 0 and box.locator("strong").count() == 0
    assert not app.problems()
