#pragma once
// Layout conversion between ptq's QuantizedMatrix<F> and ggml's quantized blocks (the tensor
// data of a GGUF file), and between float matrices and F32 / F16 / BF16 tensors.
//
// A ptq weight W [out x in] is the ggml tensor ne = [in, out] (fastest dimension first): row r
// of W is ggml row r, split into blocks of 32 consecutive elements (groups along in_features).
//
//   format                    ggml    block bytes                       ggml value
//   IntFormat<8, true, R>     Q8_0    fp16 d = scale, int8 q = c - 128   q * d
//   IntFormat<4, true, R>     Q4_0    fp16 d = scale, nibble = c         (nibble - 8) * d
//   IntMinFormat<4>           Q4_1    fp16 d = scale, fp16 m = min,      nibble * d + m
//                                     nibble = c
//   MxFp<2, 1, 32> (MXFP4)    MXFP4   u8 e = E8M0 byte, nibble = c       k[nibble] * 2^(e - 128)
// k is ggml's table of doubled E2M1 values, and 2^(e-128) its halved E8M0 scale: the product
// is ptq's E2M1(c) * 2^(e-127) exactly, so the E8M0 byte and the E2M1 codes are copied as
// they are. In every 4-bit block byte j holds element j in its low nibble and element j + 16
// in its high nibble; fp16 values are little-endian.
//
// Exactness: ggml multiplies the decoded code by the fp16 value of d, ptq multiplies by its
// float scale (Q4_1: the exact product plus m, as ptq), so the file dequantizes to exactly
// ptq::dequantize(q) (up to the sign of a zero: ggml's MXFP4 table has no -0) when every
// scale (and Q4_1 minimum) is an fp16 value: quantize with
// QuantOptions::scale_storage = ScaleStorage::f16. Otherwise the export is refused with a
// ptq::invalid_argument naming the tensor, row and group, unless
// GgmlExportOptions::round_to_fp16 asks for round-to-nearest-even (values then change).
// Groups must be 32 columns (PerGroup<32>, PerGroup<>{32}, the MX block); a row length that
// is not a multiple of 32 is refused, or written in GgmlExportOptions::ragged_fallback.
// NaN parameters (NonFinite::propagate) and MX byte 255 (NaN in ptq, 2^127 in ggml) are refused.
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <Eigen/Core>

#include <ptq/error.hpp>
#include <ptq/format/half.hpp>
#include <ptq/format/int_format.hpp>
#include <ptq/format/int_min_format.hpp>
#include <ptq/format/mx_fp.hpp>
#include <ptq/format/scale_storage.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/io/ggml_dequantize.hpp>
#include <ptq/io/gguf_types.hpp>
#include <ptq/kernel/packing.hpp>
#include <ptq/kernel/reference.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq::io {

/// The ggml block type of a ptq format (specialised for the formats that have one).
template <class F>
struct ggml_block_format {};
template <IntRange R>
struct ggml_block_format<IntFormat<8, true, R>> {
    static constexpr GgmlType type = GgmlType::Q8_0;
};
template <IntRange R>
struct ggml_block_format<IntFormat<4, true, R>> {
    static constexpr GgmlType type = GgmlType::Q4_0;
};
template <>
struct ggml_block_format<IntMinFormat<4>> {
    static constexpr GgmlType type = GgmlType::Q4_1;
};
template <>
struct ggml_block_format<MxFp<2, 1, 32>> {
    static constexpr GgmlType type = GgmlType::MXFP4;
};

/// A format with a ggml block type.
template <class F>
concept GgmlBlockFormat = QuantFormat<F> && requires {
    ggml_block_format<F>::type;
};

