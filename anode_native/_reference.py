"""Pure-PyTorch reference of the native engine: the fused Runge-Kutta ops and the solver built on them.

Tests compare the native code (`torch.ops.anode_native.*`, the C++ driver) with this module, and this
module with torchdiffeq 0.2.5. It is never used as a fallback. The ops have the names and arguments of
docs/contract.md; `odeint_reference` takes exactly torchdiffeq's dopri5 steps (same NFE) and is written
on top of the four ops, the way the native driver is. Time and step size are Python floats (double),
rounded to the time dtype after every operation when the `dtype` option asks for less than float64.
"""
from __future__ import annotations

import bisect
import math
from typing import NamedTuple

import torch

from .errors import FuncOutputError, InvalidInputError, MaxNumStepsError, NonFiniteError, StepSizeUnderflowError

# Dormand-Prince 5(4) with Shampine's error weights and dense output, written as torchdiffeq 0.2.5
# writes them (torchdiffeq/_impl/dopri5.py) so that every double is bit-identical.
C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)   # stage i is evaluated at t0 + C[i] * dt
A = (                                              # A[i]: weights of k[0..i-1] in stage i's input
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),   # == B: stage 7 is f(t1, y1) (FSAL)
)
B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
E = (35 / 384 - 1951 / 21600, 0.0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
     -2187 / 6784 - -12231 / 42400, 11 / 84 - 649 / 6300, -1.0 / 60.0)   # B - B_hat
C_MID = (6025192743 / 30085553152 / 2, 0.0, 51252292925 / 65400821598 / 2, -2691868925 / 45128329728 / 2,
         187940372067 / 1594534317056 / 2, -1776094331 / 19743644256 / 2, 11237099 / 235043384 / 2)
ORDER = 5


# ----------------------------------------------------------------------------------------------------
# Fused ops
# ----------------------------------------------------------------------------------------------------

def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    # torch's opmath type: half and bfloat16 accumulate in float32, float32 in float32, double in double.
    return torch.promote_types(dtype, torch.float32)


def _weighted_stages(k, coeffs, dt, acc):
    """sum_j (dt * coeffs[j]) * k[j] in `acc`. Like the native kernels, a zero weight skips its stage."""
    if len(k) != len(coeffs) or not k:
        raise ValueError(f"got {len(k)} stages and {len(coeffs)} weights (need the same number, at least one)")
    total = None
    for c, kj in zip(coeffs, k):
        if float(c) == 0.0:
            continue
        term = (dt * c) * kj.to(acc)   # weight formed first, as torchdiffeq's `k * (beta * dt)`
        total = term if total is None else total + term
    return torch.zeros_like(k[0], dtype=acc) if total is None else total


def rk_combine(y, k, coeffs, dt):
    """Stage combination `y + dt * sum_j coeffs[j] * k[j]`, [*state]."""
    acc = _acc_dtype(y.dtype)
    return (y.to(acc) + _weighted_stages(k, coeffs, dt, acc)).to(y.dtype)


def rk_step_error(y, k, b, e, dt):
    """(y + dt * sum_j b_j k_j, dt * sum_j e_j k_j), both [*state]."""
    err = _weighted_stages(k, e, dt, _acc_dtype(y.dtype)).to(y.dtype)
    return rk_combine(y, k, b, dt), err


def _as_tolerance(tol, y):
    tol = torch.as_tensor(tol, dtype=torch.float64, device=y.device).detach()
    if tol.numel() == 1:
        return tol.reshape(())
    if tol.numel() != y.numel():
        raise ValueError(f"a tolerance needs one element or one per state element ({y.numel()}), got {tol.numel()}")
    return tol.reshape(y.shape)


def rk_error_ratio(y0, y1, k, e, dt, rtol, atol, segment_sizes):
    """float64 [len(segments)]: per segment of the flattened state, the RMS of
    err / (atol + rtol * max(|y0|, |y1|)) with err = dt * sum_j e_j k_j formed in the state's precision
    (as torchdiffeq does) and everything after it in float64. An empty segment has ratio 0."""
    err = _weighted_stages(k, e, dt, _acc_dtype(y0.dtype)).to(y0.dtype).double()
    scale = _as_tolerance(atol, y0) + _as_tolerance(rtol, y0) * torch.maximum(y0.double().abs(), y1.double().abs())
    squares = (err / scale).pow(2).reshape(-1)
    sizes = [int(s) for s in segment_sizes] if segment_sizes else [y0.numel()]
    if any(s < 0 for s in sizes) or sum(sizes) != y0.numel():
        raise ValueError(f"segment sizes {sizes} do not add up to the state's {y0.numel()} elements")
    ratios = [part.mean().sqrt() if part.numel() else squares.new_zeros(()) for part in squares.split(sizes)]
    return torch.stack(ratios) if ratios else squares.new_zeros(0)


