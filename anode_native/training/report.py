"""`anode report RUN_DIR...`: the paper's Table 1 and its image figures (Figures 10-12: loss,
NFE and accuracy against iterations, NFE against loss, accuracy against NFE) rebuilt from the
histories that `anode train` / `anode experiment` saved, without loading any model.

A RUN_DIR is an output directory of one config (see runner.py for its layout). Runs are grouped
into table columns and figure sets by experiment: the config's name without a trailing
`_node` / `_anode` (so mnist_node and mnist_anode form the column `mnist`), and into rows by
model label. Test accuracy is the last evaluation on the validation set (the test split in the
image configs); NFE is the mean per training iteration over the last epoch; time is the summed
wall time of the training steps (evaluation excluded), and the median step time, which a burst of
load from other processes on a shared machine disturbs less.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from .checkpoint import atomic_write_text, load_checkpoint
from .config import ConfigError
from .logs import dump_json, markdown_table, mean_std
from .runner import run_dir_name
from .trainer import CHECKPOINT_NAME, last_epoch_mean


@dataclasses.dataclass
class SavedRun:
    label: str
    repeat: int
    history: dict
    parameters: Optional[int]

    def metrics(self) -> dict:
        h, val = self.history, self.history.get("val") or {}
        has = bool(h.get("loss"))
        times = [t for t in h.get("time", []) if t is not None]
        return {
            "test_accuracy": _last(val.get("accuracy")), "test_loss": _last(val.get("loss")),
            "nfe_forward": last_epoch_mean(h, "nfe_forward") if has else math.nan,
            "nfe_backward": last_epoch_mean(h, "nfe_backward") if has else math.nan,
            "time": sum(times), "step_ms": 1000 * statistics.median(times) if times else math.nan,
            "iterations": len(h.get("loss", [])), "completed": bool(h.get("completed")),
            "failure": h.get("failure"),
        }


@dataclasses.dataclass
class SavedExperiment:
    path: Path
    config: dict
    runs: Dict[str, List[SavedRun]]

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.path.name))

    @property
    def group(self) -> str:
        return re.sub(r"_(node|anode)$", "", self.name)


def _last(values) -> Optional[float]:
    values = [v for v in (values or []) if v is not None]
    return values[-1] if values else None


def _parameters_from_checkpoint(run_dir: Path) -> Optional[int]:
    path = run_dir / CHECKPOINT_NAME
    if not path.is_file():
        return None
    state = load_checkpoint(path)["model"]
    return sum(v.numel() for v in state.values() if v.is_floating_point())


def load_run_dir(path) -> SavedExperiment:
    """The config and every saved history of one output directory."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"{path} is not a run directory of `anode train`: it has no config.yaml")
    config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    results = {}
    if (path / "results.json").is_file():
        results = json.loads((path / "results.json").read_text())
    runs: Dict[str, List[SavedRun]] = {}
    for label in config.get("models") or {}:
        params = {r["repeat"]: r.get("parameters") for r in results.get(label, [])}
        for rep_dir in sorted((path / run_dir_name(label)).glob("rep*"),
                              key=lambda p: int(p.name[3:]) if p.name[3:].isdigit() else -1):
            if not (rep_dir / "history.json").is_file() or not rep_dir.name[3:].isdigit():
                continue
            repeat = int(rep_dir.name[3:])
            history = json.loads((rep_dir / "history.json").read_text())
            n = params.get(repeat)
            if n is None:
                n = _parameters_from_checkpoint(rep_dir)
            runs.setdefault(label, []).append(SavedRun(label, repeat, history, n))
    if not runs:
        raise ConfigError(f"{path} holds no saved history (expected <label>/rep<k>/history.json)")
    return SavedExperiment(path, config, runs)


def _fmt(values: Sequence[Optional[float]], digits: int, scale: float = 1.0, pm: str = " ± ") -> str:
    mean, std = mean_std([v * scale for v in values if v is not None])
    if math.isnan(mean):
        return "n/a"
    n = len([v for v in values if v is not None])
    return f"{mean:.{digits}f}" + (f"{pm}{std:.{digits}f}" if n > 1 else "")


def _ok(runs: List[SavedRun]) -> List[dict]:
    return [m for m in (r.metrics() for r in runs) if not m["failure"]]


def table1(experiments: Sequence[SavedExperiment]) -> str:
    """Test accuracy (%) mean ± std over repeats: one row per model label, one column per group."""
    groups = list(dict.fromkeys(e.group for e in experiments))
    labels = list(dict.fromkeys(label for e in experiments for label in e.runs))
    rows = []
    for label in labels:
        row = [label]
        for group in groups:
            runs = [r for e in experiments if e.group == group for r in e.runs.get(label, [])]
            cell = _fmt([m["test_accuracy"] for m in _ok(runs)], 1, 100.0) if runs else "-"
            row.append(cell + "%" if cell[0].isdigit() else cell)
        rows.append(row)
    return markdown_table(["", *groups], rows)


