"""Markdown report and log-log plots from the merged results (bench/results/results.json).

    python bench/report.py [bench/results/results.json]   # rewrite report.md and the PNGs

Works on any rows made by common.record: every case gets a table (median per library, speedups
over anode_native, NFE); a case whose rows carry params["x"] also gets a log-log plot of the
median time against x, one line per library.
"""
from __future__ import annotations

import json
import os
import sys

from common import OURS, TORCHDIFFEQ, TORCHODE, fmt_time, markdown_table

LIBS = (OURS, TORCHDIFFEQ, TORCHODE)
# case -> what the summary table calls its measure (other cases appear in their own sections)
SUMMARY = {"toy": "forward solve", "overhead": "overhead / step", "train_toy": "train iteration",
           "train_mnist": "train iteration", "adjoint": "forward + backward",
           "adjoint_steps": "backward", "batch": "forward solve", "cuda_toy": "GPU forward solve",
           "cuda_conv": "GPU forward solve"}
TITLES = {
    "toy": "Forward solve, toy ANODE MLP (state 3, hidden 32, rtol = atol = 1e-3)",
    "overhead": "Solver overhead per step (tiny linear problem, time not spent in func)",
    "batch": "Forward solve time against batch size (toy MLP field)",
    "dim": "Forward solve time against state dimension (MLP field, hidden 32, batch 256)",
    "tol": "Forward solve time against tolerance (toy MLP field, float64, batch 256)",
    "train_toy": "Training iteration, 2-D toy ANODE (forward, backward, Adam step)",
    "train_mnist": "Training iteration, MNIST ANODE ConvODENet (batch 256)",
    "adjoint": "Adjoint: forward + backward against the number of output times (toy field)",
    "adjoint_steps": "Adjoint: backward time, NFE and memory against the number of solver steps",
    "cuda_toy": "GPU: forward solve, toy ANODE MLP field",
    "cuda_conv": "GPU: forward solve, MNIST ANODE conv field",
    "cuda_ops": "GPU: fused ops",
}
SUMMARY_ONLY = {  # scaling cases: the summary shows only these rows
    "batch": lambda p: p.get("batch") == 65536,
    "adjoint_steps": lambda p: p.get("grid") == 256,
    "adjoint": lambda p: p.get("output_times") in (2, 100),
}
AXES = {"batch": "batch size", "dim": "state dimension", "tol": "rtol = atol"}
PLOT_METRIC = {"adjoint_steps": "backward_median_s"}


def _libs(rows):
    present = [lib for lib in LIBS if any(lib in r["libs"] for r in rows)]
    extra = sorted({lib for r in rows for lib in r["libs"]} - set(LIBS))
    return present + extra


def _nfe(row, libs):
    def one(res):
        text = str(res.get("nfe", "-"))
        if row.get("params", {}).get("adjoint") and "nfe_backward" in res:
            text += f" + {res['nfe_backward']} bwd"
        return text
    vals = [one(row["libs"][lib]) if lib in row["libs"] else "-" for lib in libs]
    mark = "" if row.get("nfe_equal", True) else " (differs)"
    if row.get("nfe_backward_equal") is False:
        mark += " (backward differs)"
    return " / ".join(vals) + mark


def case_table(rows, metric="median_s"):
    libs = _libs(rows)
    columns = ["label"] + [f"{lib}" for lib in libs]
    columns += [f"{lib} / ours" for lib in libs if lib != OURS] + ["NFE (" + " / ".join(libs) + ")"]
    table = []
    for row in rows:
        line = [row["label"]]
        line += [fmt_time(row["libs"].get(lib, {}).get(metric)) for lib in libs]
        for lib in libs:
            if lib == OURS:
                continue
            ours, other = row["libs"].get(OURS, {}).get(metric), row["libs"].get(lib, {}).get(metric)
            line.append(f"{other / ours:.2f}x" if ours and other else "-")
        line.append(_nfe(row, libs))
        table.append(line)
    return markdown_table(table, columns)


def summary_table(rows):
    """The headline table (quoted by the README): one line per summary row."""
    libs = [lib for lib in LIBS if any(lib in r["libs"] for r in rows if r["case"] in SUMMARY)]
    table = []
    for row in rows:
        if row["case"] not in SUMMARY or not SUMMARY_ONLY.get(row["case"], lambda p: True)(row["params"]):
            continue
        metric = {"overhead": "overhead_per_step_s",
                  "adjoint_steps": "backward_median_s"}.get(row["case"], "median_s")
        what = SUMMARY[row["case"]]
        label = f"batch {row['label']}" if row["case"] == "batch" else row["label"]
        line = [f"{row['case']}: {label}", what]
        ours = row["libs"].get(OURS, {}).get(metric)
        for lib in libs:
            line.append(fmt_time(row["libs"].get(lib, {}).get(metric)))
        for lib in libs[1:]:
            other = row["libs"].get(lib, {}).get(metric)
            line.append(f"{other / ours:.1f}x" if ours and other else "-")
        line.append(_nfe(row, libs))
        table.append(line)
    columns = ["case", "measure"] + list(libs) + [f"{lib} / ours" for lib in libs[1:]]
    columns.append("NFE (" + " / ".join(libs) + ")")
    return markdown_table(table, columns)