def dopri5_dense(y0, y1, k, dt, theta):
    """[len(theta), *state]: torchdiffeq's quartic interpolant (interp.py) of the Dormand-Prince step
    y0 -> y1 of size dt with stages k[0..6], at fractions theta of the step."""
    if len(k) != 7:
        raise ValueError(f"dopri5_dense needs the 7 stages of the step, got {len(k)}")
    acc = _acc_dtype(y0.dtype)
    y0a, y1a, f0, f1 = y0.to(acc), y1.to(acc), k[0].to(acc), k[6].to(acc)
    y_mid = y0a + _weighted_stages(k, C_MID, dt, acc)
    a = 2 * dt * (f1 - f0) - 8 * (y1a + y0a) + 16 * y_mid
    b = dt * (5 * f0 - 3 * f1) + 18 * y0a + 14 * y1a - 32 * y_mid
    c = dt * (f1 - 4 * f0) - 11 * y0a - 5 * y1a + 16 * y_mid
    d = dt * f0
    if torch.is_tensor(theta):
        x = theta.to(device=y0.device, dtype=acc).reshape(-1)
    else:
        x = torch.tensor([theta] if isinstance(theta, (int, float)) else list(theta), dtype=torch.float64,
                         device=y0.device).to(acc)
    x = x.reshape(-1, *([1] * y0.dim()))
    total = y0a + x * d   # powers of x as torchdiffeq's _interp_evaluate forms them
    x_power = x
    for coefficient in (c, b, a):
        x_power = x_power * x
        total = total + x_power * coefficient
    return total.to(y0.dtype)


# ----------------------------------------------------------------------------------------------------
# Solver
# ----------------------------------------------------------------------------------------------------

_DOPRI5_OPTIONS = {"first_step", "max_num_steps", "min_step", "max_step", "step_t", "jump_t", "dtype",
                   "safety", "ifactor", "dfactor",
                   "segment_sizes"}   # reference only: per-tensor segments of a flattened tuple state
_FIXED_GRID_NFE = {"euler": 1, "midpoint": 2, "rk4": 4}


class _RightHandSide:
    """`func` as the solver calls it. Time arrives as a float (or a 0-dim tensor of the state's dtype);
    func gets a 0-dim tensor of y0's dtype and device, nudged one ulp when asked (torchdiffeq's Perturb,
    applied after the cast to the state's dtype). For decreasing t the solver integrates s = -t, so
    func sees -s and its output is negated (torchdiffeq's _ReverseFunc)."""

    def __init__(self, func, y0, reverse):
        self.func, self.reverse, self.nfe = func, reverse, 0
        self.dtype, self.device, self.shape = y0.dtype, y0.device, y0.shape

    def __call__(self, t, y, nudge=0):
        t = torch.as_tensor(t, dtype=self.dtype, device=self.device)
        if nudge:
            t = torch.nextafter(t, t + nudge)
        self.nfe += 1
        f = self.func(-t if self.reverse else t, y)
        if not torch.is_tensor(f) or f.shape != self.shape or f.dtype != self.dtype or f.device != self.device:
            got = (f"{tuple(f.shape)} {f.dtype} {f.device}" if torch.is_tensor(f) else type(f).__name__)
            raise FuncOutputError(f"func(t={self.user_time(t.item()):.17g}, y) returned {got}; expected a tensor "
                                  f"of y0's shape {tuple(self.shape)}, dtype {self.dtype} and device {self.device}")
        return -f if self.reverse else f

    def user_time(self, s):
        return -s if self.reverse else s


def _time_rounder(dtype):
    if dtype == torch.float64:
        return float
    return lambda x: torch.tensor(x, dtype=dtype).item()


