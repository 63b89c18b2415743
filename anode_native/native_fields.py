"""Native forms of the library's vector fields: evaluated inside the C++ driver, no Python per call.

`ODEFunc` and `ConvODEFunc` (and subclasses that keep their `forward`) are recognised and turned
into an `anode_native._C.NativeField` that runs the same layers with ATen calls on the module's
own parameter tensors, so gradients (direct and adjoint) reach the module's parameters. Any other
callable is called through Python as usual.

Switch it off for debugging with ``anode_native.use_native_fields(False)`` (or the context manager
``anode_native.python_fields()``), or the environment variable ``ANODE_NATIVE_FIELDS=0``.
"""
from __future__ import annotations

import contextlib
import os
import threading
import weakref

from torch import nn

from . import _C

_state = threading.local()
# module -> (layer key, NativeField); kept outside the module so deepcopy and pickling are unaffected.
_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def native_fields_enabled() -> bool:
    enabled = getattr(_state, "enabled", None)
    if enabled is None:
        return os.environ.get("ANODE_NATIVE_FIELDS", "1") != "0"
    return enabled


def use_native_fields(enabled: bool) -> None:
    """Turn the native evaluation of the library's vector fields on or off (this thread)."""
    _state.enabled = bool(enabled)


@contextlib.contextmanager
def python_fields():
    """Within this block, every vector field is called through its Python `forward`."""
    previous = getattr(_state, "enabled", None)
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = previous


def _activation(module: nn.Module):
    if type(module) is nn.ReLU:
        return "relu"
    if type(module) is nn.Tanh:
        return "tanh"
    if type(module) is nn.Softplus and module.beta == 1 and module.threshold == 20:
        return "softplus"
    return None


def _linear(layer, time_input):
    if type(layer) is not nn.Linear:
        return None
    return ("linear", layer.weight, layer.bias, 0, time_input)


def _conv(layer, time_input):
    if not isinstance(layer, nn.Conv2d) or layer.padding_mode != "zeros":
        return None
    if layer.stride != (1, 1) or layer.dilation != (1, 1) or layer.groups != 1:
        return None
    if isinstance(layer.padding, str) or layer.padding[0] != layer.padding[1]:
        return None
    return ("conv2d", layer.weight, layer.bias, int(layer.padding[0]), time_input)


def _layers(func):
    """The (kind, weight, bias, padding, time_input) layers of one of our fields, or None."""
    from .nn.conv import Conv2dTime, ConvODEFunc
    from .nn.odefunc import ODEFunc

    if isinstance(func, ODEFunc) and type(func).forward is ODEFunc.forward:
        layers = [_linear(func.fc1, func.time_dependent), _linear(func.fc2, False), _linear(func.fc3, False)]
    elif isinstance(func, ConvODEFunc) and type(func).forward is ConvODEFunc.forward:
        convs = (func.conv1, func.conv2, func.conv3)
        expected = Conv2dTime if func.time_dependent else nn.Conv2d
        if any(type(c) is not expected for c in convs):
            return None
        layers = [_conv(c, func.time_dependent) for c in convs]
    else:
        return None
    return None if any(layer is None for layer in layers) else layers


def _has_hooks(module: nn.Module) -> bool:
    """Forward hooks are Python code the native path would skip, so such modules stay in Python."""
    from torch.nn.modules import module as module_globals

    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def native_form(func):
    """A `_C.NativeField` computing `func(t, y)`, or None when `func` must be called through Python."""
    if not native_fields_enabled() or not isinstance(func, nn.Module) or _has_hooks(func):
        return None
    layers = _layers(func)
    activation = _activation(getattr(func, "non_linearity", None))
    if layers is None or activation is None:
        return None
    # The field holds the parameter tensors themselves (in-place optimizer steps, `.data = ...` and
    # `.to()` keep them), so it is rebuilt only when a layer is given a different parameter object.
    key = (activation, tuple((kind, id(w), id(b), pad, ti) for kind, w, b, pad, ti in layers))
    cached = _cache.get(func)
    if cached is not None and cached[0] == key:
        return cached[1]
    kinds, weights, biases, paddings, time_inputs = (list(column) for column in zip(*layers))
    field = _C.NativeField(kinds, weights, biases, paddings, time_inputs, activation)
    _cache[func] = (key, field)
    return field
