"""Python entry points and fake (meta) kernels of the fused ops in torch.ops.anode_native.

The ops themselves are C++ (csrc/ops.cpp, kernels in csrc/cpu and csrc/cuda, autograd in
csrc/autograd.cpp). These wrappers accept 0-dim tensors for `dt` and `theta` and lists or tuples
for the stages; the fake kernels give shapes to torch.compile, FakeTensor and opcheck.
"""
from __future__ import annotations

from typing import Sequence

import torch

_ops = torch.ops.anode_native


def _as_float(x) -> float:
    return float(x.item()) if isinstance(x, torch.Tensor) else float(x)


def _as_floats(xs) -> list[float]:
    if isinstance(xs, torch.Tensor):
        return [float(v) for v in xs.reshape(-1).tolist()]
    return [float(v) for v in xs]


def _tolerance(tol, y: torch.Tensor) -> torch.Tensor:
    """float64 on y's device; a number becomes a fill there (copying it from the host would
    synchronise with a CUDA device)."""
    if isinstance(tol, (int, float)):
        return torch.full((), float(tol), dtype=torch.float64, device=y.device)
    return torch.as_tensor(tol, dtype=torch.float64, device=y.device)


def rk_combine(y: torch.Tensor, k: Sequence[torch.Tensor], coeffs, dt) -> torch.Tensor:
    """``y + dt * sum_j coeffs[j] * k[j]``."""
    return _ops.rk_combine(y, list(k), _as_floats(coeffs), _as_float(dt))


def rk_step_error(y, k, b, e, dt):
    """``(y + dt * sum_j b_j k_j, dt * sum_j e_j k_j)`` in one pass."""
    return _ops.rk_step_error(y, list(k), _as_floats(b), _as_floats(e), _as_float(dt))


def rk_error_ratio(y0, y1, k, e, dt, rtol, atol, segment_sizes=()):
    """Per-segment RMS of ``err / (atol + rtol * max(|y0|, |y1|))``, float64."""
    rtol, atol = _tolerance(rtol, y0), _tolerance(atol, y0)
    return _ops.rk_error_ratio(y0, y1, list(k), _as_floats(e), _as_float(dt), rtol, atol, list(segment_sizes))


def dopri5_dense(y0, y1, k, dt, theta) -> torch.Tensor:
    """Dormand–Prince dense output at fractions ``theta`` of the step: ``[len(theta), *y0.shape]``."""
    return _ops.dopri5_dense(y0, y1, list(k), _as_float(dt), _as_floats(theta))


@torch.library.register_fake("anode_native::rk_combine")
def _rk_combine_fake(y, k, coeffs, dt):
    return torch.empty_like(y, memory_format=torch.contiguous_format)


@torch.library.register_fake("anode_native::rk_step_error")
def _rk_step_error_fake(y, k, b, e, dt):
    return (torch.empty_like(y, memory_format=torch.contiguous_format),
            torch.empty_like(y, memory_format=torch.contiguous_format))


@torch.library.register_fake("anode_native::rk_error_ratio")
def _rk_error_ratio_fake(y0, y1, k, e, dt, rtol, atol, segment_sizes):
    return y0.new_empty((max(len(segment_sizes), 1),), dtype=torch.float64)


@torch.library.register_fake("anode_native::dopri5_dense")
def _dopri5_dense_fake(y0, y1, k, dt, theta):
    return y0.new_empty((len(theta), *y0.shape))


@torch.library.register_fake("anode_native::rk_stage_grads")
def _rk_stage_grads_fake(grad_a, grad_b, u, v, dt):
    return [torch.empty_like(grad_a, memory_format=torch.contiguous_format) for _ in u]


@torch.library.register_fake("anode_native::dopri5_dense_backward")
def _dopri5_dense_backward_fake(grad, dt, theta):
    return [grad.new_empty(grad.shape[1:]) for _ in range(9)]
