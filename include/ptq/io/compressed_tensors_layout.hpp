#pragma once
// compressed-tensors checkpoints (vllm-project/compressed-tensors, written by llm-compressor,
// read by vLLM): export of a ptq QuantizedMatrix, and the consumer's own decompression as an
// independent reader.
//
// Per linear layer `prefix` (weight W [out x in]; G groups along in; the scale dtype is the
// model's: F16, BF16 or F32, chosen by the caller):
//   pack-quantized (IntFormat<1..8, ...>, compressors/pack_quantized):
//     prefix.weight_packed      I32 [out, ceil(in*b/32)]  row n = the codes along in as a dense
//                                                          little-endian bit stream (pack_to_int32)
//     prefix.weight_shape       I64 [2] = {out, in}
//     prefix.weight_scale       tensor [1], channel [out, 1], group [out, G]
//     prefix.weight_zero_point  asymmetric only: channel / group I32 [ceil(out*b/32), G], packed
//                               along out (pack_to_int32(packed_dim=0)); tensor I8 [1], unpacked
//     prefix.weight_g_idx       I32 [in], with actorder "group" only
//     Codes: compressed-tensors' signed q in [-2^(b-1), 2^(b-1)-1] is stored as q + 2^(b-1), and
//     its signed zero point zp likewise; dequantization is (q - zp) * scale. ptq's unsigned code c
//     and integer zero z map to q = c - 2^(b-1), zp = z - 2^(b-1): the stored fields are c and
//     z themselves, and (q - zp) = (c - z). Symmetric formats store no zero point (zp = 0, and
//     ptq's symmetric zero is exactly 2^(b-1)).
//   float-quantized (Fp8<4, 3>, compressors/naive_quantized):
//     prefix.weight             F8_E4M3 [out, in]   (ptq's E4M3FN code bytes)
//     prefix.weight_scale       as above;  prefix.weight_g_idx as above
//     Dequantization: weight.to(scale dtype) * scale.
//   mxfp4-pack-quantized (MxFp<2, 1, 32>, compressors/mxfp4 + nvfp4 helpers):
//     prefix.weight_packed      U8 [out, in/2]: byte k holds element 2k in its low nibble and
//                               2k+1 in its high nibble; nibble = E2M1 with bit 3 the sign
//     prefix.weight_scale       U8 [out, in/32]: E8M0, 2^(byte - 127)
// Shapes (checked): group strategy needs in % group_size == 0 (compressed-tensors rejects a
// shorter last group); mxfp4 needs in % 32 == 0 and no act-order permutation (no g_idx).
// A PerTensor matrix is strategy "tensor", PerChannel (or one group spanning in) "channel".
// MXINT has no compressed-tensors format (nor any other consumer's): it fails to compile.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <ptq/error.hpp>
#include <ptq/format/e8m0.hpp>
#include <ptq/io/act_order.hpp>
#include <ptq/io/compressed_tensors_config.hpp>
#include <ptq/io/format_traits.hpp>
#include <ptq/io/int32_bitstream.hpp>
#include <ptq/io/layer_export.hpp>
#include <ptq/io/scale_storage.hpp>
#include <ptq/io/layer_tensor.hpp>
#include <ptq/kernel/packing.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq::io {

/// Options of export_compressed_tensors.
struct CtExportOptions {
    /// dtype of weight_scale (the model dtype): F16, BF16 or F32. Ignored by mxfp4 (U8 E8M0).
    DType scale_dtype = DType::BF16;
    ScaleRounding scale_rounding = ScaleRounding::exact;
    /// config "ignore" list.
    std::vector<std::string> ignore{"lm_head"};
};

