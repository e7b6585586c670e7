"""The HTML report: one self-contained file (inline CSS, figures as ``data:`` URIs, no scripts)
with the leaderboard, plots, protocol, environment, hyperparameters and failures of a
:class:`metabench.reports.data.ReportData`; and the ``html`` export format.

Every string that comes from a plugin, a config or an error is escaped by jinja2's autoescape.
"""

from __future__ import annotations

import base64
import io
import json
import math
import numbers
import re
import shlex
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from matplotlib.figure import Figure

from metabench import registry
from metabench.files import write_text_atomic
from metabench.forked import map_shared
from metabench.hookspecs import hookimpl
from metabench.metrics import metric_named
from metabench.plugin_types import RegisterReporter
from metabench.reports.data import ReportData, setting_of
from metabench.reports.leaderboard import legend
from metabench.reports.per_source import per_source_views
from metabench.reports.plots import draw
from metabench.reports.reporters import displayed
from metabench.reports.terminal import number
from metabench.rerun import compare_command

TEMPLATE = "report.html.j2"
FIGURE_DPI = 110
# Plot kinds shown first, in this order; any other kind follows in the order drawn.
PLOT_ORDER = ("scores", "pareto", "curves", "costs", "cd")
_COLOR = re.compile(r"#[0-9a-fA-F]{3,8}")

# Rows of the protocol table: (config key, label).
_PROTOCOL = (("algorithms", "algorithms"), ("datasets", "data sets"), ("ways", "ways"),
             ("shots", "shots"), ("queries", "queries per class"), ("episodes", "test episodes"),
             ("seeds", "seeds"), ("budget", "budget"), ("backbone", "backbone"),
             ("val_episodes", "val episodes"), ("val_points", "val points"),
             ("confidence", "confidence"), ("alpha", "alpha"), ("margin", "margin"),
             ("device", "device (asked)"))
# Rows of the environment table: (environment key, label).
_ENVIRONMENT = (("metabench", "metabench"), ("git_commit", "git commit"), ("torch", "torch"),
                ("numpy", "numpy"), ("cuda", "CUDA"), ("python", "python"), ("device", "device"),
                ("device_name", "device name"), ("cpu", "cpu"), ("cpu_count", "cpu count"),
                ("torch_threads", "torch threads"), ("platform", "platform"))


# --- the report ---------------------------------------------------------------------------------

def write_report(data: ReportData, path: str | Path,
                 figures: Mapping[str, Figure] | None = None) -> Path:
    """Write the self-contained HTML report of ``data`` to ``path`` (atomically).

    ``figures`` default to every registered plot that applies (:func:`drawn_figure_uris`).
    """
    uris = drawn_figure_uris(data) if figures is None else figure_uris(figures)
    return write_text(Path(path), _render(data, uris), "the report")


def render_report(data: ReportData, figures: Mapping[str, Figure] | None = None) -> str:
    """The report as one HTML string (no figures unless given)."""
    return _render(data, figure_uris(figures or {}))


def _render(data: ReportData, uris: Mapping[str, str]) -> str:
    return _environment().get_template(TEMPLATE).render(**report_context(data, uris))


def report_context(data: ReportData, uris: Mapping[str, str]) -> dict[str, Any]:
    """What the template shows, as plain strings, lists and dicts; ``uris`` are the figures
    as PNG ``data:`` URIs by plot kind."""
    runs = list(data.runs)
    datasets = list(dict.fromkeys(data.table["dataset"])) if len(data.table) else []
    return {
        "title": f"metabench report: {', '.join(map(str, datasets)) or 'no results'}",
        "runs": [run_view(run, data) for run in runs],
        "leaderboards": leaderboard_views(data),
        "legend": legend(data.confidence, data.margin, data.alpha),
        "notes": list(data.notes),
        "ranks": data.ranks.describe() if data.ranks is not None else "",
        "per_source": per_source_views(data),
        "figures": figure_views(uris),
        "hparams": hparam_views(data),
        "problems": problem_views(data.cells),
    }


