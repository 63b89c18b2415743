// The pybind11 module anode_native._C: the solver drivers and typed error translation.
// The fused ops themselves are reached through torch.ops.anode_native (registered in ops.cpp).
#include <ATen/ops/stack.h>
#include <torch/csrc/utils/pybind.h>
#include <pybind11/stl.h>

#include "solver/adjoint.h"
#include "solver/dopri5.h"
#include "solver/errors.h"
#include "solver/fixed_grid.h"
#include "solver/native_field.h"
#include "solver/python_field.h"

namespace py = pybind11;

namespace anode {
namespace {

py::tuple stats_tuple(const SolveStats& s) { return py::make_tuple(s.nfe, s.accepted, s.rejected); }

// Runs `solve(field)` on func's native form when it has one (a NativeField, evaluated without
// Python, so the GIL is released for the whole solve) or else on the Python callable.
template <typename Solve>
py::tuple with_field(py::object func, const std::string& phase, Solve&& solve) {
  std::pair<at::Tensor, SolveStats> result;
  if (py::isinstance<NativeField>(func)) {
    auto native = func.cast<std::shared_ptr<NativeField>>();
    py::gil_scoped_release no_gil;
    result = solve(*native);
  } else {
    PythonField field(std::move(func), phase);
    result = solve(field);
  }
  return py::make_tuple(result.first, stats_tuple(result.second));
}

// Returns (solution [len(times), *y0.shape], (nfe, accepted, rejected)).
py::tuple solve_dopri5(py::object func, const at::Tensor& y0, const std::vector<double>& times,
                       const AdaptiveOptions& options) {
  return with_field(std::move(func), options.phase, [&](VectorField& field) {
    Dopri5Solver solver(field, options);
    at::Tensor solution = at::stack(solver.solve(y0, times));
    return std::make_pair(solution, solver.stats());
  });
}

py::tuple solve_fixed(py::object func, const at::Tensor& y0, const std::vector<double>& times,
                      const std::string& method, std::optional<double> step_size) {
  return with_field(std::move(func), "forward", [&](VectorField& field) {
    SolveStats stats;
    at::Tensor solution = at::stack(solve_fixed_grid(field, parse_fixed_method(method), y0, times, step_size, stats));
    return std::make_pair(solution, stats);
  });
}

// The adjoint backward pass (csrc/solver/adjoint.h). `options` describe the augmented state
// [y, a_y, a_theta, a_t]; `fixed_method` (euler/midpoint/rk4) replaces dopri5 when given.
// Returns (grad_y0, [grad_param...], grad_t [T] or None, (nfe, accepted, rejected)).
py::tuple adjoint_backward_py(py::object func, const std::vector<at::Tensor>& params, const std::vector<double>& times,
                           const at::Tensor& ys, const at::Tensor& grad_ys, bool t_requires_grad,
                           const AdaptiveOptions& options, std::optional<std::string> fixed_method,
                           std::optional<double> step_size) {
  AdjointIntegrator integrator{options, std::nullopt, step_size};
  if (fixed_method) integrator.fixed = parse_fixed_method(*fixed_method);
  AdjointGrads grads;
  if (py::isinstance<NativeField>(func)) {  // no Python per evaluation: the whole solve without the GIL
    auto native = func.cast<std::shared_ptr<NativeField>>();
    AdjointField field{*native, [&](const at::Tensor& t, const at::Tensor& y, double) { return native->call(t, y); },
                       /*holds_gil=*/false};
    py::gil_scoped_release no_gil;
    grads = anode::adjoint_backward(field, params, times, ys, grad_ys, t_requires_grad, integrator);
  } else {
    PythonField python(std::move(func), "adjoint");
    const auto call = [&](const at::Tensor& t, const at::Tensor& y, double tv) { return python.call(t, y, tv); };
    AdjointField field{python, call, /*holds_gil=*/true};
    grads = anode::adjoint_backward(field, params, times, ys, grad_ys, t_requires_grad, integrator);
  }
  py::object grad_t = grads.times ? py::cast(*grads.times) : py::none();
  return py::make_tuple(grads.y0, grads.params, grad_t, stats_tuple(grads.stats));
}

void set_python_error(const char* class_name, const char* message) {
  py::object cls = py::module_::import("anode_native.errors").attr(class_name);
  PyErr_SetString(cls.ptr(), message);
}

}  // namespace
}  // namespace anode

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "anode-native engine: Dormand-Prince driver, fixed-grid driver and adjoint";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const anode::SolverException& e) {
      anode::set_python_error(anode::python_error_name(e.kind()), e.what());
    } catch (const c10::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what_without_backtrace());
    } catch (const c10::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what_without_backtrace());
    } catch (const c10::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    }
  });

  py::class_<anode::AdaptiveOptions>(m, "AdaptiveOptions")
      .def(py::init<>())
      .def_readwrite("rtol", &anode::AdaptiveOptions::rtol)
      .def_readwrite("atol", &anode::AdaptiveOptions::atol)
      .def_readwrite("segments", &anode::AdaptiveOptions::segments)
      .def_readwrite("segment_in_norm", &anode::AdaptiveOptions::segment_in_norm)
      .def_readwrite("first_step", &anode::AdaptiveOptions::first_step)
      .def_readwrite("max_num_steps", &anode::AdaptiveOptions::max_num_steps)
      .def_readwrite("min_step", &anode::AdaptiveOptions::min_step)
      .def_readwrite("max_step", &anode::AdaptiveOptions::max_step)
      .def_readwrite("step_t", &anode::AdaptiveOptions::step_t)
      .def_readwrite("jump_t", &anode::AdaptiveOptions::jump_t)
      .def_readwrite("safety", &anode::AdaptiveOptions::safety)
      .def_readwrite("ifactor", &anode::AdaptiveOptions::ifactor)
      .def_readwrite("dfactor", &anode::AdaptiveOptions::dfactor)
      .def_readwrite("time_float32", &anode::AdaptiveOptions::time_float32)
      .def_readwrite("phase", &anode::AdaptiveOptions::phase);

  // A vector field evaluated in C++ (anode_native/native_fields.py builds these from our modules).
  py::class_<anode::NativeField, std::shared_ptr<anode::NativeField>>(m, "NativeField")
      .def(py::init<const std::vector<std::string>&, const std::vector<at::Tensor>&,
                    const std::vector<std::optional<at::Tensor>>&, const std::vector<int64_t>&,
                    const std::vector<bool>&, const std::string&>(),
           py::arg("kinds"), py::arg("weights"), py::arg("biases"), py::arg("paddings"), py::arg("time_inputs"),
           py::arg("activation"))
      .def("__call__", &anode::NativeField::call, py::arg("t"), py::arg("y"))
      .def("parameters", &anode::NativeField::parameters);

  m.def("solve_dopri5", &anode::solve_dopri5, py::arg("func"), py::arg("y0"), py::arg("times"), py::arg("options"));
  m.def("solve_fixed", &anode::solve_fixed, py::arg("func"), py::arg("y0"), py::arg("times"), py::arg("method"),
        py::arg("step_size") = py::none());
  m.def("adjoint_backward", &anode::adjoint_backward_py, py::arg("func"), py::arg("params"), py::arg("times"),
        py::arg("ys"), py::arg("grad_ys"), py::arg("t_requires_grad"), py::arg("options"),
        py::arg("fixed_method") = py::none(), py::arg("step_size") = py::none());
  m.attr("has_cuda") = py::bool_(
#ifdef ANODE_WITH_CUDA
      true
#else
      false
#endif
  );
}
