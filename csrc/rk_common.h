#pragma once
// Host-side argument checks and kernel-argument packing shared by the CPU and CUDA op files.
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <vector>

#include "anode_native/macros.h"
#include "anode_native/rk_element.h"

namespace anode {

// Every stage must look like the state: same shape, dtype and device.
inline void check_stages(const char* op, const at::Tensor& y, at::TensorList k, size_t n_weights) {
  TORCH_CHECK(at::isFloatingType(y.scalar_type()), op, ": state must be floating point, got ", y.scalar_type());
  TORCH_CHECK(!k.empty(), op, ": needs at least one stage");
  TORCH_CHECK(k.size() <= static_cast<size_t>(kMaxStages), op, ": at most ", kMaxStages, " stages, got ", k.size());
  TORCH_CHECK(k.size() == n_weights, op, ": got ", k.size(), " stages but ", n_weights, " weights");
  for (size_t j = 0; j < k.size(); ++j) {
    TORCH_CHECK(k[j].sizes() == y.sizes(), op, ": stage ", j, " has shape ", k[j].sizes(), ", state has ", y.sizes());
    TORCH_CHECK(k[j].scalar_type() == y.scalar_type(), op, ": stage ", j, " has dtype ", k[j].scalar_type(),
                ", state has ", y.scalar_type());
    TORCH_CHECK(k[j].device() == y.device(), op, ": stage ", j, " is on ", k[j].device(), ", state on ", y.device());
  }
}

inline std::vector<at::Tensor> contiguous_all(at::TensorList k) {
  std::vector<at::Tensor> out;
  out.reserve(k.size());
  for (const auto& t : k) out.push_back(t.contiguous());
  return out;
}

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

inline void check_theta(const char* op, at::ArrayRef<double> theta) {
  for (double x : theta) {
    TORCH_CHECK(x >= 0.0 && x <= 1.0, op, ": dense-output fraction must lie in [0, 1], got ", x);
  }
}

// Tolerance tensor: one value, or one per state element.
inline void check_tolerance(const char* op, const char* name, const at::Tensor& tol, const at::Tensor& y) {
  TORCH_CHECK(tol.numel() == 1 || tol.numel() == y.numel(), op, ": ", name,
              " must have one element or one per state element (", y.numel(), "), got ", tol.numel());
  TORCH_CHECK(tol.device() == y.device(), op, ": ", name, " is on ", tol.device(), ", state on ", y.device());
}

inline std::vector<int64_t> checked_segments(const char* op, at::IntArrayRef segment_sizes, int64_t numel) {
  std::vector<int64_t> seg(segment_sizes.begin(), segment_sizes.end());
  if (seg.empty()) seg.push_back(numel);
  int64_t total = 0;
  for (int64_t s : seg) {
    TORCH_CHECK(s >= 0, op, ": segment sizes must be non-negative");
    total += s;
  }
  TORCH_CHECK(total == numel, op, ": segment sizes add up to ", total, ", state has ", numel, " elements");
  return seg;
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

}  // namespace anode
