"""Typed exceptions raised by the solvers.

Every error the engine raises is a subclass of :class:`SolverError`, so a training loop can catch
solver failures in one place. The native driver raises these same classes (it looks them up here
by name), with messages that say where the solve was: phase, t, dt and step number.
"""


class SolverError(RuntimeError):
    """Base class of every error raised by anode_native's solvers."""


class InvalidInputError(SolverError, ValueError):
    """An argument is malformed: `t` not strictly monotonic or not finite, `y0` not floating point,
    an unknown method or option, a bad tolerance."""


class FuncOutputError(SolverError, ValueError):
    """`func` returned something that is not a tensor of `y0`'s shape, dtype and device."""


class NonFiniteError(SolverError, FloatingPointError):
    """NaN or Inf appeared in the state or in the derivative during the solve."""


class StepSizeUnderflowError(SolverError):
    """The adaptive step size became too small to advance time (t + dt == t) or fell below `min_step`."""


class MaxNumStepsError(SolverError):
    """The solve needed more than `max_num_steps` attempted steps."""


__all__ = [
    "SolverError",
    "InvalidInputError",
    "FuncOutputError",
    "NonFiniteError",
    "StepSizeUnderflowError",
    "MaxNumStepsError",
]
