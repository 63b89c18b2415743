"""Smoke test of the benchmark suite: every case runs at tiny sizes (--quick) without crashing and
writes well-formed JSON plus the report. Asserts nothing about speed (benchmarks measure that)."""
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
OWN_CASES = ["toy", "overhead", "batch", "dim", "tol", "train_toy", "train_mnist",
             "adjoint_steps"]
LIBS_REQUIRED = ("anode_native", "torchdiffeq")


def run_suite(out, only):
    cmd = [sys.executable, os.path.join(BENCH, "run_all.py"), "--quick", "--out", str(out),
           "--only", ",".join(only)]
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    with open(out / "results.json") as f:
        results = json.load(f)   # strict JSON: write_json forbids NaN
    assert set(results) >= {"machine", "rows", "notes", "settings"}
    assert results["machine"]["torch_version"] and results["machine"]["cpu_model"]
    assert (out / "report.md").read_text().startswith("# ")
    failed = [n for n in results["notes"] if "failed" in n or "ran past" in n]
    assert not failed, failed
    return results, proc.stdout


def check_row(row):
    assert {"case", "label", "params", "libs", "speedup"} <= set(row)
    for lib in LIBS_REQUIRED:
        res = row["libs"][lib]
        assert res["median_s"] > 0 and math.isfinite(res["median_s"])
        assert len(res["times_s"]) >= 1


def test_suite_quick(tmp_path):
    results, stdout = run_suite(tmp_path, OWN_CASES)
    cases = {row["case"] for row in results["rows"]}
    assert cases >= set(OWN_CASES), (cases, stdout[-2000:])
    for row in results["rows"]:
        check_row(row)
        assert row["libs"]["anode_native"]["nfe"] > 0
    for case in ("batch", "dim", "tol", "adjoint_steps"):
        assert (tmp_path / f"{case}.png").exists()


@pytest.mark.parametrize("key,script", [("adjoint", "adjoint_cpu.py"), ("native", "native_fields.py"),
                                        ("cuda", "solve_cuda.py")])
def test_other_bench_scripts_quick(tmp_path, key, script):
    if not os.path.exists(os.path.join(BENCH, script)):
        pytest.skip(f"bench/{script} does not exist")
    results, _ = run_suite(tmp_path, [key])
    for row in results["rows"]:
        assert {"case", "label", "libs"} <= set(row)
