"""Charts that update in place.

st.plotly_chart derives a chart's identity from its figure, so each refresh of a live
figure mounts a new chart: it blanks, flickers and forgets the user's zoom. This component
keeps one Plotly graph per key and hands it each new figure through Plotly.react, which
redraws only what changed and keeps zoom and pan wherever the figure's uirevision holds.

Plotly's JavaScript (assets/' cartesian bundle, or the plotly package's own) is copied into
static/ beside app.py at start-up and served by Streamlit (server.enableStaticServing), loaded
once per tab. If the copy fails or static serving is off the charts stay blank, so the sidebar
says why.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Hashable

import plotly
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs_version
import streamlit as st

from explorer.data import ASSETS
from pages import keys

# Streamlit serves static/ from the main script's folder: the checkout, or explorer/_app when
# installed (where a virtual environment's site-packages is writable).
STATIC = Path(__file__).resolve().parents[1] / "static"
# The cartesian partial bundle (1.5 MB) parses in a third of the full one's time; it must be
# the plotly.js the installed plotly writes figures for, else the full bundle is used.
CARTESIAN = ASSETS / f"plotly-cartesian-{get_plotlyjs_version()}.min.js"
SOURCE = CARTESIAN if CARTESIAN.exists() else Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
SCRIPT = f"{SOURCE.stem}-{plotly.__version__}.js"   # versioned: a new plotly is never a stale cache
CONFIG = {"displaylogo": False, "responsive": True}
PRESENT_FONT = 20                      # the builders' 14, for presentation mode
PRESENT_HEIGHT = 1.2                   # charts' height in presentation mode, times the builders'
# Where Plotly keeps a font: {"size": ...} under these keys, at any depth of a figure's JSON.
FONT_KEYS = ("font", "textfont", "tickfont", "insidetextfont", "outsidetextfont")


def _install_script() -> str | None:
    """Put Plotly's JavaScript in static/; return why it could not be, or None."""
    target = STATIC / SCRIPT
    try:
        if not target.exists() or target.stat().st_size != SOURCE.stat().st_size:
            STATIC.mkdir(exist_ok=True)
            partial = target.with_suffix(".part")
            shutil.copyfile(SOURCE, partial)
            partial.replace(target)        # atomic: a tab never loads half a file
    except OSError as error:
        return (f"The charts cannot be drawn: Plotly's JavaScript could not be copied into {STATIC} "
                f"({error.strerror or error}). Make that folder writable for the user running the "
                "app (or install the app into a virtual environment), then restart it.")
    return None


