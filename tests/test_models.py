"""Models: shapes, augmentation, parameter counts against the paper, NFE from the engine."""
import pytest
import torch
from torch import nn

from anode_native.nn import (ConvODEFunc, ConvODENet, ODEBlock, ODEFunc, ODENet, ResNet,
                             augment, count_parameters)
from anode_native.stats import SolverStats


class Counting(nn.Module):
    """Wraps a vector field and counts its calls (to check the engine's statistics)."""

    def __init__(self, func):
        super().__init__()
        self.func = func
        self.augment_dim = func.augment_dim
        self.calls = 0

    def forward(self, t, x):
        self.calls += 1
        return self.func(t, x)


class Zero(nn.Module):
    def __init__(self, augment_dim):
        super().__init__()
        self.augment_dim = augment_dim

    def forward(self, t, x):
        return torch.zeros_like(x)


@pytest.mark.parametrize("augment_dim", [0, 2])
@pytest.mark.parametrize("time_dependent", [False, True])
def test_odefunc_shapes_and_layers(augment_dim, time_dependent):
    f = ODEFunc(3, 16, augment_dim, time_dependent)
    x = torch.randn(5, 3 + augment_dim)
    assert f(torch.tensor(0.3), x).shape == (5, 3 + augment_dim)
    assert f.fc1.in_features == 3 + augment_dim + int(time_dependent)
    assert f.fc3.out_features == 3 + augment_dim


def test_time_enters_only_when_time_dependent():
    torch.manual_seed(0)
    x = torch.randn(4, 2)
    f = ODEFunc(2, 8, time_dependent=True)
    assert not torch.allclose(f(torch.tensor(0.0), x), f(torch.tensor(1.0), x))
    g = ODEFunc(2, 8, time_dependent=False)
    assert torch.equal(g(torch.tensor(0.0), x), g(1.0, x))
    # time is the first input column: fc1's first weight column multiplies t
    with torch.no_grad():
        f.fc1.weight[:, 0] = 0
    assert torch.allclose(f(torch.tensor(0.0), x), f(torch.tensor(1.0), x))


def test_non_linearity():
    assert isinstance(ODEFunc(2, 4, non_linearity="softplus").non_linearity, nn.Softplus)
    assert isinstance(ODEFunc(2, 4).non_linearity, nn.ReLU)
    assert isinstance(ODEFunc(2, 4, non_linearity="tanh").non_linearity, nn.Tanh)
    with pytest.raises(ValueError, match="relu, softplus, tanh"):
        ODEFunc(2, 4, non_linearity="gelu")


@pytest.mark.parametrize("time_dependent", [False, True])
def test_conv_odefunc_shapes(time_dependent):
    f = ConvODEFunc((3, 8, 8), 12, augment_dim=2, time_dependent=time_dependent)
    x = torch.randn(2, 5, 8, 8)
    assert f(torch.tensor(0.5), x).shape == x.shape
    assert f.conv1.in_channels == 5 + int(time_dependent)
    assert f.conv2.kernel_size == (3, 3) and f.conv2.padding == (1, 1)
    assert f.conv3.kernel_size == (1, 1) and f.conv3.out_channels == 5


def test_parameter_counts_match_the_paper_appendix():
    # MNIST: NODE with 92 filters 84,395; ANODE with 64 filters and 5 augmented channels 84,816
    assert count_parameters(ConvODENet((1, 28, 28), 92, output_dim=10)) == 84395
    assert count_parameters(ConvODENet((1, 28, 28), 64, output_dim=10, augment_dim=5)) == 84816
    # toy 2-D ANODE (hidden 32, time dependent, 1 augmented dimension) and ResNet (5 blocks)
    assert count_parameters(ODENet(2, 32, augment_dim=1, time_dependent=True)) == 160 + 1056 + 99 + 4
    assert count_parameters(ResNet(2, 32, 5)) == 5 * (2 * 32 + 32 + 32 * 2 + 2) + 3


def test_augment_appends_zeros_after_the_data():
    x = torch.randn(4, 2)
    assert torch.equal(augment(x, 3), torch.cat([x, torch.zeros(4, 3)], 1))
    img = torch.randn(2, 1, 5, 5)
    out = augment(img, 2)
    assert out.shape == (2, 3, 5, 5) and torch.equal(out[:, :1], img) and not out[:, 1:].any()
    assert augment(x, 0) is x


@pytest.mark.parametrize("shape", [(6, 2), (2, 1, 4, 4)])
def test_odeblock_with_zero_dynamics_returns_the_augmented_input(shape):
    x = torch.randn(*shape)
    out = ODEBlock(Zero(augment_dim=2))(x)
    assert torch.allclose(out, augment(x, 2))


