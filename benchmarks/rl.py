"""Meta-RL environment speed: agent-steps per second of the vectorised environments.

The target (issue 16): at least one million agent-steps per second for a batch of 1,000
navigation2d trajectories on 2 CPU cores. Two figures per environment, each the median of
``--repeats`` full horizons:

- ``env_steps_per_s``: ``env.step`` alone on precomputed actions (the dynamics);
- ``rollout_steps_per_s``: a whole seeded rollout with Finn et al.'s policy (two hidden
  layers of 100 units), which adds the policy's forward pass per step.

    python benchmarks/rl.py --json

and ``maml_rl_meta_step_s``: one MAML-RL meta-step on navigation2d with Finn et al.'s
sizes (20 tasks, 20 trajectories each for support and query, horizon 100, one inner step
of 0.1): collect the support, adapt, collect the query with the adapted weights, the
second-order meta-gradient and an Adam step; the median of ``--meta-repeats``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from metabench.rl.envs import ENVIRONMENTS
from metabench.rl.maml import adapt, query_loss
from metabench.rl.rollout import GaussianPolicy, exploration_noise, rollout

TARGET_STEPS_PER_S = 1_000_000


def env_rate(name: str, batch: int, repeats: int) -> float:
    """Median agent-steps per second of ``env.step`` over one horizon."""
    env = ENVIRONMENTS[name]()
    generator = torch.Generator().manual_seed(0)
    tasks = env.sample_tasks(batch, generator)
    actions = torch.randn(env.horizon, batch, env.action_dim, generator=generator)
    rates = []
    for _ in range(repeats):
        states = env.reset(tasks)
        start = time.perf_counter()
        for step in range(env.horizon):
            states, _, _ = env.step(states, tasks, actions[step])
        rates.append(env.horizon * batch / (time.perf_counter() - start))
    return statistics.median(rates)


def rollout_rate(name: str, batch: int, repeats: int) -> float:
    """Median agent-steps per second of a seeded rollout with a Gaussian MLP policy."""
    env = ENVIRONMENTS[name]()
    tasks = env.sample_tasks(batch, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    policy = GaussianPolicy(env.observation_dim, env.action_dim)
    noise = exploration_noise(env, ["bench"], "support", per_task=batch)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        rollout(env, policy, tasks, noise)
        rates.append(env.horizon * batch / (time.perf_counter() - start))
    return statistics.median(rates)


def meta_step_seconds(repeats: int, tasks: int = 20, per_task: int = 20) -> float:
    """Median seconds of one second-order MAML-RL meta-step on navigation2d."""
    env = ENVIRONMENTS["navigation2d"]()
    torch.manual_seed(0)
    policy = GaussianPolicy(env.observation_dim, env.action_dim)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    times = []
    for repeat in range(repeats):
        goals = env.sample_tasks(tasks, torch.Generator().manual_seed(repeat))
        ids = [f"{repeat}/{k}" for k in range(tasks)]
        start = time.perf_counter()
        losses = []
        for index, task_id in enumerate(ids):  # as MAMLRL.meta_train_step: one adaptation
            rows = goals[index:index + 1].repeat(per_task, 1)
            support = rollout(env, policy, rows, exploration_noise(env, [task_id], "support", per_task))
            adapted = adapt(policy, support, 0.1)
            query = rollout(env, policy, rows, exploration_noise(env, [task_id], "query", per_task),
                            {k: v.detach() for k, v in adapted.items()})
            losses.append(query_loss(policy, adapted, query))
        optimizer.zero_grad()
        torch.stack(losses).mean().backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--meta-repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results: dict[str, object] = {"batch": args.batch, "repeats": args.repeats,
                                  "target_steps_per_s": TARGET_STEPS_PER_S}
    for name in ENVIRONMENTS:
        steps = env_rate(name, args.batch, args.repeats)
        results[name] = {"env_steps_per_s": round(steps),
                         "rollout_steps_per_s": round(rollout_rate(name, args.batch, args.repeats)),
                         "meets_target": steps >= TARGET_STEPS_PER_S}
    results["maml_rl_meta_step_s"] = round(meta_step_seconds(args.meta_repeats), 4)
    results["context"] = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                          "cpus": os.cpu_count(), "load_1min": os.getloadavg()[0],
                          "python": platform.python_version()}
    print(json.dumps(results, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