namespace detail {
struct CtGrouping {
    CtStrategy strategy;
    std::size_t group_cols;  ///< columns per group (in for tensor / channel)
    std::size_t groups;      ///< G
};

/// The compressed-tensors strategy of q's layout; refuses a shorter last group.
template <class F>
CtGrouping ct_grouping(const QuantizedMatrix<F>& q, const char* fn) {
    const GroupLayout& L = q.layout();
    const std::size_t in = q.cols();
    if (L.group_rows > 1) return {CtStrategy::tensor, in, 1};
    if (L.group_cols >= in) return {CtStrategy::channel, in, 1};
    if (in % L.group_cols != 0)
        ptq::detail::throw_invalid(fn, "q",
                                   "in_features = " + std::to_string(in) + " is not a multiple of the group size " +
                                       std::to_string(L.group_cols) +
                                       " (compressed-tensors rejects a shorter last group)");
    return {CtStrategy::group, L.group_cols, in / L.group_cols};
}

/// weight_scale: [1] (tensor), [out, 1] (channel), [out, G] (group), from q's float scales.
template <class F>
LayerTensor ct_scale_tensor(const QuantizedMatrix<F>& q, const CtGrouping& gr, std::string_view prefix,
                            const CtExportOptions& o) {
    const std::size_t out = q.rows();
    const std::string name = tensor_name(prefix, "weight_scale");
    const std::vector<std::int64_t> shape = gr.strategy == CtStrategy::tensor
                                                ? std::vector<std::int64_t>{1}
                                                : std::vector<std::int64_t>{std::int64_t(out), std::int64_t(gr.groups)};
    LayerTensor t = make_tensor(name, o.scale_dtype, shape);
    if (o.scale_dtype != DType::F16 && o.scale_dtype != DType::BF16 && o.scale_dtype != DType::F32)
        ptq::detail::throw_invalid("io::export_compressed_tensors", "scale_dtype",
                                   std::string(dtype_name(o.scale_dtype)) + " is not F16, BF16 or F32");
    if (gr.strategy == CtStrategy::tensor) {
        t.store_bits(0, encode_scale(q.params()[0].scale, o.scale_dtype, o.scale_rounding, name, 0, 0));
        return t;
    }
    for (std::size_t n = 0; n < out; ++n)
        for (std::size_t g = 0; g < gr.groups; ++g)
            t.store_bits(n * gr.groups + g,
                         encode_scale(q.row_params(n)[g].scale, o.scale_dtype, o.scale_rounding, name, n, g));
    return t;
}
}  // namespace detail

