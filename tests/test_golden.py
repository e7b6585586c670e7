"""Stored results stay what an earlier release stored (tests/golden.py writes the fixtures):
the default comparison's every test episode, and a store written by that release, whose
interrupted run a later release finds by its options, finishes and reads."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from golden import (
    OLD_STORE,
    OLD_STORE_INTERRUPTED,
    STORE_DUMP,
    differences,
    fixture_path,
    per_episode,
    restore_store,
    run,
)

import metabench

pytestmark = pytest.mark.timeout(600)


def golden(name: str) -> dict[str, dict[str, list[float]]]:
    return json.loads(fixture_path(name).read_text())["cells"]


def test_the_default_comparison_gives_the_stored_results(tmp_path):
    assert differences(golden("default"), run("default", tmp_path)) == []


def test_differences_names_a_changed_accuracy_and_a_loss_beyond_the_tolerance():
    expected = {"a": {"accuracy": [0.5, 0.25], "loss": [1.0, 2.0]}}
    assert differences(expected, {"a": {"accuracy": [0.5, 0.25], "loss": [1.000009, 2.0]}}) == []
    found = {"a": {"accuracy": [0.5, 0.26], "loss": [1.0, 2.00002]}}
    assert differences(expected, found) == [
        "a episode 1: accuracy 0.26 != 0.25",
        "a episode 1: loss 2.00002 != 2.0 (tolerance 1e-05)"]
    assert differences(expected, {"b": expected["a"]}) == ["cells ['b'] != expected ['a']"]


# -- a store written by the release of tests/fixtures/old_store/about.json ---------------------


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    """A copy of the old results folder (the fixture itself is never written)."""
    folder = tmp_path / "results"
    folder.mkdir()
    restore_store(OLD_STORE / STORE_DUMP, folder / "metabench.sqlite")
    return folder


def runs(folder: Path) -> dict[str, str]:
    with sqlite3.connect(folder / "metabench.sqlite") as db:
        return dict(db.execute("SELECT id, status FROM runs ORDER BY created"))


def test_the_old_store_holds_a_complete_and_an_interrupted_run(old_store):
    assert list(runs(old_store).values()) == ["complete", "interrupted"]
    cells = metabench.load_cells(old_store)
    assert len(cells) == 3 and set(cells["status"]) == {"ok"}


def test_resume_finds_the_old_interrupted_run_by_its_options_and_finishes_it(old_store, run_cli):
    before = runs(old_store)
    interrupted = next(run_id for run_id, status in before.items() if status == "interrupted")
    stored = per_episode(old_store, interrupted)
    result = run_cli(*OLD_STORE_INTERRUPTED, "--out", str(old_store), "--resume",
                     "--no-progress", "--no-report")
    assert result.code == 0, result.err
    assert f"run {interrupted}" in result.out
    after = runs(old_store)
    assert after == {**before, interrupted: "complete"}  # no new run
    finished = per_episode(old_store, interrupted)
    assert len(finished) == 4 and {cell: finished[cell] for cell in stored} == stored
    # the cells run now are those of a comparison run in one go (same seeds, same episodes)
    default = golden("default")
    assert differences({cell: default[cell] for cell in finished}, finished) == []


@pytest.mark.parametrize("command", ["leaderboard", "report", "export", "plot"])
def test_reading_commands_read_the_old_store(old_store, run_cli, tmp_path, command):
    complete, interrupted = runs(old_store)
    output = {"report": ["-o", str(tmp_path / "r.html")], "plot": ["-o", str(tmp_path / "plots")],
              "export": ["-o", str(tmp_path / "e.csv")], "leaderboard": []}[command]
    targets = [str(old_store), str(old_store / "metabench.sqlite"), f"{old_store}/{interrupted}"]
    for target in targets:
        result = run_cli(command, target, *output)
        assert result.code == 0, f"{command} {target}: {result.err}"
        assert "Traceback" not in result.err
    if command == "leaderboard":
        assert "protonet" in result.out and "reptile" in result.out
    if command == "export":
        exported = (tmp_path / "e.csv").read_text().splitlines()
        assert len(exported) == 1 + 2 * 20  # the interrupted run's two cells
    legacy = run_cli("export", str(old_store), "--run", complete, "-o", str(tmp_path / "c.csv"))
    assert legacy.code == 0, legacy.err
    assert len((tmp_path / "c.csv").read_text().splitlines()) == 1 + 20
