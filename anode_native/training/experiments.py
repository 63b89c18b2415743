"""The paper's toy experiments, shipped as YAML configs in anode_native/configs/."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import yaml

from .checkpoint import atomic_write_text
from .config import ConfigError, load_config
from .distributed import SINGLE, DistContext
from .figures import FigureMaker, describe_figures
from .runner import ExperimentResult, run_config, summary_markdown


def _config_files() -> Dict[str, object]:
    root = resources.files("anode_native.configs")
    return {entry.name[: -len(".yaml")]: entry for entry in root.iterdir()
            if entry.name.endswith(".yaml")}


def list_experiments() -> Dict[str, str]:
    """name -> one-line description of every packaged experiment config."""
    out = {}
    for name, entry in sorted(_config_files().items()):
        raw = yaml.safe_load(entry.read_text()) or {}
        out[name] = " ".join(str(raw.get("description", "")).split())
    return out


def experiment_config(name: str, overrides: Optional[dict] = None) -> dict:
    """The validated packaged config `name`, with `overrides` merged in."""
    files = _config_files()
    if name not in files:
        raise ConfigError(f"unknown experiment {name!r}; allowed values: {', '.join(sorted(files))}")
    raw = yaml.safe_load(files[name].read_text())
    return load_config(raw, overrides)


def run_experiment(config: dict, out_dir, resume: bool = False, progress: Optional[bool] = None,
                   log: Callable[[str], None] = print, dist: DistContext = SINGLE
                   ) -> Tuple[ExperimentResult, List[Path]]:
    """Train a config, draw its figures, and write summary.md (table, failures, figure links).
    Under DDP every rank trains; rank 0 alone logs, draws and writes."""
    out_dir = Path(out_dir)
    figures = FigureMaker(config, log=log)
    if dist.is_main:
        log(f"{config['name']}: {len(config['models'])} model(s) x {config['repeats']} repeat(s), "
            f"{config['training']['epochs']} epochs -> {out_dir}")
    result = run_config(config, out_dir, resume=resume, progress=progress, log=log,
                        callbacks_for=figures.callbacks_for, dist=dist)
    if not dist.is_main:
        return result, []
    paths = figures.make(result)
    text = summary_markdown(result)
    if paths:
        text += "\n" + describe_figures(paths, out_dir)
    atomic_write_text(text, out_dir / "summary.md")
    return result, paths
