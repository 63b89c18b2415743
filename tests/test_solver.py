"""The native dopri5 and fixed-grid drivers against analytic solutions, scipy and torchdiffeq."""
import math

import numpy as np
import pytest
import torch
import torchdiffeq
from scipy.integrate import solve_ivp

import anode_native as an
from problems import A3, PROBLEMS, Counted, oscillator, rigid_body, van_der_pol

F64 = torch.float64
TOLERANCES = [(1e-3, 1e-4), (1e-6, 1e-8), (1e-9, 1e-10)]
TIMES = {
    "increasing": torch.linspace(0.0, 3.0, 7, dtype=F64),
    "decreasing": torch.tensor([2.0, 1.2, 0.0, -1.0], dtype=F64),
}


def assert_rel_close(actual, expected, rel, floor=1e-12):
    err = ((actual - expected).abs() / (expected.abs() + floor)).max().item()
    assert err <= rel, f"relative error {err:.3e} > {rel:.1e}"


@pytest.mark.parametrize("name", sorted(PROBLEMS))
@pytest.mark.parametrize("rtol,atol", TOLERANCES)
@pytest.mark.parametrize("direction", sorted(TIMES))
def test_same_steps_and_values_as_torchdiffeq(name, rtol, atol, direction):
    func, y0 = PROBLEMS[name]
    t = TIMES[direction]
    ours, theirs = Counted(func), Counted(func)
    stats = an.SolverStats()
    with torch.no_grad():
        out = an.odeint(ours, y0, t, rtol=rtol, atol=atol, stats=stats)
        ref = torchdiffeq.odeint(theirs, y0, t, rtol=rtol, atol=atol, method="dopri5")
    assert ours.calls == theirs.calls == stats.nfe_forward
    assert stats.nfe_forward == 2 + 6 * stats.steps_forward
    assert_rel_close(out, ref, 1e-10)


def test_float32_state_takes_same_steps_as_torchdiffeq():
    func, y0 = PROBLEMS["van_der_pol"]
    y0 = y0.float()
    t = torch.linspace(0, 2, 5)
    ours, theirs = Counted(func), Counted(func)
    out = an.odeint(ours, y0, t, rtol=1e-5, atol=1e-6)
    ref = torchdiffeq.odeint(theirs, y0, t, rtol=1e-5, atol=1e-6)
    assert out.dtype == torch.float32
    assert ours.calls == theirs.calls
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_analytic_solutions():
    t = torch.linspace(0, 5, 11, dtype=F64)
    y = an.odeint(lambda t, y: -0.5 * y, torch.tensor([1.0, 2.0], dtype=F64), t, rtol=1e-10, atol=1e-12)
    expected = torch.exp(-0.5 * t)[:, None] * torch.tensor([1.0, 2.0], dtype=F64)
    assert_rel_close(y, expected, 1e-8)

    y = an.odeint(oscillator, torch.tensor([1.0, 0.0], dtype=F64), t, rtol=1e-10, atol=1e-12)
    assert (y[:, 0] - torch.cos(t)).abs().max() < 1e-8 and (y[:, 1] + torch.sin(t)).abs().max() < 1e-8

    y0 = torch.tensor([1.0, -1.0, 0.5], dtype=F64)
    y = an.odeint(lambda t, y: A3 @ y, y0, t, rtol=1e-10, atol=1e-12)
    expected = torch.stack([torch.linalg.matrix_exp(A3 * s) @ y0 for s in t])
    assert (y - expected).abs().max() < 1e-7


def _fixed_step_error(h, method="dopri5"):
    """Global error at t=1 of the oscillator with a constant step h."""
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    if method == "dopri5":
        # Huge tolerances accept every step; max_step pins the step size to h.
        options = {"first_step": h, "max_step": h}
        y = an.odeint(oscillator, y0, t, rtol=1e10, atol=1e10, options=options)
    else:
        y = an.odeint(oscillator, y0, t, method=method, options={"step_size": h})
    exact = torch.tensor([math.cos(1.0), -math.sin(1.0)], dtype=F64)
    return (y[-1] - exact).abs().max().item()


@pytest.mark.parametrize("method,order", [("dopri5", 5), ("rk4", 4), ("midpoint", 2), ("euler", 1)])
def test_observed_order_of_convergence(method, order):
    steps = [0.1, 0.05, 0.025] if method == "dopri5" else [0.05, 0.025, 0.0125]
    errors = [_fixed_step_error(h, method) for h in steps]
    observed = [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]
    assert all(abs(p - order) < 0.35 for p in observed), observed


@pytest.mark.parametrize("problem", ["van_der_pol", "rigid_body"])
def test_against_scipy_dop853(problem):
    func = {"van_der_pol": van_der_pol, "rigid_body": rigid_body}[problem]
    y0 = {"van_der_pol": [2.0, 0.0], "rigid_body": [0.0, 1.0, 1.0]}[problem]
    t_eval = np.linspace(0, 6, 13)

    def rhs(t, y):
        return func(torch.tensor(t), torch.tensor(y)).numpy()

    ref = solve_ivp(rhs, (0, 6), y0, method="DOP853", t_eval=t_eval, rtol=1e-13, atol=1e-13).y.T
    ours = an.odeint(func, torch.tensor(y0, dtype=F64), torch.tensor(t_eval), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-7, atol=1e-8)


