#include "native_field.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/softplus.h>
#include <ATen/ops/tanh.h>

#include "errors.h"
#include "native_mlp.h"

namespace anode {
namespace {

Activation parse_activation(const std::string& name) {
  if (name == "relu") return Activation::ReLU;
  if (name == "softplus") return Activation::Softplus;
  if (name == "tanh") return Activation::Tanh;
  fail(ErrorKind::InvalidInput, "native field: unknown activation '", name, "' (relu, softplus or tanh)");
}

// The time input: t broadcast to one column (B, 1) or one channel (B, 1, H, W), placed first as
// in the Python modules (torch.cat([time, x], dim=1)).
at::Tensor with_time(const at::Tensor& h, const at::Tensor& t) {
  std::vector<int64_t> shape(h.sizes().begin(), h.sizes().end());
  shape[1] = 1;
  return at::cat({t.reshape({}).expand(shape), h}, 1);
}

}  // namespace

NativeField::NativeField(std::vector<NativeLayer> layers, Activation activation)
    : layers_(std::move(layers)), activation_(activation) {
  if (layers_.empty()) fail(ErrorKind::InvalidInput, "native field: needs at least one layer");
  detect_mlp();
}

// An MLP of biased Linear layers with time (if any) entering the first one differentiates as one
// fused autograd node (native_mlp.h).
void NativeField::detect_mlp() {
  MLPLayers mlp;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const NativeLayer& layer = layers_[i];
    if (layer.kind != LayerKind::Linear || !layer.bias || (i > 0 && layer.time_input)) return;
    mlp.weights.push_back(layer.weight);
    mlp.biases.push_back(*layer.bias);
  }
  mlp_ = std::move(mlp);
}

NativeField::NativeField(const std::vector<std::string>& kinds, const std::vector<at::Tensor>& weights,
                         const std::vector<std::optional<at::Tensor>>& biases, const std::vector<int64_t>& paddings,
                         const std::vector<bool>& time_inputs, const std::string& activation)
    : activation_(parse_activation(activation)) {
  const size_t n = kinds.size();
  if (weights.size() != n || biases.size() != n || paddings.size() != n || time_inputs.size() != n || n == 0) {
    fail(ErrorKind::InvalidInput, "native field: kinds, weights, biases, paddings and time_inputs must have the "
         "same non-zero length");
  }
  for (size_t i = 0; i < n; ++i) {
    NativeLayer layer;
    if (kinds[i] == "linear") {
      layer.kind = LayerKind::Linear;
    } else if (kinds[i] == "conv2d") {
      layer.kind = LayerKind::Conv2d;
    } else {
      fail(ErrorKind::InvalidInput, "native field: unknown layer kind '", kinds[i], "' (linear or conv2d)");
    }
    layer.weight = weights[i];
    layer.bias = biases[i];
    layer.padding = paddings[i];
    layer.time_input = time_inputs[i];
    layers_.push_back(std::move(layer));
  }
  detect_mlp();
}

at::Tensor NativeField::operator()(double t, const at::Tensor& y) {
  return call(at::scalar_tensor(t, y.options()), y);
}

at::Tensor NativeField::call(const at::Tensor& t, const at::Tensor& y) {
  if (mlp_) {
    return mlp_forward(t, y, mlp_->weights, mlp_->biases, activation_, layers_.front().time_input);
  }
  at::Tensor h = y;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const NativeLayer& layer = layers_[i];
    if (layer.time_input) h = with_time(h, t);
    const std::optional<at::Tensor>& bias = layer.bias;
    if (layer.kind == LayerKind::Linear) {
      h = at::linear(h, layer.weight, bias);
    } else {
      h = at::conv2d(h, layer.weight, bias, /*stride=*/{1, 1}, /*padding=*/{layer.padding, layer.padding});
    }
    if (i + 1 == layers_.size()) break;
    switch (activation_) {
      // In place on the layer's fresh output: linear/conv backward needs only their inputs.
      case Activation::ReLU: h = at::relu_(h); break;
      case Activation::Tanh: h = at::tanh_(h); break;
      case Activation::Softplus: h = at::softplus(h, /*beta=*/1, /*threshold=*/20); break;
    }
  }
  return h;
}

std::vector<at::Tensor> NativeField::parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& layer : layers_) {
    out.push_back(layer.weight);
    if (layer.bias) out.push_back(*layer.bias);
  }
  return out;
}

}  // namespace anode
