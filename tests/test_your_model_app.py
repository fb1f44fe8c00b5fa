"""Your own model in the app (AppTest): a model saved as a run opens from its link on every page,
with the numbers of the original fused module; the sidebar changes its traced loss; the Runs
page opens it; the way back to training works. Uploading, with the files a user picks, runs
in Chromium (tests/browser/test_your_model_browser.py)."""
import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest
from test_app import APP, figures, fresh_session, no_exception, values  # noqa: F401 (autouse: a store per test)
from torch import nn

from explorer import Run, Status, Trainer, trace
from explorer.store import RunStore, new_key
from explorer.yours import look_inside


@pytest.fixture
def saved(tmp_path):
    """A 2-layer GRU trained nowhere, saved as a model run: (module, x, run id, owner key)."""
    torch.manual_seed(3)
    module = nn.GRU(2, 6, 2, batch_first=True).eval()
    x = np.random.default_rng(0).normal(size=(4, 15, 2)).astype(np.float32)   # (batch, time, features)
    config, task, _ = look_inside(module, x, "last", ["left", "right"], "walk.npy")
    key = new_key()
    run = Run(config, trainer=Trainer(config, task=task), store=RunStore(tmp_path / "runs.sqlite"),
              owner_key=key, name="my gru", status=Status.FINISHED)
    run.save()
    return module, x, run.id, key


def opened(params: dict, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(params)
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def test_a_model_link_opens_it_on_every_page_with_the_fused_modules_numbers(saved):
    module, x, run_id, key = saved
    reference = trace(module, torch.from_numpy(x))
    at = opened({"run": run_id, "key": key})
    no_exception(at)
    assert at.markdown[0].value.startswith("#### Your model · GRU(6) × 2 · T = 15")
    assert any("not trained" in i.value for i in at.info)
    assert not any(b.label == "Train" for b in at.button)              # nothing to train
    assert at.query_params["run"] == run_id and at.query_params["key"] == key

    at.switch_page("pages/gates.py").run()
    no_exception(at)
    heat = figures(at)["gate_heatmaps_plot"]["data"]
    update = next(h for h in heat if "update gate z_t" in h.get("hovertemplate", ""))
    z = np.asarray([values(row) for row in update["z"]]) if isinstance(update["z"], list) else \
        values(update["z"]).reshape(6, 15)
    np.testing.assert_allclose(z, reference.layers[0].gates["update"][0].T, atol=1e-3)   # (unit, time)
    assert "Your model's weights as uploaded" in " ".join(c.value for c in at.caption)
    assert not any(t.label == "Follow training (newest probe)" for t in at.toggle)

    at.switch_page("pages/gradients.py").run()
    no_exception(at)
    grad = figures(at)["grad_time_plot"]
    top = next(t for t in grad["data"] if t["name"] == "‖∂L/∂h_t‖ layer 2")
    np.testing.assert_allclose(values(top["y"]), reference.layers[1].grad_hidden[0], rtol=1e-4)
    assert "grad_history_plot" not in figures(at)                      # no training history

    at.switch_page("pages/step.py").run()
    no_exception(at)
    last = at.get("latex")[-1].proto.body
    assert last.strip("$\n").startswith("h_t =")
    check = " ".join(c.value for c in at.caption)
    assert f"{reference.layers[0].hidden[0, 0, 0]:.6g}" in check       # h_0 of unit 0, from the fused GRU
    with torch.no_grad():
        fused = module(torch.from_numpy(x))[0]
    np.testing.assert_allclose(reference.output, fused.numpy(), atol=1e-6)


def test_the_sidebar_changes_the_traced_loss_and_refuses_one_out_of_range(saved, tmp_path):
    module, x, run_id, key = saved
    at = opened({"run": run_id, "key": key}, "pages/gradients.py")
    box = at.sidebar.text_input(key="cfg_trace_loss")
    assert box.value == "last"
    box.set_value("3@4").run()
    no_exception(at)

    def unit_at_step(output, target):
        return output[:, 4, 3].sum()

    reference = trace(module, torch.from_numpy(x), loss_fn=unit_at_step)
    top = next(t for t in figures(at)["grad_time_plot"]["data"] if t["name"] == "‖∂L/∂h_t‖ layer 2")
    expected = reference.layers[1].grad_hidden[0]
    assert (expected[5:] == 0).all() and (expected[:5] > 0).all()     # nothing after step 4 reaches h_4
    # a log axis draws the zeros as gaps
    np.testing.assert_allclose(values(top["y"]), np.where(expected > 0, expected, np.nan), rtol=1e-4)
    assert RunStore(tmp_path / "runs.sqlite").config(run_id).trace_loss == "3@4"   # saved with the run
    at.sidebar.text_input(key="cfg_trace_loss").set_value("9@4").run()
    no_exception(at)
    assert any("unit 9 is out of range" in e.value for e in at.error)
    at.sidebar.text_input(key="cfg_trace_loss").set_value("what").run()
    assert any("last' or UNIT@STEP" in e.value for e in at.error)
    assert RunStore(tmp_path / "runs.sqlite").config(run_id).trace_loss == "3@4"   # nothing lost


def test_the_runs_page_lists_your_model_and_opens_it_on_the_gates_page(saved):
    _, _, run_id, key = saved
    at = opened({}, "pages/runs.py")
    no_exception(at)
    # made in another browser session here (its key is not this one's): read-only, still viewable
    at.toggle(key="runs_everyone").set_value(True).run()
    pick = at.selectbox(key="runs_pick")
    assert "my gru" in pick.options[0]
    open_button = next(b for b in at.button if b.key == "runs_open")
    assert open_button.label == "Look inside"
    open_button.click().run()
    at.switch_page("pages/gates.py").run()
    no_exception(at)
    assert "gate_heatmaps_plot" in figures(at)
    assert at.query_params["run"] == run_id and "key" not in at.query_params


def test_leaving_your_model_starts_a_trainable_run_and_a_model_task_link_alone_is_a_message(saved):
    _, _, run_id, key = saved
    at = opened({"run": run_id, "key": key})
    next(b for b in at.sidebar.button if b.key == "yours_leave").click().run()
    no_exception(at)
    assert at.markdown[0].value.startswith("#### Adding")
    assert "model" not in at.sidebar.selectbox(key="cfg_task").options      # opened, never chosen
    orphan = opened({"task": "model"})
    no_exception(orphan)
    assert any("Runs page" in e.value for e in orphan.error)
    next(b for b in orphan.sidebar.button if b.key == "yours_leave").click().run()
    no_exception(orphan)
    assert orphan.markdown[0].value.startswith("#### Adding")
