"""GPU benchmarks: anode_native against torchdiffeq on CUDA, in the same process, at the same NFE.

Cases (names for --cases):
  toy    the paper's toy ANODE MLP field (common.ToyField: Linear(3 + 1 time -> 32) - ReLU -
         Linear(32 -> 32) - ReLU - Linear(32 -> 3)), batch 1,024 and 65,536, float32,
         rtol = atol = 1e-3, t in [0, 1]; forward solves under no_grad. Target on an H200: >= 3x.
  conv   a conv vector field on 28x28 images (anode_native.nn.ConvODEFunc, the MNIST ANODE:
         1 + 5 augmented channels, 64 filters, time-dependent), batch 256, rtol = atol = 1e-3
  ops    the fused ops alone on a 64M-element float32 state, as a fraction of the device's copy
         bandwidth (dst.copy_(src), read + write), and against the same ops written with torch
         ops (anode_native._reference). Target: >= 60 % of copy bandwidth.
  check  not timed: the float64 toy solve on CUDA against the CPU solve (NFE, max difference)

Solves are interleaved (order rotated per repeat) after warm-up; times are medians. Usage:
  python bench/solve_cuda.py [--quick] [--json PATH] [--md PATH] [--cases toy,conv,ops,check]
Without a CUDA device it prints a note and exits 0. Without torchdiffeq, ours is timed alone.
"""
from __future__ import annotations

import statistics

import torch

import common
from common import (OURS, TORCHDIFFEQ, CountingFunc, ToyField, anode_native, bench_args, fmt_time,
                    markdown_table, record, save_rows, summarize, time_interleaved, toy_inputs)
from anode_native import _reference as ref

CASES = ("toy", "conv", "ops", "check")
TORCH_OPS = "torch_ops"      # the reference ops: the same maths as several torch kernels
TOY_TARGET, BANDWIDTH_TARGET = 3.0, 0.60
DEVICE = "cuda"


def compare_solve(case, label, func, y0, t, rtol, atol, repeats, warmup, params):
    """One forward solve per library, interleaved; NFE counted by wrapping func."""
    counted = {OURS: CountingFunc(func)}
    fns = {OURS: lambda: anode_native.odeint(counted[OURS], y0, t, rtol=rtol, atol=atol)}
    if common.torchdiffeq is not None:
        counted[TORCHDIFFEQ] = CountingFunc(func)
        fns[TORCHDIFFEQ] = lambda: common.solve_torchdiffeq(counted[TORCHDIFFEQ], y0, t, rtol, atol)
    with torch.no_grad():
        times = time_interleaved(fns, repeats=repeats, warmup=warmup, device=DEVICE,
                                 before={name: counted[name].reset for name in fns})
        outputs = {}
        for name, fn in fns.items():
            counted[name].reset()
            outputs[name] = fn()
    libs = {name: dict(summarize(times[name]), nfe=counted[name].nfe) for name in fns}
    params = dict(params, rtol=rtol, atol=atol, dtype=str(y0.dtype).replace("torch.", ""),
                  shape=list(y0.shape), repeats=repeats)
    if TORCHDIFFEQ in outputs:
        params["max_abs_diff_vs_torchdiffeq"] = (outputs[OURS] - outputs[TORCHDIFFEQ]).abs().max().item()
    row = record(case, label, params, libs)
    ratio = row["speedup"].get(TORCHDIFFEQ)
    print(f"[{case}] {label}: " + ", ".join(f"{n} {fmt_time(r['median_s'])} (nfe {r['nfe']})" for n, r in libs.items())
          + (f" | torchdiffeq/ours {ratio:.2f}x | NFE {'equal' if row['nfe_equal'] else 'DIFFER'}" if ratio else ""),
          flush=True)
    return row


def case_toy(quick, notes):
    rows = []
    for batch in ((64, 256) if quick else (1024, 65536)):
        torch.manual_seed(0)
        func = ToyField().to(DEVICE)
        y0 = toy_inputs(batch, device=DEVICE)
        t = torch.tensor([0.0, 1.0], device=DEVICE)
        rows.append(compare_solve("cuda_toy", f"toy MLP batch {batch}", func, y0, t, 1e-3, 1e-3,
                                  repeats=1 if quick else 20, warmup=1 if quick else 3,
                                  params={"batch": batch, "hidden": 32, "target_speedup": TOY_TARGET}))
    return rows


