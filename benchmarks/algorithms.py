"""MAML speed: metabench's ``maml`` against learn2learn's, same data and initial weights.

(a) the meta-training step (Conv4, 5-way 1-shot 15-query, meta-batch 8, 1 inner step,
second order); (b) the time to evaluate 400 test episodes with 3 inner steps. Both
algorithms run in one process, interleaved chunk by chunk so that both see the same
machine load; the reported figures are medians over repeats. (c) ``algorithms``: registered
algorithms (``--algorithms``, default ``protonet,matchingnet``) with their default
hyperparameters on the same episodes: seconds per training step and per test episode.
(d) ``versus_learn2learn``: algorithms (``--versus``, default ``anil,metasgd``) against
their learn2learn counterpart written as its examples are (``MetaSGD``; ``MAML`` over the
head on backbone features for ANIL), same weights, batches (a) and episodes (b), interleaved:
``train_step_ratio`` and ``eval_speedup`` as above, test steps as each algorithm's default.

    python benchmarks/algorithms.py --json                 # (a) and (b): a few minutes
    python benchmarks/algorithms.py --json --extras        # also (c) and (d) at their defaults
    python benchmarks/algorithms.py --json --versus anil,metasgd --algorithms protonet
    python benchmarks/algorithms.py --json --device cuda --meta-batch 32
    python benchmarks/algorithms.py --json --variants      # also metabench ablations
    python benchmarks/algorithms.py --json --quick         # seconds; the test suite runs it

Prints ONE JSON object: ``device``, ``train_step_ratio`` (metabench time / learn2learn
time), ``eval_speedup`` (learn2learn time / metabench time), the raw times and the context;
exits 1 when a figure is not a positive finite number (an algorithm's error ends it with
its traceback, status 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from _shared import add_common_arguments, finish, positive
from torch import nn

from metabench import AlgorithmSetup, Episode, EpisodeBatch, TaskSpec, TrainBatches, registry
from metabench.algorithm import episodes_per_step, uses_episodes
from metabench.algorithm_helpers import build_model, task_loss, task_metrics, usable_for_autograd
from metabench.backbones import Conv4
from metabench.data.synthetic import SyntheticImages
from metabench.episodes import EpisodeSampler
from metabench.plugins import load_plugins
from metabench_plugins.learn2learn_ref import L2LMAML, import_learn2learn
from metabench_plugins.maml import MAML, MAMLConfig

#: Timed with --extras (and --quick): (c) and (d).
EXTRA_ALGORITHMS = "protonet,matchingnet,anil,metasgd,baseline,baseline-pp"
EXTRA_VERSUS = "anil,metasgd"

# Ablations of metabench's evaluation path, timed with --variants.
VARIANTS = {
    "metabench_eager": {"compile": False},
    "metabench_eager_nchw": {"compile": False, "channels_last": False},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--meta-batch", type=int, default=8)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--train-steps", type=int, default=1)
    parser.add_argument("--test-steps", type=int, default=3)
    parser.add_argument("--train-repeats", type=int, default=15, help="timed meta-training steps")
    parser.add_argument("--episodes", type=int, default=400, help="test episodes per evaluation")
    parser.add_argument("--eval-repeats", type=int, default=3, help="timed evaluations")
    parser.add_argument("--chunk", type=int, default=50, help="episodes per interleaved chunk")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--vmap", action="store_true", help="metabench adapts tasks with vmap")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="metabench evaluates with maml.compile (default: on)")
    parser.add_argument("--variants", action="store_true", help="also time metabench ablations")
    parser.add_argument("--batched-eval", action=argparse.BooleanOptionalAction, default=None,
                        help="metabench's predict_batch adapts episodes together with vmap "
                             "(default: off on the CPU, on elsewhere; not with --compile)")
    parser.add_argument("--algorithms", default="",
                        help="registered algorithms timed with their defaults (comma-separated; "
                        f"default none; --extras: {EXTRA_ALGORITHMS})")
    parser.add_argument("--plugin", action="append", default=[], help="load a plugin module (repeatable)")
    parser.add_argument("--versus", default="",
                        help="algorithms timed against their learn2learn counterpart (comma-separated; "
                        f"default none; --extras: {EXTRA_VERSUS})")
    parser.add_argument("--extras", action="store_true",
                        help="also (c) and (d) for the algorithms named above (many minutes on a CPU)")
    parser.add_argument("--seed", type=int, default=0)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.extras:
        args.algorithms = args.algorithms or EXTRA_ALGORITHMS
        args.versus = args.versus or EXTRA_VERSUS
    if args.quick:  # every part, tiny, without maml.compile (tens of seconds on a CPU)
        args.train_repeats, args.episodes, args.eval_repeats, args.chunk = 1, 4, 1, 2
        args.meta_batch, args.queries, args.compile = 2, 3, False
        args.algorithms = args.algorithms or EXTRA_ALGORITHMS
        args.versus = args.versus or EXTRA_VERSUS
    return args


def make_setup(spec: TaskSpec, device: torch.device, seed: int) -> AlgorithmSetup:
    """The same backbone weights for every algorithm built from it."""
    torch.manual_seed(seed)
    return AlgorithmSetup(Conv4((1, 28, 28)), spec, device, seed=seed, input_shape=(1, 28, 28))


def build(kind: type, spec: TaskSpec, args: argparse.Namespace, **overrides: Any) -> Any:
    config = MAMLConfig(
        inner_lr=0.4, train_steps=args.train_steps, test_steps=args.test_steps,
        meta_batch_size=args.meta_batch, channels_last=kind is MAML,
    )
    if kind is MAML:
        config = dataclasses.replace(config, vmap_tasks=args.vmap, compile=args.compile)
        config = dataclasses.replace(config, **overrides)
    algorithm = kind(make_setup(spec, torch.device(args.device), args.seed), config)
    if kind is MAML:
        algorithm.batched_eval = args.batched_eval
    return algorithm


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], Any]) -> float:
    synchronize(device)
    start = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - start


def train_times(
    algorithms: dict[str, Any], batches: list[EpisodeBatch], device: torch.device, warmup: int
) -> dict[str, list[float]]:
    """Seconds per meta-training step, the algorithms alternating on each batch."""
    times: dict[str, list[float]] = {name: [] for name in algorithms}
    for i, batch in enumerate(batches):
        for name, algorithm in algorithms.items():
            seconds = timed(device, lambda a=algorithm, b=batch: a.meta_train_step(b))
            if i >= warmup:
                times[name].append(seconds)
    return times


def eval_times(
    algorithms: dict[str, Any], episodes: list[Episode], device: torch.device,
    repeats: int, chunk: int,
) -> dict[str, list[float]]:
    """Seconds to predict every episode, per repeat, interleaving chunks of episodes."""
    times: dict[str, list[float]] = {name: [] for name in algorithms}
    for _ in range(repeats):
        totals = dict.fromkeys(algorithms, 0.0)
        for start in range(0, len(episodes), chunk):
            part = episodes[start : start + chunk]
            for name, algorithm in algorithms.items():
                totals[name] += timed(device, lambda a=algorithm, p=part: predict_all(a, p))
        for name, total in totals.items():
            times[name].append(total)
    return times


def predict_all(algorithm: Any, episodes: list[Episode]) -> Any:
    """Predictions of ``episodes``: in one ``predict_batch`` call where the algorithm batches
    them (its ``batched_eval``; unset: off the CPU), else one ``predict`` per episode (on the
    CPU predict_batch loops over predict, and slices of a stacked batch cost a little more)."""
    batched = getattr(algorithm, "batched_eval", None)
    if batched is None:
        batched = episodes[0].support_x.device.type != "cpu"
    if batched and hasattr(algorithm, "predict_batch"):
        return algorithm.predict_batch(EpisodeBatch.stack(episodes))
    return [algorithm.predict(e) for e in episodes]


def check_same_predictions(algorithms: dict[str, Any], episode: Episode) -> float:
    """Largest difference between the algorithms' query logits on one episode."""
    outputs = [a.predict(episode).float() for a in algorithms.values()]
    return max(float((o - outputs[0]).abs().max()) for o in outputs)


