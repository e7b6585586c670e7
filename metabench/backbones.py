"""Built-in backbones: Conv4 (Finn et al., Snell et al.), ResNet-12, and the sinusoid MLP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metabench.hookspecs import hookimpl
from metabench.plugin_types import RegisterBackbone


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, names and results) whose forward for one input channel,
    3x3 kernel, stride 1, padding 1, traced by ``torch.compile`` without autograd on the CPU
    is one matrix product over the nine shifted copies of the image.

    The sums are oneDNN's, in the same order, bit for bit (tests/test_single_channel_conv.py);
    compiled, the shifted copies and the channels-last product fuse with the batch norm that
    follows: MAML's compiled evaluation of a 5-way 1-shot Omniglot-sized episode took 43
    instead of 52 ms on one CPU thread. Eagerly, oneDNN's own kernel is as fast, so it runs.
    Only outside autograd (the query pass after adapting): the gradients of the two ways
    differ at float rounding, and training keeps nn.Conv2d's.
    """

    def forward(self, input: Tensor) -> Tensor:
        if self._as_matrix_product(input):
            return _single_channel_conv3x3(input, self.weight, self.bias)
        return super().forward(input)

    def _as_matrix_product(self, input: Tensor) -> bool:
        # Strides exactly NCHW: with channels-last strides oneDNN sums in another order.
        return (torch.compiler.is_compiling() and not torch.is_grad_enabled()
                and input.dim() == 4 and input.shape[1] == 1
                and input.device.type == "cpu" and input.dtype == torch.float32
                and self.kernel_size == (3, 3) and self.stride == (1, 1)
                and self.padding == (1, 1) and self.dilation == (1, 1) and self.groups == 1
                and self.padding_mode == "zeros" and _plain_strides(input)
                and _plain_strides(self.weight))


def _plain_strides(tensor: Tensor) -> bool:
    """Whether ``tensor`` has the row-major strides of its shape (size-1 dimensions too)."""
    expected, stride = [], 1
    for size in reversed(tensor.shape):
        expected.append(stride)
        stride *= size
    return tensor.stride() == tuple(reversed(expected))


def _single_channel_conv3x3(images: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """A 3x3, padding-1 convolution of ``[N, 1, H, W]`` images as one matrix product, laid
    out contiguous as oneDNN lays out the convolution of one channel."""
    count, _, height, width = images.shape
    padded = F.pad(images[:, 0], (1, 1, 1, 1))
    columns = torch.stack([padded[:, i:i + height, j:j + width] for i in range(3)
                           for j in range(3)], dim=-1).reshape(-1, 9)
    matrix = weight.reshape(weight.shape[0], 9).t()
    out = torch.addmm(bias, columns, matrix) if bias is not None else columns @ matrix
    return out.view(count, height, width, -1).permute(0, 3, 1, 2).contiguous()


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv, batch norm, ReLU, 2x2 max-pool."""
    return nn.Sequential(
        Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


def pool_before_relu(module: nn.Module) -> nn.Module:
    """Swap each ReLU followed by a max-pool inside ``module``'s ``nn.Sequential`` layers, in
    place: conv, batch norm, max-pool, ReLU computes what conv, batch norm, ReLU, max-pool does.

    The outputs and gradients are the same bit for bit (ReLU is monotonic, so it commutes
    with a maximum and the pooled position is the same; tested for Conv4 with NCHW and
    channels-last weights), and the parameters keep their names, but the ReLU and its backward
    run on a quarter of the values: 1.17x on a ProtoNets 60-way Omniglot step on CPU. With
    every convolution's output made channels-last by forward hooks (the MAML family's
    ``channels_last``), batch norm's backward receives its gradient in another order and the
    results differ at float rounding: those algorithms keep the textbook order.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Sequential):
            for i in range(len(layer) - 1):
                if type(layer[i]) is nn.ReLU and isinstance(layer[i + 1], nn.MaxPool2d):
                    layer[i], layer[i + 1] = layer[i + 1], layer[i]
    return module