def _option_times(values, reverse, t0, round_time):
    """step_t/jump_t in the solver's (increasing) time: those >= t0, sorted (torchdiffeq's _sort_tvals)."""
    if values is None:
        return []
    values = torch.as_tensor(values, dtype=torch.float64).detach().reshape(-1)
    return sorted(v for v in (round_time(-x if reverse else x) for x in values.tolist()) if v >= t0)


class _AcceptedStep(NamedTuple):
    t0: float
    t1: float
    dt: float            # t1 - t0 as the step used it (shortened on a step_t/jump_t mark)
    y0: torch.Tensor
    y1: torch.Tensor
    k: list              # the 7 stages; k[6] = f(t1-, y1)
    f1: torch.Tensor     # f at the start of the next step (re-evaluated after a jump_t mark)


class _Dopri5:
    """torchdiffeq 0.2.5's RKAdaptiveStepsizeODESolver + Dopri5Solver, step for step."""

    def __init__(self, rhs, y0, times, rtol, atol, options):
        # torchdiffeq's time dtype: promote_types(dtype option, state dtype), float64 by default.
        time_dtype = torch.promote_types(options.get("dtype", torch.float64), y0.dtype)
        self.q = q = _time_rounder(time_dtype)
        self.rhs, self.y0, self.times = rhs, y0, [q(s) for s in times]
        times = self.times
        self.rtol = torch.as_tensor(rtol, dtype=time_dtype, device=y0.device).detach().double()
        self.atol = torch.as_tensor(atol, dtype=time_dtype, device=y0.device).detach().double()
        first_step = options.get("first_step")
        self.first_step = None if first_step is None else q(float(first_step))
        self.max_num_steps = int(options.get("max_num_steps", 2 ** 31 - 1))
        self.min_step = q(float(options.get("min_step", 0.0)))
        self.max_step = q(float(options.get("max_step", math.inf)))
        self.safety, self.ifactor = q(float(options.get("safety", 0.9))), q(float(options.get("ifactor", 10.0)))
        self.dfactor = q(float(options.get("dfactor", 0.2)))
        self.segments = list(options.get("segment_sizes") or [])
        self.step_t = _option_times(options.get("step_t"), rhs.reverse, times[0], q)
        self.jump_t = _option_times(options.get("jump_t"), rhs.reverse, times[0], q)
        marks = self.step_t + self.jump_t
        if len(set(marks)) != len(marks):
            raise InvalidInputError("`step_t` and `jump_t` must not have any repeated elements between them.")
        # bisect_right: a mark equal to t0 is skipped, as in torchdiffeq; -1 only for an empty list.
        self.step_index = min(bisect.bisect(self.step_t, times[0]), len(self.step_t) - 1)
        self.jump_index = min(bisect.bisect(self.jump_t, times[0]), len(self.jump_t) - 1)
        self.accepted = self.rejected = 0

    def _where(self, t, dt):
        sign = -1.0 if self.rhs.reverse else 1.0
        return f"at t={self.rhs.user_time(t):.17g}, dt={sign * dt:.17g}, step {self.accepted + self.rejected + 1}"

    def _norm(self, y0, y1, k, e, dt):
        return rk_error_ratio(y0, y1, k, e, dt, self.rtol, self.atol, self.segments).max().item()

    def _initial_step(self, t0, y0, f0):
        """Hairer's initial step (torchdiffeq misc._select_initial_step with order - 1 = 4); one evaluation."""
        d0, d1 = self._norm(y0, y0, [y0], (1.0,), 1.0), self._norm(y0, y0, [f0], (1.0,), 1.0)
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        f1 = self.rhs(self.q(t0 + h0), rk_combine(y0, [f0], (1.0,), h0))
        d2 = abs(self._norm(y0, y0, [f1, f0], (1.0, -1.0), 1.0) / h0)
        if d1 <= 1e-15 and d2 <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / ORDER)   # 1 / ((order - 1) + 1)
        return self.q(min(100 * h0, h1))

    def _next_step_size(self, dt, ratio):
        """torchdiffeq's _optimal_step_size: I-controller, no shrink after an accepted step."""
        q = self.q
        if ratio == 0:
            return q(dt * self.ifactor)
        dfactor = 1.0 if ratio < 1 else self.dfactor
        ratio = q(ratio)
        factor = min(self.ifactor, max(q(self.safety / q(ratio ** q(1.0 / ORDER))), dfactor))
        return q(dt * factor)

    def _attempt(self, t0, y0, f0, dt):
        """One adaptive step from (t0, y0) with f0 = f(t0, y0). Returns (_AcceptedStep or None, next dt)."""
        q = self.q
        if not math.isfinite(dt):   # e.g. a non-finite first step; torchdiffeq falls back to min_step
            dt = self.min_step
        dt = min(max(dt, self.min_step), self.max_step)
        if self.accepted + self.rejected >= self.max_num_steps:
            raise MaxNumStepsError(f"max_num_steps={self.max_num_steps} exceeded {self._where(t0, dt)}")
        if not (bool(torch.isfinite(y0).all()) and bool(torch.isfinite(f0).all())):
            raise NonFiniteError(f"non-finite state or derivative {self._where(t0, dt)}")
        if not q(t0 + dt) > t0:
            raise StepSizeUnderflowError(f"step size underflow (t + dt == t) {self._where(t0, dt)}")
        t1 = q(t0 + dt)
        # Land exactly on the next step_t, then on the next jump_t; the jump check uses the shortened dt.
        on_step_t = bool(self.step_t) and t0 < self.step_t[self.step_index] < q(t0 + dt)
        if on_step_t:
            t1 = self.step_t[self.step_index]
            dt = q(t1 - t0)
        on_jump_t = bool(self.jump_t) and t0 < self.jump_t[self.jump_index] < q(t0 + dt)
        if on_jump_t:
            on_step_t, t1 = False, self.jump_t[self.jump_index]
            dt = q(t1 - t0)

        # Stage times are formed in the state's dtype; the nodes c = 1 use t1 exactly, one ulp before
        # it (so a discontinuity at t1 is seen from the left).
        def as_state(value):
            return torch.tensor(value, dtype=y0.dtype, device=y0.device)

        t0_s, dt_s = as_state(t0), as_state(dt)
        k = [f0]
        for i in range(1, 7):
            y_i = rk_combine(y0, k, A[i], dt)
            if C[i] == 1.0:
                k.append(self.rhs(as_state(t1), y_i, nudge=-1))
            else:
                k.append(self.rhs(t0_s + as_state(C[i]) * dt_s, y_i))
        y1 = y_i   # the input of stage 7 is the 5th-order solution

        ratio = self._norm(y0, y1, k, E, dt)
        if math.isnan(ratio):
            raise NonFiniteError(f"NaN in the error estimate (non-finite stage derivative) {self._where(t0, dt)}")
        accept = ratio <= 1
        if dt > self.max_step:
            accept = False
        if dt <= self.min_step:
            accept = True
        step = None
        if accept:
            self.accepted += 1
            f1 = k[6]
            if on_step_t and self.step_index != len(self.step_t) - 1:
                self.step_index += 1
            if on_jump_t:
                if self.jump_index != len(self.jump_t) - 1:
                    self.jump_index += 1
                f1 = self.rhs(t1, y1, nudge=+1)   # f from the right of the discontinuity (one more NFE)
            step = _AcceptedStep(t0, t1, dt, y0, y1, k, f1)
        else:
            self.rejected += 1
        dt_next = self._next_step_size(dt, ratio)   # from the dt actually used (maybe shortened)
        return step, min(max(dt_next, self.min_step), self.max_step)

    def solve(self):
        times, q = self.times, self.q
        t, y = times[0], self.y0
        f = self.rhs(t, y)
        dt = self.first_step if self.first_step is not None else self._initial_step(t, y, f)
        outputs, last_step, i = [self.y0.unsqueeze(0)], None, 1
        while i < len(times):
            if times[i] > t:   # steps run past the output time and are never clipped to it
                step, dt = self._attempt(t, y, f, dt)
                if step is not None:
                    last_step = step
                    t, y, f = step.t1, step.y1, step.f1
                continue
            j = i   # every output time inside the last accepted step, in one dense-output call
            while j < len(times) and times[j] <= last_step.t1:
                j += 1
            t0, t1 = last_step.t0, last_step.t1
            theta = [q(q(s - t0) / q(t1 - t0)) for s in times[i:j]]
            outputs.append(dopri5_dense(last_step.y0, last_step.y1, last_step.k, last_step.dt, theta))
            i = j
        return torch.cat(outputs)


