"""The plugin API: the hook markers and one specification per hook, nothing else."""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("metabench")
hookimpl = pluggy.HookimplMarker("metabench")


@hookspec
def register_algorithms(register: Any) -> None:
    """Register meta-learning algorithms.

    :param register: call ``register(name, factory, task_types=..., defaults=...,
        description=...)`` once per algorithm. ``factory(setup, hparams)`` returns an
        object satisfying :class:`metabench.Algorithm`; ``defaults`` is a frozen
        dataclass instance holding the hyperparameters and their default values.
    """


@hookspec
def register_datasets(register: Any) -> None:
    """Register data sets.

    :param register: call ``register(name, factory, task_types=..., description=...)``;
        ``factory(**options)`` returns a data set (see :mod:`metabench.data`).
    """


@hookspec
def register_backbones(register: Any) -> None:
    """Register backbone networks.

    :param register: call ``register(name, factory, task_types=..., description=...)``;
        ``factory(input_shape)`` returns an ``nn.Module`` with an ``out_features`` attribute.
    """


@hookspec
def register_reporters(register: Any) -> None:
    """Register output formats for result tables.

    :param register: call ``register(format, render, description=...)``;
        ``render(frame, path)`` writes a pandas DataFrame to ``path``.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``metabench`` command line.

    :param cli: the root ``click.Group``; decorate functions with ``@cli.command()``.
    """


@hookspec
def update_machine_info(info: dict[str, Any]) -> None:
    """Add entries to the environment record stored with every run.

    :param info: a dict of JSON-serialisable values; add or update keys in place.
    """


@hookspec
def cell_started(cell: Any) -> None:
    """Observe a cell (algorithm x data set x task x seed) as it starts.

    :param cell: the cell about to run.
    """


@hookspec
def cell_finished(cell: Any, result: Any) -> None:
    """Observe a cell as it finishes, with its result (ok, failed or skipped).

    :param cell: the cell that ran.
    :param result: its result record.
    """