def case_conv(quick, notes):
    from anode_native.nn import ConvODEFunc
    batch = 8 if quick else 256
    torch.manual_seed(0)
    func = ConvODEFunc((1, 28, 28), num_filters=64, augment_dim=5, time_dependent=True).to(DEVICE)
    images = torch.rand(batch, 1, 28, 28, device=DEVICE)
    y0 = torch.cat([images, torch.zeros(batch, 5, 28, 28, device=DEVICE)], dim=1)
    t = torch.tensor([0.0, 1.0], device=DEVICE)
    return [compare_solve("cuda_conv", f"conv 28x28 batch {batch}", func, y0, t, 1e-3, 1e-3,
                          repeats=1 if quick else 10, warmup=1 if quick else 2,
                          params={"batch": batch, "filters": 64, "augment_dim": 5})]


def device_seconds(fn, iters):
    """Seconds per call of fn, from CUDA events around `iters` back-to-back calls."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / iters


def time_device(fns, repeats, iters):
    for fn in fns.values():  # warm-up
        fn()
    torch.cuda.synchronize()
    times = {name: [] for name in fns}
    for r in range(repeats):
        names = list(fns)[r % len(fns):] + list(fns)[:r % len(fns)]
        for name in names:
            times[name].append(device_seconds(fns[name], iters))
    return times


def _max_diff(a, b):
    a, b = (list(a), list(b)) if isinstance(a, (tuple, list)) else ([a], [b])
    return max((x.double() - y.double()).abs().max().item() for x, y in zip(a, b))


def case_ops(quick, notes):
    n = (1 << 20) if quick else (64 << 20)
    repeats, iters = (1, 2) if quick else (7, 10)
    g = torch.Generator(device=DEVICE).manual_seed(0)
    y0, y1, *k = [torch.randn(n, device=DEVICE, generator=g) for _ in range(9)]
    grad = torch.randn(1, n, device=DEVICE, generator=g)
    tol = torch.tensor(1e-3, dtype=torch.float64, device=DEVICE)
    nat = torch.ops.anode_native
    b, e, a5 = list(ref.B), list(ref.E), list(ref.A[5])
    dst = torch.empty_like(y0)
    copy_s = statistics.median(time_device({"copy": lambda: dst.copy_(y0)}, repeats, iters)["copy"])
    elem = y0.element_size()
    copy_bw = 2 * n * elem / copy_s
    print(f"[cuda_ops] device copy: {copy_bw / 1e9:.0f} GB/s ({fmt_time(copy_s)} for {n:,} float32)", flush=True)
    # name: (arrays moved through DRAM (stages with a zero weight are not read), ours, torch ops)
    specs = {
        "rk_combine, 5 stages": (7, lambda: nat.rk_combine(y0, k[:5], a5, 0.1),
                                 lambda: ref.rk_combine(y0, k[:5], a5, 0.1)),
        "rk_step_error, 7 stages": (9, lambda: nat.rk_step_error(y0, k, b, e, 0.1),
                                    lambda: ref.rk_step_error(y0, k, b, e, 0.1)),
        "rk_error_ratio, 7 stages": (8, lambda: nat.rk_error_ratio(y0, y1, k, e, 0.1, tol, tol, []),
                                     lambda: ref.rk_error_ratio(y0, y1, k, e, 0.1, tol, tol, [])),
        "dopri5_dense, 1 point": (10, lambda: nat.dopri5_dense(y0, y1, k, 0.1, [0.5]),
                                  lambda: ref.dopri5_dense(y0, y1, k, 0.1, [0.5])),
        "rk_stage_grads, 7 stages": (9, lambda: nat.rk_stage_grads(y0, y1, b, e, 0.1),
                                     lambda: [0.1 * (u * y0 + v * y1) for u, v in zip(b, e)]),
        "dopri5_dense_backward, 1 point": (10, lambda: nat.dopri5_dense_backward(grad, 0.1, [0.5]), None),
    }
    rows = []
    with torch.no_grad():
        for label, (arrays, ours, torch_ops) in specs.items():
            fns = {OURS: ours} if torch_ops is None else {OURS: ours, TORCH_OPS: torch_ops}
            times = time_device(fns, repeats, iters)
            libs = {name: summarize(times[name]) for name in fns}
            bandwidth = arrays * n * elem / libs[OURS]["median_s"]
            libs[OURS].update(bandwidth_GBps=bandwidth / 1e9, fraction_of_copy=bandwidth / copy_bw)
            params = {"elements": n, "dtype": "float32", "arrays_moved": arrays, "copy_GBps": copy_bw / 1e9,
                      "target_fraction": BANDWIDTH_TARGET, "repeats": repeats, "iters": iters}
            if torch_ops is not None and "backward" not in label:
                params["max_abs_diff_vs_reference"] = _max_diff(ours(), torch_ops())
            row = record("cuda_ops", label, params, libs)
            rows.append(row)
            print(f"[cuda_ops] {label}: {fmt_time(libs[OURS]['median_s'])}, {bandwidth / 1e9:.0f} GB/s = "
                  f"{100 * bandwidth / copy_bw:.0f} % of copy"
                  + (f" | torch ops / ours {row['speedup'][TORCH_OPS]:.2f}x" if TORCH_OPS in row["speedup"] else ""),
                  flush=True)
    return rows


def case_check(quick, notes):
    """Not timed: the same float64 solve on CUDA and on the CPU (and torchdiffeq on CUDA)."""
    batch = 64 if quick else 1024
    torch.manual_seed(0)
    field = ToyField().double()
    y0 = toy_inputs(batch, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    outs, nfe = {}, {}
    with torch.no_grad():
        for device in ("cpu", DEVICE):
            func = CountingFunc(field.to(device))
            outs[device], nfe[device] = anode_native.odeint(func, y0.to(device), t, rtol=1e-7, atol=1e-9), func.nfe
        if common.torchdiffeq is not None:
            func = CountingFunc(field.to(DEVICE))
            outs["torchdiffeq"] = common.solve_torchdiffeq(func, y0.to(DEVICE), t.to(DEVICE), 1e-7, 1e-9)
            nfe["torchdiffeq"] = func.nfe
    for other in [name for name in outs if name != DEVICE]:
        diff = (outs[other].cpu() - outs[DEVICE].cpu()).abs().max().item()
        note = (f"check: float64 toy solve batch {batch}, ours on CUDA vs {'ours on the CPU' if other == 'cpu' else other}:"
                f" NFE {nfe[DEVICE]} vs {nfe[other]}, max |diff| {diff:.1e}")
        print("[cuda_check] " + note, flush=True)
        notes.append(note)
        if nfe[other] != nfe[DEVICE] or not diff < 1e-9:
            notes.append(f"CHECK FAILED: {note}")
    return []


RUN = {"toy": case_toy, "conv": case_conv, "ops": case_ops, "check": case_check}


def summary(rows):
    """The short table gpu_check.sh prints last."""
    table = []
    for row in rows:
        ours = row["libs"][OURS]
        if row["case"] == "cuda_ops":
            frac = ours["fraction_of_copy"]
            other = row["speedup"].get(TORCH_OPS)
            table.append([row["label"], fmt_time(ours["median_s"]), f"{100 * frac:.0f} % of copy bw",
                          f"{other:.2f}x vs torch ops" if other else "-",
                          "yes" if frac >= BANDWIDTH_TARGET else "NO"])
        else:
            ratio = row["speedup"].get(TORCHDIFFEQ)
            nfe = " / ".join(str(r["nfe"]) for r in row["libs"].values())
            met = "-" if row["case"] != "cuda_toy" or ratio is None else ("yes" if ratio >= TOY_TARGET else "NO")
            table.append([row["label"], fmt_time(ours["median_s"]), f"NFE {nfe}",
                          f"{ratio:.2f}x vs torchdiffeq" if ratio else "torchdiffeq missing", met])
    return markdown_table(table, ["case", "anode_native", "NFE / bandwidth", "speed-up", "target met"])


def main(argv=None):
    parser = bench_args(__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="subset of " + ", ".join(CASES))
    parser.add_argument("--md", metavar="PATH", help="also write the summary table (Markdown) to PATH")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    if set(cases) - set(CASES):
        parser.error(f"unknown cases {sorted(set(cases) - set(CASES))}; choose from {CASES}")
    if not torch.cuda.is_available():
        note = "no CUDA device: the GPU benchmarks were skipped"
        print(note)
        if args.json:
            save_rows(args.json, [], [note])
        return 0
    common.setup_threads(args.threads)
    print(f"GPU benchmarks on {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
          + (" [quick]" if args.quick else ""), flush=True)
    rows, notes = [], []
    if common.torchdiffeq is None:
        notes.append("torchdiffeq is not installed: anode_native timed alone")
    for case in cases:
        rows += RUN[case](args.quick, notes)
    table = summary(rows)
    if args.json:
        save_rows(args.json, rows, notes)
    if args.md:
        with open(args.md, "w") as f:
            f.write(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}\n\n{table}\n")
    print("\n" + table)
    for note in notes:
        print("note:", note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
