"""Plots of a report: each kind registered through ``register_plots`` (the built-ins too),
drawn from a :class:`metabench.reports.data.ReportData` and saved as PNG and SVG."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

# Figures are built with matplotlib.figure.Figure, never pyplot: no backend is chosen or
# changed (a notebook keeps its own) and no window or global figure state is involved.
from matplotlib import rc_context
from matplotlib.figure import Figure

from metabench import registry
from metabench.errors import MetabenchError, unknown_name_error
from metabench.files import atomic_path
from metabench.forked import map_shared
from metabench.hookspecs import hookimpl
from metabench.plugin_types import RegisterPlot
from metabench.reports import per_source, plot_kinds
from metabench.reports.data import ReportData

FORMATS = ("png", "svg")
DPI = 150


def draw(data: ReportData, kinds: Sequence[str] | None = None) -> dict[str, Figure]:
    """The figures of the registered plot kinds (or ``kinds``) that apply to ``data``."""
    plots = _registered(kinds)
    figures = {}
    for name in kinds or plots:
        figure = plots[name].factory(data)
        if figure is not None:
            figures[name] = figure
    return figures


def _registered(kinds: Sequence[str] | None) -> dict[str, registry.Entry]:
    """The registered plots; a name in ``kinds`` that is not one is a one-line error."""
    plots = registry.get_plots()
    for kind in kinds or ():
        if kind not in plots:
            raise unknown_name_error("plot kind", kind, plots)
    return plots


def save_plots(data: ReportData, folder: str | Path, kinds: Sequence[str] | None = None,
               formats: Sequence[str] = FORMATS) -> list[Path]:
    """Draw and write each plot as ``FOLDER/KIND.png`` and ``.svg``; returns the files.

    The kinds are drawn in two processes where that is safe (:mod:`metabench.forked`).
    Nothing to draw (no finished cell, or a named kind that does not apply) is an error, and
    then no folder is created."""
    folder = Path(folder)
    if data.table.empty:
        raise MetabenchError("no finished cell matches: nothing to plot")
    names = list(kinds or _registered(kinds))
    rendered = map_shared(lambda kind: _rendered(data, kind, formats), names)
    files = {name: by_format for name, by_format in zip(names, rendered, strict=True)
             if by_format is not None}
    empty = [kind for kind in kinds or () if kind not in files]
    if empty or not files:
        raise MetabenchError(f"plot kind '{(empty or ['any'])[0]}' draws nothing for these "
                             "results (e.g. cd needs two or more algorithms in a group)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MetabenchError(f"cannot write plots to {folder}: {error.strerror or error}") from None
    if not folder.is_dir():
        raise MetabenchError(f"cannot write plots to {folder}: it is not a folder")
    written = []
    for name, by_format in files.items():
        for fmt, content in by_format.items():
            path = folder / f"{name}.{fmt}"
            with atomic_path(path, "a plot") as temporary:
                temporary.write_bytes(content)
            written.append(path)
    return written


def _rendered(data: ReportData, kind: str, formats: Sequence[str]) -> dict[str, bytes] | None:
    """Plot ``kind`` as file contents by format, or None where it draws nothing."""
    figure = draw(data, [kind]).get(kind)
    if figure is None:
        return None
    return {fmt: figure_bytes(figure, fmt) for fmt in formats}


def figure_bytes(figure: Figure, fmt: str) -> bytes:
    """A figure as the contents of a ``fmt`` (png, svg, pdf) file: the same bytes for the
    same results (no creation date, SVG element ids from a fixed salt rather than a random
    one)."""
    buffer = io.BytesIO()
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    with rc_context({"svg.hashsalt": "metabench"}):
        figure.savefig(buffer, dpi=DPI, bbox_inches="tight", format=fmt, metadata=metadata)
    return buffer.getvalue()


@hookimpl
def register_plots(register: RegisterPlot) -> None:
    """The built-in plots (each uses only the public ReportData)."""
    register("scores", plot_kinds.scores_figure,
             description="Test score with its interval per algorithm, one panel per setting; the best marked")
    register("pareto", plot_kinds.pareto_figure,
             description="Test score against meta-training time per algorithm and setting, "
                         "with the Pareto front of faster and better")
    register("curves", plot_kinds.curves_figure,
             description="Learning curves: validation score against training episodes and "
                         "seconds, one line per algorithm (mean over seeds)")
    register("adaptation", plot_kinds.adaptation_figure,
             description="rl adaptation curves (curve_steps): test score after 0, 1, ... "
                         "adaptation steps, one line per algorithm")
    register("costs", plot_kinds.costs_figure,
             description="Peak memory and adaptation time per test episode, per algorithm and setting")
    register("episodes", per_source.episodes_figure,
             description="Ways and support-set sizes of any-way any-shot test episodes, per "
                         "test source (docs/multisource.md)")
    register("cd", plot_kinds.cd_figure,
             description="Critical-difference diagram of average ranks across settings (Demšar 2006)")
