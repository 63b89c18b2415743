#include "ops_handles.h"

#include <ATen/core/dispatch/Dispatcher.h>

namespace anode {
namespace ops {
namespace {

template <typename Signature>
c10::TypedOperatorHandle<Signature> handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

}  // namespace

at::Tensor rk_combine(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> coeffs, double dt) {
  static const auto op = handle<decltype(rk_combine)>("anode_native::rk_combine");
  return op.call(y, k, coeffs, dt);
}

std::tuple<at::Tensor, at::Tensor> rk_step_error(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> b,
                                                 at::ArrayRef<double> e, double dt) {
  static const auto op = handle<decltype(rk_step_error)>("anode_native::rk_step_error");
  return op.call(y, k, b, e, dt);
}

at::Tensor rk_error_ratio(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, at::ArrayRef<double> e,
                          double dt, const at::Tensor& rtol, const at::Tensor& atol, at::IntArrayRef segment_sizes) {
  static const auto op = handle<decltype(rk_error_ratio)>("anode_native::rk_error_ratio");
  return op.call(y0, y1, k, e, dt, rtol, atol, segment_sizes);
}

at::Tensor dopri5_dense(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, double dt,
                        at::ArrayRef<double> theta) {
  static const auto op = handle<decltype(dopri5_dense)>("anode_native::dopri5_dense");
  return op.call(y0, y1, k, dt, theta);
}

std::vector<at::Tensor> rk_stage_grads(const at::Tensor& grad_a, const std::optional<at::Tensor>& grad_b,
                                       at::ArrayRef<double> u, at::ArrayRef<double> v, double dt) {
  static const auto op = handle<decltype(rk_stage_grads)>("anode_native::rk_stage_grads");
  return op.call(grad_a, grad_b, u, v, dt);
}

std::vector<at::Tensor> dopri5_dense_backward(const at::Tensor& grad, double dt, at::ArrayRef<double> theta) {
  static const auto op = handle<decltype(dopri5_dense_backward)>("anode_native::dopri5_dense_backward");
  return op.call(grad, dt, theta);
}

}  // namespace ops
}  // namespace anode