/// Exports q as a compressed-tensors layer: IntFormat -> pack-quantized, Fp8<4, 3> ->
/// float-quantized, MxFp<2, 1, 32> -> mxfp4-pack-quantized (see the file comment for the
/// tensors). storage_perm: storage column k of q holds original input column storage_perm[k]
/// (GptqResult::storage_perm; empty = identity); codes are written in the original column
/// order, and a permuted grouped matrix gets weight_g_idx and actorder "group".
/// Throws ptq::invalid_argument for shapes the format cannot hold, a scale not exactly
/// representable in o.scale_dtype (unless ScaleRounding::round_nearest), an MX NaN scale
/// byte; messages name the tensor, and the row and group where they apply.
template <class F>
LayerExport export_compressed_tensors(const QuantizedMatrix<F>& q, std::string_view prefix,
                                      std::span<const std::size_t> storage_perm = {}, const CtExportOptions& o = {}) {
    static_assert(is_int_format_v<F> || is_fp8_e4m3_v<F> || is_mxfp4_v<F>,
                  "ptq::io::export_compressed_tensors: compressed-tensors holds IntFormat (pack-quantized), "
                  "Fp8<4, 3> (float-quantized) and MxFp<2, 1, 32> (mxfp4-pack-quantized); no consumer has an "
                  "MXINT format");
    const char* fn = "io::export_compressed_tensors";
    const std::size_t out = q.rows(), in = q.cols();
    if (out == 0 || in == 0) ptq::detail::throw_invalid(fn, "q", "is empty");
    const detail::CtGrouping gr = detail::ct_grouping(q, fn);
    const ColumnMap m = column_map(q, storage_perm, fn);
    const bool with_g_idx = m.permuted && gr.strategy == CtStrategy::group;

    CtConfig cfg;
    cfg.ignore = o.ignore;
    cfg.weights.num_bits = F::bits;
    cfg.weights.strategy = gr.strategy;
    cfg.weights.group_size = gr.strategy == CtStrategy::group ? std::int64_t(gr.group_cols) : -1;
    cfg.weights.actorder_group = with_g_idx;
    LayerExport e;

    if constexpr (is_mxfp4_v<F>) {
        if (in % 32 != 0)
            ptq::detail::throw_invalid(fn, "q",
                                       "in_features = " + std::to_string(in) + " is not a multiple of 32 (MXFP4)");
        if (m.permuted)
            ptq::detail::throw_invalid(fn, "storage_perm",
                                       "mxfp4-pack-quantized has no g_idx: export unpermuted blocks");
        cfg.format = CtFormat::mxfp4_pack_quantized;
        cfg.weights.is_float = true;
        cfg.weights.strategy = CtStrategy::group;  // the MXFP4 scheme: groups of 32 (even when in == 32)
        cfg.weights.group_size = 32;
        LayerTensor packed =
            make_tensor(tensor_name(prefix, "weight_packed"), DType::U8, {std::int64_t(out), std::int64_t(in / 2)});
        LayerTensor scale =
            make_tensor(tensor_name(prefix, "weight_scale"), DType::U8, {std::int64_t(out), std::int64_t(in / 32)});
        for (std::size_t n = 0; n < out; ++n) {
            const std::uint8_t* row = q.row_data(n);
            for (std::size_t k = 0; k < in / 2; ++k)
                packed.data[n * (in / 2) + k] =
                    static_cast<std::uint8_t>(ref::get_code(row, 2 * k, 4) | (ref::get_code(row, 2 * k + 1, 4) << 4));
            for (std::size_t g = 0; g < in / 32; ++g) {
                const std::uint8_t b = q.row_params(n)[g].scale_byte;
                if (E8M0::is_nan(b))
                    ptq::detail::throw_invalid(
                        fn, scale.name, "E8M0 NaN scale at row " + std::to_string(n) + ", group " + std::to_string(g));
                scale.data[n * (in / 32) + g] = b;
            }
        }
        e.tensors.push_back(std::move(packed));
        e.tensors.push_back(std::move(scale));
    } else if constexpr (is_fp8_e4m3_v<F>) {
        cfg.format = CtFormat::float_quantized;
        cfg.weights.is_float = true;
        LayerTensor w =
            make_tensor(tensor_name(prefix, "weight"), DType::F8_E4M3, {std::int64_t(out), std::int64_t(in)});
        for (std::size_t n = 0; n < out; ++n)
            for (std::size_t c = 0; c < in; ++c) w.data[n * in + c] = q.row_data(n)[m.storage_of[c]];
        e.tensors.push_back(std::move(w));
        e.tensors.push_back(detail::ct_scale_tensor(q, gr, prefix, o));
    } else {
        constexpr int b = F::bits;
        cfg.format = CtFormat::pack_quantized;
        cfg.weights.symmetric = F::symmetric;
        const std::size_t words = int32_words(in, b);
        LayerTensor packed =
            make_tensor(tensor_name(prefix, "weight_packed"), DType::I32, {std::int64_t(out), std::int64_t(words)});
        for (std::size_t n = 0; n < out; ++n) {
            const std::uint8_t* row = q.row_data(n);
            pack_int32_stream(
                in, b, [&](std::size_t c) { return ref::get_code(row, m.storage_of[c], b); },
                [&](std::size_t w, std::uint32_t word) { packed.store_bits(n * words + w, word); });
        }
        LayerTensor shape = make_tensor(tensor_name(prefix, "weight_shape"), DType::I64, {2});
        shape.store_bits(0, std::uint64_t(out));
        shape.store_bits(1, std::uint64_t(in));
        e.tensors.push_back(std::move(packed));
        e.tensors.push_back(std::move(shape));
        e.tensors.push_back(detail::ct_scale_tensor(q, gr, prefix, o));
        if constexpr (!F::symmetric) {
            constexpr std::int32_t offset = 1 << (b - 1);
            if (gr.strategy == CtStrategy::tensor) {
                LayerTensor zp = make_tensor(tensor_name(prefix, "weight_zero_point"), DType::I8, {1});
                zp.store_bits(0, std::uint64_t(std::uint8_t(std::int8_t(q.params()[0].zero - offset))));
                e.tensors.push_back(std::move(zp));
            } else {
                const std::size_t zw = int32_words(out, b);
                LayerTensor zp = make_tensor(tensor_name(prefix, "weight_zero_point"), DType::I32,
                                             {std::int64_t(zw), std::int64_t(gr.groups)});
                for (std::size_t g = 0; g < gr.groups; ++g)
                    pack_int32_stream(
                        out, b, [&](std::size_t n) { return std::uint32_t(q.row_params(n)[g].zero); },
                        [&](std::size_t w, std::uint32_t word) { zp.store_bits(w * gr.groups + g, word); });
                e.tensors.push_back(std::move(zp));
            }
        }
    }
    if (with_g_idx) {
        LayerTensor g_idx = make_tensor(tensor_name(prefix, "weight_g_idx"), DType::I32, {std::int64_t(in)});
        for (std::size_t c = 0; c < in; ++c) g_idx.store_bits(c, std::uint32_t(m.g_idx[c]));
        e.tensors.push_back(std::move(g_idx));
    }
    e.quantization_config = ct_config_to_json(cfg);
    return e;
}

