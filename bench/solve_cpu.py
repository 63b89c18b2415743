"""Forward-solve benchmarks on the CPU: anode_native.odeint against torchdiffeq (and torchode).

Cases (each library in the same process, interleaved, at the same NFE, medians of repeats):
  toy       the paper's toy ANODE MLP field (state 2 + 1 augmented, hidden 32, time as an input),
            batch 256, rtol = atol = 1e-3, t in [0, 1]
  overhead  the solver's own time per step (wall time minus time inside func, per step) on a tiny
            linear problem (state 2, batch 1, t in [0, 10], rtol = atol = 1e-6), float32 and float64
  batch     forward time against batch size 64 ... 65,536 (toy field, rtol = atol = 1e-3)
  dim       forward time against state dimension 2 ... 2048 (MLP field hidden 32, batch 256)
  tol       forward time against tolerance, NFE from 14 to ~500 (toy field, float64, batch 256)

Forward solves run under torch.no_grad(). Usage:
  python bench/solve_cpu.py [--quick] [--json PATH] [--threads N] [--cases toy,overhead,...]
"""
from __future__ import annotations

import statistics

import torch

from common import (finish, OURS, TORCHDIFFEQ, TORCHODE, CountingFunc, LinearField, ToyField,
                    TorchodeSolver, anode_native, bench_args, fmt_time, record,
                    setup_threads, solve_torchdiffeq, summarize, time_interleaved, toy_inputs,
                    torchode_available)

CASES = ("toy", "overhead", "batch", "dim", "tol")