/// ggml type of F, refused at compile time for a format that has none.
template <class F>
constexpr GgmlType ggml_type_of() noexcept {
    static_assert(GgmlBlockFormat<F>,
                  "ptq::io: this format has no ggml block type (Q8_0 = IntFormat<8, true>, Q4_0 = IntFormat<4, true>, "
                  "Q4_1 = IntMinFormat<4>, MXFP4 = MxFp<2, 1, 32>)");
    if constexpr (GgmlBlockFormat<F>) return ggml_block_format<F>::type;
    else return GgmlType::F32;
}

/// Elements per ggml block of every supported quantized type.
inline constexpr std::size_t ggml_block_elements = 32;

/// One tensor as GGUF stores it: its ggml type, its extents (fastest first: a [rows x cols]
/// matrix is ne = {cols, rows}) and exactly ggml_row_size(type, ne[0]) * rows bytes.
struct GgmlTensor {
    GgmlType type = GgmlType::F32;
    std::vector<std::uint64_t> ne;
    std::vector<std::byte> data;
};

/// Options of to_ggml.
struct GgmlExportOptions {
    /// false (default): a scale that fp16 cannot hold exactly is refused (ptq::invalid_argument
    /// naming the tensor, row and group). true: it is rounded to nearest even fp16 and clamped
    /// to [2^-24, 65504]; the file then dequantizes to slightly different weights.
    bool round_to_fp16 = false;
    /// A tensor whose row length is not a multiple of 32: nullopt (default) refuses it
    /// (ptq::invalid_argument naming the tensor); F32, F16 or BF16 writes ptq::dequantize(q)
    /// in that type instead (see float_to_ggml).
    std::optional<GgmlType> ragged_fallback;
};

namespace detail {

inline void store_u16le(std::byte* p, std::uint16_t v) noexcept {
    p[0] = static_cast<std::byte>(v & 0xFFu);
    p[1] = static_cast<std::byte>(v >> 8);
}

inline std::string where(std::size_t r, std::size_t g) {
    return "row " + std::to_string(r) + ", group " + std::to_string(g);
}

/// The fp16 bits of a group scale (what = "scale") or float minimum ("min"): exact, or rounded
/// when the caller allows it (a scale to_stored_scale, a minimum to_stored_value).
inline std::uint16_t fp16_bits(float v, const char* what, std::string_view tensor, std::size_t r, std::size_t g,
                               bool round) {
    const std::uint16_t h = float_to_half_bits(v);
    if (half_bits_to_float(h) == v) return h;
    if (!round)
        throw_tensor("to_ggml", tensor,
                     where(r, g) + ": " + what + " " + std::to_string(v) +
                         " is not an fp16 value (quantize with QuantOptions::scale_storage = ScaleStorage::f16, or "
                         "set GgmlExportOptions::round_to_fp16)");
    const bool is_scale = what[0] == 's';
    return float_to_half_bits(is_scale ? to_stored_scale(v, ScaleStorage::f16) : to_stored_value(v, ScaleStorage::f16));
}

inline void check_float_target(std::string_view fn, std::string_view tensor, GgmlType type) {
    if (type != GgmlType::F32 && type != GgmlType::F16 && type != GgmlType::BF16)
        throw_tensor(fn, tensor,
                     "float type must be F32, F16 or BF16, not '" + std::string(ggml_type_name(type)) + "'");
}

}  // namespace detail