def memory_table(rows):
    libs = _libs(rows)
    columns = ["label"] + [f"{lib} adjoint" for lib in libs] + [f"{lib} direct" for lib in libs]
    table = [[r["label"]] + [f"{r['libs'][lib].get(key, 0) / 2**20:.2f} MiB" for key in
                             ("saved_bytes", "saved_bytes_direct") for lib in libs] for r in rows]
    return markdown_table(table, columns)


def plot_case(case, rows, out_dir):
    """Log-log plot of the case's metric (median time unless PLOT_METRIC says otherwise) against
    params['x']; returns the PNG's file name or None."""
    metric = PLOT_METRIC.get(case, "median_s")
    pts = [r for r in rows if isinstance(r.get("params", {}).get("x"), (int, float))]
    if len(pts) < 2:
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax2 = None  # second y axis: memory, for rows that carry saved_bytes
    for lib in _libs(pts):
        xs = [r["params"]["x"] for r in pts if lib in r["libs"]]
        ys = [r["libs"][lib][metric] for r in pts if lib in r["libs"]]
        ax.plot(xs, ys, "o-", label=lib)
        if "saved_bytes_direct" in pts[0]["libs"].get(lib, {}):
            ax2 = ax2 or ax.twinx()
            for key, style in (("saved_bytes", ":"), ("saved_bytes_direct", "--")):
                ax2.plot(xs, [max(r["libs"][lib][key], 1) / 2**20 for r in pts], style,
                         alpha=0.6, label=f"{lib} {'direct' if 'direct' in key else 'adjoint'} MiB")
            ax2.set_yscale("log")
            ax2.set_ylabel("memory held for backward (MiB, dotted/dashed)")
    if case == "tol":
        ax.invert_xaxis()
        for r in pts:
            ax.annotate(f"{r['libs'][OURS]['nfe']}", (r["params"]["x"], r["libs"][OURS]["median_s"]),
                        textcoords="offset points", xytext=(0, -12), fontsize=7, ha="center")
        ax.set_title("point labels: anode_native's NFE", fontsize=8)
    if case != "tol":
        ax.set_title(TITLES.get(case, case), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(AXES.get(case, rows[0].get("params", {}).get("x_label", "x")))
    ax.set_ylabel("median " + ("backward " if metric.startswith("backward") else "") + "time (s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    if ax2 is not None:
        ax2.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    name = f"{case}.png"
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    return name


def machine_lines(machine, settings):
    gpu = machine.get("gpu") or "none"
    return [f"- CPU: {machine.get('cpu_model')} ({machine.get('cpu_count')} cores), "
            f"torch threads: {machine.get('torch_threads')}",
            f"- GPU: {gpu}",
            f"- torch {machine.get('torch_version')}, torchdiffeq {machine.get('torchdiffeq_version')}, "
            f"torchode {machine.get('torchode_version') or 'not installed'}, anode_native "
            f"{machine.get('anode_native_version')}, Python {machine.get('python')}",
            f"- run: {settings.get('started', '?')}, {settings.get('duration_s', 0):.0f} s in all"
            + (" (--quick: tiny sizes, timings meaningless)" if settings.get("quick") else "")]


def write_report(results: dict, out_dir: str) -> str:
    """Write out_dir/report.md (and the PNG plots); returns the report's path."""
    rows = results.get("rows", [])
    lines = ["# anode_native vs torchdiffeq benchmarks", ""]
    lines += machine_lines(results.get("machine", {}), results.get("settings", {})) + [""]
    lines += ["Every case runs the libraries in the same process, interleaved (order rotated per "
              "repeat), after warm-up; times are medians of the repeats. `x / ours` above 1 means "
              "anode_native is faster. NFE are counted by wrapping func (ours: also SolverStats); "
              "torchode takes per-sample steps, so its NFE may differ.", "",
              "## Summary", "", summary_table(rows), ""]
    cases = []
    for row in rows:
        if row["case"] not in cases:
            cases.append(row["case"])
    for case in cases:
        case_rows = [r for r in rows if r["case"] == case]
        lines += [f"## {TITLES.get(case, case)}", "", case_table(case_rows), ""]
        if case in ("toy", "overhead"):
            lines += ["Overhead per step (wall time minus time inside func, per step):", "",
                      case_table(case_rows, "overhead_per_step_s"), ""]
        if any("backward_median_s" in r["libs"].get(OURS, {}) for r in case_rows):
            lines += ["Backward pass alone (loss.backward()):", "",
                      case_table(case_rows, "backward_median_s"), ""]
        if any("saved_bytes" in r["libs"].get(OURS, {}) for r in case_rows):
            lines += ["Memory held for backward (autograd's saved tensors; adjoint vs direct "
                      "backprop of the same solve):", "", memory_table(case_rows), ""]
        png = plot_case(case, case_rows, out_dir)
        if png:
            lines += [f"![{case}]({png})", ""]
    notes = results.get("notes", [])
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


if __name__ == "__main__":
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results",
                                                             "results.json")
    with open(src) as f:
        print(write_report(json.load(f), os.path.dirname(os.path.abspath(src))))
