#pragma once
// GPTQ checkpoints (GPTQModel / AutoGPTQ / vLLM "gptq"): export of a ptq integer
// QuantizedMatrix, and the consumer's own dequantization as an independent reader.
//
// Per linear layer `prefix` (weight W [out x in], groups along in; G = number of groups):
//   prefix.qweight  I32 [in*b/32, out]   column n = the codes q[i, n] of output channel n as a
//                                        dense little-endian bit stream along i (int32 words;
//                                        a 3-bit code may straddle two words)
//   prefix.qzeros   I32 [G, out*b/32]    row g = the stored zero points along n, same stream
//   prefix.scales   F16 [G, out]
//   prefix.g_idx    I32 [in]             group of input column i
// Dequantization (GPTQModel `dequantize_weight`, the transpose of nn.Linear's weight):
//   W_T[i, n] = scales[g_idx[i], n] * (q[i, n] - z[g_idx[i], n])
// with z = stored + 1 in checkpoint_format "gptq" (v1: files store z - 1) and z = stored in
// "gptq_v2". Symmetric files have z = 2^(b-1) exactly (vLLM's Marlin path ignores qzeros).
//
// ptq mapping: q[i, n] is ptq's code of row n at the storage column of input column i (ptq's
// asymmetric codes 0..2^b-1 with integer zero, and ptq's symmetric offset-binary codes
// c = q + 2^(b-1), are both already GPTQ's unsigned codes), z its integer zero point, scales
// its float scale (refused unless exactly an fp16 value, see ScaleRounding).
// Act-order (desc_act): groups are runs of *storage* columns; g_idx[i] = storage column of i
// divided by the group size, and codes are written back in the original column order.
//
// Shapes the consumers accept (checked): 2, 3, 4 or 8 bits; in and out multiples of 32/b
// (of 32 for 3 bits: its 32 codes fill 3 words); any group size, including a shorter last
// group and per-channel (group_size -1); GPTQModel's dequantize_weight reads all of these.
// Not checked (the file is valid, some kernels refuse it at load time with their own error):
// vLLM's gptq needs in % group_size == 0, Marlin in % 128 and out % 64, and GPTQModel's own
// packer only writes in and out multiples of 32.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <ptq/error.hpp>
#include <ptq/io/act_order.hpp>
#include <ptq/io/format_traits.hpp>
#include <ptq/io/int32_bitstream.hpp>
#include <ptq/io/layer_export.hpp>
#include <ptq/io/scale_storage.hpp>
#include <ptq/io/layer_tensor.hpp>
#include <ptq/kernel/packing.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq::io {

/// GPTQ `checkpoint_format`: "gptq" (v1, stores zero - 1; the default of every consumer) or
/// "gptq_v2" (stores the zero point itself).
enum class GptqCheckpointFormat : std::uint8_t { gptq, gptq_v2 };

/// The fields of a GPTQ `quantize_config.json` / `quantization_config` that the layout uses.
struct GptqConfig {
    int bits = 4;                   ///< 2, 3, 4 or 8
    std::int64_t group_size = 128;  ///< columns per group along in, or -1 = one group (per channel)
    bool desc_act = false;          ///< g_idx is not i / group_size (act-order)
    bool sym = true;                ///< every zero point is 2^(bits-1)
    GptqCheckpointFormat checkpoint_format = GptqCheckpointFormat::gptq;
};

/// {"quant_method": "gptq", "bits", "group_size", "desc_act", "sym", "checkpoint_format",
///  "pack_dtype": "int32"}.
inline nlohmann::json gptq_config_to_json(const GptqConfig& c) {
    return nlohmann::json{{"quant_method", "gptq"},
                          {"bits", c.bits},
                          {"group_size", c.group_size},
                          {"desc_act", c.desc_act},
                          {"sym", c.sym},
                          {"checkpoint_format", c.checkpoint_format == GptqCheckpointFormat::gptq ? "gptq" : "gptq_v2"},
                          {"pack_dtype", "int32"}};
}

