#pragma once
// Host-side argument checks, output allocation and kernel-argument packing shared by the CPU and
// CUDA backends (the op bodies that use them are in rk_ops_impl.h), and the backends' entry points.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <optional>
#include <tuple>
#include <vector>

#include "anode_native/macros.h"
#include "anode_native/rk_element.h"

#define ANODE_DISPATCH_FLOATING(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, TYPE, NAME, __VA_ARGS__)

namespace anode {

// Packs stages with weights scale * w_j. Stages with a zero weight are skipped unless `keep_all`.
template <typename scalar_t, typename acc_t>
StageWeights<scalar_t, acc_t> pack_stages(const std::vector<at::Tensor>& k, at::ArrayRef<double> w, double scale,
                                          bool keep_all = false) {
  StageWeights<scalar_t, acc_t> s{};
  s.n = 0;
  for (size_t j = 0; j < k.size(); ++j) {
    if (!keep_all && w[j] == 0.0) continue;
    s.k[s.n] = k[j].const_data_ptr<scalar_t>();
    s.w[s.n] = static_cast<acc_t>(scale * w[j]);
    ++s.n;
  }
  return s;
}

template <typename acc_t>
DensePoints<acc_t> pack_dense_points(at::ArrayRef<double> theta, double dt) {
  DensePoints<acc_t> p{};
  p.n = static_cast<int>(theta.size());
  for (int m = 0; m < p.n; ++m) {
    double w[5];
    dense_weights(theta[m], w);
    for (int i = 0; i < 3; ++i) p.w[m][i] = static_cast<acc_t>(w[i]);
    p.w[m][3] = static_cast<acc_t>(dt * w[3]);
    p.w[m][4] = static_cast<acc_t>(dt * w[4]);
  }
  return p;
}

// Contiguous inputs and freshly allocated (contiguous) outputs of one op call, after the checks.
struct CombineArgs {
  at::Tensor y;
  std::vector<at::Tensor> k;
  at::Tensor out;
};
struct StepErrorArgs {
  at::Tensor y;
  std::vector<at::Tensor> k;
  at::Tensor y1, err;
};
struct ErrorRatioArgs {
  at::Tensor y0, y1;
  std::vector<at::Tensor> k;
  at::Tensor rtol, atol;          // float64; stride 0 (one value) or 1 (one per element)
  int64_t rtol_stride, atol_stride;
  std::vector<int64_t> segments;  // sizes, adding up to numel
  at::Tensor ratio;               // float64 [segments], to be filled
};
struct DenseArgs {
  at::Tensor y0, y1;
  std::vector<at::Tensor> k;
  at::Tensor out;  // [len(theta), *state]
};
struct StageGradsArgs {
  at::Tensor grad_a, grad_b;  // grad_b undefined when absent
  std::vector<at::Tensor> out;
};
struct DenseBackwardArgs {
  at::Tensor grad;              // [len(theta), *state]
  int64_t numel;                // of the state
  std::vector<at::Tensor> out;  // y0, y1, k0..k6 (zeros when theta is empty)
};

CombineArgs prepare_combine(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> coeffs);
StepErrorArgs prepare_step_error(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> b,
                                 at::ArrayRef<double> e);
ErrorRatioArgs prepare_error_ratio(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k,
                                   at::ArrayRef<double> e, const at::Tensor& rtol, const at::Tensor& atol,
                                   at::IntArrayRef segment_sizes);
DenseArgs prepare_dense(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, at::ArrayRef<double> theta);
StageGradsArgs prepare_stage_grads(const at::Tensor& grad_a, const std::optional<at::Tensor>& grad_b,
                                   at::ArrayRef<double> u, at::ArrayRef<double> v);
DenseBackwardArgs prepare_dense_backward(const at::Tensor& grad, at::ArrayRef<double> theta);

// Stage-gradient outputs with their weights dt * u_j and dt * v_j (v unused without grad_b).
template <typename scalar_t, typename acc_t>
StageGradWeights<scalar_t, acc_t> pack_stage_grads(const StageGradsArgs& a, at::ArrayRef<double> u,
                                                   at::ArrayRef<double> v, double dt) {
  StageGradWeights<scalar_t, acc_t> s{};
  s.n = static_cast<int>(u.size());
  for (int j = 0; j < s.n; ++j) {
    s.out[j] = a.out[j].mutable_data_ptr<scalar_t>();
    s.u[j] = static_cast<acc_t>(dt * u[j]);
    s.v[j] = a.grad_b.defined() ? static_cast<acc_t>(dt * v[j]) : acc_t(0);
  }
  return s;
}

template <typename scalar_t, typename acc_t>
DenseGradOutputs<scalar_t, acc_t> pack_dense_grads(const DenseBackwardArgs& a, double dt) {
  DenseGradOutputs<scalar_t, acc_t> g{};
  g.y0 = a.out[0].mutable_data_ptr<scalar_t>();
  g.y1 = a.out[1].mutable_data_ptr<scalar_t>();
  for (int j = 0; j < dp5::kStages; ++j) {
    g.k[j] = a.out[2 + j].mutable_data_ptr<scalar_t>();
    g.mid[j] = static_cast<acc_t>(dt * dp5::CMID[j]);
  }
  return g;
}

// fn(first, points) for each chunk of at most kMaxDensePoints fractions, `first` its offset in theta.
template <typename acc_t, typename Fn>
void for_each_dense_chunk(at::ArrayRef<double> theta, double dt, const Fn& fn) {
  for (size_t first = 0; first < theta.size(); first += kMaxDensePoints) {
    const auto chunk = theta.slice(first, std::min<size_t>(kMaxDensePoints, theta.size() - first));
    fn(static_cast<int64_t>(first), pack_dense_points<acc_t>(chunk, dt));
  }
}

// CPU and CUDA entry points (same names, one file per backend).
at::Tensor rk_combine_cpu(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> coeffs, double dt);
std::tuple<at::Tensor, at::Tensor> rk_step_error_cpu(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> b,
                                                     at::ArrayRef<double> e, double dt);
at::Tensor rk_error_ratio_cpu(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, at::ArrayRef<double> e,
                              double dt, const at::Tensor& rtol, const at::Tensor& atol, at::IntArrayRef segment_sizes);
at::Tensor dopri5_dense_cpu(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, double dt,
                            at::ArrayRef<double> theta);
std::vector<at::Tensor> rk_stage_grads_cpu(const at::Tensor& grad_a, const std::optional<at::Tensor>& grad_b,
                                           at::ArrayRef<double> u, at::ArrayRef<double> v, double dt);
std::vector<at::Tensor> dopri5_dense_backward_cpu(const at::Tensor& grad, double dt, at::ArrayRef<double> theta);

#ifdef ANODE_WITH_CUDA
at::Tensor rk_combine_cuda(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> coeffs, double dt);
std::tuple<at::Tensor, at::Tensor> rk_step_error_cuda(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> b,
                                                      at::ArrayRef<double> e, double dt);
at::Tensor rk_error_ratio_cuda(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, at::ArrayRef<double> e,
                               double dt, const at::Tensor& rtol, const at::Tensor& atol, at::IntArrayRef segment_sizes);
at::Tensor dopri5_dense_cuda(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, double dt,
                             at::ArrayRef<double> theta);
std::vector<at::Tensor> rk_stage_grads_cuda(const at::Tensor& grad_a, const std::optional<at::Tensor>& grad_b,
                                            at::ArrayRef<double> u, at::ArrayRef<double> v, double dt);
std::vector<at::Tensor> dopri5_dense_backward_cuda(const at::Tensor& grad, double dt, at::ArrayRef<double> theta);
#endif  // ANODE_WITH_CUDA

}  // namespace anode
