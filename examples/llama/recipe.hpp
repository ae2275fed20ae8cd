// ptq::llama recipes: parse a compact recipe string and quantize a whole model with it
// (calibration capture, SmoothQuant/AWQ, RTN/GPTQ, LQER/L2QER/LoRC, activation quantization).
//
// Recipe syntax: comma-separated key=value pairs, keys in any order, all optional:
//   w=FORMAT[:GRAN]   weight format and granularity (default int4-asym:g32)
//                     FORMAT: int2..int8 with -sym / -asym, fp8-e4m3, fp8-e5m2,
//                             mxint2/3/4/8 and mxfp4 with a block :b16 / :b32 (or -b16 / -b32)
//                     GRAN (non-MX): pc | per-channel | gN (groups of N along in_features;
//                             N >= in_features is per-channel for that linear)
//   a=ACT             activation format of the input of every linear (default none):
//                     none | int8 (per-token, symmetric, dynamic) | fp8-e4m3 (per-token) |
//                     mxint8-b16 | mxint8-b32 | mxint8-b128
//   algo=CHAIN        [sq|awq][+][rtn|gptq][+lqerK|+l2qerK|+lorcK] (default rtn), e.g. rtn,
//                     gptq, sq, awq, sq+gptq, awq+gptq, rtn+l2qer8, gptq+lorc8
//   calib=SET         tinystories | wikitext | a file path (default tinystories)
//   seq=1|0           sequential (default) or non-sequential calibration (overrides the
//                     program-wide default)
// Low-rank factors: LQER and L2QER store A and B in MXINT8 with block 16 (as in the LQER
// paper); LoRC keeps them in fp16 (values rounded to half precision, counted as 16 bits).
#pragma once

#include "llama/llama.hpp"

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ptq::llama {

/// A recipe string that cannot be parsed or names an unsupported combination.
class RecipeError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

enum class TransformKind { none, smooth_quant, awq };
enum class ReconstructKind { rtn, gptq };
enum class LowRankKind { none, lqer, l2qer, lorc };

struct RecipeSpec {
    std::string weight = "int4-asym";  ///< canonical format name (ptq's Format::name())
    std::size_t group = 32;            ///< 0 = per-channel; MX: the block (informational)
    std::string act = "none";          ///< canonical activation format name
    TransformKind transform = TransformKind::none;
    ReconstructKind reconstruct = ReconstructKind::rtn;
    LowRankKind low_rank = LowRankKind::none;
    int rank = 0;
    std::string calib = "tinystories";
    std::optional<bool> sequential;  ///< unset: the program-wide default

    bool is_mx() const { return weight.rfind("mx", 0) == 0; }
    /// "w=int4-asym:g32,a=none,algo=awq+gptq,calib=tinystories" (seq only when set).
    std::string text() const;
    std::string weight_text() const;  ///< "int4-asym:g32", "mxint4:b32"
    std::string algo_text() const;    ///< "awq+gptq+l2qer8"
    /// Needs calibration activations (any transformation, GPTQ or L2QER).
    bool needs_calibration() const;
    /// The RTN recipe with the same weight format, granularity and activation format.
    RecipeSpec rtn_baseline() const;
};

/// Parses a recipe string; throws RecipeError with a message naming the bad part and listing
/// the accepted values.
RecipeSpec parse_recipe(std::string_view text);

/// Supported weight formats (canonical names, MX ones with their block) and activation formats.
std::vector<std::string> supported_weight_formats();
std::vector<std::string> supported_activation_formats();

/// Fake quantizer of activation format `act` ("none" -> empty function).
ActivationQuantizer make_activation_quantizer(const std::string& act);

/// Calibration sequences of one set, plus (lazily, shared by all recipes) the fp32 model's
/// inputs of every linear group for the non-sequential protocol.
struct CalibData {
    std::string name;
    std::vector<std::vector<int>> seqs;
    std::size_t tokens = 0;
    struct Fp32Captures;                 ///< defined in recipe.cpp
    std::shared_ptr<Fp32Captures> fp32;  ///< filled on first non-sequential use
};

/// Loads a calibration set: "tinystories" (DATA/tinystories/train_calib.txt), "wikitext"
/// (DATA/wikitext2/test.txt) or a file path; `token_budget` tokens (see calibration_sequences).
CalibData load_calibration(const std::string& set, const std::filesystem::path& data_dir, const Tokenizer& tok,
                           int seq_len, std::size_t token_budget);

struct QuantReport {
    double effective_bits = 0.0;    ///< bits per weight over the 7 linears of all layers (scales, zeros, factors)
    std::size_t weights = 0;        ///< number of weights counted
    double seconds = 0.0;           ///< total quantization time (calibration capture included)
    double calib_seconds = 0.0;     ///< of which: forward passes capturing calibration inputs
    double calib_loss_ratio = 0.0;  ///< mean over linears of layer-output MSE / RTN's (NaN if not measured)
    std::string notes;              ///< e.g. chosen AWQ alphas, GPTQ damping retries
};

/// Effective-bits metadata convention: fp16 scale and fp16 zero point per group (the papers'
/// convention, ptq::MetadataBits{}); MX formats count their 8-bit shared exponent.
///
/// Quantizes a copy of `fp32` with `r`. `calib` is required when r.needs_calibration().
/// sequential: layer l (and inside it: q/k/v, then wo, then w1/w3, then w2) is calibrated on
/// the inputs produced by the already quantized parts before it; otherwise on the fp32 model's.
/// progress(msg) is called with short status lines (may be empty).
Model quantize_model(const Model& fp32, const RecipeSpec& r, CalibData* calib, bool sequential, QuantReport* report,
                     const std::function<void(const std::string&)>& progress = {});

}  // namespace ptq::llama