namespace detail {
/// compressed-tensors `unpack_from_int32` of one element: element i of a packed vector of
/// `words` int32 (padded with zero words to a multiple of b) sits in 32-element group i / 32,
/// element e = i % 32 at bit_start = e*b: word = group*b + bit_start/32, offset = bit_start % 32,
/// lo_bits = min(32 - offset, b); value = (word >> offset) & (2^lo_bits - 1), and when
/// lo_bits < b, | (next word & (2^(b - lo_bits) - 1)) << lo_bits. Returns value - 2^(b-1).
template <class Word>
std::int32_t ct_unpack_int32(Word&& word, std::size_t words, std::size_t i, int b) {
    auto w = [&](std::size_t k) -> std::uint32_t { return k < words ? word(k) : 0u; };
    const std::size_t grp = i / 32, e = i % 32, bit_start = e * std::size_t(b);
    const std::size_t wi = grp * std::size_t(b) + bit_start / 32, off = bit_start % 32;
    const std::size_t lo = std::min<std::size_t>(32 - off, std::size_t(b));
    std::uint32_t v = (w(wi) >> off) & ((1u << lo) - 1u);
    if (lo < std::size_t(b)) v |= (w(wi + 1) & ((1u << (std::size_t(b) - lo)) - 1u)) << lo;
    return std::int32_t(v) - (1 << (b - 1));
}

/// FP8 E4M3FN value of a byte (OCP FP8: bias 7, S.1111.111 = NaN, no infinities).
inline float ct_e4m3_value(std::uint8_t x) {
    const int s = x >> 7, e = (x >> 3) & 15, m = x & 7;
    float v;
    if (e == 15 && m == 7) v = std::nanf("");
    else if (e == 0) v = std::ldexp(float(m), -9);  // subnormal: m/8 * 2^-6
    else v = std::ldexp(float(8 + m), e - 10);      // (1 + m/8) * 2^(e-7)
    return s ? -v : v;
}
}  // namespace detail

