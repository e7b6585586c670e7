"""Baseline and Baseline++ (Chen et al. 2019): the classifiers, the fine-tuned head at test,
the frozen backbone, resuming, the shared initial weights and the budget charged.

The learning tests on glyphs are marked slow: ``pytest -m slow -k baseline -s`` prints the
accuracies reached (docs/algorithms.md records them).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from test_compare_plugin import compare_plugin  # noqa: F401 (a fixture)

import metabench
from metabench import AlgorithmSetup, MetabenchError, TaskSpec, TrainBatches, registry
from metabench.backbones import Conv4
from metabench.config import make_config
from metabench.episodes import EpisodeSampler
from metabench.hparams import apply_overrides
from metabench.plan import build_plan
from metabench.plugins import load_plugins
from metabench.runner import RunContext, build_algorithm, run_cell
from metabench.session import build_datasets
from metabench_plugins.baseline import (
    Baseline,
    BaselineConfig,
    finetune_generator,
    initial_head,
    scale_for,
)

SPEC = TaskSpec(ways=5, shots=2, queries=3)
NAMES = ["baseline", "baseline-pp"]


@pytest.fixture(autouse=True)
def baseline_plugin():
    """Until the entry point is installed; idempotent once it is."""
    load_plugins(["metabench_plugins.baseline"])


def make(name: str, dataset, spec: TaskSpec = SPEC, **overrides) -> Baseline:
    entry = registry.get("algorithm", name)
    hparams = apply_overrides(name, entry.defaults, overrides)
    torch.manual_seed(0)
    setup = AlgorithmSetup(Conv4((1, 28, 28)), spec, torch.device("cpu"), seed=0,
                           train_batches=TrainBatches(dataset, seed=0))
    return entry.factory(setup, hparams)


def cosine_by_hand(features: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    logits = torch.empty(len(features), len(weight))
    for i, f in enumerate(features.tolist()):
        for c, w in enumerate(weight.tolist()):
            dot = sum(a * b for a, b in zip(f, w, strict=True))
            norms = math.sqrt(sum(a * a for a in f)) * math.sqrt(sum(b * b for b in w))
            logits[i, c] = scale * dot / norms
    return logits


# --- registration and hyperparameters --------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_registered_for_classification_with_frozen_defaults(name):
    entry = registry.get("algorithm", name)
    assert entry.task_types == {"classification"}
    assert dataclasses.is_dataclass(entry.defaults) and entry.defaults.__dataclass_params__.frozen
    assert entry.description and "\n" not in entry.description and "Chen et al. 2019" in entry.description
    assert entry.factory is Baseline and Baseline.uses_episodes is False


def test_baseline_pp_is_baseline_with_the_cosine_classifier():
    baseline, plus = (registry.get("algorithm", name).defaults for name in NAMES)
    assert dataclasses.replace(baseline, cosine=True) == plus
    assert (baseline.lr, baseline.batch_size) == (1e-3, 16)
    assert (baseline.finetune_epochs, baseline.finetune_batch, baseline.finetune_lr) == (100, 4, 0.01)
    assert (baseline.finetune_momentum, baseline.finetune_dampening,
            baseline.finetune_weight_decay) == (0.9, 0.9, 1e-3)


@pytest.mark.parametrize(("name", "overrides", "message"), [
    ("baseline", {"lr": "0"}, "baseline.lr=0.0 must be positive"),
    ("baseline", {"batch_size": "0"}, "baseline.batch_size=0 must be >= 1"),
    ("baseline-pp", {"scale": "-1"}, "baseline-pp.scale=-1.0 must be >= 0"),
    ("baseline-pp", {"finetune_momentum": "1"}, "baseline-pp.finetune_momentum=1.0 must be in [0, 1)"),
    ("baseline", {"finetune_epochs": "0"}, "baseline.finetune_epochs=0 must be >= 1"),
    ("baseline", {"finetune_weight_decay": "-0.1"}, "baseline.finetune_weight_decay=-0.1 must be >= 0"),
])
def test_bad_hyperparameters_are_one_line_errors(name, overrides, message, tiny_dataset):
    with pytest.raises(MetabenchError) as error:
        make(name, tiny_dataset, **overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_setup_without_training_batches_is_a_one_line_error():
    setup = AlgorithmSetup(Conv4((1, 28, 28)), SPEC, torch.device("cpu"))
    with pytest.raises(MetabenchError, match=r"baseline-pp trains on setup\.train_batches") as error:
        Baseline(setup, BaselineConfig(cosine=True))
    assert "\n" not in str(error.value)


# --- the classifiers ---------------------------------------------------------------------------


def test_baseline_pp_classifier_is_the_scaled_cosine_of_chen_et_al(tiny_dataset):
    algorithm = make("baseline-pp", tiny_dataset)
    classifier = algorithm.classifier
    assert classifier.bias is None and classifier.weight.shape == (20, 64)
    assert classifier.scale == 2.0  # the authors' factor for up to 200 classes
    features = torch.randn(6, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(classifier(features),
                                   cosine_by_hand(features, classifier.weight, 2.0))
    # more than 200 classes (Omniglot, glyphs: 1137): the authors' factor 10
    assert scale_for(BaselineConfig(cosine=True), 1137) == 10.0
    assert scale_for(BaselineConfig(cosine=True, scale=4.0), 1137) == 4.0
    custom = make("baseline-pp", tiny_dataset, scale="4").classifier
    with torch.no_grad():
        torch.testing.assert_close(custom(features), cosine_by_hand(features, custom.weight, 4.0))


def test_baseline_classifier_is_linear_with_a_zero_bias(tiny_dataset):
    classifier = make("baseline", tiny_dataset).classifier
    assert classifier.bias is not None and not classifier.bias.any()
    features = torch.randn(6, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(classifier(features), features @ classifier.weight.T)


def test_meta_train_step_learns_from_consecutive_training_batches(tiny_dataset):
    algorithm = make("baseline", tiny_dataset)
    reference = TrainBatches(tiny_dataset, seed=0)
    before = copy.deepcopy(algorithm.classifier.state_dict())
    metrics = [algorithm.meta_train_step(metabench.EpisodeBatch(*[torch.empty(0)] * 4))
               for _ in range(30)]
    assert set(metrics[0]) == {"loss", "accuracy"}
    assert algorithm.batches.drawn == 30 * 16 and algorithm.steps == 30
    assert not torch.equal(before["weight"], algorithm.classifier.weight)
    # the 31st step would draw what the source gives for step 30
    images, labels = algorithm.batches.batch(30, 16)
    expected = reference.batch(30, 16)
    assert torch.equal(images, expected[0]) and torch.equal(labels, expected[1])
    first, last = (sum(m["loss"] for m in part) / 5 for part in (metrics[:5], metrics[-5:]))
    assert last < first


# --- test time: frozen backbone, a new head per episode -----------------------------------------


def reference_head(algorithm: Baseline, episode: metabench.Episode) -> torch.Tensor:
    """The authors' loop (baselinefinetune.py) with autograd and torch.optim.SGD."""
    hp = algorithm.hparams
    algorithm.model.eval()
    with torch.no_grad():
        support, query = algorithm.model(episode.support_x), algorithm.model(episode.query_x)
    generator = finetune_generator(episode)
    weight, bias = initial_head(support.shape[-1], 5, hp.cosine, generator)
    parameters = [weight.requires_grad_()] + ([] if bias is None else [bias.requires_grad_()])
    optimizer = torch.optim.SGD(parameters, lr=hp.finetune_lr, momentum=hp.finetune_momentum,
                                dampening=hp.finetune_dampening,
                                weight_decay=hp.finetune_weight_decay)
    scale = scale_for(hp, 5)

    def logits(features):
        if hp.cosine:
            return scale * F.normalize(features, dim=-1) @ F.normalize(weight, dim=-1).T
        return features @ weight.T + bias

    orders = torch.rand(hp.finetune_epochs, len(support), generator=generator).argsort(-1)
    for order in orders:
        for start in range(0, len(support), hp.finetune_batch):
            rows = order[start : start + hp.finetune_batch]
            loss = F.cross_entropy(logits(support[rows]), episode.support_y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return logits(query)


FINETUNE = [{}, {"finetune_epochs": "3", "finetune_batch": "3", "finetune_lr": "0.5",
                 "finetune_momentum": "0", "finetune_weight_decay": "0"}]


@pytest.mark.parametrize("overrides", FINETUNE, ids=["defaults", "custom"])
@pytest.mark.parametrize("name", NAMES)
def test_predict_trains_a_new_head_per_the_hyperparameters_on_a_frozen_backbone(
        name, overrides, tiny_dataset):
    algorithm = make(name, tiny_dataset, **overrides)
    for _ in range(3):
        algorithm.meta_train_step(metabench.EpisodeBatch(*[torch.empty(0)] * 4))
    episodes = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).batch(range(2))
    frozen = copy.deepcopy(algorithm.state_dict())
    logits = [algorithm.predict(episode) for episode in episodes]
    for key, value in algorithm.state_dict()["model"].items():  # batch norm statistics too
        assert torch.equal(value, frozen["model"][key]), key
    assert torch.equal(algorithm.classifier.weight, frozen["classifier"]["weight"])
    assert logits[0].shape == (15, 5)
    for episode, output in zip(episodes, logits, strict=True):
        torch.testing.assert_close(output, reference_head(algorithm, episode), rtol=1e-4, atol=1e-5)
    # each episode's head is seeded from the episode alone: order does not matter
    torch.testing.assert_close(algorithm.predict(episodes[1]), logits[1], rtol=0, atol=0)


