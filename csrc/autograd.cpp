// Autograd formulas of the fused ops, kept apart from the kernels (torchvision's layout). Each
// forward redispatches below autograd; each backward calls the backward ops through the
// dispatcher, so it runs on whichever backend holds the tensors.
#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "anode_native/tableau.h"
#include "ops_handles.h"

namespace anode {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::vector<double> to_doubles(const c10::IValue& v) { return v.toDoubleVector(); }

class RkCombineFunction : public torch::autograd::Function<RkCombineFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y, at::TensorList k, std::vector<double> coeffs,
                            double dt) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->saved_data["coeffs"] = coeffs;
    ctx->saved_data["dt"] = dt;
    return ops::rk_combine(y, k, coeffs, dt);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto coeffs = to_doubles(ctx->saved_data["coeffs"]);
    const double dt = ctx->saved_data["dt"].toDouble();
    variable_list out{grads[0]};
    for (auto& g : ops::rk_stage_grads(grads[0], std::nullopt, coeffs, {}, dt)) out.push_back(g);
    out.emplace_back();
    out.emplace_back();
    return out;
  }
};

class RkStepErrorFunction : public torch::autograd::Function<RkStepErrorFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& y, at::TensorList k, std::vector<double> b,
                               std::vector<double> e, double dt) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->saved_data["b"] = b;
    ctx->saved_data["e"] = e;
    ctx->saved_data["dt"] = dt;
    auto [y1, err] = ops::rk_step_error(y, k, b, e, dt);
    return {y1, err};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto b = to_doubles(ctx->saved_data["b"]);
    const auto e = to_doubles(ctx->saved_data["e"]);
    const double dt = ctx->saved_data["dt"].toDouble();
    at::Tensor gy = grads[0].defined() ? grads[0] : at::zeros_like(grads[1]);
    variable_list out{grads[0]};
    for (auto& g : ops::rk_stage_grads(gy, grads[1], b, e, dt)) out.push_back(g);
    out.emplace_back();
    out.emplace_back();
    out.emplace_back();
    return out;
  }
};

class Dopri5DenseFunction : public torch::autograd::Function<Dopri5DenseFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y0, const at::Tensor& y1, at::TensorList k,
                            double dt, std::vector<double> theta) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->saved_data["dt"] = dt;
    ctx->saved_data["theta"] = theta;
    return ops::dopri5_dense(y0, y1, k, dt, theta);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const double dt = ctx->saved_data["dt"].toDouble();
    const auto theta = to_doubles(ctx->saved_data["theta"]);
    variable_list out = ops::dopri5_dense_backward(grads[0], dt, theta);  // y0, y1, k0..k6
    out.emplace_back();
    out.emplace_back();
    return out;
  }
};

