"""Built-in output formats for result tables: csv, parquet, json, md and latex.

They register through ``register_reporters`` exactly as a plugin's format does, and every
registered format is accepted by ``metabench export --format``. Text from plugins and
configs (algorithm names, failure reasons) is escaped for the format it lands in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from metabench.hookspecs import hookimpl
from metabench.plugin_types import RegisterReporter


def render_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Comma-separated values, one row per table row."""
    frame.to_csv(path, index=False)


def render_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    """Apache Parquet (needs pyarrow)."""
    frame.to_parquet(path, index=False)


def render_json(frame: pd.DataFrame, path: str | Path) -> None:
    """A JSON array of row objects; numbers keep every digit, missing values are null."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    Path(path).write_text(json.dumps(rows, indent=2, default=str) + "\n")


def render_markdown(frame: pd.DataFrame, path: str | Path) -> None:
    """A GitHub-flavoured Markdown table, with the frame's ``attrs["notes"]`` lines under it."""
    notes = [f"- {_markdown_note(line)}" for line in frame.attrs.get("notes", [])]
    frame = displayed(frame)
    Path(path).write_text("\n".join([markdown_table(frame), *(["", *notes] if notes else [])]) + "\n")


def render_latex(frame: pd.DataFrame, path: str | Path) -> None:
    """A LaTeX tabular (booktabs), special characters escaped."""
    styler = displayed(frame).style.hide(axis="index").format(precision=2, escape="latex", na_rep="--")
    styler = styler.format_index(escape="latex", axis="columns")
    Path(path).write_text(styler.to_latex(hrules=True))


def displayed(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns a text format shows: ``attrs["display"]`` when the frame names them."""
    columns = [c for c in frame.attrs.get("display", []) if c in frame]
    return frame[columns] if columns else frame


def markdown_table(frame: pd.DataFrame) -> str:
    """Render a frame as a Markdown table without extra dependencies."""
    header = [_markdown_cell(c) for c in frame.columns]
    rows = [[_markdown_cell(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown_cell(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = " ".join(str(value).split())  # a newline would end the row
    for char in ("\\", "|", "<", ">", "*", "`", "[", "]"):
        text = text.replace(char, f"\\{char}")
    return text


def _markdown_note(line: str) -> str:
    """A note as Markdown text; a ``reproduce: COMMAND`` note shows the command as code."""
    label, sep, command = line.partition("reproduce: ")
    if sep and not label and "``" not in command:
        return f"reproduce: `` {command} ``"
    return _markdown_cell(line)


@hookimpl
def register_reporters(register: RegisterReporter) -> None:
    register("csv", render_csv, description="comma-separated values")
    register("parquet", render_parquet, description="Apache Parquet (needs pyarrow)",
             requires=("pyarrow",))
    register("json", render_json, description="JSON array of rows")
    register("md", render_markdown, description="Markdown table")
    register("latex", render_latex, description="LaTeX tabular (booktabs)", suffix=".tex")
