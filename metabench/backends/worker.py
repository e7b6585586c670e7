"""What runs on a worker process, whichever backend sent the cell there (a Ray task, a
process of the local backend's pool with ``--jobs N``): the cell is rebuilt from the
comparison's configuration (plugins by module name, data sets from their options, built once
per process and kept for the next cell) and run with the comparison's torch threads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

from metabench.backends.base import CellRunner
from metabench.cell import Cell
from metabench.config import Config
from metabench.errors import MetabenchError
from metabench.records import CellResult
from metabench.workspace import cell_datasets

#: The data sets this process built, by name and data options (see :func:`cell_dataset`).
_DATASETS: dict[tuple, Any] = {}


def run_cell_here(config: Config, cell: Cell, where: str,
                  runner: CellRunner | None = None) -> CellResult:
    """Run one cell in this worker process (with ``runner``, default
    :func:`metabench.runner.run_cell`): its threads, plugins, data set (cached), device.
    ``where`` names this process in a failed cell's reason and the cell's profile."""
    import torch

    from metabench.runner import RunContext, failed_cell, run_cell

    torch.set_num_threads(config.cpus_per_cell)
    problems = load_plugins_each(config.plugins)
    try:
        plan, device, (dataset, test) = _cell_plan(config, cell)
    except MetabenchError as error:
        reason = f"on {where}: {error}" + "".join(f"; {p}" for p in problems)
        return failed_cell(cell, config, reason)
    tests = {cell.domains: test} if test is not None else {}
    context = RunContext(plan, device, {cell.dataset: dataset}, test_datasets=tests)
    started = time.perf_counter()
    result = (runner or run_cell)(cell, context)
    result.profile["worker"] = where
    result.profile["torch_threads"] = torch.get_num_threads()
    result.profile["worker_wall_s"] = round(time.perf_counter() - started, 4)
    return result


def warm_worker(config: Config) -> str:
    """Load what the cells of ``config`` need into this worker process: the runner, the
    plugins, every data set of the plan (kept for the cells), and torch's lazily imported
    optimiser machinery (an Adam step on a scratch tensor). No algorithm code runs. Returns
    what was warmed, or why not (a cell that cannot run reports that itself)."""
    import torch

    from metabench import runner  # noqa: F401  (the runner's imports, before the first cell)
    from metabench.multisource import make_sampler
    from metabench.plan import build_plan

    torch.set_num_threads(config.cpus_per_cell)
    scratch = torch.zeros(1, requires_grad=True)
    scratch.sum().backward()
    torch.optim.Adam([scratch]).step()
    load_plugins_each(config.plugins)
    try:
        groups = {(c.dataset, c.tested_on, c.spec): c for c in build_plan(config).cells}
        for (name, tested_on, spec), cell in groups.items():  # as the driver checks them
            dataset, test = cell_dataset(name, tested_on, config)
            make_sampler(dataset, "validation", spec, cell.seed)
            make_sampler(test if test is not None else dataset, "test", spec, cell.seed)
    except Exception as error:  # the cells report it, with their context
        return f"not warmed: {type(error).__name__}: {first_line(error)}"
    return f"warmed {len(groups)} data set setting(s) in pid {os.getpid()}"


def load_plugins_each(modules: tuple[str, ...]) -> list[str]:
    """Load each plugin module on its own; what fails is reported, the rest still loads."""
    from metabench.plugins import load_plugins

    problems = []
    for module in modules:
        try:
            load_plugins([module])
        except MetabenchError as error:
            problems.append(str(error))
    return problems


def first_line(error: BaseException) -> str:
    """The last non-empty line of an error's message (a remote traceback ends with it),
    at most 300 characters."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else "(no message)"
    return text if len(text) <= 300 else text[:297] + "..."


def _cell_plan(config: Config, cell: Cell) -> tuple[Any, Any, Any]:
    from metabench.plan import build_plan
    from metabench.profiling import resolve_device

    plan = build_plan(cell_config(config, cell))
    return plan, resolve_device(config.device), cell_dataset(cell.dataset, cell.tested_on, config)


def cell_config(config: Config, cell: Cell) -> Config:
    """The comparison narrowed to this cell's algorithm and data set (same hyperparameters)."""
    hparams = {k: v for k, v in config.hparams.items() if k.partition("@")[0] == cell.algorithm}
    return dataclasses.replace(config, algorithms=(cell.algorithm,), datasets=(cell.dataset,),
                               hparams=hparams)


def cell_dataset(name: str, tested_on: str, config: Config) -> Any:
    """The data set and the one it is tested on (None: itself), built once per worker
    process for each set of data options."""
    key = (name, config.data_root, config.download, config.cache_dir, tested_on,
           json.dumps(config.to_dict()["dataset_options"], sort_keys=True, default=str))
    if key not in _DATASETS:
        _DATASETS[key] = cell_datasets(name, config, tested_on)
    return _DATASETS[key]
