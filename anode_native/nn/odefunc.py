"""The MLP vector field of the paper's toy experiments (reference: anode/models.py, ODEFunc)."""
from __future__ import annotations

import torch
from torch import nn

NON_LINEARITIES = ("relu", "softplus", "tanh")


def make_non_linearity(name: str) -> nn.Module:
    """`relu` or `softplus` as in the reference code, or `tanh` (not in place: the engine may keep outputs)."""
    if name == "relu":
        return nn.ReLU()
    if name == "softplus":
        return nn.Softplus()
    if name == "tanh":
        return nn.Tanh()
    raise ValueError(f"non_linearity must be one of {', '.join(NON_LINEARITIES)}; got {name!r}")


def time_column(t, x: torch.Tensor) -> torch.Tensor:
    """`t` (float or 0-dim tensor) broadcast to shape (batch, 1, *x.shape[2:]) in x's dtype/device.

    Kept in the autograd graph when `t` is a tensor, so an adjoint solver can differentiate in t.
    """
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.reshape(()).expand(x.shape[0], 1, *x.shape[2:])


class ODEFunc(nn.Module):
    """f(t, h) = Linear(h -> hidden) - act - Linear(hidden -> hidden) - act - Linear(hidden -> d + p).

    Args:
        data_dim: d, the dimension of the data.
        hidden_dim: width of the two hidden layers.
        augment_dim: p, the number of augmented dimensions (0 for a NODE).
        time_dependent: if True, t is concatenated as an extra first input column.
        non_linearity: "relu" or "softplus".

    forward(t, x): x has shape (batch, d + p); returns dx/dt of the same shape.
    Function evaluations are counted by the engine (`ODEBlock.nfe_forward`), not here.
    """

    def __init__(self, data_dim: int, hidden_dim: int, augment_dim: int = 0,
                 time_dependent: bool = False, non_linearity: str = "relu"):
        super().__init__()
        if data_dim < 1 or hidden_dim < 1 or augment_dim < 0:
            raise ValueError("need data_dim >= 1, hidden_dim >= 1 and augment_dim >= 0; got "
                             f"{data_dim}, {hidden_dim}, {augment_dim}")
        self.data_dim = data_dim
        self.hidden_dim = hidden_dim
        self.augment_dim = augment_dim
        self.input_dim = data_dim + augment_dim
        self.time_dependent = time_dependent
        self.fc1 = nn.Linear(self.input_dim + int(time_dependent), hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, self.input_dim)
        self.non_linearity = make_non_linearity(non_linearity)

    def forward(self, t, x: torch.Tensor) -> torch.Tensor:
        if self.time_dependent:
            x = torch.cat([time_column(t, x), x], dim=1)   # (batch, 1 + d + p)
        out = self.non_linearity(self.fc1(x))
        out = self.non_linearity(self.fc2(out))
        return self.fc3(out)
