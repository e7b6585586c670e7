"""Hostile but realistic input (issue 23): every bad option gives one line and exit 2 with the
store unchanged; output files are whole or untouched; a locked store loses no trained cell;
a running run is leased; Ray refuses what it cannot do within seconds."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import metabench
from metabench.errors import MetabenchError
from metabench.plugins import get_plugin_manager
from metabench.store import Store

TESTS = Path(__file__).resolve().parent
MICRO = ["--datasets", "micro", "--backbone", "flat", "--shots", "1", "--episodes", "4",
         "--budget", "episodes:4", "--val-episodes", "2", "--val-points", "1"]
OPTIONS = {"datasets": "micro", "backbone": "flat", "shots": [1], "episodes": 4,
           "budget": "episodes:4", "val_episodes": 2, "val_points": 1}


def cli(*args: str, env: dict[str, str | None] | None = None, cwd: Path | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``metabench --plugin hardening_plugin ARGS`` in a subprocess, as a user runs it
    (``env`` adds variables; a None value removes one)."""
    merged = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(TESTS), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    environment = {key: value for key, value in merged.items() if value is not None}
    return subprocess.run([sys.executable, "-m", "metabench", "--plugin", "hardening_plugin",
                           *args], capture_output=True, text=True, env=environment, cwd=cwd,
                          timeout=timeout)


