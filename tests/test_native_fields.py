"""The library's vector fields evaluated natively inside the driver: same function, same gradients."""
import pytest
import torch

import anode_native as an
from anode_native.native_fields import native_form, python_fields, use_native_fields

F64 = torch.float64


def mlp(time_dependent=True, non_linearity="relu", augment_dim=1):
    torch.manual_seed(0)
    return an.ODEFunc(2, 16, augment_dim=augment_dim, time_dependent=time_dependent,
                      non_linearity=non_linearity).double()


def conv(time_dependent=True, non_linearity="softplus"):
    torch.manual_seed(0)
    return an.ConvODEFunc((1, 6, 6), 4, augment_dim=2, time_dependent=time_dependent,
                          non_linearity=non_linearity).double()


@pytest.mark.parametrize("make,shape", [
    (lambda: mlp(True, "relu"), (5, 3)),
    (lambda: mlp(False, "softplus"), (5, 3)),
    (lambda: mlp(True, "softplus", augment_dim=0), (5, 2)),
    (lambda: conv(True, "softplus"), (2, 3, 6, 6)),
    (lambda: conv(False, "relu"), (2, 3, 6, 6)),
])
def test_native_form_computes_the_module_forward(make, shape):
    field = make()
    native = native_form(field)
    assert native is not None
    y = torch.randn(shape, dtype=F64)
    t = torch.tensor(0.37, dtype=F64)
    torch.testing.assert_close(native(t, y), field(t, y), rtol=1e-14, atol=1e-14)


def test_subclass_with_its_own_forward_and_plain_callables_stay_in_python():
    class Scaled(an.ODEFunc):
        def forward(self, t, x):
            return 2 * super().forward(t, x)

    assert native_form(Scaled(2, 8)) is None
    assert native_form(lambda t, y: -y) is None
    field = an.ODEFunc(2, 8)
    field.non_linearity = torch.nn.GELU()  # not one of relu/softplus/tanh
    assert native_form(field) is None


def test_switch_forces_the_python_path():
    field = mlp()
    assert native_form(field) is not None
    with python_fields():
        assert native_form(field) is None
    assert native_form(field) is not None
    use_native_fields(False)
    try:
        assert native_form(field) is None
    finally:
        use_native_fields(True)


def _solve_and_grads(field, y0, native):
    y0 = y0.clone().requires_grad_(True)
    t = torch.linspace(0, 1, 3, dtype=F64)
    if native:
        out = an.odeint(field, y0, t, rtol=1e-8, atol=1e-8)
    else:
        with python_fields():
            out = an.odeint(field, y0, t, rtol=1e-8, atol=1e-8)
    loss = (out[1:] ** 2).sum()
    return out.detach(), torch.autograd.grad(loss, [y0, *field.parameters()])


@pytest.mark.parametrize("make,shape", [(lambda: mlp(True, "softplus"), (6, 3)),
                                        (lambda: mlp(False, "relu"), (6, 3)),
                                        (lambda: mlp(True, "tanh"), (6, 3)),
                                        (lambda: conv(True, "softplus"), (2, 3, 6, 6))])
def test_native_solve_and_direct_gradients_equal_the_python_path(make, shape):
    field = make()
    y0 = torch.randn(shape, dtype=F64)
    out_n, grads_n = _solve_and_grads(field, y0, native=True)
    out_p, grads_p = _solve_and_grads(field, y0, native=False)
    # Equal to rounding: the native MLP folds the time column into the bias (other summation order).
    torch.testing.assert_close(out_n, out_p, rtol=1e-12, atol=1e-13)
    for a, b in zip(grads_n, grads_p):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_modules_with_forward_hooks_take_the_python_path():
    calls = []
    field = mlp()
    handle = field.fc2.register_forward_pre_hook(lambda *args: calls.append(1))
    assert native_form(field) is None
    stats = an.SolverStats()
    an.odeint(field, torch.zeros(2, 3, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64), stats=stats)
    assert len(calls) == stats.nfe_forward > 0  # the hook ran once per evaluation
    handle.remove()
    assert native_form(field) is not None


def test_native_form_follows_parameter_replacement_and_keeps_modules_copyable():
    import copy
    import pickle

    field = mlp()
    first = native_form(field)
    assert native_form(field) is first  # reused while the layers hold the same parameters
    y = torch.randn(4, 3, dtype=F64)
    t = torch.tensor(0.2, dtype=F64)
    with torch.no_grad():
        field.fc2.weight.mul_(2.0)  # in place, as an optimizer step: the cached field sees it
    torch.testing.assert_close(native_form(field)(t, y), field(t, y))
    field.fc2.weight = torch.nn.Parameter(torch.randn(16, 16, dtype=F64))
    rebuilt = native_form(field)
    assert rebuilt is not first
    torch.testing.assert_close(rebuilt(t, y), field(t, y))
    clone = copy.deepcopy(field)
    pickle.loads(pickle.dumps(clone))
    torch.testing.assert_close(native_form(clone)(t, y), field(t, y))


@pytest.mark.parametrize("kwargs,match", [
    (dict(kinds=["dense"], activation="relu"), "unknown layer kind 'dense'"),
    (dict(kinds=["linear"], activation="gelu"), "unknown activation 'gelu'"),
    (dict(kinds=["linear", "linear"], activation="relu"), "must have the same non-zero length"),
])
def test_native_field_rejects_bad_layer_descriptions(kwargs, match):
    from anode_native import _C, errors

    w = torch.zeros(2, 2)
    with pytest.raises(errors.InvalidInputError, match=match):
        _C.NativeField(kwargs["kinds"], [w], [None], [0], [False], kwargs["activation"])
