#pragma once
// A VectorField that calls a Python callable func(t, y) through pybind11 (GIL held by the caller)
// and checks what comes back, so a wrong output is a clear FuncOutputError, not a crash later.
#include <ATen/ops/scalar_tensor.h>
#include <torch/csrc/autograd/python_variable.h>
#include <pybind11/pybind11.h>

#include <string>

#include "errors.h"
#include "vector_field.h"

namespace anode {

class PythonField : public VectorField {
 public:
  PythonField(pybind11::object func, std::string phase) : func_(std::move(func)), phase_(std::move(phase)) {}

  at::Tensor operator()(double t, const at::Tensor& y) override {
    // torchdiffeq passes time as a 0-dim tensor of the state's dtype on the state's device.
    return call(at::scalar_tensor(t, y.options()), y, t);
  }

  // func(t_tensor, y) with the output checks; the adjoint passes a t_tensor that requires grad.
  at::Tensor call(const at::Tensor& t_tensor, const at::Tensor& y, double t) {
    pybind11::object out = func_(pybind11::reinterpret_steal<pybind11::object>(THPVariable_Wrap(t_tensor)),
                                 pybind11::reinterpret_steal<pybind11::object>(THPVariable_Wrap(y)));
    if (!THPVariable_Check(out.ptr())) {
      fail(ErrorKind::FuncOutput, "func must return a torch.Tensor, got ",
           std::string(pybind11::str(pybind11::type::of(out).attr("__name__"))), " (", phase_, " solve, t = ", t, ")");
    }
    at::Tensor f = THPVariable_Unpack(out.ptr());
    check_output(f, y, t);
    return f;
  }

 private:
  void check_output(const at::Tensor& f, const at::Tensor& y, double t) const {
    if (f.sizes() != y.sizes()) {
      fail(ErrorKind::FuncOutput, "func returned shape ", f.sizes(), " but the state has shape ", y.sizes(), " (",
           phase_, " solve, t = ", t, ")");
    }
    if (f.scalar_type() != y.scalar_type()) {
      fail(ErrorKind::FuncOutput, "func returned dtype ", f.scalar_type(), " but the state has dtype ",
           y.scalar_type(), " (", phase_, " solve, t = ", t, ")");
    }
    if (f.device() != y.device()) {
      fail(ErrorKind::FuncOutput, "func returned a tensor on ", f.device(), " but the state is on ", y.device(),
           " (", phase_, " solve, t = ", t, ")");
    }
  }

  pybind11::object func_;
  std::string phase_;
};

}  // namespace anode
