"""The whole benchmark suite (`make bench`): anode_native against torchdiffeq (and torchode).

    python bench/run_all.py [--quick] [--out bench/results] [--threads 1] [--only a,b,...]

Runs, in this order (names for --only in brackets):
  bench/solve_cpu.py  forward solves: toy MLP, solver overhead, batch / dim / tol scaling
                      [toy, overhead, batch, dim, tol]
  bench/train_cpu.py  training iterations of the paper's models [train_toy, train_mnist]
  bench/adjoint_steps.py  adjoint backward time / NFE / memory against solver steps
                      [adjoint_steps]
  bench/adjoint_cpu.py  adjoint against the number of output times [adjoint] (if it exists)
  bench/solve_cuda.py   GPU solves [cuda]               (if the file exists and a GPU is present)
The first three run in this process; the other two as subprocesses (`--json PATH [--quick]`, see
common.py). Everything is merged into OUT/results.json (raw results, machine, notes) and
OUT/report.md with PNG plots. --quick: tiny sizes and one repeat (the smoke test uses it).
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

import torch

import adjoint_steps
import common
import report
import solve_cpu
import train_cpu

HERE = os.path.dirname(os.path.abspath(__file__))
SOLVE_CASES = list(solve_cpu.CASES)
TRAIN_CASES = [f"train_{c}" for c in train_cpu.CASES]
SCRIPTS = {"adjoint": "adjoint_cpu.py", "native": "native_fields.py", "cuda": "solve_cuda.py"}
ALL = SOLVE_CASES + TRAIN_CASES + list(adjoint_steps.CASES) + list(SCRIPTS)


def run_script(key, quick, threads, timeout):
    """Run bench/<script> as a subprocess; returns (rows, notes)."""
    path = os.path.join(HERE, SCRIPTS[key])
    if not os.path.exists(path):
        return [], [f"{SCRIPTS[key]} is not in bench/ yet: its cases are skipped."]
    if key == "cuda" and not torch.cuda.is_available():
        return [], [f"no GPU: {SCRIPTS[key]} (CUDA cases) skipped."]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        base = [sys.executable, path, "--json", out] + (["--quick"] if quick else [])
        proc = None
        for cmd in (base + ["--threads", str(threads)], base):
            print(f"\n== {' '.join(os.path.relpath(c) if c == path else c for c in cmd[1:])}",
                  flush=True)
            try:
                proc = subprocess.run(cmd, cwd=os.path.dirname(HERE), timeout=timeout,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            except subprocess.TimeoutExpired:
                return [], [f"{SCRIPTS[key]} ran past {timeout} s and was stopped."]
            print(proc.stdout, end="", flush=True)
            if not (proc.returncode == 2 and "unrecognized arguments" in proc.stdout):
                break
        if proc.returncode != 0 or not os.path.exists(out):
            tail = proc.stdout.strip().splitlines()[-1:] or [""]
            return [], [f"{SCRIPTS[key]} failed (exit {proc.returncode}): {tail[0][:200]}"]
        with open(out) as f:
            data = json.load(f)
    rows = data.get("rows", []) if isinstance(data, dict) else []
    notes = [f"{SCRIPTS[key]}: {n}" for n in data.get("notes", [])] if isinstance(data, dict) else []
    return [r for r in rows if isinstance(r, dict) and "case" in r and "libs" in r], notes


def main(argv=None):
    parser = common.bench_args(__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="output folder")
    parser.add_argument("--only", default=",".join(ALL), help="subset of " + ", ".join(ALL))
    args = parser.parse_args(argv)
    only = [c for c in args.only.split(",") if c]
    unknown = sorted(set(only) - set(ALL))
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {ALL}")
    threads = common.setup_threads(args.threads)
    start = time.time()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    print(f"anode_native benchmark suite: torch {torch.__version__}, {threads} thread(s), "
          f"{common.cpu_model()}" + (" [quick]" if args.quick else ""), flush=True)
    rows, notes = [], []

    def guarded(name, fn):
        try:
            got_rows, got_notes = fn()
            rows.extend(got_rows)
            notes.extend(got_notes)
        except Exception as exc:  # noqa: BLE001 - one failing case must not lose the others
            traceback.print_exc()
            notes.append(f"{name} failed: {type(exc).__name__}: {str(exc)[:200]}")

    for case in SOLVE_CASES:
        if case in only:
            guarded(case, lambda c=case: solve_cpu.run_cases([c], args.quick))
    for case in TRAIN_CASES:
        if case in only:
            guarded(case, lambda c=case: train_cpu.run_cases([c[len("train_"):]], args.quick))
    if "adjoint_steps" in only:
        guarded("adjoint_steps", lambda: adjoint_steps.run_cases(quick=args.quick))
    for key in SCRIPTS:
        if key in only:
            timeout = 300 if args.quick else 600
            guarded(key, lambda k=key: run_script(k, args.quick, threads, timeout))
    if not common.torchode_available():
        notes.append("torchode is not installed (`pip install torchode`): third column skipped.")
    notes = list(dict.fromkeys(notes))
    results = {"machine": common.machine_info(), "rows": rows, "notes": notes,
               "settings": {"quick": args.quick, "threads": threads, "cases": only,
                            "started": started, "duration_s": time.time() - start}}
    os.makedirs(args.out, exist_ok=True)
    common.write_json(os.path.join(args.out, "results.json"), results)
    path = report.write_report(results, args.out)
    print(f"\nwrote {os.path.join(args.out, 'results.json')} and {path} "
          f"in {results['settings']['duration_s']:.0f} s")
    for note in notes:
        print("note:", note)
    return results


if __name__ == "__main__":
    main()