@cache
def _environment() -> jinja2.Environment:
    """The jinja2 environment: the package's templates, autoescape on, strict undefined."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("metabench", "reports/templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )


# --- leaderboard --------------------------------------------------------------------------------

def leaderboard_views(data: ReportData) -> list[dict[str, Any]]:
    """Per data set, its leaderboard tables (one per protocol group)."""
    sections: dict[str, list[dict[str, Any]]] = {}
    if data.table.empty:
        return []
    for _, group in data.table.groupby("group", sort=False):
        first = group.iloc[0]
        sections.setdefault(str(first["dataset"]), []).append(_group_view(group, data.colors))
    return [{"dataset": name, "tables": tables} for name, tables in sections.items()]


def _group_view(group: pd.DataFrame, colors: Mapping[str, str]) -> dict[str, Any]:
    first = group.iloc[0]
    setting, name = str(first["setting"]), str(first["group"])
    detail = name[len(setting):].strip() if name.startswith(setting) else name
    rows = group.sort_values("rank", kind="stable").to_dict("records")
    return {
        "setting": setting, "detail": detail, "metric": str(first["metric"]),
        "seeds": bool(group["seed_ci"].notna().any()) if "seed_ci" in group else False,
        "published": _any_text(group, "published"), "protocol": _any_text(group, "protocol"),
        "hparams": _any_text(group, "hparams"), "curve": _any_text(group, "curve"),
        "rows": [leaderboard_row(row, colors) for row in rows],
    }


def leaderboard_row(row: Mapping[Any, Any], colors: Mapping[str, str]) -> dict[str, Any]:
    """One leaderboard row as display strings."""
    metric = metric_named(str(row["metric"]))
    seed_ci = number(row.get("seed_ci"))
    mark = str(row.get("mark") or "")
    return {
        "algorithm": str(row["algorithm"]), "color": _color(colors.get(str(row["algorithm"]))),
        "score": metric.format_score(float(row["mean"]), float(row["ci"])), "mark": mark,
        "best": mark == "",
        "seed": "" if math.isnan(seed_ci) else metric.format_score(number(row.get("seed_mean")), seed_ci),
        "rank": _fmt(row.get("rank"), "{:g}"), "steps": _fmt(row.get("steps"), "{:.0f}"),
        "train_s": _fmt(row.get("train_time_s"), "{:.1f}"), "adapt_ms": _fmt(row.get("adapt_ms"), "{:.2f}"),
        "peak_mb": _fmt(row.get("peak_mb"), "{:.0f}"), "budget": str(row.get("budget") or ""),
        "run": str(row.get("run") or ""), "published": str(row.get("published") or ""),
        "curve": str(row.get("curve") or ""),
        "protocol": str(row.get("protocol") or ""), "hparams": str(row.get("hparams") or ""),
    }


def _any_text(group: pd.DataFrame, column: str) -> bool:
    return column in group and bool(group[column].fillna("").astype(str).str.len().any())


def _fmt(value: Any, pattern: str) -> str:
    value = number(value)
    return "–" if math.isnan(value) else pattern.format(value)


def _color(value: str | None) -> str:
    """A CSS colour only when it is a plain hex colour (it lands in a style attribute)."""
    return value if value and _COLOR.fullmatch(value) else "#888888"


# --- figures ------------------------------------------------------------------------------------

def figure_views(uris: Mapping[str, str]) -> list[dict[str, str]]:
    """Each figure's PNG ``data:`` URI with its caption (the plot kind's description), in
    the plots' order."""
    descriptions = _plot_descriptions()
    names = sorted(uris, key=_display_rank)
    return [{"name": name, "caption": descriptions.get(name, ""), "uri": uris[name]}
            for name in names]


def drawn_figure_uris(data: ReportData) -> dict[str, str]:
    """Every registered plot that applies to ``data``, drawn and encoded; the kinds are
    shared with a forked process where that is safe (:mod:`metabench.forked`): the
    figures are a report's largest cost."""
    kinds = sorted(registry.get_plots(), key=_display_rank)  # the larger figures first
    uris = map_shared(lambda kind: _kind_uri(data, kind), kinds)
    return {kind: uri for kind, uri in zip(kinds, uris, strict=True) if uri is not None}


def _kind_uri(data: ReportData, kind: str) -> str | None:
    figure = draw(data, [kind]).get(kind)
    return None if figure is None else figure_uri(figure)


def _display_rank(kind: str) -> int:
    return PLOT_ORDER.index(kind) if kind in PLOT_ORDER else len(PLOT_ORDER)


def figure_uris(figures: Mapping[str, Figure]) -> dict[str, str]:
    """Figures as PNG ``data:`` URIs by name."""
    return {name: figure_uri(figure) for name, figure in figures.items()}


def figure_uri(figure: Figure) -> str:
    """A figure as an inline ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    # A figure with a layout engine already fits its contents; trimming it to the tight box
    # would draw it twice.
    tight = None if figure.get_layout_engine() is not None else "tight"
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches=tight)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _plot_descriptions() -> dict[str, str]:
    return {name: entry.description for name, entry in registry.get_plots().items()}


# --- runs: protocol, environment, command -------------------------------------------------------

def run_view(run: str, data: ReportData) -> dict[str, Any]:
    """A run's id, status, protocol and environment rows, and its ``metabench compare`` command."""
    record = data.runs[run]
    config, environment = record.config or {}, record.environment or {}
    plugins = environment.get("plugins") or {}
    return {
        "id": run, "created": str(record.created), "status": str(record.status),
        "protocol": [(label, _text(config.get(key), "default")) for key, label in _PROTOCOL
                     if key in config],
        "environment": [(label, _text(environment.get(key))) for key, label in _ENVIRONMENT
                        if key in environment],
        "plugins": ", ".join(f"{name} {version}" for name, version in sorted(plugins.items()))
        if isinstance(plugins, Mapping) else _text(plugins),
        "command": command_parts(compare_command(config)),
    }


