"""Trainer for ODENet, ConvODENet, ODEBlock and ResNet models (reference: anode/training.py).

Per iteration it records the loss, the solver's function evaluations forward and backward (read
from the engine's `SolverStats` through the model's `nfe_forward` / `nfe_backward`), the batch
accuracy and the wall time. It writes JSON/CSV logs and atomic checkpoints, and resumes from a
checkpoint to exactly the result of an uninterrupted run (same data order, same parameters).
A solver failure ends training: it is recorded in `history["failure"]` and described in one
line by `format_failure`, never raised as a traceback.

Under DistributedDataParallel (`dist`, see distributed.py) each rank trains on its shard of the
global batch; the recorded loss, accuracy and NFE are reduced over ranks (loss and accuracy
weighted by shard size, NFE averaged over ranks), evaluation is split across ranks and summed,
and only rank 0 writes checkpoints and logs. Checkpoints hold the unwrapped model's state.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import SolverError
from .checkpoint import atomic_torch_save, get_rng_state, load_checkpoint, set_rng_state
from .distributed import SINGLE, DistContext, unwrap
from .logs import write_history

LOSSES: Dict[str, Callable[[], nn.Module]] = {
    "huber": nn.SmoothL1Loss,        # the reference code's regression loss (Huber, delta 1)
    "mse": nn.MSELoss,
    "cross_entropy": nn.CrossEntropyLoss,
}
ITERATION_KEYS = ("iteration", "epoch", "loss", "nfe_forward", "nfe_backward", "accuracy", "time")
CHECKPOINT_NAME = "checkpoint.pt"


def new_history() -> dict:
    history: dict = {key: [] for key in ITERATION_KEYS}
    history["val"] = {"iteration": [], "loss": [], "accuracy": [], "nfe_forward": []}
    history["failure"] = None
    history["completed"] = False
    return history


def accuracy(pred: torch.Tensor, target: torch.Tensor, classification: bool) -> float:
    """Classification: argmax agrees with the label. Regression: sign(pred) == sign(target),
    which for the toy problems' +-1 targets is the classification accuracy."""
    correct = pred.argmax(dim=1) == target if classification else torch.sign(pred) == torch.sign(target)
    return correct.sum().item() / max(correct.numel(), 1)   # exact: no float32 mean


class PeerSolverError(SolverError):
    """Another rank's solve failed in this iteration, so this rank stops too."""


def format_failure(failure: dict) -> str:
    """One line describing a recorded failure."""
    message = " ".join(str(failure.get("message", "")).split())
    return (f"solver failure at iteration {failure['iteration']} (epoch {failure['epoch'] + 1}, "
            f"{failure['phase']}): {failure['error']}: {message}")


def _nfe(model: nn.Module, attr: str) -> Optional[int]:
    value = getattr(model, attr, None)
    return None if value is None else int(value)


