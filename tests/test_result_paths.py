"""One path grammar for every command that reads results: a results folder, a store file or
DIR/RUN, resolved by :func:`metabench.result_paths.resolve_results_path`, with one-line
errors for a bad path (the stored runs come from tests/fixtures/old_store)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from golden import OLD_STORE, STORE_DUMP, restore_store
from test_plugins import assert_one_line_error

import metabench
from metabench.errors import MetabenchError
from metabench.result_paths import ResultsPath, resolve_results_path, resolve_results_paths

READERS = ("leaderboard", "report", "plot", "export")


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results folder with a complete run and an interrupted one, and a folder RESULTS/RUN
    (where ``compare --report`` writes a run's report)."""
    folder = tmp_path / "results"
    folder.mkdir()
    restore_store(OLD_STORE / STORE_DUMP, folder / "metabench.sqlite")
    (folder / run_ids(folder)[0]).mkdir()
    return folder


def run_ids(folder: Path) -> list[str]:
    with sqlite3.connect(folder / "metabench.sqlite") as db:
        return [row[0] for row in db.execute("SELECT id FROM runs ORDER BY created")]


def test_a_folder_a_store_file_and_dir_run_resolve(results):
    first, second = run_ids(results)
    store = results / "metabench.sqlite"
    assert resolve_results_path(results) == ResultsPath(results)
    assert resolve_results_path(str(store)) == ResultsPath(store)
    assert resolve_results_path(f"{results}/{first}") == ResultsPath(results, first)
    assert resolve_results_path(f"{store}/{second}") == ResultsPath(store, second)
    assert resolve_results_path(results, run=second) == ResultsPath(results, second)
    assert resolve_results_path(f"{results}/{first}", run=first) == ResultsPath(results, first)
    assert ResultsPath(store, first).folder == results and ResultsPath(results).store == store


def test_no_path_means_the_folder_results(results, monkeypatch):
    monkeypatch.chdir(results.parent)
    assert resolve_results_paths([]) == [ResultsPath(Path("results"))]


@pytest.mark.parametrize(("raw", "message"), [
    ("{tmp}/nothing", "no metabench results at {tmp}/nothing: it does not exist; expected a "
                      "results folder, a store file (metabench.sqlite) or DIR/RUN"),
    ("{tmp}", "no metabench results at {tmp}: the folder has no metabench.sqlite"),
    ("{tmp}/notes.txt", "no metabench results at {tmp}/notes.txt: the file is not a store"),
    ("{results}/2001-01-01T00-00-00", "no metabench results at {results}/2001-01-01T00-00-00: "
                                      "no run '2001-01-01T00-00-00' in {results}/metabench.sqlite "
                                      "(latest runs: {first}, {second})"),
])
def test_a_bad_path_is_one_line_naming_it(results, tmp_path, raw, message):
    (tmp_path / "notes.txt").write_text("not a store")
    first, second = run_ids(results)
    names = {"tmp": tmp_path, "results": results, "first": first, "second": second}
    with pytest.raises(MetabenchError) as error:
        resolve_results_path(raw.format(**names))
    assert message.format(**names) in str(error.value)
    assert "\n" not in str(error.value)


def test_a_run_given_twice_must_agree(results):
    first, second = run_ids(results)
    with pytest.raises(MetabenchError, match=f"--run {second} disagrees with .*{first}"):
        resolve_results_path(f"{results}/{first}", run=second)
    with pytest.raises(MetabenchError, match=r"--run NOSUCH: no run 'NOSUCH' in .*latest runs"):
        resolve_results_path(results, run="NOSUCH")


@pytest.mark.parametrize("command", READERS)
@pytest.mark.parametrize("bad", ["{tmp}/nothing", "{results}/NOSUCH", "{tmp}/notes.txt"])
def test_every_reading_command_gives_the_same_one_line_error(run_cli, results, tmp_path,
                                                            command, bad):
    (tmp_path / "notes.txt").write_text("not a store")
    raw = bad.format(tmp=tmp_path, results=results)
    before = sorted(path.name for path in results.iterdir())
    result = run_cli(command, raw, "-o", str(tmp_path / "out"))
    assert result.code == 2, result.err
    assert_one_line_error(result.err)
    with pytest.raises(MetabenchError) as error:
        resolve_results_path(raw)
    assert result.err.strip() == f"error: {error.value}"
    assert sorted(path.name for path in results.iterdir()) == before


def test_export_dir_run_writes_that_run_into_its_folder(run_cli, results):
    first, second = run_ids(results)
    result = run_cli("export", f"{results}/{second}")
    assert result.code == 0, result.err
    assert result.out.strip() == f"wrote {results / second / 'episodes.csv'}"
    frame = pd.read_csv(results / second / "episodes.csv")
    assert set(frame["run"]) == {second} and len(frame) == 2 * 20
    cells = run_cli("export", f"{results / 'metabench.sqlite'}/{first}", "--table", "cells",
                    "-o", str(results / "c.csv"))
    assert cells.code == 0, cells.err
    assert list(pd.read_csv(results / "c.csv")["run"]) == [first]


def test_export_run_keeps_working_and_must_agree_with_dir_run(run_cli, results):
    first, second = run_ids(results)
    result = run_cli("export", str(results), "--run", first)
    assert result.code == 0, result.err
    assert result.out.strip() == f"wrote {results / 'episodes.csv'}"  # beside the store, as before
    assert set(pd.read_csv(results / "episodes.csv")["run"]) == {first}
    same = run_cli("export", f"{results}/{first}", "--run", first, "-o", str(results / "s.csv"))
    assert same.code == 0, same.err
    clash = run_cli("export", f"{results}/{first}", "--run", second)
    assert clash.code == 2 and "disagrees" in clash.err
    assert_one_line_error(clash.err)


def test_load_results_and_load_cells_take_dir_run(results):
    first, second = run_ids(results)
    assert set(metabench.load_results(f"{results}/{second}")["run"]) == {second}
    assert list(metabench.load_cells(f"{results}/{first}")["run"]) == [first]
    assert len(metabench.load_results(results)) == 3 * 20


def test_leaderboard_and_report_of_dir_run(run_cli, results):
    second = run_ids(results)[1]
    board = run_cli("leaderboard", f"{results}/{second}")
    assert board.code == 0 and "reptile" in board.out, board.err
    report = run_cli("report", f"{results}/{second}")
    assert report.code == 0, report.err
    assert report.out.strip() == f"wrote {results / second / 'report.html'}"
    store_file = run_cli("report", str(results / "metabench.sqlite"))
    assert store_file.out.strip() == f"wrote {results / 'report.html'}"