def digest(folder: Path) -> str:
    """A hash of every file under ``folder`` (names and bytes)."""
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        sha.update(str(path.relative_to(folder)).encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2, one ``error:`` line on stderr naming ``words``, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr + result.stdout
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with one finished run of two algorithms on the micro data set."""
    folder = tmp_path_factory.mktemp("hardening") / "results"
    done = cli("compare", "-a", "protonet,sleepy", *MICRO, "--out", str(folder),
               "--no-progress")
    assert done.returncode == 0, done.stderr
    return folder


def _toml(tmp: Path, text: str) -> str:
    path = tmp / "bad.toml"
    path.write_text(text)
    return str(path)


# Each case of "What was found" (and a few more): the arguments, and words the error names.
BAD = {
    "margin nan (leaderboard)": (["leaderboard", "{results}", "--margin", "nan"], ["margin", "nan"]),
    "margin nan (compare)": (["compare", "--margin", "nan", *MICRO, "--out", "{results}"],
                             ["margin", "nan"]),
    "margin inf": (["leaderboard", "{results}", "--margin", "inf"], ["margin", "inf"]),
    "confidence nan": (["report", "{results}", "--confidence", "nan"], ["confidence"]),
    "retry-failed without resume": (["compare", "--retry-failed", *MICRO, "--out", "{results}"],
                                    ["--retry-failed", "--resume"]),
    "export of an unknown run": (["export", "{results}", "--run", "NOSUCH", "-o", "{tmp}/x.csv"],
                                 ["NOSUCH"]),
    "TOML episodes 5.7": (["compare", "--config", "toml:episodes = 5.7", "--out", "{results}"],
                          ["episodes", "5.7", "whole number"]),
    "plot cd of one algorithm": (["plot", "{results}", "--kind", "cd", "-a", "protonet",
                                  "-o", "{tmp}/plots"], ["cd"]),
    "seeds with an empty item": (["compare", "--seeds", "1,,2", *MICRO, "--out", "{results}"],
                                 ["seeds", "empty item"]),
    "address with the local backend": (["compare", "--address", "127.0.0.1:6379", *MICRO,
                                        "--out", "{results}"], ["--address", "--backend ray"]),
    "seeds beyond the store": (["compare", "--seeds", "99999999999999999999999", *MICRO,
                                "--out", "{results}"], ["seeds", "out of range"]),
    "gpus-per-cell nan": (["compare", "--gpus-per-cell", "nan", *MICRO, "--out", "{results}"],
                          ["gpus_per_cell", "nan"]),
    "max-retries beyond a C long": (["compare", "--max-retries", "9" * 25, *MICRO, "--out",
                                     "{results}"], ["max_retries", "out of range"]),
    "jobs zero": (["compare", "--jobs", "0", *MICRO, "--out", "{results}"], ["jobs=0", "auto"]),
    "jobs not a number": (["compare", "--jobs", "many", *MICRO, "--out", "{results}"],
                          ["jobs='many'", "whole number"]),
    "TOML algorithms = 5": (["compare", "--config", "toml:algorithms = 5", "--out", "{results}"],
                            ["algorithms", "not a list"]),
    "TOML compare = x": (["compare", "--config", 'toml:compare = "x"', "--out", "{results}"],
                         ["compare", "table"]),
    "leaderboard -o a folder": (["leaderboard", "{results}", "--format", "md", "-o", "{tmp}"],
                                ["folder"]),
    "export -o a folder": (["export", "{results}", "-o", "{tmp}"], ["folder"]),
    "compare --out an existing file": (["compare", *MICRO, "--out", "{tmp}/afile"],
                                       ["afile", "not a folder"]),
    "compare --out below a file": (["compare", *MICRO, "--out", "{tmp}/afile/below"],
                                   ["afile", "not a folder"]),
    "reproduce --scale nan": (["reproduce", "protonet-omniglot", "--scale", "nan",
                               "--no-estimate"], ["scale", "nan"]),
    "reproduce --scale inf": (["reproduce", "protonet-omniglot", "--scale", "inf",
                               "--no-estimate"], ["scale", "inf"]),
    "html leaderboard without -o": (["leaderboard", "{results}", "--format", "html"],
                                    ["html", "-o"]),
    "threads zero": (["compare", "--threads", "0", *MICRO, "--out", "{results}"],
                     ["cpus_per_cell", "0"]),
    "hyperparameter nan": (["compare", "--set", "protonet.lr=nan", *MICRO, "--out", "{results}"],
                           ["protonet.lr", "nan"]),
    "budget of a huge time": (["compare", "--budget", "time:" + "9" * 400, *MICRO[2:-6],
                               "--out", "{results}"], ["budget"]),
}


def _fill(args: list[str], results: Path, tmp: Path) -> list[str]:
    filled = []
    for arg in args:
        if arg.startswith("toml:"):
            arg = _toml(tmp, arg.removeprefix("toml:"))
        filled.append(arg.format(results=results, tmp=tmp))
    return filled


def test_bad_inputs_give_one_line_and_leave_the_store_unchanged(results, tmp_path):
    """Each case in its own subprocess and folder (four at a time); the store is unchanged."""
    before = digest(results)

    def attempt(name: str) -> str | None:
        folder = tmp_path / hashlib.sha256(name.encode()).hexdigest()[:8]
        folder.mkdir()
        (folder / "afile").write_text("not a folder")
        args, words = BAD[name]
        result = cli(*_fill(args, results, folder), cwd=folder)
        try:
            one_line_error(result, *words)
            assert not (folder / "plots").exists()
        except AssertionError as error:
            return f"{name}: {error}"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = [problem for problem in pool.map(attempt, BAD) if problem]
    assert not problems, "\n".join(problems)
    assert digest(results) == before


def test_plot_of_a_store_without_finished_cells_writes_nothing(tmp_path):
    out = tmp_path / "failed"
    failed = cli("compare", "-a", "broken", *MICRO, "--out", str(out), "--no-progress",
                 "--no-report")
    assert failed.returncode == 1, failed.stderr
    result = cli("plot", str(out), "-o", str(tmp_path / "plots"))
    one_line_error(result, "nothing to plot")
    assert not (tmp_path / "plots").exists()


def test_a_bad_option_leaves_no_run_record(results, tmp_path):
    before = [run.id for run in Store.open_existing(results).runs()]
    result = cli("compare", "--backend", "ray", "--address", "not an address!", *MICRO,
                 "--out", str(results))
    one_line_error(result, "--address", "not an address!")
    with Store.open_existing(results) as store:
        assert [run.id for run in store.runs()] == before


def test_a_run_failing_before_its_first_cell_leaves_no_record(tmp_path, monkeypatch):
    from metabench.backends.local import LocalBackend

    def broken(self, job, on_result):
        raise MetabenchError("the backend gave up")

    monkeypatch.setattr(LocalBackend, "run", broken)
    with pytest.raises(MetabenchError, match="gave up"):
        metabench.compare(out=tmp_path, algorithms=["protonet"], plugins=["hardening_plugin"],
                          progress=False, **OPTIONS)
    with Store.open_existing(tmp_path) as store:
        assert store.runs() == []


def test_json_to_dash_goes_to_stdout(results, tmp_path):
    result = cli("leaderboard", str(results), "--format", "json", "-o", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.lstrip().startswith("[")
    assert not (tmp_path / "-").exists()


def test_output_files_get_the_umask_mode_and_their_own_title(results, tmp_path):
    previous = os.umask(0o022)
    try:
        target = tmp_path / "board.html"
        result = cli("leaderboard", str(results), "--format", "html", "-o", str(target))
        exported = cli("export", str(results), "-o", str(tmp_path / "all.csv"))
    finally:
        os.umask(previous)
    assert result.returncode == 0 and exported.returncode == 0, result.stderr + exported.stderr
    for path in (target, tmp_path / "all.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert "<title>metabench: board</title>" in target.read_text()
    run_board = next(results.glob("*/leaderboard.md"))
    assert stat.S_IMODE(run_board.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.csv", "board.html"]


def test_an_interrupted_export_keeps_the_previous_file(results, tmp_path):
    target = tmp_path / "episodes.csv"
    first = cli("export", str(results), "-o", str(target))
    assert first.returncode == 0, first.stderr
    previous = target.read_bytes()
    started = tmp_path / "started"
    environment = {**os.environ, "METABENCH_TEST_EXPORT_STARTED": str(started),
                   "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "metabench", "--plugin", "hardening_plugin",
                                "export", str(results), "--format", "stuck", "-o", str(target)],
                               env=environment, stderr=subprocess.PIPE, text=True,
                               # SIGINT as at a terminal, even where pytest runs in the background
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the export never started writing"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130 and "Traceback" not in stderr
    assert target.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episodes.csv", "started"]


# --- a locked store, leases ---------------------------------------------------------------------

class _Locker:
    """Takes an exclusive lock on the store when the first cell starts (a second writer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: sqlite3.Connection | None = None

    @metabench.hookimpl
    def cell_started(self, cell) -> None:
        if self.db is None:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        if self.db is not None:
            self.db.execute("ROLLBACK")
            self.db.close()


def test_a_store_locked_mid_run_loses_no_trained_cell(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METABENCH_STORE_WAIT", "0.5")
    out = tmp_path / "results"
    options = {**OPTIONS, "algorithms": ["protonet"], "plugins": ["hardening_plugin"]}
    metabench.compare(out=out, progress=False, **{**options, "algorithms": ["sleepy"]})
    locker = _Locker(out / "metabench.sqlite")
    get_plugin_manager().register(locker, name="locker")
    try:
        with pytest.raises(MetabenchError, match="locked"):
            metabench.compare(out=out, progress=False, **options)
    finally:
        locker.release()
        get_plugin_manager().unregister(locker)
    said = capsys.readouterr().err
    assert "kept in" in said and "--resume" in said
    pending = list((out / "metabench.sqlite.pending").rglob("*.json"))
    assert len(pending) == 1
    with Store.open_existing(out) as store:
        run = store.runs()[-1]
        assert store.cell_keys(run.id) == set()
    frame = metabench.compare(out=out, resume=f"{out}/{run.id}", progress=False, **options)
    assert "stored 1 cell(s) kept in side files" in capsys.readouterr().err
    assert len(frame) == 4 and not (out / "metabench.sqlite.pending").exists()
    with Store.open_existing(out) as store:
        assert store.run(run.id).status == "complete"


def _lease_holder(path: Path, run_id: str) -> int | None:
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
            row = db.execute("SELECT pid FROM leases WHERE run = ?", (run_id,)).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def test_a_second_resume_of_a_running_run_is_refused(tmp_path):
    out = tmp_path / "results"
    created = cli("compare", "-a", "sleepy", *MICRO, "--out", str(out), "--no-progress",
                  "--no-report")
    assert created.returncode == 0, created.stderr
    with Store.open_existing(out) as store:
        run_id = store.runs()[0].id
    flags = ["compare", "--resume", f"{out}/{run_id}", "--no-progress", "--no-report"]
    with sqlite3.connect(out / "metabench.sqlite") as db:  # forget the cell: resume trains it
        db.execute("DELETE FROM episodes")
        db.execute("DELETE FROM cells")
    environment = {**os.environ, "METABENCH_TEST_STEP_SLEEP": "3",
                   "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    first = subprocess.Popen([sys.executable, "-m", "metabench", "--plugin", "hardening_plugin",
                              *flags], env=environment, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _lease_holder(out / "metabench.sqlite", run_id) != first.pid:
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline, "the first resume never took the lease"
            time.sleep(0.1)
        with pytest.raises(MetabenchError, match=f"run {run_id} is being run by process "
                                                 f"{first.pid} on "):
            metabench.compare(out=out, resume=f"{out}/{run_id}", progress=False)
        _, stderr = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, stderr
    with Store.open_existing(out) as store:
        assert len(store.cell_keys(run_id)) == 1
        assert store.run(run_id).status == "complete"
    assert _lease_holder(out / "metabench.sqlite", run_id) is None


def test_a_stale_lease_is_taken_over(tmp_path):
    out = tmp_path / "results"
    frame = metabench.compare(out=out, algorithms=["protonet"], plugins=["hardening_plugin"],
                              progress=False, **OPTIONS)
    run_id = str(frame["run"].iloc[0])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    with Store.open_existing(out) as store:
        store.acquire_lease(run_id)
        store._db.execute("UPDATE leases SET pid = ?", (int(gone.stdout),))
        store._db.commit()
    metabench.compare(out=out, resume=f"{out}/{run_id}", progress=False)
    assert _lease_holder(out / "metabench.sqlite", run_id) is None


def test_a_live_lease_elsewhere_is_refused(tmp_path):
    out = tmp_path / "results"
    frame = metabench.compare(out=out, algorithms=["protonet"], plugins=["hardening_plugin"],
                              progress=False, **OPTIONS)
    run_id = str(frame["run"].iloc[0])
    with Store.open_existing(out) as store:
        store.acquire_lease(run_id)
        store._db.execute("UPDATE leases SET pid = 1")  # init: alive, not us
        store._db.commit()
    with pytest.raises(MetabenchError, match=f"run {run_id} is being run by process 1"):
        metabench.compare(out=out, resume=f"{out}/{run_id}", progress=False)


# --- meta-RL, tuning --------------------------------------------------------------------------

def test_rl_test_data_set_must_share_the_action_space(tmp_path):
    result = cli("compare", "-a", "random", "--datasets", "navigation2d", "--test-dataset",
                 "velocity1d", "--episodes", "2", "--budget", "episodes:2", "--out",
                 str(tmp_path / "r"))
    one_line_error(result, "velocity1d", "navigation2d", "actions of 1", "actions of 2")
    assert not (tmp_path / "r" / "metabench.sqlite").exists()


def test_a_resumed_tuning_refuses_other_trials(tmp_path):
    out = tmp_path / "results"
    tuned = metabench.tune(out=out, algorithms=["protonet"], plugins=["hardening_plugin"],
                           trials=1, trial_budget="episodes:2", progress=False,
                           **{k: v for k, v in OPTIONS.items() if k != "episodes"})
    for flag, value in (("--trials", "3"), ("--trial-budget", "episodes:3")):
        result = cli("tune", "--resume", tuned.tuning, "--out", str(out), flag, value)
        one_line_error(result, flag.removeprefix("--").replace("-", "_"), value)


def test_a_store_locked_before_the_run_is_one_line(results, tmp_path):
    holder = sqlite3.connect(results / "metabench.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = cli("compare", "-a", "protonet", *MICRO, "--out", str(results),
                     env={"METABENCH_STORE_WAIT": "1"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    one_line_error(result, "locked by another process", "METABENCH_STORE_WAIT")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files and folders")
def test_read_only_places_are_one_line(results, tmp_path):
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    store = frozen / "metabench.sqlite"
    store.write_bytes((results / "metabench.sqlite").read_bytes())
    store.chmod(0o444)
    frozen.chmod(0o555)
    try:
        one_line_error(cli("export", str(frozen)), "cannot write")
        one_line_error(cli("compare", "-a", "protonet", *MICRO, "--out", str(frozen)),
                       "cannot write results")
        one_line_error(cli("compare", "-a", "protonet", *MICRO, "--out", str(frozen / "new")),
                       "not writable")
    finally:
        frozen.chmod(0o755)
