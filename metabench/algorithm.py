"""The Algorithm protocol: what the harness calls on every meta-learning algorithm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from metabench.protocol import CLASSIFICATION, Episode, EpisodeBatch, TaskSpec

if TYPE_CHECKING:  # the batches build on data sets; the algorithm protocol only names them
    from metabench.batches import TrainBatches


@dataclass
class AlgorithmSetup:
    """What the harness hands an algorithm factory, identical for every algorithm of a cell.

    ``backbone`` is built from the same seed for every algorithm (same architecture, same
    initial weights); ``backbone.out_features`` is the size of its output features.
    ``train_batches`` is the cell's non-episodic training data: ordinary mini-batches of
    the training split labelled with all its classes (:class:`metabench.TrainBatches`),
    the same for every algorithm of the cell group; None for regression data sets.
    ``environment`` is an rl cell's task family (:class:`metabench.rl.envs.VectorEnv`), None
    for the other task types.
    """

    backbone: nn.Module
    spec: TaskSpec
    device: torch.device
    seed: int = 0
    input_shape: tuple[int, ...] = (1, 28, 28)
    train_batches: TrainBatches | None = None
    environment: Any = None  # rl: the task family's VectorEnv (metabench.rl.envs)

    @property
    def task_type(self) -> str:
        return self.spec.task_type

    @property
    def feature_dim(self) -> int:
        features = self.backbone.out_features
        assert isinstance(features, int), f"backbone.out_features is {features!r}, not an int"
        return features

    @property
    def output_dim(self) -> int:
        """Outputs a prediction head needs: ``ways`` logits, or one value for regression."""
        return self.spec.ways if self.spec.task_type == CLASSIFICATION else 1

    def seeded_generator(self, salt: int = 0) -> torch.Generator:
        """A CPU generator for extra parameters (heads), seeded the same for every algorithm."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + salt)


@runtime_checkable
class Algorithm(Protocol):
    """A meta-learning algorithm as the harness drives it.

    ``meta_train_step`` learns from a batch of training episodes and returns per-step
    metrics (at least ``loss``); ``predict`` adapts to an episode's support set and returns
    its query predictions: logits ``[queries, ways]`` for classification, values
    ``[queries, 1]`` for regression. ``state_dict``/``load_state_dict`` save and restore
    everything needed to resume or to keep the best-on-validation weights.

    Optional members, read when present:

    - ``episodes_per_step: int`` (default 1): how many training episodes one
      ``meta_train_step`` consumes. The harness hands it batches of that many episodes and
      counts them against an episode budget (the built-ins set it from their
      ``meta_batch_size`` hyperparameter).
    - ``uses_episodes: bool`` (default True): False for an algorithm that trains on
      ordinary mini-batches, drawn in ``meta_train_step`` from ``setup.train_batches``,
      instead of episodes. The harness then samples no training episodes: it hands
      ``meta_train_step`` an empty ``EpisodeBatch`` (``len(batch) == 0``) and does not read
      ``episodes_per_step`` or ``train_task_spec``. Every image drawn from
      ``setup.train_batches`` during training, by any algorithm, is charged against an
      episode budget at ``ways * (shots + queries)`` images (of the cell's spec) per
      episode; a step of such an algorithm that draws nothing fails the cell.
    - ``train_task_spec(spec) -> TaskSpec``: meta-train on a different spec than the one it
      is tested on (Prototypical Networks train at higher ways).
    - ``set_budget_progress(fraction)``: called before every ``meta_train_step`` with the
      share of the training budget already spent (0 at the first step, below 1 at the last),
      to tie schedules to the run's budget (Reptile anneals its outer step size with it).
    - ``predict_batch(batch) -> Tensor``: the predictions ``[episodes, queries, ...]`` of an
      ``EpisodeBatch`` of test episodes of one shape, each row what ``predict`` returns for
      its episode; the harness then predicts each evaluation chunk in one call.
    - ``protocol_details() -> dict``: test-time protocol facts for the leaderboard (e.g.
      ``{"batch_norm": "transductive"}``), read once after training and stored with the
      cell's ``protocol``.

    For the ``rl`` task type an episode is a task (its parameters in ``support_x[0]``) and
    the harness scores it itself (:mod:`metabench.rl.protocol`): the algorithm has a
    ``policy`` (an ``nn.Module`` mapping observations to the mean and standard deviation of
    a Gaussian over actions) and ``adapt_policy(support) -> dict | None`` (the adapted
    weights by name, or None for the policy as it is); ``predict`` is not called.
    ``setup.environment`` is the task family's environment for its training rollouts.
    """

    def meta_train_step(self, batch: EpisodeBatch) -> dict[str, float]: ...

    def predict(self, episode: Episode) -> Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def uses_episodes(algorithm: Algorithm) -> bool:
    """Whether ``meta_train_step`` of ``algorithm`` learns from episodes (default True).

    Raises ValueError naming the value when it is not a bool.
    """
    value = getattr(algorithm, "uses_episodes", True)
    if not isinstance(value, bool):
        raise ValueError(f"uses_episodes={value!r}; expected True or False")
    return value


def episodes_per_step(algorithm: Algorithm) -> int:
    """Training episodes one ``meta_train_step`` of ``algorithm`` consumes (default 1).

    Raises ValueError naming the value when it is not a positive integer.
    """
    value = getattr(algorithm, "episodes_per_step", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"episodes_per_step={value!r}; expected a positive integer")
    return value