def compare_forward(case, label, func, y0, t, rtol, atol, repeats=5, warmup=1,
                    with_torchode=True, params=None):
    """Time one forward solve per library, interleaved; returns a result row (see common.record).

    Every library solves through its own CountingFunc(timed=True) wrapper of the same `func`, so
    each repeat yields its NFE and the seconds spent inside func; overhead per step is
    (wall - func time) / steps. Steps: ours from SolverStats, torchdiffeq (nfe - 2) / 6 (dopri5:
    two evaluations to pick the first step, six per step), torchode its max per-sample n_steps."""
    wrapped = {OURS: CountingFunc(func, timed=True), TORCHDIFFEQ: CountingFunc(func, timed=True)}
    stats = anode_native.SolverStats()
    fns = {OURS: lambda: anode_native.odeint(wrapped[OURS], y0, t, rtol=rtol, atol=atol,
                                             stats=stats),
           TORCHDIFFEQ: lambda: solve_torchdiffeq(wrapped[TORCHDIFFEQ], y0, t, rtol, atol)}
    tode = None
    if with_torchode and torchode_available():
        wrapped[TORCHODE] = CountingFunc(func, timed=True)
        tode = TorchodeSolver(wrapped[TORCHODE], rtol, atol)
        fns[TORCHODE] = lambda: tode(y0, t)
    func_s = {name: [] for name in fns}
    nfe = {name: [] for name in fns}

    def run(name):
        wrapped[name].reset()
        fns[name]()
        func_s[name].append(wrapped[name].func_s)
        nfe[name].append(wrapped[name].nfe)

    with torch.no_grad():
        times = time_interleaved({name: (lambda n=name: run(n)) for name in fns},
                                 repeats=repeats, warmup=warmup)
    libs = {}
    for name in fns:
        k = len(times[name])
        res = summarize(times[name])
        res["nfe"] = nfe[name][-1]
        res["nfe_all_repeats_equal"] = len(set(nfe[name])) == 1
        if name == OURS:
            res["steps"] = stats.steps_forward
            res["nfe_stats"] = stats.nfe_forward
        elif name == TORCHDIFFEQ:
            res["steps"] = max(1, (res["nfe"] - 2) // 6)
        else:
            res["steps"] = tode.last_stats.get("n_steps", 1)
            res["nfe_per_sample_max"] = tode.last_stats.get("n_f_evals")
        res["func_s"] = statistics.median(func_s[name][-k:])
        over = [(w - f) / res["steps"] for w, f in zip(times[name], func_s[name][-k:])]
        res["overhead_per_step_s"] = statistics.median(over)
        libs[name] = res
    params = dict(params or {}, rtol=rtol, atol=atol, dtype=str(y0.dtype).replace("torch.", ""),
                  shape=list(y0.shape), t=[float(t[0]), float(t[-1])], repeats=repeats)
    row = record(case, label, params, libs)
    if TORCHDIFFEQ in row["libs"] and libs[OURS]["overhead_per_step_s"] > 0:
        row["overhead_ratio"] = libs[TORCHDIFFEQ]["overhead_per_step_s"] / libs[OURS]["overhead_per_step_s"]
    print_row(row)
    return row


def print_row(row) -> None:
    libs = row["libs"]
    parts = [f"{name} {fmt_time(res['median_s'])} (nfe {res['nfe']}, overhead/step "
             f"{fmt_time(res['overhead_per_step_s'])})" for name, res in libs.items()]
    ratios = ", ".join(f"{name}/ours {x:.2f}x" for name, x in row["speedup"].items())
    nfe = "NFE equal" if row.get("nfe_equal") else "NFE MISMATCH"
    print(f"[{row['case']}] {row['label']}: " + "; ".join(parts) + f" | {ratios} | {nfe}", flush=True)


def case_toy(quick=False):
    torch.manual_seed(0)
    batch = 32 if quick else 256
    func, y0 = ToyField(), toy_inputs(batch)
    t = torch.tensor([0.0, 1.0])
    return [compare_forward("toy", f"MLP batch {batch}", func, y0, t, 1e-3, 1e-3,
                            repeats=1 if quick else 30, warmup=1 if quick else 3,
                            params={"batch": batch, "hidden": 32})]


def case_overhead(quick=False):
    rows = []
    for dtype in (torch.float32, torch.float64):
        func = LinearField(2, dtype)
        y0 = torch.tensor([[1.0, 0.5]], dtype=dtype)
        t = torch.tensor([0.0, 1.0 if quick else 10.0], dtype=dtype)
        rows.append(compare_forward("overhead", str(dtype).replace("torch.", ""), func, y0, t,
                                    1e-6, 1e-6, repeats=1 if quick else 30,
                                    warmup=1 if quick else 3, params={"problem": "linear 2x2"}))
    return rows


def case_batch(quick=False):
    rows = []
    batches = [64, 128] if quick else [64, 256, 1024, 4096, 16384, 65536]
    t = torch.tensor([0.0, 1.0])
    for batch in batches:
        torch.manual_seed(0)
        rows.append(compare_forward("batch", str(batch), ToyField(), toy_inputs(batch), t,
                                    1e-3, 1e-3, repeats=1 if quick else (5 if batch > 4096 else 10),
                                    warmup=1, params={"batch": batch, "x": batch}))
    return rows


def case_dim(quick=False):
    rows = []
    dims = [2, 8] if quick else [2, 8, 32, 128, 512, 2048]
    batch = 16 if quick else 256
    t = torch.tensor([0.0, 1.0])
    for dim in dims:
        torch.manual_seed(0)
        y0 = torch.randn(batch, dim)
        rows.append(compare_forward("dim", str(dim), ToyField(state_dim=dim), y0, t, 1e-3, 1e-3,
                                    repeats=1 if quick else 7, warmup=1,
                                    params={"state_dim": dim, "batch": batch, "x": dim}))
    return rows


def case_tol(quick=False):
    rows = []
    tols = [1e-2, 1e-4] if quick else [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 3e-10]
    batch = 16 if quick else 256
    torch.manual_seed(0)
    func, y0 = ToyField().double(), toy_inputs(batch, torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    for tol in tols:
        row = compare_forward("tol", f"{tol:g}", func, y0, t, tol, tol,
                              repeats=1 if quick else 5, warmup=1,
                              params={"batch": batch, "x": tol})
        row["params"]["nfe"] = row["libs"][OURS]["nfe"]
        rows.append(row)
    return rows


def run_cases(names=CASES, quick=False):
    """Run the named cases; returns (rows, notes)."""
    notes = []
    if not torchode_available():
        notes.append("torchode is not installed: its column is skipped.")
    rows = []
    for name in names:
        rows += globals()[f"case_{name}"](quick)
    bad = [f"{r['case']} {r['label']}" for r in rows if not r.get("nfe_equal", True)]
    if bad:
        notes.append("NFE differs between anode_native and torchdiffeq in: " + ", ".join(bad))
    return rows, notes


def main():
    parser = bench_args(__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of "
                        + ", ".join(CASES))
    args = parser.parse_args()
    threads = setup_threads(args.threads)
    print(f"torch {torch.__version__}, {threads} thread(s)")
    rows, notes = run_cases([c for c in args.cases.split(",") if c], args.quick)
    finish(args, rows, notes)


if __name__ == "__main__":
    main()
