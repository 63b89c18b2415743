#pragma once
// Typed solver failures. The bindings turn each kind into the Python class of the same name in
// anode_native/errors.py, so users catch e.g. anode_native.StepSizeUnderflowError.
#include <sstream>
#include <stdexcept>
#include <string>

namespace anode {

enum class ErrorKind { InvalidInput, FuncOutput, NonFinite, StepSizeUnderflow, MaxNumSteps };

inline const char* python_error_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidInput: return "InvalidInputError";
    case ErrorKind::FuncOutput: return "FuncOutputError";
    case ErrorKind::NonFinite: return "NonFiniteError";
    case ErrorKind::StepSizeUnderflow: return "StepSizeUnderflowError";
    case ErrorKind::MaxNumSteps: return "MaxNumStepsError";
  }
  return "SolverError";
}

class SolverException : public std::runtime_error {
 public:
  SolverException(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// Builds a message from streamable pieces: fail(ErrorKind::NonFinite, "at t = ", t, ...).
template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, const Args&... args) {
  std::ostringstream out;
  out.precision(17);
  (out << ... << args);
  throw SolverException(kind, out.str());
}

}  // namespace anode
