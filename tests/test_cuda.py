"""The CUDA backend: every fused op against the reference and the CPU kernels on the GPU, gradients,
the solver on CUDA against the solver on the CPU, and the device read-backs of a solve.

Only test_cuda_kernels_compiled runs without a GPU (it proves the CUDA code compiled); the others
skip with the reason "no CUDA device". scripts/gpu_check.sh runs this file on a GPU machine.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

import anode_native as an
import anode_native._reference as ref
from anode_native import _C, ops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
requires_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
OP_NAMES = ["rk_combine", "rk_step_error", "rk_error_ratio", "dopri5_dense", "rk_stage_grads",
            "dopri5_dense_backward"]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# (shape, contiguous): a tiny state, one large enough for many blocks and grid-stride iterations,
# a transposed (non-contiguous) view, and an empty state.
LAYOUTS = [((5, 3), True), ((1000, 531), True), ((300, 7), False), ((0, 3), True)]


def _setup_builds_cuda() -> bool:
    """setup.py's decision (ANODE_NO_CUDA / FORCE_CUDA / a CUDA torch and nvcc), never the GPU."""
    if os.environ.get("ANODE_NO_CUDA", "0") == "1":
        return False
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home is None:
        from torch.utils.cpp_extension import CUDA_HOME
        home = "/usr/local/cuda" if os.path.exists("/usr/local/cuda/bin/nvcc") else CUDA_HOME
    return torch.version.cuda is not None and bool(home) and os.path.exists(os.path.join(home, "bin", "nvcc"))


def test_cuda_kernels_compiled():
    """Runs on GPU-less CI: with a CUDA torch and nvcc present, the build must include the kernels."""
    if not _setup_builds_cuda():
        pytest.skip("this torch or toolkit does not build the CUDA kernels (no nvcc, or ANODE_NO_CUDA=1)")
    assert _C.has_cuda, "setup.py should have compiled csrc/cuda (torch has CUDA and nvcc exists)"
    for name in OP_NAMES:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"anode_native::{name}", "CUDA"), name


# ---------------------------------------------------------------------------------------------- ops
def _tensors(shape, dtype, n, contiguous, seed=0, device="cuda"):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        if contiguous:
            t = torch.randn(shape, generator=g, dtype=torch.float64)
        else:  # a transposed view: same shape, non-contiguous memory
            t = torch.randn(tuple(reversed(shape)), generator=g, dtype=torch.float64).t()
        out.append(t.to(device=device, dtype=dtype))
    return out


def _call(name, dtype, shape, contiguous, device):
    """One call of op `name` on inputs that are the same numbers on every device."""
    t = _tensors(shape, dtype, 10, contiguous, device=device)
    y0, y1, k, g = t[0], t[1], t[2:9], t[9]
    numel = y0.numel()
    if name == "rk_combine":
        return ops.rk_combine(y0, k[:6], ref.A[6][:6], 0.3)
    if name == "rk_step_error":
        return ops.rk_step_error(y0, k, ref.B, ref.E, -0.2)
    if name == "rk_error_ratio":
        rtol = torch.linspace(1e-4, 1e-3, numel, dtype=torch.float64, device=device)
        segments = [numel] if numel < 4 else [3, 0, numel - 3]
        return ops.rk_error_ratio(y0, y1, k, ref.E, 0.1, rtol, 1e-4, segments)
    theta = [0.0, 0.25, 1.0] + [i / 40 for i in range(20)]  # more points than one kernel chunk
    if name == "dopri5_dense":
        return ops.dopri5_dense(y0, y1, k, 0.7, theta)
    if name == "rk_stage_grads":
        return torch.ops.anode_native.rk_stage_grads(y0, g, list(ref.B), list(ref.E), 0.3)
    grad = torch.stack([g * (1 + i / 10) for i in range(len(theta))])
    return torch.ops.anode_native.dopri5_dense_backward(grad, 0.7, theta)


