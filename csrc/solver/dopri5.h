#pragma once
// Adaptive Dormand-Prince 5(4) driver. With default options it takes the same steps as
// torchdiffeq 0.2.5's dopri5: Hairer's initial step, Shampine's error weights, the RMS norm
// (max over segments for tuple states), the I-controller min(10, max(0.9 r^-1/5, 0.2)) with no
// shrink on accepted steps, FSAL, quartic dense output; NFE = 2 + 6 x attempted steps.
// Time and step size are doubles on the host; the state stays a tensor on its device and the
// only read-back per attempted step is the error ratio.
#include <ATen/core/Tensor.h>

#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "vector_field.h"

namespace anode {

struct AdaptiveOptions {
  at::Tensor rtol, atol;                 // one element, or one per state element (float64)
  std::vector<int64_t> segments;         // partition of the flattened state for the norm ([] = one)
  std::vector<bool> segment_in_norm;     // which segments count in the norm ([] = all): seminorms
  std::optional<double> first_step;
  int64_t max_num_steps = std::numeric_limits<int32_t>::max();  // attempted steps per solve
  double min_step = 0.0;
  double max_step = std::numeric_limits<double>::infinity();
  std::vector<double> step_t, jump_t;    // user time
  double safety = 0.9, ifactor = 10.0, dfactor = 0.2;
  bool time_float32 = false;             // round time arithmetic to float32 (option dtype)
  std::string phase = "forward";         // named in error messages
};

class Dopri5Solver {
 public:
  Dopri5Solver(VectorField& field, AdaptiveOptions options);

  // The state at every time in `times` (strictly monotone, user time); the first is y0 itself.
  std::vector<at::Tensor> solve(const at::Tensor& y0, const std::vector<double>& times);

  // One interval, starting with step `first_step` when given (else the initial-step heuristic);
  // afterwards next_step() is the step the controller proposes to continue with.
  at::Tensor integrate(const at::Tensor& y0, double t_from, double t_to, std::optional<double> first_step);

  double next_step() const { return h_; }
  // The step size the last attempted step was planned with, before being cut short to land on a
  // step_t/jump_t point (the adjoint carries it across output times so cuts do not shrink it).
  double planned_step() const { return h_planned_; }
  const SolveStats& stats() const { return stats_; }

 private:
  std::vector<at::Tensor> run(const at::Tensor& y0, const std::vector<double>& times, std::optional<double> first_step);
  at::Tensor eval(double tau, const at::Tensor& y);
  double norm(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, at::ArrayRef<double> w, double dt);
  double initial_step(const at::Tensor& y0, const at::Tensor& f0);
  void attempt_step();
  double round_time(double x) const { return options_.time_float32 ? static_cast<double>(static_cast<float>(x)) : x; }
  double user_time(double tau) const { return sign_ * tau; }
  double perturb(double tau, double direction) const;
  double stage_time(double tau0, double c, double h) const;
  [[noreturn]] void fail_non_finite(at::TensorList k, const at::Tensor& y1);
  void check_finite_start(const at::Tensor& y0, const at::Tensor& f0);

  VectorField& field_;
  AdaptiveOptions options_;
  SolveStats stats_;

  // Integration state in internal time tau = sign * t, which always increases.
  double sign_ = 1.0;
  bool single_ = false;                 // state in float32 (or half): time arithmetic as torchdiffeq's
  double h_ = 0.0;                      // next step size (> 0)
  double h_planned_ = 0.0;              // h_ when the last step was attempted
  double tau_prev_ = 0.0, tau_cur_ = 0.0;
  at::Tensor y_prev_, y_cur_, f_cur_;   // state at tau_prev / tau_cur, f(tau_cur, y_cur)
  std::vector<at::Tensor> k_;           // the 7 stages of the last accepted step
  double dt_last_ = 0.0;                // signed size of the last accepted step
  int64_t steps_this_run_ = 0;
  std::vector<double> step_tau_, jump_tau_;
  size_t next_step_index_ = 0, next_jump_index_ = 0;
};

}  // namespace anode
