"""ODENet and ConvODENet: an ODEBlock followed by a linear readout (reference: anode/models.py,
anode/conv_models.py). A NODE has augment_dim=0, an ANODE augment_dim > 0."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .block import ODEBlock
from .conv import ConvODEFunc
from .odefunc import ODEFunc


class _ODEModel(nn.Module):
    """NFE accessors shared by the ODE models (read from the block's last `SolverStats`)."""

    odeblock: ODEBlock

    @property
    def last_stats(self):
        return self.odeblock.last_stats

    @property
    def nfe_forward(self) -> int:
        return self.odeblock.nfe_forward

    @property
    def nfe_backward(self) -> int:
        return self.odeblock.nfe_backward

    @property
    def augment_dim(self) -> int:
        return self.odeblock.augment_dim


class ODENet(_ODEModel):
    """ODEBlock on vectors followed by Linear(d + p -> output_dim).

    Args:
        data_dim, hidden_dim, augment_dim, time_dependent, non_linearity: see `ODEFunc`.
        output_dim: 1 for regression, the number of classes for classification.
        tol, adjoint, method, max_num_steps: see `ODEBlock`.
        linear_readout: if False there is no readout layer and the prediction is the first
            `output_dim` coordinates of the final state (used to show that the flow itself
            cannot represent g_1d, paper Section 3).

    forward(x, return_features=False): x (B, d) -> prediction (B, output_dim), and the features
    h(1) of shape (B, d + p) first when `return_features`.
    """

    def __init__(self, data_dim: int, hidden_dim: int, output_dim: int = 1, augment_dim: int = 0,
                 time_dependent: bool = False, non_linearity: str = "relu", tol: float = 1e-3,
                 adjoint: bool = False, method: str = "dopri5", max_num_steps: int = 1000,
                 linear_readout: bool = True):
        super().__init__()
        self.data_dim = data_dim
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.time_dependent = time_dependent
        odefunc = ODEFunc(data_dim, hidden_dim, augment_dim, time_dependent, non_linearity)
        self.odeblock = ODEBlock(odefunc, tol=tol, adjoint=adjoint, method=method,
                                 max_num_steps=max_num_steps)
        if linear_readout:
            self.linear_layer: Optional[nn.Linear] = nn.Linear(odefunc.input_dim, output_dim)
        else:
            if output_dim > odefunc.input_dim:
                raise ValueError(f"without a linear readout output_dim ({output_dim}) must be at "
                                 f"most data_dim + augment_dim ({odefunc.input_dim})")
            self.linear_layer = None

    def readout(self, features: torch.Tensor) -> torch.Tensor:
        if self.linear_layer is None:
            return features[:, : self.output_dim]
        return self.linear_layer(features)

    def forward(self, x: torch.Tensor, return_features: bool = False
                ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        features = self.odeblock(x)
        pred = self.readout(features)
        return (features, pred) if return_features else pred


class ConvODENet(_ODEModel):
    """ODEBlock with a `ConvODEFunc`, then Linear((C + p) * H * W -> output_dim) on the flattened
    final state. img_size is (C, H, W); other arguments as in `ODENet` / `ConvODEFunc`."""

    def __init__(self, img_size: Sequence[int], num_filters: int, output_dim: int = 1,
                 augment_dim: int = 0, time_dependent: bool = False, non_linearity: str = "relu",
                 tol: float = 1e-3, adjoint: bool = False, method: str = "dopri5",
                 max_num_steps: int = 1000):
        super().__init__()
        self.img_size = tuple(int(s) for s in img_size)
        self.num_filters = num_filters
        self.output_dim = output_dim
        self.time_dependent = time_dependent
        channels, height, width = self.img_size
        self.flattened_dim = (channels + augment_dim) * height * width
        odefunc = ConvODEFunc(self.img_size, num_filters, augment_dim, time_dependent, non_linearity)
        self.odeblock = ODEBlock(odefunc, tol=tol, adjoint=adjoint, method=method,
                                 max_num_steps=max_num_steps)
        self.linear_layer = nn.Linear(self.flattened_dim, output_dim)

    def forward(self, x: torch.Tensor, return_features: bool = False
                ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        features = self.odeblock(x)
        pred = self.linear_layer(features.reshape(features.shape[0], -1))
        return (features, pred) if return_features else pred


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (the paper's appendix counts these)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
