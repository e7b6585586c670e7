"""Reference MAML and first-order MAML through ``learn2learn.algorithms.MAML`` (clone/adapt).

Registered only where learn2learn is installed, so that the harness's own ``maml`` and
learn2learn's can be compared side by side on the same episodes, backbone and initial
weights. This module imports cleanly without learn2learn; learn2learn itself (a few
seconds to import) is imported only when one of these algorithms is built.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import io
from dataclasses import replace
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

import metabench
from metabench.algorithm_helpers import (
    batch_statistics_protocol,
    build_model,
    task_loss,
    task_metrics,
    usable_for_autograd,
    use_channels_last,
)
from metabench_plugins.maml import SEARCH_SPACE, MAMLConfig, check_config, resolve_inner_lr

# MAMLConfig options of metabench's own implementation that learn2learn's has no use for.
UNSUPPORTED = ("vmap_tasks", "compile")


def learn2learn_available() -> bool:
    """True when learn2learn is installed (found by the import system, not yet imported)."""
    return importlib.util.find_spec("learn2learn") is not None


@functools.cache
def import_learn2learn() -> ModuleType:
    """Import learn2learn once, or fail with one line saying why."""
    try:
        _import_gym_quietly()
        return importlib.import_module("learn2learn")
    except Exception as error:
        raise metabench.MetabenchError(
            f"learn2learn is installed but failed to import ({type(error).__name__}: {error}); "
            "see scripts/install_learn2learn.sh"
        ) from None


def _import_gym_quietly() -> None:
    """learn2learn imports gym, whose import prints an 'unmaintained' notice to stderr."""
    if importlib.util.find_spec("gym") is None:
        return
    with contextlib.redirect_stderr(io.StringIO()):
        importlib.import_module("gym")


class L2LMAML:
    """MAML as learn2learn's examples write it: clone the wrapped model, adapt, backward."""

    def __init__(self, setup: metabench.AlgorithmSetup, hparams: MAMLConfig) -> None:
        owner = "l2l-fomaml" if hparams.first_order else "l2l-maml"
        check_config(hparams, owner)
        for name in UNSUPPORTED:
            if getattr(hparams, name):
                raise metabench.MetabenchError(
                    f"{owner}.{name}=True is not supported by the learn2learn reference; "
                    f"use maml.{name} instead"
                )
        if not hparams.transductive:
            raise metabench.MetabenchError(
                f"{owner}.transductive=False is not supported by the learn2learn reference; "
                "use maml.transductive instead"
            )
        l2l = import_learn2learn()
        self.hparams = hparams
        self.episodes_per_step = hparams.meta_batch_size
        self.task_type = setup.task_type
        inner_lr = resolve_inner_lr(hparams, setup.task_type)
        model = use_channels_last(build_model(setup).train(), hparams.channels_last)
        self.maml = l2l.algorithms.MAML(model, lr=inner_lr, first_order=hparams.first_order)
        self.optimizer = torch.optim.Adam(self.maml.parameters(), lr=hparams.meta_lr)

    def meta_train_step(self, batch: metabench.EpisodeBatch) -> dict[str, float]:
        """Adapt a clone per task, back-propagate its query loss, one Adam step."""
        self.optimizer.zero_grad(set_to_none=True)
        outputs = []
        for episode in batch:
            learner = self._adapted(episode, self.hparams.train_steps)
            output = learner(episode.query_x)
            (task_loss(self.task_type, output, episode.query_y) / len(batch)).backward()
            outputs.append(output.detach())
        self.optimizer.step()
        stacked = torch.stack(outputs).flatten(0, 1)
        return task_metrics(self.task_type, stacked, batch.query_y.flatten(0, 1))

    def predict(self, episode: metabench.Episode) -> Tensor:
        """Clone, adapt ``test_steps`` times as configured, predict the query set."""
        learner = self._adapted(episode, self.hparams.test_steps)
        with torch.no_grad():
            return learner(episode.query_x)

    def protocol_details(self) -> dict[str, Any]:
        """Test-time protocol facts: the query set goes through in one pass (transductive)."""
        return batch_statistics_protocol(self.maml.module, transductive=True)

    def _adapted(self, episode: metabench.Episode, steps: int) -> Any:
        with torch.inference_mode(False), torch.enable_grad():
            support_x = usable_for_autograd(episode.support_x)
            support_y = usable_for_autograd(episode.support_y)
            learner = self.maml.clone()
            for _ in range(steps):
                learner.adapt(task_loss(self.task_type, learner(support_x), support_y))
        return learner

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.maml.module.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.maml.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


@metabench.hookimpl
def register_algorithms(register: metabench.RegisterAlgorithm) -> None:
    if not learn2learn_available():
        return
    types = {"classification", "regression"}
    # As learn2learn users write it: contiguous (NCHW) weights, as PyTorch makes them.
    defaults = MAMLConfig(channels_last=False)
    register("l2l-maml", L2LMAML, task_types=types, defaults=defaults, search_space=SEARCH_SPACE,
             description="reference MAML through learn2learn.algorithms.MAML (clone/adapt)")
    register("l2l-fomaml", L2LMAML, task_types=types, defaults=replace(defaults, first_order=True),
             search_space=SEARCH_SPACE,
             description="reference first-order MAML through learn2learn.algorithms.MAML")
