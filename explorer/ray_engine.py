"""Ray: a sweep's runs as Ray tasks (explorer.sweep), and with GATE_EXPLORER_ENGINE=ray the
app's runs in Ray actors, on a cluster (RAY_ADDRESS) or a local Ray instance.

An app run in an actor speaks the worker protocol of explorer.worker unchanged: the actor runs
`worker.serve` on a thread of its own, reading from an inbox and writing to an outbox, and the
server's `RayWorker` stands where a worker process's socket would. The messages cross as the
same pickled tuples (tensors and numpy arrays by value, no handles to the server's memory), so
pause, resume, step(n), stop, probes and saves work as with a local worker, and a class can
train its runs on a cluster behind one small web server.

Ray is optional (requirements-ray.txt): nothing imports it until an engine asks for it.
"""
from __future__ import annotations

import os
import pickle
import queue
import threading
from collections import deque
from pathlib import Path

from .worker import WorkerLost, Workers

ENGINE_ENV = "GATE_EXPLORER_ENGINE"
NICENESS_ENV = "RAY_worker_niceness"    # read by the raylet a local instance starts
ADDRESS_ENV = "RAY_ADDRESS"
TAKE_WAIT_S = 1.0            # how long one take() waits in the actor for a message
_INIT_LOCK = threading.Lock()


def app_engine() -> str:
    """Where the app's runs train: "ray" when GATE_EXPLORER_ENGINE says so, else "local"."""
    return "ray" if os.environ.get(ENGINE_ENV, "").strip().lower() == "ray" else "local"


def require_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("the ray engine needs Ray: pip install -r requirements-ray.txt") from None
    return ray


def init(address: str | None = None) -> None:
    """Join the cluster at address (else RAY_ADDRESS), or start a local Ray instance; once per
    process. A local instance's workers import explorer from this checkout; a cluster's nodes
    need it installed (docs/SWEEPS.md)."""
    ray = require_ray()
    with _INIT_LOCK:
        if ray.is_initialized():
            return
        address = address or os.environ.get(ADDRESS_ENV) or None
        env = None
        if address is None:
            # Ray starts its workers at nice 15 (its worker_niceness), so beside any other busy
            # process they starve: measured here with two CPU-bound processes running, its tasks
            # got 4% of a core each, and a sweep of 42 s took 13 minutes. This instance's runs
            # are the user's own work: they take their turn like any other process.
            os.environ.setdefault(NICENESS_ENV, "0")
            root = str(Path(__file__).resolve().parents[1])
            env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}}
        ray.init(address=address, runtime_env=env, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)


class _Mailbox:
    """The actor's end, in the shape `worker.serve` reads a socket with."""

    def __init__(self, inbox: queue.Queue, outbox: queue.Queue):
        self.inbox, self.outbox = inbox, outbox

    def poll(self) -> bool:
        return not self.inbox.empty()

    def recv_bytes(self) -> bytes:
        data = self.inbox.get()
        if data is None:                      # closed: serve() ends as on a closed socket
            raise EOFError
        return data

    def send_bytes(self, data: bytes) -> None:
        self.outbox.put(data)


class TrainingActor:
    """(In a Ray worker.) A run's trainer, as a worker process would hold it."""

    def __init__(self):
        from .memory import settle_for_training
        from .worker import serve, warm_up
        settle_for_training()
        warm_up()
        self.inbox, self.outbox = queue.Queue(), queue.Queue()
        self.thread = threading.Thread(target=serve, args=(_Mailbox(self.inbox, self.outbox),),
                                       name="gate-explorer-serve", daemon=True)
        self.thread.start()

    def put(self, data: bytes) -> None:
        self.inbox.put(data)

    def take(self, wait: float) -> list[bytes]:
        """Every message waiting, after waiting up to `wait` seconds for the first ([] if none)."""
        try:
            taken = [self.outbox.get(timeout=wait)]
        except queue.Empty:
            return []
        while True:
            try:
                taken.append(self.outbox.get_nowait())
            except queue.Empty:
                return taken

    def serving(self) -> bool:
        return self.thread.is_alive()

    def pid(self) -> int:
        return os.getpid()


_ACTOR = None


def _actor_class():
    global _ACTOR
    if _ACTOR is None:
        ray = require_ray()
        # Threaded: take() waits while put() comes in. One CPU: a run trains on one core.
        _ACTOR = ray.remote(num_cpus=1, max_concurrency=4, max_restarts=0)(TrainingActor)
    return _ACTOR


class RayWorker:
    """The server's end of one actor, in the shape of explorer.worker.Worker."""

    def __init__(self):
        ray = require_ray()
        init()
        self._ray = ray
        self.actor = _actor_class().remote()
        self._taken: deque[bytes] = deque()
        self._closed = False
        try:
            self.pid = ray.get(self.actor.pid.remote())      # (waits for the actor to be up)
        except ray.exceptions.RayError as error:
            raise self._lost(error) from error

    def send(self, *message) -> None:
        try:
            # Waited for, so messages arrive in the order sent (the actor is threaded).
            self._ray.get(self.actor.put.remote(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)))
        except self._ray.exceptions.RayError as error:
            raise self._lost(error) from error

    def receive(self):
        """The next message (it waits for one)."""
        try:
            while not self._taken:
                self._taken.extend(self._ray.get(self.actor.take.remote(TAKE_WAIT_S)))
        except self._ray.exceptions.RayError as error:
            raise self._lost(error) from error
        return pickle.loads(self._taken.popleft())

    def alive(self) -> bool:
        if self._closed:
            return False
        try:
            return bool(self._ray.get(self.actor.serving.remote(), timeout=10))
        except self._ray.exceptions.RayError:
            return False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._ray.kill(self.actor, no_restart=True)
            except Exception:   # noqa: BLE001 — already gone (its node, Ray itself)
                pass

    def _lost(self, error) -> WorkerLost:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return WorkerLost(f"the Ray actor training this run ended unexpectedly ({first}); "
                          "the run keeps its last saved state")


_SHARED: Workers | None = None
_SHARED_LOCK = threading.Lock()


def shared(keep: int) -> Workers:
    """The server's pool of Ray actors, as explorer.worker.shared is of processes."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Workers(keep, make=RayWorker)
            _SHARED.warm()
        _SHARED.keep = max(_SHARED.keep, keep)
        return _SHARED
