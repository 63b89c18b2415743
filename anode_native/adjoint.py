"""`odeint_adjoint`: torchdiffeq's adjoint API on the native engine.

The forward solve keeps no graph, only the solution at the output times. `backward` runs the
adjoint loop in C++ (csrc/solver/adjoint.cpp): the augmented state ``[y, a_y, a_theta, a_t]`` is
one flat tensor integrated from the last output time to the first by the same dopri5 driver and
fused ops, with func's vector-Jacobian products taken by torch's autograd. Memory therefore does
not grow with the number of solver steps.

Departures from torchdiffeq 0.2.5, for speed; they change the step sequence of the backward
solve, not the quantity it approximates:

* the step size is carried from one output interval to the next instead of re-running the
  initial-step heuristic at every output time, and steps end exactly on the output times
  (the augmented state jumps there) instead of overshooting them and interpolating;
* output times whose loss gradient is exactly zero are stepped across (nothing is added to the
  adjoint there); before the last output with a non-zero gradient the adjoint is exactly zero,
  so the backward solve starts there;
* a_t is integrated only when t requires grad. (torchdiffeq 0.2.5 means to do the same, but its
  ``t_ = t.detach(); t = t_.requires_grad_(True)`` makes ``t_`` require grad too, so it always
  integrates a_t, which enters the error norm: with t requiring grad and 2 output times the two
  libraries take the same steps but for the last one.)
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from . import _C
from ._inputs import (ADAPTIVE_METHODS, FIXED_METHODS, _float_option, _options, _tolerance, adaptive_options,
                      check_device, forward_options, prepare, solve_forward)
from .errors import InvalidInputError
from .native_fields import native_form
from .stats import SolverStats, _set_last_stats

NORMS = ("default", "seminorm")


@dataclasses.dataclass
class _Run:
    """What the autograd Function needs in forward and backward (all but the tensors)."""
    func: object
    times: list
    forward_method: str
    forward_native: object              # AdaptiveOptions, or the fixed step size (float or None)
    backward_native: object             # AdaptiveOptions for z = [y, a_y, a_theta, a_t]
    backward_fixed: str | None          # fixed-grid adjoint method, None for dopri5
    backward_step_size: float | None
    stats: SolverStats


class _OdeintAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run: _Run, y0, t, *params):
        # Autograd is off inside Function.forward: func builds no graph here.
        solution, native_stats = solve_forward(_C, run.func, y0, run.times, run.forward_method, run.forward_native)
        run.stats.nfe_forward, run.stats.accepted_forward, run.stats.rejected_forward = native_stats
        ctx.run = run
        ctx.t_dtype_device = (t.dtype, t.device)
        ctx.save_for_backward(solution, *params)
        return solution

    @staticmethod
    @once_differentiable  # the adjoint solve itself builds no graph: no double backward
    def backward(ctx, grad_solution):
        run: _Run = ctx.run
        solution, *params = ctx.saved_tensors
        t_requires_grad = ctx.needs_input_grad[2]
        grad_y0, grad_params, grad_t, native_stats = _C.adjoint_backward(
            run.func, params, run.times, solution, grad_solution, t_requires_grad, run.backward_native,
            run.backward_fixed, run.backward_step_size)
        run.stats.nfe_backward, run.stats.accepted_backward, run.stats.rejected_backward = native_stats
        if grad_t is not None:
            grad_t = grad_t.to(dtype=ctx.t_dtype_device[0], device=ctx.t_dtype_device[1])
        return (None, grad_y0, grad_t, *grad_params)


def _find_parameters(func, adjoint_params) -> tuple:
    if adjoint_params is None:
        if not isinstance(func, nn.Module):
            raise InvalidInputError(
                "func must be an nn.Module for odeint_adjoint to find its parameters; otherwise pass them as "
                "adjoint_params=(...) (adjoint_params=() if func has none)")
        adjoint_params = func.parameters()
    params, seen = [], set()
    for p in adjoint_params:
        if not isinstance(p, torch.Tensor):
            raise InvalidInputError(f"adjoint_params must hold tensors, got {type(p).__name__}")
        # Only what needs a gradient (as torchdiffeq); once each, or its gradient would be counted twice.
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    return tuple(params)


def _backward_options(problem, params, rtol, atol, method, options, norm):
    """(AdaptiveOptions for the augmented state, fixed method or None, fixed step size or None)."""
    if method not in ADAPTIVE_METHODS + FIXED_METHODS:
        raise InvalidInputError(
            f"unknown adjoint_method '{method}'; expected one of {list(ADAPTIVE_METHODS + FIXED_METHODS)}")
    options = _options(method, options)
    if method in FIXED_METHODS:
        return _C.AdaptiveOptions(), method, _float_option(options, "step_size", None, positive=True)
    sizes = [p.numel() for p in params]

    def augmented(name, value):
        tol = _tolerance(name, value, problem.shapes, problem.y0)
        if tol.dim() == 0:
            return tol
        # Per-element tolerances of y apply to y and a_y; a_theta and a_t get the strictest one.
        return torch.cat([tol, tol, tol.min().expand(sum(sizes) + 1)])

    # torchdiffeq's default adjoint norm is the max of the RMS norms of t, y, a_y and of each
    # parameter separately (its augmented state is a tuple); the seminorm drops the parameters.
    segments = problem.segments + problem.segments + sizes + [1]
    in_norm = [True] * (2 * len(problem.segments)) + [norm != "seminorm"] * len(sizes) + [True]
    keep = [i for i, s in enumerate(segments) if s > 0]  # an empty segment's RMS would be NaN
    aug = dataclasses.replace(problem, rtol=augmented("adjoint_rtol", rtol), atol=augmented("adjoint_atol", atol),
                              segments=[segments[i] for i in keep], options=options, method=method)
    native = adaptive_options(_C, aug, phase="adjoint")
    native.segment_in_norm = [in_norm[i] for i in keep]
    return native, None, None


def odeint_adjoint(func, y0, t, *, rtol=1e-7, atol=1e-9, method=None, options=None, adjoint_rtol=None,
                   adjoint_atol=None, adjoint_method=None, adjoint_options=None, adjoint_params=None,
                   stats: SolverStats | None = None):
    """Solve like :func:`anode_native.odeint`, differentiating by the adjoint method.

    Same semantics as ``torchdiffeq.odeint_adjoint``: gradients reach ``y0``, ``t`` and
    ``adjoint_params`` (default: ``func.parameters()``; a plain callable must pass them, ``()`` if
    none). ``adjoint_rtol``/``adjoint_atol``/``adjoint_method`` default to the forward ones and
    ``adjoint_options`` to ``options``; ``adjoint_options={"norm": "seminorm"}`` leaves the parameter
    adjoints out of the error norm (Kidger, Chen & Lyons 2021). Backward NFE and steps are written
    to ``stats`` (or :func:`anode_native.last_stats`) when ``backward()`` runs. In the backward
    solve ``max_num_steps`` counts per stretch between two output times where it restarts (as
    torchdiffeq's one odeint call per interval); per-element adjoint tolerances apply to y and
    a_y, and their smallest value to a_theta and a_t.
    """
    params = _find_parameters(func, adjoint_params)
    method = "dopri5" if method is None else method
    adjoint_rtol = rtol if adjoint_rtol is None else adjoint_rtol
    adjoint_atol = atol if adjoint_atol is None else adjoint_atol
    adjoint_method = method if adjoint_method is None else adjoint_method
    if adjoint_method != method and options is not None and adjoint_options is None:
        raise InvalidInputError("adjoint_method differs from method, so adjoint_options cannot be inferred from "
                                "options: pass adjoint_options as well")
    if adjoint_options is None:
        adjoint_options = {k: v for k, v in (options or {}).items() if k != "norm"}
    adjoint_options = dict(adjoint_options)
    norm = adjoint_options.pop("norm", "default")
    if not isinstance(norm, str) or norm not in NORMS:
        raise InvalidInputError(f"adjoint_options['norm'] must be one of {list(NORMS)}, got {norm!r}; "
                                "custom norm callables are not supported by the native driver")

    problem = prepare(func, y0, t, rtol, atol, method, options)
    check_device(_C, problem.y0)
    stats = SolverStats() if stats is None else stats
    stats.reset()
    _set_last_stats(stats)
    if len(problem.times) == 1:
        return problem.unpack(problem.y0.unsqueeze(0))

    forward_native = forward_options(_C, problem)
    backward_native, backward_fixed, backward_step = _backward_options(
        problem, params, adjoint_rtol, adjoint_atol, adjoint_method, adjoint_options, norm)
    # The library's own vector fields run inside the driver, forward and backward, with no Python
    # per evaluation (they read the module's parameter tensors, so the VJPs reach them).
    rhs = native_form(problem.func) or problem.func
    run = _Run(rhs, problem.times, problem.method, forward_native, backward_native, backward_fixed,
               backward_step, stats)
    solution = _OdeintAdjoint.apply(run, problem.y0, t, *params)
    return problem.unpack(solution)