def registered_times(
    names: list[str], spec: TaskSpec, data: SyntheticImages, episodes: list[Episode],
    args: argparse.Namespace, device: torch.device,
) -> dict[str, Any]:
    """Median seconds per training step (default hyperparameters, so each algorithm's own
    meta-batch size) and per test episode of registered algorithms.

    An algorithm that trains on mini-batches (``uses_episodes = False``: ``baseline``,
    ``baseline-pp``) draws them from its setup's ``train_batches`` inside the timed step, as
    in a run; its ``episodes_per_step`` is what the runner charges a step (images drawn /
    ``ways * (shots + queries)``)."""
    built, sources = {}, {}
    for name in names:
        entry = registry.get("algorithm", name)
        setup = make_setup(spec, device, args.seed)
        setup.train_batches = sources[name] = TrainBatches(data, args.seed, device)
        built[name] = entry.factory(setup, entry.defaults)
    train_s: dict[str, list[float]] = {}
    charged: dict[str, float] = {}
    for name, algorithm in built.items():
        if uses_episodes(algorithm):
            train_spec = algorithm.train_task_spec(spec) if hasattr(algorithm, "train_task_spec") else spec
            sampler = EpisodeSampler(data, "train", train_spec, seed=args.seed, device=device)
            size = charged[name] = episodes_per_step(algorithm)
            batches = [sampler.batch(range(i * size, (i + 1) * size)) for i in range(args.train_repeats + 2)]
        else:  # the runner hands it no episodes
            batches = [EpisodeBatch(*[torch.empty(0)] * 4)] * (args.train_repeats + 2)
        train_s |= train_times({name: algorithm}, batches, device, warmup=2)
        if not uses_episodes(algorithm):
            images = sources[name].drawn / len(batches)
            charged[name] = round(images / (spec.ways * (spec.shots + spec.queries)), 4)
    eval_times(built, episodes[: args.chunk], device, 1, args.chunk)  # warm-up
    eval_s = eval_times(built, episodes, device, args.eval_repeats, args.chunk)
    return {
        name: {
            "episodes_per_step": charged[name],
            "train_step_s": round(statistics.median(train_s[name]), 5),
            "predict_s_per_episode": round(statistics.median(eval_s[name]) / len(episodes), 6),
            "eval_s": statistics.median(eval_s[name]),
        }
        for name, algorithm in built.items()
    }


