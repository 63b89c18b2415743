#pragma once
// The adjoint backward pass (Chen et al. 2018) with torchdiffeq 0.2.5's semantics, on the native
// drivers. The augmented state is ONE flat contiguous tensor in the state's dtype:
//
//   z = [ y (N) | a_y (N) | a_theta (P = sum of the parameters' numels, in parameter order) | a_t (1) ]
//
// integrated from the last output time back to the first with
//   dy/dt = f(t, y),  da_y/dt = -a_y^T df/dy,  da_theta/dt = -a_y^T df/dtheta,  da_t/dt = -a_y^T df/dt.
// The vector-Jacobian products come from torch's autograd, called from C++ on each evaluation.
// Only the forward solution at the output times is kept, so memory does not grow with the steps.
#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <vector>

#include "dopri5.h"
#include "fixed_grid.h"
#include "vector_field.h"

namespace anode {

// The user's field as the adjoint needs it: `plain(t, y)` evaluates f (the time gradients), and
// `differentiable(t_tensor, y, t)` evaluates it so that autograd can differentiate the result
// with respect to y, the parameters and t_tensor. A Python field holds the GIL while it runs, and
// the GIL is released around each VJP (autograd may hand work to threads that need it); a native
// field runs the whole solve without the GIL.
struct AdjointField {
  VectorField& plain;
  std::function<at::Tensor(const at::Tensor& t_tensor, const at::Tensor& y, double t)> differentiable;
  bool holds_gil;
};

// f and its VJPs for the layout above. f is evaluated under grad mode at a fresh leaf y (and a t
// that requires grad only when time gradients are wanted); parameters f does not use get 0.
class AugmentedField : public VectorField {
 public:
  AugmentedField(AdjointField func, std::vector<at::Tensor> params, std::vector<int64_t> state_shape,
                 bool t_requires_grad);

  at::Tensor operator()(double t, const at::Tensor& z) override;

  // f alone, without VJPs (for the time gradient dL/dt_i = <f(t_i, y_i), dL/dy_i>).
  at::Tensor plain(double t, const at::Tensor& y) { return func_.plain(t, y); }

  int64_t state_numel() const { return n_; }
  int64_t param_numel() const { return p_; }

 private:
  AdjointField func_;
  std::vector<at::Tensor> params_;
  std::vector<int64_t> shape_;
  int64_t n_ = 0, p_ = 0;
  bool t_requires_grad_;
};

// How the augmented system is integrated: adaptive dopri5 with `options` (their segments and
// tolerances describe z), or the fixed-grid method `fixed` when set.
struct AdjointIntegrator {
  AdaptiveOptions options;
  std::optional<FixedMethod> fixed;
  std::optional<double> step_size;
};

struct AdjointGrads {
  at::Tensor y0;                    // dL/dy0, the state's shape
  std::vector<at::Tensor> params;   // dL/dtheta, each parameter's shape and dtype
  std::optional<at::Tensor> times;  // dL/dt_i, [T] in the state's dtype, when requested
  SolveStats stats;                 // backward evaluations (time-gradient calls included) and steps
};

// ys: the forward solution [T, *shape]; grad_ys: dL/dys, same shape; times: the user's output times.
AdjointGrads adjoint_backward(AdjointField func, const std::vector<at::Tensor>& params,
                              const std::vector<double>& times, const at::Tensor& ys, const at::Tensor& grad_ys,
                              bool t_requires_grad, const AdjointIntegrator& integrator);

}  // namespace anode
