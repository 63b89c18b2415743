"""Shared machinery of the benchmark suite (bench/run_all.py and the per-topic scripts).

Small API, meant to be reused by every bench script:

    machine_info()                      -> dict: CPU model, cores, torch threads/version, GPU
    setup_threads(n)                    -> torch.set_num_threads(n) (the suite uses 1 by default)
    CountingFunc(func, timed=False)     wrap a right-hand side; counts calls (.nfe) and, if timed,
                                        the seconds spent inside it (.func_s)
    time_interleaved(fns, repeats, warmup, device, before=None) -> {name: [seconds per repeat]}
                                        every repeat runs each callable once, in a rotated order;
                                        before[name]() (untimed) runs ahead of each call
    summarize(times)                    -> {"median_s", "min_s", "max_s", "times_s"}
    record(case, label, params, libs, baseline="anode_native", metric="median_s")
                                        -> one result row (dict) with speedups vs the baseline
    solve_anode / solve_torchdiffeq / solve_torchode(func, y0, t, rtol, atol, stats=None)
                                        one forward solve with each library (same call shape)
    ToyField(state_dim=3, hidden=32)    the paper's 2-D toy ANODE field, time as an input
    LinearField(dim, dtype)             dy/dt = A y with a fixed, stable A (solver-dominated)
    write_json(path, obj), markdown_table(rows, columns) -> str, fmt_time(seconds) -> str
    bench_args(description) -> argparse parser with --quick, --json PATH, --threads N
    save_rows(path, rows, notes)        write {"machine", "rows", "notes"} for run_all to merge
    finish(args, rows, notes)           end of a script's main(): print notes, save if --json

Script convention (what bench/run_all.py expects of bench/*.py it runs as a subprocess):
`python bench/X.py --json PATH [--quick]` writes {"rows": [record(...), ...], "notes": [...]}
to PATH (save_rows does it) and prints a human-readable summary. --quick: tiny sizes, 1 repeat,
seconds in all (run by the smoke test).

A result row looks like
    {"case": "overhead", "label": "float32", "params": {...},
     "libs": {"anode_native": {"median_s": ..., "times_s": [...], "nfe": 26, ...},
              "torchdiffeq": {...}, "torchode": {...}},
     "speedup": {"torchdiffeq": t_torchdiffeq / t_ours, ...}, "nfe_equal": true}
Speedups above 1 mean anode_native is faster.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from typing import Callable, Dict, List, Optional

import sys

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, ROOT)

import anode_native  # noqa: E402

try:  # required by the CPU suite; a GPU machine without it still runs bench/solve_cuda.py alone
    import torchdiffeq  # noqa: E402
except ImportError:
    torchdiffeq = None

try:  # optional third column
    import torchode
except Exception:  # noqa: BLE001 - any import failure means "not available"
    torchode = None

OURS, TORCHDIFFEQ, TORCHODE = "anode_native", "torchdiffeq", "torchode"
DEFAULT_THREADS = 1


# ----------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """The machine a result was taken on (goes into every results file)."""
    info = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "torchdiffeq_version": getattr(torchdiffeq, "__version__", "?"),
        "torchode_version": getattr(torchode, "__version__", "installed") if torchode else None,
        "anode_native_version": anode_native.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    return info


def setup_threads(n: Optional[int] = None) -> int:
    """Set torch's intra-op threads (default DEFAULT_THREADS = 1) and return the value used.

    One thread keeps timings stable on a shared 2-core machine; both libraries get the same."""
    n = DEFAULT_THREADS if n is None else int(n)
    torch.set_num_threads(n)
    return n


# ----------------------------------------------------------------------------- counting
class CountingFunc(nn.Module):
    """Wraps a right-hand side `func(t, y)`; counts calls in `.nfe` and, when `timed`, sums the
    wall time spent inside `func` in `.func_s` (to get the solver's own overhead)."""

    def __init__(self, func: Callable, timed: bool = False):
        super().__init__()
        self.func = func
        self.timed = timed
        self.nfe = 0
        self.func_s = 0.0

    def reset(self) -> None:
        self.nfe, self.func_s = 0, 0.0

    def __call__(self, t, y):  # skips nn.Module.__call__'s hook machinery: less wrapper cost
        return self.forward(t, y)

    def forward(self, t, y):
        self.nfe += 1
        if not self.timed:
            return self.func(t, y)
        start = time.perf_counter()
        out = self.func(t, y)
        self.func_s += time.perf_counter() - start
        return out


# ----------------------------------------------------------------------------- timing
def _sync(device) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_interleaved(fns: Dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
                     device=None, before: Optional[Dict[str, Callable[[], object]]] = None
                     ) -> Dict[str, List[float]]:
    """Time each zero-argument callable `repeats` times, interleaved: every repeat runs all of
    them once, the order rotated between repeats so no library always goes first. `warmup`
    untimed rounds come first; `before[name]()`, if given, runs untimed ahead of every call (to
    reset weights, counters). Returns the per-repeat wall times in seconds."""
    names = list(fns)
    before = before or {}
    for _ in range(warmup):
        for name in names:
            if name in before:
                before[name]()
            fns[name]()
    _sync(device)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if name in before:
                before[name]()
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def summarize(times: List[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "times_s": list(times)}


def record(case: str, label: str, params: dict, libs: Dict[str, dict],
           baseline: str = OURS, metric: str = "median_s") -> dict:
    """One result row. `libs[name]` holds at least `metric`; speedup = other / baseline.
    `nfe_equal` compares anode_native's and torchdiffeq's "nfe" when both are given."""
    base = libs.get(baseline, {}).get(metric)
    speedup = {}
    for name, res in libs.items():
        if name != baseline and base and res.get(metric):
            speedup[name] = res[metric] / base
    row = {"case": case, "label": label, "params": params, "libs": libs, "speedup": speedup}
    if "nfe" in libs.get(OURS, {}) and "nfe" in libs.get(TORCHDIFFEQ, {}):
        row["nfe_equal"] = libs[OURS]["nfe"] == libs[TORCHDIFFEQ]["nfe"]
    return row


# ----------------------------------------------------------------------------- solvers
def solve_anode(func, y0, t, rtol, atol, stats=None):
    """One dopri5 solve on the native engine (stats: an anode_native.SolverStats to fill)."""
    return anode_native.odeint(func, y0, t, rtol=rtol, atol=atol, method="dopri5", stats=stats)


def solve_torchdiffeq(func, y0, t, rtol, atol, stats=None):
    """One torchdiffeq dopri5 solve (count NFE by wrapping func in CountingFunc)."""
    return torchdiffeq.odeint(func, y0, t, rtol=rtol, atol=atol, method="dopri5")


class TorchodeSolver:
    """torchode's documented pipeline (ODETerm, Dopri5, IntegralController, AutoDiffAdjoint),
    built once. torchode takes per-sample steps: y0 must be (batch, features), func gets t of
    shape (batch,). Not compiled (torch.compile would change both sides of the comparison).
    `.last_stats` holds torchode's per-sample stats of the last solve (as python ints, max)."""

    def __init__(self, func, rtol, atol):
        if torchode is None:
            raise RuntimeError("torchode is not installed")
        term = torchode.ODETerm(func)
        step = torchode.Dopri5(term=term)
        ctrl = torchode.IntegralController(atol=atol, rtol=rtol, term=term)
        self.solver = torchode.AutoDiffAdjoint(step, ctrl)
        self.last_stats: dict = {}

    def __call__(self, y0, t):
        t_eval = t.to(y0).unsqueeze(0).expand(y0.shape[0], -1)
        sol = self.solver.solve(torchode.InitialValueProblem(y0=y0, t_eval=t_eval))
        self.last_stats = {k: int(v.max()) for k, v in sol.stats.items() if torch.is_tensor(v)}
        return sol.ys.transpose(0, 1)  # (len(t), batch, features) like odeint


def torchode_available() -> bool:
    return torchode is not None


# ----------------------------------------------------------------------------- problems
class ToyField(nn.Module):
    """The paper's toy ANODE vector field: state 2 data + 1 augmented dims, time as an input,
    Linear(1 + 3 -> 32) - ReLU - Linear(32 -> 32) - ReLU - Linear(32 -> 3).

    Same architecture as anode_native.nn.ODEFunc(2, 32, augment_dim=1, time_dependent=True);
    plain nn so both libraries run the identical module. t may be a scalar or per-sample
    (batch,) (torchode)."""

    def __init__(self, state_dim: int = 3, hidden: int = 32):
        super().__init__()
        self.fc1 = nn.Linear(state_dim + 1, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, state_dim)
        self.act = nn.ReLU()

    def forward(self, t, y):
        t = torch.as_tensor(t, dtype=y.dtype, device=y.device)
        tcol = t.reshape(-1, 1).expand(y.shape[0], 1)
        h = self.act(self.fc1(torch.cat([tcol, y], dim=1)))
        h = self.act(self.fc2(h))
        return self.fc3(h)


class LinearField(nn.Module):
    """dy/dt = y @ A^T for y of shape (batch, dim): a rotation plus mild decay, so the solve
    is cheap and the solver's own per-step work dominates."""

    def __init__(self, dim: int = 2, dtype=torch.float32, device=None):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        skew = torch.randn(dim, dim, generator=g, dtype=torch.float64)
        a = (skew - skew.T) - 0.1 * torch.eye(dim, dtype=torch.float64)
        self.register_buffer("A_T", a.T.contiguous().to(dtype=dtype, device=device))

    def forward(self, t, y):
        return y @ self.A_T


def toy_inputs(batch: int, dtype=torch.float32, device=None, seed: int = 0):
    """A toy ANODE input: 2-D points with one zero augmented dim, shape (batch, 3)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 2, generator=g, dtype=dtype)
    return torch.cat([x, torch.zeros(batch, 1, dtype=dtype)], dim=1).to(device)


# ----------------------------------------------------------------------------- output
def _clean(obj):
    """JSON-safe copy: NaN/inf become None, tensors and numpy scalars become numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if torch.is_tensor(obj):
        return _clean(obj.tolist())
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(_clean(obj), f, indent=1, allow_nan=False)
        f.write("\n")


def fmt_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def markdown_table(rows: List[list], columns: List[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("-" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def bench_args(description: str) -> argparse.ArgumentParser:
    """The common command line of a bench script: --quick, --json PATH, --threads N."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat (smoke test)")
    parser.add_argument("--json", metavar="PATH", help="write the result rows to PATH")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"torch.set_num_threads (default {DEFAULT_THREADS})")
    return parser


def save_rows(path: str, rows: List[dict], notes: Optional[List[str]] = None) -> None:
    """Write a script's result rows in the format bench/run_all.py merges."""
    write_json(path, {"machine": machine_info(), "rows": rows, "notes": list(notes or [])})


def finish(args, rows: List[dict], notes: Optional[List[str]] = None) -> None:
    """The end of every bench script's main(): print the notes, save the rows if --json."""
    for note in notes or []:
        print("note:", note)
    if args.json:
        save_rows(args.json, rows, notes)
