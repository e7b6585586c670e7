"""Share a list of independent, CPU-bound calls with one forked copy of this process.

Drawing a report's figures is pure Python (matplotlib) and holds the GIL, so threads do not
help; a forked child inherits everything already computed and needs no pickling of inputs.
The two processes take items one at a time from a pipe, so a slow item does not leave the
other process idle. Used only where forking is safe (:func:`fork_is_safe`); otherwise the
calls run here one after another. An item the child could not finish is redone here, so a
failure raises in this process as it would serially. ``METABENCH_FORK=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_ITEMS = 255  # one byte per item on the task pipe


def fork_helps(items: int) -> bool:
    """Whether sharing ``items`` calls with a forked child can be faster and is safe here."""
    return 2 <= items <= MAX_ITEMS and fork_is_safe()


def fork_is_safe() -> bool:
    """Linux, two or more CPUs to run on, no other Python thread (a notebook kernel has
    some), torch not loaded (its OpenMP pool does not survive a fork), and not turned off
    by ``METABENCH_FORK=0``."""
    return (
        sys.platform.startswith("linux")
        and os.environ.get("METABENCH_FORK", "1") != "0"
        and len(os.sched_getaffinity(0)) >= 2
        and threading.active_count() == 1
        and "torch" not in sys.modules
    )


def map_shared(function: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
    """``[function(item) for item in items]``, shared with a forked child where that helps."""
    if not fork_helps(len(items)):
        return [function(item) for item in items]
    tasks_read, tasks_write = os.pipe()
    os.write(tasks_write, bytes(range(len(items))))
    os.close(tasks_write)
    results_read, results_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(results_read)
        _child(function, items, tasks_read, results_write)
    os.close(results_write)
    done: dict[int, Result] = {}
    try:
        done.update(_take_items(function, items, tasks_read))
    finally:
        os.close(tasks_read)
        done.update(_child_results(child, results_read))
    # Items the child did not finish (it failed or was killed) are redone here.
    return [done[index] if index in done else function(item) for index, item in enumerate(items)]


def _take_items(function: Callable[[Item], Result], items: Sequence[Item],
                tasks: int) -> dict[int, Result]:
    done = {}
    while index := os.read(tasks, 1):
        done[index[0]] = function(items[index[0]])
    return done


def _child(function: Callable[[Item], Result], items: Sequence[Item], tasks: int,
           results: int) -> NoReturn:
    """The forked child: take items until none are left, send the results, exit at once
    (no atexit handlers, no flushing of buffers inherited from the parent)."""
    done: dict[int, Result] = {}
    with contextlib.suppress(BaseException):  # the parent redoes the item and raises there
        done = _take_items(function, items, tasks)
    try:
        payload = pickle.dumps(done)
        with os.fdopen(results, "wb") as pipe:
            pipe.write(payload)
    finally:
        os._exit(0)


def _child_results(child: int, results: int) -> dict[int, Result]:
    with os.fdopen(results, "rb") as pipe:
        payload = pipe.read()
    os.waitpid(child, 0)
    try:
        return pickle.loads(payload) if payload else {}
    except (pickle.UnpicklingError, EOFError):
        return {}
