"""Every bad input and solver failure raises a typed exception whose message says what and where."""
import math

import pytest
import torch

import anode_native as an
from anode_native import errors

T01 = torch.tensor([0.0, 1.0])


def decay(t, y):
    return -y


@pytest.mark.parametrize("t,match", [
    (torch.tensor([0.0, 1.0, 0.5]), r"strictly increasing or strictly decreasing, but t\[1\] = 1.0 and t\[2\] = 0.5"),
    (torch.tensor([0.0, 0.0]), "strictly"),
    (torch.tensor([0.0, math.nan]), r"t must be finite, but t\[1\] = nan"),
    (torch.tensor([0.0, math.inf]), r"t\[1\] = inf"),
    (torch.tensor([0, 1]), "t must be floating point"),
    (torch.zeros(2, 2), "1-D"),
    ([0.0, 1.0], "torch.Tensor"),
])
def test_bad_times(t, match):
    with pytest.raises(errors.InvalidInputError, match=match):
        an.odeint(decay, torch.ones(2), t)


def test_integer_state_is_rejected():
    with pytest.raises(errors.InvalidInputError, match="y0 must be floating point, got torch.int64"):
        an.odeint(decay, torch.ones(2, dtype=torch.long), T01)


def test_invalid_errors_are_value_errors_too():
    with pytest.raises(ValueError):
        an.odeint(decay, torch.ones(2), torch.tensor([1.0, 1.0]))


@pytest.mark.parametrize("func,match", [
    (lambda t, y: torch.ones(3), r"func returned shape \[3\] but the state has shape \[2\]"),
    (lambda t, y: y.double(), "func returned dtype Double but the state has dtype Float"),
    (lambda t, y: torch.empty(2, device="meta"), "func returned a tensor on meta but the state is on cpu"),
    (lambda t, y: 3.0, "func must return a torch.Tensor, got float"),
])
def test_bad_func_output(func, match):
    with pytest.raises(errors.FuncOutputError, match=match):
        an.odeint(func, torch.ones(2), T01)


def test_nan_in_derivative_names_time_and_step():
    def func(t, y):
        return -y if t < 0.5 else torch.full_like(y, math.nan)

    with pytest.raises(errors.NonFiniteError, match=r"derivative .* forward solve at t = 0\.\d+ \(dt = .*, step \d+\)"):
        an.odeint(func, torch.ones(2, dtype=torch.float64), T01.double())


def test_nan_in_initial_state():
    with pytest.raises(errors.NonFiniteError, match="in the state at the start of the forward solve"):
        an.odeint(decay, torch.tensor([1.0, math.nan]), T01)


def test_blow_up_is_a_step_size_underflow_or_non_finite_error():
    # y' = y^2 from y(0) = 1 blows up at t = 1: the solver must stop with a typed error, not hang.
    with pytest.raises((errors.StepSizeUnderflowError, errors.NonFiniteError), match=r"forward solve at t = (0\.99|1\.0)"):
        an.odeint(lambda t, y: y ** 2, torch.ones(1, dtype=torch.float64), torch.tensor([0.0, 2.0], dtype=torch.float64))


def test_max_num_steps_counts_per_solve():
    t = torch.linspace(0, 10, 11, dtype=torch.float64)
    with pytest.raises(errors.MaxNumStepsError, match=r"max_num_steps exceeded in the forward solve: 5 steps taken, reached t = "):
        an.odeint(lambda t, y: torch.stack([y[1], -y[0]]), torch.tensor([1.0, 0.0], dtype=torch.float64), t,
                  rtol=1e-8, atol=1e-8, options={"max_num_steps": 5})


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "dopri8"}, "unknown method 'dopri8'"),
    ({"options": {"stepsize": 0.1}, "method": "rk4"}, r"unknown option\(s\) \['stepsize'\] for method 'rk4'"),
    ({"options": {"step_size": -1.0}, "method": "euler"}, "step_size must be a positive number"),
    ({"rtol": -1e-3}, "rtol must be finite and non-negative"),
    ({"atol": torch.ones(3)}, "atol must be a number or have one value per state element"),
    ({"options": {"max_num_steps": 0}}, "max_num_steps must be a positive integer"),
    ({"options": {"min_step": 1.0, "max_step": 0.1}}, "min_step <= max_step"),
    ({"options": {"step_t": [0.5], "jump_t": [0.5]}}, "must not share any time"),
    ({"options": {"dtype": torch.int32}}, "time dtype"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(errors.InvalidInputError, match=match):
        an.odeint(decay, torch.ones(2), T01, **kwargs)


def test_exception_raised_inside_func_propagates_unchanged():
    class Boom(Exception):
        pass

    def func(t, y):
        raise Boom("inside func")

    with pytest.raises(Boom, match="inside func"):
        an.odeint(func, torch.ones(2), T01)


def test_all_solver_errors_share_a_base_class():
    for cls in (errors.InvalidInputError, errors.FuncOutputError, errors.NonFiniteError,
                errors.StepSizeUnderflowError, errors.MaxNumStepsError):
        assert issubclass(cls, an.SolverError)