def test_predict_works_inside_inference_mode(tiny_dataset):
    algorithm = make("baseline-pp", tiny_dataset)
    episode = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).episode(0)
    expected = algorithm.predict(episode)
    with torch.inference_mode():
        inside = algorithm.predict(EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).episode(0))
    torch.testing.assert_close(inside, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_resumes_identically(name, tiny_dataset):
    algorithm = make(name, tiny_dataset)
    empty = metabench.EpisodeBatch(*[torch.empty(0)] * 4)
    for _ in range(2):
        algorithm.meta_train_step(empty)
    saved = copy.deepcopy(algorithm.state_dict())
    resumed = make(name, tiny_dataset)
    resumed.load_state_dict(saved)
    episode = EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).episode(0)
    torch.testing.assert_close(resumed.predict(episode), algorithm.predict(episode))
    after = [a.meta_train_step(empty)["loss"] for a in (algorithm, resumed)]
    assert after[0] == pytest.approx(after[1], rel=1e-5)
    torch.testing.assert_close(resumed.predict(episode), algorithm.predict(episode))


# --- in the harness ----------------------------------------------------------------------------

TINY = {"datasets": "micro", "backbone": "flat", "shots": [1], "episodes": 6,
        "budget": "episodes:4", "val_episodes": 3, "val_points": 2}


