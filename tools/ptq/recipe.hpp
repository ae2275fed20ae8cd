// ptq tool recipes: a compact recipe string, parsed into every option of the library's
// algorithms (with the library's defaults), and its compatibility with an output file format.
//
// Syntax: comma-separated key=value pairs, keys in any order, all optional (recipe_help() is
// the list printed by `ptq quantize --help`):
//   w=FORMAT[:GRAN]   weight format and granularity (default int4-asym:g32)
//                     FORMAT: int2..int8 with -sym / -asym, int4-min (ggml's Q4_1 form),
//                             fp8-e4m3, mxint3/mxint4 and mxfp4 with a block :b16 / :b32
//                     GRAN (non-MX): pc | per-channel | gN (groups of N along in_features)
//   a=ACT             activation fake quantization (none | int8 | int4 | fp8-e4m3 | mxint8-bN)
//   algo=CHAIN        [sq|awq][+][rtn|gptq][+lqerK|+l2qerK|+lorcK] (default rtn)
//   calib=SET, calib-tokens=N, seq=1|0            calibration set, budget, protocol
//   act-order, static-groups, damp, block         GPTQ
//   refine, gptaq, gptaq-alpha                    GPTQ: coordinate descent, error-aware calibration
//   preset=NAME                                   a measured best recipe (w4, w4-gguf, w4-awq, w3, w2,
//                                                 w3pc; other keys given beside it override its values)
//   clip=none|cs-sym|cs-asym, clip-grid, clip-shrink, clip-norm   RTN / GPTQ clipping search
//   awq-grid, awq-duo, awq-clip                   AWQ
//   sq-alpha                                      SmoothQuant
//   lr-format=mxint8-b16|fp16                     low-rank factor storage
//   scale=f32|f16|bf16                            scale storage type
//   rot=none|hadamard|random[:SEED], rot-online   rotation of the model before quantization
#pragma once

#include "model.hpp"
#include "rotation.hpp"

#include <ptq/error.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ptq::llama {

/// A recipe string that cannot be parsed, names an unsupported combination, or a recipe that
/// an output format cannot hold (a ptq::invalid_argument).
class RecipeError : public ptq::invalid_argument {
public:
    using ptq::invalid_argument::invalid_argument;
};

enum class TransformKind { none, smooth_quant, awq };
enum class ReconstructKind { rtn, gptq };
enum class LowRankKind { none, lqer, l2qer, lorc };
enum class ClipKind { none, cs_sym, cs_asym };
enum class OutputFormat { none, gguf, gptq, awq, compressed_tensors };

struct RecipeSpec {
    std::string weight = "int4-asym";  ///< canonical format name (ptq's Format::name())
    std::size_t group = 32;            ///< 0 = per-channel; MX: the block (informational)
    std::string act = "none";          ///< canonical activation format name
    TransformKind transform = TransformKind::none;
    ReconstructKind reconstruct = ReconstructKind::rtn;
    LowRankKind low_rank = LowRankKind::none;
    int rank = 0;
    std::string calib = "tinystories";
    std::optional<std::size_t> calib_tokens;  ///< unset: the program-wide budget
    std::optional<bool> sequential;           ///< unset: the program-wide default
    // GPTQ (GptqOptions defaults)
    bool act_order = false;
    bool static_groups = false;
    double damp = 0.01;
    std::size_t block = 128;
    int refine = 0;            ///< coordinate-descent passes after GPTQ (PipelineOptions::refine)
    bool gptaq = false;        ///< error-aware calibration (PipelineOptions::gptaq; sequential only)
    double gptaq_alpha = 1.0;  ///< GptaqOptions::alpha
    bool refit = false;        ///< refit the group scales in each refine pass (RefineOptions::refit_scales)
    // Clipping search of RTN / GPTQ (QuantOptions::range, ClipSearch defaults)
    ClipKind clip = ClipKind::none;
    int clip_grid = 20;
    float clip_shrink = 0.5f;
    float clip_norm = 2.0f;
    // AWQ (AwqOptions defaults)
    int awq_grid = 20;
    bool awq_duo = false;
    bool awq_clip = true;
    // SmoothQuant
    float sq_alpha = 0.5f;
    // Low-rank factor storage: "mxint8-b16" (LQER / L2QER default) or "fp16" (LoRC default)
    std::string lr_format;  ///< empty: the kind's default
    /// Scale storage: unset = f32 (the library's default), or f16 when writing a file format
    /// that stores fp16 scales (see resolve_for_output).
    std::optional<std::string> scale;
    // Rotation of the fp32 model before calibration (rotation.hpp): residual Q of `rot` from
    // rot_seed; rot_online adds the online transform of w2's input (in memory only).
    RotationKind rot = RotationKind::none;
    std::uint64_t rot_seed = 0;
    bool rot_online = false;

    bool is_mx() const { return weight.rfind("mx", 0) == 0; }
    /// Canonical text: "w=int4-asym:g32,a=none,algo=awq+gptq,calib=tinystories" plus every
    /// option that differs from its default.
    std::string text() const;
    std::string weight_text() const;  ///< "int4-asym:g32", "mxint4:b32"
    std::string algo_text() const;    ///< "awq+gptq+l2qer8"
    /// Needs calibration activations (any transformation, GPTQ or L2QER).
    bool needs_calibration() const;
    /// The RTN recipe with the same weight format, granularity, activation format, scales and
    /// rotation.
    RecipeSpec rtn_baseline() const;
    /// The low-rank factor format in effect ("mxint8-b16" or "fp16").
    std::string low_rank_format() const;
};

/// Parses a recipe string; throws RecipeError with a message naming the bad part and listing
/// the accepted keys or values.
RecipeSpec parse_recipe(std::string_view text);

/// Names of the presets (recipe key preset=NAME) and the recipe text of one (RecipeError if unknown).
std::vector<std::string> preset_names();
std::string preset_recipe(std::string_view name);

/// The preset `ptq quantize` runs when no recipe is given: the best measured 4-bit recipe that
/// output format `f` can hold (resolve_for_output accepts it): w4 for gptq, compressed-tensors
/// and none (act-order groups stored through g_idx), w4-gguf for gguf (Q4_1, no act-order),
/// w4-awq for awq (act-order with static groups: contiguous groups, integer zero points).
std::string default_preset(OutputFormat f);
/// "gguf: w4-gguf, gptq: w4, ..." for --help.
std::string default_preset_help();

/// The recipe keys with their values and defaults, one per line (for --help).
std::string recipe_help();

/// Supported weight formats (canonical names, MX ones with their block) and activation formats.
std::vector<std::string> supported_weight_formats();
std::vector<std::string> supported_activation_formats();

/// "gguf", "gptq", "awq", "compressed-tensors" (or "none"); nullopt otherwise.
std::optional<OutputFormat> parse_output_format(std::string_view s);
const char* output_format_name(OutputFormat f);

/// Checks that `r` can be written as `f` and returns the recipe actually run: scale storage
/// f16 when the format stores fp16 scales and the recipe did not say (GGUF Q8_0/Q4_0/Q4_1,
/// GPTQ, AWQ, compressed-tensors). Throws RecipeError naming the recipe part and the format
/// (e.g. "act-order=1 cannot be written as gguf") before any work is done.
RecipeSpec resolve_for_output(const RecipeSpec& r, OutputFormat f);

}  // namespace ptq::llama
