"""Every GPU figure in one run (under 8 minutes on one GPU): timing by CUDA events, the peak
memory profiler checked against a known allocation, MAML's meta-batch-32 training step
against learn2learn's (goal: at most 0.5x), evaluation throughput, and the estimate of
``metabench reproduce finn2017-omniglot --only maml/5w1s`` at full scale.

    python benchmarks/gpu.py --json
    python benchmarks/gpu.py --json --cache-dir /path/with/omniglot   # data for the estimate
    python benchmarks/gpu.py --json --quick

Without CUDA the figures cannot be measured: the script exits 2 with one line saying so;
with ``--quick`` it prints ``{"skipped": "no CUDA", "cpu_dry_run": {...}}`` and exits 0,
where the dry run is every figure's code on the CPU at tiny sizes (wall-clock timers and the
sampled RSS instead of CUDA events and the allocator's peak): the test suite runs it, so the
script keeps working on a machine that has no GPU. learn2learn missing, or the Omniglot data
not at hand (the GPU machine may have no network), leaves that figure out with the reason in
the JSON. Exits 1 when a figure is not finite, the memory check misses, or a step fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from _shared import add_common_arguments, finish, positive

from metabench import AlgorithmSetup, Episode, MetabenchError, TaskSpec
from metabench.backbones import Conv4
from metabench.data.synthetic import SyntheticImages
from metabench.episodes import EpisodeSampler
from metabench.profiling import PhaseProfiler
from metabench_plugins.maml import MAML, MAMLConfig

PRESET, ONLY = "finn2017-omniglot", "maml/5w1s"
#: The peak the profiler reads for a known allocation may differ by this share (allocator
#: rounding on CUDA; the RSS sampler's granularity and the rest of the process on a CPU).
MEMORY_TOLERANCE = 0.10
GOAL_TRAIN_STEP_RATIO = 0.5


class Timer:
    """Seconds of a block: CUDA events on a GPU (no host synchronisation inside the block),
    ``perf_counter`` on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def seconds(self, work: Callable[[], Any]) -> float:
        if not self.cuda:
            start = time.perf_counter()
            work()
            return time.perf_counter() - start
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        work()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / 1000.0


def event_timing(device: torch.device, size: int) -> dict[str, Any]:
    """A matrix product timed by the timer and by the host clock around a synchronisation:
    the two agree when the events measure the work (and not just its queueing)."""
    a = torch.randn(size, size, device=device)
    work = lambda: [a @ a for _ in range(10)]  # noqa: E731
    timer = Timer(device)
    timer.seconds(work)  # warm-up
    by_timer = timer.seconds(work)
    synchronize(device)
    start = time.perf_counter()
    work()
    synchronize(device)
    by_host = time.perf_counter() - start
    return {"matmul_size": size, "timer": "cuda events" if timer.cuda else "perf_counter",
            "timer_s": by_timer, "host_clock_s": by_host, "timer_over_host": by_timer / by_host}


def peak_memory_check(device: torch.device, megabytes: int) -> tuple[dict[str, Any], list[str]]:
    """Allocate ``megabytes`` inside a profiler phase; the phase's peak over its start must
    read that much within :data:`MEMORY_TOLERANCE`."""
    profiler = PhaseProfiler(device)
    with profiler.phase("known") as record:
        block = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32, device=device)
        synchronize(device)
        time.sleep(0.3)  # the CPU meter samples RSS every few milliseconds
        del block
    measured = record.peak_memory_mb - record.start_memory_mb
    error = abs(measured - megabytes) / megabytes
    row = {"allocated_mb": megabytes, "profiler_peak_over_start_mb": round(measured, 2),
           "relative_error": round(error, 4), "tolerance": MEMORY_TOLERANCE,
           "meter": "max_memory_allocated" if device.type == "cuda" else "sampled RSS"}
    problem = [] if error <= MEMORY_TOLERANCE else [
        f"peak memory: the profiler read {measured:.1f} MB over the start for a known "
        f"{megabytes} MB allocation (error {error:.1%} > {MEMORY_TOLERANCE:.0%})"]
    return row, problem


