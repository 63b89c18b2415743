#pragma once
// The right-hand side seen by the drivers: f(t, y) for a state tensor y. Implementations call a
// Python callable (python_field.h) or, for the adjoint, the augmented dynamics.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace anode {

class VectorField {
 public:
  virtual ~VectorField() = default;
  // t is the user's time (already mapped back from the driver's increasing internal time).
  virtual at::Tensor operator()(double t, const at::Tensor& y) = 0;
};

struct SolveStats {
  int64_t nfe = 0;
  int64_t accepted = 0;
  int64_t rejected = 0;
};

}  // namespace anode
