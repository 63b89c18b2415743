"""`odeint`: torchdiffeq's API on the native driver, with direct backpropagation.

The adaptive loop runs in C++ (csrc/solver/dopri5.cpp) and calls `func` back through pybind11.
Gradients flow through the fused ops' autograd formulas to y0 and func's parameters; step sizes
are treated as constants (the derivative of the discrete scheme that was actually run), which
differs from torchdiffeq's direct backprop only by terms of the order of the local error.
"""
from __future__ import annotations

import torch

from . import _C
from ._inputs import check_device, forward_options, prepare, solve_forward
from .native_fields import native_form
from .stats import SolverStats, _set_last_stats


def _record(stats: SolverStats, native_stats, solution: torch.Tensor) -> None:
    stats.nfe_forward, stats.accepted_forward, stats.rejected_forward = native_stats
    stats.nfe_backward = stats.accepted_backward = stats.rejected_backward = 0
    if solution.requires_grad:
        # Direct backprop: each forward evaluation is differentiated once, when backward reaches it.
        def on_backward(grad):
            stats.nfe_backward = stats.nfe_forward
            stats.accepted_backward, stats.rejected_backward = stats.accepted_forward, stats.rejected_forward
            return grad
        solution.register_hook(on_backward)


def odeint(func, y0, t, *, rtol=1e-7, atol=1e-9, method="dopri5", options=None, stats: SolverStats | None = None):
    """Solve dy/dt = func(t, y) from y(t[0]) = y0 and return y at every time in t.

    Same semantics as ``torchdiffeq.odeint``: y0 is a tensor or a tuple of tensors, t a strictly
    monotonic 1-D tensor, and the result has shape ``[len(t), *y0.shape]`` (a tuple of such for a
    tuple state). Methods: ``dopri5`` (adaptive, default), ``euler``, ``midpoint``, ``rk4``
    (fixed grid; option ``step_size``). Pass ``stats=SolverStats()`` to receive NFE and step counts,
    or read :func:`anode_native.last_stats` afterwards.
    """
    problem = prepare(func, y0, t, rtol, atol, method, options)
    check_device(_C, problem.y0)
    stats = SolverStats() if stats is None else stats
    _set_last_stats(stats)
    if len(problem.times) == 1:
        solution = problem.y0.unsqueeze(0)
        _record(stats, (0, 0, 0), solution)
        return problem.unpack(solution)
    # The library's own vector fields run inside the driver with no Python per evaluation.
    rhs = native_form(problem.func) or problem.func
    solution, native_stats = solve_forward(_C, rhs, problem.y0, problem.times, problem.method,
                                           forward_options(_C, problem))
    _record(stats, native_stats, solution)
    return problem.unpack(solution)