def test_tuple_state_matches_torchdiffeq():
    def func(t, state):
        x, v = state
        return v, -x - 0.1 * v

    y0 = (torch.tensor([1.0, 0.5], dtype=F64), torch.tensor([[0.0, 1.0]], dtype=F64).reshape(2))
    y0 = (y0[0], y0[1] * 10)  # members of different scale make the mixed (max-of-RMS) norm matter
    t = torch.linspace(0, 4, 5, dtype=F64)
    ours, theirs = Counted(func), Counted(func)
    x, v = an.odeint(ours, y0, t, rtol=1e-6, atol=1e-8)
    xr, vr = torchdiffeq.odeint(theirs, y0, t, rtol=1e-6, atol=1e-8)
    assert x.shape == (5, 2) and v.shape == (5, 2)
    assert ours.calls == theirs.calls
    assert_rel_close(x, xr, 1e-10)
    assert_rel_close(v, vr, 1e-10)


def test_per_element_tolerances_match_torchdiffeq():
    func, y0 = PROBLEMS["van_der_pol"]
    t = torch.linspace(0, 3, 4, dtype=F64)
    rtol = torch.tensor([1e-6, 1e-3], dtype=F64)
    atol = torch.tensor([1e-8, 1e-4], dtype=F64)
    ours, theirs = Counted(func), Counted(func)
    out = an.odeint(ours, y0, t, rtol=rtol, atol=atol)
    ref = torchdiffeq.odeint(theirs, y0, t, rtol=rtol, atol=atol)
    assert ours.calls == theirs.calls
    assert_rel_close(out, ref, 1e-10)


@pytest.mark.parametrize("options", [
    {"first_step": 0.01},
    {"max_step": 0.1},
    {"step_t": torch.tensor([0.35, 1.4])},
    {"jump_t": torch.tensor([0.5, 2.2])},
    {"step_t": torch.tensor([0.3]), "jump_t": torch.tensor([1.1])},
    {"safety": 0.8, "ifactor": 5.0, "dfactor": 0.3},
    {"min_step": 0.3},  # torchdiffeq accepts every step of at most min_step
])
def test_options_match_torchdiffeq(options):
    func, y0 = PROBLEMS["forced"]
    t = torch.linspace(0, 3, 4, dtype=F64)
    ours, theirs = Counted(func), Counted(func)
    out = an.odeint(ours, y0, t, rtol=1e-6, atol=1e-8, options=options)
    ref = torchdiffeq.odeint(theirs, y0, t, rtol=1e-6, atol=1e-8, options=options)
    assert ours.calls == theirs.calls
    assert_rel_close(out, ref, 1e-10)


def test_jump_t_at_a_discontinuity_matches_torchdiffeq():
    # f jumps at t = 2: with jump_t the solver lands on the jump and evaluates f from each side.
    def func(t, y):
        return torch.where(t < 2.0, -y, 0.5 * y)

    y0 = torch.tensor([1.0, -2.0], dtype=F64)
    t = torch.linspace(0, 4, 5, dtype=F64)
    # Without jump_t the steps straddle the jump and reject often, which amplifies rounding.
    for options, rel in (({"jump_t": torch.tensor([0.7, 2.0])}, 1e-12), (None, 1e-7)):
        ours, theirs = Counted(func), Counted(func)
        out = an.odeint(ours, y0, t, rtol=1e-8, atol=1e-10, options=options)
        ref = torchdiffeq.odeint(theirs, y0, t, rtol=1e-8, atol=1e-10, options=options)
        assert ours.calls == theirs.calls
        assert_rel_close(out, ref, rel)


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("step_size", [None, 0.07])
@pytest.mark.parametrize("direction", sorted(TIMES))
def test_fixed_grid_matches_torchdiffeq(method, step_size, direction):
    func, y0 = PROBLEMS["van_der_pol"]
    t = TIMES[direction]
    options = None if step_size is None else {"step_size": step_size}
    ours, theirs = Counted(func), Counted(func)
    stats = an.SolverStats()
    out = an.odeint(ours, y0, t, method=method, options=options, stats=stats)
    ref = torchdiffeq.odeint(theirs, y0, t, method=method, options=options)
    assert ours.calls == theirs.calls == stats.nfe_forward
    assert_rel_close(out, ref, 1e-12)


def test_time_dtype_float32_option_runs():
    func, y0 = PROBLEMS["decay"]
    t = torch.linspace(0, 1, 3, dtype=F64)
    out = an.odeint(func, y0, t, options={"dtype": torch.float32})
    ref = torchdiffeq.odeint(func, y0, t, options={"dtype": torch.float32})
    assert_rel_close(out, ref, 1e-6)


def test_single_time_returns_initial_state():
    y0 = torch.tensor([1.0, 2.0])
    out = an.odeint(lambda t, y: -y, y0, torch.tensor([0.5]))
    assert out.shape == (1, 2) and torch.equal(out[0], y0)


def test_stats_are_recorded_and_last_stats_follows_the_latest_solve():
    func, y0 = PROBLEMS["decay"]
    t = torch.tensor([0.0, 1.0], dtype=F64)
    an.odeint(func, y0, t, rtol=1e-9, atol=1e-9)
    tight = an.last_stats().nfe_forward
    an.odeint(func, y0, t, rtol=1e-3, atol=1e-3)
    loose = an.last_stats()
    assert tight > loose.nfe_forward > 0
    assert loose.nfe_forward == 2 + 6 * (loose.accepted_forward + loose.rejected_forward)


def test_output_at_many_times_matches_torchdiffeq():
    func, y0 = PROBLEMS["oscillator"]
    t = torch.linspace(0, 10, 201, dtype=F64)  # many outputs per step: one dense-output call each
    ours, theirs = Counted(func), Counted(func)
    out = an.odeint(ours, y0, t, rtol=1e-7, atol=1e-9)
    ref = torchdiffeq.odeint(theirs, y0, t, rtol=1e-7, atol=1e-9)
    assert ours.calls == theirs.calls
    assert (out - ref).abs().max() < 1e-12