def _fixed_grid_step(method, rhs, t0, dt, t1, y0):
    """One step of torchdiffeq's euler / midpoint / rk4 (rk4 is its 3/8-rule rk4_alt_step_func)."""
    f0 = rhs(t0, y0)
    if method == "euler":
        return rk_combine(y0, [f0], (1.0,), dt)
    if method == "midpoint":
        f_mid = rhs(t0 + 0.5 * dt, rk_combine(y0, [f0], (0.5,), dt))
        return rk_combine(y0, [f_mid], (1.0,), dt)
    k2 = rhs(t0 + dt * (1 / 3), rk_combine(y0, [f0], (1 / 3,), dt))
    k3 = rhs(t0 + dt * (2 / 3), rk_combine(y0, [f0, k2], (-1 / 3, 1.0), dt))
    k4 = rhs(t1, rk_combine(y0, [f0, k2, k3], (1.0, -1.0, 1.0), dt))
    return rk_combine(y0, [f0, k2, k3, k4], (0.125, 0.375, 0.375, 0.125), dt)


def _solve_fixed_grid(method, rhs, y0, times, options):
    step_size = options.get("step_size")
    if step_size is None:
        grid = list(times)
    else:
        step_size = float(step_size)
        if not step_size > 0:
            raise InvalidInputError(f"step_size must be positive, got {step_size}")
        # torchdiffeq's _grid_constructor_from_step_size, in float64; the last point is t[-1] exactly.
        niters = math.ceil((times[-1] - times[0]) / step_size + 1)
        grid = (torch.arange(0, niters, dtype=torch.float64) * step_size + times[0]).tolist()
        grid[-1] = times[-1]
    outputs, y, j = [y0], y0, 1
    for t0, t1 in zip(grid[:-1], grid[1:]):
        y1 = _fixed_grid_step(method, rhs, t0, t1 - t0, t1, y)
        while j < len(times) and t1 >= times[j]:   # torchdiffeq's linear interpolation
            s = times[j]
            outputs.append(y if s == t0 else y1 if s == t1 else rk_combine(y, [y1 - y], (1.0,), (s - t0) / (t1 - t0)))
            j += 1
        y = y1
    return torch.stack(outputs), len(grid) - 1


