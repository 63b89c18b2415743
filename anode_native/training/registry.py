"""Registries of datasets and models selectable by name from config files.

Others extend them: `register_dataset("mnist", factory, task="classification", num_classes=10)`
and `register_model("mymodel", factory)`. A dataset factory takes keyword parameters (those of
the config's `dataset:` section, `seed` included) and returns a torch Dataset of (input, target)
pairs. A model factory is called as `factory(input_shape, output_dim, **params)`.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Callable, Dict, Optional, Sequence, Tuple

from torch import nn

from ..data.toy import ConcentricSphere, Data1D, ShiftedSines
from ..nn import ConvODENet, ODENet, ResNet


@dataclasses.dataclass
class DatasetEntry:
    factory: Callable
    task: str = "regression"            # "regression" (Huber on +-1 targets) or "classification"
    num_classes: Optional[int] = None   # classification only
    params: Tuple[str, ...] = ()        # allowed config keys


@dataclasses.dataclass
class ModelEntry:
    factory: Callable                   # factory(input_shape, output_dim, **params)
    params: Tuple[str, ...] = ()        # allowed config keys


DATASETS: Dict[str, DatasetEntry] = {}
MODELS: Dict[str, ModelEntry] = {}


def _keyword_params(fn: Callable, skip: Sequence[str] = ()) -> Tuple[str, ...]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    names = []
    for name, p in inspect.signature(target).parameters.items():
        if name in ("self", *skip) or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        names.append(name)
    return tuple(names)


def register_dataset(name: str, factory: Callable, task: str = "regression",
                     num_classes: Optional[int] = None, params: Optional[Sequence[str]] = None) -> None:
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification'; got {task!r}")
    DATASETS[name] = DatasetEntry(factory, task, num_classes,
                                  tuple(params) if params is not None else _keyword_params(factory))


def register_model(name: str, factory: Callable, params: Optional[Sequence[str]] = None) -> None:
    allowed = tuple(params) if params is not None else _keyword_params(
        factory, skip=("input_shape", "output_dim"))
    MODELS[name] = ModelEntry(factory, allowed)


def _odenet(input_shape, output_dim, hidden_dim=32, augment_dim=0, time_dependent=False,
            non_linearity="relu", tol=1e-3, adjoint=False, method="dopri5", max_num_steps=1000,
            linear_readout=True) -> nn.Module:
    if len(input_shape) != 1:
        raise ValueError(f"odenet takes vector data; the dataset gives shape {tuple(input_shape)} "
                         "(use convodenet for images)")
    return ODENet(input_shape[0], hidden_dim, output_dim, augment_dim, time_dependent,
                  non_linearity, tol, adjoint, method, max_num_steps, linear_readout)


def _convodenet(input_shape, output_dim, num_filters=32, augment_dim=0, time_dependent=False,
                non_linearity="relu", tol=1e-3, adjoint=False, method="dopri5",
                max_num_steps=1000) -> nn.Module:
    if len(input_shape) != 3:
        raise ValueError(f"convodenet takes images (C, H, W); the dataset gives shape {tuple(input_shape)}")
    return ConvODENet(input_shape, num_filters, output_dim, augment_dim, time_dependent,
                      non_linearity, tol, adjoint, method, max_num_steps)


def _resnet(input_shape, output_dim, hidden_dim=32, num_layers=5) -> nn.Module:
    return ResNet(math.prod(input_shape), hidden_dim, num_layers, output_dim,
                  is_img=len(input_shape) > 1)


register_dataset("data1d", Data1D)
register_dataset("concentric_sphere", ConcentricSphere)
register_dataset("shifted_sines", ShiftedSines)
register_model("odenet", _odenet)
register_model("convodenet", _convodenet)
register_model("resnet", _resnet)


def _register_image_datasets() -> None:
    """MNIST, Fashion-MNIST, CIFAR-10, SVHN and scikit-learn's digits (data/images.py)."""
    from ..data.images import IMAGE_SPECS, image_dataset_factory
    for name, spec in IMAGE_SPECS.items():
        register_dataset(name, image_dataset_factory(name), task="classification",
                         num_classes=spec.num_classes)


_register_image_datasets()