JS = """
const SOURCE = "app/static/%(script)s";
const CONFIG = %(config)s;

function plotlyReady() {
  // One load per tab, shared by every chart on every page.
  if (!window.__gateExplorerPlotly) {
    // Plotly rejects a playing animation's promise, with no reason, when its Pause button (or a
    // new figure) interrupts it, and nothing catches that: it is not an error, so say so once.
    window.addEventListener("unhandledrejection", (event) => {
      if (event.reason === undefined) event.preventDefault();
    });
    window.__gateExplorerPlotly = new Promise((resolve, reject) => {
      if (window.Plotly) return resolve(window.Plotly);
      const script = document.createElement("script");
      script.src = SOURCE;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => { window.__gateExplorerPlotly = null; reject(new Error("could not load " + SOURCE)); };
      document.head.appendChild(script);
    });
  }
  return window.__gateExplorerPlotly;
}

function draw(graph, version, figure) {
  // A refresh that brings the same figure (a gate strip between probes) costs no redraw.
  if (graph.drawnSpec === version) return;
  graph.drawnSpec = version;
  figure = figure || JSON.parse(version);
  graph.style.minHeight = (figure.layout.height || 450) + "px";   // no jump while Plotly loads
  // One Plotly.react at a time on a graph. Plotly draws a figure in steps, the later ones after
  // a promise (it adds the frames first, and resolves that asynchronously), and a second react
  // on the same graph in between takes the first one's calcdata from under it: "TypeError: Cannot
  // read properties of undefined (reading 'length') at drawFramework" (issue 31). A follower's
  // polls brought new figures while Plotly was still loading, and those waiting draws then ran
  // back to back. So a figure that comes while one is drawn waits, and only the newest is drawn.
  graph.nextFigure = figure;
  if (graph.drawing) return;
  graph.drawing = true;
  plotlyReady().then(
    async (Plotly) => {
      try {
        while (graph.nextFigure) {
          const next = graph.nextFigure;
          graph.nextFigure = null;
          // Frames, where a figure has them, let its own ▶ and slider animate it (the cell diagram).
          await Plotly.react(graph, {data: next.data, layout: next.layout, frames: next.frames || [],
                                     config: CONFIG});
        }
      } finally {
        graph.drawing = false;
      }
    },
    (error) => {
      graph.drawing = false;
      graph.nextFigure = null;
      graph.textContent = "The chart could not load Plotly: " + error.message;
    },
  );
}

function cell(parent, className) {
  let element = parent.querySelector(":scope > ." + className.split(" ").join("."));
  if (!element) {
    element = document.createElement("div");
    element.className = className;
    parent.appendChild(element);
  }
  return element;
}

function drawGrid(root, parsed, shown) {
  // Several charts in one element, two to a row:
  // {"grid": {name: {"version": v, "figure": {...}}}, "wide": [name], "head": {...}}.
  // A poll's answer leaves out the charts the browser shows already.
  if (parsed.head) drawHead(root, parsed.head);
  const grid = cell(root, "live-grid");
  for (const [name, entry] of Object.entries(parsed.grid)) {
    const wide = parsed.wide.includes(name) ? " wide" : "";
    draw(cell(cell(grid, "live-cell chart-" + name + wide), "live-chart"), entry.version, entry.figure);
    shown.have[name] = entry.version;
  }
  if (parsed.head) shown.step = parsed.head.step;
}

function drawHead(root, head, refusal) {
  // The step and the line under it, moved by the poll with the charts. The owner's head has
  // cells (step, speed, device, status) and a progress bar; a follower's, the step and a line.
  // No head: the poll was refused (the link revoked, the run ended), and `refusal` says why.
  let top = root.querySelector(":scope > .live-head");
  if (!top) {
    top = document.createElement("div");
    top.className = "live-head";
    top.innerHTML = "<div class='live-cells'></div><div class='live-bar'><div></div></div><div class='live-line'></div>";
    root.prepend(top);
  }
  const cells = top.querySelector(".live-cells");
  const rows = head ? (head.cells || [["Step", String(head.step)]]) : [];
  while (cells.children.length > rows.length) cells.lastChild.remove();
  rows.forEach(([label, value], k) => {
    let box = cells.children[k];
    if (!box) {
      box = document.createElement("div");
      box.className = "live-step";
      box.innerHTML = "<span class='live-label'></span><span class='live-value'></span>";
      cells.appendChild(box);
    }
    box.querySelector(".live-label").textContent = label;
    box.querySelector(".live-value").textContent = value;
  });
  const bar = top.querySelector(".live-bar");
  bar.style.display = head && head.progress !== undefined ? "" : "none";
  if (head && head.progress !== undefined) bar.firstChild.style.width = (100 * head.progress).toFixed(2) + "%%";
  top.querySelector(".live-line").textContent = head ? head.line : refusal;
  top.classList.toggle("refused", !head);
}

function follow(root, poll, shown, stopped) {
  // A follower's page asks the server for the newest step every poll.every_ms
  // (pages/live.py): 200 brings the new head and the changed charts, 204 nothing new.
  // Anything else (the run paused or ended, the link revoked) stops it: the message shows,
  // and the page is told (a trigger), so that it reruns at once to say what happens now.
  const generation = (root.__followGeneration || 0) + 1;
  root.__followGeneration = generation;
  clearTimeout(root.__followTimer);
  if (!poll) return;
  const current = () => generation === root.__followGeneration && root.isConnected;
  const tick = async () => {
    if (!current()) return;
    if (document.hidden) {
      // A hidden tab (another tab in front, the window minimised) would draw what nobody sees,
      // on the processor the training shares (0.45 of a core here, docs/PERFORMANCE.md): it asks
      // again as soon as it shows, which also catches a pause or an end that came meanwhile.
      document.addEventListener("visibilitychange", tick, { once: true });
      return;
    }
    const started = performance.now();
    const query = new URLSearchParams(poll.query);
    query.set("since", shown.step);
    query.set("have", Object.values(shown.have).join("."));
    try {
      const response = await fetch(poll.url + "?" + query, { cache: "no-store" });
      if (!current()) return;
      if (response.status === 200) {
        const fresh = await response.json();
        drawGrid(root, fresh, shown);
        if (fresh.head.status !== "running") return stopped(fresh.head.status);
      } else if (response.status !== 204) {
        const body = await response.json().catch(() => ({}));
        if (response.status === 403) cell(root, "live-grid").replaceChildren();   // nothing of the run stays
        drawHead(root, null, body.message || "The run could not be read (" + response.status + ").");
        return stopped(String(response.status));
      }
    } catch (error) {
      // the network or the server hiccuped: ask again next time
    }
    if (current()) root.__followTimer = setTimeout(tick, Math.max(0, poll.every_ms - (performance.now() - started)));
  };
  root.__followTimer = setTimeout(tick, poll.every_ms);
}

export default function ({ data, parentElement, setTriggerValue }) {
  if (data === "preload") { plotlyReady(); return; }
  if (data.startsWith('{"grid"')) {
    const parsed = JSON.parse(data);
    const shown = { step: -1, have: {} };
    const stopped = (why) => setTriggerValue("stopped", why);
    drawGrid(parentElement, parsed, shown);
    follow(parentElement, parsed.poll, shown, stopped);
    return () => follow(parentElement, null, shown, stopped);
  }
  draw(cell(parentElement, "live-chart"), data, null);
}
"""

