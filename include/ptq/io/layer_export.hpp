#pragma once
// LayerExport: what a layout exporter produces for one quantized linear layer.
#include <vector>

#include <nlohmann/json.hpp>

#include <ptq/io/layer_tensor.hpp>

namespace ptq::io {

/// The tensors of one linear layer in a consumer's layout (named prefix + "." + suffix), and
/// the `quantization_config` fragment the consumer needs to read them (the same for every
/// layer exported with the same format and options; it goes into config.json's
/// "quantization_config", and for GPTQ also into quantize_config.json).
struct LayerExport {
    std::vector<LayerTensor> tensors;
    nlohmann::json quantization_config;
};

}  // namespace ptq::io