def maml_pair(spec: TaskSpec, device: torch.device, meta_batch: int, compile_: bool) -> dict[str, Any]:
    """metabench's MAML and learn2learn's (when installed), from the same weights."""
    config = MAMLConfig(inner_lr=0.4, train_steps=1, test_steps=3, meta_batch_size=meta_batch)
    pair: dict[str, Any] = {"metabench": MAML(setup(spec, device), _replace(config, compile=compile_))}
    try:
        from metabench_plugins.learn2learn_ref import L2LMAML

        pair["learn2learn"] = L2LMAML(setup(spec, device), _replace(config, channels_last=False))
    except (ImportError, MetabenchError) as missing:
        pair["learn2learn_missing"] = str(missing).splitlines()[0]
    return pair


def _replace(config: MAMLConfig, **changes: Any) -> MAMLConfig:
    import dataclasses

    return dataclasses.replace(config, **changes)


def setup(spec: TaskSpec, device: torch.device) -> AlgorithmSetup:
    torch.manual_seed(0)
    return AlgorithmSetup(Conv4((1, 28, 28)).to(device), spec, device, seed=0, input_shape=(1, 28, 28))


def training_steps(pair: dict[str, Any], sampler: EpisodeSampler, device: torch.device,
                   meta_batch: int, steps: int) -> dict[str, Any]:
    """Median seconds of a meta-training step of each, alternating, two warm-up steps."""
    timer, runners = Timer(device), {k: v for k, v in pair.items() if not k.endswith("_missing")}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(steps + 2):
        batch = sampler.batch(range(i * meta_batch, (i + 1) * meta_batch))
        for name, algorithm in runners.items():
            seconds = timer.seconds(lambda a=algorithm, b=batch: a.meta_train_step(b))
            if i >= 2:
                times[name].append(seconds)
    median = {name: statistics.median(t) for name, t in times.items()}
    row: dict[str, Any] = {"meta_batch": meta_batch, "steps": steps, "train_step_s": median}
    if "learn2learn" in median:
        row["train_step_ratio"] = median["metabench"] / median["learn2learn"]
        row["goal"] = GOAL_TRAIN_STEP_RATIO
        row["meets_goal"] = row["train_step_ratio"] <= GOAL_TRAIN_STEP_RATIO
    else:
        row["learn2learn"] = f"skipped: {pair['learn2learn_missing']}"
    return row


def evaluation(pair: dict[str, Any], episodes: list[Episode], device: torch.device) -> dict[str, Any]:
    """Test episodes per second of each (3 adaptation steps, predictions on the device)."""
    timer = Timer(device)
    runners = {k: v for k, v in pair.items() if not k.endswith("_missing")}
    rates = {}
    for name, algorithm in runners.items():
        algorithm.predict(episodes[0])  # compilation and caches
        seconds = timer.seconds(lambda a=algorithm: [a.predict(e) for e in episodes])
        rates[name] = len(episodes) / seconds
    row: dict[str, Any] = {"episodes": len(episodes), "episodes_per_s": rates}
    if "learn2learn" in rates:
        row["eval_speedup"] = rates["metabench"] / rates["learn2learn"]
    return row


def preset_estimate(device: torch.device, options: dict[str, Any]) -> dict[str, Any]:
    """``metabench reproduce finn2017-omniglot --only maml/5w1s --dry-run`` on this device."""
    from metabench.estimate import format_duration
    from metabench.plugins import load_plugins
    from metabench.reproduction import estimate, preset_config

    load_plugins([])
    config = preset_config(PRESET, 1.0, ONLY, {"device": str(device), **options})
    try:
        result = estimate(config)
    except MetabenchError as error:  # the data set is not at hand (no network)
        return {"preset": PRESET, "only": ONLY, "skipped": str(error).splitlines()[0]}
    return {"preset": PRESET, "only": ONLY, "full_scale_s": result.reference_seconds,
            "full_scale": format_duration(result.reference_seconds), "cells": result.cells,
            "probes": result.probes}


