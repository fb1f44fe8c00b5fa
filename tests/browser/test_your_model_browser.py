"""Your own model in Chromium: upload a state_dict and a .npy of sequences on the Runs page and
see its gates (the heatmap's numbers are the fused module's); a file that is not a state_dict
is refused with a message; the address reopens the model in a fresh browser."""
import base64

import numpy as np
import torch
from _app import IDLE, TIMEOUT_MS, plot, plot_data, wait_ready, wait_until
from torch import nn

from explorer import trace


def _files(tmp_path):
    torch.manual_seed(7)
    module = nn.LSTM(2, 5, 1, batch_first=True).eval()
    weights = tmp_path / "my_lstm.pt"
    torch.save({f"lstm.{k}": v for k, v in module.state_dict().items()}, weights)   # as a model's would be
    x = np.random.default_rng(1).normal(size=(3, 12, 2)).astype(np.float32)          # (batch, time, features)
    sequences = tmp_path / "walks.npy"
    np.save(sequences, x)
    return module, x, weights, sequences


def _upload(page, index: int, path) -> None:
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').nth(index).set_input_files(str(path))
    page.wait_for_timeout(300)
    wait_ready(page)


def _input_gate_z(page) -> np.ndarray:
    """The input gate's heatmap as the browser holds it, (units, time)."""
    data = plot_data(page, "gate_heatmaps")
    z = next(t for t in data if "input gate i_t" in t.get("hovertemplate", ""))["z"]
    if isinstance(z, dict):                          # Plotly's typed-array spec: base64 and a shape
        shape = [int(n) for n in str(z["shape"]).split(",")] if "shape" in z else [-1]
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(shape)
    return np.asarray(z, dtype=float)


def test_upload_a_state_dict_and_sequences_and_see_its_gates(app, browser, tmp_path):
    module, x, weights, sequences = _files(tmp_path)
    page = app.page
    page.goto(app.url + "/runs")
    wait_ready(page, '[data-testid="stExpander"]')
    page.get_by_text("Look inside your own model").click()
    wait_ready(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.wait_for(state="attached")

    bad = tmp_path / "notes.pt"
    bad.write_bytes(b"not a pickle at all")
    _upload(page, 0, bad)
    wait_until(page, lambda: page.get_by_text("This model can't be used").count(), TIMEOUT_MS / 1000,
               "the message refusing a file that is not a state_dict")
    assert not app.problems()
    _upload(page, 0, weights)                        # the next file replaces it
    wait_until(page, lambda: page.get_by_text("Found LSTM, 1 layer × 5 units, 2 input features").count(),
               TIMEOUT_MS / 1000, "the architecture read from the state_dict")
    _upload(page, 1, sequences)
    app.shot("your-model-upload")
    page.get_by_role("button", name="Look inside").click()
    page.wait_for_url("**/gates?*", timeout=TIMEOUT_MS)
    wait_ready(page, plot("gate_heatmaps"))
    wait_until(page, lambda: plot_data(page, "gate_heatmaps"), TIMEOUT_MS / 1000, "the gate heatmaps")
    reference = trace(module, torch.from_numpy(x))
    np.testing.assert_allclose(_input_gate_z(page), reference.layers[0].gates["input"][0].T, atol=1e-3)
    assert page.locator('[data-testid="stSidebar"]').get_by_text("my_lstm").count()
    assert not app.problems()
    app.shot("your-model-gates")

    link = page.url                                  # run=<id>&key=<owner key>
    assert "run=" in link and "key=" in link and "task=model" in link
    other = browser.new_context(viewport={"width": 1600, "height": 1000})
    try:
        fresh = other.new_page()
        fresh.goto(link)
        wait_ready(fresh, plot("gate_heatmaps"))
        wait_until(fresh, lambda: plot_data(fresh, "gate_heatmaps"), TIMEOUT_MS / 1000, "the reopened heatmaps")
        np.testing.assert_allclose(_input_gate_z(fresh), reference.layers[0].gates["input"][0].T, atol=1e-3)
        fresh.locator(IDLE).wait_for(state="attached")
    finally:
        other.close()
