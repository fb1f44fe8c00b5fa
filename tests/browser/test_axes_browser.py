"""The tick labels Chromium draws on every builder's axes (issue 32): at most 8 on an axis and
none overlapping another, at a column's width and in presentation mode; every label over a
plot on an opaque ground. plotly.js (the app's own copy) draws each figure in a bare page:
no server. Screenshots: axes-<figure>.png in the screenshot folder."""
import json

import pytest
from explorer import plots
from explorer.history import History
from pages import charts
from tests.test_axes import every_figure, run, vanishing  # noqa: F401 (the fixtures)

MAX = 8

_MEASURE = """() => {
  const graph = document.getElementById("graph");
  const overlaps = boxes => boxes.filter((a, i) => boxes.slice(i + 1).some(b =>
      Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1 &&
      Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1)).length;
  const axes = [...graph.querySelectorAll(".xaxislayer-above, .yaxislayer-above")].map(layer => {
    const labels = [...layer.querySelectorAll("text")].filter(t => t.textContent.trim() !== "");
    const boxes = labels.map(t => t.getBoundingClientRect()).filter(r => r.width > 0);
    return {axis: layer.getAttribute("class"), labels: labels.map(t => t.textContent), overlaps: overlaps(boxes)};
  });
  const grounds = [...graph.querySelectorAll(".annotation")].map(a => {
    const ground = a.querySelector("rect.bg");
    const style = ground ? getComputedStyle(ground) : null;
    return {text: a.textContent, fill: style && style.fill, opacity: style ? Number(style.fillOpacity) : 0};
  });
  return {axes, grounds};
}"""


@pytest.fixture
def plot(browser):
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    page.set_content('<html><body style="margin:0"><div id="graph"></div></body></html>')
    page.add_script_tag(path=str(charts.SOURCE))
    yield page
    context.close()


def draw(page, figure, width: int, present: bool) -> dict:
    spec = json.loads(charts._spec(figure, present))
    spec["layout"]["width"] = width
    page.evaluate("spec => Plotly.newPlot('graph', spec.data, spec.layout, {staticPlot: true})", spec)
    return page.evaluate(_MEASURE)


def empty_figures() -> dict:
    """The Train page's charts before the first step: a loss, an accuracy and two gradient norms."""
    empty = History(["rnn.weight_hh_l0", "head.bias"]).view()
    return {"empty_loss": plots.loss_figure(empty, 1 / 6, "MSE", "predict 1"),
            "empty_metric": plots.metric_figure(empty, 0.1, "accuracy"),
            "empty_grad_norm": plots.grad_norm_figure(empty, clip=1.0),
            "empty_param_grad": plots.param_grad_figure(empty)}


# The charts pages draw two to a row (the Train page's, the what-if's, the Sweep page's top
# pair, a lesson's); the others span the page. At 1280 x 720 in presentation mode the page
# is about 1200 px wide.
HALF = {"loss", "metric", "grad_norm", "param_grad", "whatif_output", "whatif_grad", "sweep_loss", "sweep_solved",
        "compare_loss", "compare_grad_time", "empty_loss", "empty_metric", "empty_grad_norm", "empty_param_grad"}


@pytest.mark.slow
@pytest.mark.parametrize("page_width, present", [(1100, False), (1200, True)])
def test_chromium_draws_at_most_eight_labels_an_axis_none_overlapping(plot, run, vanishing, shots,  # noqa: F811
                                                                       page_width, present):
    drawn = 0
    for name, figure in {**every_figure(run, vanishing), **empty_figures()}.items():
        width = page_width // 2 if name in HALF else page_width
        shown = draw(plot, figure, width, present)
        for axis in shown["axes"]:
            assert len(axis["labels"]) <= MAX, (name, axis)
            assert axis["overlaps"] == 0, (name, axis)
            drawn += len(axis["labels"]) > 0
        if present:
            plot.locator("#graph").screenshot(path=shots / f"axes-{name}.png")
    assert drawn >= 40                       # the axes were drawn and measured: not an empty page


@pytest.mark.slow
def test_every_chart_label_is_drawn_on_an_opaque_ground(plot, run, vanishing):  # noqa: F811
    figures = every_figure(run, vanishing)
    grounds = 0
    for name in ("loss", "metric", "grad_norm", "singular_values", "weight_share", "whatif_grad",
                 "compare_loss", "compare_heldout", "sweep_loss", "sweep_solved"):
        for label in draw(plot, figures[name], 700, False)["grounds"]:
            assert label["fill"] == "rgb(255, 255, 255)" and label["opacity"] >= 0.85, (name, label)
            grounds += 1
    assert grounds >= 10
