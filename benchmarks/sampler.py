"""Episodes per second: metabench's EpisodeSampler against learn2learn's TaskDataset.

Both sample 5-way 1-shot 15-query episodes from the same in-memory Omniglot-sized data set
(1,623 classes x 20 images of 28x28), in this process, on the CPU. learn2learn gets its
best case: float images already in a TensorDataset, wrapped in MetaDataset, with NWays,
KShots(shots + queries), LoadData and RemapLabels. metabench starts from uint8 images (as
its data sets store them) and returns float support and query tensors with labels.

    python benchmarks/sampler.py --json

prints one JSON object: ``metabench_per_s`` (one ``sampler.episode(i)`` per call, the same
unit of work as one ``TaskDataset.sample()``), ``learn2learn_per_s``, ``ratio``, and context
(batched rate, machine load, versions, settings); ``--quick`` times one round of 0.2 s (the
tests run it). Exits 1 when a rate is not a positive finite number.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from _shared import add_common_arguments, finish, positive

from metabench.data.base import ClassSplit, InMemoryDataset
from metabench.episodes import EpisodeSampler
from metabench.protocol import TaskSpec

CLASSES, EXAMPLES, SIZE = 1623, 20, 28


def make_images(seed: int = 0) -> torch.Tensor:
    """Random uint8 images ``[classes, examples, 1, 28, 28]`` (content does not affect speed)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (CLASSES, EXAMPLES, 1, SIZE, SIZE)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def metabench_sampler(images: torch.Tensor, spec: TaskSpec) -> EpisodeSampler:
    """metabench's sampler over all classes as one split."""
    split = ClassSplit.from_dense(images, [f"c{i}" for i in range(CLASSES)])
    return EpisodeSampler(InMemoryDataset("omniglot-sized", {"train": split}), "train", spec)


def learn2learn_taskset(images: torch.Tensor, spec: TaskSpec):
    """learn2learn's TaskDataset sampling the same kind of task from the same images."""
    from metabench_plugins.learn2learn_ref import import_learn2learn

    l2l = import_learn2learn()
    from learn2learn.data.transforms import KShots, LoadData, NWays, RemapLabels

    x = images.reshape(CLASSES * EXAMPLES, 1, SIZE, SIZE).float().div_(255.0)
    y = torch.arange(CLASSES).repeat_interleave(EXAMPLES)
    meta = l2l.data.MetaDataset(torch.utils.data.TensorDataset(x, y))
    transforms = [
        NWays(meta, spec.ways),
        KShots(meta, spec.shots + spec.queries),
        LoadData(meta),
        RemapLabels(meta),
    ]
    return l2l.data.TaskDataset(meta, transforms, num_tasks=-1)


def rates(
    steps: dict[str, Callable[[int], int]], seconds: float, rounds: int
) -> dict[str, tuple[float, float]]:
    """Best episodes per second of wall-clock and of process CPU time, per sampler.

    Rounds of about ``seconds`` alternate between the samplers so that a change of machine
    load during the run affects all of them alike; CPU-time rates are less sensitive to
    other processes than wall-clock ones.
    """
    best = dict.fromkeys(steps, (0.0, 0.0))
    index = dict.fromkeys(steps, 1)
    for step in steps.values():
        step(0)  # warm up caches and lazy set-up
    for _ in range(rounds):
        for name, step in steps.items():
            count, start, cpu = 0, time.perf_counter(), time.process_time()
            while (elapsed := time.perf_counter() - start) < seconds:
                produced = step(index[name])
                index[name] += produced
                count += produced
            cpu = time.process_time() - cpu
            wall_best, cpu_best = best[name]
            best[name] = (max(wall_best, count / elapsed), max(cpu_best, count / max(cpu, 1e-9)))
    return best


def measure(args: argparse.Namespace) -> dict:
    """Run both samplers and return the JSON-ready result."""
    torch.set_num_threads(args.threads)
    spec = TaskSpec(ways=5, shots=1, queries=15)
    images = make_images()
    sampler = metabench_sampler(images, spec)
    batch = args.batch_size

    def one(i: int) -> int:
        sampler.episode(i)
        return 1

    def batched(i: int) -> int:
        sampler.batch(range(i, i + batch))
        return batch

    steps = {"metabench": one, "metabench_batched": batched}
    error = None
    try:
        taskset = learn2learn_taskset(images, spec)
        steps["learn2learn"] = lambda i: (taskset.sample(), 1)[1]
    except ImportError as missing:
        error = str(missing)
    best = rates(steps, args.seconds, args.rounds)
    result: dict = {"metabench_per_s": round(best["metabench"][0], 1)}
    if error is None:
        result["learn2learn_per_s"] = round(best["learn2learn"][0], 1)
        result["ratio"] = round(best["metabench"][0] / best["learn2learn"][0], 2)
    else:
        result.update(learn2learn_per_s=None, ratio=None, learn2learn_error=error)
    result["context"] = context(args, spec, best)
    return result


def context(args: argparse.Namespace, spec: TaskSpec, best: dict[str, tuple[float, float]]) -> dict:
    """What the numbers depend on: settings, machine load, versions."""
    try:
        import learn2learn

        l2l_version = learn2learn.__version__
    except ImportError:
        l2l_version = None
    return {
        "task": f"{spec.ways}-way {spec.shots}-shot {spec.queries}-query",
        "dataset": f"{CLASSES} classes x {EXAMPLES} images of 1x{SIZE}x{SIZE} in memory",
        "metabench_batched_per_s": round(best["metabench_batched"][0], 1),
        "batch_size": args.batch_size,
        "cpu_time_per_s": {name: round(cpu, 1) for name, (_, cpu) in best.items()},
        "cpu_time_ratio": (round(best["metabench"][1] / best["learn2learn"][1], 2)
                           if "learn2learn" in best else None),
        "timing": f"best of {args.rounds} alternating rounds of {args.seconds} s each",
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "learn2learn": l2l_version,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, measure, print; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (best one counts)")
    parser.add_argument("--batch-size", type=int, default=32, help="episodes per batch (context)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 0.2, 1
    result = measure(args)
    rates = {"metabench_per_s": result["metabench_per_s"],
             "metabench_batched_per_s": result["context"]["metabench_batched_per_s"]}
    if result["learn2learn_per_s"] is not None:
        rates["learn2learn_per_s"] = result["learn2learn_per_s"]
    status = finish(result, positive(rates), as_json=args.json, quick=args.quick)
    if not args.json:
        print(f"metabench   {result['metabench_per_s']:>10.1f} episodes/s", file=sys.stderr)
        if result["learn2learn_per_s"] is not None:
            print(f"learn2learn {result['learn2learn_per_s']:>10.1f} episodes/s", file=sys.stderr)
            print(f"ratio       {result['ratio']:>10.2f}x", file=sys.stderr)
        else:
            print(f"learn2learn unavailable: {result['learn2learn_error']}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
