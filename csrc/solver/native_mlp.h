#pragma once
// The MLP vector field as ONE autograd node: forward runs Linear-act-...-Linear with ATen GEMMs
// and saves the activations; backward writes out the chain rule (GEMMs for the weight and input
// gradients, column sums for the biases). A solve of the paper's toy model then records one
// node per evaluation instead of about ten, which is most of the cost of direct backprop.
#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

namespace anode {

enum class Activation;

// y: [B, in]; weights[i]: [out_i, in_i]; biases[i]: [out_i] or undefined. When `time_input`, t
// (0-dim) is prepended to y as a column. The activation follows every layer but the last.
at::Tensor mlp_forward(const at::Tensor& t, const at::Tensor& y, const std::vector<at::Tensor>& weights,
                       const std::vector<at::Tensor>& biases, Activation activation, bool time_input);

}  // namespace anode