def command_parts(command: str) -> list[str]:
    """A shell command split where a line may wrap: each option with its value stays whole;
    the parts joined by spaces are the command again."""
    parts: list[str] = []
    for word in (shlex.quote(word) for word in shlex.split(command)):
        if parts and parts[-1].startswith("-") and " " not in parts[-1] and not word.startswith("-"):
            parts[-1] += f" {word}"
        else:
            parts.append(word)
    return parts


def _text(value: Any, missing: str = "–") -> str:
    """A config or environment value as text: lists joined, missing as ``missing``."""
    if value is None or value == "":
        return missing
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --- hyperparameters and problems ---------------------------------------------------------------

def hparam_views(data: ReportData) -> list[dict[str, Any]]:
    """Per algorithm, a table of its hyperparameters; a value that differs between cells lists
    each value with the settings it was used in."""
    cells = data.cells
    if cells.empty or "hparams" not in cells:
        return []
    several_runs = cells["run"].nunique() > 1
    views = []
    for algorithm, frame in cells.groupby("algorithm", sort=True):
        values: dict[str, dict[str, list[str]]] = {}
        for row in frame.to_dict("records"):
            where = _cell_label(row, several_runs)
            for name, value in (row.get("hparams") or {}).items():
                values.setdefault(str(name), {}).setdefault(_value(value), []).append(where)
        views.append({"algorithm": str(algorithm), "color": _color(data.colors.get(str(algorithm))),
                      "rows": [(name, _distinct(seen)) for name, seen in values.items()]})
    return views


def _distinct(seen: Mapping[str, list[str]]) -> str:
    if len(seen) == 1:
        return next(iter(seen))
    return "; ".join(f"{value} ({', '.join(dict.fromkeys(where))})" for value, where in seen.items())


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def _cell_label(row: Mapping[Any, Any], several_runs: bool) -> str:
    label = setting_of(row)
    return f"{label} · {row['run']}" if several_runs else label


def problem_views(cells: pd.DataFrame) -> list[dict[str, str]]:
    """The failed and skipped cells with their reasons."""
    if cells.empty:
        return []
    bad = cells[cells["status"] != "ok"]
    return [{"status": str(row["status"]), "algorithm": str(row["algorithm"]),
             "setting": _cell_label(row, False), "seed": str(row["seed"]), "run": str(row["run"]),
             "reason": str(row.get("reason") or "")} for row in bad.to_dict("records")]


# --- writing ------------------------------------------------------------------------------------

def write_text(path: Path, text: str, what: str = "") -> Path:
    """Write ``text`` atomically (:func:`metabench.files.write_text_atomic`); a folder that
    cannot be written is a one-line :class:`MetabenchError` naming the path."""
    return write_text_atomic(path, text, what)


# --- the html export format ---------------------------------------------------------------------

_TABLE_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 1.5rem; color: #1f2328; }
table { border-collapse: collapse; font-size: 0.85rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
tbody tr:nth-child(even) { background: #f6f8fa; }
td.num { text-align: right; }
p.note { color: #57606a; font-size: 0.85rem; margin: 0.3rem 0; max-width: 60rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
       color: #1f2328; overflow-wrap: anywhere; }
@page { size: A4; margin: 15mm; }
</style></head>
<body>
<table>
<thead><tr>{% for column in columns %}<th>{{ column }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in rows %}<tr>{% for cell, numeric in row %}
<td{% if numeric %} class="num"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
{% for text, code in notes %}<p class="note">{{ text }}{% if code %}<code>{{ code }}</code>{% endif %}</p>
{% endfor %}</body></html>
"""


def render_html_table(frame: pd.DataFrame, path: str | Path) -> None:
    """A small self-contained HTML page: the frame's displayed columns (``attrs["display"]``)
    as a table, and its ``attrs["notes"]`` lines under it."""
    notes = [_note(str(line)) for line in _lines(frame.attrs.get("notes", []))]
    shown = displayed(frame)
    rows = [[_table_cell(value) for value in row] for row in shown.itertuples(index=False)]
    text = _environment().from_string(_TABLE_PAGE).render(
        title=f"metabench: {Path(path).stem}", columns=[str(c) for c in shown.columns],
        rows=rows, notes=notes)
    write_text(Path(path), text)


def _note(line: str) -> tuple[str, str]:
    """A note as (text, code): a ``reproduce: COMMAND`` line shows its command as code."""
    label, sep, command = line.partition("reproduce: ")
    return ("reproduce: ", command) if sep and not label else (line, "")


def _table_cell(value: Any) -> tuple[str, bool]:
    """A cell's text and whether it is a number (right-aligned)."""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str), False
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "", False
    if isinstance(value, bool):
        return str(value), False
    if isinstance(value, numbers.Integral):
        return str(value), True
    if isinstance(value, numbers.Real):
        return f"{float(value):.6g}", True
    return str(value), False


def _lines(notes: Any) -> Iterable[Any]:
    return [notes] if isinstance(notes, str) else list(notes or ())


@hookimpl
def register_reporters(register: RegisterReporter) -> None:
    register("html", render_html_table, description="self-contained HTML table")