def _reference(name, dtype, shape, contiguous):
    t = _tensors(shape, dtype, 10, contiguous)
    y0, y1, k = t[0], t[1], t[2:9]
    if name == "rk_combine":
        return ref.rk_combine(y0, k[:6], ref.A[6][:6], 0.3)
    if name == "rk_step_error":
        return ref.rk_step_error(y0, k, ref.B, ref.E, -0.2)
    if name == "rk_error_ratio":
        numel = y0.numel()
        rtol = torch.linspace(1e-4, 1e-3, numel, dtype=torch.float64, device="cuda")
        return ref.rk_error_ratio(y0, y1, k, ref.E, 0.1, rtol, 1e-4, [numel] if numel < 4 else [3, 0, numel - 3])
    return ref.dopri5_dense(y0, y1, k, 0.7, [0.0, 0.25, 1.0] + [i / 40 for i in range(20)])


def _flat(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _tolerance(name, dtype):
    if name == "rk_error_ratio":  # float64 sums in a different order, of errors rounded like the state
        return dict(rtol={torch.float64: 1e-12, torch.float32: 1e-6}.get(dtype, 1e-2), atol=0.0)
    loose = name == "dopri5_dense"  # the quartic's coefficients cancel
    return {torch.float64: dict(rtol=1e-13, atol=1e-13),
            torch.float32: dict(rtol=1e-5, atol=1e-5) if loose else dict(rtol=1e-6, atol=1e-6),
            torch.float16: dict(rtol=1e-2, atol=1e-2),
            torch.bfloat16: dict(rtol=5e-2, atol=5e-2)}[dtype]


@requires_gpu
@pytest.mark.parametrize("name", ["rk_combine", "rk_step_error", "rk_error_ratio", "dopri5_dense"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,contiguous", LAYOUTS)
def test_op_matches_reference_on_gpu(name, dtype, shape, contiguous):
    out = _flat(_call(name, dtype, shape, contiguous, "cuda"))
    expected = _flat(_reference(name, dtype, shape, contiguous))
    for got, want in zip(out, expected, strict=True):
        assert got.is_cuda and got.dtype == want.dtype and got.shape == want.shape
        torch.testing.assert_close(got, want, **_tolerance(name, dtype))


@requires_gpu
@pytest.mark.parametrize("name", OP_NAMES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,contiguous", LAYOUTS)
def test_op_matches_cpu_kernel(name, dtype, shape, contiguous):
    """Both backends run the same element functions without FMA contraction: elementwise results
    agree bit for bit; the error ratio's float64 sums differ only in their order."""
    out = _flat(_call(name, dtype, shape, contiguous, "cuda"))
    expected = _flat(_call(name, dtype, shape, contiguous, "cpu"))
    for got, want in zip(out, expected, strict=True):
        assert got.is_cuda and got.dtype == want.dtype and got.shape == want.shape
        if name == "rk_error_ratio":
            torch.testing.assert_close(got.cpu(), want, rtol=1e-12, atol=0.0)
        else:
            assert torch.equal(got.cpu(), want), f"{name}: max diff {(got.cpu() - want).abs().max()}"


@requires_gpu
def test_error_ratio_is_deterministic_and_handles_many_segments():
    y0, y1, *k = _tensors((3_000_001,), torch.float32, 9, True)
    segments = [1, 0, 5, 2_000_000] + [10] * 100 + [999_995 - 1000]  # more segments than one launch
    rtol = torch.tensor(1e-3, dtype=torch.float64, device="cuda")
    runs = [torch.ops.anode_native.rk_error_ratio(y0, y1, k, list(ref.E), 0.1, rtol, rtol, segments)
            for _ in range(3)]
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    expected = ref.rk_error_ratio(y0, y1, k, ref.E, 0.1, rtol, rtol, segments)
    torch.testing.assert_close(runs[0], expected, rtol=1e-10, atol=0.0)
    assert runs[0][1].item() == 0.0  # the empty segment


@requires_gpu
def test_ops_never_synchronise():
    y0, y1, *k = _tensors((64, 3), torch.float32, 9, True)
    rtol = torch.tensor(1e-3, dtype=torch.float64, device="cuda")
    grad = torch.randn(2, 64, 3, device="cuda")
    nat = torch.ops.anode_native
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        nat.rk_combine(y0, k[:3], [0.1, 0.2, 0.3], 0.5)
        nat.rk_step_error(y0, k, list(ref.B), list(ref.E), 0.5)
        nat.rk_error_ratio(y0, y1, k, list(ref.E), 0.5, rtol, rtol, [10, 182])
        nat.dopri5_dense(y0, y1, k, 0.5, [0.3, 0.9])
        nat.rk_stage_grads(y0, y1, [0.1, 0.2], [0.3, 0.4], 0.5)
        nat.dopri5_dense_backward(grad, 0.5, [0.3, 0.9])
    finally:
        torch.cuda.set_sync_debug_mode("default")


@requires_gpu
def test_ops_follow_the_current_device_and_stream():
    y, *k = _tensors((1000,), torch.float32, 3, True)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # the inputs were made on the default stream
    with torch.cuda.stream(stream):
        out = ops.rk_combine(y, k, [1.0, -2.0], 0.25)
    stream.synchronize()
    torch.testing.assert_close(out, y + 0.25 * (k[0] - 2.0 * k[1]), rtol=1e-6, atol=1e-6)


@requires_gpu
@pytest.mark.parametrize("name", OP_NAMES)
def test_opcheck_on_gpu(name):
    y0, y1, *k = _tensors((3, 2), torch.float64, 9, True)
    rtol = torch.tensor(1e-3, dtype=torch.float64, device="cuda")
    args = {"rk_combine": (y0, k[:3], [0.1, 0.2, 0.3], 0.5),
            "rk_step_error": (y0, k, list(ref.B), list(ref.E), 0.5),
            "rk_error_ratio": (y0, y1, k, list(ref.E), 0.5, rtol, rtol, []),
            "dopri5_dense": (y0, y1, k, 0.5, [0.3, 0.9]),
            "rk_stage_grads": (y0, y1, [0.1, 0.2], [0.3, 0.4], 0.5),
            "dopri5_dense_backward": (torch.randn(2, 3, 2, dtype=torch.float64, device="cuda"), 0.5, [0.3, 0.9])}
    torch.library.opcheck(getattr(torch.ops.anode_native, name), args[name])


@requires_gpu
def test_gradcheck_on_gpu():
    leaves = [t.requires_grad_(True) for t in _tensors((4,), torch.float64, 9, True)]
    y0, y1, k = leaves[0], leaves[1], leaves[2:]
    assert torch.autograd.gradcheck(lambda y, *k: ops.rk_combine(y, k[:6], ref.A[6][:6], 0.3), (y0, *k[:6]))
    assert torch.autograd.gradcheck(lambda y, *k: ops.rk_step_error(y, k, ref.B, ref.E, 0.3), (y0, *k))
    assert torch.autograd.gradcheck(lambda y0, y1, *k: ops.dopri5_dense(y0, y1, k, 0.4, [0.2, 0.7, 1.0]),
                                    (y0, y1, *k))
    assert torch.autograd.gradcheck(
        lambda y0, y1, *k: ops.rk_error_ratio(y0, y1, k, ref.E, 0.4, 1e-2, 1e-3, [1, 3]), (y0, y1, *k))


# ------------------------------------------------------------------------------------------- solver
def _mlp_field(device, dtype):
    torch.manual_seed(7)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
    net = net.to(device=device, dtype=dtype)
    return lambda t, y: net(y) * torch.cos(t)


@requires_gpu
@pytest.mark.parametrize("times", [[0.0, 0.3, 1.1, 2.0], [1.5, 0.2, -0.5]], ids=["increasing", "decreasing"])
@pytest.mark.parametrize("tuple_state", [False, True])
def test_solver_on_gpu_matches_cpu(times, tuple_state):
    t = torch.tensor(times, dtype=torch.float64)
    y0 = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    results = {}
    for device in ("cpu", "cuda"):
        field = _mlp_field(device, torch.float64)
        stats = an.SolverStats()
        with torch.no_grad():
            if tuple_state:  # two members: the norm is the max over segments
                func = lambda t, y, f=field: (f(t, torch.cat(y, 1))[:, :1], f(t, torch.cat(y, 1))[:, 1:])  # noqa: E731
                out = torch.cat(an.odeint(func, (y0[:, :1].to(device), y0[:, 1:].to(device)), t, rtol=1e-8,
                                          atol=1e-9, stats=stats), dim=2)
            else:
                out = an.odeint(field, y0.to(device), t, rtol=1e-8, atol=1e-9, stats=stats)
        results[device] = (out, stats)
    (out_cpu, stats_cpu), (out_gpu, stats_gpu) = results["cpu"], results["cuda"]
    assert out_gpu.is_cuda
    assert stats_gpu == stats_cpu
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-10, atol=1e-10)


@requires_gpu
def test_solver_on_gpu_float32_and_gradients():
    y0 = torch.randn(32, 3, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([0.0, 0.5, 1.0])
    results = {}
    for device in ("cpu", "cuda"):
        field = _mlp_field(device, torch.float32)
        y = y0.to(device).requires_grad_(True)
        out = an.odeint(field, y, t, rtol=1e-5, atol=1e-6)
        out.square().sum().backward()
        results[device] = (out.detach(), y.grad)
    torch.testing.assert_close(results["cuda"][0].cpu(), results["cpu"][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(results["cuda"][1].cpu(), results["cpu"][1], rtol=1e-3, atol=1e-4)


# A fresh process: the GPU trace (the hooks torch's CUDA sanitizer uses) cannot be switched off
# again. It counts every synchronising call torch makes: the copies behind .item() and .cpu(),
# stream/device/event synchronisation, which is what set_sync_debug_mode reports too.
SYNC_COUNT_SCRIPT = r"""
import json, torch
import anode_native as an
try:
    import torch.cuda._gpu_trace as gpu_trace
except ImportError:  # older torch
    import torch.utils._cuda_trace as gpu_trace
syncs = [0]
def count(*args):
    syncs[0] += 1
torch._C._activate_gpu_trace()
gpu_trace.register_callback_for_stream_synchronization(count)
gpu_trace.register_callback_for_device_synchronization(count)
gpu_trace.register_callback_for_event_synchronization(count)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3)).cuda()
y0 = torch.randn(64, 3, device="cuda")
t = torch.linspace(0.0, 2.0, 5)  # output times on the host, as the driver keeps them
results = []
with torch.no_grad():
    for tol in (1e-3, 1e-7):
        an.odeint(lambda t, y: net(y), y0, t, rtol=tol, atol=tol)  # warm-up: cuBLAS, allocator
        torch.cuda.synchronize()
        before, stats = syncs[0], an.SolverStats()
        an.odeint(lambda t, y: net(y), y0, t, rtol=tol, atol=tol, stats=stats)
        results.append({"syncs": syncs[0] - before, "attempted": stats.steps_forward})
print("SYNCS " + json.dumps(results))
"""

# Read-backs allowed besides one per attempted step: the finiteness check of y0 and f(t0, y0) (2)
# and the three norms of the initial-step heuristic (3), once per solve.
SYNCS_PER_SOLVE = 5


@requires_gpu
def test_solve_reads_back_once_per_attempted_step():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", SYNC_COUNT_SCRIPT], cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("SYNCS ")][-1]
    loose, tight = json.loads(line[len("SYNCS "):])
    assert tight["attempted"] > loose["attempted"] > 0
    for run in (loose, tight):
        assert run["attempted"] <= run["syncs"] <= run["attempted"] + SYNCS_PER_SOLVE, run
    # Each extra attempted step costs exactly one read-back (the error ratio), nothing else.
    assert tight["syncs"] - loose["syncs"] == tight["attempted"] - loose["attempted"], (loose, tight)
