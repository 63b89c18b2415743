"""Per-solve statistics: function evaluations and steps, forward and backward.

A :class:`SolverStats` is filled by the native driver. Pass one to ``odeint(..., stats=s)`` to keep
it, or read :func:`last_stats` right after a call (thread-local). Backward fields are written when
the backward pass of that solve runs (``loss.backward()``).
"""
from __future__ import annotations

import dataclasses
import threading


@dataclasses.dataclass
class SolverStats:
    nfe_forward: int = 0          # right-hand-side evaluations in the forward solve
    accepted_forward: int = 0     # accepted adaptive steps (or fixed-grid steps)
    rejected_forward: int = 0     # rejected adaptive steps
    nfe_backward: int = 0         # evaluations in the backward pass (adjoint solve, or the VJPs
                                  # of direct backprop: one per forward evaluation)
    accepted_backward: int = 0
    rejected_backward: int = 0

    @property
    def steps_forward(self) -> int:
        return self.accepted_forward + self.rejected_forward

    @property
    def steps_backward(self) -> int:
        return self.accepted_backward + self.rejected_backward

    def reset(self) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, 0)


_local = threading.local()


def last_stats() -> SolverStats:
    """Statistics of the most recent solve started in this thread (a fresh object if none)."""
    stats = getattr(_local, "stats", None)
    if stats is None:
        stats = _local.stats = SolverStats()
    return stats


def _set_last_stats(stats: SolverStats) -> None:
    _local.stats = stats