namespace detail {
/// The tensors of one compressed-tensors layer decoded as the consumer does (unpacked fields,
/// strategy inferred from weight_scale's shape, zero points unpacked, columns assigned to
/// groups through the stable argsort of weight_g_idx): the common first step of
/// dequantize_compressed_tensors and import_compressed_tensors.
struct CtDecoded {
    std::int64_t out = 0, in = 0, groups = 1, group_size = 0;
    CtStrategy strategy = CtStrategy::tensor;
    bool permuted = false;                 ///< a weight_g_idx reorders the columns
    std::vector<std::int32_t> g_idx;       ///< [in] group of each column as the file says (if permuted)
    std::vector<std::int64_t> block;       ///< [in] group block each column is dequantized with
    std::vector<std::int32_t> field;       ///< [out * in]: pack: signed q; fp8: code byte; mxfp4: nibble
    std::vector<std::int32_t> zp;          ///< [out * groups] signed zero points (0 if symmetric)
    std::vector<float> scale;              ///< [out * groups] float scales (pack, fp8)
    std::vector<std::uint8_t> scale_byte;  ///< [out * groups] E8M0 bytes (mxfp4)
};

inline CtDecoded ct_decode(std::span<const LayerTensor> tensors, std::string_view prefix, const CtConfig& cfg,
                           const char* fn) {
    const int b = cfg.weights.num_bits;
    const int want_bits = cfg.format == CtFormat::float_quantized        ? 8
                          : cfg.format == CtFormat::mxfp4_pack_quantized ? 4
                                                                         : b;
    if (b < 1 || b > 8 || b != want_bits)
        ptq::detail::throw_invalid(fn, "cfg.weights.num_bits",
                                   std::to_string(b) + " does not fit format " + ct_format_name(cfg.format));
    std::int64_t out = 0, in = 0;
    const LayerTensor* packed = nullptr;
    if (cfg.format == CtFormat::pack_quantized) {
        packed = &require_tensor(tensors, tensor_name(prefix, "weight_packed"), DType::I32, 2, fn);
        const LayerTensor& shp = require_tensor(tensors, tensor_name(prefix, "weight_shape"), DType::I64, 1, fn);
        require_shape(shp, {2}, fn);
        out = std::int64_t(shp.load_bits(0));
        in = std::int64_t(shp.load_bits(1));
        if (out < 1 || in < 1) ptq::detail::throw_invalid(fn, shp.name, "holds a non-positive dimension");
        require_shape(*packed, {out, std::int64_t(int32_words(std::size_t(in), b))}, fn);
    } else if (cfg.format == CtFormat::mxfp4_pack_quantized) {
        packed = &require_tensor(tensors, tensor_name(prefix, "weight_packed"), DType::U8, 2, fn);
        out = packed->shape[0];
        in = 2 * packed->shape[1];
    } else {
        packed = &require_tensor(tensors, tensor_name(prefix, "weight"), DType::F8_E4M3, 2, fn);
        out = packed->shape[0];
        in = packed->shape[1];
    }
    if (out < 1 || in < 1) ptq::detail::throw_invalid(fn, packed->name, "is empty");
    const std::string scale_name = tensor_name(prefix, "weight_scale");
    const LayerTensor* sc = nullptr;
    for (const LayerTensor& t : tensors)
        if (t.name == scale_name) sc = &t;
    if (!sc) ptq::detail::throw_invalid(fn, scale_name, "tensor is missing");
    const DType want_scale = cfg.format == CtFormat::mxfp4_pack_quantized ? DType::U8 : sc->dtype;
    sc = &require_tensor(tensors, scale_name, want_scale, sc->shape.size(), fn);
    if (cfg.format != CtFormat::mxfp4_pack_quantized && want_scale != DType::F16 && want_scale != DType::BF16 &&
        want_scale != DType::F32)
        ptq::detail::throw_invalid(fn, scale_name, "dtype is not F16, BF16 or F32");

    // Strategy inferred from the scale shape (forward.dequantize with args = None).
    CtStrategy strategy;
    std::int64_t G = 1, gs = in;
    if (sc->shape.size() == 1 && sc->shape[0] == 1) strategy = CtStrategy::tensor;
    else if (sc->shape.size() == 2 && sc->shape[0] == out && sc->shape[1] == 1) strategy = CtStrategy::channel;
    else if (sc->shape.size() == 2 && sc->shape[0] == out && sc->shape[1] >= 1) {
        strategy = CtStrategy::group;
        G = sc->shape[1];
        gs = in / G;  // int(x_q.shape[1] / scale.shape[1])
        if (gs < 1 || (in >= gs && in % gs != 0))
            ptq::detail::throw_invalid(fn, scale_name,
                                       "group size " + std::to_string(gs) + " does not divide in_features");
        if (G * gs != in)
            ptq::detail::throw_invalid(fn, scale_name, std::to_string(G) + " groups do not cover in_features");
    } else {
        ptq::detail::throw_invalid(fn, scale_name, "shape matches neither [1], [out, 1] nor [out, G]");
    }
    if (strategy != cfg.weights.strategy &&
        !(strategy == CtStrategy::channel && cfg.weights.strategy == CtStrategy::group && cfg.weights.group_size == in))
        ptq::detail::throw_invalid(fn, scale_name, "shape disagrees with the config's strategy");
    if (strategy == CtStrategy::group && cfg.weights.group_size != gs)
        ptq::detail::throw_invalid(fn, scale_name, "group size " + std::to_string(gs) + " disagrees with the config's");

    // Zero points (signed, compressed-tensors' convention).
    std::vector<std::int32_t> zp(std::size_t(out * G), 0);
    if (cfg.format == CtFormat::pack_quantized && !cfg.weights.symmetric) {
        const std::string zn = tensor_name(prefix, "weight_zero_point");
        if (strategy == CtStrategy::tensor) {
            const LayerTensor& z = require_tensor(tensors, zn, DType::I8, 1, fn);
            require_shape(z, {1}, fn);
            std::fill(zp.begin(), zp.end(), std::int32_t(std::int8_t(std::uint8_t(z.load_bits(0)))));
        } else {
            const LayerTensor& z = require_tensor(tensors, zn, DType::I32, 2, fn);
            const std::size_t zw = int32_words(std::size_t(out), b);
            require_shape(z, {std::int64_t(zw), G}, fn);
            // unpack_from_int32(packed_dim=0): transpose, unpack each row (one group), transpose.
            for (std::int64_t g = 0; g < G; ++g)
                for (std::int64_t n = 0; n < out; ++n)
                    zp[std::size_t(n * G + g)] = detail::ct_unpack_int32(
                        [&](std::size_t k) { return std::uint32_t(z.load_bits(k * std::size_t(G) + std::size_t(g))); },
                        zw, std::size_t(n), b);
        }
    }

    // Column -> group block: contiguous, or by the stable argsort of weight_g_idx.
    std::vector<std::int64_t> block(static_cast<std::size_t>(in));
    for (std::int64_t c = 0; c < in; ++c) block[std::size_t(c)] = strategy == CtStrategy::group ? c / gs : 0;
    const std::string gn = tensor_name(prefix, "weight_g_idx");
    bool permuted = false;
    std::vector<std::int32_t> file_g_idx;
    if (has_tensor(tensors, gn)) {
        const LayerTensor& gi = require_tensor(tensors, gn, DType::I32, 1, fn);
        require_shape(gi, {in}, fn);
        bool column_order = false;
        for (std::int64_t c = 0; c < in; ++c) column_order = column_order || gi.load_i32(std::size_t(c)) == -1;
        if (!column_order && strategy == CtStrategy::group) {
            permuted = true;
            file_g_idx.resize(std::size_t(in));
            for (std::int64_t c = 0; c < in; ++c) file_g_idx[std::size_t(c)] = gi.load_i32(std::size_t(c));
            std::vector<std::int64_t> perm(static_cast<std::size_t>(in));
            std::iota(perm.begin(), perm.end(), std::int64_t{0});
            std::stable_sort(perm.begin(), perm.end(), [&](std::int64_t a, std::int64_t c) {
                return gi.load_i32(std::size_t(a)) < gi.load_i32(std::size_t(c));
            });
            for (std::int64_t k = 0; k < in; ++k) {
                const std::int64_t c = perm[std::size_t(k)];
                // The consumer's element-to-group assignment is by sorted position; it only
                // agrees with g_idx (and is independent of torch's unstable argsort) when every
                // group has exactly group_size columns.
                if (gi.load_i32(std::size_t(c)) != k / gs)
                    ptq::detail::throw_invalid(fn, gn,
                                               "group " + std::to_string(gi.load_i32(std::size_t(c))) +
                                                   " does not have exactly " + std::to_string(gs) + " columns");
                block[std::size_t(c)] = k / gs;
            }
        }
    }

    CtDecoded d;
    d.out = out;
    d.in = in;
    d.groups = G;
    d.group_size = gs;
    d.strategy = strategy;
    d.block = std::move(block);
    d.zp = std::move(zp);
    d.permuted = permuted;
    d.g_idx = std::move(file_g_idx);
    const std::size_t words = packed->shape[1] > 0 ? std::size_t(packed->shape[1]) : 0;
    d.field.resize(std::size_t(out * in));
    for (std::int64_t n = 0; n < out; ++n)
        for (std::int64_t c = 0; c < in; ++c) {
            std::int32_t v;
            if (cfg.format == CtFormat::pack_quantized) {
                v = ct_unpack_int32(
                    [&](std::size_t k) { return std::uint32_t(packed->load_bits(std::size_t(n) * words + k)); }, words,
                    std::size_t(c), b);
            } else if (cfg.format == CtFormat::float_quantized) {
                v = packed->data[std::size_t(n * in + c)];
            } else {
                const std::uint8_t byte = packed->data[std::size_t(n * (in / 2) + c / 2)];
                v = c % 2 == 0 ? byte & 0x0F : byte >> 4;  // unpack_fp4_from_uint8: low nibble first
            }
            d.field[std::size_t(n * in + c)] = v;
        }
    const std::size_t ns = std::size_t(out * G);
    for (std::size_t k = 0; k < ns; ++k) {
        const std::size_t si = strategy == CtStrategy::tensor ? 0 : k;
        if (cfg.format == CtFormat::mxfp4_pack_quantized) d.scale_byte.push_back(sc->data[si]);
        else d.scale.push_back(load_float(*sc, si));
    }
    return d;
}
}  // namespace detail

