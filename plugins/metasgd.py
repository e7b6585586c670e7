"""Meta-SGD (Li et al. 2017): MAML with meta-learnt per-parameter inner learning rates.

Li, Zhou, Chen and Li, *Meta-SGD: Learning to Learn Quickly for Few-Shot Learning*,
arXiv:1707.09835. The inner step is ``theta - alpha * grad`` with ``alpha`` a tensor of the
same shape as ``theta``, learnt by the outer Adam together with the initialisation. All
else is :class:`metabench_plugins.maml.MAML`'s (fast weights as a dict for
``functional_call``, second-order meta-gradient, graph-free test-time adaptation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

import metabench
from metabench_plugins.maml import MAML, MAMLConfig, Params

# Li et al. 2017, section 4.1: each entry of alpha starts uniformly at random in this range.
PAPER_LR_RANGE = (0.005, 0.1)
# Salt of the seeded generator drawing the initial learning rates (head: 1, matchingnet FCE: 2).
LR_SALT = 3


@dataclass(frozen=True)
class MetaSGDConfig(MAMLConfig):
    """Hyperparameters; ``maml``'s fields, defaults after Li et al. 2017 (docs/algorithms.md).

    ``inner_lr`` is the initial value of every learning rate (learn2learn's ``lr``); unset,
    each entry starts uniformly at random in [0.005, 0.1] (paper, section 4.1), drawn from
    the cell's seed. One inner step in training and at test (the paper adapts in one step).
    ``compile`` is refused.
    """

    train_steps: int = 1
    test_steps: int = 1


class MetaSGD(MAML):
    """Learn an initialisation and one learning rate per weight entry."""

    names = ("metasgd", "metasgd")

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: MetaSGDConfig) -> None:
        super().__init__(setup, hparams)
        if hparams.compile:
            raise metabench.MetabenchError(f"{self.owner}.compile=True is not supported")
        generator = setup.seeded_generator(LR_SALT)
        params = self.meta_parameters()
        self.lrs = nn.ParameterList(
            initial_lr(p, hparams.inner_lr, generator) for p in params.values()
        ).to(setup.device)
        self._lr_names = list(params)
        self.optimizer.add_param_group({"params": list(self.lrs)})

    def learning_rates(self) -> Params:
        """The per-parameter inner learning rates, by meta-parameter name."""
        return dict(zip(self._lr_names, self.lrs, strict=True))

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"lrs": self.lrs.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lrs.load_state_dict(state["lrs"])

    def _inner_update(self, fast: Params, grads: Params) -> Params:
        lrs = self.learning_rates()
        return {name: p - lrs[name] * grads[name] for name, p in fast.items()}


def initial_lr(param: Tensor, value: float | None, generator: torch.Generator) -> nn.Parameter:
    """``value`` everywhere, or the paper's uniform draw in [0.005, 0.1] when ``value`` is None."""
    if value is not None:
        return nn.Parameter(torch.full(param.shape, value))
    low, high = PAPER_LR_RANGE
    return nn.Parameter(low + (high - low) * torch.rand(param.shape, generator=generator))


@metabench.hookimpl
def register_algorithms(register: metabench.RegisterAlgorithm) -> None:
    # The learning rates are learnt (from [0.005, 0.1], Li et al. section 4.1): tune the outer
    # loop, as MAML's (Adam 1e-3 in the paper), and the meta-batch.
    space: metabench.SearchSpace = {"meta_lr": metabench.LogUniform(1e-4, 1e-2),
             "meta_batch_size": metabench.Choice(2, 4, 8)}
    register("metasgd", MetaSGD, task_types={"classification", "regression"},
             defaults=MetaSGDConfig(), search_space=space,
             description="Meta-SGD: MAML with meta-learnt per-parameter learning rates (Li et al. 2017)")
