#pragma once
// Per-element arithmetic of the fused Runge-Kutta ops. ONE source for the CPU kernels
// (called from at::parallel_for) and the CUDA kernels (called from grid-stride loops).
//
// Every op reads its stages as `n` pointers to contiguous arrays of the state's size and combines
// them with host-side weights that already include dt (w_j = dt * a_j), as torchdiffeq does
// (k.matmul(beta * dt)). `acc_t` is the accumulation type (float for float/half/bfloat16, double
// for double); the error ratio always accumulates in double.
#include <cstdint>

#include "anode_native/macros.h"
#include "anode_native/tableau.h"

namespace anode {

// Stages and their weights, passed by value to kernels.
template <typename scalar_t, typename acc_t>
struct StageWeights {
  const scalar_t* k[kMaxStages];
  acc_t w[kMaxStages];
  int n;
};

// sum_j w_j * k_j[e]
template <typename scalar_t, typename acc_t>
ANODE_INLINE acc_t weighted_sum(const StageWeights<scalar_t, acc_t>& s, int64_t e) {
  acc_t acc = acc_t(0);
#pragma unroll
  for (int j = 0; j < kMaxStages; ++j) {
    if (j < s.n) acc += s.w[j] * static_cast<acc_t>(s.k[j][e]);
  }
  return acc;
}

// Stage combination / solution update: y + dt * sum_j a_j k_j.
template <typename scalar_t, typename acc_t>
ANODE_INLINE scalar_t combine_element(const scalar_t* y, const StageWeights<scalar_t, acc_t>& s, int64_t e) {
  return static_cast<scalar_t>(static_cast<acc_t>(y[e]) + weighted_sum(s, e));
}

// Squared scaled error of one element: (err / (atol + rtol * max(|y0|, |y1|)))^2 in double.
// rtol/atol are read per element when `*_stride` is 1, broadcast when it is 0.
template <typename scalar_t, typename tol_t>
ANODE_INLINE double scaled_error_sq(double err, scalar_t y0, scalar_t y1, const tol_t* rtol,
                                    int64_t rtol_stride, const tol_t* atol, int64_t atol_stride, int64_t e) {
  const double a0 = static_cast<double>(y0) < 0 ? -static_cast<double>(y0) : static_cast<double>(y0);
  const double a1 = static_cast<double>(y1) < 0 ? -static_cast<double>(y1) : static_cast<double>(y1);
  const double scale = static_cast<double>(atol[e * atol_stride]) +
                       static_cast<double>(rtol[e * rtol_stride]) * (a0 > a1 ? a0 : a1);
  const double r = err / scale;
  return r * r;
}

// Weights of the quartic dense output of a Dormand-Prince step at fraction x in [0, 1]:
//   y(t0 + x dt) = w[0] y0 + w[1] y1 + w[2] y_mid + dt (w[3] f0 + w[4] f1)
// which is torchdiffeq's interpolant e + x d + x^2 c + x^3 b + x^4 a written per input
// (torchdiffeq/_impl/interp.py: a = 2dt(f1-f0) - 8(y1+y0) + 16 y_mid, ...). The same weights
// give the backward pass, which is why the forward uses this form too.
ANODE_INLINE void dense_weights(double x, double w[5]) {
  const double x2 = x * x, x3 = x2 * x, x4 = x3 * x;
  w[0] = 1.0 - 11.0 * x2 + 18.0 * x3 - 8.0 * x4;  // y0
  w[1] = -5.0 * x2 + 14.0 * x3 - 8.0 * x4;        // y1
  w[2] = 16.0 * x2 - 32.0 * x3 + 16.0 * x4;       // y_mid
  w[3] = x - 4.0 * x2 + 5.0 * x3 - 2.0 * x4;      // dt * f0
  w[4] = x2 - 3.0 * x3 + 2.0 * x4;                // dt * f1
}

// Dense-output fractions with their weights (already multiplied by dt where the input is f).
template <typename acc_t>
struct DensePoints {
  acc_t w[kMaxDensePoints][5];
  int n;
};

// Writes y(t0 + x_m dt) for every point m at out[m * numel + e]. `mid` holds dt * CMID_j over all
// 7 stages, k[0] is f0 and k[6] is f1.
template <typename scalar_t, typename acc_t>
ANODE_INLINE void dense_element(const scalar_t* y0, const scalar_t* y1, const StageWeights<scalar_t, acc_t>& mid,
                                const DensePoints<acc_t>& pts, scalar_t* out, int64_t numel, int64_t e) {
  const acc_t a0 = static_cast<acc_t>(y0[e]);
  const acc_t a1 = static_cast<acc_t>(y1[e]);
  const acc_t ymid = a0 + weighted_sum(mid, e);
  const acc_t f0 = static_cast<acc_t>(mid.k[0][e]);
  const acc_t f1 = static_cast<acc_t>(mid.k[mid.n - 1][e]);
  for (int m = 0; m < pts.n; ++m) {
    const acc_t* w = pts.w[m];
    out[m * numel + e] = static_cast<scalar_t>(w[0] * a0 + w[1] * a1 + w[2] * ymid + w[3] * f0 + w[4] * f1);
  }
}

// Backward of dense_element: given grad[m * numel + e], the sums over points of each weight times
// the gradient. The caller turns them into gradients of y0, y1 and the stages.
template <typename scalar_t, typename acc_t>
struct DenseGradSums {
  acc_t y0, y1, ymid, f0, f1;
};

template <typename scalar_t, typename acc_t>
ANODE_INLINE DenseGradSums<scalar_t, acc_t> dense_backward_sums(const scalar_t* grad, const DensePoints<acc_t>& pts,
                                                                int64_t numel, int64_t e) {
  DenseGradSums<scalar_t, acc_t> s{acc_t(0), acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
  for (int m = 0; m < pts.n; ++m) {
    const acc_t g = static_cast<acc_t>(grad[m * numel + e]);
    s.y0 += pts.w[m][0] * g;
    s.y1 += pts.w[m][1] * g;
    s.ymid += pts.w[m][2] * g;
    s.f0 += pts.w[m][3] * g;
    s.f1 += pts.w[m][4] * g;
  }
  return s;
}

// Where the gradients of dopri5_dense go: y0, y1 and the 7 stages. `mid` holds dt * CMID_j, the
// weight of stage j in y_mid = y0 + sum_j mid_j k_j.
template <typename scalar_t, typename acc_t>
struct DenseGradOutputs {
  scalar_t* y0;
  scalar_t* y1;
  scalar_t* k[dp5::kStages];
  acc_t mid[dp5::kStages];
};

template <typename scalar_t, typename acc_t>
ANODE_INLINE acc_t prior_or_zero(const scalar_t* p, bool accumulate, int64_t e) {
  return accumulate ? static_cast<acc_t>(p[e]) : acc_t(0);
}

// Gradients of one chunk of dense-output points; `accumulate` adds them to those of earlier chunks.
template <typename scalar_t, typename acc_t>
ANODE_INLINE void dense_backward_element(const scalar_t* grad, const DensePoints<acc_t>& pts,
                                         const DenseGradOutputs<scalar_t, acc_t>& out, bool accumulate, int64_t numel,
                                         int64_t e) {
  const auto s = dense_backward_sums<scalar_t, acc_t>(grad, pts, numel, e);
  // y_mid = y0 + sum_j mid_j k_j feeds y0 and every stage.
  out.y0[e] = static_cast<scalar_t>(prior_or_zero<scalar_t, acc_t>(out.y0, accumulate, e) + s.y0 + s.ymid);
  out.y1[e] = static_cast<scalar_t>(prior_or_zero<scalar_t, acc_t>(out.y1, accumulate, e) + s.y1);
#pragma unroll
  for (int j = 0; j < dp5::kStages; ++j) {
    acc_t g = out.mid[j] * s.ymid;
    if (j == 0) g += s.f0;
    if (j == dp5::kStages - 1) g += s.f1;
    out.k[j][e] = static_cast<scalar_t>(prior_or_zero<scalar_t, acc_t>(out.k[j], accumulate, e) + g);
  }
}

// The scaled squared error of element e, the term the error ratio sums: the error is formed in
// the state's precision, as torchdiffeq does, then scaled in double.
template <typename scalar_t, typename acc_t, typename tol_t>
ANODE_INLINE double error_ratio_term(const scalar_t* y0, const scalar_t* y1, const StageWeights<scalar_t, acc_t>& e_w,
                                     const tol_t* rtol, int64_t rtol_stride, const tol_t* atol, int64_t atol_stride,
                                     int64_t e) {
  const double err = static_cast<double>(static_cast<scalar_t>(weighted_sum(e_w, e)));
  return scaled_error_sq(err, y0[e], y1[e], rtol, rtol_stride, atol, atol_stride, e);
}

// Backward of a linear combination of stages: grad_k_j = u_j * g_a + v_j * g_b (g_b optional).
template <typename scalar_t, typename acc_t>
struct StageGradWeights {
  scalar_t* out[kMaxStages];
  acc_t u[kMaxStages];
  acc_t v[kMaxStages];
  int n;
};

template <typename scalar_t, typename acc_t>
ANODE_INLINE void stage_grads_element(const scalar_t* ga, const scalar_t* gb, const StageGradWeights<scalar_t, acc_t>& s,
                                      int64_t e) {
  const acc_t a = static_cast<acc_t>(ga[e]);
  const acc_t b = gb ? static_cast<acc_t>(gb[e]) : acc_t(0);
#pragma unroll
  for (int j = 0; j < kMaxStages; ++j) {
    if (j < s.n) s.out[j][e] = static_cast<scalar_t>(s.u[j] * a + s.v[j] * b);
  }
}

}  // namespace anode
