"""Scoring an algorithm on episodes: checked predictions, per-episode accuracy or MSE and loss.

Used by the runner for validation and test; batches of episodes are scored one at a time
so that nothing per-episode outlives its batch. An algorithm with the optional
``predict_batch(batch)`` predicts a batch of episodes of one shape in one call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from metabench.algorithm import Algorithm
from metabench.episodes import EpisodeSampler
from metabench.protocol import CLASSIFICATION, RL, Episode, EpisodeBatch, TaskSpec
from metabench.records import EpisodeRow

# Episodes built per sampler call when evaluating (vectorised sampling, bounded memory).
EVAL_CHUNK = 50


class CellFailed(Exception):
    """Raised inside a cell for a failure the harness detects itself (NaN loss, bad shapes)."""


class StepTimer(Protocol):
    """Times the block it encloses as ``count`` test steps (one per episode predicted)."""

    def __call__(self, count: int = 1) -> AbstractContextManager[Any]: ...


def _untimed(count: int = 1) -> AbstractContextManager[Any]:
    return nullcontext()


def evaluate_batch(algorithm: Algorithm, batch: EpisodeBatch, spec: TaskSpec,
              step: StepTimer = _untimed,
              env: Any = None, curve_steps: int = 0) -> dict[str, np.ndarray]:
    """Scores of a batch of episodes, each prediction inside ``step()`` (for timing); rl
    tasks run the harness's rollout protocol in ``env`` (:mod:`metabench.rl.protocol`),
    scored after 0 to ``curve_steps`` adaptation steps too when it is set (``curve``).
    An algorithm with ``predict_batch`` predicts the whole batch (episodes of one shape) in
    one call, timed as ``len(batch)`` steps.

    Scored batch by batch so that no per-episode output outlives its batch: thousands of
    small tensors kept between the large transient activations fragmented the heap (RSS
    grew by gigabytes over 1,000 channels-last episodes).
    """
    if spec.task_type == RL:
        return _rl_scores(algorithm, batch, spec, step, env, curve_steps)
    if hasattr(algorithm, "predict_batch") and not spec.variable:
        with step(len(batch)):
            stacked = checked_batch_prediction(algorithm, batch, spec)
        return episode_scores(stacked, batch.query_y, spec)
    outputs = []
    for episode in batch:
        with step():
            outputs.append(checked_prediction(algorithm, episode, spec))
    if spec.variable:  # episodes of different sizes: scored one by one
        scores = [episode_scores(out[None], e.query_y[None], spec)
                  for out, e in zip(outputs, batch, strict=True)]
        return {key: np.concatenate([s[key] for s in scores]) for key in scores[0]}
    return episode_scores(torch.stack(outputs), batch.query_y, spec)


def _rl_scores(algorithm: Algorithm, batch: EpisodeBatch, spec: TaskSpec,
               step: StepTimer, env: Any,
               curve_steps: int) -> dict[str, np.ndarray]:
    from metabench.rl.protocol import adaptation_curve, adapted_return, check_continued_adaptation

    for member in ("policy", "adapt_policy"):
        if not hasattr(algorithm, member):
            raise CellFailed(f"the algorithm has no '{member}': an rl algorithm needs a policy "
                             "and adapt_policy(support)")
    if curve_steps > 1 and not check_continued_adaptation(algorithm):
        raise CellFailed("curve_steps > 1 needs adapt_policy(support, params) to continue "
                         "from adapted weights; this algorithm's adapt_policy takes support only")
    returns, curves = [], []
    for episode in batch:
        with step():
            if curve_steps:
                curves.append(adaptation_curve(algorithm, episode, spec, env, curve_steps))
                returns.append(curves[-1][1])
            else:
                returns.append(adapted_return(algorithm, episode, spec, env))
    values = np.array(returns, dtype=np.float64)
    scores = {"avg_return": values, "loss": -values}
    if curves:
        scores["curve"] = np.array(curves, dtype=np.float64)
    return scores


def checked_prediction(algorithm: Algorithm, episode: Episode, spec: TaskSpec) -> Tensor:
    """``algorithm.predict(episode)``, detached, or CellFailed when its shape is wrong."""
    output = algorithm.predict(episode)
    expected = _expected_shape(episode, spec)
    if tuple(output.shape) != expected:
        raise CellFailed(
            f"predict returned shape {tuple(output.shape)} for episode {episode.index}; "
            f"expected {expected}"
        )
    return output.detach()


def checked_batch_prediction(algorithm: Any, batch: EpisodeBatch, spec: TaskSpec) -> Tensor:
    """``algorithm.predict_batch(batch)`` (``[episodes, queries, outputs]``), detached, or
    CellFailed when its shape is wrong."""
    output = algorithm.predict_batch(batch)
    expected = tuple(batch.query_y.shape)
    if spec.task_type == CLASSIFICATION:
        expected = (*expected, spec.ways)
    if not isinstance(output, Tensor) or tuple(output.shape) != expected:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise CellFailed(f"predict_batch returned {shape} for a batch of {len(batch)} "
                         f"episodes; expected shape {expected}")
    return output.detach()


def _expected_shape(episode: Episode, spec: TaskSpec) -> tuple[int, ...]:
    if spec.task_type == CLASSIFICATION:
        return (episode.query_y.shape[0], len(episode.classes) if spec.variable else spec.ways)
    return tuple(episode.query_y.shape)


def episode_scores(outputs: Tensor, targets: Tensor, spec: TaskSpec) -> dict[str, np.ndarray]:
    """Per-episode accuracy (or MSE) and loss from stacked outputs ``[episodes, queries, ...]``."""
    outputs, targets = outputs.float(), targets.to(outputs.device)
    if spec.task_type == CLASSIFICATION:
        loss = F.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="none")
        accuracy = (outputs.argmax(-1) == targets).float().mean(1)
        return {"accuracy": accuracy.cpu().numpy(),
                "loss": loss.view(targets.shape).mean(1).cpu().numpy()}
    mse = ((outputs - targets.float()) ** 2).flatten(1).mean(1).cpu().numpy()
    return {"mse": mse, "loss": mse}


def evaluation_chunks(
    sampler: EpisodeSampler, total: int
) -> Iterator[tuple[int, EpisodeBatch]]:
    """Episodes 0 to ``total``-1 of ``sampler`` in batches of EVAL_CHUNK, with their start."""
    for start in range(0, total, EVAL_CHUNK):
        yield start, sampler.batch(range(start, min(total, start + EVAL_CHUNK)))


def episode_rows(scores: dict[str, np.ndarray]) -> list[EpisodeRow]:
    """One stored row per episode; CellFailed on a non-finite loss."""
    loss = scores["loss"]
    bad = np.flatnonzero(~np.isfinite(loss))
    if bad.size:
        raise CellFailed(f"test loss is {loss[bad[0]]} on test episode {int(bad[0])}")
    accuracy, mse, returns = scores.get("accuracy"), scores.get("mse"), scores.get("avg_return")
    curves = scores.get("curve")
    return [
        EpisodeRow(i, _maybe(accuracy, i), _maybe(mse, i), float(loss[i]), _maybe(returns, i),
                   None if curves is None else json.dumps([round(float(v), 6) for v in curves[i]]))
        for i in range(len(loss))
    ]


def _maybe(values: np.ndarray | None, i: int) -> float | None:
    return None if values is None else float(values[i])
