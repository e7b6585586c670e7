"""ANIL and Meta-SGD: meta-gradients against learn2learn, head-only adaptation, state, learning."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metabench import AlgorithmSetup, MetabenchError, TaskSpec, registry
from metabench.backbones import MLP, Conv4
from metabench.data import build_dataset
from metabench.data.sinusoid import Sinusoid
from metabench.episodes import EpisodeSampler
from metabench.hparams import apply_overrides
from metabench.plugins import load_plugins
from metabench_plugins import learn2learn_ref
from metabench_plugins.anil import ANIL, ANILConfig
from metabench_plugins.maml import MAML, MAMLConfig
from metabench_plugins.metasgd import MetaSGD, MetaSGDConfig

SPEC = TaskSpec(ways=5, shots=1, queries=2)
MODULES = ["metabench_plugins.anil", "metabench_plugins.metasgd"]
NAMES = ["anil", "foanil", "metasgd"]


@pytest.fixture(autouse=True)
def plugins():
    """Until the entry points exist; loading an already-registered module is a no-op."""
    load_plugins(MODULES)


def make_setup(spec: TaskSpec = SPEC, seed: int = 0) -> AlgorithmSetup:
    torch.manual_seed(seed)
    return AlgorithmSetup(Conv4((1, 28, 28)), spec, torch.device("cpu"), seed=seed)


def build(name: str, setup: AlgorithmSetup | None = None, **overrides):
    entry = registry.get("algorithm", name)
    return entry.factory(setup or make_setup(), apply_overrides(name, entry.defaults, overrides))


def learn2learn():
    if not learn2learn_ref.learn2learn_available():
        pytest.skip("learn2learn is not installed (scripts/install_learn2learn.sh)")
    return learn2learn_ref.import_learn2learn()


@pytest.fixture
def batch(tiny_dataset):
    return EpisodeSampler(tiny_dataset, "train", SPEC, seed=0).batch(range(2))


@pytest.fixture
def episode(tiny_dataset):
    return EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).episode(0)


def grads(parameters) -> list[torch.Tensor]:
    return [p.grad.clone() for p in parameters]


def assert_gradients_close(ours, theirs, rtol: float = 1e-4) -> None:
    """Each tensor within ``rtol`` of the reference, relative to its norm (as for MAML).

    Conv biases that feed batch norm have a true gradient of zero, so their float noise
    is measured against the norm of the whole gradient instead.
    """
    total = torch.cat([g.flatten() for g in theirs]).norm()
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        scale = max(float(b.norm()), 1e-3 * float(total))
        error = float((a - b).norm())
        assert error <= rtol * scale, f"tensor {i}: |difference| {error:.3g} vs |grad| {scale:.3g}"


def relative_difference(ours, reference) -> float:
    """|difference| / |reference| over all tensors: for two of our own paths, whose float
    noise on the zero-gradient conv biases differs more than against learn2learn's same ops."""
    total = torch.cat([g.flatten() for g in reference]).norm()
    difference = torch.cat([(a - b).flatten() for a, b in zip(ours, reference, strict=True)])
    return float(difference.norm() / total)


# --- Meta-SGD ---------------------------------------------------------------------------


@pytest.mark.parametrize("first_order", [False, True], ids=["second", "first"])
@pytest.mark.parametrize("steps", [1, 2])
def test_metasgd_meta_gradient_equals_learn2learn(batch, first_order, steps):
    l2l = learn2learn()
    algorithm = MetaSGD(make_setup(), MetaSGDConfig(first_order=first_order, train_steps=steps))
    model = copy.deepcopy(algorithm.model).to(memory_format=torch.contiguous_format)
    lrs = nn.ParameterList(nn.Parameter(lr.detach().clone()) for lr in algorithm.lrs)
    algorithm.meta_train_step(batch)  # Adam's step leaves ``.grad`` in place
    reference = l2l.algorithms.MetaSGD(model, lrs=lrs, first_order=first_order)
    for episode in batch:
        learner = reference.clone()
        for _ in range(steps):
            learner.adapt(F.cross_entropy(learner(episode.support_x), episode.support_y))
        (F.cross_entropy(learner(episode.query_x), episode.query_y) / len(batch)).backward()
    assert_gradients_close(grads(algorithm.model.parameters()), grads(model.parameters()))
    assert_gradients_close(grads(algorithm.lrs), grads(lrs))


def test_metasgd_learning_rates_follow_the_paper_and_are_meta_learnt(batch):
    algorithm = MetaSGD(make_setup(), MetaSGDConfig())
    rates = torch.cat([lr.detach().flatten() for lr in algorithm.lrs])
    assert 0.005 <= float(rates.min()) < float(rates.max()) <= 0.1
    assert [lr.shape for lr in algorithm.lrs] == [p.shape for p in algorithm.model.parameters()]
    before = [lr.detach().clone() for lr in algorithm.lrs]
    algorithm.meta_train_step(batch)
    assert any(not torch.equal(a, b) for a, b in zip(before, algorithm.lrs, strict=True))
    constant = MetaSGD(make_setup(), MetaSGDConfig(inner_lr=0.3))
    assert all(bool((lr == 0.3).all()) for lr in constant.lrs)


