#!/usr/bin/env bash
# The GPU check, in one go, for a machine with a CUDA GPU and no network (the repo's CI machines
# have no GPU: they only compile the CUDA code). Run from anywhere: bash scripts/gpu_check.sh
#
#   1. build the extension in place for this GPU's architecture only (TORCH_CUDA_ARCH_LIST from
#      nvidia-smi), with the machine's own python and torch, MAX_JOBS=16
#   2. tests/test_cuda.py: every op against anode_native._reference and the CPU kernels on the GPU,
#      the solver on CUDA against the solver on the CPU, gradients, device read-backs per step
#   3. the CPU op and solver tests, quickly (those whose dependencies are installed)
#   4. bench/solve_cuda.py: ours against torchdiffeq on the GPU, fused ops against copy bandwidth
#   5. a short table, last
#
# Each phase is bounded with `timeout` so the whole run stays under 8 minutes. Nothing is
# installed: a missing pytest / torchdiffeq / scipy skips what needs it, with a message.
# Logs and results go to $OUT if set (else a temporary folder). PYTHON overrides the interpreter.
# Exit status: 0 when the build, every test phase that ran, and the benchmark succeeded.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-$(mktemp -d -t anode_gpu_check.XXXXXX)}"
mkdir -p "$OUT_DIR"
START=$(date +%s)
STATUS=0
SUMMARY=()   # "phase|result|seconds" rows

elapsed() { echo $(( $(date +%s) - $1 )); }
has_module() { "$PY" -c "import $1" >/dev/null 2>&1; }
row() { SUMMARY+=("$1|$2|$3"); }
print_summary() {
  echo
  echo "== gpu_check summary: ${GPU_NAME:-?}, torch ${TORCH_VERSION:-?}, arch ${ARCH:-?}, $(elapsed "$START") s in all =="
  {
    echo "| phase | result | seconds |"
    echo "|---|---|---|"
    for r in "${SUMMARY[@]}"; do IFS='|' read -r a b c <<<"$r"; echo "| $a | $b | $c |"; done
  } | tee "$OUT_DIR/summary.md"
  if [[ -s "$OUT_DIR/gpu_bench.md" ]]; then
    echo
    tee -a "$OUT_DIR/summary.md" <"$OUT_DIR/gpu_bench.md"
  fi
  echo
  echo "logs and results: $OUT_DIR"
}

# ---------------------------------------------------------------------------------------- machine
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: $PY has no torch with a usable CUDA device; nothing to check." >&2
  row "machine" "FAILED: no CUDA device visible to torch" 0
  print_summary
  exit 1
fi
GPU_NAME=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0))")
TORCH_VERSION=$("$PY" -c "import torch; print(torch.__version__, 'CUDA', torch.version.cuda)")
if command -v nvidia-smi >/dev/null 2>&1; then
  ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' ')
fi
if [[ -z "${ARCH:-}" ]]; then
  ARCH=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))")
fi
echo "gpu_check: $GPU_NAME (sm $ARCH), torch $TORCH_VERSION, $("$PY" --version 2>&1), $(nproc) cores"

MISSING=()
for m in pytest torchdiffeq scipy numpy ninja; do has_module "$m" || MISSING+=("$m"); done
if [[ ${#MISSING[@]} -gt 0 ]]; then
  echo "gpu_check: not installed (no network, so not installed now): ${MISSING[*]}; what needs them is skipped."
fi
# torch builds with ninja only when the executable is on PATH; the pip package keeps it in BIN_DIR.
if ! command -v ninja >/dev/null 2>&1 && has_module ninja; then
  PATH="$("$PY" -c "import ninja; print(ninja.BIN_DIR)"):$PATH"
fi
command -v ninja >/dev/null 2>&1 || echo "gpu_check: no ninja: torch compiles the sources one after another (slower)."

# ------------------------------------------------------------------------------------------ build
t0=$(date +%s)
unset ANODE_SKIP_EXT ANODE_NO_CUDA
if [[ -z "${CUDA_HOME:-}" && -x /usr/local/cuda/bin/nvcc ]]; then export CUDA_HOME=/usr/local/cuda; fi
echo "== build (TORCH_CUDA_ARCH_LIST=$ARCH, MAX_JOBS=16) -> $OUT_DIR/build.log"
if MAX_JOBS=16 TORCH_CUDA_ARCH_LIST="$ARCH" FORCE_CUDA=1 \
    timeout 240 "$PY" setup.py build_ext --inplace >"$OUT_DIR/build.log" 2>&1 \
  && "$PY" -c "import torch, anode_native, sys; sys.exit(0 if anode_native._C.has_cuda else 1)" >>"$OUT_DIR/build.log" 2>&1
then
  row "build (sm $ARCH)" "ok" "$(elapsed "$t0")"
else
  tail -n 30 "$OUT_DIR/build.log"
  row "build (sm $ARCH)" "FAILED (see build.log)" "$(elapsed "$t0")"
  print_summary
  exit 1
fi

# ------------------------------------------------------------------------------------------ tests
run_pytest() {  # name, timeout, log, files...
  local name="$1" limit="$2" log="$3"; shift 3
  local t1; t1=$(date +%s)
  echo "== $name -> $OUT_DIR/$log"
  timeout "$limit" "$PY" -m pytest -q -ra -p no:cacheprovider "$@" 2>&1 | tee "$OUT_DIR/$log" | tail -n 25
  local rc=${PIPESTATUS[0]}
  local result; result=$(grep -E "^=*.*(passed|failed|error|skipped).* in [0-9.]+s" "$OUT_DIR/$log" | tail -n 1 | tr -d '=')
  [[ $rc -eq 124 ]] && result="TIMED OUT after $limit s ($result)"
  if [[ $rc -ne 0 ]]; then STATUS=1; result="FAILED: ${result:-exit $rc}"; fi
  row "$name" "${result:-ok}" "$(elapsed "$t1")"
}

if has_module pytest; then
  run_pytest "tests/test_cuda.py (GPU)" 120 test_cuda.log tests/test_cuda.py
  CPU_TESTS=(tests/test_ops.py)
  if has_module torchdiffeq && has_module scipy && has_module numpy; then
    CPU_TESTS+=(tests/test_solver.py)
  else
    row "tests/test_solver.py (CPU)" "skipped: needs torchdiffeq, scipy and numpy" 0
  fi
  run_pytest "CPU op and solver tests" 60 test_cpu.log -x -k "not slow" "${CPU_TESTS[@]}"
else
  row "tests (GPU and CPU)" "skipped: pytest is not installed" 0
fi

# ------------------------------------------------------------------------------------------ bench
t0=$(date +%s)
echo "== bench/solve_cuda.py -> $OUT_DIR/bench.log"
timeout 150 "$PY" bench/solve_cuda.py --json "$OUT_DIR/gpu_bench.json" --md "$OUT_DIR/gpu_bench.md" \
  2>&1 | tee "$OUT_DIR/bench.log" | grep -v "^|"
rc=${PIPESTATUS[0]}
if [[ $rc -eq 0 ]] && ! grep -q "CHECK FAILED" "$OUT_DIR/bench.log"; then
  row "bench/solve_cuda.py" "ok" "$(elapsed "$t0")"
else
  STATUS=1
  row "bench/solve_cuda.py" "FAILED (exit $rc$([[ $rc -eq 124 ]] && echo ', timed out'); see bench.log)" "$(elapsed "$t0")"
fi

print_summary
exit $STATUS
