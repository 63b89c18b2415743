"""Native vector fields against the Python path and torchdiffeq (the native-fields issue).

The paper's 2-D toy ANODE field, `anode_native.ODEFunc(2, 32, augment_dim=1, time_dependent=True)`,
at batch 256 and 4,096, rtol = atol = 1e-3, t in [0, 1]:
  solve   forward solve under no_grad
  train   one training iteration: zero_grad, forward (ODEBlock final state), MSE, backward
          (direct backprop), Adam step; weights and Adam state restored untimed before each repeat
Columns: anode_native (native field: evaluated in C++, one fused autograd node per evaluation),
anode_native_python (the same module called through Python: `python_fields()`), torchdiffeq.
Usage: python bench/native_fields.py [--quick] [--json PATH] [--threads N]
"""
from __future__ import annotations

import copy

import torch

from common import (OURS, TORCHDIFFEQ, CountingFunc, bench_args, finish, fmt_time, record, setup_threads,
                    summarize, time_interleaved)
import anode_native  # noqa: E402  (common puts the checkout on sys.path)
import torchdiffeq  # noqa: E402
from anode_native.native_fields import native_form, python_fields  # noqa: E402

PYTHON_PATH = "anode_native_python"
RTOL = ATOL = 1e-3


def _problem(batch, seed=0):
    torch.manual_seed(seed)
    field = anode_native.ODEFunc(2, 32, augment_dim=1, time_dependent=True)
    y0 = torch.randn(batch, 3)
    target = torch.randn(batch, 3)
    return field, y0, target, torch.tensor([0.0, 1.0])


def _solvers(field):
    counting = CountingFunc(field)

    def ours(y0, t):
        return anode_native.odeint(field, y0, t, rtol=RTOL, atol=ATOL)

    def python(y0, t):
        with python_fields():
            return anode_native.odeint(field, y0, t, rtol=RTOL, atol=ATOL)

    def theirs(y0, t):
        return torchdiffeq.odeint(counting, y0, t, rtol=RTOL, atol=ATOL)

    return {OURS: ours, PYTHON_PATH: python, TORCHDIFFEQ: theirs}, counting


def bench_solve(batch, repeats):
    field, y0, _, t = _problem(batch)
    assert native_form(field) is not None, "the toy field must take the native path"
    solvers, counting = _solvers(field)
    stats = anode_native.SolverStats()
    with torch.no_grad():
        anode_native.odeint(field, y0, t, rtol=RTOL, atol=ATOL, stats=stats)
        counting.reset()
        torchdiffeq.odeint(counting, y0, t, rtol=RTOL, atol=ATOL)
        nfe_theirs = counting.nfe
        times = time_interleaved({k: (lambda s=s: s(y0, t)) for k, s in solvers.items()}, repeats=repeats, warmup=2)
    libs = {k: summarize(v) for k, v in times.items()}
    libs[OURS]["nfe"] = libs[PYTHON_PATH]["nfe"] = stats.nfe_forward
    libs[TORCHDIFFEQ]["nfe"] = nfe_theirs
    return record("native_solve", f"batch {batch}", {"batch": batch, "rtol": RTOL}, libs)


def bench_train(batch, repeats):
    field, y0, target, t = _problem(batch)
    solvers, counting = _solvers(field)
    initial = copy.deepcopy(field.state_dict())
    optimizer = torch.optim.Adam(field.parameters(), lr=1e-3)

    def reset():
        field.load_state_dict(initial)
        optimizer.state.clear()

    def iteration(solve):
        optimizer.zero_grad()
        out = solve(y0, t)[-1]
        torch.nn.functional.mse_loss(out, target).backward()
        optimizer.step()

    fns = {k: (lambda s=s: iteration(s)) for k, s in solvers.items()}
    times = time_interleaved(fns, repeats=repeats, warmup=2, before={k: reset for k in fns})
    libs = {k: summarize(v) for k, v in times.items()}
    stats = anode_native.SolverStats()
    reset()
    anode_native.odeint(field, y0, t, rtol=RTOL, atol=ATOL, stats=stats)
    counting.reset()
    torchdiffeq.odeint(counting, y0, t, rtol=RTOL, atol=ATOL)
    libs[OURS]["nfe"] = libs[PYTHON_PATH]["nfe"] = stats.nfe_forward
    libs[TORCHDIFFEQ]["nfe"] = counting.nfe
    return record("native_train", f"batch {batch}", {"batch": batch, "rtol": RTOL}, libs)


def run_cases(quick=False):
    batches = (64,) if quick else (256, 4096)
    repeats = 1 if quick else 15
    rows = []
    for batch in batches:
        rows.append(bench_solve(batch, repeats))
        rows.append(bench_train(batch, repeats))
    for row in rows:
        libs = row["libs"]
        print(f"{row['case']:13s} {row['label']:11s} native {fmt_time(libs[OURS]['median_s'])}  "
              f"python-field {fmt_time(libs[PYTHON_PATH]['median_s'])}  "
              f"torchdiffeq {fmt_time(libs[TORCHDIFFEQ]['median_s'])}  "
              f"torchdiffeq/native {row['speedup'][TORCHDIFFEQ]:.1f}x  "
              f"python/native {row['speedup'][PYTHON_PATH]:.1f}x  "
              f"NFE {'equal' if row.get('nfe_equal') else 'MISMATCH'}", flush=True)
    return rows


def main(argv=None):
    args = bench_args(__doc__.splitlines()[0]).parse_args(argv)
    setup_threads(args.threads)
    finish(args, run_cases(args.quick))


if __name__ == "__main__":
    main()
