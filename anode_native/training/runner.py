"""Run a validated config: build data and models from the registries, train every model label
for every repeat, keep checkpoints/logs per run, and summarize.

Layout of an output directory::

    OUT/config.yaml                the resolved config
    OUT/<label>/rep<k>/            checkpoint.pt, history.json, history.csv [, val_history.csv]
    OUT/results.json               per-run final metrics
    OUT/summary.md                 the table (final loss, NFE forward/backward, time, parameters)

Under torchrun (`dist`, see distributed.py) every rank runs the same loop on its shards and only
rank 0 writes files and logs.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import yaml
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from ..data.toy import ToyDataset
from ..nn import count_parameters
from .checkpoint import atomic_write_text, seed_everything
from .config import ConfigError, merge
from .distributed import SINGLE, DistContext
from .logs import dump_json, fmt_mean_std, markdown_table
from .registry import DATASETS, MODELS
from .trainer import Trainer, format_failure, last_epoch_mean


@dataclasses.dataclass
class RunResult:
    label: str
    repeat: int
    model: nn.Module
    history: dict
    num_parameters: int
    out_dir: Path
    final: dict                      # train_loss, train_accuracy, val_loss, val_accuracy, ...
    extra: dict = dataclasses.field(default_factory=dict)   # trainer.extra_state (checkpointed)
    train_set: Optional[Dataset] = None

    @property
    def failure(self) -> Optional[dict]:
        return self.history.get("failure")


@dataclasses.dataclass
class ExperimentResult:
    config: dict
    out_dir: Path
    train_set: Dataset
    val_set: Optional[Dataset]
    runs: Dict[str, List[RunResult]]
    wall_time: float = 0.0

    @property
    def failures(self) -> List[RunResult]:
        return [r for runs in self.runs.values() for r in runs if r.failure]


def build_datasets(config: dict, label: Optional[str] = None):
    """(train, val or None) from the config's `dataset` / `val_dataset` sections, with the
    per-model overrides of `models.<label>.dataset` when `label` is given."""
    section = dict(config["dataset"])
    if label is not None and config["models"][label].get("dataset"):
        section = merge(section, config["models"][label]["dataset"])
    entry = DATASETS[section["name"]]
    params = {k: v for k, v in section.items() if k != "name"}
    if "seed" in entry.params:
        params.setdefault("seed", config["seed"])
    train = entry.factory(**params)
    val = None
    if config.get("val_dataset") is not None:
        vparams = merge(params, config["val_dataset"])
        vparams.pop("name", None)
        val = entry.factory(**vparams)
    return train, val


def input_shape_of(dataset: Dataset) -> tuple:
    return tuple(dataset[0][0].shape)


def output_dim_of(config: dict) -> int:
    entry = DATASETS[config["dataset"]["name"]]
    if entry.task == "classification":
        return int(entry.num_classes or 10)
    return 1


def build_model(model_cfg: dict, input_shape: tuple, output_dim: int) -> nn.Module:
    params = {k: v for k, v in model_cfg.items() if k not in ("name", "dataset")}
    return MODELS[model_cfg["name"]].factory(input_shape, output_dim, **params)


def run_dir_name(label: str) -> str:
    """A label as a directory name (spaces and slashes replaced)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
    """A DataLoader; in-memory toy datasets are indexed a whole batch at a time (fast). Shuffling
    draws from torch's global RNG, so checkpoints (which hold its state) replay the order."""
    if isinstance(dataset, ToyDataset):
        base = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        return DataLoader(dataset, sampler=BatchSampler(base, batch_size, drop_last=False),
                          batch_size=None)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)