_SCRIPT_PROBLEM = _install_script()
_component = st.components.v2.component(
    "gate_explorer.live_chart", js=JS % {"script": SCRIPT, "config": json.dumps(CONFIG)},
    css=(".live-chart { width: 100%; } .live-grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); "
         "gap: 1rem; } .live-cell.wide { grid-column: span 2; } "
         ".live-head { margin-bottom: 0.75rem; } .live-cells { display: flex; gap: 1rem; } "
         ".live-step { flex: 1 1 0; display: flex; flex-direction: column; } .live-label { font-size: 0.875rem; } "
         ".live-value { font-size: 2.25rem; line-height: 1.4; } .live-line { font-size: 0.95rem; } "
         ".live-bar { height: 0.5rem; margin: 0.5rem 0 0.25rem; border-radius: 0.25rem; "
         "background: rgba(128, 128, 128, 0.2); overflow: hidden; } "
         # No transition on the bar's width: easing it over 0.3 s after every refresh laid the page
         # out again each frame, 0.13-0.2 of a core in Chromium for a move of a pixel or two.
         ".live-bar > div { height: 100%; background: rgb(139, 30, 45); } "
         ".live-head.refused .live-line { font-weight: 600; color: rgb(125, 53, 59); }"),
    isolate_styles=False)


def chart(figure: go.Figure | Callable[[], go.Figure], key: str, version: Hashable = None,
          shared: Hashable = None) -> None:
    """Draw figure under key; later calls with the same key update that chart in place.

    With a version, figure may be a function that builds it: it is called only when the
    version differs from the one this chart last drew, so a live page refreshing a figure
    that only changes now and then (a gate strip, between probes) does not rebuild it.

    With `shared` (what the figure shows, whoever looks: run id, step, choices), figure may
    be a function too, and the figure is built once on this server for every session that
    shows the same (key, shared): a class following one run (pages/follow.py) shares it.
    """
    _component(data=_built(figure, key, version, shared), key=key, width="stretch")


def chart_grid(figures: dict[str, tuple], key: str, wide: tuple[str, ...] = (), extra: dict | None = None,
               on_stopped: Callable[[], None] | None = None) -> None:
    """Several charts in one element, two to a row (the `wide` ones take a row of their own):
    {name: (figure or builder, version, shared)}, each built (or reused) as `chart` builds it. A live page that refreshes many
    charts at once sends them as one element: each element costs the server more than the
    figure it carries, and a class's refreshes share the server's one interpreter.
    `extra` adds keys to the element's data: a follower's step line and where it polls
    (pages/live.py); `on_stopped` is called (and the element's fragment reruns) when a poll
    finds the run no longer training or the link refused."""
    present = bool(st.session_state.get(keys.PRESENT))
    events = {"on_stopped_change": on_stopped} if on_stopped is not None else {}
    _component(data=grid_data(figures, wide, present, extra, prefix=key, session=True), key=key, width="stretch",
               **events)


def grid_data(figures: dict[str, tuple], wide: tuple[str, ...], present: bool, extra: dict | None = None,
              have: frozenset[str] = frozenset(), prefix: str = "live_charts", session: bool = False,
              memo: dict | None = None) -> str:
    """chart_grid's data: {"grid": {name: {"version", "figure"}}, "wide": [...], **extra}.
    Figures whose version is in `have` (the browser shows them already) are left out.
    Outside a script run (the poll routes, session=False) the session's memo cannot be read:
    `memo` stands in for it (the owner's route passes its session's), else a figure without
    `shared` is built every time."""
    # The figures' JSON goes in as it is (escaping it into strings cost the server as much as
    # the element), each with a version the browser compares to skip redrawing it.
    entries = []
    for name, (figure, version, shared) in figures.items():
        spec = _built(figure, f"{prefix}.{name}", version, shared, present, session, memo)
        tag = f"{len(spec)}-{hash(spec)}"
        if tag not in have:
            entries.append(f'{json.dumps(name)}: {{"version": "{tag}", "figure": {spec}}}')
    tail = "".join(f", {json.dumps(k)}: {json.dumps(v)}" for k, v in (extra or {}).items())
    return '{"grid": {' + ", ".join(entries) + '}, "wide": ' + json.dumps(list(wide)) + tail + "}"


