"""The SQLite results store: schema, transactions, and refusing files it must not touch."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import metabench
from metabench.errors import MetabenchError
from metabench.records import CellRow
from metabench.store import APPLICATION_ID, SCHEMA_VERSION, Store, store_path

CELL = {
    "key": "protonet/micro/5w1sq15/seed0", "algorithm": "protonet", "dataset": "micro",
    "test_dataset": "micro", "task_type": "classification", "ways": 5, "shots": 1, "queries": 15, "seed": 0,
    "backbone": "flat", "status": "ok", "reason": "", "budget": "episodes:10", "steps": 10,
    "train_episodes": 10, "best_step": 5, "device": "cpu", "profile": {"train_time_s": 1.5},
    "hparams": {"lr": 0.001}, "curve": [{"step": 5, "val_accuracy": 0.5}],
}
EPISODES = [(0, 0.5, None, 1.2), (1, 0.75, None, 0.9)]


def new_store(folder: Path) -> Store:
    store = Store.open(folder)
    run = store.create_run("r1", "abc", {"shots": [1]}, {"torch": "x"})
    store.save_cell(run, CellRow(**CELL), EPISODES)
    return store


def files_of(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_a_new_store_is_marked_and_versioned(tmp_path):
    new_store(tmp_path).close()
    header = (tmp_path / "metabench.sqlite").read_bytes()[:100]
    assert int.from_bytes(header[68:72], "big") == APPLICATION_ID
    assert int.from_bytes(header[60:64], "big") == SCHEMA_VERSION


# A schema-1 store as metabench 0.1 wrote it (no test_dataset, no protocol column).
_V1_SCHEMA = """
CREATE TABLE runs (id TEXT PRIMARY KEY, created TEXT NOT NULL, updated TEXT NOT NULL,
    fingerprint TEXT NOT NULL, config TEXT NOT NULL, environment TEXT NOT NULL,
    status TEXT NOT NULL);
CREATE TABLE cells (run TEXT NOT NULL REFERENCES runs(id), key TEXT NOT NULL,
    algorithm TEXT NOT NULL, dataset TEXT NOT NULL, task_type TEXT NOT NULL,
    ways INTEGER NOT NULL, shots INTEGER NOT NULL, queries INTEGER NOT NULL,
    seed INTEGER NOT NULL, backbone TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,
    budget TEXT NOT NULL, steps INTEGER NOT NULL, train_episodes INTEGER NOT NULL,
    best_step INTEGER, device TEXT NOT NULL, started TEXT, finished TEXT,
    profile TEXT NOT NULL, hparams TEXT NOT NULL, curve TEXT NOT NULL,
    PRIMARY KEY (run, key));
CREATE TABLE episodes (run TEXT NOT NULL, cell TEXT NOT NULL, episode INTEGER NOT NULL,
    accuracy REAL, mse REAL, loss REAL, PRIMARY KEY (run, cell, episode),
    FOREIGN KEY (run, cell) REFERENCES cells(run, key));
