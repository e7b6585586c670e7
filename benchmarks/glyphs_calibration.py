"""Calibration of the ``glyphs`` data set: does it separate a trained learner from a random one?

A Conv4 Prototypical Network is scored on 600 test episodes (5-way 1-shot and 5-shot,
15 queries per class) with its random initial weights, then meta-trained on 5-way 1-shot
episodes with 15 queries per class, one episode per step (ProtoNet defaults: Adam 1e-3),
for ``--seconds`` of wall-clock time or ``--steps`` steps, and scored again. Issue 3 asks
for random < 50% and trained (2 minutes on a 2-core CPU) within 80-93% at 5-way 1-shot.

    python benchmarks/glyphs_calibration.py --json                 # 120 s of training
    python benchmarks/glyphs_calibration.py --steps 2000 --json    # a fixed step count

Without ``--cache-dir`` the set is built in a fresh temporary folder, so the build time
is always measured; pass a folder to reuse a cached build. ``--quick`` trains 5 steps and
scores 10 episodes of 5-way 1-shot from the shared cache (``$METABENCH_CACHE``, else
~/.cache/metabench; the tests run it). Exits 1 when a figure is not finite
or training took no step.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _shared import add_common_arguments, finish, positive

from metabench.algorithm import AlgorithmSetup
from metabench.backbones import Conv4
from metabench.data.glyphs import Glyphs, cache_root
from metabench.episodes import EpisodeSampler
from metabench.protocol import SPLITS, TaskSpec
from metabench_plugins.protonet import ProtoNet, ProtoNetConfig

# 5-way 1-shot ProtoNet steps that fit in 120 s with torch.set_num_threads(2) on the 2-core
# development machine when nothing else ran (2,001 measured, load average 2.0 = these two
# threads); --steps with it gives a budget that does not depend on how busy the machine is.
STEPS_IN_TWO_MINUTES = 2000
TRAIN_SPEC = TaskSpec(ways=5, shots=1, queries=15)
TEST_SPECS = (TaskSpec(ways=5, shots=1, queries=15), TaskSpec(ways=5, shots=5, queries=15))


def evaluate(model: ProtoNet, dataset: Glyphs, spec: TaskSpec, episodes: int, seed: int) -> dict:
    """Mean query accuracy over ``episodes`` test episodes, with a 95% normal interval."""
    sampler = EpisodeSampler(dataset, "test", spec, seed=seed)
    scores = []
    for index in range(episodes):
        episode = sampler.episode(index)
        logits = model.predict(episode)
        scores.append(float((logits.argmax(-1) == episode.query_y).float().mean()))
    values = torch.tensor(scores, dtype=torch.float64)
    half_width = 1.96 * float(values.std()) / math.sqrt(len(values))
    return {"accuracy": round(float(values.mean()), 4), "ci95": round(half_width, 4)}


def evaluate_all(
    model: ProtoNet, dataset: Glyphs, specs: tuple[TaskSpec, ...], episodes: int, seed: int
) -> dict:
    """Accuracy at every spec of ``specs``."""
    return {spec.label: evaluate(model, dataset, spec, episodes, seed) for spec in specs}


def train(model: ProtoNet, dataset: Glyphs, seconds: float, steps: int | None, seed: int) -> dict:
    """Meta-train on 5-way 1-shot train episodes for ``steps`` steps or ``seconds`` seconds."""
    sampler = EpisodeSampler(dataset, "train", TRAIN_SPEC, seed=seed)
    start, cpu, taken, loss = time.perf_counter(), time.process_time(), 0, float("nan")
    while (taken < steps) if steps is not None else (time.perf_counter() - start < seconds):
        loss = model.meta_train_step(sampler.batch([taken]))["loss"]
        taken += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "steps": taken,
        "seconds": round(elapsed, 1),
        "cpu_seconds": round(cpu, 1),
        "steps_per_second": round(taken / elapsed, 2),
        "final_loss": round(loss, 4),
        "spec": f"{TRAIN_SPEC.label} {TRAIN_SPEC.queries} queries per class, 1 episode per step",
    }


def load_dataset(cache_dir: Path | None) -> tuple[Glyphs, float, bool]:
    """The glyph set (built or read from the cache), the seconds it took, whether it was built."""
    dataset = Glyphs(cache_dir=cache_dir)
    start = time.perf_counter()
    dataset.arrays  # noqa: B018  (builds or loads)
    return dataset, time.perf_counter() - start, dataset.build_seconds is not None


def calibrate(
    seconds: float = 120.0,
    steps: int | None = None,
    episodes: int = 600,
    seed: int = 0,
    threads: int = 2,
    cache_dir: Path | None = None,
    specs: tuple[TaskSpec, ...] = TEST_SPECS,
) -> dict[str, Any]:
    """Run the whole calibration and return its figures."""
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="glyphs-calibration-") as scratch:
        dataset, ready_seconds, built = load_dataset(cache_dir or Path(scratch))
        torch.manual_seed(seed)
        backbone = Conv4(dataset.input_shape)
        setup = AlgorithmSetup(backbone, TRAIN_SPEC, torch.device("cpu"), seed, dataset.input_shape)
        model = ProtoNet(setup, ProtoNetConfig())
        random_scores = evaluate_all(model, dataset, specs, episodes, seed)
        training = train(model, dataset, seconds, steps, seed)
        trained_scores = evaluate_all(model, dataset, specs, episodes, seed)
    return {
        "dataset": "glyphs",
        "classes": {split: dataset.split(split).num_classes for split in SPLITS},
        "build_seconds" if built else "cache_load_seconds": round(ready_seconds, 2),
        "threads": threads,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "test_episodes": episodes,
        "random": random_scores,
        "train": training,
        "trained": trained_scores,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="training wall-clock budget")
    parser.add_argument("--steps", type=int, default=None, help="train this many steps instead")
    parser.add_argument("--episodes", type=int, default=600, help="test episodes per spec")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--cache-dir", type=Path, default=None, help="reuse a cached build")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    specs = TEST_SPECS
    if args.quick:
        args.steps, args.episodes, specs = 5, 10, TEST_SPECS[:1]
        args.cache_dir = args.cache_dir or cache_root()  # the shared cache: no new build
    result = calibrate(args.seconds, args.steps, args.episodes, args.seed, args.threads,
                       args.cache_dir, specs)
    training = result["train"]
    failures = positive({"train.steps": training["steps"],
                         "train.steps_per_second": training["steps_per_second"]})
    return finish(result, failures, as_json=args.json, quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())
