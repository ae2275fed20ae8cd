#pragma once
// AWQ GEMM checkpoints (AutoAWQ WQLinear_GEMM, vLLM "awq"): export of a 4-bit ptq integer
// QuantizedMatrix, and the consumer's own dequantization as an independent reader.
//
// Per linear layer `prefix` (weight W [out x in], G = in / group_size groups along in):
//   prefix.qweight  I32 [in, out/8]   packed along *out*: nibble j (bits 4j..4j+3) of word c
//                                     holds output channel 8c + [0, 2, 4, 6, 1, 3, 5, 7][j]
//   prefix.qzeros   I32 [G, out/8]    the zero points, same interleave
//   prefix.scales   F16 [G, out]
// Dequantization (AutoAWQ `dequantize_gemm`): unpack the nibbles, undo the interleave
// (AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]), then
//   W_T[i, n] = (q[i, n] - z[i / group_size, n]) * scales[i / group_size, n]
// (the true zero point, no -1; contiguous groups; no g_idx).
//
// Holds IntFormat<4, ...> only (AutoAWQ's GEMM is 4-bit: other widths fail to compile).
// Shapes (checked): out % 8 == 0; in % group_size == 0 (no shorter last group: AutoAWQ
// asserts it); no act-order permutation. Symmetric ptq formats are stored with every zero
// point 8 (AWQ always has zero points). Per-channel (one group per row) is group_size -1.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <ptq/error.hpp>
#include <ptq/io/format_traits.hpp>
#include <ptq/io/layer_export.hpp>
#include <ptq/io/scale_storage.hpp>
#include <ptq/io/layer_tensor.hpp>
#include <ptq/kernel/packing.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq::io {

/// The fields of an AWQ `quantization_config` that the layout uses.
struct AwqConfig {
    std::int64_t group_size = 128;  ///< columns per group along in; -1 = one group per row
};

/// {"quant_method": "awq", "bits": 4, "group_size", "zero_point": true, "version": "gemm"}.
inline nlohmann::json awq_config_to_json(const AwqConfig& c) {
    return nlohmann::json{
        {"quant_method", "awq"}, {"bits", 4}, {"group_size", c.group_size}, {"zero_point", true}, {"version", "gemm"}};
}

