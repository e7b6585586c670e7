"""The ``metabench`` command: a thin layer that parses, calls the library, and prints."""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from metabench import __version__, registry
from metabench.cli_common import make_console
from metabench.errors import MetabenchError
from metabench.plugins import hook_caller, load_plugins

# The built-in commands by name, each imported only when it runs (or when --help lists it):
# `metabench report` never loads what `metabench compare` needs (torch, the runner).
LAZY_COMMANDS = {
    "compare": "metabench.cli_compare:compare_command",
    "export": "metabench.cli_report:export_command",
    "leaderboard": "metabench.cli_report:leaderboard_command",
    "plot": "metabench.cli_report:plot_command",
    "report": "metabench.cli_report:report_command",
    "reproduce": "metabench.cli_reproduce:reproduce_command",
    "tune": "metabench.cli_tune:tune_command",
}


class LazyGroup(click.Group):
    """A click group that imports a built-in command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = LAZY_COMMANDS[cmd_name].partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        self.add_command(command, cmd_name)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="metabench")
@click.option(
    "--plugin",
    "plugins",
    multiple=True,
    metavar="MODULE",
    help="Load a plugin module by dotted name (repeatable; also METABENCH_PLUGINS).",
)
def cli(plugins: tuple[str, ...]) -> None:
    """metabench: compare meta-learning algorithms on one standard episodic protocol."""
    load_plugins(plugins)


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_command(as_json: bool) -> None:
    """List every algorithm, data set, backbone and reporter, and the plugin that gave it."""
    listing = plugin_listing()
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    table = Table(title="metabench plugins")
    for column in ("kind", "name"):
        table.add_column(column, no_wrap=True)
    for column in ("plugin", "task types", "description"):
        table.add_column(column)
    for kind, entries in listing.items():
        for entry in entries:
            table.add_row(*[escape(text) for text in (
                kind.rstrip("s"), entry["name"], entry["plugin"],
                ", ".join(entry["task_types"]), entry["description"])])
    make_console().print(table)


def plugin_listing() -> dict[str, list[dict]]:
    """Every registered thing by kind, as JSON-ready dicts."""
    return {
        f"{kind}s": [entry.as_dict() for entry in registry.collect(kind).values()]
        for kind in registry.KINDS
    }


@cli.command("datasets")
@click.option("--data-root", type=click.Path(file_okay=False), help="Folder holding data set files.")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Cache folder (METABENCH_CACHE).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.argument("names", nargs=-1)
def datasets_command(data_root: str | None, cache_dir: str | None, as_json: bool,
                     names: tuple[str, ...]) -> None:
    """List data sets (or NAMES): classes per split, examples per class, source."""
    from metabench.data import describe_datasets  # deferred: data sets load torch

    rows = describe_datasets(data_root=data_root, cache_dir=cache_dir, names=list(names) or None)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="metabench data sets")
    table.add_column("name", no_wrap=True)
    for column in ("train", "validation", "test", "examples/class"):
        table.add_column(column, justify="right")
    table.add_column("source / note")
    for row in rows:
        classes = row["classes"] or {}
        counts = [str(classes.get(split, "")) if classes.get(split) is not None else "-"
                  for split in ("train", "validation", "test")]
        table.add_row(escape(row["name"]), *counts, str(row["examples_per_class"] or "-"),
                      escape(row["note"] or row["source"]))
    console = make_console()
    console.print(table)
    for row in rows:
        if row.get("split_schemes"):
            console.print(_schemes_table(row["name"], row["split_schemes"]))


def _schemes_table(name: str, schemes: dict[str, dict[str, Any]]) -> Table:
    """A data set's split schemes (option ``split``) with their sizes per split."""
    table = Table(title=f"{escape(name)}: split schemes (--dataset-option {escape(name)}.split=NAME)")
    table.add_column("split", no_wrap=True)
    for column in ("train", "validation", "test"):
        table.add_column(column, justify="right")
    table.add_column("source")
    for scheme, info in schemes.items():
        sizes = info.get("characters") or info.get("classes") or {}
        table.add_row(escape(scheme), *(str(sizes.get(s, "-")) for s in ("train", "validation", "test")),
                      escape(str(info.get("source", ""))))
    return table


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: load plugins named on the command line, add their commands, run."""
    args = list(sys.argv[1:] if argv is None else argv)
    # A Ray connection that hangs ends the command with one line (metabench.backends.ray).
    os.environ.setdefault("METABENCH_HARD_CONNECT_TIMEOUT", "1")
    try:
        load_plugins(_plugin_args(args))
        hook_caller("register_commands")(cli=cli)
        cli.main(args=args, prog_name="metabench", standalone_mode=False)
    except MetabenchError as error:
        _fail(str(error))
    except OSError as error:  # a file or folder the checks could not foresee (disk full, ...)
        where = f" {error.filename}" if getattr(error, "filename", None) else ""
        _fail(f"cannot access{where}: {error.strerror or error}")
    except sqlite3.Error as error:
        _fail(f"results store: {error}")
    except click.exceptions.Abort:
        _fail("interrupted", code=130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", code=130)


def _fail(message: str, code: int = 2) -> None:
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    click.echo(f"error: {line}", err=True)
    sys.exit(code)


def _plugin_args(args: list[str]) -> list[str]:
    """The values of ``--plugin`` options, read before click parses (commands may come from them)."""
    names = []
    for i, arg in enumerate(args):
        if arg == "--plugin" and i + 1 < len(args):
            names.append(args[i + 1])
        elif arg.startswith("--plugin="):
            names.append(arg.split("=", 1)[1])
    return names
