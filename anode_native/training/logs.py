"""JSON and CSV logs of training histories, and the Markdown summary table."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Dict, List, Sequence

from .checkpoint import atomic_write_text


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_history(history: dict, out_dir: Path) -> None:
    """history.json (everything) and history.csv (one row per iteration); val_history.csv too
    when there are validation records."""
    out_dir = Path(out_dir)
    atomic_write_text(json.dumps(_jsonable(history), indent=1), out_dir / "history.json")
    keys = [k for k in ("iteration", "epoch", "loss", "nfe_forward", "nfe_backward", "accuracy", "time")
            if k in history]
    atomic_write_text(_csv(keys, [history[k] for k in keys]), out_dir / "history.csv")
    val = history.get("val") or {}
    if val.get("iteration"):
        vkeys = list(val)
        atomic_write_text(_csv(vkeys, [val[k] for k in vkeys]), out_dir / "val_history.csv")


def _csv(header: Sequence[str], columns: Sequence[List]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in zip(*columns):
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def read_history(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def mean_std(values: Sequence[float]) -> tuple:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / len(vals)
    return mean, math.sqrt(var)


def fmt_mean_std(values: Sequence[float], digits: int = 4) -> str:
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "n/a"
    if len([v for v in values if v is not None]) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def dump_json(obj: Dict, path: Path) -> None:
    atomic_write_text(json.dumps(_jsonable(obj), indent=1), Path(path))
