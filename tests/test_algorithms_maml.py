"""MAML and first-order MAML: meta-gradients against learn2learn, vmap, test-time adaptation."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from metabench import AlgorithmSetup, Episode, TaskSpec
from metabench.backbones import MLP, Conv4
from metabench.data.sinusoid import Sinusoid
from metabench.episodes import EpisodeSampler
from metabench_plugins import maml as maml_module
from metabench_plugins.maml import MAML, MAMLConfig

SPEC = TaskSpec(ways=5, shots=1, queries=2)


def make_setup(spec: TaskSpec = SPEC, seed: int = 0) -> AlgorithmSetup:
    torch.manual_seed(seed)
    return AlgorithmSetup(Conv4((1, 28, 28)), spec, torch.device("cpu"), seed=seed)


@pytest.fixture
def batch(tiny_dataset):
    return EpisodeSampler(tiny_dataset, "train", SPEC, seed=0).batch(range(2))


@pytest.fixture
def episode(tiny_dataset):
    return EpisodeSampler(tiny_dataset, "test", SPEC, seed=0).episode(0)


def meta_gradient(algorithm: MAML, batch) -> list[torch.Tensor]:
    """The gradient meta_train_step computed (Adam's step leaves ``.grad`` in place)."""
    algorithm.meta_train_step(batch)
    return [p.grad.clone() for p in algorithm.model.parameters()]


def learn2learn_gradient(model, batch, inner_lr: float, steps: int, first_order: bool):
    """The MAML meta-gradient as learn2learn's clone/adapt loop computes it."""
    l2l = pytest.importorskip("learn2learn")
    maml = l2l.algorithms.MAML(model, lr=inner_lr, first_order=first_order)
    for episode in batch:
        learner = maml.clone()
        for _ in range(steps):
            learner.adapt(F.cross_entropy(learner(episode.support_x), episode.support_y))
        loss = F.cross_entropy(learner(episode.query_x), episode.query_y) / len(batch)
        loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def assert_gradients_close(ours, theirs, rtol: float = 1e-4) -> None:
    """Each tensor within ``rtol`` of the reference, relative to the norm of its gradient.

    Conv biases that feed batch norm have a true gradient of zero, so their float noise
    is measured against the norm of the whole gradient instead.
    """
    total = torch.cat([g.flatten() for g in theirs]).norm()
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        scale = max(float(b.norm()), 1e-3 * float(total))
        error = float((a - b).norm())
        assert error <= rtol * scale, f"tensor {i}: |difference| {error:.3g} vs |grad| {scale:.3g}"


@pytest.mark.parametrize("first_order", [False, True], ids=["maml", "fomaml"])
@pytest.mark.parametrize("steps", [1, 2])
def test_meta_gradient_equals_learn2learn(batch, first_order, steps):
    algorithm = MAML(make_setup(), MAMLConfig(first_order=first_order, train_steps=steps))
    reference = copy.deepcopy(algorithm.model).to(memory_format=torch.contiguous_format)
    ours = meta_gradient(algorithm, batch)
    theirs = learn2learn_gradient(reference, batch, algorithm.inner_lr, steps, first_order)
    assert_gradients_close(ours, theirs)


def test_first_and_second_order_gradients_differ(batch):
    second = meta_gradient(MAML(make_setup(), MAMLConfig(first_order=False)), batch)
    first = meta_gradient(MAML(make_setup(), MAMLConfig(first_order=True)), batch)
    assert not torch.allclose(first[0], second[0], rtol=1e-3)


def relative_difference(ours, reference) -> float:
    total = torch.cat([g.flatten() for g in reference]).norm()
    difference = torch.cat([(a - b).flatten() for a, b in zip(ours, reference, strict=True)])
    return float(difference.norm() / total)


@pytest.mark.parametrize(("first_order", "tolerance"), [(True, 1e-4), (False, 1e-2)],
                         ids=["fomaml", "maml"])
def test_vmap_over_tasks_matches_the_loop_on_conv4(batch, first_order, tolerance):
    # Second order through batch norm, functorch's batching rule departs from autograd's
    # exact double backward by ~1e-3 (also in float64; see docs/algorithms.md), hence 1e-2.
    config = MAMLConfig(first_order=first_order, channels_last=False)
    looped = meta_gradient(MAML(make_setup(), config), batch)
    vmapped = meta_gradient(MAML(make_setup(), replace(config, vmap_tasks=True)), batch)
    assert relative_difference(vmapped, looped) < tolerance


def test_vmap_second_order_is_exact_without_batch_norm():
    spec = sinusoid_setup().spec
    batch = EpisodeSampler(Sinusoid(), "train", spec, seed=0).batch(range(4))
    config = MAMLConfig(train_steps=2)
    looped = meta_gradient(MAML(sinusoid_setup(), config), batch)
    vmapped = meta_gradient(MAML(sinusoid_setup(), replace(config, vmap_tasks=True)), batch)
    assert relative_difference(vmapped, looped) < 1e-5


def test_channels_last_changes_only_the_layout(episode):
    flat = MAML(make_setup(), MAMLConfig(channels_last=False)).predict(episode)
    last = MAML(make_setup(), MAMLConfig(channels_last=True)).predict(episode)
    torch.testing.assert_close(last, flat, rtol=1e-4, atol=1e-4)


def test_channels_last_makes_even_the_first_activation_channels_last(episode):
    """One-channel images leave the first convolution's layout ambiguous; a hook settles it."""
    seen = []
    for channels_last in (True, False):
        algorithm = MAML(make_setup(), MAMLConfig(channels_last=channels_last))
        first_conv = next(m for m in algorithm.model.modules() if isinstance(m, torch.nn.Conv2d))
        handle = first_conv.register_forward_hook(lambda m, i, out: seen.append(out))
        algorithm.predict(episode)
        handle.remove()
        layouts = {out.is_contiguous(memory_format=torch.channels_last) for out in seen}
        assert layouts == {channels_last}
        seen.clear()


@pytest.mark.slow
def test_compiled_predict_equals_eager_predict(episode):
    eager = MAML(make_setup(), MAMLConfig()).predict(episode)
    compiled = MAML(make_setup(), MAMLConfig(compile=True))
    torch.testing.assert_close(compiled.predict(episode), eager, rtol=1e-4, atol=1e-4)
    assert compiled._compile, "compilation failed and fell back to eager mode"


def test_failed_compilation_falls_back_to_eager(episode, monkeypatch):
    def broken():
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(maml_module, "compiled_adapt_and_predict", broken)
    algorithm = MAML(make_setup(), MAMLConfig(compile=True))
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler.*eager mode"):
        logits = algorithm.predict(episode)
    torch.testing.assert_close(logits, MAML(make_setup(), MAMLConfig()).predict(episode))


def test_predict_is_manual_sgd_on_the_support_set(episode):
    algorithm = MAML(make_setup(), MAMLConfig(test_steps=3, channels_last=False))
    model = copy.deepcopy(algorithm.model)
    for _ in range(3):
        loss = F.cross_entropy(model(episode.support_x), episode.support_y)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads, strict=True):
                p -= 0.4 * g
    expected = model(episode.query_x)
    torch.testing.assert_close(algorithm.predict(episode), expected, rtol=1e-4, atol=1e-5)


