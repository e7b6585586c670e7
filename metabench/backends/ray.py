"""The Ray backend: each pending cell is a Ray task with its own CPUs (and GPU share).

The driver submits every cell, stores each result as it arrives (in any order), and shows
what runs on which node. A worker rebuilds what it needs from the comparison's
configuration: plugins by module name (they must be importable on every node; the local
instance this backend starts itself gets the driver's ``sys.path``), data sets from their
options (built once per worker process and kept there: Ray reuses a worker process for the
next CPU cell). Ray retries a cell whose worker process died up to ``max_retries`` times; an
algorithm's own error is a failed cell, never retried.

While the driver prepares the run, a warm-up task per CPU slot loads the plugins, the plan's
data sets and torch's lazily imported parts into the worker processes that will run the
cells, so a cell's time there is the cell's (GPU cells get a fresh worker each: Ray's
default, which keeps a worker on the GPU it was given).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from metabench.backends.base import CellRunner, Job
from metabench.backends.worker import first_line, run_cell_here, warm_worker
from metabench.cell import Cell
from metabench.config import Config
from metabench.errors import MetabenchError
from metabench.hookspecs import hookimpl
from metabench.plugin_types import RegisterBackend
from metabench.records import CellResult
from metabench.workspace import sigterm_as_interrupt

POLL_S = 0.5
#: Seconds to reach a Ray address (a TCP probe) and to join it; the command line gives up
#: with one line after CONNECT_TIMEOUT_S even when Ray itself keeps waiting.
PROBE_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 60.0
#: Set by the ``metabench`` command: a connection that hangs past the timeout ends the
#: process (one line, exit 2); a library caller is never exited.
HARD_TIMEOUT_ENV = "METABENCH_HARD_CONNECT_TIMEOUT"
TIMEOUT_ENV = "METABENCH_RAY_CONNECT_TIMEOUT"


class RayBackend:
    """Cells as Ray tasks, on a local instance or a cluster (``address``).

    Everything that can be refused is checked when the backend is made, before the run is
    created: Ray installed, the address well-formed and answering, and a node able to hold
    one cell's CPUs and GPUs.
    """

    def __init__(self, config: Config) -> None:
        ray = import_ray()  # a missing Ray fails before the run is created
        self.config = config
        if config.jobs not in (1, "auto"):
            print(f"note: --jobs {config.jobs} is for the local backend; Ray runs as many cells "
                  "at once as its CPUs hold (--threads each)", file=sys.stderr, flush=True)
        check_address(config.address)
        self.started_here = connect(ray, config.address)
        try:
            check_resources(ray, config)
        except MetabenchError:
            self.close()
            raise
        self.warming = warm_up(ray, config)

    def close(self) -> None:
        """Stop the local Ray instance this backend started (nothing for a cluster).

        Warm-up tasks still running are left to finish (seconds), never cancelled: in Ray
        2.60 a ``ray.cancel`` that races the task's own completion fails a check in the
        driver's core worker and ends the whole process (ray-project/ray#54846)."""
        self.warming = []
        if self.started_here:
            import_ray().shutdown()
            self.started_here = False

    def run(self, job: Job, on_result: Callable[[CellResult], None]) -> None:
        """Submit every cell, hand results on as they finish; Ctrl-C stops the tasks."""
        ray = import_ray()
        if not ray.is_initialized():  # closed, or shut down by someone else: join again
            self.started_here = connect(ray, self.config.address)
        try:
            with sigterm_as_interrupt():  # ray.init installs a SIGTERM handler that exits
                _Driver(ray, job, on_result, cancel_on_interrupt=not self.started_here).run()
        finally:
            self.close()