class L2LLoop:
    """learn2learn as its examples write it: per task, ``features`` once per set (ANIL's
    backbone; identity otherwise), then clone the wrapped learner, adapt, backward."""

    def __init__(self, learner: Any, features: nn.Module, hparams: Any, task_type: str) -> None:
        self.learner, self.features, self.hparams, self.task_type = learner, features, hparams, task_type
        parameters = [*learner.parameters(), *features.parameters()]
        self.optimizer = torch.optim.Adam(parameters, lr=hparams.meta_lr)

    def meta_train_step(self, batch: EpisodeBatch) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        outputs = []
        for episode in batch:
            output = self._adapted(episode, self.hparams.train_steps, torch.enable_grad)
            (task_loss(self.task_type, output, episode.query_y) / len(batch)).backward()
            outputs.append(output.detach())
        self.optimizer.step()
        return task_metrics(self.task_type, torch.cat(outputs), batch.query_y.flatten(0, 1))

    def predict(self, episode: Episode) -> torch.Tensor:
        return self._adapted(episode, self.hparams.test_steps, torch.no_grad)

    def _adapted(self, episode: Episode, steps: int, query_mode: Callable[[], Any]) -> torch.Tensor:
        with torch.enable_grad():
            support_x = usable_for_autograd(episode.support_x)
            support_y = usable_for_autograd(episode.support_y)
            support, learner = self.features(support_x), self.learner.clone()
            for _ in range(steps):
                learner.adapt(task_loss(self.task_type, learner(support), support_y))
        with query_mode():
            return learner(self.features(episode.query_x))


def learn2learn_counterpart(name: str, ours: Any, setup: AlgorithmSetup) -> L2LLoop:
    """learn2learn's version of ``ours`` (anil, foanil or metasgd), from the same weights."""
    l2l = import_learn2learn()
    model, hparams = build_model(setup).train(), ours.hparams
    if name == "metasgd":
        lrs = nn.ParameterList(nn.Parameter(lr.detach().clone()) for lr in ours.lrs)
        learner = l2l.algorithms.MetaSGD(model, lrs=lrs, first_order=hparams.first_order)
        return L2LLoop(learner, nn.Identity(), hparams, setup.task_type)
    head = l2l.algorithms.MAML(model.head, lr=ours.inner_lr, first_order=hparams.first_order)
    return L2LLoop(head, model.backbone, hparams, setup.task_type)


