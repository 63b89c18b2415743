"""Direct backpropagation through the native solve: against torchdiffeq and finite differences."""
import pytest
import torch
import torchdiffeq

import anode_native as an

F64 = torch.float64


class MLPField(torch.nn.Module):
    def __init__(self, dim=2, hidden=16, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1 = torch.nn.Linear(dim + 1, hidden).double()
        self.l2 = torch.nn.Linear(hidden, dim).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=F64) * 0.5)

    def forward(self, t, y):
        ty = torch.cat([t.expand(*y.shape[:-1], 1), y], dim=-1)
        return self.l2(torch.tanh(self.l1(ty)))


def grads(solver, field, y0, t, **kw):
    y0 = y0.clone().requires_grad_(True)
    out = solver(field, y0, t, **kw)
    loss = (out ** 2).sum() + out[-1, 0].sin().sum()
    params = [y0] + list(field.parameters())
    return torch.autograd.grad(loss, params)


@pytest.mark.parametrize("method,options,rel", [
    ("dopri5", None, 1e-6),
    ("rk4", {"step_size": 0.05}, 1e-10),
    ("midpoint", {"step_size": 0.05}, 1e-10),
])
def test_gradients_match_torchdiffeq(method, options, rel):
    field = MLPField()
    y0 = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0, 1.5, 4, dtype=F64)
    kw = dict(rtol=1e-10, atol=1e-10, method=method, options=options)
    ours = grads(an.odeint, field, y0, t, **kw)
    theirs = grads(torchdiffeq.odeint, field, y0, t, **kw)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=rel, atol=rel * 1e-2)


def test_gradient_of_y0_matches_central_differences():
    field = MLPField(seed=3)
    y0 = torch.tensor([[0.3, -0.2]], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)

    def loss(y):
        return (an.odeint(field, y, t, rtol=1e-11, atol=1e-11)[-1] ** 2).sum()

    y = y0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(y), y)
    eps = 1e-6
    fd = torch.zeros_like(y0)
    with torch.no_grad():
        for i in range(y0.numel()):
            d = torch.zeros_like(y0).reshape(-1)
            d[i] = eps
            d = d.reshape(y0.shape)
            fd.reshape(-1)[i] = (loss(y0 + d) - loss(y0 - d)) / (2 * eps)
    torch.testing.assert_close(g, fd, rtol=1e-6, atol=1e-9)


def test_tuple_state_gradients_match_torchdiffeq():
    w = torch.tensor(0.7, dtype=F64, requires_grad=True)

    def func(t, state):
        x, v = state
        return v, -w * x

    def run(odeint):
        x0 = torch.tensor([1.0, 0.2], dtype=F64, requires_grad=True)
        v0 = torch.tensor([0.0, 0.3], dtype=F64, requires_grad=True)
        x, v = odeint(func, (x0, v0), torch.linspace(0, 2, 3, dtype=F64), rtol=1e-10, atol=1e-10)
        return torch.autograd.grad((x ** 2).sum() + v.sum(), (x0, v0, w))

    for a, b in zip(run(an.odeint), run(torchdiffeq.odeint)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def test_direct_backprop_records_backward_nfe():
    field = MLPField()
    stats = an.SolverStats()
    y0 = torch.zeros(3, 2, dtype=F64)
    out = an.odeint(field, y0, torch.tensor([0.0, 1.0], dtype=F64), stats=stats)
    assert stats.nfe_backward == 0
    out.sum().backward()
    assert stats.nfe_backward == stats.nfe_forward > 0