DETAIL_HEADER = ("experiment", "model", "params", "test accuracy (%)", "test loss", "NFE fwd",
                 "NFE bwd", "train time/run (s)", "median step (ms)", "iterations", "runs ok")


def details_table(experiments: Sequence[SavedExperiment]) -> str:
    rows = []
    for e in experiments:
        for label, runs in e.runs.items():
            ok = _ok(runs)
            params = sorted({r.parameters for r in runs if r.parameters is not None})
            rows.append([e.name, label, ", ".join(f"{p:,}" for p in params) or "n/a",
                         _fmt([m["test_accuracy"] for m in ok], 2, 100.0),
                         _fmt([m["test_loss"] for m in ok], 4),
                         _fmt([m["nfe_forward"] for m in ok], 1), _fmt([m["nfe_backward"] for m in ok], 1),
                         _fmt([m["time"] for m in ok], 1), _fmt([m["step_ms"] for m in ok], 0),
                         _fmt([m["iterations"] for m in ok], 0),
                         f"{len(ok)}/{len(runs)}"])
    return markdown_table(DETAIL_HEADER, rows)


def _histories_by_group(experiments: Sequence[SavedExperiment]) -> Dict[str, Dict[str, List[dict]]]:
    out: Dict[str, Dict[str, List[dict]]] = {}
    for e in experiments:
        for label, runs in e.runs.items():
            group = out.setdefault(e.group, {})
            key = label if label not in group else f"{e.name}/{label}"
            group[key] = [r.history for r in runs]
    return out


def make_figures(experiments: Sequence[SavedExperiment], out_dir: Path,
                 log=print) -> List[Path]:
    """Per group: loss, NFE and accuracy against iterations, NFE against loss, accuracy
    against NFE (the last two for ODE models only)."""
    from .. import viz
    paths: List[Path] = []
    for group, hist in _histories_by_group(experiments).items():
        ode = {k: v for k, v in hist.items() if any(h.get("nfe_forward") and h["nfe_forward"][0]
                                                     is not None for h in v)}
        plots = [("loss", lambda p: viz.plot_histories(hist, p, key="loss", ylabel="training loss",
                                                       logy=True, title=f"{group}: training loss")),
                 ("accuracy", lambda p: viz.plot_accuracy(hist, p, title=f"{group}: accuracy"))]
        if ode:
            plots += [("nfe", lambda p: viz.plot_nfe(ode, p, title=f"{group}: NFE per iteration")),
                      ("nfe_vs_loss", lambda p: viz.plot_nfe_vs_loss(ode, p, title=f"{group}: NFE against loss")),
                      ("accuracy_vs_nfe", lambda p: viz.plot_accuracy_vs_nfe(
                          ode, p, title=f"{group}: accuracy against NFE"))]
        for name, draw in plots:
            try:
                paths.append(draw(out_dir / f"{group}_{name}.png"))
            except Exception as err:  # one figure failing must not lose the others
                log(f"  figure {group}_{name} not drawn: {type(err).__name__}: {err}")
    return paths


def report_markdown(experiments: Sequence[SavedExperiment], figures: Sequence[Path], out_dir: Path) -> str:
    text = "# Results\n\nTest accuracy (%), mean ± std over repeats (the paper's Table 1):\n\n"
    text += table1(experiments)
    text += ("\nPer run (NFE: mean per training iteration over the last epoch, forward / backward; "
             "time: summed wall time of the training steps, evaluation excluded; median step: "
             "the median wall time of one training step):\n\n")
    text += details_table(experiments)
    failures = [(e, r) for e in experiments for runs in e.runs.values() for r in runs
                if r.history.get("failure")]
    for e, r in failures:
        f = r.history["failure"]
        text += f"\n- {e.name} {r.label} rep{r.repeat}: {f.get('error')} in {f.get('phase')}: {f.get('message')}"
    text += "\n\nSources: " + ", ".join(f"`{e.path}`" for e in experiments) + "\n"
    if figures:
        text += "\n" + "".join(f"![{p.stem}]({p.relative_to(out_dir)})\n" for p in figures)
    return text


def write_report(run_dirs: Sequence, out_dir, log=print) -> Path:
    """Read every RUN_DIR, write OUT/report.md, OUT/report.json and the figures; return report.md."""
    experiments = [load_run_dir(p) for p in run_dirs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = make_figures(experiments, out_dir, log=log)
    text = report_markdown(experiments, figures, out_dir)
    atomic_write_text(text, out_dir / "report.md")
    dump_json({e.name: {label: [{"repeat": r.repeat, "parameters": r.parameters, **r.metrics()}
                                for r in runs] for label, runs in e.runs.items()}
               for e in experiments}, out_dir / "report.json")
    return out_dir / "report.md"


__all__ = ["SavedRun", "SavedExperiment", "load_run_dir", "table1", "details_table",
           "make_figures", "report_markdown", "write_report"]