def import_ray() -> Any:
    """The ray module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise MetabenchError("--backend ray needs Ray, which is not installed; "
                             "pip install 'ray[default]' (or metabench[ray])") from None
    return ray


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")
_ADDRESS_HELP = "expected auto, HOST:PORT or ray://HOST:PORT (port 1-65535)"


def check_address(address: str | None) -> tuple[str, int] | None:
    """The (host, port) of a ``HOST:PORT`` or ``ray://HOST:PORT`` address (None for none,
    ``auto`` or ``local``); a malformed one is a one-line error, and so is one where nothing
    answers (a TCP probe of at most :data:`PROBE_TIMEOUT_S` seconds)."""
    if address is None or address in ("auto", "local"):
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535 \
            or not _valid_host(host):
        raise MetabenchError(f"--address {address!r} is not valid; {_ADDRESS_HELP}")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise MetabenchError(f"--address {address}: nothing answers at {host}:{port} ({reason}); "
                             "start the head there (ray start --head) or give another "
                             "address") from None
    return host, int(port)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    if re.fullmatch(r"[\d.]+", host):  # looks like IPv4 but is not one (e.g. 256.1.1.1)
        return False
    return bool(_HOSTNAME.match(host))


def connect(ray: Any, address: str | None) -> bool:
    """Join ``address`` or the instance already running here, or start a local one (True).

    SIGTERM while connecting ends the process within seconds; from the command line a
    connection still pending after :data:`CONNECT_TIMEOUT_S` seconds ends it with one line.
    """
    if ray.is_initialized():
        return False
    if address:  # Ray's C++ core logs each failed attempt to reach a head: errors only
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}
    with _connecting(address or "a local instance"):
        if address:
            try:
                ray.init(address=address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise MetabenchError(f"--address {address}: cannot connect to Ray: "
                                     f"{str(error).strip().splitlines()[0]}") from None
            return False
        # Workers of our own instance import what the driver imports (tests, --plugin modules).
        path = os.pathsep.join(p for p in sys.path if p)
        ray.init(address="local", include_dashboard=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}}, **quiet)
        return True


@contextmanager
def _connecting(where: str) -> Iterator[None]:
    """While Ray connects, which can block in C++ where Python's signal handlers do not run:
    a watcher thread reads the signal wakeup pipe, so SIGTERM (or Ctrl-C) ends the process at
    once with one line (status 143 or 130); on the command line it also ends a connection
    still pending after :data:`CONNECT_TIMEOUT_S` seconds (status 2)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    done = threading.Event()
    limit = connect_timeout_s()
    deadline = time.monotonic() + limit if os.environ.get(HARD_TIMEOUT_ENV) == "1" else None
    watcher = threading.Thread(target=_watch, args=(read_end, done, deadline, limit, where),
                               daemon=True)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGTERM, previous)
        watcher.join()
        os.close(read_end)
        os.close(write_end)


