// Argument checks and output allocation of the fused ops, shared by the CPU and CUDA backends:
// every backend sees the same errors for the same bad input and fills outputs of the same layout.
#include "rk_common.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>

namespace anode {
namespace {

// Every stage must look like the state: same shape, dtype and device.
void check_stages(const char* op, const at::Tensor& y, at::TensorList k, size_t n_weights) {
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

// A second state-like input (y1, grad_b) must match the first in shape, dtype and device.
void check_like(const char* op, const char* name, const at::Tensor& t, const char* ref_name, const at::Tensor& ref) {
  TORCH_CHECK(t.sizes() == ref.sizes() && t.scalar_type() == ref.scalar_type(), op, ": ", name,
              " must match ", ref_name, " in shape and dtype, got ", t.sizes(), " ", t.scalar_type(), " and ",
              ref.sizes(), " ", ref.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), ", ", ref_name, " on ", ref.device());
}

// Tolerance tensor: one value, or one per state element.
void check_tolerance(const char* op, const char* name, const at::Tensor& tol, const at::Tensor& y) {
  TORCH_CHECK(tol.numel() == 1 || tol.numel() == y.numel(), op, ": ", name,
              " must have one element or one per state element (", y.numel(), "), got ", tol.numel());
  TORCH_CHECK(tol.device() == y.device(), op, ": ", name, " is on ", tol.device(), ", state on ", y.device());
}

void check_theta(const char* op, at::ArrayRef<double> theta) {
  for (double x : theta) {
    TORCH_CHECK(x >= 0.0 && x <= 1.0, op, ": dense-output fraction must lie in [0, 1], got ", x);
  }
}

std::vector<int64_t> checked_segments(const char* op, at::IntArrayRef segment_sizes, int64_t numel) {
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

std::vector<at::Tensor> contiguous_all(at::TensorList k) {
  std::vector<at::Tensor> out;
  out.reserve(k.size());
  for (const auto& t : k) out.push_back(t.contiguous());
  return out;
}

at::Tensor like_state(const at::Tensor& y) { return at::empty_like(y, at::MemoryFormat::Contiguous); }

}  // namespace

CombineArgs prepare_combine(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> coeffs) {
  check_stages("rk_combine", y, k, coeffs.size());
  return {y.contiguous(), contiguous_all(k), like_state(y)};
}

StepErrorArgs prepare_step_error(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> b,
                                 at::ArrayRef<double> e) {
  check_stages("rk_step_error", y, k, b.size());
  TORCH_CHECK(e.size() == b.size(), "rk_step_error: b has ", b.size(), " weights, e has ", e.size());
  return {y.contiguous(), contiguous_all(k), like_state(y), like_state(y)};
}

ErrorRatioArgs prepare_error_ratio(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k,
                                   at::ArrayRef<double> e, const at::Tensor& rtol, const at::Tensor& atol,
                                   at::IntArrayRef segment_sizes) {
  const char* op = "rk_error_ratio";
  check_stages(op, y0, k, e.size());
  check_like(op, "y1", y1, "y0", y0);
  check_tolerance(op, "rtol", rtol, y0);
  check_tolerance(op, "atol", atol, y0);
  ErrorRatioArgs a;
  a.y0 = y0.contiguous();
  a.y1 = y1.contiguous();
  a.k = contiguous_all(k);
  a.rtol = rtol.to(at::kDouble).contiguous();
  a.atol = atol.to(at::kDouble).contiguous();
  a.rtol_stride = a.rtol.numel() == 1 ? 0 : 1;
  a.atol_stride = a.atol.numel() == 1 ? 0 : 1;
  a.segments = checked_segments(op, segment_sizes, y0.numel());
  a.ratio = at::empty({static_cast<int64_t>(a.segments.size())}, y0.options().dtype(at::kDouble));
  return a;
}

DenseArgs prepare_dense(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, at::ArrayRef<double> theta) {
  check_stages("dopri5_dense", y0, k, dp5::kStages);
  check_like("dopri5_dense", "y1", y1, "y0", y0);
  check_theta("dopri5_dense", theta);
  std::vector<int64_t> shape{static_cast<int64_t>(theta.size())};
  shape.insert(shape.end(), y0.sizes().begin(), y0.sizes().end());
  return {y0.contiguous(), y1.contiguous(), contiguous_all(k), at::empty(shape, y0.options())};
}

StageGradsArgs prepare_stage_grads(const at::Tensor& grad_a, const std::optional<at::Tensor>& grad_b,
                                   at::ArrayRef<double> u, at::ArrayRef<double> v) {
  const char* op = "rk_stage_grads";
  TORCH_CHECK(at::isFloatingType(grad_a.scalar_type()), op, ": gradient must be floating point, got ",
              grad_a.scalar_type());
  TORCH_CHECK(!u.empty() && u.size() <= static_cast<size_t>(kMaxStages), op, ": 1 to ", kMaxStages,
              " weights expected, got ", u.size());
  StageGradsArgs a;
  a.grad_a = grad_a.contiguous();
  if (grad_b.has_value() && grad_b->defined()) {
    TORCH_CHECK(v.size() == u.size(), op, ": u and v must have the same length");
    check_like(op, "grad_b", *grad_b, "grad_a", grad_a);
    a.grad_b = grad_b->contiguous();
  }
  for (size_t j = 0; j < u.size(); ++j) a.out.push_back(like_state(a.grad_a));
  return a;
}

DenseBackwardArgs prepare_dense_backward(const at::Tensor& grad, at::ArrayRef<double> theta) {
  TORCH_CHECK(grad.dim() >= 1 && grad.size(0) == static_cast<int64_t>(theta.size()),
              "dopri5_dense_backward: gradient must have one row per fraction");
  TORCH_CHECK(at::isFloatingType(grad.scalar_type()), "dopri5_dense_backward: gradient must be floating point");
  check_theta("dopri5_dense_backward", theta);
  DenseBackwardArgs a;
  a.grad = grad.contiguous();
  const auto state_shape = a.grad.sizes().slice(1);
  a.numel = c10::multiply_integers(state_shape);
  // The first chunk of fractions writes every output; with no fractions the gradients are zero.
  for (int i = 0; i < 2 + dp5::kStages; ++i) {
    a.out.push_back(theta.empty() ? at::zeros(state_shape, a.grad.options()) : at::empty(state_shape, a.grad.options()));
  }
  return a;
}

}  // namespace anode