def preset_plan(device: torch.device, options: dict[str, Any]) -> dict[str, Any]:
    """The plan the estimate would time, without timing it."""
    from metabench.plugins import load_plugins
    from metabench.reproduction import preset_config

    load_plugins([])
    config = preset_config(PRESET, 1.0, ONLY, {"device": str(device), **options})
    return {"preset": PRESET, "only": ONLY, "skipped": "--no-estimate",
            "algorithms": list(config.algorithms), "budget": config.budget_text()}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: torch.device, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Every figure on ``device`` at the sizes of ``args``."""
    spec = TaskSpec(5, 1, args.queries)
    data = SyntheticImages(classes=(64, 16, 20), examples=20)
    train = EpisodeSampler(data, "train", spec, seed=0, device=device)
    test = EpisodeSampler(data, "test", spec, seed=0, device=device)
    memory, failures = peak_memory_check(device, args.known_mb)
    pair = maml_pair(spec, device, args.meta_batch, args.compile)
    result: dict[str, Any] = {
        "timing": event_timing(device, args.matmul),
        "peak_memory": memory,
        "maml_training": training_steps(pair, train, device, args.meta_batch, args.steps),
        "evaluation": evaluation(pair, [test.episode(i) for i in range(args.episodes)], device),
    }
    options = {k: v for k, v in (("cache_dir", args.cache_dir), ("data_root", args.data_root)) if v}
    if args.estimate:
        result["estimate"] = preset_estimate(device, options)
    else:  # the preset's plan only (the dry run): its name and narrowing still resolve
        result["estimate"] = preset_plan(device, options)
    figures = {"timing.timer_s": result["timing"]["timer_s"],
               "maml_training.metabench_s": result["maml_training"]["train_step_s"]["metabench"],
               "evaluation.metabench_per_s": result["evaluation"]["episodes_per_s"]["metabench"]}
    if "full_scale_s" in result.get("estimate", {}):
        figures["estimate.full_scale_s"] = result["estimate"]["full_scale_s"]
    return result, failures + positive(figures)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed meta-training steps")
    parser.add_argument("--episodes", type=int, default=600, help="test episodes timed")
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--known-mb", type=int, default=512, help="the known allocation")
    parser.add_argument("--matmul", type=int, default=4096, help="size of the timed product")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="metabench evaluates with maml.compile")
    parser.add_argument("--estimate", action=argparse.BooleanOptionalAction, default=True,
                        help=f"the estimate of {PRESET} --only {ONLY}")
    parser.add_argument("--cache-dir", help="where the Omniglot data set is cached")
    parser.add_argument("--data-root", help="where the Omniglot data set is")
    add_common_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(0)
    if torch.cuda.is_available():
        device = torch.device(args.device)
        if args.quick:
            args.meta_batch, args.steps, args.episodes, args.matmul = 4, 2, 10, 512
        result, failures = measure(device, args)
        return finish(result, failures, as_json=args.json, device=device, quick=args.quick)
    if not args.quick:
        print("error: benchmarks/gpu.py measures a CUDA device and torch sees none "
              "(torch.cuda.is_available() is False); --quick runs its code on the CPU",
              file=sys.stderr)
        return 2
    # Quick, no CUDA: the same code on the CPU at tiny sizes, no figure claimed for a GPU.
    args.meta_batch, args.steps, args.episodes, args.queries = 2, 1, 3, 3
    args.matmul, args.known_mb, args.compile, args.estimate = 64, 64, False, False
    dry_run, failures = measure(torch.device("cpu"), args)
    return finish({"skipped": "no CUDA", "cpu_dry_run": dry_run}, failures, as_json=args.json,
                  device="cpu", quick=True)


if __name__ == "__main__":
    sys.exit(main())
