"""The figures a config asks for (`figures: [...]`), drawn from an ExperimentResult.

`FigureMaker(config).callbacks_for` gives the Trainer callbacks some figures need while training
(feature-space snapshots, kept in the checkpointed `trainer.extra_state`); `make(result)` draws.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from .. import viz
from ..viz.flows import grid
from .runner import ExperimentResult, RunResult

SNAPSHOT_KEY = "feature_snapshots"


def _is_ode(model) -> bool:
    return hasattr(model, "odeblock") or hasattr(model, "odefunc")


def _block(model):
    return model.odeblock if hasattr(model, "odeblock") else model


def fixed_batch(dataset, size: int, seed: int = 0):
    """A fixed, seeded subset of `size` points (inputs, targets) of a toy dataset."""
    data, targets = dataset.data, dataset.targets
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:size]
    return data[idx], targets[idx]


class FigureMaker:
    def __init__(self, config: dict, log: Callable[[str], None] = print):
        self.config = config
        self.figures = list(config.get("figures") or [])
        self.options = dict(config.get("figure_options") or {})
        self.log = log

    # -- callbacks during training ------------------------------------------------------------
    def callbacks_for(self, label: str, repeat: int, train_set) -> List[Callable]:
        if "feature_evolution" not in self.figures or repeat != 0:
            return []
        if self.config["models"][label]["name"] == "resnet":
            return []
        tr = self.config["training"]
        total = tr["epochs"] * math.ceil(len(train_set) / tr["batch_size"])
        fractions = self.options.get("snapshot_fractions", [0.0, 0.1, 0.3, 1.0])
        wanted = sorted({int(round(f * total)) for f in fractions})
        x, _ = fixed_batch(train_set, int(self.options.get("viz_points", 256)))

        def snapshot(trainer) -> None:
            if trainer.iteration not in wanted:
                return
            snaps = trainer.extra_state.setdefault(SNAPSHOT_KEY, [])
            if snaps and snaps[-1][0] == trainer.iteration:
                return
            with torch.no_grad():
                feats, _ = trainer.module(x.to(trainer.device), return_features=True)
            snaps.append([trainer.iteration, feats.detach().cpu()])
        return [snapshot]

    # -- drawing ------------------------------------------------------------------------------
    def make(self, result: ExperimentResult, out_dir: Optional[Path] = None) -> List[Path]:
        out_dir = Path(out_dir or result.out_dir)
        paths: List[Path] = []
        for name in self.figures:
            try:
                paths += getattr(self, f"_fig_{name}")(result, out_dir)
            except Exception as err:  # one figure failing must not lose the others
                self.log(f"  figure {name!r} not drawn: {type(err).__name__}: {' '.join(str(err).split())}")
        return paths

    @staticmethod
    def _histories(result: ExperimentResult, ode_only: bool = False) -> Dict[str, List[dict]]:
        return {label: [r.history for r in runs] for label, runs in result.runs.items()
                if not ode_only or _is_ode(runs[0].model)}

    def _title(self, result: ExperimentResult, what: str) -> str:
        return f"{result.config['name']}: {what}"

    def _fig_losses(self, result, out_dir):
        return [viz.plot_histories(self._histories(result), out_dir / "losses.png", key="loss",
                                   ylabel="training loss", logy=True,
                                   title=self._title(result, "training loss"))]

    def _fig_accuracy(self, result, out_dir):
        return [viz.plot_accuracy(self._histories(result), out_dir / "accuracy.png",
                                  title=self._title(result, "accuracy"))]

    def _fig_accuracy_vs_nfe(self, result, out_dir):
        hist = self._histories(result, ode_only=True)
        if not hist:
            return []
        return [viz.plot_accuracy_vs_nfe(hist, out_dir / "accuracy_vs_nfe.png",
                                         title=self._title(result, "accuracy against NFE"))]

    def _fig_nfe(self, result, out_dir):
        hist = self._histories(result, ode_only=True)
        return [viz.plot_nfe(hist, out_dir / "nfe.png", title=self._title(result, "NFE"))] if hist else []

    def _fig_nfe_vs_loss(self, result, out_dir):
        hist = self._histories(result, ode_only=True)
        if not hist:
            return []
        return [viz.plot_nfe_vs_loss(hist, out_dir / "nfe_vs_loss.png",
                                     title=self._title(result, "NFE against loss"))]

    def _ode_runs(self, result: ExperimentResult) -> Dict[str, RunResult]:
        return {label: runs[0] for label, runs in result.runs.items() if _is_ode(runs[0].model)}

    @torch.no_grad()
    def _trajectory(self, run: RunResult, x: torch.Tensor, steps: int = 40) -> torch.Tensor:
        run.model.eval()
        device = next(run.model.parameters()).device
        return _block(run.model).trajectory(x.to(device), steps).cpu()

    def _fig_trajectories_1d(self, result, out_dir):
        panels = []
        for label, run in self._ode_runs(result).items():
            x, y = fixed_batch(run.train_set, int(self.options.get("trajectory_points", 40)))
            traj = self._trajectory(run, x)
            panels.append({"title": label, "times": torch.linspace(0, 1, traj.shape[0]),
                           "trajectory": traj, "targets": y})
        return [viz.plot_trajectories_1d(panels, out_dir / "trajectories_1d.png",
                                         title=self._title(result, "learned trajectories"))]

    def _fig_flows_2d(self, result, out_dir):
        panels = []
        for label, run in self._ode_runs(result).items():
            x, y = fixed_batch(run.train_set, int(self.options.get("viz_points", 256)))
            panels.append({"title": label, "trajectory": self._trajectory(run, x), "targets": y})
        return [viz.plot_flows_2d(panels, out_dir / "flows_2d.png",
                                  title=self._title(result, "flows from inputs to features"))]

    def _fig_feature_evolution(self, result, out_dir):
        rows = {label: run.extra.get(SNAPSHOT_KEY, []) for label, run in self._ode_runs(result).items()}
        rows = {k: v for k, v in rows.items() if v}
        if not rows:
            return []
        _, y = fixed_batch(result.train_set, int(self.options.get("viz_points", 256)))
        return [viz.plot_feature_evolution(rows, y, out_dir / "feature_evolution.png",
                                           title=self._title(result, "features h(1) during training"))]

    @torch.no_grad()
    def _fig_generalization(self, result, out_dir):
        xs, ys, points = grid(float(self.options.get("map_extent", 2.0)), 80)
        panels = []
        for label, runs in result.runs.items():
            model = runs[0].model.eval()
            device = next(model.parameters()).device
            pred = model(torch.from_numpy(points).to(device)).cpu().numpy().reshape(len(ys), len(xs))
            panels.append({"title": f"{label}: prediction", "xs": xs, "ys": ys, "pred": pred})
        excluded = result.config["dataset"].get("exclude_angles")
        paths = [viz.plot_prediction_map(panels, out_dir / "generalization_map.png",
                                         excluded_angles=excluded,
                                         title=self._title(result, "predictions over the input space"))]
        hist = self._histories(result)
        if any(h and h[0].get("val", {}).get("iteration") for h in hist.values()):
            paths.append(viz.plot_val_curves(hist, out_dir / "validation_loss.png",
                                             title=self._title(result, "validation loss")))
        return paths


def describe_figures(paths: List[Path], relative_to: Path) -> str:
    """Markdown list of figure links relative to `relative_to`."""
    return "".join(f"- ![{p.stem}]({p.relative_to(relative_to)})\n" for p in paths)


__all__ = ["FigureMaker", "describe_figures", "fixed_batch"]
