// CPU backend of the fused Runge-Kutta ops: the op bodies are in rk_ops_impl.h and the arithmetic
// in anode_native/rk_element.h; this file only says how to run an element functor on the CPU.
#include <ATen/Parallel.h>

#include <cmath>
#include <functional>

#include "../rk_ops_impl.h"

namespace anode {
namespace {

// Elementwise loops are memory bound: only split work that is worth a thread.
constexpr int64_t kGrain = 32768;

struct CpuBackend {
  template <typename Op>
  static void for_each(int64_t n, const Op& op, int64_t cost) {
    at::parallel_for(0, n, kGrain / cost, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) op(e);
    });
  }

  template <typename Term>
  static void segment_rms(const std::vector<int64_t>& segments, const Term& term, at::Tensor& ratio) {
    double* out = ratio.mutable_data_ptr<double>();
    int64_t offset = 0;
    for (size_t s = 0; s < segments.size(); ++s) {
      const int64_t begin = offset, end = offset + segments[s];
      offset = end;
      if (end == begin) {  // an empty segment has ratio 0
        out[s] = 0.0;
        continue;
      }
      const double sum = at::parallel_reduce(
          begin, end, kGrain, 0.0,
          [&](int64_t b, int64_t e_end, double acc) {
            for (int64_t i = b; i < e_end; ++i) acc += term(i);
            return acc;
          },
          std::plus<double>());
      out[s] = std::sqrt(sum / static_cast<double>(end - begin));
    }
  }
};

}  // namespace

at::Tensor rk_combine_cpu(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> coeffs, double dt) {
  return rk_combine_impl<CpuBackend>(y, k, coeffs, dt);
}

std::tuple<at::Tensor, at::Tensor> rk_step_error_cpu(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> b,
                                                     at::ArrayRef<double> e, double dt) {
  return rk_step_error_impl<CpuBackend>(y, k, b, e, dt);
}

at::Tensor rk_error_ratio_cpu(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, at::ArrayRef<double> e,
                              double dt, const at::Tensor& rtol, const at::Tensor& atol, at::IntArrayRef segment_sizes) {
  return rk_error_ratio_impl<CpuBackend>(y0, y1, k, e, dt, rtol, atol, segment_sizes);
}

at::Tensor dopri5_dense_cpu(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, double dt,
                            at::ArrayRef<double> theta) {
  return dopri5_dense_impl<CpuBackend>(y0, y1, k, dt, theta);
}

std::vector<at::Tensor> rk_stage_grads_cpu(const at::Tensor& grad_a, const std::optional<at::Tensor>& grad_b,
                                           at::ArrayRef<double> u, at::ArrayRef<double> v, double dt) {
  return rk_stage_grads_impl<CpuBackend>(grad_a, grad_b, u, v, dt);
}

std::vector<at::Tensor> dopri5_dense_backward_cpu(const at::Tensor& grad, double dt, at::ArrayRef<double> theta) {
  return dopri5_dense_backward_impl<CpuBackend>(grad, dt, theta);
}

}  // namespace anode
