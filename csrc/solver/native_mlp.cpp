#include "native_mlp.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/dot.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/softplus.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/threshold_backward.h>
#include <torch/csrc/autograd/custom_function.h>

#include "native_field.h"

namespace anode {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor activate(at::Tensor h, Activation activation) {
  switch (activation) {
    case Activation::ReLU: return at::relu_(h);
    case Activation::Tanh: return at::tanh_(h);
    case Activation::Softplus: return at::softplus(h, 1, 20);
  }
  return h;
}

// d act(h) / dh times g, from the saved pre-activation h and activation a.
at::Tensor activation_backward(const at::Tensor& g, const at::Tensor& h, const at::Tensor& a, Activation activation) {
  switch (activation) {
    case Activation::ReLU: return at::threshold_backward(g, a, 0);
    case Activation::Tanh: return g * (1 - a * a);
    case Activation::Softplus: return g * at::sigmoid(h);  // torch's softplus(beta=1, threshold=20)
  }
  return g;
}

// Linear(cat([t, y])) without materialising the concatenation: the time column of the weight
// folds into the bias, b + t * W[:, 0], and the rest multiplies y.
at::Tensor first_layer_with_time(const at::Tensor& t, const at::Tensor& y, const at::Tensor& w, const at::Tensor& b) {
  return at::addmm(b + w.select(1, 0) * t, y, w.narrow(1, 1, w.size(1) - 1).t());
}

class MLPFunction : public torch::autograd::Function<MLPFunction> {
 public:
  // inputs: t, y, then (weight, bias) per layer; `layers` tells how many.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& t, const at::Tensor& y, at::TensorList params,
                            int64_t activation, bool time_input) {
    at::AutoDispatchBelowADInplaceOrView guard;
    const auto act = static_cast<Activation>(activation);
    const size_t n = params.size() / 2;
    at::Tensor x = y;
    std::vector<at::Tensor> saved{t, y};
    for (size_t i = 0; i < n; ++i) {
      const at::Tensor &w = params[2 * i], &b = params[2 * i + 1];
      at::Tensor h = i == 0 && time_input ? first_layer_with_time(t, y, w, b) : at::addmm(b, x, w.t());
      if (i + 1 == n) {
        x = h;
        break;
      }
      // Softplus needs its input for the backward; ReLU and tanh work from their output.
      at::Tensor pre = act == Activation::Softplus ? h : at::Tensor();
      x = activate(h, act);
      saved.push_back(pre);
      saved.push_back(x);
    }
    saved.insert(saved.end(), params.begin(), params.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["activation"] = activation;
    ctx->saved_data["time_input"] = time_input;
    ctx->saved_data["layers"] = static_cast<int64_t>(n);
    return x;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto act = static_cast<Activation>(ctx->saved_data["activation"].toInt());
    const bool time_input = ctx->saved_data["time_input"].toBool();
    const size_t n = static_cast<size_t>(ctx->saved_data["layers"].toInt());
    const at::Tensor &t = saved[0], &y = saved[1];
    const size_t params_at = 2 + 2 * (n - 1);
    std::vector<at::Tensor> param_grads(2 * n);
    at::Tensor g = grads[0], grad_t;
    for (size_t i = n; i-- > 0;) {
      const at::Tensor& w = saved[params_at + 2 * i];
      const at::Tensor& input = i == 0 ? y : saved[2 + 2 * (i - 1) + 1];
      const at::Tensor g_rows = g.sum(0);  // the bias gradient
      param_grads[2 * i + 1] = g_rows;
      if (i == 0 && time_input) {
        // Column 0 of the first weight multiplies t (first_layer_with_time).
        param_grads[0] = at::cat({(g_rows * t).unsqueeze(1), at::mm(g.t(), input)}, 1);
        grad_t = at::dot(g_rows, w.select(1, 0)).reshape(t.sizes());
        g = at::mm(g, w.narrow(1, 1, w.size(1) - 1));
        break;
      }
      param_grads[2 * i] = at::mm(g.t(), input);
      g = at::mm(g, w);
      if (i > 0) g = activation_backward(g, saved[2 + 2 * (i - 1)], input, act);
    }
    variable_list out{grad_t, g};
    out.insert(out.end(), param_grads.begin(), param_grads.end());
    out.emplace_back();  // activation
    out.emplace_back();  // time_input
    return out;
  }
};

}  // namespace

at::Tensor mlp_forward(const at::Tensor& t, const at::Tensor& y, const std::vector<at::Tensor>& weights,
                       const std::vector<at::Tensor>& biases, Activation activation, bool time_input) {
  std::vector<at::Tensor> params;
  for (size_t i = 0; i < weights.size(); ++i) {
    params.push_back(weights[i]);
    params.push_back(biases[i]);
  }
  return MLPFunction::apply(t, y, at::TensorList(params), static_cast<int64_t>(activation), time_input);
}

}  // namespace anode
