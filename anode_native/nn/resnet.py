"""The discrete baseline (reference: anode/discrete_models.py)."""
from __future__ import annotations

from typing import Tuple, Union

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """x + ReLU(Linear(ReLU(Linear(x)))), the block of Dupont et al. (after arXiv:1806.10909)."""

    def __init__(self, data_dim: int, hidden_dim: int):
        super().__init__()
        self.data_dim = data_dim
        self.hidden_dim = hidden_dim
        self.mlp = nn.Sequential(nn.Linear(data_dim, hidden_dim), nn.ReLU(),
                                 nn.Linear(hidden_dim, data_dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(x)


class ResNet(nn.Module):
    """`num_layers` residual blocks on data_dim-dimensional points, then Linear(d -> output_dim).
    With `is_img`, images (B, C, H, W) are flattened first (data_dim must be C * H * W).

    forward(x, return_features=False) as for `ODENet`. It has no solver: `nfe_forward` and
    `nfe_backward` are None.
    """

    nfe_forward = None
    nfe_backward = None
    last_stats = None

    def __init__(self, data_dim: int, hidden_dim: int, num_layers: int, output_dim: int = 1,
                 is_img: bool = False):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1; got {num_layers}")
        self.data_dim = data_dim
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.output_dim = output_dim
        self.is_img = is_img
        self.residual_blocks = nn.Sequential(
            *[ResidualBlock(data_dim, hidden_dim) for _ in range(num_layers)])
        self.linear_layer = nn.Linear(data_dim, output_dim)

    def forward(self, x: torch.Tensor, return_features: bool = False
                ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        if self.is_img:
            x = x.reshape(x.shape[0], -1)
        features = self.residual_blocks(x)
        pred = self.linear_layer(features)
        return (features, pred) if return_features else pred
