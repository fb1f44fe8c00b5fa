"""The peephole and CIFG LSTMs, which train through their compiled steps (explorer/cells/native.py),
in the app as a user drives it: a link with the cell trains in the app's worker process, the
loss chart grows, and the Gates page draws the cell's own gates."""
import pytest
from _app import STEP, plot, plot_points, wait_ready

QUERY = "?task=adding&seq_len=40&hidden=16&steps=100000&cell={cell}"


@pytest.mark.parametrize("cell, marks", [
    ("peephole", ["input gate i_t", "forget gate f_t", "output gate o_t"]),
    ("cifg", ["input gate i_t = 1 − f_t", "forget gate f_t", "output gate o_t"])])
def test_the_unfused_cells_train_in_the_app_and_show_their_gates(app, cell, marks):
    app.page.goto(app.url + "/" + QUERY.format(cell=cell))
    wait_ready(app.page, STEP)
    app.press("Train")
    app.wait_step_above(150)
    app.press("Pause")
    assert plot_points(app.page, "loss_chart") > 10        # the run's own steps, drawn
    assert not app.problems(), "training"
    app.shot(f"train-{cell}")
    app.go_to("Gates", plot("gate_heatmaps"))
    titles = app.page.evaluate("""sel => { const g = document.querySelector(sel);
        return g && g._fullLayout ? (g._fullLayout.annotations || []).map(a => a.text) : []; }""",
                               plot("gate_heatmaps"))
    assert all(any(mark in text for text in titles) for mark in marks), titles   # every gate of the cell
    assert not app.problems(), "gates"
    app.shot(f"gates-{cell}")
