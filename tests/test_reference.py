"""The pure-PyTorch reference (anode_native/_reference.py) against torchdiffeq 0.2.5 and exact solutions.

The reference is the oracle the native engine is tested against, so it is held to torchdiffeq's
steps exactly: same NFE, same values up to rounding.
"""
import math

import pytest
import torch
import torchdiffeq
from torchdiffeq._impl import dopri5 as tdq_dopri5
from torchdiffeq._impl.interp import _interp_evaluate, _interp_fit
from torchdiffeq._impl.misc import _compute_error_ratio

import anode_native._reference as ref
from anode_native.errors import (FuncOutputError, InvalidInputError, MaxNumStepsError, NonFiniteError,
                                 StepSizeUnderflowError)

F64 = torch.float64


class Counted:
    """Wraps a vector field and counts its evaluations (torchdiffeq reports no NFE itself)."""

    def __init__(self, func):
        self.func, self.nfe = func, 0

    def __call__(self, t, y):
        self.nfe += 1
        return self.func(t, y)


def _linear(matrix):
    return lambda t, y: matrix @ y


def _mlp_field(seed=0, dim=3, hidden=8, batch=4):
    gen = torch.Generator().manual_seed(seed)
    w1, b1 = torch.randn(hidden, dim + 1, generator=gen, dtype=F64) * 0.5, torch.randn(hidden, generator=gen, dtype=F64)
    w2 = torch.randn(dim, hidden, generator=gen, dtype=F64) * 0.5
    y0 = torch.randn(batch, dim, generator=gen, dtype=F64)

    def field(t, y):   # time-dependent: t is fed in as an extra input
        ty = torch.cat([y, t.expand(y.shape[0], 1)], dim=1)
        return torch.tanh(ty @ w1.T + b1) @ w2.T

    return field, y0


def _problems():
    mlp, mlp_y0 = _mlp_field()
    a3 = torch.tensor([[-0.5, 1.0, 0.0], [-1.0, -0.1, 0.3], [0.2, 0.0, -0.7]], dtype=F64)
    return {
        "decay": (lambda t, y: -0.7 * y, torch.tensor([1.0, -2.0, 3.0], dtype=F64), torch.linspace(0, 5, 6, dtype=F64)),
        "oscillator": (_linear(torch.tensor([[0.0, 1.0], [-4.0, 0.0]], dtype=F64)), torch.tensor([1.0, 0.0], dtype=F64),
                       torch.linspace(0, 6, 9, dtype=F64)),
        "linear3": (_linear(a3), torch.tensor([1.0, 2.0, -1.0], dtype=F64), torch.tensor([0.0, 0.3, 1.7, 4.0], dtype=F64)),
        "vanderpol": (lambda t, y: torch.stack([y[1], (1 - y[0] ** 2) * y[1] - y[0]]),   # mu = 1
                      torch.tensor([2.0, 0.0], dtype=F64), torch.linspace(0, 8, 5, dtype=F64)),
        "mlp_batch": (mlp, mlp_y0, torch.tensor([0.0, 0.5, 2.0], dtype=F64)),
        # Edge paths of the initial step and controller: y0 = 0 (d0 < 1e-5), f = 0 (error ratio 0).
        "forced_from_zero": (lambda t, y: torch.cos(t) - 0.1 * y, torch.zeros(2, dtype=F64),
                             torch.tensor([0.0, 1.0, 3.0], dtype=F64)),
        "constant": (lambda t, y: torch.zeros_like(y), torch.tensor([1.0, 2.0], dtype=F64),
                     torch.tensor([0.0, 1.0, 1e3], dtype=F64)),
    }


PROBLEMS = _problems()
TOLERANCES = [(1e-3, 1e-6), (1e-6, 1e-9), (1e-10, 1e-12)]


def _assert_same_solve(func, y0, t, rtol=1e-7, atol=1e-9, options=None, method="dopri5", rel=1e-10):
    counted = Counted(func)
    expected = torchdiffeq.odeint(counted, y0, t, rtol=rtol, atol=atol, method=method, options=options)
    got, stats = ref.odeint_reference(func, y0, t, rtol=rtol, atol=atol, method=method, options=options)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert stats["nfe"] == counted.nfe
    scale = expected.abs().max().clamp_min(1.0)
    assert (got - expected).abs().max() <= rel * scale, (got - expected).abs().max()
    return got, stats