/// Reads a GPTQ quantization config. Required: "bits" (2, 3, 4, 8), "group_size" (-1 or >= 1).
/// Optional: "desc_act" (false), "sym" (true), "checkpoint_format" ("gptq" | "gptq_v2",
/// default "gptq"), "quant_method" (must be "gptq" if present), "pack_dtype" (must be
/// "int32" if present). Other keys (damp_percent, true_sequential, meta, ...) are ignored.
/// Throws ptq::invalid_argument naming the field.
inline GptqConfig gptq_config_from_json(const nlohmann::json& j) {
    const char* fn = "io::gptq_config_from_json";
    if (!j.is_object()) ptq::detail::throw_invalid(fn, "config", "is not a JSON object");
    auto field = [&](const char* k) -> const nlohmann::json* {
        auto it = j.find(k);
        return it == j.end() ? nullptr : &*it;
    };
    auto req_int = [&](const char* k) {
        const nlohmann::json* v = field(k);
        if (!v) ptq::detail::throw_invalid(fn, k, "is missing");
        if (!v->is_number_integer()) ptq::detail::throw_invalid(fn, k, "is not an integer");
        return v->get<std::int64_t>();
    };
    auto opt_bool = [&](const char* k, bool def) {
        const nlohmann::json* v = field(k);
        if (!v) return def;
        if (!v->is_boolean()) ptq::detail::throw_invalid(fn, k, "is not a boolean");
        return v->get<bool>();
    };
    auto opt_str = [&](const char* k, const char* def) {
        const nlohmann::json* v = field(k);
        if (!v) return std::string(def);
        if (!v->is_string()) ptq::detail::throw_invalid(fn, k, "is not a string");
        return v->get<std::string>();
    };
    GptqConfig c;
    const std::int64_t bits = req_int("bits");
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        ptq::detail::throw_invalid(fn, "bits", std::to_string(bits) + " is not 2, 3, 4 or 8");
    c.bits = int(bits);
    c.group_size = req_int("group_size");
    if (c.group_size != -1 && c.group_size < 1)
        ptq::detail::throw_invalid(fn, "group_size", std::to_string(c.group_size) + " is neither -1 nor >= 1");
    c.desc_act = opt_bool("desc_act", false);
    c.sym = opt_bool("sym", true);
    const std::string fmt = opt_str("checkpoint_format", "gptq");
    if (fmt == "gptq") c.checkpoint_format = GptqCheckpointFormat::gptq;
    else if (fmt == "gptq_v2") c.checkpoint_format = GptqCheckpointFormat::gptq_v2;
    else ptq::detail::throw_invalid(fn, "checkpoint_format", "'" + fmt + "' is not \"gptq\" or \"gptq_v2\"");
    if (opt_str("quant_method", "gptq") != "gptq") ptq::detail::throw_invalid(fn, "quant_method", "is not \"gptq\"");
    if (opt_str("pack_dtype", "int32") != "int32") ptq::detail::throw_invalid(fn, "pack_dtype", "is not \"int32\"");
    return c;
}

/// Options of export_gptq.
struct GptqExportOptions {
    GptqCheckpointFormat checkpoint_format = GptqCheckpointFormat::gptq;
    ScaleRounding scale_rounding = ScaleRounding::exact;
};

namespace detail {
/// Multiple that in / out must have for b-bit GPTQ int32 packing: 32 / b, or 32 for 3 bits.
constexpr std::size_t gptq_dim_multiple(int bits) noexcept { return bits == 3 ? 32 : std::size_t(32 / bits); }
}  // namespace detail