def run_one(config: dict, label: str, repeat: int, train_set: Dataset, val_set: Optional[Dataset],
            out_dir: Path, resume: bool = False, progress: Optional[bool] = None,
            callbacks: Sequence[Callable] = (), log: Callable[[str], None] = print,
            dist: DistContext = SINGLE) -> RunResult:
    training = config["training"]
    device = dist.device(config["device"])
    dtype = getattr(torch, training["dtype"])
    seed = config["seed"] * 1000 + repeat
    seed_everything(seed)
    model = build_model(config["models"][label], input_shape_of(train_set), output_dim_of(config))
    model.to(device=device, dtype=dtype)
    num_parameters = count_parameters(model)
    log(f"  {label} rep{repeat}: {num_parameters:,} parameters"
        + (f", {dist.world_size} processes ({dist.backend})" if dist.enabled else ""))
    optimizer = torch.optim.Adam(model.parameters(), lr=training["lr"],
                                 weight_decay=training["weight_decay"])
    run_dir = out_dir / run_dir_name(label) / f"rep{repeat}"
    trainer = Trainer(dist.wrap(model), optimizer, loss=training["loss"], device=device,
                      out_dir=run_dir, checkpoint_every=training["checkpoint_every"],
                      eval_every=training["eval_every"], callbacks=callbacks, progress=progress,
                      desc=f"{label} rep{repeat}", dist=dist, dtype=dtype)
    try:
        if resume and trainer.resume():
            log(f"  resumed {label} rep{repeat} at iteration {trainer.iteration}")
    except (RuntimeError, ValueError, KeyError) as err:
        raise ConfigError(f"cannot resume from {trainer.checkpoint_path}: it does not match the "
                          f"config's model '{label}' ({' '.join(str(err).split())[:200]})") from None
    if dist.enabled:
        loader = dist.train_loader(train_set, training["batch_size"], training["shuffle"], seed)
        eval_loader = dist.eval_loader
    else:
        loader = make_loader(train_set, training["batch_size"], shuffle=training["shuffle"])
        eval_loader = lambda ds, b: make_loader(ds, b, False)  # noqa: E731
    val_loader = eval_loader(val_set, training["eval_batch_size"]) if val_set is not None else None
    history = trainer.train(loader, training["epochs"], val_loader)
    final = {"time": trainer.elapsed, "iterations": trainer.iteration,
             "loss_last_epoch": last_epoch_mean(history, "loss") if history["loss"] else math.nan,
             "nfe_forward": last_epoch_mean(history, "nfe_forward") if history["loss"] else math.nan,
             "nfe_backward": last_epoch_mean(history, "nfe_backward") if history["loss"] else math.nan}
    if trainer.failed:
        log(f"  {label} rep{repeat}: {format_failure(history['failure'])}")
    else:
        final.update(_final_metrics(trainer, train_set if training["eval_train"] else None,
                                    val_set, training["eval_batch_size"], eval_loader))
    if dist.enabled:   # DDP keeps replicas equal; check it rather than trust it
        final["replica_max_abs_diff"] = dist.replica_divergence(model)
    return RunResult(label, repeat, model, history, num_parameters, run_dir, final,
                     trainer.extra_state, train_set)


def _final_metrics(trainer: Trainer, train_set, val_set, batch_size: int, eval_loader) -> dict:
    """Loss and accuracy on the training set (if given) and the validation set after training.
    A validation done at the last iteration is reused rather than computed again."""
    out = {}
    try:
        if train_set is not None:
            metrics = trainer.evaluate(eval_loader(train_set, batch_size))
            out.update(train_loss=metrics["loss"], train_accuracy=metrics["accuracy"],
                       eval_nfe_forward=metrics["nfe_forward"])
        if val_set is not None:
            val = trainer.history["val"]
            if val["iteration"] and val["iteration"][-1] == trainer.iteration:
                metrics = {key: val[key][-1] for key in ("loss", "accuracy", "nfe_forward")}
            else:
                metrics = trainer.evaluate(eval_loader(val_set, batch_size))
            out.update(val_loss=metrics["loss"], val_accuracy=metrics["accuracy"],
                       val_nfe_forward=metrics["nfe_forward"])
    except Exception as err:  # a solver failure while evaluating is reported, not raised
        out["eval_error"] = f"{type(err).__name__}: {' '.join(str(err).split())}"
    return out


