"""Flows of learned ODEs: 1-D trajectories, 2-D flows, feature space during training, and the
input-space map of predictions (generalization). Inputs are numpy arrays or CPU tensors."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Wedge

from .histories import _save

PathLike = Union[str, Path]
CMAP = "coolwarm"  # target -1 blue, +1 red


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _target_colors(targets) -> np.ndarray:
    t = _np(targets).reshape(-1)
    return plt.get_cmap(CMAP)((np.clip(t, -1, 1) + 1) / 2)


def plot_trajectories_1d(panels: Sequence[dict], path: PathLike, title: Optional[str] = None) -> Path:
    """Each panel: {"title", "times" (T,), "trajectory" (T, B, D), "targets" (B,)}. D = 1: h(t)
    against t; D >= 2 (augmented): the path in the (h, a_1) plane, start o, end x."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        traj, times = _np(panel["trajectory"]), _np(panel["times"])
        colors = _target_colors(panel["targets"])
        for b in range(traj.shape[1]):
            if traj.shape[2] == 1:
                ax.plot(times, traj[:, b, 0], color=colors[b], alpha=0.7, linewidth=1)
            else:
                ax.plot(traj[:, b, 0], traj[:, b, 1], color=colors[b], alpha=0.7, linewidth=1)
                ax.scatter(traj[0, b, 0], traj[0, b, 1], color=colors[b], marker="o", s=12)
                ax.scatter(traj[-1, b, 0], traj[-1, b, 1], color=colors[b], marker="x", s=18)
        if traj.shape[2] == 1:
            ax.set_xlabel("t")
            ax.set_ylabel("h(t)")
        else:
            ax.set_xlabel("h (data)")
            ax.set_ylabel("a (augmented)")
        ax.set_title(panel["title"], fontsize=10)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _scatter(ax, points: np.ndarray, colors, three_d: bool, s: float = 8) -> None:
    if three_d:
        ax.scatter(points[:, 0], points[:, 1], points[:, 2], c=colors, s=s, depthshade=False)
    else:
        ax.scatter(points[:, 0], points[:, 1] if points.shape[1] > 1 else np.zeros(len(points)),
                   c=colors, s=s)


def plot_flows_2d(panels: Sequence[dict], path: PathLike, max_lines: int = 60,
                  title: Optional[str] = None) -> Path:
    """One row per panel {"title", "trajectory" (T, B, D), "targets" (B,)}: the inputs, then the
    flow (a subset of trajectories) ending at the features h(1); 3-D axes when D >= 3."""
    fig = plt.figure(figsize=(9, 4.2 * len(panels)))
    for row, panel in enumerate(panels):
        traj = _np(panel["trajectory"])
        colors = _target_colors(panel["targets"])
        three_d = traj.shape[2] >= 3
        ax_in = fig.add_subplot(len(panels), 2, 2 * row + 1)
        _scatter(ax_in, traj[0, :, :2], colors, False)
        ax_in.set_title(f"{panel['title']}: inputs", fontsize=10)
        ax_in.set_aspect("equal", adjustable="datalim")
        ax_out = fig.add_subplot(len(panels), 2, 2 * row + 2, projection="3d" if three_d else None)
        step = max(1, traj.shape[1] // max_lines)
        for b in range(0, traj.shape[1], step):
            coords = [traj[:, b, k] for k in range(3 if three_d else min(2, traj.shape[2]))]
            ax_out.plot(*coords, color=colors[b], alpha=0.35, linewidth=0.8)
        _scatter(ax_out, traj[-1, :, : 3 if three_d else 2], colors, three_d)
        ax_out.set_title(f"{panel['title']}: flow to features h(1)", fontsize=10)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_feature_evolution(rows: Dict[str, Sequence[Tuple[int, object]]], targets, path: PathLike,
                           title: Optional[str] = None) -> Path:
    """`rows`: label -> [(iteration, features (B, D)), ...] snapshots taken during training on a
    fixed batch with `targets` (B,). One row per label, one column per snapshot."""
    ncols = max(len(s) for s in rows.values())
    fig = plt.figure(figsize=(3.2 * ncols, 3.2 * len(rows)))
    colors = _target_colors(targets)
    for r, (label, snaps) in enumerate(rows.items()):
        for c, (iteration, feats) in enumerate(snaps):
            feats = _np(feats)
            three_d = feats.shape[1] >= 3
            ax = fig.add_subplot(len(rows), ncols, r * ncols + c + 1, projection="3d" if three_d else None)
            _scatter(ax, feats[:, : 3 if three_d else 2], colors, three_d, s=5)
            ax.set_title(f"{label}, iteration {iteration}", fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_prediction_map(panels: Sequence[dict], path: PathLike,
                        excluded_angles: Optional[Sequence[float]] = None,
                        radii: Sequence[float] = (0.5, 1.0, 1.5), title: Optional[str] = None) -> Path:
    """Each panel {"title", "xs" (W,), "ys" (H,), "pred" (H, W)}: the model's prediction over the
    input plane, with the class boundaries (circles at `radii`) and the slice of angles left out
    of training (`excluded_angles`, radians) outlined."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        xs, ys, pred = _np(panel["xs"]), _np(panel["ys"]), _np(panel["pred"])
        im = ax.pcolormesh(xs, ys, pred, cmap=CMAP, vmin=-1.5, vmax=1.5, shading="auto")
        for r in radii:
            ax.add_patch(plt.Circle((0, 0), r, fill=False, color="k", linewidth=0.6, linestyle=":"))
        if excluded_angles is not None:
            lo, hi = np.degrees(excluded_angles[0]), np.degrees(excluded_angles[1])
            ax.add_patch(Wedge((0, 0), max(radii), lo, hi, fill=False, color="k", linewidth=1.2))
        ax.set_aspect("equal")
        ax.set_title(panel["title"], fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def grid(extent: float = 2.0, n: int = 100) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xs, ys, points (n*n, 2)) of a square grid over [-extent, extent]^2, row-major in y."""
    xs = np.linspace(-extent, extent, n)
    xx, yy = np.meshgrid(xs, xs)
    return xs, xs, np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)


__all__: List[str] = ["plot_trajectories_1d", "plot_flows_2d", "plot_feature_evolution",
                      "plot_prediction_map", "grid"]