# ---------------------------------------------------------------------------------------------- tableau

def test_tableau_is_bit_identical_to_torchdiffeq():
    tableau = tdq_dopri5._DORMAND_PRINCE_SHAMPINE_TABLEAU
    assert ref.C[1:] == tuple(tableau.alpha.tolist()) and ref.C[0] == 0.0
    for i in range(1, 7):
        assert ref.A[i] == tuple(tableau.beta[i - 1].tolist())
    assert ref.A[6] == ref.B[:6] and ref.B == tuple(tableau.c_sol.tolist())
    assert ref.E == tuple(tableau.c_error.tolist())
    assert ref.C_MID == tuple(tdq_dopri5.DPS_C_MID.tolist())
    assert abs(sum(ref.B) - 1) < 1e-15 and abs(sum(ref.E)) < 1e-15


# --------------------------------------------------------------------------------------------------- ops

def _stages(shape, n, dtype=F64, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=dtype) for _ in range(n)]


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_rk_combine_and_step_error(dtype):
    y, *k = _stages((3, 5), 8, dtype)
    for dt in (0.37, torch.tensor(0.37, dtype=F64)):
        out = ref.rk_combine(y, k[:3], (0.5, -1.0, 2.0), dt)
        assert out.dtype == dtype
        torch.testing.assert_close(out, y + 0.37 * (0.5 * k[0] - k[1] + 2 * k[2]))
        y1, err = ref.rk_step_error(y, k[:7], ref.B, ref.E, dt)
        torch.testing.assert_close(y1, y + 0.37 * sum(b * kj for b, kj in zip(ref.B, k)))
        torch.testing.assert_close(err, 0.37 * sum(e * kj for e, kj in zip(ref.E, k)))


def test_rk_error_ratio_matches_torchdiffeq_norms():
    y0, y1, *k = _stages((4, 6), 9)
    rtol, atol = torch.full((4, 6), 1e-3, dtype=F64), torch.tensor(1e-6, dtype=F64)
    rtol[0] = 1e-5   # per-element tolerance
    err = torch.sum(torch.stack(k, -1) * (0.1 * torch.tensor(ref.E, dtype=F64)), dim=-1)
    ratio_all = ref.rk_error_ratio(y0, y1, k, ref.E, 0.1, rtol, atol, [])
    expected = _compute_error_ratio(err, rtol, atol, y0, y1, lambda x: x.pow(2).mean().sqrt())
    assert ratio_all.dtype == F64 and ratio_all.shape == (1,)
    torch.testing.assert_close(ratio_all[0], expected, rtol=1e-14, atol=0)
    segments = ref.rk_error_ratio(y0, y1, k, ref.E, 0.1, rtol, atol, [6, 0, 18])
    scaled = (err / (atol + rtol * torch.maximum(y0.abs(), y1.abs()))).reshape(-1)
    torch.testing.assert_close(segments, torch.stack([scaled[:6].pow(2).mean().sqrt(), torch.tensor(0.0, dtype=F64),
                                                      scaled[6:].pow(2).mean().sqrt()]))
    with pytest.raises(ValueError):
        ref.rk_error_ratio(y0, y1, k, ref.E, 0.1, rtol, atol, [5, 5])
    f32 = ref.rk_error_ratio(y0.float(), y1.float(), [x.float() for x in k], ref.E, 0.1, 1e-3, 1e-6, [])
    assert f32.dtype == F64


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_dopri5_dense_matches_torchdiffeq_interpolant(dtype):
    y0, y1, *k = _stages((2, 3), 9, dtype)
    dt = 0.25
    y_mid = y0 + dt * sum(c * kj for c, kj in zip(ref.C_MID, k))
    coeffs = _interp_fit(y0, y1, y_mid, k[0], k[6], torch.tensor(dt, dtype=dtype))
    theta = [0.0, 0.3, 0.75, 1.0]
    got = ref.dopri5_dense(y0, y1, k, dt, theta)
    assert got.shape == (4, 2, 3) and got.dtype == dtype
    expected = torch.stack([_interp_evaluate(coeffs, torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64),
                                             torch.tensor(x, dtype=F64)) for x in theta])
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got[0], y0)
    torch.testing.assert_close(got[-1], y1, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-5)
    assert ref.dopri5_dense(y0, y1, k, torch.tensor(dt), torch.tensor(0.3)).shape == (1, 2, 3)


