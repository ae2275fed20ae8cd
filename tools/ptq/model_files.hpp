// Model files of the ptq command: reading any supported input (llama2.c checkpoint, GGUF, a
// Hugging Face folder, plain or quantized by ptq) and writing a quantized model in an output
// format (GGUF, or a GPTQ / AWQ / compressed-tensors Hugging Face folder).
#pragma once

#include "llama2c_tokenizer.hpp"
#include "model.hpp"
#include "quantize_model.hpp"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace ptq::llama {

enum class InputKind { llama2c, gguf, hf };

struct InputModel {
    InputKind kind = InputKind::llama2c;
    Model model;
    std::shared_ptr<const Tokenizer> tokenizer;                 ///< null when none was found or given
    std::shared_ptr<const Llama2cTokenizer> llama2c_tokenizer;  ///< the same, when it has llama2.c pieces
    /// Set when the file was read lazily: model's linears are empty and this reads a layer's.
    LayerLoader load_layer;
};

/// Reads `path`: a directory is a Hugging Face folder (config.json; quantized linears are
/// dequantized with the consumer's formula), a file starting with "GGUF" a GGUF file (with its
/// vocabulary), any other file a llama2.c checkpoint. `tokenizer` (optional) is a llama2.c
/// tokenizer.bin or a SentencePiece tokenizer.model (by its extension); it overrides the file's
/// own (a Hugging Face folder's tokenizer.model is used when none is given). Throws ptq::file_error / FormatError
/// naming the file and what is wrong. lazy: a GGUF file or a plain (not quantized) Hugging Face
/// folder is checked whole but its linears are not read: the file stays memory-mapped and
/// load_layer reads one layer's linears as fp32 on demand (other inputs are read whole).
InputModel load_model_file(const std::filesystem::path& path, const std::optional<std::filesystem::path>& tokenizer,
                           bool lazy = false);

/// Makes the forward pass multiply the linears that GGUF file `path` stores quantized (Q4_0,
/// Q4_1, Q8_0, MXFP4) by their packed codes (ptq::gemm, LinearExtras::packed) instead of the
/// dequantized float weights `m` holds; `m` must be the model read from `path`. The codes'
/// dequantized values are checked to equal m's weights bit for bit (ptq::file_error naming the
/// tensor otherwise). Returns the number of linears set; 0 for a file of another kind (a
/// Hugging Face folder or a llama2.c checkpoint: their linears stay float products).
int use_packed_linears(Model& m, const std::filesystem::path& path);

/// Writes `q` (quantize_model with o.output = f) to `out` (a .gguf file, or a folder for the
/// Hugging Face formats), all or nothing per file. The tensors ptq does not quantize (embedding,
/// norms, classifier) are copied as F32. Returns the bytes written.
std::uintmax_t write_quantized(const QuantizedModel& q, OutputFormat f, const std::filesystem::path& out,
                               const Llama2cTokenizer* tokenizer, const std::string& name);

/// `ptq quantize`: quantizes `in` (best read with load_model_file(..., lazy = true)) with `r`
/// and writes it as `f` to `out` layer by layer: each layer is read, quantized, written and
/// released in turn (quantize_model with o.load_layer and o.layer_done), so that memory holds
/// the embedding and classifier, one layer and the calibration activations, not the model. The
/// file is the one write_quantized writes for quantize_model's result, byte for byte; it is
/// written under a temporary name renamed at the end (nothing is left on an error). Returns the
/// quantized model (no layer weights unless o.keep_layers), its linears (without their bytes)
/// and report; *bytes (if given) = the bytes written.
QuantizedModel quantize_to_file(InputModel&& in, const RecipeSpec& r, CalibData* calib, QuantizeOptions o,
                                OutputFormat f, const std::filesystem::path& out, const std::string& name,
                                std::uintmax_t* bytes = nullptr);

/// `ptq inspect`: a text description of a model file (tensors, shapes, types, bits per weight,
/// the quantization config).
std::string inspect_file(const std::filesystem::path& path);

}  // namespace ptq::llama
