// CPU kernels of the fused Runge-Kutta ops. The arithmetic is in anode_native/rk_element.h;
// this file only checks arguments, allocates outputs and runs the element functions in parallel.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>

#include "anode_native/tableau.h"
#include "../rk_common.h"

namespace anode {
namespace {

// Elementwise loops are memory bound: only split work that is worth a thread.
constexpr int64_t kGrain = 32768;

#define ANODE_DISPATCH_FLOATING(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, TYPE, NAME, __VA_ARGS__)

}  // namespace

at::Tensor rk_combine_cpu(const at::Tensor& y_in, at::TensorList k_in, at::ArrayRef<double> coeffs, double dt) {
  check_stages("rk_combine", y_in, k_in, coeffs.size());
  const at::Tensor y = y_in.contiguous();
  const auto k = contiguous_all(k_in);
  at::Tensor out = at::empty_like(y, at::MemoryFormat::Contiguous);
  const int64_t n = y.numel();
  ANODE_DISPATCH_FLOATING(y.scalar_type(), "rk_combine_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto s = pack_stages<scalar_t, acc_t>(k, coeffs, dt);
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) op[e] = combine_element(yp, s, e);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> rk_step_error_cpu(const at::Tensor& y_in, at::TensorList k_in,
                                                     at::ArrayRef<double> b, at::ArrayRef<double> e_w, double dt) {
  check_stages("rk_step_error", y_in, k_in, b.size());
  TORCH_CHECK(e_w.size() == b.size(), "rk_step_error: b has ", b.size(), " weights, e has ", e_w.size());
  const at::Tensor y = y_in.contiguous();
  const auto k = contiguous_all(k_in);
  at::Tensor y1 = at::empty_like(y, at::MemoryFormat::Contiguous);
  at::Tensor err = at::empty_like(y, at::MemoryFormat::Contiguous);
  const int64_t n = y.numel();
  ANODE_DISPATCH_FLOATING(y.scalar_type(), "rk_step_error_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto sb = pack_stages<scalar_t, acc_t>(k, b, dt);
    const auto se = pack_stages<scalar_t, acc_t>(k, e_w, dt);
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    scalar_t* y1p = y1.mutable_data_ptr<scalar_t>();
    scalar_t* errp = err.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        y1p[i] = combine_element(yp, sb, i);
        errp[i] = static_cast<scalar_t>(weighted_sum(se, i));
      }
    });
  });
  return {y1, err};
}

at::Tensor rk_error_ratio_cpu(const at::Tensor& y0_in, const at::Tensor& y1_in, at::TensorList k_in,
                              at::ArrayRef<double> e_w, double dt, const at::Tensor& rtol_in,
                              const at::Tensor& atol_in, at::IntArrayRef segment_sizes) {
  check_stages("rk_error_ratio", y0_in, k_in, e_w.size());
  TORCH_CHECK(y1_in.sizes() == y0_in.sizes() && y1_in.scalar_type() == y0_in.scalar_type(),
              "rk_error_ratio: y1 must match y0 in shape and dtype");
  check_tolerance("rk_error_ratio", "rtol", rtol_in, y0_in);
  check_tolerance("rk_error_ratio", "atol", atol_in, y0_in);
  const auto segments = checked_segments("rk_error_ratio", segment_sizes, y0_in.numel());
  const at::Tensor y0 = y0_in.contiguous(), y1 = y1_in.contiguous();
  const at::Tensor rtol = rtol_in.to(at::kDouble).contiguous(), atol = atol_in.to(at::kDouble).contiguous();
  const auto k = contiguous_all(k_in);
  at::Tensor ratio = at::zeros({static_cast<int64_t>(segments.size())}, y0.options().dtype(at::kDouble));
  double* rp = ratio.mutable_data_ptr<double>();
  const double* rtp = rtol.const_data_ptr<double>();
  const double* atp = atol.const_data_ptr<double>();
  const int64_t rstride = rtol.numel() == 1 ? 0 : 1, astride = atol.numel() == 1 ? 0 : 1;
  ANODE_DISPATCH_FLOATING(y0.scalar_type(), "rk_error_ratio_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto se = pack_stages<scalar_t, acc_t>(k, e_w, dt);
    const scalar_t* y0p = y0.const_data_ptr<scalar_t>();
    const scalar_t* y1p = y1.const_data_ptr<scalar_t>();
    int64_t offset = 0;
    for (size_t s = 0; s < segments.size(); ++s) {
      const int64_t begin = offset, end = offset + segments[s];
      offset = end;
      if (end == begin) continue;  // an empty segment has ratio 0
      const double sum = at::parallel_reduce(
          begin, end, kGrain, 0.0,
          [&](int64_t b, int64_t e_end, double acc) {
            for (int64_t i = b; i < e_end; ++i) {
              // The error is formed in the state's precision, as torchdiffeq does, then scaled in double.
              const double err = static_cast<double>(static_cast<scalar_t>(weighted_sum(se, i)));
              acc += scaled_error_sq(err, y0p[i], y1p[i], rtp, rstride, atp, astride, i);
            }
            return acc;
          },
          std::plus<double>());
      rp[s] = std::sqrt(sum / static_cast<double>(end - begin));
    }
  });
  return ratio;
}