/// A float tensor in F32, F16 or BF16: data = the elements of x row by row, ne = {cols, rows}
/// (or {n} for the vector overload). F16 / BF16 round to nearest even (half.hpp). Refused with
/// ptq::invalid_argument naming the tensor, row and column: NaN / Inf (non_finite_error), and
/// a finite value that F16 / BF16 would turn into Inf; an empty tensor; another type.
inline GgmlTensor float_to_ggml(const float* x, std::size_t rows, std::size_t cols, GgmlType type,
                                std::string_view name) {
    detail::check_float_target("float_to_ggml", name, type);
    if (rows == 0 || cols == 0) detail::throw_tensor("float_to_ggml", name, "has no elements");
    GgmlTensor t;
    t.type = type;
    t.ne = {cols, rows};
    const std::size_t es = ggml_type_size(type), n = rows * cols;
    t.data.resize(n * es);
    for (std::size_t i = 0; i < n; ++i) {
        const float v = x[i];
        if (!std::isfinite(v))
            throw non_finite_error("ptq::io::float_to_ggml: tensor '" + std::string(name) + "' holds NaN or Inf (row " +
                                   std::to_string(i / cols) + ", column " + std::to_string(i % cols) + ")");
        std::byte* p = t.data.data() + i * es;
        if (type == GgmlType::F32) {
            const auto b = std::bit_cast<std::uint32_t>(v);
            for (int k = 0; k < 4; ++k) p[k] = static_cast<std::byte>((b >> (8 * k)) & 0xFFu);
            continue;
        }
        const std::uint16_t h = type == GgmlType::F16 ? float_to_half_bits(v) : float_to_bf16_bits(v);
        const float back = type == GgmlType::F16 ? half_bits_to_float(h) : bf16_bits_to_float(h);
        if (std::isinf(back))
            detail::throw_tensor("float_to_ggml", name,
                                 "row " + std::to_string(i / cols) + ", column " + std::to_string(i % cols) + ": " +
                                     std::to_string(v) + " overflows " + std::string(ggml_type_name(type)));
        detail::store_u16le(p, h);
    }
    return t;
}
/// Matrix overload: x [rows x cols] -> ne = {cols, rows}.
inline GgmlTensor float_to_ggml(const Eigen::Ref<const RowMatrixXf>& x, GgmlType type, std::string_view name) {
    return float_to_ggml(x.data(), static_cast<std::size_t>(x.rows()), static_cast<std::size_t>(x.cols()), type, name);
}
/// Vector overload (norm weights): ne = {n}.
inline GgmlTensor float_to_ggml(std::span<const float> v, GgmlType type, std::string_view name) {
    GgmlTensor t = float_to_ggml(v.data(), 1, v.size(), type, name);
    t.ne = {v.size()};
    return t;
}

