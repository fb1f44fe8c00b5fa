"""The Train page's live charts, and the routes its browser polls for them.

The owner's page (a run of one's own) polls `GET /train-live/<watch token>` the same way, at
the page's refresh rate: a Streamlit rerun of the live part 2.5 times a second cost the server
its script run and the browser the rerun's deltas and React's redraw of them on top of
Plotly's, and on 2 cores (the browser beside the server) the training kept 0.75 of its solo
speed; with the poll Chromium used 0.7 of a core instead of 0.86 and the server 0.10 instead
of 0.12 (docs/PERFORMANCE.md).
The watch token names the browser session (pages/session.Watches), which only that session's
own page is told; the route answers with that session's current run, so Reset needs no new
token.

A class of twenty following the teacher's run cannot each rerun the page twice a second: on
two cores each rerun cost the server about 25 ms of the interpreter the training shares
(measured in session 21), and the followed run fell to half its solo speed. So a follower's
page draws its charts once, then its browser asks `GET /follow-live/<token>` for the newest
step (the chart component's own poll, pages/charts.py): the server answers with the
figures every follower shares (explorer.follow.FigureCache), and only those the browser
does not show yet, or 204 when the run has made no step since. The page itself reruns
rarely, to pick up what only a rerun can show (the run paused, ended, or moved).

The route is added to Streamlit's server in app.py (`st.App`); it answers with no session.
"""
from __future__ import annotations

import gzip
import json
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from explorer import Status, plots
from explorer.follow import FigureCache, Followed
from explorer.store import FollowRefused, StoreError
from pages import follow
from pages.charts import grid_data
from pages.errors import new_ref
from pages.session import live_runs, watches

# Points per line on the live charts: more than a half-width chart has pixels for is spent
# twice on every refresh, serialising on the server and drawing in the browser, and both
# take the CPU from training on a small machine.
LIVE_POINTS = 400
WIDE = ("gate_strip",)
PATH = "follow-live"
OWNER_PATH = "train-live"
MAX_HAVE = 8                      # versions a poll may name (the grid has five charts)
ANSWERS_KEPT = 64
LOG = logging.getLogger("gate_explorer")


# The newest answers, as sent and gzipped: a class's polls in one tick ask the same question
# (same step, same figures shown), so the body is put together and compressed once, by the
# first to ask, not once per follower.
ANSWERS = FigureCache(size=ANSWERS_KEPT, weigh=lambda kept: len(kept[0]) + len(kept[1]))


def train_figures(run, snap, gate: str | None, sequence: int) -> tuple[dict, str | None]:
    """The Train page's live charts of snap, as chart_grid takes them, and the gate strip's
    caption (None before the first probe). gate and sequence are the strip's picks; a gate
    the cell has not, or a sequence out of range, falls back to the first."""
    trainer = run.trainer
    task, cfg, view = trainer.task, trainer.config, snap.history
    # The figures change only with the steps: a queued or paused run's refresh reuses them,
    # and the owner and every follower of a saved run share them (pages/charts.chart).
    drawn = (id(run), cfg, snap.step)
    shared = (run.id, cfg, snap.step) if run.id else None
    figures = {
        "loss_chart": (lambda: plots.loss_figure(view, task.baseline_loss, task.loss_name, task.baseline_name,
                                                 LIVE_POINTS), drawn, shared),
        "metric_chart": (lambda: plots.metric_figure(view, task.baseline_metric, task.metric_name,
                                                     task.baseline_name, LIVE_POINTS), drawn, shared),
        "grad_norm_chart": (lambda: plots.grad_norm_figure(view, cfg.clip, LIVE_POINTS), drawn, shared),
        "param_grad_chart": (lambda: plots.param_grad_figure(view, LIVE_POINTS), drawn, shared),
    }
    if not view.traces:
        return figures, None
    probe_step, tr = view.traces[-1]
    gates = list(tr.layers[0].gates) or ["hidden"]
    gate = gate if gate in gates else gates[0]
    sequence = sequence if sequence in range(len(tr.grad_input)) else 0

    def strip():
        x = trainer.probe_set[0][sequence].cpu().numpy()                     # (T, features)
        return plots.gate_figure(tr, sequence, 0, x, quantities=[gate], time_labels=task.time_labels(x),
                                 feature_names=task.feature_names())

    # Rebuilt only when a new probe (a new trace object), gate or sequence is shown.
    figures["gate_strip"] = (strip, (id(tr), gate, sequence),
                             (run.id, probe_step, gate, sequence) if run.id else None)
    # (No step in it: a follower's charts move on with the polls, its captions do not.)
    return figures, (f"The wide chart: layer 1's {gate} on probe sequence {sequence}, as of the newest probe "
                     f"(every {cfg.probe_every} steps; pick the gate and sequence below). The Gates page shows every "
                     "gate and layer.")


def head(run, snap) -> dict:
    """A follower's step counter and the line under it (drawn by the chart component)."""
    return {"step": snap.step, "status": str(snap.status),
            "line": f"{snap.steps_per_second:.1f} steps per second · on {run.trainer.device} · {snap.status} · "
                    f"{snap.step} of {snap.total_steps} steps"}


def owner_head(run, snap) -> dict:
    """The owner's step, speed, device, status and progress (drawn by the chart component, so
    the poll moves them with the charts)."""
    return {"step": snap.step, "status": str(snap.status),
            "cells": [["Step", str(snap.step)], ["Steps per second", f"{snap.steps_per_second:.1f}"],
                      ["Device", str(run.trainer.device)], ["Status", str(snap.status)]],
            "progress": min(snap.step / snap.total_steps, 1.0) if snap.total_steps else 0.0,
            "line": f"{snap.step} of {snap.total_steps} steps"}


