"""metabench.backbones.Conv2d: a single-channel 3x3 convolution outside autograd is one matrix
product, bit for bit nn.Conv2d's output; anything else is nn.Conv2d's own forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metabench.backbones import Conv2d, Conv4


def reference(conv: nn.Conv2d, images: torch.Tensor) -> torch.Tensor:
    return F.conv2d(images, conv.weight, conv.bias, conv.stride, conv.padding)


@pytest.mark.parametrize("count", [1, 5, 75, 300])
@pytest.mark.parametrize("bias", [True, False])
def test_equal_to_onednn_bit_for_bit(count: int, bias: bool) -> None:
    torch.manual_seed(count)
    conv = Conv2d(1, 64, 3, padding=1, bias=bias)
    images = torch.randn(count, 1, 28, 28)
    with torch.no_grad():
        assert conv._as_matrix_product(images)
        fast = conv(images)
        slow = reference(conv, images)
    assert fast.stride() == slow.stride()
    assert torch.equal(fast, slow)


def test_conv4_outputs_unchanged_in_evaluation() -> None:
    torch.manual_seed(0)
    network = Conv4((1, 28, 28)).train()
    plain = Conv4((1, 28, 28)).train()
    for layer in plain.modules():  # the same network with every convolution plain nn.Conv2d
        if isinstance(layer, Conv2d):
            layer.__class__ = nn.Conv2d
    plain.load_state_dict(network.state_dict())
    images = torch.randn(75, 1, 28, 28)
    with torch.inference_mode():
        assert torch.equal(network(images), plain(images))


def spy(conv: Conv2d, images: torch.Tensor) -> bool:
    return conv._as_matrix_product(images)


def test_onednn_where_results_could_differ() -> None:
    conv = Conv2d(1, 64, 3, padding=1)
    images = torch.randn(4, 1, 28, 28)
    assert not spy(conv, images)  # autograd on: oneDNN's gradients
    with torch.no_grad():
        assert not spy(conv, images.to(memory_format=torch.channels_last))
        assert not spy(conv.to(memory_format=torch.channels_last), images)  # (9, 1, 3, 1)
        assert not spy(Conv2d(3, 64, 3, padding=1), torch.randn(4, 3, 28, 28))
        assert not spy(Conv2d(1, 64, 3, stride=2, padding=1), images)
        assert not spy(Conv2d(1, 64, 5, padding=2), images)
        assert not spy(Conv2d(1, 64, 3, padding=1).double(), images.double())


def test_state_dict_names_unchanged() -> None:
    assert list(Conv2d(1, 8, 3, padding=1).state_dict()) == ["weight", "bias"]
    assert isinstance(Conv2d(1, 8, 3), nn.Conv2d)