class Trainer:
    """Adam-style training loop with histories, checkpoints and exact resume.

    Args:
        model: returns predictions from a batch of inputs; ODE models expose `nfe_forward` /
            `nfe_backward` (None or missing for discrete models).
        optimizer: a torch optimizer over `model.parameters()`.
        loss: "huber" (regression toys), "mse" or "cross_entropy" (classification).
        device: where batches are moved.
        out_dir: if given, `checkpoint.pt`, `history.json` and `history.csv` are written there.
        checkpoint_every: also checkpoint every this many iterations (0: only at epoch ends).
        eval_every: evaluate on `val_loader` every this many iterations (0: at epoch ends only).
        callbacks: each is called as `cb(trainer)` before the first iteration and after each.
        progress: show a tqdm bar; None shows it only when stderr is a terminal (rank 0 only).
        desc: label of the progress bar.
        dist: the process group context when `model` is wrapped in DistributedDataParallel.
        dtype: floating-point inputs are cast to it (None: left as they are).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss: str = "huber",
                 device: Union[str, torch.device] = "cpu", out_dir: Optional[Union[str, Path]] = None,
                 checkpoint_every: int = 0, eval_every: int = 0,
                 callbacks: Sequence[Callable[["Trainer"], None]] = (),
                 progress: Optional[bool] = None, desc: str = "",
                 dist: Optional[DistContext] = None, dtype: Optional[torch.dtype] = None):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
        self.model = model                  # what is called: the DDP wrapper under DDP
        self.module = unwrap(model)         # the model itself: NFE, state, evaluation
        self.dist = dist or SINGLE
        self.dtype = dtype
        self.optimizer = optimizer
        self.loss_name = loss
        self.loss_fn = LOSSES[loss]()
        self.classification = loss == "cross_entropy"
        self.device = torch.device(device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.checkpoint_every = int(checkpoint_every)
        self.eval_every = int(eval_every)
        self.callbacks = list(callbacks)
        self.progress = (sys.stderr.isatty() if progress is None else bool(progress)) and self.dist.is_main
        self.desc = desc
        self.history = new_history()
        self.iteration = 0          # optimizer steps taken
        self.epoch = 0              # completed epochs
        self.batch_in_epoch = 0     # batches of the current epoch already consumed
        self.elapsed = 0.0          # training wall time, seconds (summed over resumed sessions)
        self._epoch_rng = None      # RNG state before the current epoch's data iterator was made
        self.extra_state: dict = {}  # anything the caller wants stored in checkpoints

    # -- state ------------------------------------------------------------------------------
    @property
    def failed(self) -> bool:
        return self.history["failure"] is not None

    @property
    def checkpoint_path(self) -> Optional[Path]:
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "history": self.history, "iteration": self.iteration, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "elapsed": self.elapsed,
                "rng": get_rng_state(), "epoch_rng": self._epoch_rng, "extra": self.extra_state}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = state["history"]
        self.iteration = state["iteration"]
        self.epoch = state["epoch"]
        self.batch_in_epoch = state["batch_in_epoch"]
        self.elapsed = state["elapsed"]
        self._epoch_rng = state["epoch_rng"]
        self.extra_state = state.get("extra", {})
        set_rng_state(state["rng"])

    def save_checkpoint(self, path: Optional[Union[str, Path]] = None) -> None:
        path = path or self.checkpoint_path
        if path is None or not self.dist.is_main:
            return
        atomic_torch_save(self.state_dict(), path)
        write_history(self.history, Path(path).parent)

    def resume(self, path: Optional[Union[str, Path]] = None) -> bool:
        """Load `path` (default out_dir/checkpoint.pt) if it exists; True if loaded."""
        path = Path(path or self.checkpoint_path or "")
        if not path.is_file():
            return False
        self.load_state_dict(load_checkpoint(path, map_location=self.device))
        return True

    # -- loop -------------------------------------------------------------------------------
    def _to(self, x: torch.Tensor, y: torch.Tensor):
        x = x.to(self.device)
        if self.dtype is not None and x.is_floating_point():
            x = x.to(self.dtype)
        if self.dtype is not None and y.is_floating_point():
            y = y.to(self.dtype)
        return x, y.to(self.device)

    def _forward_loss(self, x: torch.Tensor, y: torch.Tensor):
        """(pred, loss); a failure on any rank raises on every rank, before backward."""
        error: Optional[Exception] = None
        pred = loss = None
        try:
            pred = self.model(x)
            loss = self.loss_fn(pred, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss is {loss.item()}")
        except (SolverError, FloatingPointError) as err:
            error = err
        self._sync_failure(error)
        if error is not None:
            raise error
        return pred, loss

    def _sync_failure(self, error: Optional[Exception]) -> None:
        """Under DDP: learn whether any rank failed; if another did, raise PeerSolverError here
        (every rank then stops at the same point instead of waiting in a collective)."""
        if not self.dist.enabled:
            return
        failed = self.dist.failed_ranks(error is not None)
        if error is not None and not self.dist.is_main:   # only rank 0 logs: say it here
            print(f"rank {self.dist.rank}: {type(error).__name__}: {error}", file=sys.stderr)
        if failed and error is None:
            raise PeerSolverError(f"the solve of rank(s) {', '.join(map(str, failed))} failed "
                                  "(message on that rank's stderr)")

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        self.model.train()
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        pred, loss = self._forward_loss(x, y)
        nfe_forward = _nfe(self.module, "nfe_forward")
        loss.backward()
        nfe_backward = _nfe(self.module, "nfe_backward")
        self.optimizer.step()
        n = x.shape[0]
        acc = accuracy(pred.detach(), y, self.classification)
        loss_value = loss.item()
        if self.dist.enabled:   # loss/accuracy weighted by shard size; NFE averaged over ranks
            has_nfe = nfe_forward is not None
            sums = self.dist.sum([loss_value * n, acc * n, n, nfe_forward or 0, nfe_backward or 0])
            loss_value, acc = sums[0] / sums[2], sums[1] / sums[2]
            if has_nfe:
                nfe_forward = sums[3] / self.dist.world_size
                nfe_backward = sums[4] / self.dist.world_size
        seconds = time.perf_counter() - start
        return {"iteration": self.iteration + 1, "epoch": self.epoch, "loss": loss_value,
                "nfe_forward": nfe_forward, "nfe_backward": nfe_backward,
                "accuracy": acc, "time": seconds}

    def _record_failure(self, err: Exception, phase: str) -> None:
        self.history["failure"] = {"iteration": self.iteration, "epoch": self.epoch,
                                   "phase": phase, "error": type(err).__name__, "message": str(err)}

    @torch.no_grad()
    def evaluate(self, loader: Iterable) -> dict:
        """Mean loss and accuracy over `loader` (weighted by batch size) and mean forward NFE
        per batch. Under DDP each rank passes its own shard and the sums are reduced; the
        unwrapped model is called, so ranks with different numbers of batches never wait."""
        self.module.eval()
        total, loss_sum, acc_sum, nfe_sum, nfe_count = 0, 0.0, 0.0, 0.0, 0
        try:
            for x, y in loader:
                x, y = self._to(x, y)
                pred = self.module(x)
                n = x.shape[0]
                loss_sum += self.loss_fn(pred, y).item() * n
                acc_sum += accuracy(pred, y, self.classification) * n
                total += n
                nfe = _nfe(self.module, "nfe_forward")
                if nfe is not None:
                    nfe_sum, nfe_count = nfe_sum + nfe, nfe_count + 1
        except SolverError as err:
            self._sync_failure(err)
            raise
        if self.dist.enabled:
            self._sync_failure(None)   # the other ranks may have failed
            total, loss_sum, acc_sum, nfe_sum, nfe_count = self.dist.sum(
                [total, loss_sum, acc_sum, nfe_sum, nfe_count])
        return {"loss": loss_sum / max(total, 1), "accuracy": acc_sum / max(total, 1),
                "nfe_forward": nfe_sum / nfe_count if nfe_count else None}

    def _validate(self, val_loader: Iterable) -> None:
        result = self.evaluate(val_loader)
        val = self.history["val"]
        val["iteration"].append(self.iteration)
        for key in ("loss", "accuracy", "nfe_forward"):
            val[key].append(result[key])

    def _batches(self, loader: Iterable):
        """The current epoch's remaining batches, in the order an uninterrupted run sees them."""
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):       # DistributedSampler: its order is seed + epoch
            sampler.set_epoch(self.epoch)
        if self.batch_in_epoch == 0:
            self._epoch_rng = get_rng_state()
            return iter(loader)
        now = get_rng_state()              # resuming mid-epoch: replay the epoch's shuffle
        set_rng_state(self._epoch_rng)
        it = iter(loader)
        for _ in range(self.batch_in_epoch):
            next(it)
        set_rng_state(now)
        return it

    def train(self, loader: Iterable, num_epochs: int, val_loader: Optional[Iterable] = None) -> dict:
        """Train until `num_epochs` epochs are complete (counting epochs done before a resume).
        Returns the history; check `trainer.failed` / `history["failure"]`."""
        if self.failed or self.history["completed"] and self.epoch >= num_epochs:
            return self.history
        self.history["completed"] = False
        per_epoch = len(loader)  # type: ignore[arg-type]
        bar = tqdm(total=num_epochs * per_epoch, initial=self.iteration, desc=self.desc,
                   disable=not self.progress, leave=False, dynamic_ncols=True)
        try:
            if self.iteration == 0:
                for cb in self.callbacks:
                    cb(self)
            while self.epoch < num_epochs:
                for x, y in self._batches(loader):
                    x, y = self._to(x, y)
                    try:
                        record = self._step(x, y)
                    except (SolverError, FloatingPointError) as err:
                        self._record_failure(err, "training")
                        self.save_checkpoint()
                        return self.history
                    self.iteration += 1
                    self.batch_in_epoch += 1
                    self.elapsed += record["time"]
                    for key in ITERATION_KEYS:
                        self.history[key].append(record[key])
                    bar.update(1)
                    if self.progress and self.iteration % 5 == 0:
                        bar.set_postfix(loss=f"{record['loss']:.4f}", nfe=record["nfe_forward"])
                    if val_loader is not None and self.eval_every and self.iteration % self.eval_every == 0:
                        if not self._safe_validate(val_loader):
                            return self.history
                    for cb in self.callbacks:
                        cb(self)
                    if self.checkpoint_every and self.iteration % self.checkpoint_every == 0:
                        self.save_checkpoint()
                self.epoch += 1
                self.batch_in_epoch = 0
                if val_loader is not None and not self.eval_every:
                    if not self._safe_validate(val_loader):
                        return self.history
                self.history["completed"] = self.epoch >= num_epochs
                self.save_checkpoint()
        finally:
            bar.close()
        return self.history

    def _safe_validate(self, val_loader: Iterable) -> bool:
        try:
            self._validate(val_loader)
            return True
        except SolverError as err:
            self._record_failure(err, "validation")
            self.save_checkpoint()
            return False


def last_epoch_mean(history: dict, key: str) -> float:
    """Mean of `key` over the iterations of the last recorded epoch (nan if none)."""
    epochs: List[int] = history["epoch"]
    values = [v for e, v in zip(epochs, history[key]) if e == epochs[-1] and v is not None] if epochs else []
    return sum(values) / len(values) if values else math.nan
