"""The plugin API: the hook markers and one specification per hook, nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from metabench.plugin_types import (
    MachineInfo,
    RegisterAlgorithm,
    RegisterBackbone,
    RegisterBackend,
    RegisterDataset,
    RegisterPlot,
    RegisterPreset,
    RegisterReporter,
)

if TYPE_CHECKING:
    import click

    from metabench.plugin_types import Cell, CellResult

hookspec = pluggy.HookspecMarker("metabench")
hookimpl = pluggy.HookimplMarker("metabench")


@hookspec
def register_algorithms(register: RegisterAlgorithm) -> None:
    """Register meta-learning algorithms.

    :param register: call ``register(name, factory, task_types=..., defaults=...,
        description=...)`` once per algorithm. ``factory(setup, hparams)`` returns an
        object satisfying :class:`metabench.Algorithm`; ``defaults`` is a frozen
        dataclass instance holding the hyperparameters and their default values.
    """


@hookspec
def register_datasets(register: RegisterDataset) -> None:
    """Register data sets.

    :param register: call ``register(name, factory, task_types=..., description=...)``;
        ``factory(**options)`` returns a data set (see :mod:`metabench.data`).
    """


@hookspec
def register_backbones(register: RegisterBackbone) -> None:
    """Register backbone networks.

    :param register: call ``register(name, factory, task_types=..., description=...)``;
        ``factory(input_shape)`` returns an ``nn.Module`` with an ``out_features`` attribute.
    """


@hookspec
def register_reporters(register: RegisterReporter) -> None:
    """Register output formats for result tables.

    :param register: call ``register(format, render, description=..., suffix=...)``;
        ``render(frame, path)`` writes a pandas DataFrame to ``path``. Every registered
        format is accepted by ``metabench export --format``.
    """


@hookspec
def register_plots(register: RegisterPlot) -> None:
    """Register plot kinds for reports and ``metabench plot``.

    :param register: call ``register(name, figure, description=...)``; ``figure(data)``
        takes a :class:`metabench.reports.data.ReportData` and returns a matplotlib
        ``Figure`` (saved as PNG and SVG, embedded in the HTML report), or None when the
        data has nothing to show (a critical-difference diagram of one setting).
    """


@hookspec
def register_backends(register: RegisterBackend) -> None:
    """Register backends: where the cells of a comparison run (``--backend NAME``).

    :param register: call ``register(name, factory, description=...)``; ``factory(config)``
        returns an object with ``run(job, on_result)`` (:class:`metabench.backends.base.Backend`):
        run every cell of ``job.cells`` and call ``on_result(result)`` in the calling thread
        as each finishes. The driver alone writes the store.
    """


@hookspec
def register_presets(register: RegisterPreset) -> None:
    """Register paper presets: a paper's protocol and its published results
    (``metabench reproduce NAME``).

    :param register: call ``register(name, preset, description=...)``; ``preset`` is a
        :class:`metabench.Preset` holding the ``compare`` options of the paper's protocol
        and its :class:`metabench.Published` results.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``metabench`` command line.

    :param cli: the root ``click.Group``; decorate functions with ``@cli.command()``.
    """


@hookspec
def update_machine_info(info: MachineInfo) -> None:
    """Add entries to the environment record stored with every run.

    :param info: a dict of JSON-serialisable values; add or update keys in place.
    """


@hookspec
def cell_started(cell: Cell) -> None:
    """Observe a cell (algorithm x data set x task x seed) as it starts.

    :param cell: the cell about to run.
    """


@hookspec
def cell_finished(cell: Cell, result: CellResult) -> None:
    """Observe a cell as it finishes, with its result (ok, failed or skipped).

    :param cell: the cell that ran.
    :param result: its result: ``status`` (ok, failed, skipped), ``reason``, ``steps``,
        ``profile``, ``curve`` and its test ``episodes`` (:class:`metabench.EpisodeRow`).
    """