def test_predict_builds_no_graph_and_leaves_the_weights(episode):
    algorithm = MAML(make_setup(), MAMLConfig())
    before = copy.deepcopy(algorithm.model.state_dict())
    logits = algorithm.predict(episode)
    assert logits.shape == (SPEC.ways * SPEC.queries, SPEC.ways)
    assert not logits.requires_grad and logits.grad_fn is None
    for name, value in algorithm.model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in algorithm.model.parameters())


def test_predict_works_inside_inference_mode(episode):
    algorithm = MAML(make_setup(), MAMLConfig())
    expected = algorithm.predict(episode)
    with torch.inference_mode():
        tensors = (episode.support_x, episode.support_y, episode.query_x, episode.query_y)
        frozen = Episode(*(t.clone() for t in tensors), episode.classes, episode.identity)
        assert frozen.support_x.is_inference()
        torch.testing.assert_close(algorithm.predict(frozen), expected)


def test_inner_lr_defaults_follow_the_paper_per_task_type():
    assert MAML(make_setup(), MAMLConfig()).inner_lr == 0.4
    regression = TaskSpec(shots=10, queries=10, task_type="regression")
    setup = AlgorithmSetup(MLP((1,)), regression, torch.device("cpu"), input_shape=(1,))
    assert MAML(setup, MAMLConfig()).inner_lr == 0.01
    assert MAML(make_setup(), MAMLConfig(inner_lr=0.1)).inner_lr == 0.1
    # First order: 0.1 for classification (0.4 overshoots without the second-order term).
    assert MAML(make_setup(), MAMLConfig(first_order=True)).inner_lr == 0.1
    assert MAML(setup, MAMLConfig(first_order=True)).inner_lr == 0.01
    assert MAML(make_setup(), MAMLConfig(first_order=True, inner_lr=0.4)).inner_lr == 0.4


