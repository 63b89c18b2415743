"""odeint_adjoint: gradients against direct backprop, finite differences and torchdiffeq; seminorm,
memory, statistics, multiple output times and fixed-grid adjoints. Error paths: test_adjoint_errors.py."""
import ctypes
import math

import pytest
import torch
import torchdiffeq

import anode_native as an

F64 = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)


class Linear(torch.nn.Module):
    """dy/dt = A y (+ b t): a linear system, with a time dependence so dL/dt is non-trivial."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = torch.nn.Parameter(torch.randn(3, 3, generator=g, dtype=F64) * 0.5)
        self.b = torch.nn.Parameter(torch.randn(3, generator=g, dtype=F64) * 0.3)

    def forward(self, t, y):
        return y @ self.A.T + self.b * t


class MLP(torch.nn.Module):
    """A nonlinear vector field f(t, y) = W2 tanh(W1 [t, y] + b1) + b2."""

    def __init__(self, dim=2, hidden=16, seed=0, scale=0.5):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1 = torch.nn.Linear(dim + 1, hidden).double()
        self.l2 = torch.nn.Linear(hidden, dim).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=F64) * scale)

    def forward(self, t, y):
        ty = torch.cat([t.expand(*y.shape[:-1], 1), y], dim=-1)
        return self.l2(torch.tanh(self.l1(ty)))


def _case(name):
    """(field, y0, t, loss weights W): loss = sum(W * ys) + sum(ys[-1] ** 2), on every output."""
    g = torch.Generator().manual_seed(7)
    if name == "linear":
        field, y0, t = Linear(), torch.tensor([1.0, -0.5, 0.25], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    elif name == "mlp":
        field, y0, t = MLP(), torch.randn(3, 2, generator=g, dtype=F64), torch.tensor([0.0, 1.2], dtype=F64)
    elif name == "mlp_10_outputs":
        field, y0 = MLP(seed=1), torch.randn(3, 2, generator=g, dtype=F64)
        t = torch.linspace(0.0, 1.5, 10, dtype=F64) + 0.05 * torch.rand(10, generator=g, dtype=F64)
    elif name == "mlp_decreasing_t":
        field, y0, t = MLP(seed=2), torch.randn(3, 2, generator=g, dtype=F64), torch.tensor([1.0, 0.4, -0.3], dtype=F64)
    weights = torch.randn(len(t), *y0.shape, generator=g, dtype=F64)
    return field, y0, t, weights


def _loss(ys, weights):
    return (weights * ys).sum() + (ys[-1] ** 2).sum()


def _grads(solve, field, y0, t, weights, **kw):
    """dL/dy0, dL/dtheta (flat), dL/dt."""
    y0, t = y0.clone().requires_grad_(True), t.clone().requires_grad_(True)
    params = list(field.parameters())
    # (an.odeint's direct backprop gives no time gradient: None then.)
    gs = torch.autograd.grad(_loss(solve(field, y0, t, **kw), weights), [y0, t] + params, allow_unused=True)
    return gs[0], torch.cat([g.reshape(-1) for g in gs[2:]]), gs[1]


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _central_difference(fun, eps):
    """Five-point central difference of a scalar function of a scalar at 0."""
    return (-fun(2 * eps) + 8 * fun(eps) - 8 * fun(-eps) + fun(-2 * eps)) / (12 * eps)


CASES = ["linear", "mlp", "mlp_10_outputs", "mlp_decreasing_t"]


@pytest.mark.parametrize("case", CASES)
def test_adjoint_matches_direct_backprop_and_finite_differences(case):
    field, y0, t, weights = _case(case)
    g_y0, g_theta, g_t = _grads(an.odeint_adjoint, field, y0, t, weights, **TOL)
    d_y0, d_theta, _ = _grads(an.odeint, field, y0, t, weights, **TOL)
    assert _rel(g_y0, d_y0) < 1e-6 and _rel(g_theta, d_theta) < 1e-6

    def loss(y0_, t_):
        with torch.no_grad():
            return _loss(an.odeint(field, y0_, t_, **TOL), weights).item()

    gen = torch.Generator().manual_seed(3)
    v = torch.randn(y0.shape, generator=gen, dtype=F64)
    fd = _central_difference(lambda e: loss(y0 + e * v, t), 1e-3)
    assert abs(fd - (g_y0 * v).sum().item()) <= 1e-6 * abs(fd)

    params = list(field.parameters())
    vs = [torch.randn(p.shape, generator=gen, dtype=F64) for p in params]

    def shifted(e):
        with torch.no_grad():
            for p, w in zip(params, vs):
                p.add_(e * w)
            value = loss(y0, t)
            for p, w in zip(params, vs):
                p.sub_(e * w)
            return value
    fd = _central_difference(shifted, 1e-3)
    assert abs(fd - (g_theta * torch.cat([w.reshape(-1) for w in vs])).sum().item()) <= 1e-6 * abs(fd)

    # Every output time on its own: first, intermediate and last.
    fd_t = torch.tensor([_central_difference(lambda e: loss(y0, t + e * torch.eye(len(t), dtype=F64)[i]), 1e-3)
                         for i in range(len(t))], dtype=F64)
    assert _rel(g_t, fd_t) < 1e-6
    assert (g_t - fd_t).abs().max() <= 1e-6 * fd_t.abs().max()


@pytest.mark.parametrize("case", CASES)
def test_adjoint_matches_torchdiffeq_adjoint(case):
    field, y0, t, weights = _case(case)
    ours = _grads(an.odeint_adjoint, field, y0, t, weights, **TOL)
    theirs = _grads(torchdiffeq.odeint_adjoint, field, y0, t, weights, method="dopri5", **TOL)
    for a, b in zip(ours, theirs):
        assert _rel(a, b) < 1e-6


def test_first_interval_takes_torchdiffeq_steps():
    # With t requiring grad (torchdiffeq then integrates a_t, see the report) and 2 output times, the
    # backward solve is torchdiffeq's but for the last step, which we end on t0 instead of overshooting.
    field, y0, t, weights = _case("mlp")
    counts = {}
    for name, solve in (("ours", an.odeint_adjoint), ("theirs", torchdiffeq.odeint_adjoint)):
        y = y0.clone().requires_grad_(True)
        ys = solve(field, y, t.clone().requires_grad_(True), rtol=1e-6, atol=1e-6)
        calls = []
        handle = field.l1.register_forward_hook(lambda *args: calls.append(1))
        _loss(ys, weights).backward()
        handle.remove()
        counts[name] = len(calls)
    assert abs(counts["ours"] - counts["theirs"]) <= 6, counts
    assert an.last_stats().nfe_backward == counts["ours"]


def test_seminorm_takes_fewer_backward_evaluations():
    field = MLP(dim=2, hidden=64, seed=4, scale=0.3)  # ~400 parameters
    y0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    t = torch.tensor([0.0, 2.0], dtype=F64)
    nfe, grads = {}, {}
    for norm in ("default", "seminorm"):
        stats = an.SolverStats()
        y = y0.clone().requires_grad_(True)
        ys = an.odeint_adjoint(field, y, t, rtol=1e-7, atol=1e-7, adjoint_options={"norm": norm}, stats=stats)
        grads[norm] = torch.autograd.grad((ys[-1] ** 2).sum(), [y] + list(field.parameters()))
        nfe[norm] = stats.nfe_backward
    assert nfe["seminorm"] < nfe["default"], nfe
    for a, b in zip(grads["seminorm"], grads["default"]):
        assert _rel(a, b) < 1e-4


def _malloc_in_use():
    """Bytes malloc has handed out and not taken back (glibc), or None elsewhere."""
    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
    except (OSError, AttributeError):
        return None
    return lambda: (lambda m: m.uordblks + m.hblkhd)(libc.mallinfo2())


def test_backward_memory_does_not_grow_with_the_number_of_steps():
    in_use = _malloc_in_use()
    if in_use is None:
        pytest.skip("needs glibc's mallinfo2 to count allocated bytes")
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 16)).double()
    peak = {"bytes": 0}

    def field(t, y):  # samples the allocator on every evaluation of the backward pass
        peak["bytes"] = max(peak["bytes"], in_use())
        return net(y)

    def backward_peak(steps):
        y0 = torch.randn(64, 16, dtype=F64, requires_grad=True)
        opts = {"first_step": 1.0 / steps, "max_step": 1.0 / steps}  # every step accepted at this tolerance
        stats = an.SolverStats()
        ys = an.odeint_adjoint(field, y0, torch.tensor([0.0, 1.0], dtype=F64), rtol=1e-1, atol=1e-1, options=opts,
                               adjoint_options=opts, adjoint_params=tuple(net.parameters()), stats=stats)
        loss = (ys[-1] ** 2).sum()
        base = in_use()
        peak["bytes"] = base
        loss.backward()
        assert abs(stats.accepted_backward - steps) <= 1  # (+1: a last sliver of rounding)
        return max(peak["bytes"], in_use()) - base

    backward_peak(20)  # warm up caches
    small, large = backward_peak(20), backward_peak(2000)
    assert large <= 2 * small, (small, large)


def test_statistics_are_filled_by_backward():
    field, y0, t, weights = _case("mlp_10_outputs")
    stats = an.SolverStats()
    ys = an.odeint_adjoint(field, y0.clone().requires_grad_(True), t, rtol=1e-6, atol=1e-6, stats=stats)
    assert an.last_stats() is stats and stats.nfe_forward > 0 and stats.nfe_backward == 0
    _loss(ys, weights).backward()
    assert stats.accepted_backward > 0 and stats.nfe_backward >= 6 * stats.steps_backward


def test_many_output_times_cost_little_more_than_two():
    field, y0, _, _ = _case("mlp")
    costs, grads = {}, {}
    for n in (2, 100):
        stats = an.SolverStats()
        y = y0.clone().requires_grad_(True)
        ys = an.odeint_adjoint(field, y, torch.linspace(0, 1, n, dtype=F64), rtol=1e-6, atol=1e-6, stats=stats)
        grads[n] = torch.autograd.grad((ys[-1] ** 2).sum(), [y] + list(field.parameters()))
        costs[n] = stats.nfe_backward
    # The loss only sees the last output: the other 98 add nothing and are stepped across.
    assert costs[100] == costs[2]
    for a, b in zip(grads[100], grads[2]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)

    # A loss on every output restarts there, but with the step size carried: no initial-step
    # heuristic (2 NFE) and no ramp-up from its small first step at each of the 99 output times.
    nfe = {}
    for name, solve in (("ours", an.odeint_adjoint), ("theirs", torchdiffeq.odeint_adjoint)):
        y = y0.clone().requires_grad_(True)
        ys = solve(field, y, torch.linspace(0, 1, 100, dtype=F64), rtol=1e-6, atol=1e-6)
        calls = []
        handle = field.l1.register_forward_hook(lambda *args: calls.append(1))
        (ys ** 2).sum().backward()
        handle.remove()
        nfe[name] = len(calls)
    assert nfe["ours"] <= 7 * 99 + 60 and nfe["ours"] < nfe["theirs"], nfe


def test_tuple_state_matches_direct_backprop():
    field = MLP(dim=3, seed=6)

    def tuple_field(t, state):
        y = torch.cat([state[0], state[1]], dim=-1)
        dy = field(t, y)
        return dy[..., :2], dy[..., 2:]

    g = torch.Generator().manual_seed(8)
    a, b = torch.randn(4, 2, generator=g, dtype=F64), torch.randn(4, 1, generator=g, dtype=F64)
    t = torch.linspace(0, 1, 3, dtype=F64)
    results = []
    for solve, kw in ((an.odeint_adjoint, {"adjoint_params": tuple(field.parameters())}), (an.odeint, {})):
        a_, b_ = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        ya, yb = solve(tuple_field, (a_, b_), t, **TOL, **kw)
        loss = (ya ** 2).sum() + yb[-1].sin().sum()
        results.append(torch.autograd.grad(loss, [a_, b_] + list(field.parameters())))
    for x, y in zip(*results):
        assert _rel(x, y) < 1e-6


@pytest.mark.parametrize("method,adjoint_method", [("rk4", "rk4"), ("dopri5", "midpoint")])
def test_fixed_grid_adjoint_matches_torchdiffeq(method, adjoint_method):
    field, y0, t, weights = _case("mlp_10_outputs")
    kw = dict(method=method, adjoint_method=adjoint_method, adjoint_options={"step_size": 0.05}, **TOL)
    if method == "rk4":
        kw["options"] = {"step_size": 0.05}
    ours = _grads(an.odeint_adjoint, field, y0, t, weights, **kw)
    theirs = _grads(torchdiffeq.odeint_adjoint, field, y0, t, weights, **kw)
    for a, b in zip(ours, theirs):
        assert _rel(a, b) < 1e-10


def test_plain_callable_with_explicit_params_and_unused_parameter():
    field = MLP(seed=9)
    unused = torch.nn.Parameter(torch.ones(5, dtype=F64))
    frozen = torch.nn.Parameter(torch.ones(2, dtype=F64), requires_grad=False)
    y0 = torch.randn(2, 2, generator=torch.Generator().manual_seed(1), dtype=F64).requires_grad_(True)
    ys = an.odeint_adjoint(lambda t, y: field(t, y), y0, torch.tensor([0.0, 1.0], dtype=F64),
                           adjoint_params=list(field.parameters()) + [unused, frozen], rtol=1e-8, atol=1e-8)
    (ys[-1] ** 2).sum().backward()
    assert torch.equal(unused.grad, torch.zeros(5, dtype=F64))
    assert frozen.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in field.parameters())


def test_constant_field_gives_zero_parameter_gradients_and_single_time_passes_through():
    p = torch.nn.Parameter(torch.tensor(2.0, dtype=F64))
    y0 = torch.ones(3, dtype=F64, requires_grad=True)
    ys = an.odeint_adjoint(lambda t, y: torch.ones_like(y), y0, torch.tensor([0.0, 1.0], dtype=F64),
                           adjoint_params=(p,))
    (ys[-1] ** 2).sum().backward()
    torch.testing.assert_close(y0.grad, torch.full((3,), 4.0, dtype=F64))
    assert p.grad.item() == 0.0
    ys = an.odeint_adjoint(lambda t, y: -y, y0, torch.tensor([0.5], dtype=F64), adjoint_params=())
    assert ys.shape == (1, 3) and torch.equal(ys[0], y0)
    assert math.isclose(torch.autograd.grad(ys.sum(), y0)[0].sum().item(), 3.0)


def test_per_element_adjoint_tolerances():
    field, y0, t, weights = _case("mlp")
    tol = torch.full(y0.shape, 1e-10, dtype=F64)
    per_element = dict(adjoint_rtol=tol, adjoint_atol=tol)
    ours = _grads(an.odeint_adjoint, field, y0, t, weights, **TOL, **per_element)
    scalar = _grads(an.odeint_adjoint, field, y0, t, weights, **TOL)
    for a, b in zip(ours, scalar):
        assert _rel(a, b) < 1e-12  # the same numbers: per-element values all equal the scalar


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_native_field_adjoint_matches_python_field(activation):
    # ODEFunc runs in C++ without Python (anode_native.native_fields), forward and backward.
    from anode_native.nn.odefunc import ODEFunc
    torch.manual_seed(0)
    field = ODEFunc(2, 16, augment_dim=1, time_dependent=True, non_linearity=activation).double()
    y0 = torch.randn(8, 3, dtype=F64)
    t = torch.linspace(0, 1, 4, dtype=F64)
    weights = torch.randn(4, 8, 3, dtype=F64)
    native = _grads(an.odeint_adjoint, field, y0, t, weights, **TOL)
    assert an.native_fields.native_form(field) is not None
    with an.native_fields.python_fields():
        python = _grads(an.odeint_adjoint, field, y0, t, weights, **TOL)
    for a, b in zip(native, python):  # (rounding differs: ReLU's kinks amplify it at 1e-10 tolerances)
        assert _rel(a, b) < 1e-6