def context_for(**options) -> tuple[RunContext, list]:
    plan = build_plan(make_config({**TINY, **options}))
    return RunContext(plan, torch.device("cpu"), build_datasets(plan)[0]), list(plan.cells)


@pytest.mark.usefixtures("compare_plugin")
def test_same_initial_backbone_weights_as_protonet_in_a_cell():
    context, cells = context_for(algorithms="protonet,baseline,baseline-pp")
    assert len({cell.group for cell in cells}) == 1
    states = [build_algorithm(cell, context).model.state_dict() for cell in cells]
    for state in states[1:]:
        assert state.keys() == states[0].keys()
        for key, value in state.items():
            assert torch.equal(value.contiguous(), states[0][key].contiguous()), key


@pytest.mark.usefixtures("compare_plugin")
def test_an_episode_budget_charges_baseline_the_images_of_the_episodes_it_replaces():
    context, cells = context_for(algorithms="protonet,baseline,baseline-pp")
    results = {cell.algorithm: run_cell(cell, context) for cell in cells}
    assert {name: r.status for name, r in results.items()} == dict.fromkeys(results, "ok")
    assert {name: r.train_episodes for name, r in results.items()} == dict.fromkeys(results, 4)
    # 4 episodes of 5 x (1 + 15) = 320 images: 20 steps of 16
    for name in NAMES:
        assert results[name].steps == 20 and results[name].profile["train_images"] == 320
        assert results[name].profile["episodes_per_step"] == 0.2
    assert results["protonet"].steps == 4


# --- learning --------------------------------------------------------------------------------

# 300 steps of 16 images = 4800 images = 60 episodes of 5 x (1 + 15): the budget of the
# ProtoNet learning test (tests/test_algorithms_learning.py). Chance is 0.2.
LEARNING_STEPS, LEARNING_THRESHOLD, TEST_EPISODES = 300, 0.35, 50


@pytest.fixture
def one_thread():
    """Two OpenMP threads sharing 2 busy cores with other jobs ran this test 8x slower
    (111 s against 11 s; docs/algorithms.md, "Threads")."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", NAMES)
def test_beats_chance_on_glyphs_5way_1shot(name):
    glyphs = registry.get("dataset", "glyphs").factory()
    spec = TaskSpec(ways=5, shots=1, queries=15)
    entry = registry.get("algorithm", name)
    torch.manual_seed(0)
    setup = AlgorithmSetup(Conv4((1, 28, 28)), spec, torch.device("cpu"),
                           train_batches=TrainBatches(glyphs, seed=0))
    algorithm = entry.factory(setup, entry.defaults)
    empty = metabench.EpisodeBatch(*[torch.empty(0)] * 4)
    for _ in range(LEARNING_STEPS):
        metrics = algorithm.meta_train_step(empty)
    assert math.isfinite(metrics["loss"])
    test = EpisodeSampler(glyphs, "test", spec, seed=0)
    hits = [(algorithm.predict(e).argmax(-1) == e.query_y).float().mean()
            for e in (test.episode(i) for i in range(TEST_EPISODES))]
    reached = float(torch.stack(hits).mean())
    print(f"{name}: {reached:.3f} test accuracy after {LEARNING_STEPS} steps of 16 images")
    assert reached > LEARNING_THRESHOLD
