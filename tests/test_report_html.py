"""The HTML report: contents, escaping of plugin and error text, self-containment, atomic
writes; and the ``html`` export format."""

from __future__ import annotations

import importlib.resources
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from markupsafe import escape
from matplotlib.figure import Figure

import metabench
from metabench import registry
from metabench.errors import MetabenchError
from metabench.plugins import get_plugin_manager, reset_plugin_manager
from metabench.reports.data import ReportData
from metabench.reports.html import command_parts, leaderboard_row, render_html_table, write_report
from metabench.reports.leaderboard import build_report_data
from metabench.reports.publish import leaderboard_frame, write_table
from metabench.rerun import compare_command
from metabench.results import export
from metabench_plugins.protonet import ProtoNet, ProtoNetConfig

XSS = "<script>alert(1)</script>"
BAD_REASON = "bad <b>input</b>"
ALGORITHMS = ["protonet", XSS, "bad", "regonly"]
SHOTS = [1, 2]
TINY = {
    "datasets": "micro", "backbone": "flat", "shots": SHOTS, "episodes": 12,
    "budget": "episodes:12", "val_episodes": 4, "val_points": 3, "progress": False,
}


class Hostile(ProtoNet):
    """ProtoNet registered under a name that is an HTML tag."""


class BadInput(ProtoNet):
    """Fails in its first training step with markup in its message."""

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        raise ValueError(BAD_REASON)


class HostilePlugin:
    """A plugin whose names and errors carry HTML."""

    @metabench.hookimpl
    def register_algorithms(self, register: metabench.RegisterAlgorithm) -> None:
        register(XSS, Hostile, task_types={"classification"}, defaults=ProtoNetConfig())
        register("bad", BadInput, task_types={"classification"}, defaults=ProtoNetConfig())
        register("regonly", ProtoNet, task_types={"regression"}, defaults=ProtoNetConfig())


def run_tiny_comparison(out: Path) -> Path:
    """The tiny plugin data set, two working algorithms, a failing and a skipped one."""
    import test_compare_plugin

    manager = get_plugin_manager()
    if manager.get_plugin("test_compare_plugin") is None:
        manager.register(test_compare_plugin, name="test_compare_plugin")
    if manager.get_plugin("hostile") is None:
        manager.register(HostilePlugin(), name="hostile")
    frame = metabench.compare(algorithms=ALGORITHMS, out=out, **TINY)
    assert len(frame.attrs["failed"]) == len(SHOTS)
    return out


def small_figure() -> Figure:
    """A small figure, so that a report always has at least one image."""
    figure = Figure(figsize=(3, 2))
    figure.add_subplot().plot([0, 1, 2], [1, 0, 1])
    return figure


class Page(HTMLParser):
    """Tags, tables (class, caption, body rows as cell texts) and <pre> texts of a page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: list[dict[str, Any]] = []
        self.pres: list[str] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._where: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append({"class": dict(attrs).get("class") or "", "caption": "", "rows": []})
        elif tag == "tr" and "tbody" in self._where:
            self._row = []
            self.tables[-1]["rows"].append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        if tag in ("caption", "tbody", "pre"):
            self._where.append(tag)
            if tag == "pre":
                self.pres.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr":
            self._row = None
        if tag in ("caption", "tbody", "pre") and self._where and self._where[-1] == tag:
            self._where.pop()

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._where and self._where[-1] == "caption":
            self.tables[-1]["caption"] += data
        if self._where and self._where[-1] == "pre":
            self.pres[-1] += data

    def tables_of(self, kind: str) -> list[dict[str, Any]]:
        return [table for table in self.tables if kind in table["class"].split()]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny comparison shared by the tests of this module."""
    reset_plugin_manager()
    try:
        return run_tiny_comparison(tmp_path_factory.mktemp("results"))
    finally:
        reset_plugin_manager()


@pytest.fixture(scope="module")
def data(results: Path) -> ReportData:
    return build_report_data([results])


@pytest.fixture(scope="module")
def report(data: ReportData, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Page]:
    path = write_report(data, tmp_path_factory.mktemp("report") / "report.html",
                        figures={"demo": small_figure()})
    text = path.read_text(encoding="utf-8")
    return text, Page(text)


def test_one_leaderboard_row_per_algorithm_and_setting(report, data):
    _, page = report
    boards = page.tables_of("leaderboard")
    assert len(boards) == len(SHOTS)
    for board, shots in zip(boards, SHOTS, strict=True):
        assert f"micro 5w{shots}s" in board["caption"]
        assert sorted(row[0] for row in board["rows"]) == sorted(["protonet", XSS])
        assert all("%" in row[1] for row in board["rows"])
    assert len(data.table) == 2 * len(SHOTS)


def test_report_has_protocol_command_and_hyperparameters(report, data):
    text, page = report
    (run, record), = data.runs.items()
    assert page.pres == [compare_command(record.config)]
    assert "--episodes 12" in page.pres[0] and "--budget episodes:12" in page.pres[0]
    protocol, environment = page.tables_of("keyvalue")
    assert ["test episodes", "12"] in protocol["rows"] and ["val episodes", "4"] in protocol["rows"]
    assert ["metabench", record.environment["metabench"]] in environment["rows"]
    assert ["python", record.environment["python"]] in environment["rows"]
    hparams = {table["caption"].strip(): dict(table["rows"]) for table in page.tables_of("hparams-table")}
    assert set(hparams) == set(ALGORITHMS)
    assert hparams["protonet"]["lr"] == "0.001"
    assert run in text and "average ranks over 2 settings" in text


