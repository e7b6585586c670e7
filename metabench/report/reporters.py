"""Built-in output formats for result tables: csv, json, md and latex."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metabench.hookspecs import hookimpl


def render_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Comma-separated values, one row per table row."""
    frame.to_csv(path, index=False)


def render_json(frame: pd.DataFrame, path: str | Path) -> None:
    """A JSON array of row objects."""
    frame.to_json(path, orient="records", indent=2)


def render_markdown(frame: pd.DataFrame, path: str | Path) -> None:
    """A GitHub-flavoured Markdown table."""
    Path(path).write_text(markdown_table(frame) + "\n")


def render_latex(frame: pd.DataFrame, path: str | Path) -> None:
    """A LaTeX tabular (booktabs)."""
    styler = frame.style.hide(axis="index").format(precision=2)
    Path(path).write_text(styler.to_latex(hrules=True))


def markdown_table(frame: pd.DataFrame) -> str:
    """Render a frame as a Markdown table without extra dependencies."""
    header = [str(c) for c in frame.columns]
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


@hookimpl
def register_reporters(register) -> None:
    register("csv", render_csv, description="comma-separated values")
    register("json", render_json, description="JSON array of rows")
    register("md", render_markdown, description="Markdown table")
    register("latex", render_latex, description="LaTeX tabular (booktabs)")
