"""Adjoint against the number of solver steps: backward time, backward NFE and memory held for
backward, anode_native.odeint_adjoint against torchdiffeq.odeint_adjoint (case 4 of the suite;
bench/adjoint_cpu.py covers the number of output times).

The toy ANODE field (common.ToyField), float32, batch 256, t in [0, 1], dopri5 with rtol = atol =
1e-3, loss = sum of squares of the final state. The number of steps is set with the `step_t`
option (a grid of N + 1 times every step must land on; also used by the backward solve), N = 4 to
1024, so steps grow without the adjoint ODE of a ReLU field turning stiff at tight tolerances.
Each repeat runs forward + backward, libraries interleaved; the backward pass (loss.backward())
is timed on its own. Memory: bytes of the tensors autograd saves for backward (distinct storages,
recorded with torch.autograd.graph.saved_tensors_hooks) - what a solve keeps alive between
forward and backward; on the CPU there is no allocator peak counter. Direct backprop of the same
solve is recorded alongside for reference (`saved_bytes_direct`).
Usage: python bench/adjoint_steps.py [--quick] [--json PATH] [--threads N]
"""
from __future__ import annotations

import statistics
import time

import torch

from common import (finish, OURS, TORCHDIFFEQ, CountingFunc, ToyField, anode_native, bench_args,
                    fmt_time, record, setup_threads, summarize, time_interleaved,
                    toy_inputs)
import torchdiffeq  # noqa: E402

CASES = ("adjoint_steps",)


def saved_bytes(fn) -> int:
    """Bytes of distinct storages autograd saves while fn() runs (memory held for backward)."""
    seen = {}

    def pack(t):
        try:
            storage = t.untyped_storage()
            seen[(storage.data_ptr(), str(t.device))] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def compare_adjoint(func, y0, t, tol, grid, repeats, warmup, params):
    wrapped = {OURS: CountingFunc(func), TORCHDIFFEQ: CountingFunc(func)}
    solve = {OURS: anode_native.odeint_adjoint, TORCHDIFFEQ: torchdiffeq.odeint_adjoint}
    direct = {OURS: anode_native.odeint, TORCHDIFFEQ: torchdiffeq.odeint}
    stats = anode_native.SolverStats()
    opts = {"step_t": torch.linspace(float(t[0]), float(t[-1]), grid + 1, dtype=t.dtype)}
    backward_s = {name: [] for name in solve}
    nfe = {}

    def run(name):
        f = wrapped[name]
        f.reset()
        kwargs = {"stats": stats} if name == OURS else {}
        ys = solve[name](f, y0, t, rtol=tol, atol=tol, options=opts, **kwargs)
        loss = ys[-1].pow(2).sum()
        forward = f.nfe
        start = time.perf_counter()
        loss.backward()
        backward_s[name].append(time.perf_counter() - start)
        nfe[name] = (forward, f.nfe - forward)
        func.zero_grad(set_to_none=True)

    times = time_interleaved({n: (lambda n=n: run(n)) for n in solve}, repeats=repeats,
                             warmup=warmup)
    libs = {}
    for name in solve:
        res = summarize(times[name])
        res["backward_median_s"] = statistics.median(backward_s[name][-repeats:])
        res["backward_times_s"] = backward_s[name][-repeats:]
        res["nfe"], res["nfe_backward"] = nfe[name]
        res["saved_bytes"] = saved_bytes(
            lambda n=name: solve[n](func, y0, t, rtol=tol, atol=tol, options=opts))
        res["saved_bytes_direct"] = saved_bytes(
            lambda n=name: direct[n](func, y0, t, rtol=tol, atol=tol, options=opts))
        libs[name] = res
    libs[OURS]["nfe_backward_stats"] = stats.nfe_backward
    steps = stats.steps_forward
    row = record("adjoint_steps", f"{steps} steps", dict(
        params, tol=tol, grid=grid, steps=steps, x=steps, x_label="forward solver steps",
        repeats=repeats), libs, metric="backward_median_s")
    row["nfe_backward_equal"] = libs[OURS]["nfe_backward"] == libs[TORCHDIFFEQ]["nfe_backward"]
    print(f"[adjoint_steps] {row['label']}: " + "; ".join(
        f"{n} backward {fmt_time(r['backward_median_s'])} (total {fmt_time(r['median_s'])}, nfe "
        f"{r['nfe']} + {r['nfe_backward']} bwd, saved {r['saved_bytes'] / 1024:.0f} KiB, direct "
        f"{r['saved_bytes_direct'] / 1024:.0f} KiB)" for n, r in libs.items())
        + f" | torchdiffeq/ours backward {row['speedup'].get(TORCHDIFFEQ, 0):.2f}x", flush=True)
    return row


def run_cases(names=CASES, quick=False):
    if not hasattr(anode_native, "odeint_adjoint"):
        return [], ["anode_native.odeint_adjoint is missing: adjoint_steps skipped."]
    grids = [4, 16] if quick else [4, 16, 64, 256, 1024]
    batch = 16 if quick else 256
    torch.manual_seed(0)
    func, y0, t = ToyField(), toy_inputs(batch), torch.tensor([0.0, 1.0])
    rows = [compare_adjoint(func, y0, t, 1e-3, grid,
                            repeats=1 if quick else (3 if grid > 256 else 5), warmup=1,
                            params={"batch": batch, "dtype": "float32", "adjoint": True})
            for grid in grids]
    notes = []
    bad = [r["label"] for r in rows if not r["nfe_equal"]]
    if bad:
        notes.append("adjoint_steps: forward NFE differs in " + ", ".join(bad))
    return rows, notes


def main():
    args = bench_args(__doc__.splitlines()[0]).parse_args()
    print(f"torch {torch.__version__}, {setup_threads(args.threads)} thread(s)")
    rows, notes = run_cases(quick=args.quick)
    finish(args, rows, notes)


if __name__ == "__main__":
    main()