def test_metasgd_predict_is_one_per_parameter_sgd_step(episode):
    algorithm = MetaSGD(make_setup(), MetaSGDConfig(channels_last=False))
    model = copy.deepcopy(algorithm.model)
    loss = F.cross_entropy(model(episode.support_x), episode.support_y)
    with torch.no_grad():
        for p, g, lr in zip(model.parameters(), torch.autograd.grad(loss, list(model.parameters())),
                            algorithm.lrs, strict=True):
            p -= lr * g
    expected = model(episode.query_x)
    torch.testing.assert_close(algorithm.predict(episode), expected, rtol=1e-4, atol=1e-5)


# --- ANIL -------------------------------------------------------------------------------


def test_anil_predict_is_head_only_sgd_on_fixed_features(episode):
    algorithm = ANIL(make_setup(), ANILConfig(test_steps=3, channels_last=False))
    backbone, head = algorithm.model.backbone, copy.deepcopy(algorithm.model.head)
    with torch.no_grad():
        support, query = backbone(episode.support_x), backbone(episode.query_x)
    for _ in range(3):
        loss = F.cross_entropy(head(support), episode.support_y)
        with torch.no_grad():
            for p, g in zip(head.parameters(), torch.autograd.grad(loss, list(head.parameters())),
                            strict=True):
                p -= 0.4 * g
    expected = head(query)
    torch.testing.assert_close(algorithm.predict(episode), expected, rtol=1e-4, atol=1e-5)


def test_anil_adapts_the_head_and_leaves_the_backbone(episode):
    algorithm = ANIL(make_setup(), ANILConfig(channels_last=False))
    fast = algorithm.adapt(episode.support_x, episode.support_y)
    for name, p in algorithm.model.named_parameters():
        assert torch.equal(fast[name], p) != name.startswith("head."), name
    # The fast weights also serve the whole model, as MAML's do.
    with torch.inference_mode():
        whole = torch.func.functional_call(algorithm.model, fast, (episode.query_x,))
    torch.testing.assert_close(algorithm.predict(episode), whole)


def learn2learn_anil_gradient(algorithm: ANIL, batch, steps: int, first_order: bool, detach: bool):
    """learn2learn's MAML over a copy of the head, on features of a copy of the backbone."""
    l2l = learn2learn()
    model = copy.deepcopy(algorithm.model).to(memory_format=torch.contiguous_format)
    head = l2l.algorithms.MAML(model.head, lr=algorithm.inner_lr, first_order=first_order)
    for episode in batch:
        support, query = model.backbone(episode.support_x), model.backbone(episode.query_x)
        if detach:
            support, query = support.detach(), query.detach()
        learner = head.clone()
        for _ in range(steps):
            learner.adapt(F.cross_entropy(learner(support), episode.support_y))
        (F.cross_entropy(learner(query), episode.query_y) / len(batch)).backward()
    return model


@pytest.mark.parametrize("first_order", [False, True], ids=["anil", "foanil"])
@pytest.mark.parametrize("steps", [1, 2])
def test_anil_head_meta_gradient_equals_learn2learn_on_fixed_features(batch, first_order, steps):
    algorithm = ANIL(make_setup(), ANILConfig(first_order=first_order, train_steps=steps))
    reference = learn2learn_anil_gradient(algorithm, batch, steps, first_order, detach=True)
    algorithm.meta_train_step(batch)
    assert_gradients_close(grads(algorithm.model.head.parameters()),
                           grads(reference.head.parameters()))


@pytest.mark.parametrize("first_order", [False, True], ids=["anil", "foanil"])
def test_anil_backbone_meta_gradient_equals_learn2learn_through_the_features(batch, first_order):
    algorithm = ANIL(make_setup(), ANILConfig(first_order=first_order))
    reference = learn2learn_anil_gradient(algorithm, batch, 1, first_order, detach=False)
    algorithm.meta_train_step(batch)
    assert_gradients_close(grads(algorithm.model.parameters()), grads(reference.parameters()))


class HeadOnlyMAML(MAML):
    """MAML's generic path restricted to the head: the whole model runs at every inner step."""

    def adapted(self, name: str) -> bool:
        return name.startswith("head.")


def test_anil_features_once_equals_maml_restricted_to_the_head(batch):
    anil = ANIL(make_setup(), ANILConfig(train_steps=2))
    anil.meta_train_step(batch)
    generic = HeadOnlyMAML(make_setup(), MAMLConfig(train_steps=2))
    generic.meta_train_step(batch)
    assert relative_difference(grads(anil.model.parameters()), grads(generic.model.parameters())) < 1e-5