/// compressed-tensors' decompression of layer `prefix` (the compressor's decompress +
/// quantization.lifecycle.forward.dequantize), written from the consumer's code, not from
/// export_compressed_tensors: returns W [out x in], evaluated in float. As the consumer, the
/// strategy is inferred from weight_scale's shape ([1] tensor, [out, 1] channel, [out, G] group
/// with group_size = in / G, rejected unless it divides in); with weight_g_idx (and no -1 in it)
/// the columns are sorted by g_idx (stable) and grouped contiguously in that order. The
/// inferred strategy and group size must agree with cfg (vLLM reads them from the config).
/// Evaluation in float is exact for 16-bit scales (the consumer's own fp16/bf16 arithmetic
/// rounds that exact product to its dtype) and is the consumer's single rounding for F32.
/// Throws ptq::invalid_argument naming the tensor for missing tensors, wrong dtypes or shapes,
/// and groups of weight_g_idx that do not have group_size columns.
inline RowMatrixXf dequantize_compressed_tensors(std::span<const LayerTensor> tensors, std::string_view prefix,
                                                 const CtConfig& cfg) {
    const detail::CtDecoded d = detail::ct_decode(tensors, prefix, cfg, "io::dequantize_compressed_tensors");
    static constexpr float e2m1[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};  // kE2M1ToFloat
    RowMatrixXf w(d.out, d.in);
    for (std::int64_t n = 0; n < d.out; ++n)
        for (std::int64_t c = 0; c < d.in; ++c) {
            const std::size_t si = std::size_t(n * d.groups + d.block[std::size_t(c)]);
            const std::int32_t f = d.field[std::size_t(n * d.in + c)];
            if (cfg.format == CtFormat::pack_quantized) {
                w(n, c) = float(f - d.zp[si]) * d.scale[si];  // (x_q - zero_point) * scale
            } else if (cfg.format == CtFormat::float_quantized) {
                w(n, c) = detail::ct_e4m3_value(std::uint8_t(f)) * d.scale[si];  // weight.to(dtype) * scale
            } else {
                const float v = e2m1[f & 7] * ((f & 8) ? -1.0f : 1.0f);       // kE2M1[abs] * where(sign, -1, 1)
                w(n, c) = v * std::ldexp(1.0f, int(d.scale_byte[si]) - 127);  // 2 ** (byte - 127)
            }
        }
    return w;
}