/// Exports q (an IntFormat<2|3|4|8, ...> matrix [out x in]) as GPTQ tensors prefix.qweight,
/// .qzeros, .scales, .g_idx and the quantization_config. storage_perm: storage column k of q
/// holds original input column storage_perm[k] (GptqResult::storage_perm; empty = identity);
/// a non-identity permutation gives desc_act = true.
/// Throws ptq::invalid_argument: shapes the layout cannot hold (see the file comment); a
/// scale not exactly an fp16 value (unless ScaleRounding::round_nearest); asymmetric zero
/// point 0 in checkpoint_format "gptq" (v1 stores zero - 1: export as gptq_v2 instead); each
/// message names the tensor, and the row (output channel) and group where it applies.
template <class F>
LayerExport export_gptq(const QuantizedMatrix<F>& q, std::string_view prefix,
                        std::span<const std::size_t> storage_perm = {}, const GptqExportOptions& o = {}) {
    static_assert(is_int_format_v<F>,
                  "ptq::io::export_gptq: GPTQ checkpoints hold integer formats only (IntFormat<2|3|4|8, ...>); "
                  "MXINT, minifloat and MX formats have no GPTQ layout");
    static_assert(F::bits == 2 || F::bits == 3 || F::bits == 4 || F::bits == 8,
                  "ptq::io::export_gptq: GPTQ checkpoints hold 2, 3, 4 or 8-bit codes");
    constexpr int b = F::bits;
    const char* fn = "io::export_gptq";
    const std::size_t out = q.rows(), in = q.cols(), mult = detail::gptq_dim_multiple(b);
    if (out == 0 || in == 0) ptq::detail::throw_invalid(fn, "q", "is empty");
    if (in % mult != 0 || out % mult != 0)
        ptq::detail::throw_invalid(fn, "q",
                                   "is " + std::to_string(out) + " x " + std::to_string(in) +
                                       ": in_features and out_features must be multiples of " + std::to_string(mult) +
                                       " for " + std::to_string(b) + "-bit GPTQ (int32 words of packed codes)");
    const ColumnMap m = column_map(q, storage_perm, fn);
    const GroupLayout& L = q.layout();
    const std::size_t G = (L.group_rows > 1) ? 1 : L.col_groups();
    const std::int64_t group_size = ((L.group_rows > 1) || L.group_cols >= in) ? -1 : std::int64_t(L.group_cols);
    const bool v1 = o.checkpoint_format == GptqCheckpointFormat::gptq;

    LayerExport e;
    e.quantization_config = gptq_config_to_json({b, group_size, m.permuted, F::symmetric, o.checkpoint_format});
    LayerTensor qweight =
        make_tensor(tensor_name(prefix, "qweight"), DType::I32, {std::int64_t(in * b / 32), std::int64_t(out)});
    LayerTensor qzeros =
        make_tensor(tensor_name(prefix, "qzeros"), DType::I32, {std::int64_t(G), std::int64_t(out * b / 32)});
    LayerTensor scales = make_tensor(tensor_name(prefix, "scales"), DType::F16, {std::int64_t(G), std::int64_t(out)});
    LayerTensor g_idx = make_tensor(tensor_name(prefix, "g_idx"), DType::I32, {std::int64_t(in)});

    for (std::size_t n = 0; n < out; ++n) {
        const std::uint8_t* row = q.row_data(n);
        pack_int32_stream(
            in, b, [&](std::size_t i) { return ref::get_code(row, m.storage_of[i], b); },
            [&](std::size_t w, std::uint32_t word) { qweight.store_bits(w * out + n, word); });
        const auto* p = q.row_params(n);
        for (std::size_t g = 0; g < G; ++g)
            scales.store_bits(g * out + n, encode_scale(p[g].scale, DType::F16, o.scale_rounding, scales.name, n, g));
    }
    for (std::size_t g = 0; g < G; ++g) {
        pack_int32_stream(
            out, b,
            [&](std::size_t n) -> std::uint32_t {
                const std::int32_t z = q.row_params(n)[g].zero;
                if (!v1) return std::uint32_t(z);
                if (z == 0)
                    ptq::detail::throw_invalid(
                        fn, qzeros.name,
                        "zero point 0 at row " + std::to_string(n) + ", group " + std::to_string(g) +
                            " cannot be stored in checkpoint_format \"gptq\" (v1 stores zero - 1, "
                            "which wraps); export with GptqCheckpointFormat::gptq_v2");
                return std::uint32_t(z - 1);
            },
            [&](std::size_t w, std::uint32_t word) { qzeros.store_bits(g * (out * b / 32) + w, word); });
    }
    for (std::size_t i = 0; i < in; ++i) g_idx.store_bits(i, std::uint32_t(m.g_idx[i]));
    e.tensors.push_back(std::move(qweight));
    e.tensors.push_back(std::move(qzeros));
    e.tensors.push_back(std::move(scales));
    e.tensors.push_back(std::move(g_idx));
    return e;
}

