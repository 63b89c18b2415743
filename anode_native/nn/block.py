"""ODEBlock: augment the input with zeros, solve dh/dt = f(t, h) over [0, 1] on the native engine.

Reference: anode/models.py, ODEBlock. The number of function evaluations is read from the
engine's statistics (`SolverStats`), never counted inside the vector field.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..odeint import odeint
from ..stats import SolverStats

METHODS = ("dopri5", "euler", "midpoint", "rk4")


def augment(x: torch.Tensor, augment_dim: int) -> torch.Tensor:
    """Append `augment_dim` zeros after the data along dim 1: (B, d) -> (B, d + p) for vectors,
    (B, C, H, W) -> (B, C + p, H, W) (zero channels) for images."""
    if augment_dim == 0:
        return x
    zeros = x.new_zeros(x.shape[0], augment_dim, *x.shape[2:])
    return torch.cat([x, zeros], dim=1)


class ODEBlock(nn.Module):
    """Solves the ODE defined by `odefunc` from the (augmented) input over t in [0, 1].

    Args:
        odefunc: an `ODEFunc` or `ConvODEFunc` (anything with an `augment_dim` attribute).
        tol: rtol = atol of the adaptive solver (the paper uses 1e-3).
        adjoint: if True, gradients come from the adjoint method (`odeint_adjoint`), else from
            direct backpropagation through the solver.
        method: "dopri5" (adaptive) or a fixed-grid method.
        max_num_steps: the solver raises `MaxNumStepsError` beyond this many steps per solve.
        options: further solver options (merged over `max_num_steps`).

    After each forward call `last_stats` holds that solve's `SolverStats`; `nfe_forward` is filled
    at once and `nfe_backward` after `loss.backward()`.
    """

    def __init__(self, odefunc: nn.Module, tol: float = 1e-3, adjoint: bool = False,
                 method: str = "dopri5", max_num_steps: int = 1000,
                 options: Optional[dict] = None):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
        self.odefunc = odefunc
        self.tol = tol
        self.adjoint = adjoint
        self.method = method
        self.max_num_steps = max_num_steps
        self.options = dict(options or {})
        self.last_stats: Optional[SolverStats] = None

    @property
    def augment_dim(self) -> int:
        return int(getattr(self.odefunc, "augment_dim", 0))

    @property
    def nfe_forward(self) -> int:
        """Function evaluations of the last forward solve (0 before any)."""
        return self.last_stats.nfe_forward if self.last_stats is not None else 0

    @property
    def nfe_backward(self) -> int:
        """Function evaluations of the last solve's backward pass (0 until backward has run)."""
        return self.last_stats.nfe_backward if self.last_stats is not None else 0

    def _solver_options(self) -> dict:
        options = {"max_num_steps": self.max_num_steps} if self.method == "dopri5" else {}
        options.update(self.options)
        return options

    def forward(self, x: torch.Tensor, eval_times: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, d) or (B, C, H, W). Returns the final state (B, d + p[, H, W]) when `eval_times`
        is None, else the trajectory (len(eval_times), B, d + p[, H, W])."""
        if eval_times is None:
            times = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
        else:
            times = torch.as_tensor(eval_times).to(dtype=x.dtype, device=x.device)
        x_aug = augment(x, self.augment_dim)
        stats = SolverStats()
        self.last_stats = stats
        kwargs = dict(rtol=self.tol, atol=self.tol, method=self.method,
                      options=self._solver_options(), stats=stats)
        if self.adjoint:
            from ..adjoint import odeint_adjoint  # the adjoint engine may arrive after this file
            out = odeint_adjoint(self.odefunc, x_aug, times, **kwargs)
        else:
            out = odeint(self.odefunc, x_aug, times, **kwargs)
        return out[-1] if eval_times is None else out

    def trajectory(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        """The solution at `timesteps` evenly spaced times in [0, 1]: (timesteps, B, d + p, ...)."""
        return self.forward(x, eval_times=torch.linspace(0.0, 1.0, timesteps))
