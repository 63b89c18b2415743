#pragma once
// The fused ops written once for every backend: check and allocate (rk_common), pack the kernel
// arguments, and hand one element functor (anode_native/rk_functors.h) to the backend, which is a
// class with two static members:
//   for_each(n, op, cost)           calls op(e) for every e in [0, n); cost is the relative work
//                                   per element (the CPU backend sizes its chunks with it)
//   segment_rms(segments, term, r)  r[s] = sqrt(mean of term(e) over segment s), 0 when empty,
//                                   summed in double
// The backend's entry points (rk_ops_cpu.cpp, rk_ops_cuda.cu) make the tensors' device current.
#include <ATen/OpMathType.h>

#include "anode_native/rk_functors.h"
#include "anode_native/tableau.h"
#include "rk_common.h"

namespace anode {

template <class Backend>
at::Tensor rk_combine_impl(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> coeffs, double dt) {
  const CombineArgs a = prepare_combine(y, k, coeffs);
  ANODE_DISPATCH_FLOATING(a.y.scalar_type(), "rk_combine", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const CombineOp<scalar_t, acc_t> op{a.y.const_data_ptr<scalar_t>(), pack_stages<scalar_t, acc_t>(a.k, coeffs, dt),
                                        a.out.mutable_data_ptr<scalar_t>()};
    Backend::for_each(a.y.numel(), op, 1);
  });
  return a.out;
}

template <class Backend>
std::tuple<at::Tensor, at::Tensor> rk_step_error_impl(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> b,
                                                      at::ArrayRef<double> e, double dt) {
  const StepErrorArgs a = prepare_step_error(y, k, b, e);
  ANODE_DISPATCH_FLOATING(a.y.scalar_type(), "rk_step_error", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const StepErrorOp<scalar_t, acc_t> op{a.y.const_data_ptr<scalar_t>(), pack_stages<scalar_t, acc_t>(a.k, b, dt),
                                          pack_stages<scalar_t, acc_t>(a.k, e, dt), a.y1.mutable_data_ptr<scalar_t>(),
                                          a.err.mutable_data_ptr<scalar_t>()};
    Backend::for_each(a.y.numel(), op, 1);
  });
  return {a.y1, a.err};
}

template <class Backend>
at::Tensor rk_error_ratio_impl(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, at::ArrayRef<double> e,
                               double dt, const at::Tensor& rtol, const at::Tensor& atol,
                               at::IntArrayRef segment_sizes) {
  ErrorRatioArgs a = prepare_error_ratio(y0, y1, k, e, rtol, atol, segment_sizes);
  ANODE_DISPATCH_FLOATING(a.y0.scalar_type(), "rk_error_ratio", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const ErrorRatioTermOp<scalar_t, acc_t> term{a.y0.const_data_ptr<scalar_t>(),
                                                 a.y1.const_data_ptr<scalar_t>(),
                                                 pack_stages<scalar_t, acc_t>(a.k, e, dt),
                                                 a.rtol.const_data_ptr<double>(),
                                                 a.rtol_stride,
                                                 a.atol.const_data_ptr<double>(),
                                                 a.atol_stride};
    Backend::segment_rms(a.segments, term, a.ratio);
  });
  return a.ratio;
}

template <class Backend>
at::Tensor dopri5_dense_impl(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, double dt,
                             at::ArrayRef<double> theta) {
  const DenseArgs a = prepare_dense(y0, y1, k, theta);
  const int64_t n = a.y0.numel();
  ANODE_DISPATCH_FLOATING(a.y0.scalar_type(), "dopri5_dense", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto mid = pack_stages<scalar_t, acc_t>(a.k, dp5::CMID, dt, /*keep_all=*/true);
    for_each_dense_chunk<acc_t>(theta, dt, [&](int64_t first, const DensePoints<acc_t>& points) {
      const DenseOp<scalar_t, acc_t> op{a.y0.const_data_ptr<scalar_t>(), a.y1.const_data_ptr<scalar_t>(), mid, points,
                                        a.out.mutable_data_ptr<scalar_t>() + first * n, n};
      Backend::for_each(n, op, 4);
    });
  });
  return a.out;
}

template <class Backend>
std::vector<at::Tensor> rk_stage_grads_impl(const at::Tensor& grad_a, const std::optional<at::Tensor>& grad_b,
                                            at::ArrayRef<double> u, at::ArrayRef<double> v, double dt) {
  const StageGradsArgs a = prepare_stage_grads(grad_a, grad_b, u, v);
  ANODE_DISPATCH_FLOATING(a.grad_a.scalar_type(), "rk_stage_grads", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const StageGradsOp<scalar_t, acc_t> op{a.grad_a.const_data_ptr<scalar_t>(),
                                           a.grad_b.defined() ? a.grad_b.const_data_ptr<scalar_t>() : nullptr,
                                           pack_stage_grads<scalar_t, acc_t>(a, u, v, dt)};
    Backend::for_each(a.grad_a.numel(), op, 1);
  });
  return a.out;
}

template <class Backend>
std::vector<at::Tensor> dopri5_dense_backward_impl(const at::Tensor& grad, double dt, at::ArrayRef<double> theta) {
  const DenseBackwardArgs a = prepare_dense_backward(grad, theta);
  const int64_t n = a.numel;
  ANODE_DISPATCH_FLOATING(a.grad.scalar_type(), "dopri5_dense_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto out = pack_dense_grads<scalar_t, acc_t>(a, dt);
    for_each_dense_chunk<acc_t>(theta, dt, [&](int64_t first, const DensePoints<acc_t>& points) {
      const DenseBackwardOp<scalar_t, acc_t> op{a.grad.const_data_ptr<scalar_t>() + first * n, points, out,
                                                /*accumulate=*/first > 0, n};
      Backend::for_each(n, op, 4);
    });
  });
  return a.out;
}

}  // namespace anode
