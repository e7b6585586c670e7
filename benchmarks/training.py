"""Training throughput: episodes per second of the long presets' training steps, on CPU.

Two cells, each through the harness's own pieces (the preset's configuration, its data set,
``RunContext``, the cell's algorithm and training sampler): (a) ProtoNets' 60-way Omniglot
training (``snell2017-omniglot``, ``protonet/5w1s``: 60 ways, 1 shot, 5 queries, one
episode a step); (b) MAML's meta-batch training (``finn2017-omniglot``, ``maml/5w1s``: 32
tasks a step, second order, ``conv4-strided``), and (c) the meta-batch-8 Conv4 step that
``benchmarks/algorithms.py`` times against learn2learn. A step is what the trainer does: draw
the step's episodes, then ``meta_train_step``. Figures are medians of the timed steps (a
warm-up step first) in wall and CPU time, and episodes per second from the wall median.

    python benchmarks/training.py --json --data-root DIR     # Omniglot in DIR
    python benchmarks/training.py --quick --json             # seconds: synthetic 28x28 images

``--quick`` puts synthetic images of Omniglot's shape in place of Omniglot and times two
steps of each cell. Exits 1 when a cell fails or a figure is not finite.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from _shared import add_common_arguments, finish, positive

from metabench.data.synthetic import SyntheticImages
from metabench.plan import build_plan
from metabench.plugins import load_plugins
from metabench.reproduction import preset_config
from metabench.runner import TRAIN, RunContext, build_algorithm

DATA_ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "omniglot")


@dataclass(frozen=True)
class Case:
    """One timed cell: a preset, the part of it, hyperparameter overrides."""

    name: str
    preset: str
    only: str
    hparams: tuple[str, ...] = ()


CASES = (
    Case("protonet_60way", "snell2017-omniglot", "protonet/5w1s"),
    Case("maml_metabatch32", "finn2017-omniglot", "maml/5w1s"),
    Case("maml_conv4_metabatch8", "finn2017-omniglot", "maml/5w1s",
         ("maml.meta_batch_size=8",)),
)
QUICK_HPARAMS = {"protonet_60way": ("protonet.train_ways=20",),
                 "maml_metabatch32": ("maml.meta_batch_size=2",),
                 "maml_conv4_metabatch8": ("maml.meta_batch_size=2",)}
BACKBONES = {"maml_conv4_metabatch8": "conv4"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=DATA_ROOT, help="Omniglot's folder")
    parser.add_argument("--cache-dir", default=None, help="cache of built data sets")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per cell")
    parser.add_argument("--cases", default=",".join(c.name for c in CASES),
                        help="cells to time (comma-separated)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the harness's default)")
    add_common_arguments(parser)  # --quick: synthetic images, 2 steps, small
    return parser.parse_args(argv)


def build_case(case: Case, args: argparse.Namespace) -> tuple[Any, Any, int]:
    """The case's algorithm, its training sampler and its episodes per step."""
    hparams = case.hparams + (QUICK_HPARAMS[case.name] if args.quick else ())
    options: dict[str, Any] = {"device": "cpu", "data_root": args.data_root, "hparams": list(hparams)}
    if case.name in BACKBONES:
        options["backbone"] = BACKBONES[case.name]
    if args.cache_dir:
        options["cache_dir"] = args.cache_dir
    config = preset_config(case.preset, 1.0, case.only, options)
    load_plugins(config.plugins)
    plan = build_plan(config)
    cell = plan.cells[0]
    if args.quick:
        datasets: dict[str, Any] = {cell.dataset: SyntheticImages(classes=(64, 16, 20), examples=20)}
    else:
        from metabench.session import build_datasets

        datasets, _ = build_datasets(plan)
    context = RunContext(plan, torch.device("cpu"), datasets)
    algorithm = build_algorithm(cell, context)
    spec = getattr(algorithm, "train_task_spec", lambda s: s)(cell.spec)
    return algorithm, context.sampler(cell, TRAIN, spec), int(getattr(algorithm, "episodes_per_step", 1))


def time_case(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    """Wall and CPU seconds per training step (sampling included) after one warm-up step."""
    algorithm, sampler, size = build_case(case, args)
    wall, cpu, losses = [], [], []
    for step in range(args.steps + 1):
        start_wall, start_cpu = time.perf_counter(), time.thread_time()
        batch = sampler.batch(range(step * size, (step + 1) * size))
        metrics = algorithm.meta_train_step(batch)
        if step:
            wall.append(time.perf_counter() - start_wall)
            cpu.append(time.thread_time() - start_cpu)
        losses.append(float(metrics["loss"]))
    step_s = statistics.median(wall)
    return {"episodes_per_step": size, "steps": args.steps, "step_s": round(step_s, 5),
            "step_cpu_s": round(statistics.median(cpu), 5),
            "episodes_per_s": round(size / step_s, 4), "last_loss": losses[-1]}


def measure(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Every wanted case's figures, and a failure line for each case that failed."""
    wanted = set(args.cases.split(","))
    unknown = wanted - {case.name for case in CASES}
    if unknown:
        raise SystemExit(f"error: unknown case {sorted(unknown)[0]!r}; expected one of "
                         f"{', '.join(case.name for case in CASES)}")
    cells: dict[str, Any] = {}
    failures = []
    for case in CASES:
        if case.name not in wanted:
            continue
        try:
            figures = time_case(case, args)
        except Exception as error:  # a failed cell is reported, and fails the run
            cells[case.name] = {"error": f"{type(error).__name__}: {error}"}
            failures.append(f"{case.name}: {cells[case.name]['error']}")
            continue
        cells[case.name] = figures
        failures += [f"{case.name}: {line}" for line in positive(
            {k: figures[k] for k in ("step_s", "step_cpu_s", "episodes_per_s")})]
        if not math.isfinite(figures["last_loss"]):
            failures.append(f"{case.name}: last_loss = {figures['last_loss']!r}")
    return {"quick": args.quick, "cells": cells}, failures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.steps = min(args.steps, 2)
    torch.set_num_threads(args.threads)
    result, failures = measure(args)
    return finish(result, failures, as_json=args.json, quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())