class Conv4(nn.Sequential):
    """Four conv blocks of 64 filters (Vinyals et al.; Finn et al.; Snell et al.), flattened."""

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), hidden: int = 64) -> None:
        channels = input_shape[0]
        super().__init__(
            conv_block(channels, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, hidden),
            nn.Flatten(),
        )
        self.out_features = _output_size(self, input_shape)


class Conv4Narrow(Conv4):
    """Conv4 with 32 filters per layer: Finn et al. and Nichol et al. on mini-ImageNet."""

    def __init__(self, input_shape: Sequence[int] = (3, 84, 84)) -> None:
        super().__init__(input_shape, hidden=32)


def strided_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv with stride 2 (padding 1), batch norm, ReLU: no pooling."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class Conv4Strided(nn.Sequential):
    """Four stride-2 conv blocks of 64 filters, flattened: the Omniglot network of Nichol et
    al. 2018 (and of Finn et al. 2017, who average the last map over space instead)."""

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), hidden: int = 64) -> None:
        channels = input_shape[0]
        super().__init__(
            strided_block(channels, hidden),
            strided_block(hidden, hidden),
            strided_block(hidden, hidden),
            strided_block(hidden, hidden),
            nn.Flatten(),
        )
        self.out_features = _output_size(self, input_shape)


class ResidualBlock(nn.Module):
    """ResNet-12 block: three 3x3 convs with a 1x1 shortcut, then 2x2 max-pool."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [
                nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
            ]
            if i < 2:
                layers.append(nn.LeakyReLU(0.1))
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.out = nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x) + self.shortcut(x))


class ResNet12(nn.Sequential):
    """ResNet-12 (Oreshkin et al. 2018; Lee et al. 2019), global average pooled."""

    def __init__(
        self, input_shape: Sequence[int] = (3, 84, 84), widths: Sequence[int] = (64, 160, 320, 640)
    ) -> None:
        blocks = []
        channels = input_shape[0]
        for width in widths:
            blocks.append(ResidualBlock(channels, width))
            channels = width
        super().__init__(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = channels


class MLP(nn.Sequential):
    """Two hidden layers of 40 ReLU units: the sinusoid network of Finn et al. 2017."""

    def __init__(self, input_shape: Sequence[int] = (1,), hidden: int = 40) -> None:
        super().__init__(
            nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )
        self.out_features = hidden


class PolicyMLP(nn.Sequential):
    """Two hidden layers of 100 ReLU units on an observation vector (any leading dims): the
    policy network of Finn et al. 2017's reinforcement-learning experiments."""

    def __init__(self, input_shape: Sequence[int] = (2,), hidden: int = 100) -> None:
        super().__init__(nn.Linear(int(input_shape[-1]), hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.ReLU())
        self.out_features = hidden


def _output_size(module: nn.Module, input_shape: Sequence[int]) -> int:
    with torch.no_grad():
        was_training = module.training
        module.eval()
        size = module(torch.zeros(1, *input_shape)).shape[-1]
        module.train(was_training)
    return int(size)


@hookimpl
def register_backbones(register: RegisterBackbone) -> None:
    register("conv4", Conv4, task_types={"classification"},
             description="4 x [3x3 conv 64, batch norm, ReLU, 2x2 max-pool] (Finn et al.; Snell et al.)")
    register("conv4-32", Conv4Narrow, task_types={"classification"},
             description="conv4 with 32 filters (Finn et al.; Nichol et al. on mini-ImageNet)")
    register("conv4-strided", Conv4Strided, task_types={"classification"},
             description="4 x [3x3 conv 64 stride 2, batch norm, ReLU], no pooling (Nichol et "
                         "al. 2018 and Finn et al. 2017 on Omniglot)")
    register("resnet12", ResNet12, task_types={"classification"},
             description="ResNet-12, widths 64-160-320-640, average pooled (Lee et al. 2019)")
    register("mlp", MLP, task_types={"regression"},
             description="2 x 40 ReLU hidden units, the sinusoid network (Finn et al. 2017)")
    register("policy-mlp", PolicyMLP, task_types={"rl"},
             description="2 x 100 ReLU hidden units on observations, the policy network of "
                         "Finn et al. 2017 (rl)")
