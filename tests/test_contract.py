"""The plugin contract: strict, typed registration; reporters as export formats; the
library's own handling of SIGTERM; one place per fact."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import typing
from pathlib import Path

import pandas as pd
import pytest
from test_compare_kill import COLUMNS, TESTS, wait_for_cells
from test_compare_plugin import SLEEP_ENV, compare_plugin  # noqa: F401 (a fixture)
from test_plugins import assert_one_line_error, write_module

import metabench
from metabench import hookspecs, registry
from metabench.plugin_types import register_keywords
from metabench.plugins import get_plugin_manager
from metabench.store import Store

REPO = TESTS.parent
TINY = {"algorithms": ["protonet", "batched"], "datasets": "micro", "backbone": "flat",
        "shots": [1], "episodes": 10, "budget": "episodes:6", "val_episodes": 3,
        "val_points": 2, "progress": False}


# --- strict, typed registration ------------------------------------------------------------


def test_a_misspelt_register_keyword_is_a_one_line_error_on_the_command_line(
        run_cli, monkeypatch, tmp_path):
    write_module(tmp_path, "keyword_typo_plugin", """
        import metabench

        @metabench.hookimpl
        def register_algorithms(register):
            register("x", object, task_type={"regression"})
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_cli("--plugin", "keyword_typo_plugin", "plugins")
    assert result.code == 2
    assert_one_line_error(result.err)
    assert ("plugin 'keyword_typo_plugin' registered algorithm 'x' with unknown keyword 'task_type'; "
            "did you mean 'task_types'?") in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(("kind", "keywords"), [
    ("algorithm", ("task_types", "defaults", "description", "search_space", "variable_ways")),
    ("dataset", ("task_types", "description")),
    ("backbone", ("task_types", "description")),
    ("reporter", ("description", "suffix", "requires")),
])
def test_each_kind_accepts_the_keywords_of_its_register_protocol(kind, keywords):
    assert register_keywords(kind) == keywords


def test_a_keyword_of_another_kind_is_refused():
    class DefaultsOnABackbone:
        @metabench.hookimpl
        def register_backbones(self, register):
            register("tiny", object, defaults=1)

    manager = get_plugin_manager()
    manager.register(DefaultsOnABackbone(), name="wrong-kind")
    with pytest.raises(metabench.MetabenchError, match="backbone 'tiny' with unknown keyword 'defaults'"):
        registry.get_backbones()


def test_every_hook_parameter_has_a_real_type():
    hooks = [value for value in vars(hookspecs).values() if hasattr(value, "metabench_spec")]
    namespace = {**{name: getattr(metabench, name) for name in metabench.__all__},
                 "click": __import__("click")}
    for hook in hooks:
        hints = typing.get_type_hints(hook, globalns=namespace)
        for name, annotation in hints.items():
            assert annotation is not typing.Any, f"{hook.__name__}({name}) is typed Any"
    assert typing.get_type_hints(hookspecs.cell_finished, globalns=namespace)["result"] is \
        metabench.CellResult


# --- reporters are export formats -----------------------------------------------------------


class Tsv:
    """A plugin reporter, registered for one test."""

    @metabench.hookimpl
    def register_reporters(self, register):
        register("tsv", lambda frame, path: frame.to_csv(path, sep="\t", index=False),
                 description="tab-separated values")


@pytest.fixture
def stored(tmp_path):
    metabench.compare(out=tmp_path, **TINY)
    return tmp_path


@pytest.mark.usefixtures("compare_plugin")
def test_a_plugin_reporter_is_an_export_format(run_cli, stored):
    get_plugin_manager().register(Tsv(), name="tsv-plugin")
    result = run_cli("export", str(stored), "--format", "tsv")
    assert result.code == 0, result.err
    written = pd.read_csv(stored / "episodes.tsv", sep="\t")
    assert len(written) == 2 * 10 and "accuracy" in written


@pytest.mark.usefixtures("compare_plugin")
def test_an_unknown_format_lists_the_registered_ones(run_cli, stored):
    result = run_cli("export", str(stored), "--format", "xlsx")
    assert result.code == 2
    assert_one_line_error(result.err)
    for name in ("csv", "json", "latex", "md", "parquet"):
        assert name in result.err
    assert not list(stored.glob("episodes.*"))


@pytest.mark.usefixtures("compare_plugin")
def test_json_md_and_latex_exports_write_what_they_say(run_cli, stored):
    episodes = metabench.load_results(stored)
    for fmt in ("json", "md", "latex"):
        assert run_cli("export", str(stored), "--format", fmt).code == 0
    rows = json.loads((stored / "episodes.json").read_text())
    assert [(r["algorithm"], r["episode"], r["accuracy"], r["loss"]) for r in rows] == list(
        episodes[["algorithm", "episode", "accuracy", "loss"]].itertuples(index=False, name=None))
    assert all(r["mse"] is None for r in rows)
    markdown = (stored / "episodes.md").read_text().splitlines()
    assert markdown[0].startswith("| run | algorithm |") and len(markdown) == 2 + len(episodes)
    latex = (stored / "episodes.tex").read_text()
    assert latex.startswith("\\begin{tabular}") and "\\toprule" in latex
    assert latex.count("\\\\\n") == 1 + len(episodes)  # the header and one line per episode


def test_markdown_and_latex_escape_text_from_plugins(tmp_path):
    from metabench.reports.reporters import render_latex, render_markdown

    frame = pd.DataFrame({"algorithm": ["a|b <i>x</i>", "50%_&$"], "mean": [0.5, 0.25]})
    render_markdown(frame, tmp_path / "t.md")
    render_latex(frame, tmp_path / "t.tex")
    markdown = (tmp_path / "t.md").read_text()
    assert "a\\|b \\<i\\>x\\</i\\>" in markdown and "<i>" not in markdown
    assert "50\\%\\_\\&\\$" in (tmp_path / "t.tex").read_text()


