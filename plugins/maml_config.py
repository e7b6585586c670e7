"""MAML's hyperparameters and their checks, shared by MAML (``maml.py``) and MAML for rl
tasks (``maml_rl.py``) without either importing the other's module."""

from __future__ import annotations

from dataclasses import dataclass

from metabench.algorithm_helpers import check_non_negative, check_positive

# Finn et al. 2017: alpha = 0.4 for 5-way Omniglot, 0.01 for sinusoid regression.
PAPER_INNER_LR = {"classification": 0.4, "regression": 0.01, "rl": 0.1}
# First order, classification: 0.1. Finn et al.'s 0.4 is a second-order value: with it one
# step overshoots and the first-order meta-gradient points away from the exact one, so
# first-order MAML trains slowly (docs/algorithms.md, "Defaults revisited by tuning").
FIRST_ORDER_INNER_LR = {"classification": 0.1, "regression": 0.01, "rl": 0.1}


@dataclass(frozen=True)
class MAMLConfig:
    """Hyperparameters; defaults follow Finn et al. 2017 for 5-way Omniglot (docs/algorithms.md).

    ``inner_lr`` left unset means the paper's value for the task type (0.4 classification,
    0.01 regression), and 0.1 for first-order classification (0.4 overshoots without the
    second-order term: docs/algorithms.md). ``meta_batch_size`` is 4 rather than the paper's 32 to suit a CPU;
    ``vmap_tasks`` adapts the tasks of a meta-batch together with ``torch.func.vmap``
    (faster on CUDA, slower on CPU). ``channels_last`` makes every convolution output
    channels-last (in training and testing; the first one needs a hook, its one-channel
    input leaves the layout ambiguous) and evaluates with channels-last weights: eager
    evaluation 1.5-1.8x learn2learn's speed on CPU; training keeps its weights contiguous. ``compile``
    compiles test-time adaptation and the query pass into one graph with
    ``torch.compile``: about twice as fast per episode on CPU, after a one-off compilation
    of seconds (cached) to minutes (cold); it falls back to eager mode where compiling fails.
    ``transductive`` (Finn et al.) puts the query set through the adapted network in one
    pass, so batch norm normalises it with its own statistics; false puts each query through
    with the support set alone (Nichol et al. 2018's non-transductive test), and evaluates
    eagerly even with ``compile``.
    """

    inner_lr: float | None = None
    train_steps: int = 1
    test_steps: int = 3
    meta_batch_size: int = 4
    meta_lr: float = 1e-3
    first_order: bool = False
    vmap_tasks: bool = False
    channels_last: bool = True
    compile: bool = False
    transductive: bool = True
    # Examples (rl: trajectories) per training task (0: the setting's shots / queries); rl
    # only: the step size of test adaptation steps after the first (None: inner_lr; curves).
    train_shots: int = 0
    train_queries: int = 0
    curve_inner_lr: float | None = None


def check_config(hparams: MAMLConfig, owner: str) -> None:
    """Fail with one line on a hyperparameter outside its range."""
    check_positive(owner, meta_batch_size=hparams.meta_batch_size, meta_lr=hparams.meta_lr)
    check_non_negative(owner, train_steps=hparams.train_steps, test_steps=hparams.test_steps,
                       train_shots=hparams.train_shots, train_queries=hparams.train_queries)
    for name in ("inner_lr", "curve_inner_lr"):
        if getattr(hparams, name) is not None:
            check_positive(owner, **{name: getattr(hparams, name)})


def resolve_inner_lr(hparams: MAMLConfig, task_type: str) -> float:
    """The inner learning rate, or when unset the default for the task type (the paper's,
    and 0.1 for first-order classification)."""
    if hparams.inner_lr is not None:
        return hparams.inner_lr
    return (FIRST_ORDER_INNER_LR if hparams.first_order else PAPER_INNER_LR)[task_type]