at::Tensor dopri5_dense_cpu(const at::Tensor& y0_in, const at::Tensor& y1_in, at::TensorList k_in, double dt,
                            at::ArrayRef<double> theta) {
  check_stages("dopri5_dense", y0_in, k_in, dp5::kStages);
  TORCH_CHECK(y1_in.sizes() == y0_in.sizes() && y1_in.scalar_type() == y0_in.scalar_type(),
              "dopri5_dense: y1 must match y0 in shape and dtype");
  check_theta("dopri5_dense", theta);
  const at::Tensor y0 = y0_in.contiguous(), y1 = y1_in.contiguous();
  const auto k = contiguous_all(k_in);
  std::vector<int64_t> shape{static_cast<int64_t>(theta.size())};
  shape.insert(shape.end(), y0.sizes().begin(), y0.sizes().end());
  at::Tensor out = at::empty(shape, y0.options());
  const int64_t n = y0.numel();
  ANODE_DISPATCH_FLOATING(y0.scalar_type(), "dopri5_dense_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto mid = pack_stages<scalar_t, acc_t>(k, dp5::CMID, dt, /*keep_all=*/true);
    const scalar_t* y0p = y0.const_data_ptr<scalar_t>();
    const scalar_t* y1p = y1.const_data_ptr<scalar_t>();
    for (size_t first = 0; first < theta.size(); first += kMaxDensePoints) {
      const auto chunk = theta.slice(first, std::min<size_t>(kMaxDensePoints, theta.size() - first));
      const auto pts = pack_dense_points<acc_t>(chunk, dt);
      scalar_t* op = out.mutable_data_ptr<scalar_t>() + first * n;
      at::parallel_for(0, n, kGrain / 4, [&](int64_t begin, int64_t end) {
        for (int64_t e = begin; e < end; ++e) dense_element(y0p, y1p, mid, pts, op, n, e);
      });
    }
  });
  return out;
}