namespace detail {
/// GPTQModel's unpacking of one b-bit field (PackableQuantLinear.dequantize_weight): for 2, 4
/// and 8 bits, field k of a packed vector is (word[k / (32/b)] >> (b * (k % (32/b)))) & maxq;
/// for 3 bits, every 3 words hold 32 fields in the 10 | 1 | 10 | 1 | 10 pattern: shifts
/// wf = {0,3,..,30,0}, {0,1,4,..,31}, {0,2,5,..,29,0} per word, field 10 = (w0 >> 30 & 3) |
/// (w1 << 2 & 4), field 21 = (w1 >> 31 & 1) | (w2 << 1 & 6), then the fields
/// w0[0..10], w1[1..11], w2[1..10] in that order. `word(j)` reads word j of the vector.
template <class Word>
std::uint32_t gptq_unpack_field(Word&& word, std::size_t k, int b) {
    const std::uint32_t maxq = (1u << b) - 1u;
    if (b != 3) {
        const std::size_t pf = std::size_t(32 / b);
        return (word(k / pf) >> (std::uint32_t(b) * std::uint32_t(k % pf))) & maxq;
    }
    static constexpr int wf[3][12] = {{0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 0},
                                      {0, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31},
                                      {0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 0}};
    const std::size_t blk = k / 32, r = k % 32;
    const std::uint32_t w0 = word(3 * blk), w1 = word(3 * blk + 1), w2 = word(3 * blk + 2);
    auto at = [&](int j, int t) {
        const std::uint32_t w = j == 0 ? w0 : j == 1 ? w1 : w2;
        std::uint32_t v = (w >> wf[j][t]) & 7u;
        if (j == 0 && t == 10) v = (v & 3u) | (((w1 & 7u) << 2) & 4u);
        if (j == 1 && t == 11) v = (v & 1u) | (((w2 & 7u) << 1) & 6u);
        return v & 7u;
    };
    if (r < 11) return at(0, int(r));       // cat: weight[:, 0, :11]
    if (r < 22) return at(1, int(r - 10));  //      weight[:, 1, 1:12]
    return at(2, int(r - 21));              //      weight[:, 2, 1:11]
}
}  // namespace detail