def test_ops_are_differentiable():
    y0, y1, *k = [x.requires_grad_() for x in _stages((3,), 9, seed=4)]
    dt = torch.tensor(0.2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y, a, b, d: ref.rk_combine(y, [a, b], (0.3, -0.7), d), (y0, k[0], k[1], dt))
    assert torch.autograd.gradcheck(lambda a, b, *s: ref.dopri5_dense(a, b, list(s), dt, [0.2, 0.9]), (y0, y1, *k))


# ------------------------------------------------------------------------------------------ dopri5 oracle

@pytest.mark.parametrize("rtol,atol", TOLERANCES)
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_dopri5_takes_torchdiffeqs_steps(name, rtol, atol):
    func, y0, t = PROBLEMS[name]
    _, stats = _assert_same_solve(func, y0, t, rtol, atol)
    attempted = stats["accepted"] + stats["rejected"]
    assert stats["nfe"] == 2 + 6 * attempted and stats["accepted"] > 0


@pytest.mark.parametrize("name", ["oscillator", "vanderpol", "mlp_batch"])
def test_dopri5_decreasing_time(name):
    func, y0, t = PROBLEMS[name]
    seen = []
    _assert_same_solve(lambda s, y: seen.append(float(s)) or func(s, y), y0, t.flip(0) + 1.0, 1e-6, 1e-9)
    assert min(seen) < t[-1] + 1.0 - 1e-3 and max(seen) <= t[-1] + 1.0   # func sees the user's (decreasing) times


def test_dopri5_single_time_point_and_func_time_argument():
    times = []
    sol, stats = ref.odeint_reference(lambda t, y: times.append(t) or -y, torch.ones(2), torch.tensor([0.5]))
    assert sol.shape == (1, 2) and torch.equal(sol[0], torch.ones(2)) and stats["nfe"] == 2   # f0 + initial step
    assert all(t.dim() == 0 and t.dtype == torch.float32 for t in times)


@pytest.mark.parametrize("rtol,atol,options,same_steps", [
    (1e-4, 1e-5, {}, True),
    (1e-4, 1e-5, {"dtype": torch.float32}, True),   # time arithmetic in float32 too
    (1e-5, 1e-7, {}, False),
])
def test_dopri5_float32_state(rtol, atol, options, same_steps):
    # At a tight atol the error estimate of a near-zero component is float32 rounding noise (and
    # torchdiffeq forms its error ratio in float32, we in float64), so step sequences drift apart.
    func, y0, t = PROBLEMS["vanderpol"]
    counted = Counted(func)
    expected = torchdiffeq.odeint(counted, y0.float(), t, rtol=rtol, atol=atol, options=options)
    got, stats = ref.odeint_reference(func, y0.float(), t, rtol=rtol, atol=atol, options=options)
    assert got.dtype == torch.float32
    if same_steps:
        assert stats["nfe"] == counted.nfe
    else:
        assert abs(stats["nfe"] - counted.nfe) <= 0.1 * counted.nfe
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("options", [
    {"step_t": torch.tensor([0.3, 1.1, 2.5])},
    {"step_t": torch.tensor([0.0, 1.1, 2.5])},   # a mark at t0 is skipped
    {"jump_t": torch.tensor([0.7, 2.0])},
    {"step_t": torch.tensor([0.4, 3.0]), "jump_t": torch.tensor([2.0])},
    {"first_step": 0.05},
    {"max_step": 0.2},
    {"min_step": 0.3},
    {"safety": 0.8, "ifactor": 5.0, "dfactor": 0.3},
    {"dtype": torch.float32},
])
@pytest.mark.parametrize("decreasing", [False, True])
def test_dopri5_options_match_torchdiffeq(options, decreasing):
    def kinked(t, y):   # a jump in f at t = 2 (or -2), where jump_t helps
        return torch.where(t.abs() < 2.0, -y, 0.5 * y) + torch.sin(3 * t)

    t = torch.linspace(0, 4, 5, dtype=F64)
    if decreasing:
        t = -t
        options = {key: -value if torch.is_tensor(value) else value for key, value in options.items()}
    _assert_same_solve(kinked, torch.tensor([1.0, -0.5], dtype=F64), t, 1e-6, 1e-8, options=options)


