"""Training curves: a quantity against iterations as mean and spread over repeats."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np

PathLike = Union[str, Path]
COLORS = {"NODE": "tab:red", "ANODE": "tab:blue", "ResNet": "tab:green"}


def _color(label: str, i: int) -> str:
    return COLORS.get(label, f"C{i}")


def stack_histories(histories: Sequence[dict], key: str, smooth: int = 1) -> Optional[np.ndarray]:
    """(repeats, iterations) array of `key` (truncated to the shortest run; None if absent),
    smoothed with a running mean over `smooth` iterations."""
    rows = [np.asarray([np.nan if v is None else v for v in h.get(key, [])], dtype=float)
            for h in histories]
    rows = [r for r in rows if r.size and not np.all(np.isnan(r))]
    if not rows:
        return None
    n = min(r.size for r in rows)
    arr = np.stack([r[:n] for r in rows])
    if smooth > 1 and n >= smooth:
        kernel = np.ones(smooth) / smooth
        arr = np.stack([np.convolve(r, kernel, mode="valid") for r in arr])
    return arr


def _save(fig, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _mean_band(ax, x, arr, label, color, linestyle="-"):
    """The mean over repeats as a line, the spread (min to max) as a band (positive for log axes)."""
    ax.plot(x, np.nanmean(arr, 0), color=color, linestyle=linestyle, label=label)
    if arr.shape[0] > 1:
        ax.fill_between(x, np.nanmin(arr, 0), np.nanmax(arr, 0), color=color, alpha=0.2, linewidth=0)


def _finish(fig, ax, path: PathLike, xlabel: str, ylabel: str, title: str) -> Path:
    """Labels, legend and grid every plot here shares, then save."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_histories(results: Dict[str, List[dict]], path: PathLike, key: str = "loss",
                   ylabel: Optional[str] = None, smooth: int = 5, logy: bool = False,
                   title: Optional[str] = None) -> Path:
    """`results`: label -> list of histories (one per repeat). Mean and min-max band of `key`."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (label, histories) in enumerate(results.items()):
        arr = stack_histories(histories, key, smooth)
        if arr is None:
            continue
        x = np.arange(arr.shape[1]) + smooth
        _mean_band(ax, x, arr, f"{label} (n={arr.shape[0]})", _color(label, i))
    if logy:
        ax.set_yscale("log")
    return _finish(fig, ax, path, "iteration", ylabel or key, title or f"{ylabel or key} (mean, band: min to max over repeats)")


def plot_nfe(results: Dict[str, List[dict]], path: PathLike, smooth: int = 5,
             title: Optional[str] = None) -> Path:
    """Forward (solid) and backward (dashed) NFE per iteration; models without NFE are skipped."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (label, histories) in enumerate(results.items()):
        color = _color(label, i)
        for key, style, name in (("nfe_forward", "-", "fwd"), ("nfe_backward", "--", "bwd")):
            arr = stack_histories(histories, key, smooth)
            if arr is not None:
                _mean_band(ax, np.arange(arr.shape[1]) + smooth, arr, f"{label} {name}", color, style)
    return _finish(fig, ax, path, "iteration", "function evaluations", title or "NFE per iteration (mean, band: min to max over repeats)")


def plot_nfe_vs_loss(results: Dict[str, List[dict]], path: PathLike, smooth: int = 5,
                     title: Optional[str] = None) -> Path:
    """Forward NFE against training loss, one point per (smoothed) iteration and repeat; the
    colour darkens as training proceeds."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (label, histories) in enumerate(results.items()):
        nfe = stack_histories(histories, "nfe_forward", smooth)
        loss = stack_histories(histories, "loss", smooth)
        if nfe is None or loss is None:
            continue
        n = min(nfe.shape[1], loss.shape[1])
        alpha = np.tile(np.linspace(0.15, 1.0, n), nfe.shape[0])
        color = _color(label, i)
        ax.scatter(nfe[:, :n].ravel(), loss[:, :n].ravel(), s=6, color=color, alpha=alpha, label=label)
    ax.set_xlabel("NFE (forward)")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title(title or "NFE against loss (later iterations darker)")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_val_curves(results: Dict[str, List[dict]], path: PathLike, title: Optional[str] = None) -> Path:
    """Validation loss against iterations (history["val"]), mean and min-max band over repeats."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (label, histories) in enumerate(results.items()):
        vals = [h.get("val") or {} for h in histories]
        arr = stack_histories(vals, "loss")
        if arr is None:
            continue
        x = np.asarray(vals[0]["iteration"][: arr.shape[1]])
        _mean_band(ax, x, arr, label, _color(label, i))
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation loss")
    ax.set_yscale("log")
    ax.set_title(title or "validation loss (mean, band: min to max over repeats)")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _val_series(histories: Sequence[dict], key: str):
    """(iterations, (repeats, evaluations) array) of history["val"][key], or None."""
    vals = [h.get("val") or {} for h in histories]
    arr = stack_histories(vals, key)
    if arr is None:
        return None
    its = next(v["iteration"] for v in vals if len(v.get("iteration", [])) >= arr.shape[1])
    return np.asarray(its[: arr.shape[1]], dtype=float), arr


def plot_accuracy(results: Dict[str, List[dict]], path: PathLike, smooth: int = 5,
                  title: Optional[str] = None) -> Path:
    """Accuracy against iterations: on the training batches (solid, smoothed) and on the
    validation/test set where it was evaluated (dashed, markers); mean and min-max band."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (label, histories) in enumerate(results.items()):
        color = _color(label, i)
        arr = stack_histories(histories, "accuracy", smooth)
        if arr is not None:
            _mean_band(ax, np.arange(arr.shape[1]) + smooth, arr, f"{label} train", color)
        val = _val_series(histories, "accuracy")
        if val is not None:
            _mean_band(ax, val[0], val[1], f"{label} test", color, "--")
            ax.plot(val[0], np.nanmean(val[1], 0), "o", color=color, markersize=3)
    return _finish(fig, ax, path, "iteration", "accuracy", title or "accuracy (mean, band: min to max over repeats)")


def plot_accuracy_vs_nfe(results: Dict[str, List[dict]], path: PathLike, smooth: int = 5,
                         title: Optional[str] = None) -> Path:
    """Training accuracy against forward NFE, one point per (smoothed) iteration and repeat
    (later iterations darker), as the paper's NFE-against-loss plots."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (label, histories) in enumerate(results.items()):
        nfe = stack_histories(histories, "nfe_forward", smooth)
        acc = stack_histories(histories, "accuracy", smooth)
        if nfe is None or acc is None:
            continue
        n = min(nfe.shape[1], acc.shape[1])
        alpha = np.tile(np.linspace(0.15, 1.0, n), nfe.shape[0])
        ax.scatter(nfe[:, :n].ravel(), acc[:, :n].ravel(), s=6, color=_color(label, i), alpha=alpha,
                   label=label)
    return _finish(fig, ax, path, "NFE (forward)", "training accuracy", title or "accuracy against NFE (later iterations darker)")