def test_odeblock_trajectory_and_final_state_agree():
    torch.manual_seed(0)
    block = ODEBlock(ODEFunc(2, 16, augment_dim=1, time_dependent=True))
    x = torch.randn(7, 2)
    traj = block.trajectory(x, 5)
    assert traj.shape == (5, 7, 3)
    assert torch.allclose(traj[0], augment(x, 1))
    assert torch.allclose(traj[-1], block(x), atol=1e-3)


def test_nfe_comes_from_the_engine_statistics():
    torch.manual_seed(0)
    func = Counting(ODEFunc(2, 16, augment_dim=1, time_dependent=True))
    block = ODEBlock(func, tol=1e-3)
    assert block.nfe_forward == 0 and block.last_stats is None
    out = block(torch.randn(8, 2))
    assert isinstance(block.last_stats, SolverStats)
    assert block.nfe_forward == func.calls > 0
    assert block.nfe_backward == 0                      # filled by backward
    out.pow(2).sum().backward()
    assert block.nfe_backward > 0
    first = block.last_stats
    block(torch.randn(8, 2))
    assert block.last_stats is not first                # a fresh SolverStats per call


def test_tighter_tolerance_costs_more_evaluations():
    torch.manual_seed(0)
    func = ODEFunc(2, 32, time_dependent=True)
    x = torch.randn(16, 2) * 2
    loose, tight = ODEBlock(func, tol=1e-2), ODEBlock(func, tol=1e-6)
    loose(x), tight(x)
    assert tight.nfe_forward > loose.nfe_forward


def test_fixed_grid_method():
    block = ODEBlock(ODEFunc(2, 8), method="rk4", options={"step_size": 0.25})
    block(torch.randn(3, 2))
    assert block.nfe_forward == 16
    with pytest.raises(ValueError, match="dopri5"):
        ODEBlock(ODEFunc(2, 8), method="heun")


def test_adjoint_gradients_match_direct_backprop():
    # softplus: with ReLU's kinks the two gradients differ by ~1e-2 (torchdiffeq's too)
    torch.manual_seed(0)
    kw = dict(augment_dim=1, time_dependent=True, non_linearity="softplus", tol=1e-7)
    net = ODENet(2, 16, **kw).double()
    adj = ODENet(2, 16, adjoint=True, **kw).double()
    adj.load_state_dict(net.state_dict())
    x = torch.randn(5, 2, dtype=torch.float64)
    for model in (net, adj):
        model(x).pow(2).sum().backward()
    assert adj.nfe_backward > 0
    for p, q in zip(net.parameters(), adj.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-3, atol=1e-4)


def test_odenet_is_block_then_linear_readout():
    torch.manual_seed(0)
    net = ODENet(2, 16, output_dim=3, augment_dim=2)
    x = torch.randn(5, 2)
    feats, pred = net(x, return_features=True)
    assert feats.shape == (5, 4) and pred.shape == (5, 3)
    assert torch.allclose(pred, net.linear_layer(feats))
    assert net.nfe_forward > 0 and net.augment_dim == 2


def test_odenet_without_readout_predicts_the_first_coordinates():
    net = ODENet(1, 8, augment_dim=1, linear_readout=False)
    feats, pred = net(torch.randn(4, 1), return_features=True)
    assert net.linear_layer is None and torch.equal(pred, feats[:, :1])
    with pytest.raises(ValueError, match="output_dim"):
        ODENet(1, 8, output_dim=3, linear_readout=False)


def test_convodenet_shapes_and_gradients():
    net = ConvODENet((1, 6, 6), 4, output_dim=10, augment_dim=2, time_dependent=True)
    x = torch.randn(3, 1, 6, 6)
    feats, pred = net(x, return_features=True)
    assert feats.shape == (3, 3, 6, 6) and pred.shape == (3, 10)
    pred.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_resnet():
    torch.manual_seed(0)
    net = ResNet(2, 16, num_layers=3)
    x = torch.randn(5, 2)
    feats, pred = net(x, return_features=True)
    assert feats.shape == (5, 2) and pred.shape == (5, 1) and len(net.residual_blocks) == 3
    block = net.residual_blocks[0]
    assert torch.allclose(block(x), x + block.mlp(x))
    assert net.nfe_forward is None
    img = ResNet(16, 8, 2, output_dim=10, is_img=True)
    assert img(torch.randn(3, 1, 4, 4)).shape == (3, 10)
