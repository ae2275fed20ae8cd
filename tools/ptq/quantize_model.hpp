// quantize_model: a whole model quantized with a recipe, layer by layer (calibration capture,
// SmoothQuant / AWQ, RTN / GPTQ, LQER / L2QER / LoRC, activation quantization), with every
// quantized linear optionally encoded for an output file format.
#pragma once

#include "calibration.hpp"
#include "model.hpp"
#include "recipe.hpp"

#include <ptq/io/gguf_types.hpp>
#include <ptq/io/layer_tensor.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace ptq::llama {

/// Fake quantizer of activation format `act` ("none" -> empty function); RecipeError otherwise.
ActivationQuantizer make_activation_quantizer(const std::string& act);

struct QuantReport {
    double effective_bits = 0.0;    ///< bits per weight over the 7 linears of all layers (scales, zeros, factors)
    std::size_t weights = 0;        ///< number of weights counted
    double seconds = 0.0;           ///< total quantization time (calibration capture included)
    double calib_seconds = 0.0;     ///< of which: forward passes capturing calibration inputs
    double calib_loss_ratio = 0.0;  ///< mean over linears of layer-output MSE / RTN's (NaN if not measured)
    std::string notes;              ///< e.g. chosen AWQ alphas, GPTQ damping retries
};

/// One quantized linear as an output format stores it.
struct EncodedLinear {
    int layer = 0;
    int linear = 0;  ///< index into kLinearNames
    /// The layout cannot hold this linear's shape (e.g. GPTQ needs in and out multiples of
    /// 32 / bits): it is stored as its dequantized weights, dense, and listed as not quantized.
    bool dense = false;
    std::string dense_reason;
    // GGUF: one ggml tensor (type and bytes).
    io::GgmlType ggml_type = io::GgmlType::F32;
    std::vector<std::byte> ggml_data;
    // Hugging Face formats: the layout's tensors, named "<hf prefix>.<suffix>", and the config.
    std::vector<io::LayerTensor> tensors;
    nlohmann::json quantization_config;
};

/// Options of quantize_model.
struct QuantizeOptions {
    bool sequential = true;                    ///< program-wide default (the recipe's seq= wins)
    OutputFormat output = OutputFormat::none;  ///< encode every linear for this format
    /// Called once per layer as it is finished (layer index, total); may be empty.
    std::function<void(int, int)> progress;
    /// Reads layer l's fp32 linears when the model given holds none (a lazily read input file,
    /// InputModel::load_layer): each layer is read when it is quantized. Empty: the model
    /// holds every weight.
    LayerLoader load_layer;
    /// Called with each layer once it is quantized: the model (layer l holds its quantized
    /// weights, dequantized, and its norms with any folded scales) and layer l's encoded linears.
    /// Unless keep_layers, the quantizer then releases that layer's weights, extras and encoded
    /// bytes: the returned model and linears keep no layer weights (the entries of `linears`
    /// keep their type, shape and dense flag).
    std::function<void(const Model& m, int l, const std::vector<EncodedLinear>& linears)> layer_done;
    bool keep_layers = false;
};

struct QuantizedModel {
    Model model;  ///< what the file holds, as the tool's forward pass runs it
    std::vector<EncodedLinear> linears;
    QuantReport report;
};

/// Effective-bits metadata convention: fp16 scale and fp16 zero point per group (the papers'
/// convention, ptq::MetadataBits{}); MX formats count their 8-bit shared exponent.
///
/// Quantizes `fp32` (taken by value: pass an rvalue to spare the copy) with `r`. `calib` is required when
/// r.needs_calibration(). sequential: layer l (and inside it: q/k/v, then wo, then w1/w3, then w2) is calibrated on the
/// inputs produced by the already quantized parts before it; otherwise on the fp32 model's. With an output format, r
/// must have passed resolve_for_output, and SmoothQuant/AWQ scales are applied only where they fold exactly into a file
/// (the RMSNorm before q/k/v and before w1/w3: the returned model has them folded into its norm weights); wo and w2 get
/// the reconstruction step alone. With o.load_layer, `fp32` holds no linear weights: each layer is read, quantized,
/// handed to o.layer_done and released in turn (the streaming `ptq quantize`); the results are the same.
QuantizedModel quantize_model(Model fp32, const RecipeSpec& r, CalibData* calib, const QuantizeOptions& o);

/// The in-memory form (no output format), as the recipe tables use it.
Model quantize_model(const Model& fp32, const RecipeSpec& r, CalibData* calib, bool sequential, QuantReport* report,
                     const std::function<void(const std::string&)>& progress = {});

}  // namespace ptq::llama
