"""The fused ops (torch.ops.anode_native) against the pure-PyTorch reference, opcheck and gradcheck."""
import pytest
import torch

import anode_native._reference as ref
from anode_native import ops

DTYPES = [torch.float32, torch.float64]
A6 = list(ref.A[6][:6])  # a 6-stage combination with a zero weight in it


def stages(shape, dtype, n=7, contiguous=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    ks = []
    for _ in range(n):
        if contiguous:
            ks.append(torch.randn(shape, generator=g, dtype=dtype))
        else:  # a transposed view: same shape, non-contiguous memory
            ks.append(torch.randn(tuple(reversed(shape)), generator=g, dtype=dtype).t())
    return ks


def tol(dtype):
    return dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-13, atol=1e-13)


CASES = [((5, 3), True), ((5, 3), False), ((0, 3), True)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,contiguous", CASES)
def test_rk_combine(dtype, shape, contiguous):
    y, *k = stages(shape, dtype, n=7, contiguous=contiguous)
    out = ops.rk_combine(y, k[:6], A6, 0.3)
    torch.testing.assert_close(out, ref.rk_combine(y, k[:6], A6, 0.3), **tol(dtype))
    # dt may be a 0-dim tensor
    torch.testing.assert_close(ops.rk_combine(y, k[:1], [1.0], torch.tensor(0.5)), y + 0.5 * k[0], **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,contiguous", CASES)
def test_rk_step_error(dtype, shape, contiguous):
    y, *k = stages(shape, dtype, n=8, contiguous=contiguous)
    y1, err = ops.rk_step_error(y, k, ref.B, ref.E, -0.2)
    y1_ref, err_ref = ref.rk_step_error(y, k, ref.B, ref.E, -0.2)
    torch.testing.assert_close(y1, y1_ref, **tol(dtype))
    torch.testing.assert_close(err, err_ref, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,contiguous", CASES)
@pytest.mark.parametrize("per_element", [False, True])
def test_rk_error_ratio(dtype, shape, contiguous, per_element):
    y0, y1, *k = stages(shape, dtype, n=9, contiguous=contiguous)
    numel = y0.numel()
    rtol = torch.rand(numel, dtype=torch.float64) * 1e-3 if per_element else 1e-3
    atol = torch.rand(numel, dtype=torch.float64) * 1e-4 + 1e-6 if per_element else 1e-4
    segments = [numel] if numel < 4 else [3, numel - 3]
    out = ops.rk_error_ratio(y0, y1, k, ref.E, 0.1, rtol, atol, segments)
    expected = ref.rk_error_ratio(y0, y1, k, ref.E, 0.1, rtol, atol, segments)
    assert out.dtype == torch.float64 and out.shape == (len(segments),)
    torch.testing.assert_close(out, expected, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,contiguous", CASES)
def test_dopri5_dense(dtype, shape, contiguous):
    y0, y1, *k = stages(shape, dtype, n=9, contiguous=contiguous)
    theta = [0.0, 0.25, 0.5, 1.0] + [i / 40 for i in range(20)]  # more points than one kernel chunk
    out = ops.dopri5_dense(y0, y1, k, 0.7, theta)
    assert out.shape == (len(theta), *shape)
    # The quartic's coefficients (16 y_mid - 8 (y0 + y1) ...) cancel: float32 agrees to ~30 ulp of |y|.
    loose = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else tol(dtype)
    torch.testing.assert_close(out, ref.dopri5_dense(y0, y1, k, 0.7, theta), **loose)


def test_dense_output_hits_the_step_ends():
    y0, y1, *k = stages((4,), torch.float64, n=9)
    out = ops.dopri5_dense(y0, y1, k, 0.3, [0.0, 1.0])
    torch.testing.assert_close(out[0], y0, rtol=0, atol=1e-15)
    torch.testing.assert_close(out[1], y1, rtol=0, atol=1e-14)


def _opcheck_cases():
    y0, y1, *k = stages((3, 2), torch.float64, n=9)
    rtol, atol = torch.tensor(1e-3, dtype=torch.float64), torch.tensor(1e-4, dtype=torch.float64)
    return [
        (torch.ops.anode_native.rk_combine, (y0, k[:3], [0.1, 0.2, 0.3], 0.5)),
        (torch.ops.anode_native.rk_step_error, (y0, k, list(ref.B), list(ref.E), 0.5)),
        (torch.ops.anode_native.rk_error_ratio, (y0, y1, k, list(ref.E), 0.5, rtol, atol, [])),
        (torch.ops.anode_native.dopri5_dense, (y0, y1, k, 0.5, [0.3, 0.9])),
        (torch.ops.anode_native.rk_stage_grads, (y0, y1, [0.1, 0.2], [0.3, 0.4], 0.5)),
        (torch.ops.anode_native.dopri5_dense_backward, (torch.randn(2, 3, 2, dtype=torch.float64), 0.5, [0.3, 0.9])),
    ]


@pytest.mark.parametrize("case", range(6))
def test_opcheck(case):
    op, args = _opcheck_cases()[case]
    torch.library.opcheck(op, args)


def _leaf(shape, seed):
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)


def test_gradcheck_rk_combine_and_step_error():
    y = _leaf((3,), 0)
    k = [_leaf((3,), i + 1) for i in range(7)]
    assert torch.autograd.gradcheck(lambda y, *k: ops.rk_combine(y, k[:6], A6, 0.3), (y, *k[:6]))
    assert torch.autograd.gradcheck(lambda y, *k: ops.rk_step_error(y, k, ref.B, ref.E, 0.3), (y, *k))


def test_gradcheck_dense_and_error_ratio():
    y0, y1 = _leaf((4,), 10), _leaf((4,), 11)
    k = [_leaf((4,), 20 + i) for i in range(7)]
    assert torch.autograd.gradcheck(lambda y0, y1, *k: ops.dopri5_dense(y0, y1, k, 0.4, [0.2, 0.7, 1.0]),
                                    (y0, y1, *k))
    assert torch.autograd.gradcheck(
        lambda y0, y1, *k: ops.rk_error_ratio(y0, y1, k, ref.E, 0.4, 1e-2, 1e-3, [1, 3]), (y0, y1, *k))


@pytest.mark.parametrize("call,match", [
    (lambda: ops.rk_combine(torch.ones(3), [torch.ones(4)], [1.0], 0.1), r"stage 0 has shape \[4\], state has \[3\]"),
    (lambda: ops.rk_combine(torch.ones(3), [torch.ones(3)], [1.0, 2.0], 0.1), "1 stages but 2 weights"),
    (lambda: ops.rk_combine(torch.ones(3), [torch.ones(3, dtype=torch.float64)], [1.0], 0.1), "stage 0 has dtype Double"),
    (lambda: ops.rk_combine(torch.ones(3), [], [], 0.1), "at least one stage"),
    (lambda: ops.rk_combine(torch.ones(3, dtype=torch.long), [torch.ones(3, dtype=torch.long)], [1.0], 0.1),
     "state must be floating point"),
    (lambda: ops.dopri5_dense(torch.ones(3), torch.ones(3), [torch.ones(3)] * 7, 0.1, [1.5]), r"must lie in \[0, 1\]"),
    (lambda: ops.rk_error_ratio(torch.ones(3), torch.ones(3), [torch.ones(3)], [1.0], 1.0, 1e-3, 1e-3, [2]),
     "segment sizes add up to 2, state has 3"),
])
def test_op_argument_errors(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()
