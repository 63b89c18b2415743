"""Convolutional vector field for images (reference: anode/conv_models.py, ConvODEFunc)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .odefunc import make_non_linearity, time_column


class Conv2dTime(nn.Conv2d):
    """A Conv2d that sees time as an extra constant first input channel (in_channels + 1 inputs)."""

    def __init__(self, in_channels: int, *args, **kwargs):
        super().__init__(in_channels + 1, *args, **kwargs)

    def forward(self, t, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(torch.cat([time_column(t, x), x], dim=1))


class ConvODEFunc(nn.Module):
    """f(t, h) = 1x1 conv - act - 3x3 conv (padding 1) - act - 1x1 conv back to C + p channels.

    Args:
        img_size: (channels C, height, width) of the data.
        num_filters: channels of the two hidden feature maps.
        augment_dim: p, the number of zero channels appended to the image (0 for a NODE).
        time_dependent: if True, t enters as a constant channel before each convolution.
        non_linearity: "relu" or "softplus".

    forward(t, x): x has shape (batch, C + p, height, width).
    """

    def __init__(self, img_size: Sequence[int], num_filters: int, augment_dim: int = 0,
                 time_dependent: bool = False, non_linearity: str = "relu"):
        super().__init__()
        if len(img_size) != 3:
            raise ValueError(f"img_size must be (channels, height, width); got {tuple(img_size)}")
        self.img_size = tuple(int(s) for s in img_size)
        self.num_filters = num_filters
        self.augment_dim = augment_dim
        self.data_dim = self.img_size[0]
        self.time_dependent = time_dependent
        channels = self.img_size[0] + augment_dim
        self.channels = channels
        conv = Conv2dTime if time_dependent else nn.Conv2d
        self.conv1 = conv(channels, num_filters, kernel_size=1, stride=1, padding=0)
        self.conv2 = conv(num_filters, num_filters, kernel_size=3, stride=1, padding=1)
        self.conv3 = conv(num_filters, channels, kernel_size=1, stride=1, padding=0)
        self.non_linearity = make_non_linearity(non_linearity)

    def forward(self, t, x: torch.Tensor) -> torch.Tensor:
        if self.time_dependent:
            out = self.non_linearity(self.conv1(t, x))
            out = self.non_linearity(self.conv2(t, out))
            return self.conv3(t, out)
        out = self.non_linearity(self.conv1(x))
        out = self.non_linearity(self.conv2(out))
        return self.conv3(out)
