#include "fixed_grid.h"

#include <cmath>

#include "../ops_handles.h"
#include "errors.h"

namespace anode {
namespace {

// torchdiffeq's _grid_constructor_from_step_size, in internal (increasing) time.
std::vector<double> grid_from_step(double start, double end, double h) {
  const double n = std::ceil((end - start) / h + 1.0);
  std::vector<double> grid;
  for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) grid.push_back(static_cast<double>(i) * h + start);
  grid.back() = end;
  return grid;
}

}  // namespace

FixedMethod parse_fixed_method(const std::string& name) {
  if (name == "euler") return FixedMethod::Euler;
  if (name == "midpoint") return FixedMethod::Midpoint;
  if (name == "rk4") return FixedMethod::Rk4;
  fail(ErrorKind::InvalidInput, "unknown fixed-grid method '", name, "' (expected euler, midpoint or rk4)");
}

std::vector<at::Tensor> solve_fixed_grid(VectorField& field, FixedMethod method, const at::Tensor& y0,
                                         const std::vector<double>& times, std::optional<double> step_size,
                                         SolveStats& stats) {
  const double sign = times.back() >= times.front() ? 1.0 : -1.0;
  std::vector<double> tau;
  for (double t : times) tau.push_back(sign * t);
  std::vector<double> grid;
  if (step_size) {
    if (!(*step_size > 0.0) || !std::isfinite(*step_size)) {
      fail(ErrorKind::InvalidInput, "step_size must be a positive finite number, got ", *step_size);
    }
    const double cells = (tau.back() - tau.front()) / *step_size;
    if (cells > 1e8) fail(ErrorKind::InvalidInput, "step_size ", *step_size, " would need ", cells, " steps");
    grid = grid_from_step(tau.front(), tau.back(), *step_size);
  } else {
    grid = tau;
  }
  const auto f = [&](double t, const at::Tensor& y) {
    ++stats.nfe;
    return field(sign * t, y);
  };

  std::vector<at::Tensor> out{y0};
  at::Tensor y = y0;
  size_t j = 1;
  for (size_t g = 0; g + 1 < grid.size() && j < tau.size(); ++g) {
    const double t0 = grid[g], t1 = grid[g + 1], h = t1 - t0, dt = sign * h;
    at::Tensor y1;
    const at::Tensor k1 = f(t0, y);
    switch (method) {
      case FixedMethod::Euler:
        y1 = ops::rk_combine(y, {k1}, {1.0}, dt);
        break;
      case FixedMethod::Midpoint: {
        const at::Tensor k2 = f(t0 + 0.5 * h, ops::rk_combine(y, {k1}, {0.5}, dt));
        y1 = ops::rk_combine(y, {k2}, {1.0}, dt);
        break;
      }
      case FixedMethod::Rk4: {
        const at::Tensor k2 = f(t0 + h / 3.0, ops::rk_combine(y, {k1}, {1.0 / 3.0}, dt));
        const at::Tensor k3 = f(t0 + h * (2.0 / 3.0), ops::rk_combine(y, {k1, k2}, {-1.0 / 3.0, 1.0}, dt));
        const at::Tensor k4 = f(t1, ops::rk_combine(y, {k1, k2, k3}, {1.0, -1.0, 1.0}, dt));
        y1 = ops::rk_combine(y, {k1, k2, k3, k4}, {0.125, 0.375, 0.375, 0.125}, dt);
        break;
      }
    }
    ++stats.accepted;
    for (; j < tau.size() && t1 >= tau[j]; ++j) {
      if (tau[j] == t0) {
        out.push_back(y);
      } else if (tau[j] == t1) {
        out.push_back(y1);
      } else {  // torchdiffeq's _linear_interp: y0 + slope * (y1 - y0)
        const double slope = (tau[j] - t0) / (t1 - t0);
        out.push_back(ops::rk_combine(y, {y, y1}, {-1.0, 1.0}, slope));
      }
    }
    y = y1;
  }
  return out;
}

}  // namespace anode
