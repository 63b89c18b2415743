"""odeint_adjoint's error paths: bad arguments, and failures of the backward solve, which are the
forward's typed errors with messages naming the adjoint."""
import pytest
import torch

import anode_native as an
from anode_native import errors

F64 = torch.float64
T01 = torch.tensor([0.0, 1.0], dtype=F64)


def backward_only(good, bad):
    """A field that is `good` in the forward solve (no grad) and `bad` in the backward one (grad on)."""
    return lambda t, y: bad(t, y) if torch.is_grad_enabled() else good(t, y)


def run_backward(func, **kw):
    y0 = torch.full((2,), 2.0, dtype=F64, requires_grad=True)
    ys = an.odeint_adjoint(func, y0, T01, adjoint_params=(), **kw)
    ys[-1].sum().backward()
    return y0.grad


def test_step_size_underflow_in_the_adjoint():
    # Backward, dy/dt = -y^2 from y(1) = 2 is y = 1 / (t - 0.5): it blows up at t = 0.5.
    func = backward_only(lambda t, y: torch.zeros_like(y), lambda t, y: -y ** 2)
    with pytest.raises(errors.StepSizeUnderflowError, match=r"step size underflow in the adjoint solve at t = 0\.49"):
        run_backward(func)


def test_max_num_steps_in_the_adjoint():
    with pytest.raises(errors.MaxNumStepsError, match="max_num_steps exceeded in the adjoint solve: 2 steps"):
        run_backward(lambda t, y: -y, rtol=1e-9, atol=1e-9, adjoint_options={"max_num_steps": 2})


def test_non_finite_derivative_in_the_adjoint():
    func = backward_only(lambda t, y: -y, lambda t, y: torch.where(t < 0.5, torch.nan, 1.0) * y)
    with pytest.raises(errors.NonFiniteError, match="adjoint solve"):
        run_backward(func)


def test_non_finite_loss_gradient_is_reported():
    y0 = torch.ones(2, dtype=F64, requires_grad=True)
    ys = an.odeint_adjoint(lambda t, y: -y, y0, T01, adjoint_params=())
    with pytest.raises(errors.NonFiniteError, match="at the start of the adjoint solve"):
        (ys[-1] * torch.tensor([1.0, torch.inf], dtype=F64)).sum().backward()


def test_wrong_output_shape_in_the_adjoint():
    func = backward_only(lambda t, y: -y, lambda t, y: -y[:1])
    with pytest.raises(errors.FuncOutputError, match=r"func returned shape \[1\].*\(adjoint solve, t = 1"):
        run_backward(func)


def test_non_tensor_output_in_the_adjoint():
    func = backward_only(lambda t, y: -y, lambda t, y: [1.0, 2.0])
    with pytest.raises(errors.FuncOutputError, match=r"must return a torch.Tensor, got list \(adjoint solve"):
        run_backward(func)


def test_exception_raised_by_func_in_the_backward_pass_propagates():
    def func(t, y):
        if torch.is_grad_enabled():
            raise KeyError("raised inside func")
        return -y
    with pytest.raises(KeyError, match="raised inside func"):
        run_backward(func)


def test_the_process_survives_and_solves_again_after_errors():
    test_step_size_underflow_in_the_adjoint()
    grad = run_backward(lambda t, y: -y, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, torch.full((2,), torch.e ** -1, dtype=F64), rtol=1e-8, atol=0)


class Field(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(-1.0, dtype=F64))

    def forward(self, t, y):
        return self.w * y


@pytest.mark.parametrize("kwargs,match", [
    ({"adjoint_options": {"norm": lambda x: x.abs().max()}}, r"adjoint_options\['norm'\] must be one of"),
    ({"adjoint_options": {"norm": "linf"}}, r"adjoint_options\['norm'\] must be one of"),
    ({"adjoint_method": "rk45"}, "unknown adjoint_method 'rk45'"),
    ({"adjoint_options": {"bogus": 1}}, r"unknown option\(s\) \['bogus'\]"),
    ({"options": {"first_step": 0.1}, "adjoint_method": "rk4"}, "pass adjoint_options as well"),
    ({"adjoint_rtol": -1.0}, "adjoint_rtol must be finite and non-negative"),
    ({"adjoint_atol": torch.ones(5)}, "adjoint_atol must be a number or have one value per state element"),
    ({"adjoint_params": [1.0]}, "adjoint_params must hold tensors"),
])
def test_bad_adjoint_arguments(kwargs, match):
    with pytest.raises(errors.InvalidInputError, match=match):
        an.odeint_adjoint(Field(), torch.ones(2, dtype=F64), T01, **kwargs)


def test_plain_callable_needs_explicit_adjoint_params():
    with pytest.raises(errors.InvalidInputError, match=r"nn.Module .*adjoint_params=\(\) if func has none"):
        an.odeint_adjoint(lambda t, y: -y, torch.ones(2), T01)
    with pytest.raises(ValueError):  # torchdiffeq raises ValueError here: still caught by the same except
        an.odeint_adjoint(lambda t, y: -y, torch.ones(2), T01)


def test_forward_errors_are_the_forward_ones():
    with pytest.raises(errors.InvalidInputError, match="strictly increasing"):
        an.odeint_adjoint(Field(), torch.ones(2, dtype=F64), torch.tensor([0.0, 0.0]))
    with pytest.raises(errors.MaxNumStepsError, match="forward solve"):
        an.odeint_adjoint(Field(), torch.ones(2, dtype=F64), T01, rtol=1e-12, atol=1e-12,
                          options={"max_num_steps": 3})