def run_config(config: dict, out_dir, resume: bool = False, progress: Optional[bool] = None,
               log: Callable[[str], None] = print,
               callbacks_for: Optional[Callable[[str, int, Dataset], Sequence[Callable]]] = None,
               dist: DistContext = SINGLE) -> ExperimentResult:
    """Train every (label, repeat) of a validated config. `callbacks_for(label, repeat,
    train_set)` may return Trainer callbacks for that run (e.g. feature snapshots for a figure).
    Under DDP only rank 0 logs and writes files."""
    out_dir = Path(out_dir)
    if not dist.is_main:
        log = _silent
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(yaml.safe_dump(config, sort_keys=False), out_dir / "config.yaml")
    default_train, default_val = build_datasets(config)
    start = time.perf_counter()
    runs: Dict[str, List[RunResult]] = {}
    for label in config["models"]:
        runs[label] = []
        train_set, val_set = (build_datasets(config, label) if config["models"][label].get("dataset")
                              else (default_train, default_val))
        for repeat in range(config["repeats"]):
            cbs = callbacks_for(label, repeat, train_set) if callbacks_for else ()
            t0 = time.perf_counter()
            result = run_one(config, label, repeat, train_set, val_set, out_dir, resume,
                             progress, cbs, log, dist)
            runs[label].append(result)
            log(f"  {config['name']}: {label} rep{repeat} done in {time.perf_counter() - t0:.1f}s"
                + _short_metrics(result.final))
    result = ExperimentResult(config, out_dir, default_train, default_val, runs,
                              time.perf_counter() - start)
    if dist.is_main:
        write_results(result)
    return result


def _silent(message: str) -> None:
    pass


def _short_metrics(final: dict) -> str:
    parts = []
    for key, name, fmt in (("train_loss", "loss", ".4f"), ("val_loss", "test loss", ".4f"),
                           ("val_accuracy", "test accuracy", ".4f"), ("nfe_forward", "NFE fwd", ".1f"),
                           ("nfe_backward", "NFE bwd", ".1f")):
        value = final.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            parts.append(f"{name} {value:{fmt}}")
    return (", " + ", ".join(parts)) if parts else ""


SUMMARY_HEADER = ("model", "params", "final loss", "last-epoch loss", "accuracy",
                  "NFE fwd", "NFE bwd", "time/run (s)", "failures")


def summary_header(result: ExperimentResult) -> tuple:
    if result.val_set is None:
        return SUMMARY_HEADER
    return SUMMARY_HEADER[:5] + ("val loss", "val accuracy") + SUMMARY_HEADER[5:]


def summary_rows(result: ExperimentResult) -> List[List[str]]:
    rows = []
    for label, runs in result.runs.items():
        ok = [r for r in runs if not r.failure]
        col = lambda key: [r.final.get(key) for r in ok]  # noqa: E731
        is_ode = any(r.history["nfe_forward"] and r.history["nfe_forward"][0] is not None for r in runs)
        rows.append([
            label, str(runs[0].num_parameters), fmt_mean_std(col("train_loss")),
            fmt_mean_std(col("loss_last_epoch")), fmt_mean_std(col("train_accuracy"), 3),
            *([fmt_mean_std(col("val_loss")), fmt_mean_std(col("val_accuracy"), 4)]
              if result.val_set is not None else []),
            fmt_mean_std(col("nfe_forward"), 1) if is_ode else "-",
            fmt_mean_std(col("nfe_backward"), 1) if is_ode else "-",
            fmt_mean_std([r.final["time"] for r in runs], 1),
            f"{len(runs) - len(ok)}/{len(runs)}"])
    return rows


def summary_markdown(result: ExperimentResult, title: Optional[str] = None) -> str:
    cfg = result.config
    text = f"## {title or cfg['name']}\n\n"
    if cfg.get("description"):
        text += " ".join(str(cfg["description"]).split()) + "\n\n"
    tr = cfg["training"]
    text += (f"dataset `{cfg['dataset']['name']}` ({len(result.train_set)} points), {cfg['repeats']} "
             f"repeat(s), {tr['epochs']} epochs, batch {tr['batch_size']}, lr {tr['lr']}, "
             f"loss {tr['loss']}. Mean ± std over repeats; final loss on the whole training set "
             "after training; NFE = function evaluations per iteration, mean over the last epoch, "
             "from the engine's statistics (backward: the vector-Jacobian products of direct "
             "backpropagation, or the adjoint solve's evaluations); time = training wall time per "
             "run.\n\n")
    text += markdown_table(summary_header(result), summary_rows(result))
    for run in result.failures:
        text += f"\n- {run.label} rep{run.repeat}: {format_failure(run.failure)}"
    return text + "\n"


def write_results(result: ExperimentResult) -> None:
    dump_json({label: [{"repeat": r.repeat, "parameters": r.num_parameters, "failure": r.failure,
                        **r.final} for r in runs] for label, runs in result.runs.items()},
              result.out_dir / "results.json")
    atomic_write_text(summary_markdown(result), result.out_dir / "summary.md")
