"""Test problems shared by the solver tests: right-hand sides with analytic or reference solutions."""
import torch

torch.manual_seed(1234)
_A3 = torch.randn(3, 3, dtype=torch.float64) * 0.7
_MLP = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
_MLP_Y0 = torch.randn(8, 2, dtype=torch.float64)


class Counted:
    """Wraps func(t, y) and counts its calls, to compare NFE with torchdiffeq independently."""

    def __init__(self, func):
        self.func, self.calls = func, 0

    def __call__(self, t, y):
        self.calls += 1
        return self.func(t, y)


def decay(t, y):
    return -0.5 * y


def oscillator(t, y):
    return torch.stack([y[1], -y[0]])


def linear3(t, y):
    return _A3.to(y.dtype) @ y


def van_der_pol(t, y, mu=1.0):
    return torch.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])


def rigid_body(t, y):
    # Euler's equations of a rigid body without external forces (the classic MATLAB example).
    return torch.stack([y[1] * y[2], -y[0] * y[2], -0.51 * y[0] * y[1]])


def mlp(t, y):
    return _MLP.to(y.dtype)(y)


def forced(t, y):
    return torch.sin(3 * t) * y


PROBLEMS = {
    "decay": (decay, torch.tensor([1.0, 2.0], dtype=torch.float64)),
    "oscillator": (oscillator, torch.tensor([1.0, 0.0], dtype=torch.float64)),
    "linear3": (linear3, torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)),
    "van_der_pol": (van_der_pol, torch.tensor([2.0, 0.0], dtype=torch.float64)),
    "rigid_body": (rigid_body, torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)),
    "mlp": (mlp, _MLP_Y0),
    "forced": (forced, torch.tensor([1.0, 2.0], dtype=torch.float64)),
}

A3 = _A3