def connect_timeout_s() -> float:
    """:data:`CONNECT_TIMEOUT_S`, or ``METABENCH_RAY_CONNECT_TIMEOUT`` seconds (1 to 600)."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, "") or CONNECT_TIMEOUT_S)
    except ValueError:
        return CONNECT_TIMEOUT_S
    return min(max(value, 1.0), 600.0) if value == value else CONNECT_TIMEOUT_S


def _watch(read_end: int, done: threading.Event, deadline: float | None, limit: float,
           where: str) -> None:
    while not done.is_set():
        ready, _, _ = select.select([read_end], [], [], 0.2)
        if ready:
            for number in os.read(read_end, 64):
                if number == signal.SIGTERM:
                    _exit_now(f"interrupted (SIGTERM) while connecting to Ray at {where}", 143)
                if number == signal.SIGINT:
                    _exit_now(f"interrupted while connecting to Ray at {where}", 130)
        if deadline is not None and time.monotonic() > deadline and not done.is_set():
            _exit_now(f"cannot connect to Ray at {where}: no answer within {limit:g} s (is the "
                      "head alive?)", 2)


def _exit_now(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    os._exit(code)


#: At most this many warm-up tasks (one per CPU slot of the cluster).
MAX_WARM_UPS = 64


def warm_up(ray: Any, config: Config) -> list[Any]:
    """Start a warm-up task (:func:`warm_worker`) in each CPU slot a cell can take, with a
    cell's resources; their references (nothing waits for them). None for GPU cells, whose
    worker processes are not reused."""
    if config.gpus_per_cell:
        return []
    cpus = sum(float(node.get("Resources", {}).get("CPU", 0.0)) for node in ray.nodes()
               if node.get("Alive"))
    slots = min(int(cpus // max(config.cpus_per_cell, 1)), MAX_WARM_UPS)
    task = _remote_warm_up(ray).options(num_cpus=config.cpus_per_cell, max_retries=0)
    return [task.remote(config) for _ in range(slots)]


def check_resources(ray: Any, config: Config) -> None:
    """Fail in one line when no live node can hold one cell's CPUs (``--threads``) and GPUs:
    Ray would otherwise wait for such a node forever."""
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    for name, wanted, flag in (("CPU", config.cpus_per_cell, "--threads/--cpus-per-cell"),
                               ("GPU", config.gpus_per_cell, "--gpus-per-cell")):
        largest = max((float(node.get(name, 0.0)) for node in nodes), default=0.0)
        if wanted > largest:
            total = sum(float(node.get(name, 0.0)) for node in nodes)
            raise MetabenchError(
                f"{flag} {wanted:g} asks more {name}s per cell than any Ray node has: the "
                f"largest has {largest:g} ({total:g} in {len(nodes)} node(s)); ask for at most "
                f"{largest:g}")


class _Driver:
    """Submits the cells, collects results, shows running and queued cells."""

    def __init__(self, ray: Any, job: Job, on_result: Callable[[CellResult], None], *,
                 cancel_on_interrupt: bool = True) -> None:
        self.ray, self.job, self.on_result = ray, job, on_result
        self.cancel_on_interrupt = cancel_on_interrupt
        self.board = _board_class(ray).remote()
        self.pending: dict[Any, Cell] = {}
        self.seen: set[str] = set()
        self.shown: tuple = ()

    def run(self) -> None:
        config = self.job.config
        task = _remote_cell(self.ray).options(
            num_cpus=config.cpus_per_cell, num_gpus=config.gpus_per_cell,
            max_retries=config.max_retries, retry_exceptions=False)
        runner = self.job.runner
        self.pending = {task.remote(config, cell, self.board, runner): cell
                        for cell in self.job.cells}
        try:
            while self.pending:
                done, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=POLL_S)
                for ref in done:
                    self.on_result(self._result(ref, self.pending.pop(ref)))
                self._show()
        except BaseException:
            self._stop_pending()
            raise

    def _stop_pending(self) -> None:
        """After an interrupt, cancel the cells still running on a Ray session this run
        joined. A local instance the backend started is shut down instead, which stops its
        workers without ``ray.cancel`` (whose race with a finishing task ends the driver in
        Ray 2.60, ray-project/ray#54846); finished cells are never cancelled."""
        if not self.cancel_on_interrupt or not self.pending:
            return
        refs = list(self.pending)
        with contextlib.suppress(Exception):  # the interrupt, not a failed clean-up, is raised
            _, unfinished = self.ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in unfinished:
                self.ray.cancel(ref, force=True)

    def _result(self, ref: Any, cell: Cell) -> CellResult:
        from metabench.runner import failed_cell

        try:
            result: CellResult = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:  # raised by our code on the worker
            reason = f"{type(error.cause).__name__} on a Ray worker: {first_line(error.cause)}"
        except self.ray.exceptions.RayError as error:  # the worker process or its node died
            attempts = self.job.config.max_retries + 1
            reason = (f"worker lost {attempts} time(s), retries exhausted "
                      f"({type(error).__name__}): {first_line(error)}")
        else:
            return result
        return failed_cell(cell, self.job.config, reason, self.job.plan.hparams_for(cell))

    def _show(self) -> None:
        running = self.ray.get(self.board.snapshot.remote())
        by_key = {cell.key: cell for cell in self.pending.values()}
        for key in running:
            if key in by_key and key not in self.seen:
                self.seen.add(key)
                self.job.started(by_key[key])
        now_running = tuple(f"{by_key[k].algorithm} {by_key[k].setting} seed {by_key[k].seed} "
                            f"@ {node}" for k, node in running.items() if k in by_key)
        queued = len(self.pending) - len(now_running)
        if (now_running, queued) != self.shown:
            self.shown = (now_running, queued)
            self.job.board.tasks(list(now_running), queued)


_CACHE: dict[str, Any] = {}


def _remote_cell(ray: Any) -> Any:
    """The Ray task that runs one cell (defined once per process). Ray's default
    ``max_calls`` keeps a CPU task's worker process for the next task (with its data sets in
    :mod:`metabench.backends.worker`) and gives a GPU task a fresh one."""
    if "task" not in _CACHE:
        _CACHE["task"] = ray.remote(run_cell_on_worker)
    return _CACHE["task"]


def _remote_warm_up(ray: Any) -> Any:
    """The Ray task that warms a worker process (defined once per process)."""
    if "warm" not in _CACHE:
        _CACHE["warm"] = ray.remote(warm_worker)
    return _CACHE["warm"]


def _board_class(ray: Any) -> Any:
    """A tiny actor where workers say which cell they run on which node."""
    if "board" not in _CACHE:

        class Board:
            def __init__(self) -> None:
                self.running: dict[str, str] = {}

            def start(self, key: str, node: str) -> None:
                self.running[key] = node

            def finish(self, key: str) -> None:
                self.running.pop(key, None)

            def snapshot(self) -> dict[str, str]:
                return dict(self.running)

        _CACHE["board"] = ray.remote(num_cpus=0)(Board)
    return _CACHE["board"]


# --- on the worker --------------------------------------------------------------------------


def run_cell_on_worker(config: Config, cell: Cell, board: Any,
                       runner: CellRunner | None = None) -> CellResult:
    """Run one cell in a Ray worker (:func:`metabench.backends.worker.run_cell_here`),
    saying on the board which node and process runs it."""
    node = f"{socket.gethostname()} pid {os.getpid()}"
    board.start.remote(cell.key, node)
    try:
        return run_cell_here(config, cell, node, runner)
    finally:
        board.finish.remote(cell.key)


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register("ray", RayBackend, description="cells as Ray tasks, on this machine or a cluster")
