"""ANIL, Almost No Inner Loop (Raghu et al. 2020): MAML whose inner loop adapts only the head.

Raghu, Raghu, Bengio and Vinyals, *Rapid Learning or Feature Reuse? Towards Understanding
the Effectiveness of MAML*, ICLR 2020. The backbone is meta-learnt in the outer loop only;
the inner loop adapts the linear head on backbone features computed once per episode (the
support and the query set each pass through the backbone once, not once per inner step;
with ``transductive=False`` each test query passes through it with the support set alone).
Everything else is :class:`metabench_plugins.maml.MAML`'s: inner loop, second-order
meta-gradient (``first_order`` for ``foanil``), test-time adaptation, channels-last layout.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torch.func import functional_call

import metabench
from metabench_plugins.maml import MAML, SEARCH_SPACE, MAMLConfig, Params

HEAD = "head."


@dataclass(frozen=True)
class ANILConfig(MAMLConfig):
    """Hyperparameters: ``maml``'s defaults (docs/algorithms.md), taken from MAML, not from
    the ANIL paper: Raghu et al. 2020 run 20-way Omniglot and 5-way mini-ImageNet with "the
    same model architectures as the original MAML authors" and state no hyperparameters in
    the text read here. ``inner_lr`` unset means 0.4 for classification and 0.01 for
    regression (MAML's 5-way Omniglot and sinusoid values), 1 inner step in training, 3 at test.
    ``compile`` is refused: only a linear head adapts, on features computed once.
    """


class ANIL(MAML):
    """MAML with head-only adaptation on features computed once per episode."""

    names = ("anil", "foanil")

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: ANILConfig) -> None:
        super().__init__(setup, hparams)
        if hparams.compile:
            raise metabench.MetabenchError(
                f"{self.owner}.compile=True is not supported: only the linear head adapts"
            )

    def adapted(self, name: str) -> bool:
        """Only the head's weight and bias adapt in the inner loop."""
        return name.startswith(HEAD)

    def _features(self, params: Params, x: Tensor) -> Tensor:
        return functional_call(self.model.backbone, under(params, "backbone."), (x,))

    def _forward(self, params: Params, x: Tensor) -> Tensor:
        return functional_call(self.model.head, under(params, HEAD), (x,))


def under(params: Params, prefix: str) -> Params:
    """The entries of ``params`` below ``prefix``, named relative to it."""
    return {name.removeprefix(prefix): p for name, p in params.items() if name.startswith(prefix)}


@metabench.hookimpl
def register_algorithms(register: metabench.RegisterAlgorithm) -> None:
    types = {"classification", "regression"}
    # ANIL's hyperparameters are MAML's here (not stated in Raghu et al.'s text): MAML's space.
    register("anil", ANIL, task_types=types, defaults=ANILConfig(), search_space=SEARCH_SPACE,
             description="ANIL: MAML adapting only the head, second order (Raghu et al. 2020)")
    register("foanil", ANIL, task_types=types, defaults=ANILConfig(first_order=True),
             search_space=SEARCH_SPACE,
             description="first-order ANIL: the head's inner gradients are treated as constants")