namespace detail {
/// The tensors of one GPTQ layer decoded as GPTQModel does (shapes checked, fields unpacked,
/// v1 zero points + 1, g_idx range-checked): the common first step of dequantize_gptq and
/// import_gptq.
struct GptqDecoded {
    std::int64_t in = 0, out = 0, groups = 0;
    std::vector<std::uint8_t> codes;  ///< q[i, n] at i * out + n
    std::vector<std::int32_t> zeros;  ///< z[g, n] at g * out + n
    std::vector<float> scales;        ///< scales[g, n] at g * out + n (exact fp16 values)
    std::vector<std::int32_t> g_idx;  ///< [in], each in [0, groups)
};

inline GptqDecoded gptq_decode(std::span<const LayerTensor> tensors, std::string_view prefix, const GptqConfig& cfg,
                               const char* fn) {
    const int b = cfg.bits;
    if (b != 2 && b != 3 && b != 4 && b != 8) ptq::detail::throw_invalid(fn, "cfg.bits", "is not 2, 3, 4 or 8");
    const LayerTensor& qw = require_tensor(tensors, tensor_name(prefix, "qweight"), DType::I32, 2, fn);
    const LayerTensor& qz = require_tensor(tensors, tensor_name(prefix, "qzeros"), DType::I32, 2, fn);
    const LayerTensor& sc = require_tensor(tensors, tensor_name(prefix, "scales"), DType::F16, 2, fn);
    const LayerTensor& gi = require_tensor(tensors, tensor_name(prefix, "g_idx"), DType::I32, 1, fn);
    GptqDecoded d;
    d.in = gi.shape[0];
    d.out = sc.shape[1];
    d.groups = sc.shape[0];
    const std::int64_t in = d.in, out = d.out, G = d.groups;
    const std::int64_t mult = std::int64_t(gptq_dim_multiple(b));
    if (in < 1 || out < 1 || in % mult != 0 || out % mult != 0 || G < 1)
        ptq::detail::throw_invalid(fn, sc.name, "shape does not fit " + std::to_string(b) + "-bit GPTQ packing");
    require_shape(qw, {in * b / 32, out}, fn);
    require_shape(qz, {G, out * b / 32}, fn);
    const std::uint32_t sym_zero = 1u << (b - 1);
    const std::int64_t zw = out * b / 32;
    d.zeros.resize(std::size_t(G * out));
    d.scales.resize(std::size_t(G * out));
    for (std::int64_t g = 0; g < G; ++g)
        for (std::int64_t n = 0; n < out; ++n) {
            std::uint32_t v = gptq_unpack_field(
                [&](std::size_t j) { return std::uint32_t(qz.load_bits(std::size_t(g * zw) + j)); }, std::size_t(n), b);
            if (cfg.checkpoint_format == GptqCheckpointFormat::gptq) {
                if (v == (1u << b) - 1u)
                    ptq::detail::throw_invalid(fn, qz.name,
                                               "v1 zero field 2^b - 1 at row " + std::to_string(n) + ", group " +
                                                   std::to_string(g) + " overflows when 1 is added");
                v += 1;
            }
            if (cfg.sym && v != sym_zero)
                ptq::detail::throw_invalid(fn, qz.name,
                                           "symmetric file with zero point " + std::to_string(v) +
                                               " != 2^(b-1) at row " + std::to_string(n) + ", group " +
                                               std::to_string(g));
            d.zeros[std::size_t(g * out + n)] = std::int32_t(v);
            d.scales[std::size_t(g * out + n)] = load_float(sc, std::size_t(g * out + n));
        }
    d.g_idx.resize(std::size_t(in));
    for (std::int64_t i = 0; i < in; ++i) {
        const std::int32_t g = gi.load_i32(std::size_t(i));
        if (g < 0 || g >= G)
            ptq::detail::throw_invalid(fn, gi.name,
                                       "entry " + std::to_string(i) + " = " + std::to_string(g) + " is outside [0, " +
                                           std::to_string(G) + ")");
        d.g_idx[std::size_t(i)] = g;
    }
    d.codes.resize(std::size_t(in * out));
    for (std::int64_t i = 0; i < in; ++i)
        for (std::int64_t n = 0; n < out; ++n)
            d.codes[std::size_t(i * out + n)] = static_cast<std::uint8_t>(gptq_unpack_field(
                [&](std::size_t j) { return std::uint32_t(qw.load_bits(j * std::size_t(out) + std::size_t(n))); },
                std::size_t(i), b));
    return d;
}
}  // namespace detail

