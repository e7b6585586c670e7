"""metabench.backbones.Conv2d: traced by torch.compile outside autograd, a single-channel 3x3
convolution is one matrix product, bit for bit oneDNN's output; anything else, and eager
mode, is nn.Conv2d's own forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metabench.backbones import Conv2d, _single_channel_conv3x3


def reference(conv: nn.Conv2d, images: torch.Tensor) -> torch.Tensor:
    return F.conv2d(images, conv.weight, conv.bias, conv.stride, conv.padding)


@pytest.mark.parametrize("count", [1, 5, 75, 300])
@pytest.mark.parametrize("bias", [True, False])
def test_matrix_product_equals_onednn_bit_for_bit(count: int, bias: bool) -> None:
    torch.manual_seed(count)
    conv = Conv2d(1, 64, 3, padding=1, bias=bias)
    images = torch.randn(count, 1, 28, 28)
    with torch.no_grad():
        fast = _single_channel_conv3x3(images, conv.weight, conv.bias)
        slow = reference(conv, images)
    assert fast.stride() == slow.stride()
    assert torch.equal(fast, slow)


def test_compiled_forward_takes_the_matrix_product_and_equals_onednn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    conv = Conv2d(1, 64, 3, padding=1)
    images = torch.randn(75, 1, 28, 28)
    traced = []
    monkeypatch.setattr("metabench.backbones._single_channel_conv3x3",
                        lambda *args: traced.append(1) or _single_channel_conv3x3(*args))
    compiled = torch.compile(conv, dynamic=False)
    with torch.no_grad():
        assert torch.equal(compiled(images), reference(conv, images))
    assert traced, "torch.compile did not trace the matrix product"


def spy(conv: Conv2d, images: torch.Tensor) -> bool:
    return conv._as_matrix_product(images)


def test_onednn_where_results_could_differ_or_it_is_as_fast(
        monkeypatch: pytest.MonkeyPatch) -> None:
    conv = Conv2d(1, 64, 3, padding=1)
    images = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert not spy(conv, images)  # eager: oneDNN is as fast
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not spy(conv, images)  # autograd on: oneDNN's gradients
    with torch.no_grad():
        assert spy(conv, images)
        assert not spy(conv, images.to(memory_format=torch.channels_last))
        assert not spy(Conv2d(1, 64, 3, padding=1).to(memory_format=torch.channels_last), images)
        assert not spy(Conv2d(3, 64, 3, padding=1), torch.randn(4, 3, 28, 28))
        assert not spy(Conv2d(1, 64, 3, stride=2, padding=1), images)
        assert not spy(Conv2d(1, 64, 5, padding=2), images)
        assert not spy(Conv2d(1, 64, 3, padding=1).double(), images.double())


def test_state_dict_names_unchanged() -> None:
    assert list(Conv2d(1, 8, 3, padding=1).state_dict()) == ["weight", "bias"]
    assert isinstance(Conv2d(1, 8, 3), nn.Conv2d)
