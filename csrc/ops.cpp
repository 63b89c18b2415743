// Schemas of the fused Runge-Kutta ops and their CPU implementations.
// Stages are lists of tensors of the state's shape (k[0] = f(t0, y0), ...): the driver keeps the
// func outputs as they are returned, so FSAL is a reference swap and nothing is copied.
#include <torch/library.h>

#include "rk_common.h"

TORCH_LIBRARY(anode_native, m) {
  // y + dt * sum_j coeffs[j] * k[j]. y, k[j]: [*state]; returns [*state]. Stage combination and
  // solution update of any explicit Runge-Kutta method.
  m.def("rk_combine(Tensor y, Tensor[] k, float[] coeffs, float dt) -> Tensor");
  // One pass for the solution and the embedded error estimate:
  // (y + dt * sum_j b_j k_j, dt * sum_j e_j k_j), both [*state].
  m.def("rk_step_error(Tensor y, Tensor[] k, float[] b, float[] e, float dt) -> (Tensor, Tensor)");
  // Per segment of the flattened state (segment_sizes add up to numel; [] = one segment), the RMS
  // of err / (atol + rtol * max(|y0|, |y1|)) with err = dt * sum_j e_j k_j formed in the state's
  // precision and the rest in float64. rtol, atol: one element or one per state element.
  // Returns float64 [num_segments]. torchdiffeq's error norm is the max over segments.
  m.def("rk_error_ratio(Tensor y0, Tensor y1, Tensor[] k, float[] e, float dt, Tensor rtol, Tensor atol, "
        "int[] segment_sizes) -> Tensor");
  // Dormand-Prince quartic dense output of the step y0 -> y1 of size dt with its 7 stages, at
  // fractions theta[m] in [0, 1] of the step. Returns [len(theta), *state].
  m.def("dopri5_dense(Tensor y0, Tensor y1, Tensor[] k, float dt, float[] theta) -> Tensor");

  // Backward ops. grad_k[j] = dt * (u[j] * grad_a + v[j] * grad_b): the stage gradients of
  // rk_combine (u = coeffs, no grad_b) and of rk_step_error (u = b, v = e).
  m.def("rk_stage_grads(Tensor grad_a, Tensor? grad_b, float[] u, float[] v, float dt) -> Tensor[]");
  // Gradients of dopri5_dense from grad [len(theta), *state]: [grad_y0, grad_y1, grad_k0..grad_k6].
  m.def("dopri5_dense_backward(Tensor grad, float dt, float[] theta) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(anode_native, CPU, m) {
  m.impl("rk_combine", &anode::rk_combine_cpu);
  m.impl("rk_step_error", &anode::rk_step_error_cpu);
  m.impl("rk_error_ratio", &anode::rk_error_ratio_cpu);
  m.impl("dopri5_dense", &anode::dopri5_dense_cpu);
  m.impl("rk_stage_grads", &anode::rk_stage_grads_cpu);
  m.impl("dopri5_dense_backward", &anode::dopri5_dense_backward_cpu);
}
