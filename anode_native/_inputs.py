"""Argument checks and normalisation shared by odeint and odeint_adjoint.

Tuple states are packed into one flat tensor (torchdiffeq's approach) and the error norm becomes
the max over the tuple's members of their RMS norms, as in torchdiffeq's _mixed_norm.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import torch

from .errors import InvalidInputError

ADAPTIVE_METHODS = ("dopri5",)
FIXED_METHODS = ("euler", "midpoint", "rk4")
ADAPTIVE_OPTIONS = {"first_step", "max_num_steps", "min_step", "max_step", "step_t", "jump_t", "dtype",
                    "safety", "ifactor", "dfactor", "norm"}
FIXED_OPTIONS = {"step_size", "perturb", "interp"}


@dataclasses.dataclass
class Problem:
    func: Callable
    y0: torch.Tensor
    times: list
    rtol: torch.Tensor
    atol: torch.Tensor
    segments: list
    shapes: Optional[list]   # shapes of the tuple's members, None for a tensor state
    method: str
    options: dict

    def unpack(self, solution: torch.Tensor):
        """[len(t), N] flat solution -> tuple of [len(t), *shape_i] for tuple states."""
        if self.shapes is None:
            return solution
        pieces = torch.split(solution, [math.prod(s) for s in self.shapes], dim=1)
        return tuple(p.reshape(solution.shape[0], *s) for p, s in zip(pieces, self.shapes))


def _check_times(t) -> list:
    if not isinstance(t, torch.Tensor):
        raise InvalidInputError(f"t must be a 1-D torch.Tensor of times, got {type(t).__name__}")
    if t.dim() != 1 or t.numel() < 1:
        raise InvalidInputError(f"t must be a 1-D tensor with at least one time, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise InvalidInputError(f"t must be floating point, got {t.dtype}")
    times = [float(v) for v in t.detach().cpu().double().tolist()]
    for i, v in enumerate(times):
        if not math.isfinite(v):
            raise InvalidInputError(f"t must be finite, but t[{i}] = {v}")
    if len(times) > 1:
        increasing = times[1] > times[0]
        for i in range(1, len(times)):
            ok = times[i] > times[i - 1] if increasing else times[i] < times[i - 1]
            if not ok:
                raise InvalidInputError(
                    f"t must be strictly increasing or strictly decreasing, but t[{i - 1}] = {times[i - 1]} "
                    f"and t[{i}] = {times[i]}")
    return times


def _tolerance(name: str, value, shapes, y0: torch.Tensor) -> torch.Tensor:
    """A float64 tolerance: 0-dim, or one value per element of the (flattened) state."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # The common case, checked in Python: a solve of a small model is only a few hundred us.
        if not (math.isfinite(value) and value >= 0):
            raise InvalidInputError(f"{name} must be finite and non-negative, got {value}")
        return torch.full((), float(value), dtype=torch.float64, device=y0.device)
    if shapes is not None and isinstance(value, (tuple, list)):
        if len(value) != len(shapes):
            raise InvalidInputError(f"{name} has {len(value)} entries but the state tuple has {len(shapes)}")
        parts = [torch.as_tensor(v, dtype=torch.float64).expand(s).reshape(-1) for v, s in zip(value, shapes)]
        tol = torch.cat(parts)
    else:
        tol = torch.as_tensor(value, dtype=torch.float64)
        if tol.numel() != 1:
            if tol.numel() != y0.numel():
                raise InvalidInputError(
                    f"{name} must be a number or have one value per state element ({y0.numel()}), "
                    f"got {tol.numel()} values")
            tol = tol.reshape(-1)
        else:
            tol = tol.reshape(())
    # Checked where the values are (the host, for numbers): no device read-back for a CUDA state.
    if not bool(torch.isfinite(tol).all()) or bool((tol < 0).any()):
        raise InvalidInputError(f"{name} must be finite and non-negative, got {value}")
    if tol.dim() == 0 and tol.device != y0.device:
        return torch.full((), float(tol), dtype=torch.float64, device=y0.device)  # a fill, not a synchronising copy
    return tol.to(y0.device)


def _options(method: str, options) -> dict:
    options = {} if options is None else dict(options)
    allowed = ADAPTIVE_OPTIONS if method in ADAPTIVE_METHODS else FIXED_OPTIONS
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidInputError(f"unknown option(s) {unknown} for method '{method}'; allowed: {sorted(allowed)}")
    return options


