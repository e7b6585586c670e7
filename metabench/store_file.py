"""Opening a store's SQLite file and waiting for a lock another process holds: every store
operation runs through :func:`with_retries`, bounded by ``METABENCH_STORE_WAIT`` seconds."""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from metabench.errors import MetabenchError

#: Seconds a write waits for a store that another process holds locked (busy timeout and
#: retries with backoff) before giving up; the environment variable overrides the default.
STORE_WAIT_ENV = "METABENCH_STORE_WAIT"
DEFAULT_STORE_WAIT_S = 120.0
_T = TypeVar("_T")


class StoreBusy(MetabenchError):
    """The store stayed locked by another process for longer than :func:`store_wait_s`."""


def store_wait_s() -> float:
    """How long a store operation waits for a lock (``METABENCH_STORE_WAIT`` seconds)."""
    text = os.environ.get(STORE_WAIT_ENV, "")
    try:
        wait = float(text) if text.strip() else DEFAULT_STORE_WAIT_S
    except ValueError:
        return DEFAULT_STORE_WAIT_S
    return wait if math.isfinite(wait) and wait >= 0 else DEFAULT_STORE_WAIT_S


def _is_locked(error: sqlite3.Error) -> bool:
    text = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def with_retries(path: Path, what: str, action: Callable[[], _T], convert: bool = False) -> _T:
    """``action()``, retried with backoff while the store is locked, for at most
    :func:`store_wait_s` seconds; then :class:`StoreBusy` (one line). Other SQLite errors
    propagate, or with ``convert`` become one-line errors naming the store."""
    wait = store_wait_s()
    deadline = time.monotonic() + wait
    pause = 0.05
    while True:
        try:
            return action()
        except sqlite3.Error as error:
            if not _is_locked(error):
                if not convert:
                    raise
                raise MetabenchError(f"{path}: {what} failed: {error}") from None
            if time.monotonic() >= deadline:
                raise StoreBusy(f"{path} is locked by another process; {what} gave up after "
                                f"{wait:g} s ({STORE_WAIT_ENV} sets the wait)") from None
            time.sleep(pause)
            pause = min(2 * pause, 2.0)


def connect(path: Path) -> sqlite3.Connection:
    """A connection with foreign keys on and full sync (a committed cell survives a kill)."""
    # SQLite's busy timeout waits within one attempt; with_retries waits across attempts.
    db = sqlite3.connect(path, timeout=min(5.0, store_wait_s()), isolation_level="DEFERRED")

    def configure() -> None:
        db.execute("PRAGMA foreign_keys = ON")
        # Rollback journal with full sync: a committed cell survives a killed process.
        db.execute("PRAGMA synchronous = FULL")

    try:
        with_retries(path, "opening the store", configure)
    except BaseException:
        db.close()
        raise
    return db
