"""The test protocol of one rl task, run by the harness so every algorithm faces the same
tasks and the same noise: the algorithm's current policy collects ``shots`` support
trajectories (exploration noise, and random initial states where the family has them,
seeded by the task's identity and role ``support``), the
algorithm adapts on them (``adapt_policy``), and the adapted policy is scored by the mean
return of ``queries`` fresh trajectories (role ``query``).

An algorithm of the ``rl`` task type has a ``policy`` (an ``nn.Module`` returning the mean
and standard deviation of a Gaussian over actions) and ``adapt_policy(support)``, which
returns the adapted weights by name (None: the policy as it is); ``setup.environment`` is
the task family's environment for its own training rollouts.

The adaptation curve (``curve_steps = K``, Finn et al. 2017, figure 4): the query return of
the unadapted policy (step 0), then after each of K adaptation steps, step k adapting the
weights of step k-1 (``adapt_policy(support, params)``) on fresh support trajectories of
that policy (role ``support`` for step 1, ``support-k`` after). Every step is scored on the
same query noise, so steps differ by the policy only; step 1 is the standard protocol's score.
"""

from __future__ import annotations

import inspect
from typing import Any

from metabench.protocol import Episode, EpisodeId, TaskSpec
from metabench.rl.envs import VectorEnv
from metabench.rl.rollout import Trajectories, exploration_noise, rollout, start_generator

SUPPORT, QUERY = "support", "query"


def task_id(identity: EpisodeId | None) -> str:
    """A task's identity as the text its noise is seeded from."""
    if identity is None:
        raise ValueError("an rl episode needs its identity to seed its noise")
    return f"{identity.dataset}/{identity.split}/{identity.seed}/{identity.index}"


def task_rollout(env: VectorEnv, policy: Any, episode: Episode, count: int, role: str,
                 params: Any = None) -> Trajectories:
    """``count`` trajectories of ``policy`` on the episode's task, their exploration noise
    and (for families with random initial states) their starts seeded by the role."""
    task = episode.support_x[0]
    rows = task[None].expand(count, -1)
    identity = task_id(episode.identity)
    noise = exploration_noise(env, [identity], role, count, task.device)
    start = env.reset(rows, start_generator(identity, role))
    return rollout(env, policy, rows, noise.to(task.dtype), params, start)


def adapted_return(algorithm: Any, episode: Episode, spec: TaskSpec, env: VectorEnv) -> float:
    """The protocol of one test task: support rollouts, adaptation, query return."""
    support = task_rollout(env, algorithm.policy, episode, spec.shots, SUPPORT)
    params = algorithm.adapt_policy(support)
    query = task_rollout(env, algorithm.policy, episode, spec.queries, QUERY, params)
    return float(query.returns.mean())


def adaptation_curve(algorithm: Any, episode: Episode, spec: TaskSpec, env: VectorEnv,
                     steps: int) -> list[float]:
    """The mean query return after 0, 1, ..., ``steps`` adaptation steps on one task."""
    params = None
    curve = [_query_return(algorithm, episode, spec, env, params)]
    for step in range(1, steps + 1):
        role = SUPPORT if step == 1 else f"{SUPPORT}-{step}"
        support = task_rollout(env, algorithm.policy, episode, spec.shots, role, params)
        params = (algorithm.adapt_policy(support) if params is None
                  else algorithm.adapt_policy(support, params))
        curve.append(_query_return(algorithm, episode, spec, env, params))
    return curve


def check_continued_adaptation(algorithm: Any) -> bool:
    """Whether ``algorithm.adapt_policy`` takes the weights to continue from (``params``)."""
    try:
        parameters = inspect.signature(algorithm.adapt_policy).parameters
    except (TypeError, ValueError):
        return False
    return "params" in parameters or len(parameters) >= 2


def _query_return(algorithm: Any, episode: Episode, spec: TaskSpec, env: VectorEnv,
                  params: Any) -> float:
    query = task_rollout(env, algorithm.policy, episode, spec.queries, QUERY, params)
    return float(query.returns.mean())
