"""The results store: one SQLite file per results folder, with runs, cells and episodes.

Every finished cell is written in one transaction, so an interrupted or killed run loses
no finished cell. A file that is not a metabench store, or comes from a newer schema, is
refused with a one-line error and left byte for byte as it was.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from metabench.clock import now
from metabench.errors import MetabenchError
from metabench.records import (
    CELL_COLUMNS,
    CELL_STATUSES,
    EPISODE_COLUMNS,
    IDENTITY_COLUMNS,
    TRIAL_COLUMNS,
    CellRow,
    EpisodeRow,
    TrialRow,
)
from metabench.store_file import StoreBusy as StoreBusy
from metabench.store_file import connect, with_retries
from metabench.store_schema import APPLICATION_ID as APPLICATION_ID
from metabench.store_schema import LEASES_TABLE, check_store_file, create_schema, migrated, verified
from metabench.store_schema import SCHEMA_VERSION as SCHEMA_VERSION

STORE_NAME = "metabench.sqlite"


@dataclass(frozen=True)
class RunRecord:
    """One row of the runs table."""

    id: str
    created: str
    fingerprint: str
    config: dict[str, Any]
    environment: dict[str, Any]
    status: str


@dataclass(frozen=True)
class TuningRecord:
    """One row of the tunings table: a tuning's comparison config and its own settings
    (trials, trial budget, sampler seed, pruning, search spaces)."""

    id: str
    created: str
    fingerprint: str
    config: dict[str, Any]
    settings: dict[str, Any]
    environment: dict[str, Any]
    status: str


_TUNING_FIELDS = "id, created, fingerprint, config, settings, environment, status"


def store_path(location: str | Path) -> Path:
    """The store file of a results folder (or the file itself, named ``*.sqlite`` or ``*.db``)."""
    path = Path(location).expanduser()
    if path.suffix in (".sqlite", ".sqlite3", ".db") and not path.is_dir():
        return path
    return path / STORE_NAME


class Store:
    """A metabench SQLite store; open with :meth:`open` (creates) or :meth:`open_existing`."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    @classmethod
    def open(cls, location: str | Path) -> Store:
        """Open the store of a results folder, creating the folder and file when absent."""
        path = store_path(location)
        if path.exists() and path.stat().st_size > 0:
            check_store_file(path)
            return cls(path, migrated(path, verified(path, connect(path))))
        # An empty file is what a process killed before its first commit leaves.
        path.parent.mkdir(parents=True, exist_ok=True)
        store = cls(path, connect(path))
        store._create_schema()
        return store

    @classmethod
    def open_existing(cls, location: str | Path) -> Store:
        """Open a store that must already exist (for reading results)."""
        path = store_path(location)
        if not path.exists():
            raise MetabenchError(f"no metabench results at {path}: the file does not exist")
        check_store_file(path)
        return cls(path, migrated(path, verified(path, connect(path))))

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create_schema(self) -> None:
        create_schema(self._db)

    # --- runs ---------------------------------------------------------------------------

    def create_run(
        self, run_id: str, fingerprint: str, config: dict[str, Any], environment: dict[str, Any]
    ) -> str:
        """Insert a new run (status ``running``); a taken id gets a ``-2``, ``-3``... suffix."""
        def insert() -> str:
            unique = self._free_run_id(run_id)
            stamp = now()
            with self._db:
                self._db.execute(
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (unique, stamp, stamp, fingerprint, _dumps(config), _dumps(environment),
                     "running"),
                )
            return unique

        return with_retries(self.path, "creating the run", insert)

    def discard_run_if_empty(self, run_id: str) -> bool:
        """Delete a run that has no cell (a run rejected before any cell was stored)."""
        def discard() -> bool:
            with self._db:
                if self._db.execute("SELECT 1 FROM cells WHERE run = ? LIMIT 1",
                                    (run_id,)).fetchone():
                    return False
                self._db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
                if self._has_leases():
                    self._db.execute("DELETE FROM leases WHERE run = ?", (run_id,))
                return True

        return with_retries(self.path, f"discarding run {run_id}", discard)

    # --- leases -------------------------------------------------------------------------

    def acquire_lease(self, run_id: str) -> None:
        """Hold ``run_id`` for this process: a live holder (another process on this host, or
        any holder on another host) is a one-line error naming it; a lease whose process is
        gone (same host) is taken over."""
        host, pid = socket.gethostname(), os.getpid()

        def acquire() -> None:
            self._db.execute(LEASES_TABLE)
            self._db.commit()
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute("SELECT pid, host, since FROM leases WHERE run = ?",
                                       (run_id,)).fetchone()
                if row is not None and not (row[1] == host and row[0] == pid):
                    holder, holder_host, since = row
                    if holder_host != host or _alive(holder):
                        raise MetabenchError(
                            f"run {run_id} is being run by process {holder} on {holder_host} "
                            f"(since {since}); wait for it to end, or stop that process")
                self._db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)",
                                 (run_id, pid, host, now()))

        with_retries(self.path, f"taking the lease of run {run_id}", acquire)

    def release_lease(self, run_id: str) -> None:
        """Give up this process's lease of ``run_id`` (nothing when it holds none)."""
        def release() -> None:
            if self._has_leases():
                with self._db:
                    self._db.execute("DELETE FROM leases WHERE run = ? AND pid = ? AND host = ?",
                                     (run_id, os.getpid(), socket.gethostname()))

        with_retries(self.path, f"releasing the lease of run {run_id}", release)

    def _has_leases(self) -> bool:
        return self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                "name = 'leases'").fetchone() is not None

    def _free_run_id(self, run_id: str) -> str:
        taken = {row[0] for row in self._db.execute("SELECT id FROM runs")}
        candidate, n = run_id, 1
        while candidate in taken:
            n += 1
            candidate = f"{run_id}-{n}"
        return candidate

    def set_run_status(self, run_id: str, status: str, environment: dict | None = None) -> None:
        """Record a run's status (running, complete, failed, interrupted)."""
        def update() -> None:
            with self._db:
                self._db.execute("UPDATE runs SET status = ?, updated = ? WHERE id = ?",
                                 (status, now(), run_id))
                if environment is not None:
                    self._db.execute("UPDATE runs SET environment = ? WHERE id = ?",
                                     (_dumps(environment), run_id))

        with_retries(self.path, f"recording run {run_id} as {status}", update)

    def run(self, run_id: str) -> RunRecord:
        """The run with this id, or an error listing the known ones."""
        row = with_retries(self.path, "reading runs", lambda: self._db.execute(
            "SELECT id, created, fingerprint, config, environment, status FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone())
        if row is None:
            known = ", ".join(r.id for r in self.runs()[-5:]) or "none"
            raise MetabenchError(f"no run '{run_id}' in {self.path}; latest runs: {known}")
        return _run_record(row)

    def runs(self) -> list[RunRecord]:
        """Every run, oldest first."""
        rows = with_retries(self.path, "reading runs", lambda: self._db.execute(
            "SELECT id, created, fingerprint, config, environment, status FROM runs "
            "ORDER BY created, rowid"
        ).fetchall())
        return [_run_record(row) for row in rows]

    def latest_run(self, fingerprint: str) -> RunRecord | None:
        """The newest run with this config fingerprint, if any."""
        matches = [run for run in self.runs() if run.fingerprint == fingerprint]
        return matches[-1] if matches else None

    # --- cells --------------------------------------------------------------------------

    def save_cell(self, run_id: str, cell: CellRow, episodes: Sequence[EpisodeRow]) -> None:
        """Write one finished cell and its test episodes in a single transaction.

        Dicts and lists of ``cell`` are stored as JSON; ``episodes`` are its test episodes.
        """
        with_retries(self.path, f"storing cell {cell.key}",
                     lambda: self._save_cell(run_id, cell, episodes))

    def _save_cell(self, run_id: str, cell: CellRow, episodes: Sequence[EpisodeRow]) -> None:
        values = [_column_value(value) for value in cell.values()]
        marks = ", ".join("?" * (len(CELL_COLUMNS) + 1))
        episode_marks = ", ".join("?" * (len(EPISODE_COLUMNS) + 2))
        with self._db as db:
            db.execute("DELETE FROM episodes WHERE run = ? AND cell = ?", (run_id, cell.key))
            db.execute("DELETE FROM cells WHERE run = ? AND key = ?", (run_id, cell.key))
            db.execute(f"INSERT INTO cells (run, {', '.join(CELL_COLUMNS)}) VALUES ({marks})",
                       [run_id, *values])
            db.executemany(
                f"INSERT INTO episodes (run, cell, {', '.join(EPISODE_COLUMNS)}) "
                f"VALUES ({episode_marks})",
                # EpisodeRow(*row): rows of fewer fields (before avg_return, curve) get the defaults.
                [(run_id, cell.key, *EpisodeRow(*row)) for row in episodes],
            )
            db.execute("UPDATE runs SET updated = ? WHERE id = ?", (now(), run_id))

    def cell_keys(self, run_id: str, statuses: Sequence[str] = CELL_STATUSES) -> set[str]:
        """Keys of the run's stored cells with one of ``statuses``."""
        marks = ", ".join("?" * len(statuses))

        def read() -> set[str]:
            rows = self._db.execute(
                f"SELECT key FROM cells WHERE run = ? AND status IN ({marks})", (run_id, *statuses)
            )
            return {row[0] for row in rows}

        return with_retries(self.path, "reading cells", read)

    def delete_cells(self, run_id: str, keys: Sequence[str]) -> None:
        """Forget cells (and their episodes), e.g. failed ones about to be retried."""
        with self._db:
            for key in keys:
                self._db.execute("DELETE FROM episodes WHERE run = ? AND cell = ?", (run_id, key))
                self._db.execute("DELETE FROM cells WHERE run = ? AND key = ?", (run_id, key))

    # --- tunings and trials ---------------------------------------------------------------

    def create_tuning(self, tuning_id: str, fingerprint: str, config: dict[str, Any],
                      settings: dict[str, Any]) -> str:
        """Insert a new tuning (status ``running``); a taken id gets a ``-2``... suffix."""
        taken = {row[0] for row in self._db.execute("SELECT id FROM tunings")}
        unique, n = tuning_id, 1
        while unique in taken:
            n += 1
            unique = f"{tuning_id}-{n}"
        stamp = now()
        with self._db:
            self._db.execute("INSERT INTO tunings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (unique, stamp, stamp, fingerprint, _dumps(config), _dumps(settings),
                              _dumps({}), "running"))
        return unique

    def set_tuning_status(self, tuning_id: str, status: str,
                          environment: dict | None = None) -> None:
        """Record a tuning's status (running, complete, interrupted)."""
        with self._db:
            self._db.execute("UPDATE tunings SET status = ?, updated = ? WHERE id = ?",
                             (status, now(), tuning_id))
            if environment is not None:
                self._db.execute("UPDATE tunings SET environment = ? WHERE id = ?",
                                 (_dumps(environment), tuning_id))

    def tuning(self, tuning_id: str) -> TuningRecord:
        """The tuning with this id, or an error listing the latest ones."""
        row = self._db.execute(f"SELECT {_TUNING_FIELDS} FROM tunings WHERE id = ?",
                               (tuning_id,)).fetchone()
        if row is None:
            known = ", ".join(t.id for t in self.tunings()[-5:]) or "none"
            raise MetabenchError(f"no tuning '{tuning_id}' in {self.path}; latest tunings: {known}")
        return _tuning_record(row)

    def tunings(self) -> list[TuningRecord]:
        """Every tuning, oldest first."""
        rows = self._db.execute(f"SELECT {_TUNING_FIELDS} FROM tunings ORDER BY created, rowid")
        return [_tuning_record(row) for row in rows]

    def save_trial(self, tuning_id: str, trial: TrialRow) -> None:
        """Write one finished trial (one seed) in a single transaction."""
        values = [_column_value(value) for value in trial.values()]
        marks = ", ".join("?" * (len(TRIAL_COLUMNS) + 1))
        with self._db as db:
            db.execute("DELETE FROM trials WHERE tuning = ? AND key = ?", (tuning_id, trial.key))
            db.execute(f"INSERT INTO trials (tuning, {', '.join(TRIAL_COLUMNS)}) VALUES ({marks})",
                       [tuning_id, *values])
            db.execute("UPDATE tunings SET updated = ? WHERE id = ?", (now(), tuning_id))

    def trials_frame(self, tuning_id: str | None = None) -> pd.DataFrame:
        """One row per stored trial and seed, JSON columns decoded."""
        query = f"SELECT tuning, {', '.join(TRIAL_COLUMNS)} FROM trials"
        frame = self._query(query, tuning_id, "tuning", order="rowid")
        for name in ("params", "curve"):
            frame[name] = [json.loads(text) for text in frame[name]]
        return frame

    # --- frames -------------------------------------------------------------------------

    def cells_frame(self, run_id: str | None = None) -> pd.DataFrame:
        """One row per cell, JSON columns decoded, profile entries as ``profile.*`` columns."""
        query = f"SELECT run, {', '.join(CELL_COLUMNS)} FROM cells"
        frame = self._query(query, run_id, "run", order="rowid")
        for name in ("profile", "hparams", "curve", "protocol"):
            frame[name] = [json.loads(text) for text in frame[name]]
        profile = pd.json_normalize(list(frame["profile"])) if len(frame) else pd.DataFrame()
        profile.index = frame.index
        return frame.join(profile.add_prefix("profile.")) if len(profile.columns) else frame

    def episodes_frame(self, run_id: str | None = None) -> pd.DataFrame:
        """One row per test episode with the cell's identity columns."""
        identity = ", ".join(f"c.{name}" for name in IDENTITY_COLUMNS if name != "key")
        scores = ", ".join(f"e.{name}" for name in EPISODE_COLUMNS)
        query = (
            f"SELECT e.run, {identity}, e.cell, {scores} "
            "FROM episodes e JOIN cells c ON c.run = e.run AND c.key = e.cell"
        )
        return self._query(query, run_id, "e.run", order="e.rowid")

    def _query(self, query: str, run_id: str | None, column: str, order: str) -> pd.DataFrame:
        params: tuple = ()
        if run_id is not None:
            query += f" WHERE {column} = ?"
            params = (run_id,)
        def read() -> pd.DataFrame:
            with closing(self._db.execute(f"{query} ORDER BY {order}", params)) as cursor:
                names = [d[0] for d in cursor.description]
                return pd.DataFrame(cursor.fetchall(), columns=names)

        return with_retries(self.path, "reading results", read)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, allow_nan=True)


def _column_value(value: Any) -> Any:
    return _dumps(value) if isinstance(value, dict | list | tuple) else value


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except (OSError, OverflowError):
        return False
    return True


def _tuning_record(row: tuple) -> TuningRecord:
    tuning_id, created, fingerprint, config, settings, environment, status = row
    return TuningRecord(tuning_id, created, fingerprint, json.loads(config), json.loads(settings),
                        json.loads(environment), status)


def _run_record(row: tuple) -> RunRecord:
    run_id, created, fingerprint, config, environment, status = row
    return RunRecord(run_id, created, fingerprint, json.loads(config), json.loads(environment),
                     status)