def poll(token: str, gate: str | None, sequence: int, present: bool, every: float, path: str = PATH) -> dict:
    """Where and how often a page's browser asks for the newest step: a follower's by its
    follow token, the owner's (path OWNER_PATH) by its session's watch token."""
    return {"url": path + "/" + token, "every_ms": int(every * 1000),
            "query": {"gate": gate or "", "sequence": sequence, "present": int(present)}}


def answer(token: str, gate: str | None, sequence: int, present: bool, since: int,
           have: frozenset[str]) -> tuple[int, bytes, bytes | None]:
    """(HTTP status, JSON body, the body gzipped or None) of a follower's poll: 200 with the
    newest step's head and the figures the browser lacks; 204 when the run has made no step
    since `since` and is still training; 403 when the link is refused; 410 when the run is not live any more (the
    page's next rerun shows it as saved); 503 when the store's follow links cannot be read now."""
    board = follow.follow_board()
    if board is None:
        return 503, _message("follow links need the run store, which this server could not open"), None
    try:
        run_id = board.run_of(token)
    except FollowRefused as refused:
        return 403, _message(str(refused)), None
    except StoreError as error:          # damaged or locked now: the page's next rerun says so too
        LOG.warning("%s/%s...: %s", PATH, token[:6], error)
        return 503, _message(f"{follow.UNREADABLE[0].upper()}{follow.UNREADABLE[1:]}."), None
    live = live_runs().get(run_id)
    if live is None or not live.id:
        return 410, _message("This run is not training any more: the page shows it as last saved."), None
    run = Followed(live, token, tick=follow.FOLLOW_SECONDS)
    snap = run.snapshot()
    if snap.step == since and snap.status == Status.RUNNING:
        return 204, b"", None
    top = head(run, snap)

    def build() -> tuple[bytes, bytes]:
        figures, _ = train_figures(run, snap, gate, sequence)
        body = grid_data(figures, WIDE, present, {"head": top}, have=have).encode()
        return body, gzip.compress(body, compresslevel=6)

    # The line holds the step, its state and its speed: one published snapshot's answer.
    return 200, *ANSWERS.get((live.id, top["line"], gate, sequence, present, have), build)


def owner_answer(token: str, gate: str | None, sequence: int, present: bool, since: int,
                 have: frozenset[str]) -> tuple[int, bytes, bytes | None]:
    """(HTTP status, JSON body, the body gzipped or None) of the owner's poll: as `answer`, for
    the run the session named by token trains now; 403 when no session has that token (it
    ended: the tab was closed long enough), 410 when it has no run of its own to train."""
    where = watches().get(token)
    if where is None:
        return 403, _message("This page's session has ended: reload the page to see your runs."), None
    run = where.run
    if run is None or where.follow_token or run.read_only:
        return 410, _message("This page shows no run of your own now: it reruns to say what it shows."), None
    snap = run.snapshot()
    if run.priority and snap.running:
        snap = run.published(follow.FOLLOW_SECONDS)     # a class follows it: show the moment they see
    if snap.step == since and snap.status == Status.RUNNING:
        return 204, b"", None
    figures, _ = train_figures(run, snap, gate, sequence)
    body = grid_data(figures, WIDE, present, {"head": owner_head(run, snap)}, have=have, memo=where.charts).encode()
    # One reader, often on this machine: the cheapest level still shrinks the figures' JSON 3.6×
    # (33 KB of four line charts to 9.3 KB in 0.5 ms; level 6: 8.8 KB in 0.6 ms).
    return 200, body, gzip.compress(body, compresslevel=1)


def _message(text: str) -> bytes:
    return json.dumps({"message": text}).encode()


async def follow_live(request: Request) -> Response:
    """GET /follow-live/<token>?gate=&sequence=&present=&since=&have=: see `answer`."""
    return await _respond(request, answer)


async def train_live(request: Request) -> Response:
    """GET /train-live/<watch token>?gate=&sequence=&present=&since=&have=: see `owner_answer`."""
    return await _respond(request, owner_answer)


async def _respond(request: Request, answer) -> Response:
    query = request.query_params
    try:
        sequence, since, present = (int(query.get(name, default)) for name, default in
                                    (("sequence", 0), ("since", -1), ("present", 0)))
    except ValueError:
        return Response(_message("sequence, since and present are whole numbers"), 400,
                        media_type="application/json")
    have = frozenset(query.get("have", "").split(".")[:MAX_HAVE]) - {""}
    gate = query.get("gate", "")[:40] or None
    try:
        status, body, zipped = await run_in_threadpool(answer, request.path_params["token"][:64], gate, sequence,
                                                       bool(present), since, have)
    except Exception:           # unexpected: a JSON reason with a reference, as a page's (pages/errors.py)
        ref = new_ref()
        LOG.exception("Something went wrong in %s (ref %s)", request.url.path.split("/")[1], ref)
        return Response(_message(f"Something went wrong (ref {ref})"), 500, media_type="application/json")
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    if zipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body, headers["Content-Encoding"] = zipped, "gzip"     # compressed once per answer, not per poll
    return Response(body, status, media_type="application/json", headers=headers)


ROUTES = [Route(f"/{PATH}/{{token}}", follow_live, methods=["GET"]),
          Route(f"/{OWNER_PATH}/{{token}}", train_live, methods=["GET"])]