"""


def test_a_schema_1_store_is_upgraded_and_reads_back_as_stored(tmp_path):
    path = tmp_path / "metabench.sqlite"
    db = sqlite3.connect(path)
    db.executescript(_V1_SCHEMA + f"PRAGMA application_id = {APPLICATION_ID}; "
                     "PRAGMA user_version = 1;")
    db.execute("INSERT INTO runs VALUES ('r1', 't', 't', 'abc', '{}', '{}', 'complete')")
    db.execute("INSERT INTO cells VALUES ('r1', 'maml/micro/5w1sq15/seed0', 'maml', 'micro', "
               "'classification', 5, 1, 15, 0, 'flat', 'ok', '', 'episodes:10', 10, 10, 5, "
               "'cpu', NULL, NULL, '{}', '{}', '[]')")
    db.execute("INSERT INTO episodes VALUES ('r1', 'maml/micro/5w1sq15/seed0', 0, 0.5, NULL, 1)")
    db.commit()
    db.close()
    with Store.open_existing(tmp_path) as store:
        cells, episodes = store.cells_frame("r1"), store.episodes_frame("r1")
    assert cells.loc[0, "test_dataset"] == "micro" and cells.loc[0, "protocol"] == {}
    assert list(episodes["test_dataset"]) == ["micro"] and list(episodes["accuracy"]) == [0.5]
    assert int.from_bytes(path.read_bytes()[60:64], "big") == SCHEMA_VERSION


def test_cells_and_episodes_round_trip(tmp_path):
    with new_store(tmp_path) as store:
        cells = store.cells_frame("r1")
        episodes = store.episodes_frame("r1")
    assert cells.loc[0, "profile"] == {"train_time_s": 1.5}
    assert cells.loc[0, "profile.train_time_s"] == 1.5
    assert cells.loc[0, "curve"] == [{"step": 5, "val_accuracy": 0.5}]
    assert list(episodes["accuracy"]) == [0.5, 0.75] and list(episodes["loss"]) == [1.2, 0.9]
    frame = metabench.load_results(tmp_path)
    assert {"run", "algorithm", "seed", "episode", "accuracy", "mse", "loss", "steps",
            "profile.train_time_s"} <= set(frame.columns)


def test_a_cell_is_written_whole_or_not_at_all(tmp_path):
    with new_store(tmp_path) as store:
        other = {**CELL, "key": "maml/micro/5w1sq15/seed0", "algorithm": "maml"}
        with pytest.raises(sqlite3.Error):
            store.save_cell("r1", CellRow(**other), [(0, 0.5, None, 1.0), (0, 0.5, None, 1.0)])
        assert store.cell_keys("r1") == {CELL["key"]}
        assert len(store.episodes_frame("r1")) == 2


def test_run_ids_are_unique_and_found_by_fingerprint(tmp_path):
    with new_store(tmp_path) as store:
        second = store.create_run("r1", "abc", {}, {})
        assert second == "r1-2"
        assert store.latest_run("abc").id == "r1-2"
        assert store.latest_run("other") is None
        store.set_run_status("r1", "complete")
        assert store.run("r1").status == "complete"
        with pytest.raises(MetabenchError, match="no run 'r9'"):
            store.run("r9")


def test_an_empty_file_becomes_a_store(tmp_path):
    (tmp_path / "metabench.sqlite").write_bytes(b"")
    new_store(tmp_path).close()
    assert metabench.load_cells(tmp_path).loc[0, "key"] == CELL["key"]


def test_store_path_accepts_a_folder_or_a_file(tmp_path):
    assert store_path(tmp_path) == tmp_path / "metabench.sqlite"
    assert store_path(tmp_path / "new-folder") == tmp_path / "new-folder" / "metabench.sqlite"
    assert store_path(tmp_path / "mine.sqlite") == tmp_path / "mine.sqlite"


def _text_file(path: Path) -> None:
    path.write_text("these are my notes, not a database\n")


def _foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (id TEXT)")
    db.close()


def _newer_schema(path: Path) -> None:
    new_store(path.parent).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()


def _truncated(path: Path) -> None:
    with new_store(path.parent) as store:
        for i in range(40):  # enough rows for several pages
            store.save_cell("r1", CellRow(**{**CELL, "key": f"k{i}"}), EPISODES * 1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage_pages(path: Path) -> None:
    with new_store(path.parent) as store:
        for i in range(40):
            store.save_cell("r1", CellRow(**{**CELL, "key": f"k{i}"}), EPISODES)
    data = bytearray(path.read_bytes())
    data[4096:] = bytes(len(data) - 4096)  # every page but the first zeroed
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("make", "message"), [
    (_text_file, "is not a metabench results store (not an SQLite database)"),
    (_foreign_sqlite, "is an SQLite database but not a metabench results store"),
    (_newer_schema, f"has store schema {SCHEMA_VERSION + 1}, newer than the {SCHEMA_VERSION}"),
    (_truncated, "is a damaged metabench results store"),
    (_garbage_pages, "is a damaged metabench results store"),
])
@pytest.mark.parametrize("opener", [Store.open, Store.open_existing, metabench.load_results])
def test_files_that_are_not_our_store_are_refused_unchanged(tmp_path, make, message, opener):
    path = tmp_path / "metabench.sqlite"
    make(path)
    before = files_of(tmp_path)
    with pytest.raises(MetabenchError, match=r"metabench results store|newer") as error:
        opener(tmp_path)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert files_of(tmp_path) == before


def test_reading_a_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(MetabenchError, match=r"no metabench results at .*does not exist"):
        metabench.load_results(tmp_path / "nothing")
