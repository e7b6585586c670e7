"""Side files of cells that could not be stored: a trained cell is never lost to a store that
another process holds locked. The cell and its episodes are written as JSON beside the store
(``metabench.sqlite.pending/RUN/KEY.json``, atomically) and the next ``--resume`` of the run
stores them before it plans what is left."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from metabench.errors import MetabenchError
from metabench.files import write_text_atomic
from metabench.records import CellRow, EpisodeRow
from metabench.store import Store


def pending_folder(store: Path, run_id: str) -> Path:
    """Where the side files of ``run_id`` go, beside the store file."""
    return store.parent / f"{store.name}.pending" / run_id


def keep_cell(store: Path, run_id: str, cell: CellRow, episodes: list[EpisodeRow]) -> Path:
    """Write one finished cell to its side file and return the file."""
    name = hashlib.blake2b(cell.key.encode(), digest_size=8).hexdigest()
    record = {"cell": dataclasses.asdict(cell), "episodes": [list(row) for row in episodes]}
    path = pending_folder(store, run_id) / f"{name}.json"
    return write_text_atomic(path, json.dumps(record, default=str), "a cell kept aside")


def store_pending(store: Store, run_id: str) -> list[str]:
    """Store the run's side files (then delete them); returns the keys of the cells stored."""
    folder = pending_folder(store.path, run_id)
    stored = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
            cell = CellRow(**record["cell"])
            episodes = [EpisodeRow(*row) for row in record["episodes"]]
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise MetabenchError(f"side file {path} cannot be read ({error}); move it away to "
                                 "resume without it") from None
        store.save_cell(run_id, cell, episodes)
        path.unlink()
        stored.append(cell.key)
    for empty in (folder, folder.parent):
        if empty.is_dir() and not any(empty.iterdir()):
            empty.rmdir()
    return stored