/// The ggml tensor (type ggml_type_of<F>(), ne = {cols, rows}) holding q's codes and scales in
/// ggml's block layout; see the file comment for the byte meaning and what is refused.
template <QuantFormat F>
GgmlTensor to_ggml(const QuantizedMatrix<F>& q, std::string_view name, const GgmlExportOptions& o = {}) {
    constexpr GgmlType type = ggml_type_of<F>();
    constexpr std::size_t K = ggml_block_elements;
    const GroupLayout& L = q.layout();
    if (q.rows() == 0 || q.cols() == 0) detail::throw_tensor("to_ggml", name, "has no elements");
    if ((L.group_rows > 1) || L.group_cols != K)
        detail::throw_tensor(
            "to_ggml", name,
            std::string(ggml_type_name(type)) + " needs groups of 32 columns (PerGroup<32>), not " +
                ((L.group_rows > 1) ? std::string("per-tensor") : std::to_string(L.group_cols) + "-column groups"));
    if (q.cols() % K != 0) {
        if (o.ragged_fallback) {
            detail::check_float_target("to_ggml", name, *o.ragged_fallback);
            RowMatrixXf w(static_cast<Eigen::Index>(q.rows()), static_cast<Eigen::Index>(q.cols()));
            for (std::size_t r = 0; r < q.rows(); ++r)
                ref::dequantize_row<F>(q.row_data(r), L, q.row_params(r), w.data() + r * q.cols());
            return float_to_ggml(w, *o.ragged_fallback, name);
        }
        detail::throw_tensor("to_ggml", name,
                             "row length " + std::to_string(q.cols()) + " is not a multiple of the " +
                                 std::string(ggml_type_name(type)) +
                                 " block size 32 (set GgmlExportOptions::ragged_fallback "
                                 "to write it as F32, F16 or BF16)");
    }
    const std::size_t nb = q.cols() / K, bs = ggml_type_size(type);
    GgmlTensor t;
    t.type = type;
    t.ne = {q.cols(), q.rows()};
    t.data.resize(q.rows() * nb * bs);
    std::uint8_t c[K];
    for (std::size_t r = 0; r < q.rows(); ++r) {
        const auto* params = q.row_params(r);
        for (std::size_t g = 0; g < nb; ++g) {
            const auto& p = params[g];
            if (F::is_nan(p))
                detail::throw_tensor("to_ggml", name,
                                     detail::where(r, g) + ": NaN parameters (NonFinite::propagate) cannot be stored");
            ref::unpack_bits(q.row_data(r), g * K, K, F::bits, c);
            std::byte* b = t.data.data() + (r * nb + g) * bs;
            if constexpr (type == GgmlType::MXFP4) {
                b[0] = static_cast<std::byte>(p.scale_byte);
                for (std::size_t j = 0; j < 16; ++j) b[1 + j] = static_cast<std::byte>(c[j] | (c[j + 16] << 4));
            } else if constexpr (type == GgmlType::Q4_1) {
                detail::store_u16le(b, detail::fp16_bits(p.scale, "scale", name, r, g, o.round_to_fp16));
                detail::store_u16le(b + 2, detail::fp16_bits(p.min, "min", name, r, g, o.round_to_fp16));
                for (std::size_t j = 0; j < 16; ++j) b[4 + j] = static_cast<std::byte>(c[j] | (c[j + 16] << 4));
            } else {
                detail::store_u16le(b, detail::fp16_bits(p.scale, "scale", name, r, g, o.round_to_fp16));
                if constexpr (type == GgmlType::Q8_0) {
                    // int8 q = c - 128, stored as its two's complement byte (= c ^ 0x80).
                    for (std::size_t j = 0; j < K; ++j) b[2 + j] = static_cast<std::byte>(c[j] ^ 0x80u);
                } else {  // Q4_0: the nibble is the offset-binary code itself
                    for (std::size_t j = 0; j < 16; ++j) b[2 + j] = static_cast<std::byte>(c[j] | (c[j + 16] << 4));
                }
            }
        }
    }
    return t;
}