def versus_learn2learn(
    names: list[str], spec: TaskSpec, batches: list[EpisodeBatch], episodes: list[Episode],
    args: argparse.Namespace, device: torch.device,
) -> dict[str, Any]:
    """Each algorithm against its learn2learn counterpart, interleaved as in (a) and (b)."""
    results = {}
    for name in names:
        entry = registry.get("algorithm", name)
        hparams = dataclasses.replace(entry.defaults, meta_batch_size=args.meta_batch,
                                      train_steps=args.train_steps, vmap_tasks=args.vmap)
        ours = entry.factory(make_setup(spec, device, args.seed), hparams)
        ours.batched_eval = args.batched_eval
        pair = {"metabench": ours,
                "learn2learn": learn2learn_counterpart(name, ours, make_setup(spec, device, args.seed))}
        difference = check_same_predictions(pair, episodes[0])
        train_s = train_times(pair, batches, device, warmup=2)
        eval_times(pair, episodes[: args.chunk], device, 1, args.chunk)
        eval_s = eval_times(pair, episodes, device, args.eval_repeats, args.chunk)
        train_median = {k: statistics.median(t) for k, t in train_s.items()}
        eval_median = {k: statistics.median(t) for k, t in eval_s.items()}
        results[name] = {
            "train_step_ratio": round(train_median["metabench"] / train_median["learn2learn"], 4),
            "eval_speedup": round(eval_median["learn2learn"] / eval_median["metabench"], 4),
            "train_step_s": {"median": train_median, "raw": train_s},
            "eval_s": {"median": eval_median, "raw": eval_s, "episodes": len(episodes)},
            "max_logit_difference": difference,
            "test_steps": hparams.test_steps,
        }
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    # matchingnet until its entry point is installed (loading a module twice is a no-op).
    load_plugins(["metabench_plugins.matchingnet", "metabench_plugins.anil",
                  "metabench_plugins.metasgd", "metabench_plugins.baseline", *args.plugin])
    names = [name for name in args.algorithms.split(",") if name]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = TaskSpec(args.ways, args.shots, args.queries)
    data = SyntheticImages(classes=(64, 16, 20), examples=20)
    train = EpisodeSampler(data, "train", spec, seed=args.seed, device=device)
    test = EpisodeSampler(data, "test", spec, seed=args.seed, device=device)

    warmup = 2
    batches = [train.batch(range(i * args.meta_batch, (i + 1) * args.meta_batch))
               for i in range(args.train_repeats + warmup)]
    trainers = {"metabench": build(MAML, spec, args), "learn2learn": build(L2LMAML, spec, args)}
    train_s = train_times(trainers, batches, device, warmup)

    episodes = [test.episode(i) for i in range(args.episodes)]
    evaluators = {"metabench": build(MAML, spec, args), "learn2learn": build(L2LMAML, spec, args)}
    if args.variants:
        evaluators |= {name: build(MAML, spec, args, **o) for name, o in VARIANTS.items()}
    # The first call compiles (maml.compile): timed apart, then a warm-up chunk.
    first_call_s = {name: timed(device, lambda a=a: a.predict(episodes[0]))
                    for name, a in evaluators.items()}
    difference = check_same_predictions(evaluators, episodes[0])
    eval_times(evaluators, episodes[: args.chunk], device, 1, args.chunk)
    eval_s = eval_times(evaluators, episodes, device, args.eval_repeats, args.chunk)

    registered = registered_times(names, spec, data, episodes, args, device)
    versus_names = [n for n in args.versus.split(",") if n]
    versus = versus_learn2learn(versus_names, spec, batches, episodes, args, device)

    train_median = {name: statistics.median(t) for name, t in train_s.items()}
    eval_median = {name: statistics.median(t) for name, t in eval_s.items()}
    return {
        "device": describe_device(device),
        "train_step_ratio": round(train_median["metabench"] / train_median["learn2learn"], 4),
        "eval_speedup": round(eval_median["learn2learn"] / eval_median["metabench"], 4),
        "train_step_s": {"median": train_median, "raw": train_s},
        "eval_speedup_with_first_call": round(
            eval_median["learn2learn"] / (eval_median["metabench"] + first_call_s["metabench"]), 4
        ),
        "eval_s": {"median": eval_median, "raw": eval_s, "episodes": args.episodes},
        "first_predict_s": first_call_s,
        "max_logit_difference": difference,
        "algorithms": registered,
        "versus_learn2learn": versus,
        "settings": {
            "ways": args.ways, "shots": args.shots, "queries": args.queries,
            "meta_batch": args.meta_batch, "train_steps": args.train_steps,
            "test_steps": args.test_steps, "vmap": args.vmap, "compile": args.compile,
            "batched_eval": args.batched_eval,
            "threads": torch.get_num_threads(), "device": str(device),
            "torch": torch.__version__, "python": platform.python_version(),
            "episodes": args.episodes, "eval_repeats": args.eval_repeats,
            "train_repeats": args.train_repeats, "algorithms": names, "versus": versus_names,
        },
    }


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def timed_figures(result: dict[str, Any]) -> dict[str, Any]:
    """Every median time of the result by name, for the check that each is above zero."""
    figures = {f"train_step_s.median.{k}": v for k, v in result["train_step_s"]["median"].items()}
    figures |= {f"eval_s.median.{k}": v for k, v in result["eval_s"]["median"].items()}
    for name, row in result["algorithms"].items():
        figures |= {f"algorithms.{name}.{k}": row[k] for k in ("train_step_s", "eval_s")}
    for name, row in result["versus_learn2learn"].items():
        figures |= {f"versus_learn2learn.{name}.{k}": row[k] for k in ("train_step_ratio", "eval_speedup")}
    return figures


if __name__ == "__main__":
    arguments = sys.argv[1:]
    result = main(arguments)
    if "--json" not in arguments:
        print(f"train_step_ratio={result['train_step_ratio']} eval_speedup={result['eval_speedup']}",
              file=sys.stderr)
    sys.exit(finish(result, positive(timed_figures(result)), device=result["settings"]["device"],
                    quick="--quick" in arguments))