def _check_inputs(y0, t, method, options):
    if not torch.is_tensor(y0) or not torch.is_floating_point(y0):
        raise InvalidInputError(f"y0 must be a floating point tensor, got {getattr(y0, 'dtype', type(y0))}")
    if not torch.is_tensor(t) or t.dim() != 1 or len(t) == 0 or not torch.is_floating_point(t):
        raise InvalidInputError("t must be a non-empty 1-D floating point tensor")
    if not bool(torch.isfinite(t).all()):
        raise InvalidInputError(f"t must be finite, got {t.tolist()}")
    if not (bool((t[1:] > t[:-1]).all()) or bool((t[1:] < t[:-1]).all())):
        raise InvalidInputError(f"t must be strictly increasing or decreasing, got {t.tolist()}")
    allowed = _DOPRI5_OPTIONS if method == "dopri5" else {"step_size"} if method in _FIXED_GRID_NFE else None
    if allowed is None:
        raise InvalidInputError(f'unknown method "{method}"; choose dopri5, euler, midpoint or rk4')
    unknown = set(options) - allowed
    if unknown:
        raise InvalidInputError(f"unknown option(s) {sorted(unknown)} for method {method}")


def odeint_reference(func, y0, t, *, rtol=1e-7, atol=1e-9, method="dopri5", options=None):
    """Solve dy/dt = func(t, y), y(t[0]) = y0 at the times t (a tensor state only).

    Returns (solution [len(t), *y0.shape], {"nfe", "accepted", "rejected"}). Same steps as
    torchdiffeq 0.2.5, except that max_num_steps counts attempted steps per solve, not per output
    interval. Raises the typed errors of anode_native.errors."""
    options = dict(options or {})
    _check_inputs(y0, t, method, options)
    reverse = len(t) > 1 and bool(t[0] > t[1])
    rhs = _RightHandSide(func, y0, reverse)
    times = (-t if reverse else t).detach().double().tolist()   # the solver always integrates forwards
    if method == "dopri5":
        solver = _Dopri5(rhs, y0, times, rtol, atol, options)
        solution = solver.solve()
        accepted, rejected = solver.accepted, solver.rejected
    else:
        solution, accepted = _solve_fixed_grid(method, rhs, y0, times, options)
        rejected = 0
    return solution, {"nfe": rhs.nfe, "accepted": accepted, "rejected": rejected}