/// Reads an AWQ config: "bits" must be 4 (key "w_bit" is accepted too), "group_size" (or
/// "q_group_size") -1 or >= 1, "version" (if present) "gemm" (any case), "zero_point" (if
/// present) true, "quant_method" (if present) "awq". Other keys are ignored. Throws
/// ptq::invalid_argument naming the field.
inline AwqConfig awq_config_from_json(const nlohmann::json& j) {
    const char* fn = "io::awq_config_from_json";
    if (!j.is_object()) ptq::detail::throw_invalid(fn, "config", "is not a JSON object");
    auto get = [&](const char* a, const char* b) -> const nlohmann::json* {
        if (auto it = j.find(a); it != j.end()) return &*it;
        if (b)
            if (auto it = j.find(b); it != j.end()) return &*it;
        return nullptr;
    };
    const nlohmann::json* bits = get("bits", "w_bit");
    if (!bits || !bits->is_number_integer() || bits->get<std::int64_t>() != 4)
        ptq::detail::throw_invalid(fn, "bits", "must be the integer 4 (AWQ GEMM is 4-bit)");
    const nlohmann::json* gs = get("group_size", "q_group_size");
    if (!gs || !gs->is_number_integer()) ptq::detail::throw_invalid(fn, "group_size", "is missing or not an integer");
    AwqConfig c{gs->get<std::int64_t>()};
    if (c.group_size != -1 && c.group_size < 1)
        ptq::detail::throw_invalid(fn, "group_size", std::to_string(c.group_size) + " is neither -1 nor >= 1");
    if (const nlohmann::json* v = get("version", nullptr)) {
        std::string s = v->is_string() ? v->get<std::string>() : std::string();
        for (char& ch : s) ch = char(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
        if (s != "gemm")
            ptq::detail::throw_invalid(fn, "version", "is not \"gemm\" (only the GEMM layout is supported)");
    }
    if (const nlohmann::json* v = get("zero_point", nullptr); v && !(v->is_boolean() && v->get<bool>()))
        ptq::detail::throw_invalid(fn, "zero_point", "is not true");
    if (const nlohmann::json* v = get("quant_method", nullptr);
        v && !(v->is_string() && v->get<std::string>() == "awq"))
        ptq::detail::throw_invalid(fn, "quant_method", "is not \"awq\"");
    return c;
}

/// Nibble j of an AWQ word holds output channel 8c + awq_order[j] (AutoAWQ AWQ_ORDER).
inline constexpr int awq_order[8] = {0, 2, 4, 6, 1, 3, 5, 7};

/// Exports q (IntFormat<4, ...>, [out x in], groups along in in original column order) as
/// AWQ GEMM tensors prefix.qweight, .qzeros, .scales and the quantization_config.
/// Throws ptq::invalid_argument for shapes AWQ cannot hold (see the file comment) and for a
/// scale that is not exactly an fp16 value (unless ScaleRounding::round_nearest), naming the
/// tensor, row and group.
template <class F>
LayerExport export_awq(const QuantizedMatrix<F>& q, std::string_view prefix,
                       ScaleRounding scale_rounding = ScaleRounding::exact) {
    static_assert(is_int_format_v<F>,
                  "ptq::io::export_awq: AWQ checkpoints hold 4-bit integer formats only (IntFormat<4, ...>); "
                  "MXINT, minifloat and MX formats have no AWQ layout");
    static_assert(F::bits == 4, "ptq::io::export_awq: AWQ GEMM checkpoints are 4-bit only (no 2, 3 or 8-bit layout)");
    const char* fn = "io::export_awq";
    const std::size_t out = q.rows(), in = q.cols();
    if (out == 0 || in == 0) ptq::detail::throw_invalid(fn, "q", "is empty");
    if (out % 8 != 0)
        ptq::detail::throw_invalid(fn, "q", "out_features = " + std::to_string(out) + " is not a multiple of 8");
    const GroupLayout& L = q.layout();
    const std::size_t gcols = (L.group_rows > 1) ? in : L.group_cols;
    if (in % gcols != 0)
        ptq::detail::throw_invalid(fn, "q",
                                   "in_features = " + std::to_string(in) + " is not a multiple of the group size " +
                                       std::to_string(gcols) + " (AWQ has no shorter last group)");
    const std::size_t G = in / gcols, words = out / 8;
    const std::int64_t group_size = gcols == in ? -1 : std::int64_t(gcols);

    LayerExport e;
    e.quantization_config = awq_config_to_json({group_size});
    LayerTensor qweight =
        make_tensor(tensor_name(prefix, "qweight"), DType::I32, {std::int64_t(in), std::int64_t(words)});
    LayerTensor qzeros = make_tensor(tensor_name(prefix, "qzeros"), DType::I32, {std::int64_t(G), std::int64_t(words)});
    LayerTensor scales = make_tensor(tensor_name(prefix, "scales"), DType::F16, {std::int64_t(G), std::int64_t(out)});
    for (std::size_t i = 0; i < in; ++i)
        for (std::size_t c = 0; c < words; ++c) {
            std::uint32_t w = 0;
            for (int j = 0; j < 8; ++j)
                w |= ref::get_code(q.row_data(8 * c + std::size_t(awq_order[j])), i, 4) << (4 * j);
            qweight.store_bits(i * words + c, w);
        }
    for (std::size_t g = 0; g < G; ++g) {
        for (std::size_t c = 0; c < words; ++c) {
            std::uint32_t w = 0;
            for (int j = 0; j < 8; ++j)
                w |= std::uint32_t(q.row_params(8 * c + std::size_t(awq_order[j]))[g].zero) << (4 * j);
            qzeros.store_bits(g * words + c, w);
        }
        for (std::size_t n = 0; n < out; ++n)
            scales.store_bits(g * out + n,
                              encode_scale(q.row_params(n)[g].scale, DType::F16, scale_rounding, scales.name, n, g));
    }
    e.tensors.push_back(std::move(qweight));
    e.tensors.push_back(std::move(qzeros));
    e.tensors.push_back(std::move(scales));
    return e;
}

namespace detail {
/// The tensors of one AWQ GEMM layer decoded as AutoAWQ's dequantize_gemm does (unpack_awq,
/// reverse_awq_order, & 0xF): the common first step of dequantize_awq and import_awq.
struct AwqDecoded {
    std::int64_t in = 0, out = 0, groups = 0, group_size = 0;
    std::vector<std::uint8_t> codes;  ///< iweight[i, n] at i * out + n
    std::vector<std::uint8_t> zeros;  ///< izeros[g, n] at g * out + n
    std::vector<float> scales;        ///< scales[g, n] at g * out + n
};

inline AwqDecoded awq_decode(std::span<const LayerTensor> tensors, std::string_view prefix, const AwqConfig& cfg,
                             const char* fn) {
    static constexpr int reverse_order[8] = {0, 4, 1, 5, 2, 6, 3, 7};  // AWQ_REVERSE_ORDER
    const LayerTensor& qw = require_tensor(tensors, tensor_name(prefix, "qweight"), DType::I32, 2, fn);
    const LayerTensor& qz = require_tensor(tensors, tensor_name(prefix, "qzeros"), DType::I32, 2, fn);
    const LayerTensor& sc = require_tensor(tensors, tensor_name(prefix, "scales"), DType::F16, 2, fn);
    AwqDecoded d;
    d.in = qw.shape[0];
    const std::int64_t words = qw.shape[1];
    d.out = 8 * words;
    d.groups = sc.shape[0];
    d.group_size = cfg.group_size == -1 ? d.in : cfg.group_size;
    const std::int64_t in = d.in, out = d.out, G = d.groups, gs = d.group_size;
    if (in < 1 || words < 1 || gs < 1 || G * gs != in)
        ptq::detail::throw_invalid(fn, sc.name,
                                   std::to_string(G) + " groups of " + std::to_string(gs) +
                                       " do not cover in_features = " + std::to_string(in));
    require_shape(sc, {G, out}, fn);
    require_shape(qz, {G, words}, fn);
    // unpack_awq: iweights[i, 8c + j] = qweight[i, c] >> 4j; reverse_awq_order: column n of
    // the result is unpacked column 8 (n / 8) + REV[n % 8]; then & 0xF.
    auto field = [](const LayerTensor& t, std::int64_t row, std::int64_t n, std::int64_t words_per_row) {
        const std::int64_t src = 8 * (n / 8) + reverse_order[n % 8];
        const std::uint32_t w = std::uint32_t(t.load_bits(std::size_t(row * words_per_row + src / 8)));
        return static_cast<std::uint8_t>((w >> (4 * (src % 8))) & 0xFu);
    };
    d.codes.resize(std::size_t(in * out));
    for (std::int64_t i = 0; i < in; ++i)
        for (std::int64_t n = 0; n < out; ++n) d.codes[std::size_t(i * out + n)] = field(qw, i, n, words);
    d.zeros.resize(std::size_t(G * out));
    d.scales.resize(std::size_t(G * out));
    for (std::int64_t g = 0; g < G; ++g)
        for (std::int64_t n = 0; n < out; ++n) {
            d.zeros[std::size_t(g * out + n)] = field(qz, g, n, words);
            d.scales[std::size_t(g * out + n)] = load_float(sc, std::size_t(g * out + n));
        }
    return d;
}
}  // namespace detail

/// AutoAWQ's dequantization of layer `prefix` (`dequantize_gemm`: unpack_awq,
/// reverse_awq_order, (iweight - izeros) * scales with repeat_interleave(group_size)),
/// written from the consumer's code, not from export_awq: returns W [out x in], evaluated in
/// float (fp16 scale times an integer in [-15, 15] is exact in float). group_size -1 means
/// in_features. Throws ptq::invalid_argument naming the tensor for missing tensors, wrong
/// dtypes or shapes, and G * group_size != in_features.
inline RowMatrixXf dequantize_awq(std::span<const LayerTensor> tensors, std::string_view prefix, const AwqConfig& cfg) {
    const detail::AwqDecoded d = detail::awq_decode(tensors, prefix, cfg, "io::dequantize_awq");
    RowMatrixXf w(d.out, d.in);
    for (std::int64_t i = 0; i < d.in; ++i)
        for (std::int64_t n = 0; n < d.out; ++n) {
            const std::size_t gn = std::size_t((i / d.group_size) * d.out + n);
            w(n, i) =
                float(std::int32_t(d.codes[std::size_t(i * d.out + n)]) - std::int32_t(d.zeros[gn])) * d.scales[gn];
        }
    return w;
}

/// Reads AWQ layer `prefix` back into a QuantizedMatrix<F> (F = IntFormat<4, S, R>) with
/// PerGroup{group_size} parameters (per channel for -1). Throws ptq::invalid_argument for a
/// symmetric F with a zero point other than 8 or a code below F::code_min, and every error of
/// dequantize_awq.
template <class F>
QuantizedMatrix<F> import_awq(std::span<const LayerTensor> tensors, std::string_view prefix, const AwqConfig& cfg) {
    static_assert(is_int_format_v<F> && F::bits == 4,
                  "ptq::io::import_awq: AWQ GEMM checkpoints hold IntFormat<4, ...>");
    const char* fn = "io::import_awq";
    const detail::AwqDecoded d = detail::awq_decode(tensors, prefix, cfg, fn);
    const std::size_t in = std::size_t(d.in), out = std::size_t(d.out), G = std::size_t(d.groups);
    QuantizedMatrix<F> q(GroupLayout{out, in, 1, std::size_t(d.group_size)});
    for (std::size_t n = 0; n < out; ++n) {
        for (std::size_t i = 0; i < in; ++i) {
            const std::uint8_t c = d.codes[i * out + n];
            if (c < F::code_min)
                ptq::detail::throw_invalid(fn, tensor_name(prefix, "qweight"),
                                           "code 0 at row " + std::to_string(n) +
                                               " is below the format's smallest code (use IntRange::full)");
            ref::set_code(q.row_data(n), i, 4, c);
        }
        for (std::size_t g = 0; g < G; ++g) {
            const std::int32_t z = d.zeros[g * out + n];
            if (F::symmetric && z != F::symmetric_zero)
                ptq::detail::throw_invalid(fn, tensor_name(prefix, "qzeros"),
                                           "zero point " + std::to_string(z) + " at row " + std::to_string(n) +
                                               ", group " + std::to_string(g) + " is not the symmetric zero 8");
            q.row_params(n)[g] = {d.scales[g * out + n], z};
        }
    }
    return q;
}

}  // namespace ptq::io