def prepare(func, y0, t, rtol, atol, method, options) -> Problem:
    if not callable(func):
        raise InvalidInputError(f"func must be callable as func(t, y), got {type(func).__name__}")
    method = "dopri5" if method is None else method
    if method not in ADAPTIVE_METHODS + FIXED_METHODS:
        raise InvalidInputError(f"unknown method '{method}'; expected one of {list(ADAPTIVE_METHODS + FIXED_METHODS)}")
    options = _options(method, options)

    shapes = None
    if isinstance(y0, (tuple, list)):
        if not y0 or not all(isinstance(y, torch.Tensor) for y in y0):
            raise InvalidInputError("a tuple state y0 must be a non-empty tuple of tensors")
        shapes = [y.shape for y in y0]
        dtypes = {y.dtype for y in y0}
        if len(dtypes) != 1:
            raise InvalidInputError(f"all members of the state tuple must share one dtype, got {sorted(map(str, dtypes))}")
        flat = torch.cat([y.reshape(-1) for y in y0])
        user_func = func

        def func(t, y):  # noqa: F811  (the flat view of a tuple-valued func)
            parts = torch.split(y, [math.prod(s) for s in shapes])
            out = user_func(t, tuple(p.view(s) for p, s in zip(parts, shapes)))
            if not isinstance(out, (tuple, list)) or len(out) != len(shapes):
                raise InvalidInputError("func must return a tuple with one derivative per member of the state tuple")
            return torch.cat([o.reshape(-1) for o in out])
        y0 = flat
    elif not isinstance(y0, torch.Tensor):
        raise InvalidInputError(f"y0 must be a torch.Tensor or a tuple of tensors, got {type(y0).__name__}")
    if not y0.is_floating_point():
        raise InvalidInputError(f"y0 must be floating point, got {y0.dtype}")

    times = _check_times(t)
    rtol_t = _tolerance("rtol", rtol, shapes, y0)
    atol_t = _tolerance("atol", atol, shapes, y0)
    segments = [math.prod(s) for s in shapes] if shapes is not None else [y0.numel()]
    if "norm" in options:
        raise InvalidInputError("a custom 'norm' callable is not supported by the native driver; "
                                "tuple states use torchdiffeq's mixed RMS norm automatically")
    return Problem(func, y0, times, rtol_t, atol_t, segments, shapes, method, options)


def _float_option(options, name, default, positive=False):
    value = options.get(name, default)
    if value is None:
        return None
    value = float(value.item() if isinstance(value, torch.Tensor) else value)
    if math.isnan(value) or (positive and not value > 0):
        raise InvalidInputError(f"option {name} must be a {'positive ' if positive else ''}number, got {value}")
    return value


def _times_option(options, name) -> list:
    value = options.get(name)
    if value is None:
        return []
    values = torch.as_tensor(value, dtype=torch.float64).reshape(-1).tolist()
    if not all(math.isfinite(v) for v in values):
        raise InvalidInputError(f"option {name} must hold finite times, got {values}")
    return values


def adaptive_options(_C, problem: Problem, phase: str = "forward"):
    """The native driver's AdaptiveOptions for a prepared problem."""
    opts = problem.options
    native = _C.AdaptiveOptions()
    native.rtol, native.atol = problem.rtol, problem.atol
    native.segments = problem.segments
    native.first_step = _float_option(opts, "first_step", None, positive=True)
    max_num_steps = opts.get("max_num_steps", 2 ** 31 - 1)
    if int(max_num_steps) < 1:
        raise InvalidInputError(f"option max_num_steps must be a positive integer, got {max_num_steps}")
    native.max_num_steps = int(max_num_steps)
    native.min_step = _float_option(opts, "min_step", 0.0)
    native.max_step = _float_option(opts, "max_step", math.inf, positive=True)
    if native.min_step < 0 or native.min_step > native.max_step:
        raise InvalidInputError(f"need 0 <= min_step <= max_step, got {native.min_step} and {native.max_step}")
    native.step_t = _times_option(opts, "step_t")
    native.jump_t = _times_option(opts, "jump_t")
    native.safety = _float_option(opts, "safety", 0.9, positive=True)
    native.ifactor = _float_option(opts, "ifactor", 10.0, positive=True)
    native.dfactor = _float_option(opts, "dfactor", 0.2, positive=True)
    dtype = opts.get("dtype", torch.float64)
    if dtype not in (torch.float32, torch.float64):
        raise InvalidInputError(f"option dtype (time dtype) must be torch.float32 or torch.float64, got {dtype}")
    native.time_float32 = dtype == torch.float32
    native.phase = phase
    return native


def fixed_step_size(problem: Problem) -> Optional[float]:
    return _float_option(problem.options, "step_size", None, positive=True)


def forward_options(_C, problem: Problem):
    """What the forward driver needs beyond the problem: AdaptiveOptions for dopri5, else the
    fixed-grid step size (None: the grid is t itself)."""
    return adaptive_options(_C, problem) if problem.method in ADAPTIVE_METHODS else fixed_step_size(problem)


def solve_forward(_C, rhs, y0: torch.Tensor, times: list, method: str, native):
    """One native solve (`native` from forward_options): (solution [len(times), *y0.shape],
    (nfe, accepted, rejected))."""
    if method in ADAPTIVE_METHODS:
        return _C.solve_dopri5(rhs, y0, times, native)
    return _C.solve_fixed(rhs, y0, times, method, native)


def check_device(_C, y0: torch.Tensor) -> None:
    if y0.device.type not in ("cpu", "cuda"):
        raise InvalidInputError(f"y0 is on {y0.device}; anode_native supports CPU and CUDA tensors")
    if y0.device.type == "cuda" and not _C.has_cuda:
        raise InvalidInputError("y0 is on a CUDA device but anode_native was built without CUDA kernels "
                                "(rebuild with FORCE_CUDA=1 on a machine with nvcc)")


__all__ = ["Problem", "prepare", "adaptive_options", "fixed_step_size", "forward_options", "solve_forward",
           "check_device"]
