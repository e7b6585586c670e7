"""What makes training faster must not change what it computes: max-pool before ReLU
(metabench.backbones.pool_before_relu, used by ProtoNets) and the allocator's settings
(metabench.allocator)."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from torch import nn

import metabench
from metabench import TaskSpec, allocator
from metabench.backbones import Conv4, pool_before_relu
from metabench.data.synthetic import SyntheticImages
from metabench.episodes import EpisodeSampler


def swapped(model: Conv4) -> Conv4:
    """A copy with the same weights, pooling before the ReLU."""
    model = pool_before_relu(copy.deepcopy(model))
    for block in list(model)[:4]:
        assert isinstance(block[2], nn.MaxPool2d) and isinstance(block[3], nn.ReLU)
    return model


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_conv4_pooling_before_relu_gives_the_same_outputs_and_gradients_bit_for_bit(layout):
    torch.manual_seed(0)
    reference = Conv4((1, 28, 28)).to(memory_format=layout)
    model = swapped(reference)
    # Binary images, as Omniglot's: flat regions give ties inside pooling windows and
    # all-negative windows after batch norm, where a swapped order could differ.
    images = (torch.rand(24, 1, 28, 28) > 0.7).float()
    weights = torch.randn(model.out_features, 5)
    labels = torch.arange(24) % 5
    for net in (model, reference):
        loss = nn.functional.cross_entropy(net(images) @ weights, labels)
        loss.backward()
    assert torch.equal(model(images), reference(images))
    for (name, ours), (_, theirs) in zip(model.named_parameters(), reference.named_parameters(),
                                         strict=True):
        assert torch.equal(ours.grad, theirs.grad), name
    assert list(model.state_dict()) == list(reference.state_dict())


def test_second_order_gradients_are_the_same_in_either_order():
    torch.manual_seed(1)
    reference = Conv4((1, 28, 28), hidden=8)
    model = swapped(reference)
    images = (torch.rand(10, 1, 28, 28) > 0.5).float()
    results = []
    for net in (model, reference):
        params = dict(net.named_parameters())
        inner = torch.func.functional_call(net, params, (images,)).square().mean()
        grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
        fast = {name: p - 0.4 * g for (name, p), g in zip(params.items(), grads, strict=True)}
        outer = torch.func.functional_call(net, fast, (images,)).sum()
        results.append(torch.autograd.grad(outer, list(params.values())))
    for ours, theirs in zip(*results, strict=True):
        assert torch.equal(ours, theirs)


def test_protonet_trains_to_the_same_weights_as_with_the_textbook_order(monkeypatch):
    from metabench_plugins import protonet

    spec = TaskSpec(5, 1, 3)
    sampler = EpisodeSampler(SyntheticImages(classes=(20, 5, 5), examples=8), "train", spec, seed=0)
    batches = [sampler.batch(range(i, i + 1)) for i in range(3)]

    def trained() -> tuple[list[float], dict]:
        torch.manual_seed(0)
        setup = metabench.AlgorithmSetup(Conv4((1, 28, 28)), spec, torch.device("cpu"), seed=0,
                                         input_shape=(1, 28, 28))
        algorithm = protonet.ProtoNet(setup, protonet.ProtoNetConfig(train_ways=10))
        losses = [algorithm.meta_train_step(batch)["loss"] for batch in batches]
        return losses, algorithm.model.state_dict()

    losses, state = trained()
    monkeypatch.setattr(protonet, "pool_before_relu", lambda module: module)
    textbook_losses, textbook_state = trained()
    assert losses == textbook_losses
    assert all(torch.equal(state[name], textbook_state[name]) for name in state)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_is_set_once_and_training_results_do_not_depend_on_it(monkeypatch):
    monkeypatch.delenv(allocator.OPT_OUT_VARIABLE, raising=False)
    for name in allocator.GLIBC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if allocator._libc() is None:
        pytest.skip("not glibc")
    assert allocator.keep_freed_memory() is True
    allocator.release_freed_memory()  # hands memory back; must not fail
    big = torch.ones(30_000_000)  # over glibc's mmap threshold: now from the heap
    assert float(big.sum()) == 30_000_000.0


@pytest.mark.parametrize("environment", [{"METABENCH_MALLOC": "system"},
                                         {"METABENCH_MALLOC": " System "},
                                         {"MALLOC_TRIM_THRESHOLD_": "131072"}])
def test_the_users_allocator_settings_win(monkeypatch, environment):
    for name in (allocator.OPT_OUT_VARIABLE, *allocator.GLIBC_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    assert not allocator._chosen_by_user()
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert allocator._chosen_by_user()
