#include "dopri5.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/all.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/stack.h>

#include <algorithm>
#include <cmath>

#include "anode_native/tableau.h"
#include "../ops_handles.h"
#include "errors.h"

namespace anode {
namespace {

bool all_finite(const at::Tensor& t) { return at::isfinite(t).all().item<bool>(); }

// torchdiffeq's _sort_tvals: the values at or after tau0, sorted.
std::vector<double> sorted_after(const std::vector<double>& values, double sign, double tau0) {
  std::vector<double> out;
  for (double v : values) {
    if (sign * v >= tau0) out.push_back(sign * v);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The next representable time after (direction +1) or before (-1) tau, in the state's precision
// (torchdiffeq casts t to the state's dtype before nudging it).
double nudge(double tau, double direction, bool single) {
  if (single) {
    const float f = static_cast<float>(tau);
    return static_cast<double>(std::nextafter(f, direction > 0 ? INFINITY : -INFINITY));
  }
  return std::nextafter(tau, direction > 0 ? INFINITY : -INFINITY);
}

size_t first_index_after(const std::vector<double>& sorted, double tau0) {
  const size_t i = std::upper_bound(sorted.begin(), sorted.end(), tau0) - sorted.begin();
  return sorted.empty() ? 0 : std::min(i, sorted.size() - 1);
}

}  // namespace

Dopri5Solver::Dopri5Solver(VectorField& field, AdaptiveOptions options) : field_(field), options_(std::move(options)) {}

double Dopri5Solver::perturb(double tau, double direction) const { return nudge(tau, direction, single_); }

// t0 + c * dt, in float arithmetic for float32 states as torchdiffeq computes stage times.
double Dopri5Solver::stage_time(double tau0, double c, double h) const {
  if (single_) {
    return static_cast<double>(static_cast<float>(tau0) + static_cast<float>(c) * static_cast<float>(h));
  }
  return round_time(tau0 + c * h);
}

at::Tensor Dopri5Solver::eval(double tau, const at::Tensor& y) {
  ++stats_.nfe;
  return field_(user_time(tau), y);
}

double Dopri5Solver::norm(const at::Tensor& y0, const at::Tensor& y1, at::TensorList k, at::ArrayRef<double> w,
                          double dt) {
  // Step sizes are constants of the computed solution (see odeint.py): no graph for the controller.
  at::NoGradGuard no_grad;
  const at::Tensor per_segment =
      ops::rk_error_ratio(y0, y1, k, w, dt, options_.rtol, options_.atol, options_.segments).cpu();
  const double* r = per_segment.const_data_ptr<double>();
  double out = 0.0;
  for (int64_t s = 0; s < per_segment.numel(); ++s) {
    if (!options_.segment_in_norm.empty() && !options_.segment_in_norm[s]) continue;
    if (std::isnan(r[s])) return r[s];
    out = std::max(out, r[s]);
  }
  return out;
}

// Hairer, Norsett & Wanner's starting step, as torchdiffeq's _select_initial_step (order 4).
double Dopri5Solver::initial_step(const at::Tensor& y0, const at::Tensor& f0) {
  at::NoGradGuard no_grad;  // only a step size comes out of here
  // torchdiffeq forms the 1e-6 fallbacks in the state's dtype.
  const auto in_state_dtype = [this](double x) { return single_ ? static_cast<double>(static_cast<float>(x)) : x; };
  const double d0 = norm(y0, y0, {y0}, {1.0}, 1.0);
  const double d1 = norm(y0, y0, {f0}, {1.0}, 1.0);
  // The norms are NaN or Inf when y0 or f0 is not finite (or overflows): tell which, only then.
  if (!std::isfinite(d0) || !std::isfinite(d1)) check_finite_start(y0, f0);
  double h0 = (d0 < 1e-5 || d1 < 1e-5) ? in_state_dtype(1e-6) : 0.01 * d0 / d1;
  h0 = std::abs(h0);
  const at::Tensor y1 = ops::rk_combine(y0, {f0}, {1.0}, sign_ * h0);
  const at::Tensor f1 = eval(round_time(tau_cur_ + h0), y1);
  const double d2 = std::abs(norm(y0, y0, {f1, f0}, {1.0, -1.0}, 1.0) / h0);
  double h1;
  if (d1 <= 1e-15 && d2 <= 1e-15) {
    h1 = std::max(in_state_dtype(1e-6), h0 * 1e-3);
  } else {
    h1 = std::pow(0.01 / std::max(d1, d2), 1.0 / 5.0);
  }
  return std::min(100.0 * h0, std::abs(h1));
}

void Dopri5Solver::check_finite_start(const at::Tensor& y0, const at::Tensor& f0) {
  const bool state_ok = all_finite(y0);
  if (!state_ok || !all_finite(f0)) {
    fail(ErrorKind::NonFinite, "non-finite values (NaN or Inf) in the ", state_ok ? "derivative" : "state",
         " at the start of the ", options_.phase, " solve (t = ", user_time(tau_cur_), ")");
  }
}

void Dopri5Solver::fail_non_finite(at::TensorList k, const at::Tensor& y1) {
  const char* what = "error estimate";
  if (!all_finite(y_cur_)) {
    what = "state";
  } else if (std::any_of(k.begin(), k.end(), [](const at::Tensor& kj) { return !all_finite(kj); })) {
    what = "derivative (func output)";
  } else if (!all_finite(y1)) {
    what = "state";
  }
  fail(ErrorKind::NonFinite, "non-finite values (NaN or Inf) in the ", what, " during the ", options_.phase,
       " solve at t = ", user_time(tau_cur_), " (dt = ", sign_ * h_, ", step ", stats_.accepted + stats_.rejected + 1,
       ")");
}

void Dopri5Solver::attempt_step() {
  const int64_t step_number = stats_.accepted + stats_.rejected + 1;
  if (steps_this_run_ >= options_.max_num_steps) {
    fail(ErrorKind::MaxNumSteps, "max_num_steps exceeded in the ", options_.phase, " solve: ", options_.max_num_steps,
         " steps taken, reached t = ", user_time(tau_cur_), " (dt = ", sign_ * h_, ")");
  }
  ++steps_this_run_;
  h_ = std::min(std::max(h_, options_.min_step), options_.max_step);  // also bounds the first step
  h_planned_ = h_;
  double tau1 = round_time(tau_cur_ + h_);
  if (!(tau1 > tau_cur_) || !std::isfinite(h_)) {
    fail(ErrorKind::StepSizeUnderflow, "step size underflow in the ", options_.phase, " solve at t = ",
         user_time(tau_cur_), ": dt = ", sign_ * h_, " no longer advances time (step ", step_number, ")");
  }
  double h = h_;
  // Land exactly on prescribed grid points (step_t) and discontinuities (jump_t), in that order:
  // the jump_t test sees the step already shortened by step_t.
  const auto cut_at = [&](const std::vector<double>& marks, size_t index) {
    if (marks.empty()) return false;
    const double next = marks[index];
    if (!(tau_cur_ < next && next < tau_cur_ + h)) return false;
    tau1 = next;
    h = round_time(tau1 - tau_cur_);
    return true;
  };
  bool on_step_t = cut_at(step_tau_, next_step_index_);
  const bool on_jump_t = cut_at(jump_tau_, next_jump_index_);
  if (on_jump_t) on_step_t = false;

  const double dt = sign_ * h;
  std::vector<at::Tensor> k(dp5::kStages);
  k[0] = f_cur_;
  at::Tensor yi;
  for (int i = 1; i < dp5::kStages; ++i) {
    yi = ops::rk_combine(y_cur_, at::TensorList(k.data(), i), at::ArrayRef<double>(dp5::A[i], i), dt);
    // Stages at the end of the step are evaluated just before it, so a discontinuity of f at t1
    // (a jump_t mark) is seen from the left, as torchdiffeq does (Perturb.PREV).
    const double ti = dp5::C[i] == 1.0 ? perturb(tau1, -1.0) : stage_time(tau_cur_, dp5::C[i], h);
    k[i] = eval(ti, yi);
  }
  const at::Tensor& y1 = yi;  // the input of stage 7 is the 5th-order solution (FSAL)
  const double ratio = norm(y_cur_, y1, k, dp5::E, dt);
  if (!std::isfinite(ratio)) fail_non_finite(k, y1);

  // torchdiffeq's min/max stepping: a step of at most min_step is always accepted.
  const bool accept = (ratio <= 1.0 && h <= options_.max_step) || h <= options_.min_step;
  if (accept) {
    ++stats_.accepted;
    y_prev_ = y_cur_;
    y_cur_ = y1;
    tau_prev_ = tau_cur_;
    tau_cur_ = tau1;
    dt_last_ = dt;
    f_cur_ = k[dp5::kStages - 1];
    k_ = std::move(k);
    if (on_step_t && next_step_index_ + 1 < step_tau_.size()) ++next_step_index_;
    if (on_jump_t) {
      if (next_jump_index_ + 1 < jump_tau_.size()) ++next_jump_index_;
      // Past a discontinuity of f, the stored derivative belongs to the other side: re-evaluate.
      f_cur_ = eval(perturb(tau_cur_, +1.0), y_cur_);
    }
  } else {
    ++stats_.rejected;
  }

  // I-controller, torchdiffeq's _optimal_step_size: no shrink after an accepted step.
  double next;
  if (ratio == 0.0) {
    next = h * options_.ifactor;
  } else {
    const double dfactor = ratio < 1.0 ? 1.0 : options_.dfactor;
    const double factor = std::min(options_.ifactor, std::max(options_.safety / std::pow(ratio, 1.0 / dp5::kOrder), dfactor));
    next = h * factor;
  }
  h_ = round_time(std::min(std::max(next, options_.min_step), options_.max_step));
}

std::vector<at::Tensor> Dopri5Solver::run(const at::Tensor& y0, const std::vector<double>& times,
                                          std::optional<double> first_step) {
  TORCH_INTERNAL_ASSERT(times.size() >= 2);
  sign_ = times.back() >= times.front() ? 1.0 : -1.0;
  single_ = y0.scalar_type() != at::kDouble;
  tau_prev_ = tau_cur_ = sign_ * times.front();
  steps_this_run_ = 0;
  y_prev_ = y_cur_ = y0;
  f_cur_ = eval(tau_cur_, y0);
  if (first_step) {
    check_finite_start(y0, f_cur_);
    h_ = std::abs(*first_step);
  } else {
    h_ = initial_step(y0, f_cur_);  // checks y0 and f0 through its norms
  }
  h_ = round_time(h_);

  step_tau_ = sorted_after(options_.step_t, sign_, tau_cur_);
  jump_tau_ = sorted_after(options_.jump_t, sign_, tau_cur_);
  for (double s : step_tau_) {
    if (std::binary_search(jump_tau_.begin(), jump_tau_.end(), s)) {
      fail(ErrorKind::InvalidInput, "step_t and jump_t must not share any time, both contain ", sign_ * s);
    }
  }
  next_step_index_ = first_index_after(step_tau_, tau_cur_);
  next_jump_index_ = first_index_after(jump_tau_, tau_cur_);

  std::vector<at::Tensor> out{y0};
  out.reserve(times.size());
  size_t i = 1;
  while (i < times.size()) {
    const double tau_next = sign_ * times[i];
    while (tau_next > tau_cur_) attempt_step();
    // Every output time inside the last accepted step, in one dense-output call.
    std::vector<double> theta;
    const double span = tau_cur_ - tau_prev_;
    for (; i < times.size() && sign_ * times[i] <= tau_cur_; ++i) {
      theta.push_back(span > 0 ? (sign_ * times[i] - tau_prev_) / span : 1.0);
    }
    const at::Tensor dense = ops::dopri5_dense(y_prev_, y_cur_, k_, dt_last_, theta);
    for (int64_t m = 0; m < dense.size(0); ++m) out.push_back(dense[m]);
  }
  return out;
}

std::vector<at::Tensor> Dopri5Solver::solve(const at::Tensor& y0, const std::vector<double>& times) {
  return run(y0, times, options_.first_step);
}

at::Tensor Dopri5Solver::integrate(const at::Tensor& y0, double t_from, double t_to, std::optional<double> first_step) {
  return run(y0, {t_from, t_to}, first_step).back();
}

}  // namespace anode