/// Reads compressed-tensors layer `prefix` back into a QuantizedMatrix<F>: IntFormat from
/// pack-quantized, Fp8<4, 3> from float-quantized, MxFp<2, 1, 32> from mxfp4-pack-quantized;
/// strategy tensor -> PerTensor layout, channel -> per channel, group -> PerGroup{group_size}.
/// With weight_g_idx the storage columns are the input columns sorted by group (stable);
/// storage_perm[k] is the input column stored at k. Throws ptq::invalid_argument for a file
/// of another format or bit width, a symmetric F with an asymmetric file's zero point other
/// than 2^(b-1), codes outside F's range, and every error of dequantize_compressed_tensors.
template <class F>
ImportedMatrix<F> import_compressed_tensors(std::span<const LayerTensor> tensors, std::string_view prefix,
                                            const CtConfig& cfg) {
    static_assert(
        is_int_format_v<F> || is_fp8_e4m3_v<F> || is_mxfp4_v<F>,
        "ptq::io::import_compressed_tensors: compressed-tensors holds IntFormat, Fp8<4, 3> and MxFp<2, 1, 32>");
    const char* fn = "io::import_compressed_tensors";
    const CtFormat want = is_int_format_v<F> ? CtFormat::pack_quantized
                          : is_fp8_e4m3_v<F> ? CtFormat::float_quantized
                                             : CtFormat::mxfp4_pack_quantized;
    if (cfg.format != want)
        ptq::detail::throw_invalid(fn, "cfg.format",
                                   std::string(ct_format_name(cfg.format)) + " does not hold " + F::name());
    if (cfg.weights.num_bits != F::bits)
        ptq::detail::throw_invalid(fn, "cfg.weights.num_bits",
                                   std::to_string(cfg.weights.num_bits) + " differs from the format's " +
                                       std::to_string(F::bits));
    const detail::CtDecoded d = detail::ct_decode(tensors, prefix, cfg, fn);
    const std::size_t out = std::size_t(d.out), in = std::size_t(d.in), G = std::size_t(d.groups);
    ImportedMatrix<F> r;
    if (d.permuted) {
        r.storage_perm =
            storage_order_from_groups(d.g_idx, std::size_t(d.group_size), G, tensor_name(prefix, "weight_g_idx"), fn);
    } else {
        r.storage_perm.resize(in);
        std::iota(r.storage_perm.begin(), r.storage_perm.end(), std::size_t{0});
    }
    const GroupLayout L{out, in, d.strategy == CtStrategy::tensor ? std::max<std::size_t>(out, 1) : std::size_t{1},
                        d.strategy == CtStrategy::group ? std::size_t(d.group_size) : in};
    r.quantized = QuantizedMatrix<F>(L);
    const std::string qname = tensor_name(prefix, is_fp8_e4m3_v<F> ? "weight" : "weight_packed");
    for (std::size_t n = 0; n < out; ++n)
        for (std::size_t k = 0; k < in; ++k) {
            std::int32_t c = d.field[n * in + r.storage_perm[k]];
            if constexpr (is_int_format_v<F>) {
                c += 1 << (F::bits - 1);
                if (c < F::code_min || c > F::code_max)
                    ptq::detail::throw_invalid(fn, qname,
                                               "code " + std::to_string(c) + " at row " + std::to_string(n) +
                                                   " is outside the format's code range");
            }
            ref::set_code(r.quantized.row_data(n), k, F::bits, std::uint32_t(c));
        }
    const std::size_t param_rows = d.strategy == CtStrategy::tensor ? 1 : out;
    for (std::size_t n = 0; n < param_rows; ++n)
        for (std::size_t g = 0; g < G; ++g) {
            const std::size_t si = n * G + g;
            auto& p = r.quantized.row_params(n)[g];
            if constexpr (is_mxfp4_v<F>) {
                p.scale_byte = d.scale_byte[si];
            } else if constexpr (is_fp8_e4m3_v<F>) {
                p.scale = d.scale[si];
            } else {
                const std::int32_t z = d.zp[si] + (1 << (F::bits - 1));
                if ((F::symmetric && z != F::symmetric_zero) || z < 0 || z > F::levels)
                    ptq::detail::throw_invalid(fn, tensor_name(prefix, "weight_zero_point"),
                                               "zero point " + std::to_string(z) + " at row " + std::to_string(n) +
                                                   ", group " + std::to_string(g) + " does not fit " + F::name());
                p = {d.scale[si], z};
            }
        }
    return r;
}

}  // namespace ptq::io