// The error ratio is differentiable almost everywhere; its gradient is only needed by users who
// differentiate through a controller, so it is written with ATen ops rather than a kernel.
class RkErrorRatioFunction : public torch::autograd::Function<RkErrorRatioFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y0, const at::Tensor& y1, at::TensorList k,
                            std::vector<double> e, double dt, const at::Tensor& rtol, const at::Tensor& atol,
                            std::vector<int64_t> segments) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor ratio = ops::rk_error_ratio(y0, y1, k, e, dt, rtol, atol, segments);
    std::vector<at::Tensor> to_save{y0, y1, rtol, atol, ratio};
    for (const auto& kj : k) to_save.push_back(kj);
    ctx->save_for_backward(to_save);
    ctx->saved_data["e"] = e;
    ctx->saved_data["dt"] = dt;
    ctx->saved_data["segments"] = segments;
    return ratio;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &y0 = saved[0], &y1 = saved[1], &ratio = saved[4];
    const at::Tensor rtol = saved[2].to(at::kDouble).reshape(saved[2].numel() == 1 ? at::IntArrayRef{} : y0.sizes());
    const at::Tensor atol = saved[3].to(at::kDouble).reshape(saved[3].numel() == 1 ? at::IntArrayRef{} : y0.sizes());
    const std::vector<at::Tensor> k(saved.begin() + 5, saved.end());
    const auto e = to_doubles(ctx->saved_data["e"]);
    const double dt = ctx->saved_data["dt"].toDouble();
    auto segments = ctx->saved_data["segments"].toIntVector();
    if (segments.empty()) segments.push_back(y0.numel());

    at::Tensor err = at::zeros_like(y0, y0.options().dtype(at::kDouble));
    for (size_t j = 0; j < k.size(); ++j) err = err + (dt * e[j]) * k[j].to(at::kDouble);
    const at::Tensor a0 = y0.to(at::kDouble).abs(), a1 = y1.to(at::kDouble).abs();
    const at::Tensor scale = atol + rtol * at::maximum(a0, a1);
    const at::Tensor r = err / scale;
    // d ratio_s / d r_i = r_i / (N_s ratio_s) for i in segment s (0 where the ratio is 0).
    std::vector<at::Tensor> pieces;
    for (size_t s = 0; s < segments.size(); ++s) {
      const double n = static_cast<double>(segments[s]);
      const at::Tensor rs = ratio[s];
      const at::Tensor coeff = at::where(rs > 0, grads[0][s] / (n * rs), at::zeros_like(rs));
      pieces.push_back(coeff.expand({segments[s]}));
    }
    const at::Tensor dr = (at::cat(pieces).reshape(y0.sizes()) * r);  // dL/dr
    const at::Tensor derr = dr / scale;
    const at::Tensor dscale = -dr * r / scale;
    const at::Tensor dmax = dscale * rtol;
    const at::Tensor pick0 = (a0 >= a1).to(at::kDouble);
    const at::Tensor gy0 = (dmax * pick0 * y0.to(at::kDouble).sign()).to(y0.scalar_type());
    const at::Tensor gy1 = (dmax * (1 - pick0) * y1.to(at::kDouble).sign()).to(y1.scalar_type());
    variable_list out{gy0, gy1};
    for (size_t j = 0; j < k.size(); ++j) out.push_back((derr * (dt * e[j])).to(k[j].scalar_type()));
    for (int i = 0; i < 5; ++i) out.emplace_back();  // e, dt, rtol, atol, segments
    return out;
  }
};

// Autograd only when it will record something: otherwise go straight to the kernel (the
// driver's no-grad solves call these ops a few times per step and pay for every layer).
bool needs_autograd(at::TensorList k, std::initializer_list<at::Tensor> others) {
  if (!at::GradMode::is_enabled()) return false;
  for (const auto& t : k) {
    if (t.requires_grad()) return true;
  }
  for (const auto& t : others) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

at::Tensor rk_combine_autograd(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> coeffs, double dt) {
  if (!needs_autograd(k, {y})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::rk_combine(y, k, coeffs, dt);
  }
  return RkCombineFunction::apply(y, k, coeffs.vec(), dt);
}

std::tuple<at::Tensor, at::Tensor> rk_step_error_autograd(const at::Tensor& y, at::TensorList k,
                                                          at::ArrayRef<double> b, at::ArrayRef<double> e, double dt) {
  if (!needs_autograd(k, {y})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::rk_step_error(y, k, b, e, dt);
  }
  auto out = RkStepErrorFunction::apply(y, k, b.vec(), e.vec(), dt);
  return {out[0], out[1]};
}

at::Tensor rk_error_ratio_autograd(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k,
                                   at::ArrayRef<double> e, double dt, const at::Tensor& rtol, const at::Tensor& atol,
                                   at::IntArrayRef segments) {
  if (!needs_autograd(k, {y0, y1})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::rk_error_ratio(y0, y1, k, e, dt, rtol, atol, segments);
  }
  return RkErrorRatioFunction::apply(y0, y1, k, e.vec(), dt, rtol, atol, segments.vec());
}

at::Tensor dopri5_dense_autograd(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, double dt,
                                 at::ArrayRef<double> theta) {
  if (!needs_autograd(k, {y0, y1})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::dopri5_dense(y0, y1, k, dt, theta);
  }
  return Dopri5DenseFunction::apply(y0, y1, k, dt, theta.vec());
}

}  // namespace
}  // namespace anode

TORCH_LIBRARY_IMPL(anode_native, Autograd, m) {
  m.impl("rk_combine", &anode::rk_combine_autograd);
  m.impl("rk_step_error", &anode::rk_step_error_autograd);
  m.impl("rk_error_ratio", &anode::rk_error_ratio_autograd);
  m.impl("dopri5_dense", &anode::dopri5_dense_autograd);
}
