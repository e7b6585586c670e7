"""Each built-in algorithm learns: well above chance on glyphs, 5-way 1-shot, short CPU budgets.

Marked slow (tens of seconds each): ``pytest -m slow tests/test_algorithms_learning.py -s``
prints the accuracies reached; docs/algorithms.md records them.
"""

from __future__ import annotations

import pytest
import torch

from metabench import AlgorithmSetup, TaskSpec, registry
from metabench.backbones import Conv4
from metabench.episodes import EpisodeSampler
from metabench.hparams import apply_overrides

pytestmark = pytest.mark.slow

SPEC = TaskSpec(ways=5, shots=1, queries=15)
TEST_EPISODES = 50

# name: (meta-training steps, overrides, train queries, accuracy to beat); chance is 0.2.
BUDGETS = {
    "protonet": (60, {}, 15, 0.45),
    "maml": (50, {}, 5, 0.3),
    "fomaml": (50, {}, 5, 0.3),
    "reptile": (25, {"test_steps": 10}, 15, 0.45),
}


@pytest.fixture(scope="module")
def glyphs():
    return registry.get("dataset", "glyphs").factory()


def accuracy(algorithm, episodes) -> float:
    hits = [(algorithm.predict(e).argmax(-1) == e.query_y).float().mean() for e in episodes]
    return float(torch.stack(hits).mean())


@pytest.mark.parametrize("name", list(BUDGETS))
def test_beats_chance_on_glyphs_5way_1shot(name, glyphs):
    steps, overrides, train_queries, threshold = BUDGETS[name]
    entry = registry.get("algorithm", name)
    hparams = apply_overrides(name, entry.defaults, overrides)
    torch.manual_seed(0)
    algorithm = entry.factory(AlgorithmSetup(Conv4((1, 28, 28)), SPEC, torch.device("cpu")), hparams)
    spec = TaskSpec(SPEC.ways, SPEC.shots, train_queries)
    if hasattr(algorithm, "train_task_spec"):
        spec = algorithm.train_task_spec(spec)
    train = EpisodeSampler(glyphs, "train", spec, seed=0)
    size = hparams.meta_batch_size
    for step in range(steps):
        if hasattr(algorithm, "set_budget_progress"):
            algorithm.set_budget_progress(step / steps)
        metrics = algorithm.meta_train_step(train.batch(range(step * size, (step + 1) * size)))
    assert torch.isfinite(torch.tensor(metrics["loss"]))
    test = [EpisodeSampler(glyphs, "test", SPEC, seed=0).episode(i) for i in range(TEST_EPISODES)]
    reached = accuracy(algorithm, test)
    print(f"{name}: {reached:.3f} test accuracy after {steps} meta-training steps")
    assert reached > threshold