def test_failed_and_skipped_cells_are_listed_escaped(report):
    text, page = report
    (problems,) = page.tables_of("problems")
    by_algorithm = {row[1]: row for row in problems["rows"]}
    assert len(problems["rows"]) == 2 * len(SHOTS)
    assert by_algorithm["bad"][0] == "failed" and BAD_REASON in by_algorithm["bad"][-1]
    assert by_algorithm["regonly"][0] == "skipped" and "regression" in by_algorithm["regonly"][-1]
    assert "bad &lt;b&gt;input&lt;/b&gt;" in text and "<b>input" not in text
    assert "b" not in {tag for tag, _ in page.tags}


def test_plugin_names_are_escaped_never_markup(report):
    text, page = report
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text.lower()
    assert {"script", "link", "iframe", "object"}.isdisjoint(tag for tag, _ in page.tags)


def test_report_is_self_contained(report):
    _, page = report
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert images and all((attrs["src"] or "").startswith("data:image/png;base64,") for attrs in images)
    for _, attrs in page.tags:
        for name in ("src", "href"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("http://", "https://", "//")), value


def test_report_prints_on_a4_without_scripts(report):
    text, _ = report
    assert "@page { size: A4; margin: 15mm; }" in text and "@media print" in text
    assert "<style>" in text and "javascript:" not in text.lower() and " on" + "load=" not in text


def test_several_seeds_show_the_seed_interval():
    row = {"algorithm": "maml", "metric": "accuracy", "mean": 0.5, "ci": 0.01, "seed_mean": 0.5,
           "seed_ci": 0.04, "mark": "*", "rank": 2.0, "steps": 10.0, "train_time_s": 1.25,
           "adapt_ms": 3.5, "peak_mb": float("nan"), "budget": "episodes:10", "run": "r"}
    view = leaderboard_row(row, {"maml": "#1f77b4"})
    assert (view["score"], view["seed"], view["mark"], view["best"]) == ("50.00 ± 1.00 %",
                                                                        "50.00 ± 4.00 %", "*", False)
    assert (view["rank"], view["train_s"], view["peak_mb"]) == ("2", "1.2", "–")
    assert leaderboard_row({**row, "seed_ci": float("nan")}, {"maml": "red;x"})["seed"] == ""
    assert leaderboard_row(row, {"maml": "red;} body {x"})["color"] == "#888888"


def test_command_parts_keep_options_whole():
    command = compare_command({"algorithms": ["maml", "a b"], "shots": [1, 5], "download": True,
                               "hparams": {"maml": {"inner_lr": 0.4}}})
    parts = command_parts(command)
    assert " ".join(parts) == command
    assert parts[:3] == ["metabench", "compare", "--algorithms 'maml,a b'"]
    assert "--set maml.inner_lr=0.4" in parts and parts[-1] == "--download"


def test_default_figures_and_rewrite(data, tmp_path):
    path = write_report(data, tmp_path / "out" / "report.html")
    first = path.read_text(encoding="utf-8")
    assert first.startswith("<!DOCTYPE html>") and len(Page(first).tables_of("leaderboard")) == 2
    assert write_report(data, path, figures={}) == path
    assert "No plots were drawn" in path.read_text(encoding="utf-8")
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]


def test_unwritable_folder_is_one_line_and_leaves_no_file(data, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    target = blocker / "reports" / "report.html"
    with pytest.raises(MetabenchError) as error:
        write_report(data, target, figures={})
    message = str(error.value)
    assert "\n" not in message and str(target) in message
    assert sorted(tmp_path.iterdir()) == [blocker] and blocker.read_text() == "not a folder"


def test_replace_failure_leaves_no_temporary_file(data, tmp_path):
    folder = tmp_path / "report.html"
    folder.mkdir()  # a folder where the file should go: the final rename fails
    with pytest.raises(MetabenchError, match="cannot write the report to"):
        write_report(data, folder, figures={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"] and not any(folder.iterdir())


def test_template_is_package_data():
    template = importlib.resources.files("metabench") / "reports" / "templates" / "report.html.j2"
    assert template.is_file()


def test_html_reporter_writes_an_escaped_table(tmp_path):
    assert "html" in registry.get_reporters()
    frame = pd.DataFrame({"algorithm": [XSS, "protonet"], "accuracy": [0.5, float("nan")],
                          "hparams": [{"lr": 0.1}, {}], "hidden": ["x", "y"]})
    frame.attrs["notes"] = ["one <i>note</i>", "reproduce: metabench compare --algorithms '<i>'"]
    frame.attrs["display"] = ["algorithm", "accuracy", "hparams"]
    path = tmp_path / "table.html"
    render_html_table(frame, path)
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    (table,) = page.tables
    assert table["rows"] == [[XSS, "0.5", '{"lr": 0.1}'], ["protonet", "", "{}"]]
    assert "&lt;script&gt;" in text and "<script" not in text and "one &lt;i&gt;note&lt;/i&gt;" in text
    assert "<code>metabench compare --algorithms &#39;&lt;i&gt;&#39;</code>" in text
    assert "i" not in {tag for tag, _ in page.tags} and "hidden" not in text


def test_leaderboard_as_html(data, tmp_path):
    path = write_table(leaderboard_frame(data), "html", tmp_path / "leaderboard.html")
    text = path.read_text(encoding="utf-8")
    (table,) = Page(text).tables
    assert len(table["rows"]) == len(data.table) and "<script" not in text
    command = compare_command(next(iter(data.runs.values())).config)
    assert f"reproduce: <code>{escape(command)}</code>" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboard.html"]


def test_export_format_html(results, tmp_path):
    target = export(results, fmt="html", output=tmp_path / "cells.html", table="cells")
    page = Page(target.read_text(encoding="utf-8"))
    assert len(page.tables[0]["rows"]) == len(ALGORITHMS) * len(SHOTS)
    assert "script" not in {tag for tag, _ in page.tags}

