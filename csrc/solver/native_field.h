#pragma once
// Vector fields evaluated in C++ with ATen calls on a module's own parameter tensors: the
// paper's MLP (Linear - act - Linear - act - Linear) and conv (1x1 - act - 3x3 - act - 1x1)
// fields, with time as an extra input column / constant channel. No Python runs per evaluation;
// autograd records the ATen calls, so direct backprop and the adjoint's VJPs work unchanged.
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "vector_field.h"

namespace anode {

enum class LayerKind { Linear, Conv2d };
enum class Activation { ReLU, Softplus, Tanh };

struct NativeLayer {
  LayerKind kind;
  at::Tensor weight;
  std::optional<at::Tensor> bias;
  int64_t padding = 0;      // Conv2d: symmetric zero padding, stride 1
  bool time_input = false;  // prepend t as a column (Linear) or a constant channel (Conv2d)
};

class NativeField : public VectorField {
 public:
  // The activation follows every layer but the last.
  NativeField(std::vector<NativeLayer> layers, Activation activation);
  NativeField(const std::vector<std::string>& kinds, const std::vector<at::Tensor>& weights,
              const std::vector<std::optional<at::Tensor>>& biases, const std::vector<int64_t>& paddings,
              const std::vector<bool>& time_inputs, const std::string& activation);

  at::Tensor operator()(double t, const at::Tensor& y) override;
  // The same with time as a 0-dim tensor: the adjoint passes one that requires grad for dL/dt.
  at::Tensor call(const at::Tensor& t, const at::Tensor& y);

  // The parameters the field reads, in layer order (weight, bias): the adjoint differentiates these.
  std::vector<at::Tensor> parameters() const;

 private:
  struct MLPLayers {
    std::vector<at::Tensor> weights, biases;
  };
  void detect_mlp();

  std::vector<NativeLayer> layers_;
  Activation activation_;
  std::optional<MLPLayers> mlp_;  // set when the field is an MLP with a fused backward
};

}  // namespace anode
