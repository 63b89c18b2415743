"""Experiment configs: loading, defaults and validation with messages that name the key.

A config (YAML) looks like::

    name: sphere2d
    seed: 0
    repeats: 3
    dataset: {name: concentric_sphere, dim: 2, num_points_inner: 500, num_points_outer: 1500}
    val_dataset: {seed: 1}            # optional: overrides of `dataset` for a validation set
    models:                           # label -> model ({name: ..., params}); or one `model:`
      NODE:  {name: odenet, hidden_dim: 32, time_dependent: true}   # may hold `dataset:` overrides
      ANODE: {name: odenet, hidden_dim: 32, time_dependent: true, augment_dim: 1}
    training: {epochs: 10, batch_size: 64, lr: 0.001, loss: huber}
    figures: [losses, nfe, nfe_vs_loss]
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Union

import yaml

from ..nn.odefunc import NON_LINEARITIES
from .registry import DATASETS, MODELS
from .trainer import LOSSES

TOP_KEYS = ("name", "description", "seed", "device", "repeats", "dataset", "val_dataset",
            "model", "models", "training", "figures", "figure_options")
TRAINING_DEFAULTS: Dict[str, Any] = {
    "epochs": 10, "batch_size": 64, "lr": 1e-3, "loss": None, "eval_every": 0,
    "checkpoint_every": 0, "eval_batch_size": 1024, "weight_decay": 0.0,
    "shuffle": True,        # reshuffle the training set every epoch (False: file order)
    "dtype": "float32",     # parameters and inputs; float64 for tight comparisons in tests
    "eval_train": True,     # after training, evaluate on the whole training set as well
}
DTYPES = ("float32", "float64")
# Figure names a config may request; the functions live in training/figures.py.
FIGURE_NAMES = ("losses", "nfe", "nfe_vs_loss", "trajectories_1d", "flows_2d",
                "feature_evolution", "generalization", "accuracy", "accuracy_vs_nfe")


class ConfigError(ValueError):
    """A config value is missing, unknown or not allowed; the message names the key."""


def _allowed(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))


def _check_keys(section: dict, allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    for key in section:
        if key not in allowed:
            raise ConfigError(f"config key '{where}{key}' is not recognised; allowed keys: {_allowed(allowed)}")


def _positive_int(value: Any, key: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"config key '{key}' must be an integer >= {minimum}; got {value!r}")
    return value


def check_device(device: str, key: str = "device") -> str:
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ConfigError(f"config key '{key}' must be one of: cpu, cuda, cuda:N; got {device!r}")
    if device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise ConfigError(f"config key '{key}' (or --device) is {device!r} but torch sees no CUDA "
                              "device on this machine; use cpu")
        from .. import _C
        if not getattr(_C, "has_cuda", False):
            raise ConfigError(f"config key '{key}' (or --device) is {device!r} but anode_native was "
                              "built without CUDA kernels; rebuild with FORCE_CUDA=1 where nvcc is found")
    return device


def _check_dataset(section: Any, key: str) -> dict:
    if not isinstance(section, dict) or "name" not in section:
        raise ConfigError(f"config key '{key}' must be a mapping with a 'name'; allowed names: {_allowed(DATASETS)}")
    name = section["name"]
    if name not in DATASETS:
        raise ConfigError(f"config key '{key}.name': {name!r} is not a dataset; allowed values: {_allowed(DATASETS)}")
    _check_keys({k: v for k, v in section.items() if k != "name"}, DATASETS[name].params, f"{key}.")
    return dict(section)


def _check_model(section: Any, key: str) -> dict:
    if not isinstance(section, dict) or "name" not in section:
        raise ConfigError(f"config key '{key}' must be a mapping with a 'name'; allowed names: {_allowed(MODELS)}")
    name = section["name"]
    if name not in MODELS:
        raise ConfigError(f"config key '{key}.name': {name!r} is not a model; allowed values: {_allowed(MODELS)}")
    _check_keys({k: v for k, v in section.items() if k not in ("name", "dataset")},
                MODELS[name].params, f"{key}.")
    if "non_linearity" in section and section["non_linearity"] not in NON_LINEARITIES:
        raise ConfigError(f"config key '{key}.non_linearity': {section['non_linearity']!r} is not "
                          f"allowed; allowed values: {', '.join(NON_LINEARITIES)}")
    if "method" in section and section["method"] not in ("dopri5", "euler", "midpoint", "rk4"):
        raise ConfigError(f"config key '{key}.method': {section['method']!r} is not allowed; "
                          "allowed values: dopri5, euler, midpoint, rk4")
    return dict(section)


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge (override wins); `None` in override removes nothing, it sets None."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate_config(raw: dict) -> dict:
    """Check `raw` and return a normalized copy (defaults filled, `model` turned into `models`)."""
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a mapping of keys to values")
    _check_keys(raw, TOP_KEYS, "")
    cfg = copy.deepcopy(raw)
    cfg.setdefault("name", "run")
    cfg["seed"] = _positive_int(cfg.get("seed", 0), "seed", minimum=0)
    cfg["repeats"] = _positive_int(cfg.get("repeats", 1), "repeats")
    cfg["device"] = check_device(cfg.get("device", "cpu"))
    if "dataset" not in cfg:
        raise ConfigError(f"config key 'dataset' is required; allowed names: {_allowed(DATASETS)}")
    cfg["dataset"] = _check_dataset(cfg["dataset"], "dataset")
    if cfg.get("val_dataset") is not None:
        if not isinstance(cfg["val_dataset"], dict):
            raise ConfigError("config key 'val_dataset' must be a mapping of dataset overrides")
        merged = merge(cfg["dataset"], cfg["val_dataset"])
        _check_dataset(merged, "val_dataset")
    if ("model" in cfg) == ("models" in cfg):
        raise ConfigError("config needs exactly one of the keys 'model' (one model) or 'models' "
                          f"(label -> model); allowed model names: {_allowed(MODELS)}")
    if "model" in cfg:
        model = _check_model(cfg.pop("model"), "model")
        cfg["models"] = {model["name"]: model}
    else:
        if not isinstance(cfg["models"], dict) or not cfg["models"]:
            raise ConfigError("config key 'models' must be a non-empty mapping of label -> model")
        cfg["models"] = {str(label): _check_model(m, f"models.{label}") for label, m in cfg["models"].items()}
    for label, model in cfg["models"].items():
        if model.get("dataset") is not None:   # per-model overrides of the dataset section
            if not isinstance(model["dataset"], dict) or "name" in model["dataset"]:
                raise ConfigError(f"config key 'models.{label}.dataset' must be a mapping of "
                                  "overrides of 'dataset' (without 'name')")
            _check_dataset(merge(cfg["dataset"], model["dataset"]), f"models.{label}.dataset")
    training = cfg.get("training") or {}
    if not isinstance(training, dict):
        raise ConfigError("config key 'training' must be a mapping")
    _check_keys(training, TRAINING_DEFAULTS, "training.")
    training = {**TRAINING_DEFAULTS, **training}
    task = DATASETS[cfg["dataset"]["name"]].task
    if training["loss"] is None:
        training["loss"] = "cross_entropy" if task == "classification" else "huber"
    if training["loss"] not in LOSSES:
        raise ConfigError(f"config key 'training.loss': {training['loss']!r} is not allowed; "
                          f"allowed values: {_allowed(LOSSES)}")
    for key in ("epochs", "batch_size", "eval_batch_size"):
        training[key] = _positive_int(training[key], f"training.{key}")
    for key in ("eval_every", "checkpoint_every"):
        training[key] = _positive_int(training[key], f"training.{key}", minimum=0)
    for key in ("lr", "weight_decay"):
        value = training[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"config key 'training.{key}' must be a number >= 0; got {value!r}")
        training[key] = float(value)
    for key in ("shuffle", "eval_train"):
        if not isinstance(training[key], bool):
            raise ConfigError(f"config key 'training.{key}' must be true or false; got {training[key]!r}")
    if training["dtype"] not in DTYPES:
        raise ConfigError(f"config key 'training.dtype': {training['dtype']!r} is not allowed; "
                          f"allowed values: {_allowed(DTYPES)}")
    cfg["training"] = training
    figures = cfg.get("figures") or []
    if not isinstance(figures, list):
        raise ConfigError(f"config key 'figures' must be a list; allowed values: {_allowed(FIGURE_NAMES)}")
    for fig in figures:
        if fig not in FIGURE_NAMES:
            raise ConfigError(f"config key 'figures': {fig!r} is not allowed; allowed values: {_allowed(FIGURE_NAMES)}")
    cfg["figures"] = figures
    cfg["figure_options"] = dict(cfg.get("figure_options") or {})
    return cfg


def load_config(source: Union[str, Path, dict], overrides: Optional[dict] = None) -> dict:
    """Read a YAML file (or take a dict), apply `overrides` (merged), validate."""
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if overrides:
        raw = merge(raw or {}, overrides)
    return validate_config(raw)