@pytest.mark.parametrize(("name", "first_order"), [("anil", False), ("anil", True), ("metasgd", True)])
def test_vmap_over_tasks_matches_the_loop(batch, name, first_order):
    # Second-order Meta-SGD under vmap departs by ~1e-3 through batch norm, as MAML does
    # (docs/algorithms.md); ANIL's second order goes through the linear head only.
    looped = build(name, channels_last=False, first_order=first_order)
    vmapped = build(name, channels_last=False, first_order=first_order, vmap_tasks=True)
    looped.meta_train_step(batch)
    vmapped.meta_train_step(batch)
    assert relative_difference(grads(vmapped.model.parameters()), grads(looped.model.parameters())) < 1e-5


# --- Both: registration, shared weights, state ------------------------------------------


def test_registered_like_maml():
    for name in NAMES:
        entry = registry.get("algorithm", name)
        assert entry.task_types == {"classification", "regression"}
        assert entry.defaults.__dataclass_params__.frozen and entry.description
    anil, foanil = registry.get("algorithm", "anil"), registry.get("algorithm", "foanil")
    assert anil.factory is foanil.factory
    assert replace(anil.defaults, first_order=True) == foanil.defaults
    assert registry.get("algorithm", "metasgd").defaults.test_steps == 1


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("anil", {"inner_lr": "-1"}, "anil.inner_lr=-1.0 must be positive"),
        ("foanil", {"test_steps": "-1"}, "foanil.test_steps=-1 must be >= 0"),
        ("metasgd", {"meta_batch_size": "0"}, "metasgd.meta_batch_size=0 must be positive"),
        ("anil", {"compile": "true"}, "anil.compile=True is not supported"),
        ("metasgd", {"compile": "true"}, "metasgd.compile=True is not supported"),
    ],
)
def test_bad_hyperparameters_are_one_line_errors(name, overrides, message):
    with pytest.raises(MetabenchError) as error:
        build(name, **overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_same_initial_weights_as_maml_in_a_cell():
    reference = build("maml").model.state_dict()
    for name in NAMES:
        algorithm = build(name)
        assert algorithm.episodes_per_step == algorithm.hparams.meta_batch_size
        state = algorithm.model.state_dict()
        assert state.keys() == reference.keys()
        assert all(torch.equal(state[key], reference[key]) for key in reference), name


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name, batch, episode):
    trained = build(name)
    trained.meta_train_step(batch)
    fresh = build(name, make_setup(seed=1))
    assert not torch.equal(fresh.predict(episode), trained.predict(episode))
    fresh.load_state_dict(copy.deepcopy(trained.state_dict()))
    assert torch.equal(fresh.predict(episode), trained.predict(episode))
    if name == "metasgd":
        assert "lrs" in trained.state_dict()
        assert all(torch.equal(a, b) for a, b in zip(fresh.lrs, trained.lrs, strict=True))
    # The optimizer state came along too: one more identical step on each.
    trained.meta_train_step(batch)
    fresh.meta_train_step(batch)
    assert torch.equal(fresh.predict(episode), trained.predict(episode))


@pytest.mark.parametrize("name", NAMES)
def test_regression_on_sinusoid(name):
    spec = TaskSpec(shots=10, queries=10, task_type="regression")
    torch.manual_seed(0)
    setup = AlgorithmSetup(MLP((1,)), spec, torch.device("cpu"), input_shape=(1,))
    algorithm = build(name, setup)
    sampler = EpisodeSampler(Sinusoid(), "train", spec, seed=0)
    metrics = algorithm.meta_train_step(sampler.batch(range(algorithm.episodes_per_step)))
    assert set(metrics) == {"loss"} and metrics["loss"] > 0
    assert algorithm.predict(sampler.episode(100)).shape == (10, 1)


# --- Learning (slow) --------------------------------------------------------------------

# name: (meta-training steps, train queries per class); 5-way 1-shot, chance is 0.2.
BUDGETS = {"anil": (40, 5), "metasgd": (30, 5)}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUDGETS))
def test_learns_glyphs_5way_1shot(name):
    steps, train_queries = BUDGETS[name]
    glyphs = build_dataset("glyphs")
    spec = TaskSpec(ways=5, shots=1, queries=15)
    algorithm = build(name, make_setup(spec))
    train = EpisodeSampler(glyphs, "train", replace(spec, queries=train_queries), seed=0)
    size = algorithm.episodes_per_step
    for step in range(steps):
        algorithm.meta_train_step(train.batch(range(step * size, (step + 1) * size)))
    test = EpisodeSampler(glyphs, "test", spec, seed=0)
    hits = [(algorithm.predict(e).argmax(-1) == e.query_y).float().mean()
            for e in (test.episode(i) for i in range(50))]
    reached = float(torch.stack(hits).mean())
    print(f"{name}: {reached:.3f} test accuracy after {steps} meta-training steps")
    assert reached > 0.35