/// The QuantizedMatrix<F> [ne[1] x ne[0]] (groups of 32 columns) held by ggml tensor bytes of
/// type ggml_type_of<F>(). Codes and scales are copied, so from_ggml(to_ggml(q)) == q.
/// A block that ptq's format cannot hold as it is gets a defined mapping or a clear error
/// (ptq::invalid_argument naming the tensor, row and group):
///  - d = +-0 (ggml's quantizer writes it for an all-zero block): scale 1, every code the zero
///    code (the block's values are all zero either way);
///  - d < 0 (ggml's Q4_0 reference quantizer writes d = max / -8): scale |d| and negated
///    levels q -> -q, refused if -q is outside the format's range (Q4_0 nibble 0 = -8);
///  - Q4_1: d = +-0 gives scale 1 and codes 0 (values m); d < 0, d or m NaN or Inf: refused;
///  - d NaN or Inf, a level outside IntRange::restricted (Q8_0 -128, Q4_0 nibble 0: import as
///    IntRange::full), MXFP4 byte 255: refused.
/// Wrong type, shape (ne[0] not a multiple of 32, zero extents, more than 2 dimensions unless
/// the extra ones are 1) or byte count (short or long): refused.
template <QuantFormat F>
QuantizedMatrix<F> from_ggml(GgmlType type, std::span<const std::uint64_t> ne, std::span<const std::byte> data,
                             std::string_view name) {
    constexpr GgmlType want = ggml_type_of<F>();
    constexpr std::size_t K = ggml_block_elements;
    if (type != want)
        detail::throw_tensor("from_ggml", name,
                             "is ggml type '" + std::string(ggml_type_name(type)) + "', the format needs '" +
                                 std::string(ggml_type_name(want)) + "'");
    const auto s = detail::ggml_matrix_shape("from_ggml", name, type, ne, data.size());
    QuantizedMatrix<F> q(GroupLayout{s.rows, s.cols, 1, K});
    const std::size_t bs = ggml_type_size(type);
    std::vector<std::uint8_t> codes(s.cols);
    for (std::size_t r = 0; r < s.rows; ++r) {
        auto* params = q.row_params(r);
        for (std::size_t g = 0; g < s.blocks_per_row; ++g) {
            const std::byte* b = data.data() + r * s.row_bytes + g * bs;
            std::uint8_t* c = codes.data() + g * K;
            if constexpr (want == GgmlType::MXFP4) {
                const std::uint8_t e = detail::u8(b);
                if (E8M0::is_nan(e))
                    detail::throw_tensor("from_ggml", name,
                                         detail::where(r, g) + ": E8M0 byte 255 (2^128 in ggml) is NaN in ptq's MXFP4");
                params[g].scale_byte = e;
                for (std::size_t j = 0; j < 16; ++j) {
                    c[j] = detail::u8(b + 1 + j) & 0x0Fu;
                    c[j + 16] = detail::u8(b + 1 + j) >> 4;
                }
            } else if constexpr (want == GgmlType::Q4_1) {
                const float d = half_bits_to_float(detail::load_u16le(b));
                const float m = half_bits_to_float(detail::load_u16le(b + 2));
                if (!std::isfinite(d) || !std::isfinite(m))
                    detail::throw_tensor("from_ggml", name, detail::where(r, g) + ": d or m is NaN or Inf");
                if (d < 0.0f) detail::throw_tensor("from_ggml", name, detail::where(r, g) + ": negative d");
                for (std::size_t j = 0; j < 16; ++j) {
                    c[j] = d == 0.0f ? 0 : detail::u8(b + 4 + j) & 0x0Fu;
                    c[j + 16] = d == 0.0f ? 0 : detail::u8(b + 4 + j) >> 4;
                }
                params[g].scale = d == 0.0f ? 1.0f : d;
                params[g].min = m;
            } else {
                const float d = half_bits_to_float(detail::load_u16le(b));
                if (!std::isfinite(d))
                    detail::throw_tensor("from_ggml", name, detail::where(r, g) + ": scale d is NaN or Inf");
                // signed levels as ggml decodes them
                int lv[K];
                if constexpr (want == GgmlType::Q8_0) {
                    for (std::size_t j = 0; j < K; ++j) lv[j] = static_cast<std::int8_t>(detail::u8(b + 2 + j));
                } else {
                    for (std::size_t j = 0; j < 16; ++j) {
                        lv[j] = (detail::u8(b + 2 + j) & 0x0F) - 8;
                        lv[j + 16] = (detail::u8(b + 2 + j) >> 4) - 8;
                    }
                }
                float scale = d;
                if (d == 0.0f) {
                    scale = 1.0f;
                    for (int& v : lv) v = 0;
                } else if (d < 0.0f) {
                    scale = -d;
                    for (int& v : lv) v = -v;
                }
                for (std::size_t j = 0; j < K; ++j) {
                    if (lv[j] < F::q_min || lv[j] > F::q_max)
                        detail::throw_tensor(
                            "from_ggml", name,
                            detail::where(r, g) + ": level " + std::to_string(lv[j]) + " (element " +
                                std::to_string(g * K + j) + (d < 0.0f ? ", negated for d < 0" : "") +
                                ") is outside the format's range [" + std::to_string(F::q_min) + ", " +
                                std::to_string(F::q_max) + "]" +
                                (F::range == IntRange::restricted ? " (import as IntRange::full)" : ""));
                    c[j] = static_cast<std::uint8_t>(lv[j] + F::symmetric_zero);
                }
                params[g].scale = scale;
                params[g].zero = F::symmetric_zero;
            }
        }
        ref::pack_bits(codes.data(), s.cols, F::bits, q.row_data(r));
    }
    return q;
}

}  // namespace ptq::io