/// The GPTQ consumer's dequantization of layer `prefix` (GPTQModel `dequantize_weight`),
/// written from the consumer's code, not from export_gptq: returns W [out x in] with
/// W[n, i] = scales[g_idx[i], n] * (q[i, n] - z[g_idx[i], n]), evaluated in float (the fp16
/// scale times an integer of at most 8 bits is exact in float; the consumer's fp16 arithmetic
/// rounds that exact value to fp16). v1 files get z = stored + 1; a v1 stored field of
/// 2^b - 1 is refused (GPTQModel's v1 -> v2 word addition would carry it into the next field).
/// With cfg.sym every z must be 2^(b-1) (else refused: Marlin would ignore qzeros).
/// Throws ptq::invalid_argument naming the tensor for missing tensors, wrong dtype or shape,
/// g_idx out of range.
inline RowMatrixXf dequantize_gptq(std::span<const LayerTensor> tensors, std::string_view prefix,
                                   const GptqConfig& cfg) {
    const detail::GptqDecoded d = detail::gptq_decode(tensors, prefix, cfg, "io::dequantize_gptq");
    RowMatrixXf w(d.out, d.in);
    for (std::int64_t i = 0; i < d.in; ++i) {
        const std::int64_t g = d.g_idx[std::size_t(i)];
        for (std::int64_t n = 0; n < d.out; ++n) {
            const std::size_t gn = std::size_t(g * d.out + n);
            w(n, i) = d.scales[gn] * float(std::int32_t(d.codes[std::size_t(i * d.out + n)]) - d.zeros[gn]);
        }
    }
    return w;
}

/// Reads GPTQ layer `prefix` back into a QuantizedMatrix<F> (F = IntFormat<cfg.bits, S, R>)
/// with PerGroup{group_size} (per channel for group_size -1) parameters. With desc_act the
/// storage columns are the input columns sorted by g_idx (stable), storage_perm[k] = the
/// input column stored at k; every group but the last must then have exactly group_size
/// columns. Throws ptq::invalid_argument for a bit width other than F's, a symmetric F with a
/// zero point other than 2^(b-1) or a code below F::code_min, groups that do not match
/// group_size, and every error of dequantize_gptq.
template <class F>
ImportedMatrix<F> import_gptq(std::span<const LayerTensor> tensors, std::string_view prefix, const GptqConfig& cfg) {
    static_assert(is_int_format_v<F>, "ptq::io::import_gptq: GPTQ checkpoints hold integer formats (IntFormat) only");
    const char* fn = "io::import_gptq";
    if (cfg.bits != F::bits)
        ptq::detail::throw_invalid(fn, "cfg.bits",
                                   std::to_string(cfg.bits) + " differs from the format's " + std::to_string(F::bits));
    const detail::GptqDecoded d = detail::gptq_decode(tensors, prefix, cfg, fn);
    const std::size_t in = std::size_t(d.in), out = std::size_t(d.out);
    const std::size_t gs = cfg.group_size == -1 ? in : std::min(in, std::size_t(cfg.group_size));
    ImportedMatrix<F> r;
    r.storage_perm = storage_order_from_groups(d.g_idx, gs, std::size_t(d.groups), tensor_name(prefix, "g_idx"), fn);
    r.quantized = QuantizedMatrix<F>(GroupLayout{out, in, 1, gs});
    const std::size_t G = r.quantized.layout().col_groups();
    for (std::size_t n = 0; n < out; ++n) {
        for (std::size_t k = 0; k < in; ++k) {
            const std::uint8_t c = d.codes[r.storage_perm[k] * out + n];
            if (c < F::code_min)
                ptq::detail::throw_invalid(fn, tensor_name(prefix, "qweight"),
                                           "code " + std::to_string(c) + " at row " + std::to_string(n) +
                                               " is below the format's smallest code (use IntRange::full)");
            ref::set_code(r.quantized.row_data(n), k, F::bits, c);
        }
        for (std::size_t g = 0; g < G; ++g) {
            const std::int32_t z = d.zeros[g * out + n];
            if (F::symmetric && z != F::symmetric_zero)
                ptq::detail::throw_invalid(fn, tensor_name(prefix, "qzeros"),
                                           "zero point " + std::to_string(z) + " at row " + std::to_string(n) +
                                               ", group " + std::to_string(g) + " is not the symmetric zero 2^(b-1)");
            r.quantized.row_params(n)[g] = {d.scales[g * out + n], F::symmetric ? F::symmetric_zero : z};
        }
    }
    return r;
}

}  // namespace ptq::io
