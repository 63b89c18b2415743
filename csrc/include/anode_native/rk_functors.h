#pragma once
// One functor per fused op: the kernel arguments (pointers and packed weights, held by value) and
// `operator()(e)`, the work for state element e. The CPU backend calls it from at::parallel_for,
// the CUDA backend from a grid-stride loop, so both run the element functions of rk_element.h
// with the same arguments.
#include <cstdint>

#include "anode_native/rk_element.h"

namespace anode {

// out = y + sum_j w_j k_j
template <typename scalar_t, typename acc_t>
struct CombineOp {
  const scalar_t* y;
  StageWeights<scalar_t, acc_t> stages;
  scalar_t* out;
  ANODE_INLINE void operator()(int64_t e) const { out[e] = combine_element(y, stages, e); }
};

// y1 = y + sum_j b_j k_j and err = sum_j e_j k_j in one pass over the stages.
template <typename scalar_t, typename acc_t>
struct StepErrorOp {
  const scalar_t* y;
  StageWeights<scalar_t, acc_t> solution, error;
  scalar_t* y1;
  scalar_t* err;
  ANODE_INLINE void operator()(int64_t e) const {
    y1[e] = combine_element(y, solution, e);
    err[e] = static_cast<scalar_t>(weighted_sum(error, e));
  }
};

// The squared scaled error of element e (a double), which the backends sum per segment.
template <typename scalar_t, typename acc_t>
struct ErrorRatioTermOp {
  const scalar_t* y0;
  const scalar_t* y1;
  StageWeights<scalar_t, acc_t> error;
  const double* rtol;
  int64_t rtol_stride;
  const double* atol;
  int64_t atol_stride;
  ANODE_INLINE double operator()(int64_t e) const {
    return error_ratio_term(y0, y1, error, rtol, rtol_stride, atol, atol_stride, e);
  }
};

// Dense output at one chunk of fractions: out[m * numel + e].
template <typename scalar_t, typename acc_t>
struct DenseOp {
  const scalar_t* y0;
  const scalar_t* y1;
  StageWeights<scalar_t, acc_t> mid;
  DensePoints<acc_t> points;
  scalar_t* out;
  int64_t numel;
  ANODE_INLINE void operator()(int64_t e) const { dense_element(y0, y1, mid, points, out, numel, e); }
};

// grad_k_j = u_j * grad_a + v_j * grad_b (grad_b may be null).
template <typename scalar_t, typename acc_t>
struct StageGradsOp {
  const scalar_t* grad_a;
  const scalar_t* grad_b;
  StageGradWeights<scalar_t, acc_t> weights;
  ANODE_INLINE void operator()(int64_t e) const { stage_grads_element(grad_a, grad_b, weights, e); }
};

// Gradients of dopri5_dense from one chunk of fractions.
template <typename scalar_t, typename acc_t>
struct DenseBackwardOp {
  const scalar_t* grad;
  DensePoints<acc_t> points;
  DenseGradOutputs<scalar_t, acc_t> out;
  bool accumulate;
  int64_t numel;
  ANODE_INLINE void operator()(int64_t e) const { dense_backward_element(grad, points, out, accumulate, numel, e); }
};

}  // namespace anode