def test_jump_t_evaluates_one_ulp_either_side():
    # The step lands on the jump; its last two stages are evaluated one ulp before it and f is
    # evaluated again one ulp after it, never at the jump itself.
    for solve in (torchdiffeq.odeint, ref.odeint_reference):
        seen = []
        solve(lambda t, y: seen.append(t.item()) or -y, torch.ones(1, dtype=F64), torch.tensor([0.0, 2.0], dtype=F64),
              options={"jump_t": torch.tensor([1.0])})
        assert math.nextafter(1.0, 0.0) in seen and math.nextafter(1.0, 2.0) in seen and 1.0 not in seen


def test_jump_t_costs_one_extra_evaluation():
    t, y0 = torch.tensor([0.0, 3.0], dtype=F64), torch.tensor([1.0], dtype=F64)
    _, stats = _assert_same_solve(lambda t, y: -y, y0, t, options={"jump_t": torch.tensor([1.0, 2.0])})
    assert stats["nfe"] == 2 + 6 * (stats["accepted"] + stats["rejected"]) + 2


def test_per_element_tolerances_and_segments_match_torchdiffeq_tuples():
    func, y0, t = PROBLEMS["mlp_batch"]
    rtol = torch.full_like(y0, 1e-6)
    rtol[0] = 1e-9
    _assert_same_solve(func, y0, t, rtol=rtol, atol=1e-9)
    # A tuple state flattened by the caller: torchdiffeq's norm is the max of per-tensor RMS norms.
    a0, b0 = y0[:1], y0[1:]
    counted = Counted(lambda s, ab: tuple(func(s, torch.cat(ab)).split([1, 3])))
    expected = torchdiffeq.odeint(counted, (a0, b0), t, rtol=1e-7, atol=1e-9)
    got, stats = ref.odeint_reference(func, y0, t, options={"segment_sizes": [a0.numel(), b0.numel()]})
    assert stats["nfe"] == counted.nfe
    torch.testing.assert_close(got, torch.cat(expected, dim=1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("first_step", [None, 0.01])
def test_gradients_match_torchdiffeq_backprop(first_step):
    func, y0, t = PROBLEMS["mlp_batch"]
    y0 = y0.clone().requires_grad_()
    options = {} if first_step is None else {"first_step": first_step}
    (g_ref,) = torch.autograd.grad(ref.odeint_reference(func, y0, t, options=options)[0].square().sum(), y0)
    (g_tdq,) = torch.autograd.grad(torchdiffeq.odeint(func, y0, t, options=options).square().sum(), y0)
    # torchdiffeq's selected first step is a function of y0 (autograd goes through it); ours is a
    # constant, so without first_step the gradients differ at the level of the local error.
    tight = first_step is not None
    torch.testing.assert_close(g_ref, g_tdq, rtol=1e-9 if tight else 1e-5, atol=1e-12 if tight else 1e-7)


def test_analytic_solutions():
    t = torch.linspace(0, 5, 11, dtype=F64)
    sol, _ = ref.odeint_reference(lambda s, y: -0.7 * y, torch.tensor([2.0], dtype=F64), t, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sol[:, 0], 2 * torch.exp(-0.7 * t), rtol=1e-8, atol=0)
    sol, _ = ref.odeint_reference(PROBLEMS["oscillator"][0], torch.tensor([1.0, 0.0], dtype=F64), t,
                                  rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sol, torch.stack([torch.cos(2 * t), -2 * torch.sin(2 * t)], 1), rtol=0, atol=1e-8)
    sol, _ = ref.odeint_reference(lambda s, y: torch.cos(s).expand_as(y), torch.zeros(1, dtype=F64), -t,
                                  rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sol[:, 0], torch.sin(-t), rtol=0, atol=1e-9)


# -------------------------------------------------------------------------------------------- fixed grid

@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("options", [None, {"step_size": 0.07}, {"step_size": 0.5}])
@pytest.mark.parametrize("decreasing", [False, True])
def test_fixed_grid_matches_torchdiffeq(method, options, decreasing):
    func, y0, t = PROBLEMS["vanderpol"]
    t = torch.tensor([0.0, 0.33, 1.0, 2.3, 3.0], dtype=F64)
    if decreasing:
        t = 1.0 - t
    _, stats = _assert_same_solve(func, y0, t, method=method, options=options, rel=1e-12)
    assert stats["nfe"] == {"euler": 1, "midpoint": 2, "rk4": 4}[method] * stats["accepted"]
    assert stats["rejected"] == 0


def test_rk4_converges_at_fourth_order():
    errors = []
    for h in (0.1, 0.05):
        sol, _ = ref.odeint_reference(lambda s, y: -y, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                                      method="rk4", options={"step_size": h})
        errors.append(abs(sol[-1, 0].item() - math.exp(-1)))
    assert 3.8 < math.log2(errors[0] / errors[1]) < 4.2


# ------------------------------------------------------------------------------------------------ errors

def test_step_size_underflow():
    with pytest.raises(StepSizeUnderflowError, match=r"t=1\b.*dt=.*step 1"):
        ref.odeint_reference(lambda t, y: -y, torch.ones(1, dtype=F64), torch.tensor([1.0, 2.0], dtype=F64),
                             options={"first_step": 1e-30})
    with pytest.raises(StepSizeUnderflowError, match=r"t=(0\.99|1\.0).*dt=.*step \d+"):   # blow-up of y' = y^2 at t = 1
        ref.odeint_reference(lambda t, y: y * y, torch.ones(1, dtype=F64), torch.tensor([0.0, 2.0], dtype=F64))


def test_max_num_steps_counts_per_solve():
    func, y0, _ = PROBLEMS["oscillator"]
    t = torch.linspace(0, 20, 41, dtype=F64)   # every interval needs only a few steps
    torchdiffeq.odeint(func, y0, t, options={"max_num_steps": 40})   # per interval: fine for torchdiffeq
    with pytest.raises(MaxNumStepsError, match=r"max_num_steps=40 .*t=.*dt=.*step 41"):
        ref.odeint_reference(func, y0, t, options={"max_num_steps": 40})


def test_non_finite_state_and_derivative():
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(NonFiniteError, match=r"t=0.*dt=.*step 1"):
        ref.odeint_reference(lambda s, y: -y, torch.tensor([1.0, math.nan], dtype=F64), t)
    with pytest.raises(NonFiniteError, match=r"t=.*dt=.*step \d+"):   # NaN appears during the solve
        ref.odeint_reference(lambda s, y: -y if s < 0.5 else y * math.nan, torch.ones(2, dtype=F64), t)


def test_bad_func_output_and_bad_input():
    t, y0 = torch.tensor([0.0, 1.0], dtype=F64), torch.ones(3, dtype=F64)
    with pytest.raises(FuncOutputError, match="shape"):
        ref.odeint_reference(lambda s, y: y[:2], y0, t)
    with pytest.raises(FuncOutputError, match="float32"):
        ref.odeint_reference(lambda s, y: y.float(), y0, t)
    bad_calls = [
        dict(t=torch.tensor([0.0, 1.0, 0.5], dtype=F64)),
        dict(t=torch.tensor([0.0, math.inf], dtype=F64)),
        dict(method="dopri8"),
        dict(options={"norm": None}),
        dict(options={"step_t": torch.tensor([0.5]), "jump_t": torch.tensor([0.5])}),
        dict(method="rk4", options={"step_size": -0.1}),
    ]
    for kwargs in bad_calls:
        with pytest.raises(InvalidInputError):
            ref.odeint_reference(lambda s, y: -y, kwargs.pop("y0", y0), kwargs.pop("t", t), **kwargs)
    with pytest.raises(InvalidInputError):
        ref.odeint_reference(lambda s, y: -y, torch.ones(3, dtype=torch.int64), t)
