"""What makes training faster must not change what it computes: the Conv4 block's order
(max-pool before ReLU) and the allocator's settings (metabench.allocator)."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from torch import nn

from metabench import allocator
from metabench.backbones import Conv4


def textbook_order(model: Conv4) -> Conv4:
    """The same weights in the order the papers write: conv, batch norm, ReLU, max-pool."""
    model = copy.deepcopy(model)
    for block in list(model)[:4]:
        assert isinstance(block[2], nn.MaxPool2d) and isinstance(block[3], nn.ReLU)
        block[2], block[3] = block[3], block[2]
    return model


def test_conv4_pooling_before_relu_gives_the_same_outputs_and_gradients_bit_for_bit():
    torch.manual_seed(0)
    model = Conv4((1, 28, 28))
    reference = textbook_order(model)
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
    model = Conv4((1, 28, 28), hidden=8)
    reference = textbook_order(model)
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
