"""Toy datasets: determinism, the functions g_1d and g(x), uniformity in volume, the
generalization split and the shifted sines."""
import math

import pytest
import torch

from anode_native.data import (ConcentricSphere, Data1D, ShiftedSines, angles,
                               generalization_split, sample_annulus)


def test_data1d_identity_and_g1d():
    ident, flip = Data1D(400, target_flip=False, seed=3), Data1D(400, target_flip=True, seed=3)
    assert ident.data.shape == (400, 1) and ident.targets.shape == (400, 1)
    assert set(ident.data.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(ident.targets, ident.data)
    assert torch.equal(flip.data, ident.data) and torch.equal(flip.targets, -flip.data)
    assert 150 < int((ident.data > 0).sum()) < 250
    noisy = Data1D(400, noise_scale=0.1, seed=3)
    assert 0 < (noisy.data - ident.data).abs().max() < 0.6


def test_datasets_are_deterministic_per_seed():
    for make in (lambda s: Data1D(50, seed=s), lambda s: ConcentricSphere(3, seed=s),
                 lambda s: ShiftedSines(2, seed=s)):
        a, b, c = make(0), make(0), make(1)
        assert torch.equal(a.data, b.data) and torch.equal(a.targets, b.targets)
        assert not torch.equal(a.data, c.data)


def test_generation_does_not_touch_the_global_rng():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    ConcentricSphere(2, seed=1)
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_concentric_sphere_is_g_of_x(dim):
    ds = ConcentricSphere(dim, num_points_inner=300, num_points_outer=500, seed=0)
    assert len(ds) == 800 and ds.dim == dim
    r = ds.data.norm(dim=1)
    inner, outer = ds.targets[:, 0] == -1, ds.targets[:, 0] == 1
    assert int(inner.sum()) == 300 and int(outer.sum()) == 500
    assert r[inner].max() <= 0.5 + 1e-6
    assert r[outer].min() >= 1.0 - 1e-6 and r[outer].max() <= 1.5 + 1e-6
    x, y = ds[[0, 5, 7]]                                 # batch indexing used by the loaders
    assert x.shape == (3, dim) and y.shape == (3, 1)


@pytest.mark.parametrize("dim", [2, 3])
def test_points_are_uniform_in_volume(dim):
    gen = torch.Generator().manual_seed(0)
    n = 20000
    ball = sample_annulus(n, dim, 0.0, 0.5, gen).norm(dim=1)
    shell = sample_annulus(n, dim, 1.0, 1.5, gen).norm(dim=1)
    # half the volume of a ball lies within radius R / 2^(1/d); for the shell, within the radius
    # whose d-th power is the mean of 1 and 1.5^d (a uniform-radius sampler fails this)
    assert abs(float((ball < 0.5 / 2 ** (1 / dim)).float().mean()) - 0.5) < 0.015
    r_half = ((1 + 1.5 ** dim) / 2) ** (1 / dim)
    assert abs(float((shell < r_half).float().mean()) - 0.5) < 0.015
    # directions are isotropic
    mean_dir = (sample_annulus(n, dim, 1.0, 1.0, gen)).mean(0)
    assert mean_dir.abs().max() < 0.03


def test_generalization_split_removes_the_slice_from_training_only():
    lo, hi = 0.0, math.pi / 5
    train, val = generalization_split(2, (lo, hi), seed=0, num_points_inner=400, num_points_outer=800)
    a_train, a_val = angles(train.data), angles(val.data)
    assert not ((a_train >= lo) & (a_train <= hi)).any()
    frac = float(((a_val >= lo) & (a_val <= hi)).float().mean())
    assert abs(frac - 0.1) < 0.03                       # pi/5 is a tenth of the circle
    assert 0.85 * 1200 < len(train) < 0.95 * 1200 and len(val) == 1200
    assert not torch.equal(train.data[:10], val.data[:10])
    with pytest.raises(ValueError, match="dimension >= 2"):
        ConcentricSphere(1, exclude_angles=(0.0, 1.0))


def test_shifted_sines():
    ds = ShiftedSines(2, shift=1.4, num_points_upper=100, num_points_lower=60, noise_scale=0.0, seed=0)
    assert len(ds) == 160 and int((ds.targets == 1).sum()) == 100
    x, y = ds.data[:, 0], ds.data[:, 1]
    assert x.abs().max() <= 1
    offset = y - torch.sin(math.pi * x)
    assert torch.allclose(offset, ds.targets[:, 0] * 0.7, atol=1e-5)
    assert ShiftedSines(1, num_points_upper=5, num_points_lower=5).data.shape == (10, 1)
    high = ShiftedSines(4, num_points_upper=5, num_points_lower=5)
    assert high.data.shape == (10, 4) and high.data[:, 2:].abs().max() <= 1
