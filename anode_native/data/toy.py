"""Seeded, deterministic generators for the paper's toy problems (reference:
experiments/dataloaders.py of Dupont et al.). Every dataset holds two tensors, `data` (N, dim)
and `targets` (N, 1), and draws from its own `torch.Generator(seed)`: the same arguments give
the same points on every machine and in every process.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset


class ToyDataset(Dataset):
    """Base class: `data` (N, dim) float32, `targets` (N, 1) float32."""

    data: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index):
        return self.data[index], self.targets[index]

    @property
    def dim(self) -> int:
        return self.data.shape[1]

    def tensors(self) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.data, self.targets


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


class Data1D(ToyDataset):
    """Points at -1 and +1 (each with probability 1/2). Targets are the identity (x -> x) or, with
    `target_flip`, g_1d of the paper (-1 -> 1, 1 -> -1), which no 1-D ODE flow can represent.
    `noise_scale` is the std of Gaussian noise added to the inputs (not the targets)."""

    def __init__(self, num_points: int = 500, target_flip: bool = False,
                 noise_scale: float = 0.0, seed: int = 0):
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1; got {num_points}")
        gen = _generator(seed)
        self.num_points = num_points
        self.target_flip = target_flip
        self.noise_scale = noise_scale
        signs = torch.where(torch.rand(num_points, 1, generator=gen) > 0.5, 1.0, -1.0)
        self.targets = -signs if target_flip else signs.clone()
        noise = torch.randn(num_points, 1, generator=gen) * noise_scale
        self.data = signs + noise


def sample_annulus(num_points: int, dim: int, min_radius: float, max_radius: float,
                   gen: torch.Generator) -> torch.Tensor:
    """`num_points` points uniform in volume in {min_radius <= |x| <= max_radius} of R^dim:
    a Gaussian direction and a radius r with r^dim uniform in [min^dim, max^dim]."""
    direction = torch.randn(num_points, dim, generator=gen, dtype=torch.float64)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
    u = torch.rand(num_points, 1, generator=gen, dtype=torch.float64)
    radius = (min_radius ** dim + u * (max_radius ** dim - min_radius ** dim)) ** (1.0 / dim)
    return (radius * direction).float()


def angles(points: torch.Tensor) -> torch.Tensor:
    """Angle in [0, 2 pi) of each point's first two coordinates."""
    return torch.remainder(torch.atan2(points[:, 1], points[:, 0]), 2 * math.pi)


def in_angle_range(points: torch.Tensor, angle_range: Sequence[float]) -> torch.Tensor:
    """Boolean mask of points whose angle (first two coordinates) lies in [lo, hi] (radians)."""
    lo, hi = float(angle_range[0]), float(angle_range[1])
    if points.shape[1] < 2:
        raise ValueError("an angle range needs data of dimension >= 2")
    a = angles(points)
    return (a >= lo) & (a <= hi)


class ConcentricSphere(ToyDataset):
    """g(x) of the paper: points of the ball |x| <= 0.5 map to -1, points of the shell
    1.0 <= |x| <= 1.5 map to +1 (ranges configurable). Points are uniform in volume.

    `exclude_angles=(lo, hi)` drops the points whose angle in the plane of the first two
    coordinates lies in [lo, hi] radians: the training set of the generalization experiment
    (validate on the full distribution, e.g. another seed without exclusion). The kept counts
    are then smaller than requested.
    """

    def __init__(self, dim: int = 2, inner_range: Sequence[float] = (0.0, 0.5),
                 outer_range: Sequence[float] = (1.0, 1.5), num_points_inner: int = 500,
                 num_points_outer: int = 1500, seed: int = 0,
                 exclude_angles: Optional[Sequence[float]] = None):
        if dim < 1:
            raise ValueError(f"dim must be >= 1; got {dim}")
        if not (0 <= inner_range[0] <= inner_range[1] and 0 <= outer_range[0] <= outer_range[1]):
            raise ValueError(f"bad radii: inner_range={list(inner_range)}, outer_range={list(outer_range)}")
        gen = _generator(seed)
        self.inner_range = tuple(float(r) for r in inner_range)
        self.outer_range = tuple(float(r) for r in outer_range)
        self.exclude_angles = None if exclude_angles is None else tuple(float(a) for a in exclude_angles)
        inner = sample_annulus(num_points_inner, dim, *self.inner_range, gen)
        outer = sample_annulus(num_points_outer, dim, *self.outer_range, gen)
        data = torch.cat([inner, outer])
        targets = torch.cat([-torch.ones(num_points_inner, 1), torch.ones(num_points_outer, 1)])
        if self.exclude_angles is not None:
            keep = ~in_angle_range(data, self.exclude_angles)
            data, targets = data[keep], targets[keep]
        self.data, self.targets = data, targets


class ShiftedSines(ToyDataset):
    """Two sine curves y = sin(pi x) +- shift/2 (+ noise) for x uniform in [-1, 1]; the upper
    maps to +1, the lower to -1. Linearly separable after a monotone warp: a problem both NODEs
    and ANODEs solve. dim 1 keeps only y; dim > 2 appends uniform [-1, 1] coordinates."""

    def __init__(self, dim: int = 2, shift: float = 1.4, num_points_upper: int = 1500,
                 num_points_lower: int = 1500, noise_scale: float = 0.1, seed: int = 0):
        if dim < 1:
            raise ValueError(f"dim must be >= 1; got {dim}")
        gen = _generator(seed)
        n = num_points_upper + num_points_lower
        self.shift = shift
        self.noise_scale = noise_scale
        labels = torch.cat([torch.ones(num_points_upper, 1), -torch.ones(num_points_lower, 1)])
        x = 2 * torch.rand(n, 1, generator=gen) - 1
        y = torch.sin(math.pi * x) + noise_scale * torch.randn(n, 1, generator=gen) + labels * shift / 2
        if dim == 1:
            data = y
        else:
            data = torch.cat([x, y, 2 * torch.rand(n, dim - 2, generator=gen) - 1], dim=1)
        self.data, self.targets = data, labels


def generalization_split(dim: int = 2, angle_range: Sequence[float] = (0.0, math.pi / 5),
                         seed: int = 0, **sphere_kwargs) -> Tuple[ConcentricSphere, ConcentricSphere]:
    """(train, validation) for the generalization experiment: the training set lacks the slice of
    angles `angle_range`; the validation set is the full distribution drawn with seed + 1."""
    train = ConcentricSphere(dim, seed=seed, exclude_angles=angle_range, **sphere_kwargs)
    val = ConcentricSphere(dim, seed=seed + 1, **sphere_kwargs)
    return train, val


__all__ = ["ToyDataset", "Data1D", "ConcentricSphere", "ShiftedSines", "generalization_split",
           "sample_annulus", "angles", "in_angle_range"]
