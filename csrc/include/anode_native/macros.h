#pragma once
// Host+device qualifiers for the element arithmetic shared by the CPU and CUDA kernels.
#include <c10/macros/Macros.h>

#define ANODE_HD C10_HOST_DEVICE
#define ANODE_INLINE C10_HOST_DEVICE C10_ALWAYS_INLINE

namespace anode {
// Largest number of stages any op accepts (Dormand-Prince has 7).
constexpr int kMaxStages = 8;
// Largest number of dense-output fractions evaluated in one op call (more are chunked by the caller).
constexpr int kMaxDensePoints = 16;
}  // namespace anode
