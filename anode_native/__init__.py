"""anode-native: Neural ODEs and Augmented Neural ODEs on a native Dormand-Prince engine.

Drop-in for torchdiffeq: ``from anode_native import odeint`` (and ``odeint_adjoint``).
"""
import torch  # noqa: F401  (loads libc10/libtorch, which _C links against)

try:
    from . import _C  # noqa: F401  (registers torch.ops.anode_native and the drivers)
except ImportError as exc:  # never fall back silently to a Python solver
    raise ImportError(
        "anode_native's native extension (anode_native._C) is not built or failed to load "
        f"({exc}). Build it with `make build` or `pip install --no-build-isolation -e .` "
        "(incremental: `python setup.py build_ext --inplace`)."
    ) from exc

from . import ops  # noqa: F401,E402  (fake kernels for torch.compile / opcheck)
from .errors import (  # noqa: E402
    FuncOutputError,
    InvalidInputError,
    MaxNumStepsError,
    NonFiniteError,
    SolverError,
    StepSizeUnderflowError,
)
from .odeint import odeint  # noqa: E402
from .adjoint import odeint_adjoint  # noqa: E402
from .stats import SolverStats, last_stats  # noqa: E402
from .nn import ConvODEFunc, ConvODENet, ODEBlock, ODEFunc, ODENet, ResNet, count_parameters  # noqa: E402
from .data import ConcentricSphere, Data1D, ShiftedSines  # noqa: E402
from .training import Trainer  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "odeint",
    "odeint_adjoint",
    "ODEFunc",
    "ConvODEFunc",
    "ODEBlock",
    "ODENet",
    "ConvODENet",
    "ResNet",
    "count_parameters",
    "Data1D",
    "ConcentricSphere",
    "ShiftedSines",
    "Trainer",
    "SolverStats",
    "last_stats",
    "SolverError",
    "InvalidInputError",
    "FuncOutputError",
    "NonFiniteError",
    "StepSizeUnderflowError",
    "MaxNumStepsError",
]