std::vector<at::Tensor> rk_stage_grads_cpu(const at::Tensor& grad_a_in, const std::optional<at::Tensor>& grad_b_in,
                                           at::ArrayRef<double> u, at::ArrayRef<double> v, double dt) {
  TORCH_CHECK(!u.empty() && u.size() <= static_cast<size_t>(kMaxStages), "rk_stage_grads: 1 to ", kMaxStages,
              " weights expected, got ", u.size());
  const bool has_b = grad_b_in.has_value() && grad_b_in->defined();
  TORCH_CHECK(!has_b || v.size() == u.size(), "rk_stage_grads: u and v must have the same length");
  const at::Tensor ga = grad_a_in.contiguous();
  const at::Tensor gb = has_b ? grad_b_in->contiguous() : at::Tensor();
  if (has_b) TORCH_CHECK(gb.sizes() == ga.sizes(), "rk_stage_grads: gradients must have the same shape");
  std::vector<at::Tensor> out;
  for (size_t j = 0; j < u.size(); ++j) out.push_back(at::empty_like(ga, at::MemoryFormat::Contiguous));
  const int64_t n = ga.numel();
  ANODE_DISPATCH_FLOATING(ga.scalar_type(), "rk_stage_grads_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    StageGradWeights<scalar_t, acc_t> s{};
    s.n = static_cast<int>(u.size());
    for (int j = 0; j < s.n; ++j) {
      s.out[j] = out[j].mutable_data_ptr<scalar_t>();
      s.u[j] = static_cast<acc_t>(dt * u[j]);
      s.v[j] = has_b ? static_cast<acc_t>(dt * v[j]) : acc_t(0);
    }
    const scalar_t* gap = ga.const_data_ptr<scalar_t>();
    const scalar_t* gbp = has_b ? gb.const_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) stage_grads_element(gap, gbp, s, e);
    });
  });
  return out;
}

std::vector<at::Tensor> dopri5_dense_backward_cpu(const at::Tensor& grad_in, double dt, at::ArrayRef<double> theta) {
  TORCH_CHECK(grad_in.dim() >= 1 && grad_in.size(0) == static_cast<int64_t>(theta.size()),
              "dopri5_dense_backward: gradient must have one row per fraction");
  check_theta("dopri5_dense_backward", theta);
  const at::Tensor grad = grad_in.contiguous();
  const auto state_shape = grad.sizes().slice(1);
  const int64_t n = c10::multiply_integers(state_shape);
  std::vector<at::Tensor> out;  // y0, y1, k0..k6
  for (int i = 0; i < 2 + dp5::kStages; ++i) out.push_back(at::zeros(state_shape, grad.options()));
  ANODE_DISPATCH_FLOATING(grad.scalar_type(), "dopri5_dense_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    scalar_t* gy0 = out[0].mutable_data_ptr<scalar_t>();
    scalar_t* gy1 = out[1].mutable_data_ptr<scalar_t>();
    scalar_t* gk[dp5::kStages];
    acc_t mid[dp5::kStages];
    for (int j = 0; j < dp5::kStages; ++j) {
      gk[j] = out[2 + j].mutable_data_ptr<scalar_t>();
      mid[j] = static_cast<acc_t>(dt * dp5::CMID[j]);
    }
    for (size_t first = 0; first < theta.size(); first += kMaxDensePoints) {
      const auto chunk = theta.slice(first, std::min<size_t>(kMaxDensePoints, theta.size() - first));
      const auto pts = pack_dense_points<acc_t>(chunk, dt);
      const scalar_t* gp = grad.const_data_ptr<scalar_t>() + first * n;
      at::parallel_for(0, n, kGrain / 4, [&](int64_t begin, int64_t end) {
        for (int64_t e = begin; e < end; ++e) {
          const auto s = dense_backward_sums<scalar_t, acc_t>(gp, pts, n, e);
          // Accumulate across chunks: y_mid = y0 + sum_j mid_j k_j feeds y0 and every stage.
          gy0[e] = static_cast<scalar_t>(static_cast<acc_t>(gy0[e]) + s.y0 + s.ymid);
          gy1[e] = static_cast<scalar_t>(static_cast<acc_t>(gy1[e]) + s.y1);
          for (int j = 0; j < dp5::kStages; ++j) {
            acc_t g = mid[j] * s.ymid;
            if (j == 0) g += s.f0;
            if (j == dp5::kStages - 1) g += s.f1;
            gk[j][e] = static_cast<scalar_t>(static_cast<acc_t>(gk[j][e]) + g);
          }
        }
      });
    }
  });
  return out;
}

}  // namespace anode
