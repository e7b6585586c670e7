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

With the ``mujoco`` extra, ``halfcheetah``: Finn et al.'s half-cheetah velocity task for a
batch of ``--cheetah-batch`` (40) environments over the horizon of 200 steps:
``env_steps_per_s`` (``mujoco.rollout``, the stepping metabench uses) and
``rollout_steps_per_s`` (with the policy), beside the alternatives measured on the same
actions: ``mjdata_loop_steps_per_s`` (one MjData per environment stepped in a Python loop)
and ``gymnasium_vector_steps_per_s`` (Gymnasium's synchronous vector API over HalfCheetah-v5);
and ``maml_rl_meta_step_s``, one second-order MAML-RL meta-step at Finn et al.'s sizes
(``--cheetah-tasks`` 40 tasks, ``--cheetah-trajectories`` 20 each for support and query;
cbfinn/maml_rl ``maml_examples/cluster_maml_trpo_cheetah.py``).

``--quick`` measures every figure on tiny sizes (the test suite runs it). The script exits
non-zero when a timed figure is not a positive finite number.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
from _shared import add_common_arguments, finish

from metabench.rl.envs import ENVIRONMENTS, VectorEnv
from metabench.rl.maml import adapt, query_loss
from metabench.rl.rollout import GaussianPolicy, exploration_noise, rollout, start_generator

TARGET_STEPS_PER_S = 1_000_000


def env_rate(name: str, batch: int, repeats: int, env: VectorEnv | None = None) -> float:
    """Median agent-steps per second of ``env.step`` over one horizon."""
    env = env if env is not None else ENVIRONMENTS[name]()
    generator = torch.Generator().manual_seed(0)
    tasks = env.sample_tasks(batch, generator)
    actions = torch.randn(env.horizon, batch, env.action_dim, generator=generator)
    rates = []
    for _ in range(repeats):
        states = env.reset(tasks, generator)
        start = time.perf_counter()
        for step in range(env.horizon):
            states, _, _ = env.step(states, tasks, actions[step])
        rates.append(env.horizon * batch / (time.perf_counter() - start))
    return statistics.median(rates)


def rollout_rate(name: str, batch: int, repeats: int, env: VectorEnv | None = None) -> float:
    """Median agent-steps per second of a seeded rollout with a Gaussian MLP policy."""
    env = env if env is not None else ENVIRONMENTS[name]()
    tasks = env.sample_tasks(batch, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    policy = GaussianPolicy(env.observation_dim, env.action_dim)
    noise = exploration_noise(env, ["bench"], "support", per_task=batch)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        rollout(env, policy, tasks, noise, start=env.reset(tasks, start_generator("bench", "s")))
        rates.append(env.horizon * batch / (time.perf_counter() - start))
    return statistics.median(rates)


def meta_step_seconds(repeats: int, tasks: int = 20, per_task: int = 20,
                      env: VectorEnv | None = None) -> float:
    """Median seconds of one second-order MAML-RL meta-step (navigation2d by default)."""
    env = env if env is not None else ENVIRONMENTS["navigation2d"]()
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
            support = rollout(env, policy, rows, exploration_noise(env, [task_id], "support", per_task),
                              start=env.reset(rows, start_generator(task_id, "support")))
            adapted = adapt(policy, support, 0.1)
            query = rollout(env, policy, rows, exploration_noise(env, [task_id], "query", per_task),
                            {k: v.detach() for k, v in adapted.items()},
                            start=env.reset(rows, start_generator(task_id, "query")))
            losses.append(query_loss(policy, adapted, query))
        optimizer.zero_grad()
        torch.stack(losses).mean().backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mjdata_loop_rate(batch: int, repeats: int) -> float:
    """Median env-steps per second of ``env.step`` when each row is stepped in a Python
    loop over one MjData (set its state, five physics steps, read it back): the same work
    and the same states as ``mujoco.rollout``, the alternative it was measured against."""
    import mujoco

    from metabench.rl.halfcheetah import HalfCheetahVel

    class LoopStepped(HalfCheetahVel):
        def simulate(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
            model, data, _ = self.physics()
            rows = np.ascontiguousarray(states.numpy(), dtype=np.float64)
            controls = actions.numpy().astype(np.float64)
            after = np.empty_like(rows)
            full = mujoco.mjtState.mjSTATE_FULLPHYSICS
            for row in range(rows.shape[0]):
                mujoco.mj_setState(model, data, rows[row], full)
                data.qacc_warmstart[:] = 0
                data.ctrl[:] = controls[row]
                mujoco.mj_step(model, data, self.frame_skip)
                mujoco.mj_getState(model, data, after[row], full)
            return torch.from_numpy(after)

    return env_rate("halfcheetah-vel", batch, repeats, LoopStepped())


def gymnasium_vector_rate(batch: int, repeats: int) -> float:
    """Median env-steps per second of Gymnasium's synchronous vector API over HalfCheetah-v5."""
    import gymnasium

    from metabench.rl.halfcheetah import quiet_mujoco

    with quiet_mujoco():
        envs = gymnasium.make_vec("HalfCheetah-v5", num_envs=batch, vectorization_mode="sync")
    actions = np.random.default_rng(0).uniform(-1, 1, (200, batch, 6))
    rates = []
    for repeat in range(repeats):
        envs.reset(seed=repeat)
        start = time.perf_counter()
        for step in range(200):
            envs.step(actions[step])
        rates.append(200 * batch / (time.perf_counter() - start))
    envs.close()
    return statistics.median(rates)


def halfcheetah_figures(batch: int, repeats: int, tasks: int, per_task: int,
                        meta_repeats: int) -> dict[str, Any]:
    """The half-cheetah figures (needs the mujoco extra)."""
    from metabench.rl.halfcheetah import HalfCheetahVel

    env = HalfCheetahVel()
    return {"batch": batch,
            "env_steps_per_s": round(env_rate(env.name, batch, repeats, env)),
            "rollout_steps_per_s": round(rollout_rate(env.name, batch, repeats, env)),
            "mjdata_loop_steps_per_s": round(mjdata_loop_rate(batch, repeats)),
            "gymnasium_vector_steps_per_s": round(gymnasium_vector_rate(batch, repeats)),
            "meta_step_tasks": tasks, "meta_step_trajectories": per_task,
            "maml_rl_meta_step_s": round(meta_step_seconds(meta_repeats, tasks, per_task, env), 3)}


def timed_figures(results: dict[str, Any]) -> list[float]:
    """Every timed number of the results (rates and seconds), for the final check."""
    numbers: list[float] = []
    for key, value in results.items():
        if isinstance(value, dict) and key != "context":
            numbers += timed_figures(value)
        elif key.endswith(("_per_s", "_s")) and key != "target_steps_per_s":
            numbers.append(float(value))
    return numbers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--meta-repeats", type=int, default=3)
    parser.add_argument("--cheetah-batch", type=int, default=40)
    parser.add_argument("--cheetah-tasks", type=int, default=40)
    parser.add_argument("--cheetah-trajectories", type=int, default=20)
    parser.add_argument("--cheetah-meta-repeats", type=int, default=1)
    add_common_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats, args.meta_repeats = 50, 1, 1
        args.cheetah_batch, args.cheetah_tasks, args.cheetah_trajectories = 4, 2, 2
    results: dict[str, Any] = {"batch": args.batch, "repeats": args.repeats,
                               "target_steps_per_s": TARGET_STEPS_PER_S}
    for name in ENVIRONMENTS:
        steps = env_rate(name, args.batch, args.repeats)
        results[name] = {"env_steps_per_s": round(steps),
                         "rollout_steps_per_s": round(rollout_rate(name, args.batch, args.repeats)),
                         "meets_target": steps >= TARGET_STEPS_PER_S}
    tasks, per_task = (2, 2) if args.quick else (20, 20)
    results["maml_rl_meta_step_s"] = round(meta_step_seconds(args.meta_repeats, tasks, per_task), 4)
    if all(importlib.util.find_spec(name) for name in ("mujoco", "gymnasium")):
        results["halfcheetah"] = halfcheetah_figures(
            args.cheetah_batch, args.repeats, args.cheetah_tasks, args.cheetah_trajectories,
            args.cheetah_meta_repeats)
    else:
        results["halfcheetah"] = "skipped: the mujoco extra is not installed"
    figures = timed_figures(results)
    failures = [] if figures and all(math.isfinite(x) and x > 0 for x in figures) else [
        "a timed figure is not a positive number"]
    return finish(results, failures, as_json=args.json, quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())
