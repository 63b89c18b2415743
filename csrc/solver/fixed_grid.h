#pragma once
// Fixed-grid Runge-Kutta methods with torchdiffeq's semantics: the grid is `times` itself or
// t0, t0 + h, ... with the last point moved onto the final time; outputs between grid points
// are linear interpolants. Methods: euler, midpoint, rk4 (torchdiffeq's rk4: the 3/8 rule).
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "vector_field.h"

namespace anode {

enum class FixedMethod { Euler, Midpoint, Rk4 };

FixedMethod parse_fixed_method(const std::string& name);

std::vector<at::Tensor> solve_fixed_grid(VectorField& field, FixedMethod method, const at::Tensor& y0,
                                         const std::vector<double>& times, std::optional<double> step_size,
                                         SolveStats& stats);

}  // namespace anode
