"""The ``tune`` command: tune every algorithm on every setting, print what was selected."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table

from metabench.cli_common import (
    CONFIG_FILE,
    PROGRESS,
    comparison_options,
    library_options,
    make_console,
)
from metabench.config import LATEST
from metabench.trials import DEFAULT_TRIALS

if TYPE_CHECKING:
    from metabench.tuning import TuneOutcome


@click.command("tune")
@CONFIG_FILE
@comparison_options("tune")
@click.option("--trials", type=int, help=f"Trials per algorithm and setting [{DEFAULT_TRIALS}].")
@click.option("--trial-budget", help="Training budget of one trial [a third of --budget].")
@click.option("--space", "spaces", multiple=True, metavar="ALGO.NAME=RANGE",
              help="Change a search range (repeatable): log:LOW:HIGH, uniform:LOW:HIGH, "
                   "int:LOW:HIGH, choice:A,B or off, e.g. fomaml.inner_lr=log:0.01:0.5.")
@click.option("--seed", type=int, help="Seed of the sampler [0].")
@click.option("--prune/--no-prune", default=None,
              help="Stop trials below the median of earlier ones at a validation point [on].")
@click.option("--resume", is_flag=False, flag_value=LATEST, default=None, metavar="[TUNING]",
              help="Finish tuning TUNING, or alone: the latest tuning with these options.")
@PROGRESS
def tune_command(config_file: str | None, trials: int | None,
                 trial_budget: str | None, spaces: tuple[str, ...], seed: int | None,
                 prune: bool | None, resume: str | None, progress: bool, **flags: Any) -> None:
    """Tune each algorithm on each setting with the same number of trials and the same trial
    budget, scored on validation episodes only (Optuna TPE, seeded; median pruning).

    `metabench compare --tuned` then runs with the selected hyperparameters.
    """
    from metabench.tuning import TuningInterrupted, run_tuning

    options = library_options("tune", flags)
    settings = {"trials": trials, "trial_budget": trial_budget, "space": list(spaces) or None,
                "seed": seed, "prune": prune}
    try:
        outcome = run_tuning(options, settings, config_file, resume, progress)
    except TuningInterrupted as stop:
        click.echo(f"interrupted: tuning {stop.tuning}: finished trials are stored; resume with "
                   "`metabench tune --resume` and the same options", err=True)
        raise
    print_tuning(outcome)


def print_tuning(outcome: TuneOutcome) -> None:
    """Per algorithm and setting: the selected trial and values beside trial 0 (the starting
    values), and how many trials completed, were pruned or failed."""
    from metabench.metrics import metric_named

    settings = outcome.settings
    click.echo(f"metabench tune · tuning {outcome.tuning} · {settings.trials} trials x "
               f"{settings.budget_for(outcome.config).label} per algorithm and setting · seed "
               f"{settings.seed}")
    table = Table()
    for column in ("algorithm", "setting", "start (trial 0)", "selected", "trial",
                   "hyperparameters", "done / pruned / failed"):
        table.add_column(column)
    for row in outcome.best.to_dict("records"):
        metric = metric_named(str(row["metric"]))
        table.add_row(*[escape(text) for text in (
            str(row["algorithm"]), str(row["setting"]), _value(metric, row["start_value"]),
            _value(metric, row["best_value"]), str(row["best_trial"]),
            ", ".join(f"{k}={_short(v)}" for k, v in sorted(row["params"].items())),
            f"{row['complete']} / {row['pruned']} / {row['failed']}")])
    make_console().print(table)
    for reason in outcome.skipped:
        click.echo(f"skipped: {reason}")
    click.echo(f"tuning {outcome.tuning} in {outcome.store} ({outcome.ran} trial cells run now); "
               f"next: metabench compare --tuned {outcome.tuning} with the same algorithms and "
               "settings")


def _value(metric: Any, value: Any) -> str:
    return "-" if value is None or value != value else metric.format_value(float(value))


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
