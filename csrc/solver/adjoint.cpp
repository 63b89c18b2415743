#include "adjoint.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/add.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/dot.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/sub.h>
#include <ATen/ops/zeros.h>
#include <pybind11/pybind11.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <string>
#include <utility>

#include "errors.h"

namespace anode {

AugmentedField::AugmentedField(AdjointField func, std::vector<at::Tensor> params, std::vector<int64_t> state_shape,
                               bool t_requires_grad)
    : func_(std::move(func)),
      params_(std::move(params)),
      shape_(std::move(state_shape)),
      t_requires_grad_(t_requires_grad) {
  n_ = 1;
  for (int64_t s : shape_) n_ *= s;
  for (const auto& p : params_) p_ += p.numel();
}

at::Tensor AugmentedField::operator()(double t, const at::Tensor& z) {
  const at::Tensor a_y = z.narrow(0, n_, n_).view(shape_);
  // A fresh leaf, so the VJP is taken with respect to this evaluation's y only.
  const at::Tensor y = z.narrow(0, 0, n_).view(shape_).detach().requires_grad_(true);
  const at::Tensor t_tensor = at::scalar_tensor(t, z.options());
  at::Tensor f;
  torch::autograd::variable_list grads;
  {
    at::AutoGradMode grad_mode(true);
    // Only when asked: dL/dt may not even exist for piecewise-in-time fields, and it costs a graph edge.
    if (t_requires_grad_) t_tensor.requires_grad_(true);
    f = func_.differentiable(t_tensor, y, t);
    // An f that depends on nothing differentiable (a constant field) has all-zero VJPs.
    if (f.requires_grad()) {
      torch::autograd::variable_list inputs{y};
      inputs.insert(inputs.end(), params_.begin(), params_.end());
      if (t_requires_grad_) inputs.push_back(t_tensor);
      const at::Tensor weight = -a_y;
      // The engine may hand work to device threads that need the GIL (Python autograd nodes);
      // torch.autograd.grad releases it the same way.
      std::optional<pybind11::gil_scoped_release> no_gil;
      if (func_.holds_gil) no_gil.emplace();
      grads = torch::autograd::grad({f}, inputs, {weight}, /*retain_graph=*/false, /*create_graph=*/false,
                                    /*allow_unused=*/true);
    }
  }
  // grads[j] is undefined for an input f does not depend on (allow_unused): that VJP is zero.
  const auto flat_grad = [&](size_t j, int64_t numel) {
    if (j < grads.size() && grads[j].defined()) return grads[j].reshape(-1).to(z.scalar_type());
    return at::zeros({numel}, z.options());
  };
  std::vector<at::Tensor> pieces;
  pieces.reserve(params_.size() + 3);
  pieces.push_back(f.detach().reshape(-1));
  pieces.push_back(flat_grad(0, n_));
  for (size_t j = 0; j < params_.size(); ++j) pieces.push_back(flat_grad(j + 1, params_[j].numel()));
  pieces.push_back(t_requires_grad_ ? flat_grad(params_.size() + 1, 1) : at::zeros({1}, z.options()));
  return at::cat(pieces);
}

AdjointGrads adjoint_backward(AdjointField func, const std::vector<at::Tensor>& params,
                              const std::vector<double>& times, const at::Tensor& ys, const at::Tensor& grad_ys,
                              bool t_requires_grad, const AdjointIntegrator& integrator) {
  at::NoGradGuard no_grad;  // the driver's own arithmetic builds no graph
  const int64_t T = static_cast<int64_t>(times.size());
  if (T < 1 || ys.dim() < 1 || ys.size(0) != T || grad_ys.sizes() != ys.sizes()) {
    fail(ErrorKind::InvalidInput, "adjoint: need ys and grad_ys of shape [len(t), *state], got ", ys.sizes(), " and ",
         grad_ys.sizes(), " for ", T, " times");
  }
  const std::vector<int64_t> shape(ys.sizes().begin() + 1, ys.sizes().end());
  AugmentedField field(std::move(func), params, shape, t_requires_grad);
  const int64_t N = field.state_numel(), P = field.param_numel();
  const at::Tensor y = ys.reshape({T, N});
  const at::Tensor g = grad_ys.to(ys.scalar_type()).reshape({T, N});

  // Output times whose loss gradient is exactly zero add nothing to a_y and nothing to dL/dt_i.
  // Before the last non-zero one the adjoint is exactly zero, so the solve starts there; the
  // adaptive solve also steps straight across the others instead of restarting (a departure
  // from torchdiffeq, which restarts at every output time). Fixed grids keep every output time
  // as a grid point, as torchdiffeq's per-interval grids do.
  const at::Tensor nonzero_t = g.ne(0).any(1).cpu();
  const bool* nonzero = nonzero_t.const_data_ptr<bool>();
  int64_t last = T - 1;
  while (last > 0 && !nonzero[last]) --last;
  std::vector<int64_t> stops;  // descending output indices where the augmented state restarts
  for (int64_t i = last; i > 0; --i) {
    if (nonzero[i] || integrator.fixed) stops.push_back(i);
  }
  stops.push_back(0);

  AdjointGrads out;
  SolveStats extra;  // time-gradient evaluations of func
  at::Tensor grad_t = t_requires_grad ? at::zeros({T}, y.options()) : at::Tensor();
  // dL/dt_i = <f(t_i, y_i), dL/dy_i> for i > 0; moving t_i also moves a_t (torchdiffeq's scheme).
  const auto time_grad = [&](int64_t i) -> at::Tensor {
    if (!t_requires_grad || i == 0 || !nonzero[i]) return at::zeros({1}, y.options());
    ++extra.nfe;
    const at::Tensor f = field.plain(times[i], y[i].view(shape));
    const at::Tensor d = at::dot(f.reshape(-1), g[i]);
    grad_t.select(0, i).copy_(d);
    return d.reshape({1});
  };

  const int64_t first = stops.front();
  at::Tensor z = at::cat({y[first], g[first], at::zeros({P}, y.options()), -time_grad(first)});
  // Steps end exactly on the restart times instead of overshooting them: the augmented state
  // jumps there, so work past them would be thrown away (and big steps rejected).
  AdaptiveOptions options = integrator.options;
  for (int64_t i : stops) {
    // A jump_t mark is landed on anyway, and the driver rejects a time in both lists.
    if (std::find(options.jump_t.begin(), options.jump_t.end(), times[i]) == options.jump_t.end()) {
      options.step_t.push_back(times[i]);
    }
  }
  Dopri5Solver solver(field, std::move(options));
  SolveStats fixed_stats;
  std::optional<double> h = integrator.options.first_step;  // then the last accepted step, carried
  for (size_t s = 0; s + 1 < stops.size(); ++s) {
    const int64_t from = stops[s], to = stops[s + 1];
    if (integrator.fixed) {
      z = solve_fixed_grid(field, *integrator.fixed, z, {times[from], times[to]}, integrator.step_size, fixed_stats)
              .back();
    } else {
      z = solver.integrate(z, times[from], times[to], h);
      // When the last step was cut short to end on t_to, the controller's proposal after it
      // scales with the cut (possibly tiny) step; the step planned before the cut does not.
      h = std::max(solver.next_step(), solver.planned_step());
    }
    // Back on the forward solution (as torchdiffeq), plus this output's loss gradient.
    const at::Tensor a_t = z.narrow(0, 2 * N + P, 1).sub(time_grad(to));
    z = at::cat({y[to], z.narrow(0, N, N).add(g[to]), z.narrow(0, 2 * N, P), a_t});
  }

  out.y0 = z.narrow(0, N, N).view(shape).clone();
  int64_t offset = 2 * N;
  for (const auto& p : params) {
    out.params.push_back(z.narrow(0, offset, p.numel()).view(p.sizes()).to(p.scalar_type()).clone());
    offset += p.numel();
  }
  if (t_requires_grad) {
    grad_t.select(0, 0).copy_(z.select(0, 2 * N + P));
    out.times = grad_t;
  }
  const SolveStats& adaptive = solver.stats();
  out.stats.nfe = adaptive.nfe + fixed_stats.nfe + extra.nfe;
  out.stats.accepted = adaptive.accepted + fixed_stats.accepted;
  out.stats.rejected = adaptive.rejected;
  return out;
}

}  // namespace anode