# --- the algorithm protocol's episodes_per_step ------------------------------------------------


@pytest.mark.usefixtures("compare_plugin")
def test_an_invalid_episodes_per_step_fails_the_cell_with_its_value(tmp_path):
    from metabench_plugins.protonet import ProtoNet, ProtoNetConfig

    class Zero(ProtoNet):
        def __init__(self, setup, hparams):
            super().__init__(setup, hparams)
            self.episodes_per_step = 0

    class ZeroPlugin:
        @metabench.hookimpl
        def register_algorithms(self, register):
            register("zero", Zero, defaults=ProtoNetConfig())

    get_plugin_manager().register(ZeroPlugin(), name="zero-plugin")
    frame = metabench.compare(out=tmp_path, **{**TINY, "algorithms": ["zero"]})
    (reason,) = metabench.load_cells(tmp_path)["reason"]
    assert frame.attrs["failed"] and "episodes_per_step=0; expected a positive integer" in reason


# --- the library turns SIGTERM into an interruption ---------------------------------------------

SCRIPT = """
import sys
import metabench
options = {options!r}
try:
    metabench.compare(out=sys.argv[1], plugins=["test_compare_plugin"], **options)
except metabench.RunInterrupted as stop:
    print(f"stopped: {{stop.run}}", flush=True)
    sys.exit(130)
"""
KILL_OPTIONS = {"algorithms": ["protonet", "interrupter", "batched"], "datasets": "micro",
                "backbone": "flat", "shots": [1], "episodes": 10, "budget": "episodes:9",
                "val_episodes": 3, "val_points": 3, "progress": False}


@pytest.mark.usefixtures("compare_plugin")
def test_sigterm_interrupts_a_python_program_calling_compare_and_resume_completes_it(tmp_path):
    out = tmp_path / "stopped"
    env = {**os.environ, SLEEP_ENV: "1", "OMP_NUM_THREADS": "2",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    program = [sys.executable, "-c", SCRIPT.format(options=KILL_OPTIONS), str(out)]
    process = subprocess.Popen(program, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_cells(out / "metabench.sqlite", 1, process, limit_s=120)
        process.send_signal(signal.SIGTERM)  # the second cell is asleep in its first step
        stdout, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130 and stdout.decode().startswith("stopped: ")
    with Store.open_existing(out) as store:
        (run,) = store.runs()
        assert run.status == "interrupted" and len(store.cell_keys(run.id)) == 1

    resumed = metabench.compare(out=out, resume=True, **KILL_OPTIONS)
    reference = metabench.compare(out=tmp_path / "whole", **KILL_OPTIONS)
    with Store.open_existing(out) as store:
        assert store.runs()[0].status == "complete"
    pd.testing.assert_frame_equal(
        resumed[COLUMNS].sort_values(COLUMNS[:3]).reset_index(drop=True),
        reference[COLUMNS].sort_values(COLUMNS[:3]).reset_index(drop=True),
    )


def test_the_previous_sigterm_handler_is_restored():
    from metabench.workspace import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


# --- one place per fact ---------------------------------------------------------------------------

SOURCES = sorted([*(REPO / "metabench").rglob("*.py"), *(REPO / "plugins").rglob("*.py")])


def occurrences(pattern: str) -> list[str]:
    regex = re.compile(pattern)
    return [str(path.relative_to(REPO)) for path in SOURCES if regex.search(path.read_text())]


@pytest.mark.parametrize(("pattern", "home"), [
    (r"0x7FFF_FFFF_FFFF_FFFF", ["metabench/seeding.py"]),  # the 63-bit seed derivation
    (r"\"accuracy\" if|== \"accuracy\"", []),  # the metric of a task type, by hand
    (r"f\"\{.*\}w\{.*\}s\"", ["metabench/protocol.py"]),  # the setting label
    (r"\"train_episodes\", \"best_step\", \"device\"", []),  # cell columns listed by hand
    (r"getattr\(.*\"meta_batch_size\"", []),  # the runner reading a hyperparameter by name
])
def test_each_fact_is_written_in_one_place(pattern, home):
    assert occurrences(pattern) == home


def test_no_dead_public_names():
    assert not hasattr(metabench, "Protocol")
    from metabench import plugins

    assert not hasattr(plugins, "plugin_name_of")
    assert occurrences(r"^\s+task_types = frozenset") == []
    exported = set(metabench.__all__)
    assert {"Cell", "CellResult", "EpisodeRow", "RegisterAlgorithm", "MachineInfo"} <= exported


def test_the_store_columns_derive_from_the_row_records(tmp_path):
    from metabench.records import CELL_COLUMNS, EPISODE_COLUMNS

    with Store.open(tmp_path) as store:
        database = store._db
        cells = [row[1] for row in database.execute("PRAGMA table_info(cells)")]
        episodes = [row[1] for row in database.execute("PRAGMA table_info(episodes)")]
    assert cells == ["run", *CELL_COLUMNS] and episodes == ["run", "cell", *EPISODE_COLUMNS]


def test_lint_is_configured_for_the_type_checker():
    tox = (REPO / "tox.ini").read_text()
    assert "mypy" in tox.split("[testenv:lint]")[1]
    assert "tox -e lint" in (REPO / ".ci" / "run").read_text()
    assert Path(REPO / "pyproject.toml").read_text().count("[tool.mypy]") == 1
