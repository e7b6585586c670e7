"""The store's schema: the tables, the migrations from each older schema version, and the
checks of a file's header (a metabench store of a version this code reads, not truncated).
A new schema version adds its statements to :data:`MIGRATIONS` and bumps :data:`SCHEMA_VERSION`;
an older store is brought up to date in one transaction when it is opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from metabench.errors import MetabenchError
from metabench.records import CellRow, EpisodeRow, TrialRow, sql_columns
from metabench.store_file import StoreBusy, with_retries

SCHEMA_VERSION = 5
# metabench tune: one row per tuning, one per trial and seed (schema 3).
_TUNINGS_TABLE = """CREATE TABLE tunings (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    config TEXT NOT NULL,
    settings TEXT NOT NULL,
    environment TEXT NOT NULL,
    status TEXT NOT NULL
)"""
_TRIALS_TABLE = f"""CREATE TABLE trials (
    tuning TEXT NOT NULL REFERENCES tunings(id),
    {sql_columns(TrialRow)},
    PRIMARY KEY (tuning, key)
)"""
# What each schema version added to the one before, as it is applied to an older store.
MIGRATIONS = {
    2: (
        # The cross-domain protocol: the data set of the test episodes (same-domain: dataset).
        "ALTER TABLE cells ADD COLUMN test_dataset TEXT NOT NULL DEFAULT ''",
        "UPDATE cells SET test_dataset = dataset",
        # Protocol details (checkpoint tested, training spec, batch-norm handling): unknown.
        "ALTER TABLE cells ADD COLUMN protocol TEXT NOT NULL DEFAULT '{}'",
    ),
    # Tuning (metabench tune): tunings and their trials.
    3: (_TUNINGS_TABLE, _TRIALS_TABLE),
    # Meta-reinforcement learning: a test episode's mean query return.
    4: ("ALTER TABLE episodes ADD COLUMN avg_return REAL",),
    # The adaptation curve of an rl test task (curve_steps): returns after 0..K steps, JSON.
    5: ("ALTER TABLE episodes ADD COLUMN curve TEXT",),
}
# PRAGMA application_id: marks the file as a metabench store ("MTBN").
APPLICATION_ID = 0x4D54424E
SQLITE_HEADER = b"SQLite format 3\x00"

# The runs table by hand; the cells and episodes tables from their row records.
SCHEMA = f"""
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    config TEXT NOT NULL,
    environment TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE cells (
    run TEXT NOT NULL REFERENCES runs(id),
    {sql_columns(CellRow)},
    PRIMARY KEY (run, key)
);
CREATE TABLE episodes (
    run TEXT NOT NULL,
    cell TEXT NOT NULL,
    {sql_columns(EpisodeRow)},
    PRIMARY KEY (run, cell, episode),
    FOREIGN KEY (run, cell) REFERENCES cells(run, key)
);
{_TUNINGS_TABLE};
{_TRIALS_TABLE};
"""

LEASES_TABLE = """CREATE TABLE IF NOT EXISTS leases (
    run TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    since TEXT NOT NULL
)"""


def create_schema(db: sqlite3.Connection) -> None:
    """Create the tables of a new store, marked with the application id and schema version."""
    db.executescript(
        f"BEGIN; {SCHEMA} PRAGMA application_id = {APPLICATION_ID}; "
        f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    )


def check_store_file(path: Path) -> None:
    """Fail (one line, file untouched) unless ``path`` is a metabench store this code reads.

    Reads the SQLite header bytes only: the magic string, ``user_version`` (offset 60),
    ``application_id`` (offset 68), page size and page count (to spot a truncated file).
    """
    with path.open("rb") as handle:
        header = handle.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_HEADER):
        raise MetabenchError(f"{path} is not a metabench results store (not an SQLite database)")
    if int.from_bytes(header[68:72], "big") != APPLICATION_ID:
        raise MetabenchError(f"{path} is an SQLite database but not a metabench results store")
    version = int.from_bytes(header[60:64], "big")
    if version > SCHEMA_VERSION:
        raise MetabenchError(
            f"{path} has store schema {version}, newer than the {SCHEMA_VERSION} this metabench "
            "reads; upgrade metabench"
        )
    if _truncated(path, header):
        raise MetabenchError(f"{path} is a damaged metabench results store (file truncated)")


def _truncated(path: Path, header: bytes) -> bool:
    # A hot journal means SQLite will restore the file on open: sizes may legitimately differ.
    if Path(f"{path}-journal").exists() or header[24:28] != header[92:96]:
        return False
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    return path.stat().st_size < page_size * pages


def verified(path: Path, db: sqlite3.Connection) -> sqlite3.Connection:
    """``db`` once its tables can be read (a damaged file is a one-line error)."""
    def count() -> None:
        for table in ("runs", "cells", "episodes"):
            db.execute(f"SELECT count(*) FROM {table}").fetchone()

    try:
        with_retries(path, "opening the store", count)
    except StoreBusy:
        db.close()
        raise
    except sqlite3.DatabaseError as error:
        db.close()
        raise MetabenchError(f"{path} is a damaged metabench results store: {error}") from None
    return db


def migrated(path: Path, db: sqlite3.Connection) -> sqlite3.Connection:
    """Bring an older store to :data:`SCHEMA_VERSION` in one transaction (all or nothing).

    New columns get values that say what older versions always did, so old runs read back
    as they were stored.
    """
    try:
        version = with_retries(path, "opening the store",
                               lambda: db.execute("PRAGMA user_version").fetchone()[0])
    except MetabenchError:
        db.close()
        raise
    if version >= SCHEMA_VERSION:
        return db
    try:
        db.execute("BEGIN IMMEDIATE")  # DDL too: sqlite3 opens no transaction for it itself
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.commit()
    except sqlite3.Error as error:
        db.rollback()
        db.close()
        raise MetabenchError(
            f"{path} uses store schema {version} and could not be upgraded to "
            f"{SCHEMA_VERSION}: {error}; the file is unchanged"
        ) from None
    return db
