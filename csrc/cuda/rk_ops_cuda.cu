// CUDA backend of the fused Runge-Kutta ops: the op bodies are in rk_ops_impl.h and the arithmetic
// in anode_native/rk_element.h, the same functions the CPU runs; this file only says how to run an
// element functor on the GPU, on the current stream of the tensors' device.
//
// Loads are scalar (one element of each stage per thread, coalesced across the warp): each op
// reads up to 8 separately allocated stage arrays through the shared element functions, which
// index by element. Vector loads would need a second, register-level form of every element
// function (or alignment cases per array); at 4-8 independent streams per thread the scalar
// loads already keep enough bytes in flight, which bench/solve_cuda.py measures against the
// device's copy bandwidth.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cuda_runtime.h>

#include "../rk_ops_impl.h"

namespace anode {
namespace {

constexpr int kThreads = 256;  // every kernel here is launched with this block size
constexpr int kWarps = kThreads / 32;
// Blocks per segment of the error-ratio reduction: a constant (not the SM count), so a ratio is
// the same number on every GPU.
constexpr int64_t kReduceBlocks = 1024;
// Segments reduced by one pair of launches (their offsets travel in the kernel arguments).
constexpr int kSegmentsPerLaunch = 64;

struct SegmentBatch {
  int64_t begin[kSegmentsPerLaunch];
  int64_t size[kSegmentsPerLaunch];
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks that reduce a segment of `size` elements; depends on nothing else, so neither does the sum.
ANODE_HD inline int64_t reduce_blocks(int64_t size) {
  const int64_t b = (size + kThreads - 1) / kThreads;
  return b < kReduceBlocks ? b : kReduceBlocks;
}

template <typename Op>
__global__ void __launch_bounds__(kThreads) for_each_kernel(int64_t n, Op op) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; e < n; e += stride) op(e);
}

// Sum over the block in a fixed order (shuffle tree per warp, then over warps); valid in thread 0.
__device__ double block_sum(double v) {
  __shared__ double warp_sums[kWarps];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? warp_sums[lane] : 0.0;
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

// Pass 1: block (x, s) sums term over its grid-stride share of segment s into partials[s][x].
// Blocks past the segment's own reduce_blocks() write 0, which leaves pass 2's sums unchanged.
template <typename Term>
__global__ void __launch_bounds__(kThreads)
    segment_partials_kernel(Term term, SegmentBatch batch, double* __restrict__ partials) {
  const int s = blockIdx.y;
  const int64_t begin = batch.begin[s], size = batch.size[s];
  const int64_t blocks = reduce_blocks(size);
  double acc = 0.0;
  if (blockIdx.x < blocks) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < size; i += blocks * kThreads) {
      acc += term(begin + i);
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partials[static_cast<int64_t>(s) * gridDim.x + blockIdx.x] = acc;
}

// Pass 2: one block per segment sums its partials in a fixed order and writes the RMS.
__global__ void __launch_bounds__(kThreads)
    segment_rms_kernel(const double* __restrict__ partials, int parts, SegmentBatch batch, double* __restrict__ ratio) {
  const int s = blockIdx.x;
  double acc = 0.0;
  for (int i = threadIdx.x; i < parts; i += kThreads) acc += partials[static_cast<int64_t>(s) * parts + i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) ratio[s] = batch.size[s] > 0 ? sqrt(acc / static_cast<double>(batch.size[s])) : 0.0;
}

struct CudaBackend {
  // One wave of resident blocks; the grid-stride loop covers the rest.
  static int64_t grid_for(int64_t n) {
    int device = 0, sms = 0;
    C10_CUDA_CHECK(cudaGetDevice(&device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    return std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, kThreads), static_cast<int64_t>(sms) * (2048 / kThreads)));
  }

  template <typename Op>
  static void for_each(int64_t n, const Op& op, int64_t /*cost*/) {
    if (n == 0) return;
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    for_each_kernel<<<static_cast<unsigned>(grid_for(n)), kThreads, 0, stream>>>(n, op);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  // Deterministic two-pass reduction in double: no atomics, a fixed grid per segment, fixed-order
  // sums; the ratios stay on the device (the driver reads them back once per attempted step).
  template <typename Term>
  static void segment_rms(const std::vector<int64_t>& segments, const Term& term, at::Tensor& ratio) {
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    double* out = ratio.mutable_data_ptr<double>();
    int64_t offset = 0;
    for (size_t first = 0; first < segments.size(); first += kSegmentsPerLaunch) {
      const int count = static_cast<int>(std::min<size_t>(kSegmentsPerLaunch, segments.size() - first));
      SegmentBatch batch{};
      int64_t parts = 1;
      for (int s = 0; s < count; ++s) {
        batch.begin[s] = offset;
        batch.size[s] = segments[first + s];
        offset += batch.size[s];
        parts = std::max(parts, reduce_blocks(batch.size[s]));
      }
      const at::Tensor partials = at::empty({count * parts}, ratio.options());
      segment_partials_kernel<<<dim3(static_cast<unsigned>(parts), static_cast<unsigned>(count)), kThreads, 0,
                                stream>>>(term, batch, partials.mutable_data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      segment_rms_kernel<<<static_cast<unsigned>(count), kThreads, 0, stream>>>(
          partials.const_data_ptr<double>(), static_cast<int>(parts), batch, out + first);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }
};

// Makes t's device current for the launches. A CPU tensor that reached this backend (next to a
// CUDA one) is left to the argument checks, which name it.
class DeviceOf {
 public:
  explicit DeviceOf(const at::Tensor& t) {
    if (t.is_cuda()) guard_.set_device(t.device());
  }

 private:
  c10::cuda::OptionalCUDAGuard guard_;
};

}  // namespace

at::Tensor rk_combine_cuda(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> coeffs, double dt) {
  const DeviceOf device(y);
  return rk_combine_impl<CudaBackend>(y, k, coeffs, dt);
}

std::tuple<at::Tensor, at::Tensor> rk_step_error_cuda(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> b,
                                                      at::ArrayRef<double> e, double dt) {
  const DeviceOf device(y);
  return rk_step_error_impl<CudaBackend>(y, k, b, e, dt);
}

at::Tensor rk_error_ratio_cuda(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, at::ArrayRef<double> e,
                               double dt, const at::Tensor& rtol, const at::Tensor& atol, at::IntArrayRef segment_sizes) {
  const DeviceOf device(y0);
  return rk_error_ratio_impl<CudaBackend>(y0, y1, k, e, dt, rtol, atol, segment_sizes);
}

at::Tensor dopri5_dense_cuda(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, double dt,
                             at::ArrayRef<double> theta) {
  const DeviceOf device(y0);
  return dopri5_dense_impl<CudaBackend>(y0, y1, k, dt, theta);
}

std::vector<at::Tensor> rk_stage_grads_cuda(const at::Tensor& grad_a, const std::optional<at::Tensor>& grad_b,
                                            at::ArrayRef<double> u, at::ArrayRef<double> v, double dt) {
  const DeviceOf device(grad_a);
  return rk_stage_grads_impl<CudaBackend>(grad_a, grad_b, u, v, dt);
}

std::vector<at::Tensor> dopri5_dense_backward_cuda(const at::Tensor& grad, double dt, at::ArrayRef<double> theta) {
  const DeviceOf device(grad);
  return dopri5_dense_backward_impl<CudaBackend>(grad, dt, theta);
}

}  // namespace anode

TORCH_LIBRARY_IMPL(anode_native, CUDA, m) {
  m.impl("rk_combine", &anode::rk_combine_cuda);
  m.impl("rk_step_error", &anode::rk_step_error_cuda);
  m.impl("rk_error_ratio", &anode::rk_error_ratio_cuda);
  m.impl("dopri5_dense", &anode::dopri5_dense_cuda);
  m.impl("rk_stage_grads", &anode::rk_stage_grads_cuda);
  m.impl("dopri5_dense_backward", &anode::dopri5_dense_backward_cuda);
}