def _built(figure, key: str, version: Hashable, shared: Hashable, present: bool | None = None,
           session: bool = True, memo: dict | None = None) -> str:
    """The figure's JSON: from this session's last drawing of it, the server's shared cache,
    or built now. `session`: in a script run (the session's own memo can be read); `memo`:
    the memo to use outside one."""
    if present is None:
        present = bool(st.session_state.get(keys.PRESENT))
    built = st.session_state.setdefault(keys.CHARTS, {}) if session else (memo if memo is not None else {})
    if shared is not None:
        # A page whose figure did not change (a queued or paused run's) reuses its own copy:
        # the shared cache keeps only the newest figures, and a class's live run fills it fast.
        if key in built and built[key][0] == (shared, present):
            return built[key][1]
        from pages.follow import figure_cache
        spec = figure_cache().get((key, shared, present), lambda: _spec(figure, present))
        if session:
            built[key] = ((shared, present), spec)
        return spec
    if version is not None and key in built and built[key][0] == (version, present):
        return built[key][1]
    spec = _spec(figure, present)
    if version is not None:
        built[key] = ((version, present), spec)
    return spec


def _spec(figure: go.Figure | Callable[[], go.Figure], present: bool) -> str:
    """The figure's JSON, enlarged for a projector in presentation mode."""
    figure = figure() if callable(figure) else figure
    if not present or (figure.layout.meta or {}).get("fixed_text"):    # (text sized to its shapes)
        return figure.to_json()
    layout = figure.layout               # a projector: larger type, taller charts
    scale = PRESENT_FONT / (layout.font.size or 14)
    if layout.xaxis.automargin is False:      # fixed margins (explorer/plots._live_axes) grow with the type
        figure.update_layout(margin={side: round(getattr(layout.margin, side) * scale) for side in ("l", "b")})
    figure.update_layout(height=int((layout.height or 450) * PRESENT_HEIGHT))
    spec = json.loads(figure.to_json())
    _scale_fonts(spec, scale)
    spec["layout"].setdefault("font", {})["size"] = PRESENT_FONT
    _fit_colorbars(spec)
    return json.dumps(spec)


def _fit_colorbars(spec: dict) -> None:
    """As many labels on each colour bar as its length holds at the projector's type: a bar
    beside a short row (the input above the gate heatmaps) had its six labels on top of each
    other. A bar whose ticks the builder listed keeps them."""
    layout = spec["layout"]
    margin = layout.get("margin", {})
    plot_height = layout["height"] - margin.get("t", 100) - margin.get("b", 80)
    bars = [axis["colorbar"] for key, axis in layout.items()
            if key.startswith("coloraxis") and isinstance(axis, dict) and "colorbar" in axis]
    bars += [trace["colorbar"] for trace in spec["data"] if "colorbar" in trace]
    for bar in bars:
        if "tickvals" in bar or bar.get("lenmode", "fraction") != "fraction":
            continue
        fits = max(2, int(bar.get("len", 1) * plot_height / (2 * PRESENT_FONT)))
        bar["nticks"] = min(bar.get("nticks") or fits, fits)


def _scale_fonts(node, scale: float) -> None:
    """Every font size a builder set (annotations, baseline labels, titles, legends, a trace's
    text) times scale, as the layout's own font grows: set sizes do not follow it, and stayed
    at 11-14 px on a projector."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in FONT_KEYS and isinstance(value, dict) and isinstance(value.get("size"), (int, float)):
                value["size"] = round(value["size"] * scale, 1)
            _scale_fonts(value, scale)
    elif isinstance(node, list) and node and isinstance(node[0], (dict, list)):   # not a list of numbers
        for item in node:
            _scale_fonts(item, scale)


def preload() -> None:
    """Start loading Plotly's JavaScript as soon as the sidebar draws, before any chart; say
    why the charts will stay blank if that cannot work."""
    if _SCRIPT_PROBLEM:
        st.error(_SCRIPT_PROBLEM)
    if not st.get_option("server.enableStaticServing"):
        st.error("The charts cannot be drawn: Streamlit is not serving static files. Start the app "
                 "with `gate-explorer app`, or add `--server.enableStaticServing true` to `streamlit run`.")
    _component(data="preload", key="plotly_preload", height=0)