def test_meta_training_step_reports_loss_and_accuracy(batch):
    metrics = MAML(make_setup(), MAMLConfig()).meta_train_step(batch)
    assert set(metrics) == {"loss", "accuracy"}
    assert metrics["loss"] > 0 and 0.0 <= metrics["accuracy"] <= 1.0


def sinusoid_setup(seed: int = 0) -> AlgorithmSetup:
    torch.manual_seed(seed)
    spec = TaskSpec(shots=10, queries=10, task_type="regression")
    return AlgorithmSetup(MLP((1,)), spec, torch.device("cpu"), seed=seed, input_shape=(1,))


def mean_test_mse(algorithm: MAML, episodes) -> float:
    errors = [F.mse_loss(algorithm.predict(e), e.query_y) for e in episodes]
    return float(torch.stack(errors).mean())


def pretrain(algorithm: MAML, sampler: EpisodeSampler, steps: int, tasks: int) -> None:
    """The baseline of Finn et al.: one network regressed on all tasks, no inner loop."""
    optimizer = torch.optim.Adam(algorithm.model.parameters(), lr=1e-2)
    for step in range(steps):
        batch = sampler.batch(range(step * tasks, (step + 1) * tasks))
        x = torch.cat([batch.support_x, batch.query_x], 1).flatten(0, 1)
        y = torch.cat([batch.support_y, batch.query_y], 1).flatten(0, 1)
        loss = F.mse_loss(algorithm.model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_maml_on_sinusoid_beats_pretraining_on_all_tasks():
    """Finn et al. 2017, Table 2 shape: 10-shot, one inner step of 0.01 at test for both."""
    spec = sinusoid_setup().spec
    train = EpisodeSampler(Sinusoid(), "train", spec, seed=0)
    test = [EpisodeSampler(Sinusoid(), "test", spec, seed=0).episode(i) for i in range(100)]
    # vmap over tasks: ~9x faster than the loop for this tiny network on CPU.
    config = MAMLConfig(train_steps=1, test_steps=1, meta_lr=1e-2, meta_batch_size=10,
                        vmap_tasks=True)
    maml = MAML(sinusoid_setup(), config)
    steps = 400
    for step in range(steps):
        maml.meta_train_step(train.batch(range(step * 10, (step + 1) * 10)))
    pretrained = MAML(sinusoid_setup(), config)
    pretrain(pretrained, train, steps, tasks=10)
    maml_mse, pretrained_mse = mean_test_mse(maml, test), mean_test_mse(pretrained, test)
    # Measured: 0.85 against 2.64 after 500 steps.
    assert maml_mse < 0.5 * pretrained_mse, (maml_mse, pretrained_mse)
