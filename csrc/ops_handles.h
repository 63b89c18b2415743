#pragma once
// Typed dispatcher handles of the fused ops, for C++ callers (the autograd formulas and the
// solver drivers). Calls go through the dispatcher, so they pick the backend and autograd.
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <optional>
#include <tuple>
#include <vector>

namespace anode {
namespace ops {

at::Tensor rk_combine(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> coeffs, double dt);
std::tuple<at::Tensor, at::Tensor> rk_step_error(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> b,
                                                 at::ArrayRef<double> e, double dt);
at::Tensor rk_error_ratio(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, at::ArrayRef<double> e,
                          double dt, const at::Tensor& rtol, const at::Tensor& atol, at::IntArrayRef segment_sizes);
at::Tensor dopri5_dense(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, double dt,
                        at::ArrayRef<double> theta);
std::vector<at::Tensor> rk_stage_grads(const at::Tensor& grad_a, const std::optional<at::Tensor>& grad_b,
                                       at::ArrayRef<double> u, at::ArrayRef<double> v, double dt);
std::vector<at::Tensor> dopri5_dense_backward(const at::Tensor& grad, double dt, at::ArrayRef<double> theta);

}  // namespace ops
}  // namespace anode
