#pragma once
// ggml tensor bytes -> float, written from ggml's own formulas (ggml-org/ggml
// src/ggml-quants.c `dequantize_row_*`, src/ggml-impl.h `ggml_e8m0_to_fp32_half`,
// src/ggml-common.h block structs). It reads any file ggml reads, and it is what ptq's tests
// compare exported blocks against, independently of the exporter (io/gguf_blocks.hpp).
//
// A tensor of ggml type T with ne = [ne0, ne1] (fastest dimension first) is ne1 rows of ne0
// elements, row after row, each row ne0 / block_size(T) blocks of type_size(T) bytes:
//   F32   4-byte little-endian IEEE float;      F16  2-byte binary16 (exact conversion);
//   BF16  2-byte bfloat16 (exact conversion);
//   Q8_0  34 bytes: fp16 d, int8 q[32]:                        y[j] = q[j] * d
//   Q4_0  18 bytes: fp16 d, 16 bytes qs:                       y[j] = ((qs[j] & 15) - 8) * d,
//                                                              y[j + 16] = ((qs[j] >> 4) - 8) * d
//   Q4_1  20 bytes: fp16 d, fp16 m, 16 bytes qs:               y[j] = (qs[j] & 15) * d + m, ...
//   MXFP4 17 bytes: E8M0 byte e, 16 bytes qs, k = {0, 1, 2, 3, 4, 6, 8, 12, -0, -1, ..., -12}
//                   (doubled E2M1 values), d = 2^(e - 128):  y[j] = k[qs[j] & 15] * d, ...
//                   ggml does not treat e = 255 as NaN (d = 2^127).
// The products and sums are single float operations as in ggml; for Q4_1 `nibble * d` is
// exact in float (d is an fp16 value, nibble < 16), so fused or unfused multiply-add agree.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include <Eigen/Core>

#include <ptq/error.hpp>
#include <ptq/format/half.hpp>
#include <ptq/io/gguf_types.hpp>

namespace ptq::io {

namespace detail {

inline std::uint8_t u8(const std::byte* p) noexcept { return static_cast<std::uint8_t>(*p); }
inline std::uint16_t load_u16le(const std::byte* p) noexcept {
    return static_cast<std::uint16_t>(u8(p) | (static_cast<unsigned>(u8(p + 1)) << 8));
}
inline std::uint32_t load_u32le(const std::byte* p) noexcept {
    return static_cast<std::uint32_t>(u8(p)) | (static_cast<std::uint32_t>(u8(p + 1)) << 8) |
           (static_cast<std::uint32_t>(u8(p + 2)) << 16) | (static_cast<std::uint32_t>(u8(p + 3)) << 24);
}

[[noreturn]] inline void throw_tensor(std::string_view fn, std::string_view tensor, const std::string& what) {
    throw invalid_argument("ptq::io::" + std::string(fn) + ": tensor '" + std::string(tensor) + "': " + what);
}

/// Rows and columns of a matrix tensor from its ne (1 or 2 dimensions, or more with the extra
/// ones equal to 1), checked against the type's block size and the byte count; any mismatch
/// (a zero extent, a ragged row, a short or long buffer, an overflowing size)
/// throws ptq::invalid_argument naming the tensor.
struct MatrixShape {
    std::size_t rows = 0, cols = 0, row_bytes = 0, blocks_per_row = 0;
};
inline MatrixShape ggml_matrix_shape(std::string_view fn, std::string_view tensor, GgmlType type,
                                     std::span<const std::uint64_t> ne, std::size_t data_size) {
    const GgmlTypeTraits tr = ggml_type_traits(type);
    if (tr.block_size == 0)
        throw_tensor(fn, tensor, "unknown ggml type " + std::to_string(static_cast<std::uint32_t>(type)));
    if (ne.empty() || ne.size() > 4)
        throw_tensor(fn, tensor, "ne must have 1 to 4 dimensions, has " + std::to_string(ne.size()));
    for (std::size_t i = 0; i < ne.size(); ++i)
        if (ne[i] == 0) throw_tensor(fn, tensor, "ne[" + std::to_string(i) + "] is 0 (no elements)");
    for (std::size_t i = 2; i < ne.size(); ++i)
        if (ne[i] != 1)
            throw_tensor(fn, tensor, "is not a matrix: ne[" + std::to_string(i) + "] = " + std::to_string(ne[i]));
    constexpr std::uint64_t limit = std::uint64_t(1) << 40;  // elements per dimension: far beyond any model
    if (ne[0] > limit || (ne.size() > 1 && ne[1] > limit)) throw_tensor(fn, tensor, "extent too large");
    MatrixShape s;
    s.cols = static_cast<std::size_t>(ne[0]);
    s.rows = ne.size() > 1 ? static_cast<std::size_t>(ne[1]) : 1;
    if (ne[0] % static_cast<std::uint64_t>(tr.block_size) != 0)
        throw_tensor(fn, tensor,
                     "row length ne[0] = " + std::to_string(ne[0]) + " is not a multiple of the " +
                         std::string(tr.name) + " block size " + std::to_string(tr.block_size));
    s.blocks_per_row = s.cols / static_cast<std::size_t>(tr.block_size);
    s.row_bytes = s.blocks_per_row * tr.type_size;
    if (s.rows > (std::size_t(1) << 62) / s.row_bytes) throw_tensor(fn, tensor, "size overflows");
    const std::size_t need = s.rows * s.row_bytes;
    if (data_size != need)
        throw_tensor(fn, tensor,
                     "holds " + std::to_string(data_size) + " bytes, " + std::string(tr.name) + " [" +
                         std::to_string(s.cols) + " x " + std::to_string(s.rows) + "] needs " + std::to_string(need));
    return s;
}

/// ggml_e8m0_to_fp32_half: 2^(e - 128) as float (e < 2: the subnormals 2^-128, 2^-127).
inline float ggml_e8m0_half(std::uint8_t e) noexcept {
    const std::uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<std::uint32_t>(e) - 1u) << 23;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

/// ggml's kvalues_mxfp4: doubled E2M1 values by nibble.
inline constexpr std::int8_t ggml_kvalues_mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

}  // namespace detail

/// True for the types ggml_dequantize reads: F32, F16, BF16, Q8_0, Q4_0, Q4_1, MXFP4.
constexpr bool ggml_dequantize_supported(GgmlType t) noexcept {
    return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16 || t == GgmlType::Q8_0 ||
           t == GgmlType::Q4_0 || t == GgmlType::Q4_1 || t == GgmlType::MXFP4;
}

/// Dequantizes one row of `blocks` blocks of a supported type (F32, F16, BF16, Q8_0, Q4_0,
/// Q4_1, MXFP4) from `src` into `out` (blocks * block_size floats) with ggml's formula.
/// Throws ptq::invalid_argument for another type.
inline void ggml_dequantize_row(GgmlType type, const std::byte* src, std::size_t blocks, float* out) {
    switch (type) {
        case GgmlType::F32:
            for (std::size_t i = 0; i < blocks; ++i) {
                const std::uint32_t b = detail::load_u32le(src + 4 * i);
                std::memcpy(out + i, &b, 4);
            }
            return;
        case GgmlType::F16:
            for (std::size_t i = 0; i < blocks; ++i) out[i] = half_bits_to_float(detail::load_u16le(src + 2 * i));
            return;
        case GgmlType::BF16:
            for (std::size_t i = 0; i < blocks; ++i) out[i] = bf16_bits_to_float(detail::load_u16le(src + 2 * i));
            return;
        case GgmlType::Q8_0:
            for (std::size_t i = 0; i < blocks; ++i, src += 34, out += 32) {
                const float d = half_bits_to_float(detail::load_u16le(src));
                for (int j = 0; j < 32; ++j)
                    out[j] = static_cast<float>(static_cast<std::int8_t>(detail::u8(src + 2 + j))) * d;
            }
            return;
        case GgmlType::Q4_0:
            for (std::size_t i = 0; i < blocks; ++i, src += 18, out += 32) {
                const float d = half_bits_to_float(detail::load_u16le(src));
                for (int j = 0; j < 16; ++j) {
                    const std::uint8_t b = detail::u8(src + 2 + j);
                    out[j] = static_cast<float>((b & 0x0F) - 8) * d;
                    out[j + 16] = static_cast<float>((b >> 4) - 8) * d;
                }
            }
            return;
        case GgmlType::Q4_1:
            for (std::size_t i = 0; i < blocks; ++i, src += 20, out += 32) {
                const float d = half_bits_to_float(detail::load_u16le(src));
                const float m = half_bits_to_float(detail::load_u16le(src + 2));
                for (int j = 0; j < 16; ++j) {
                    const std::uint8_t b = detail::u8(src + 4 + j);
                    out[j] = static_cast<float>(b & 0x0F) * d + m;
                    out[j + 16] = static_cast<float>(b >> 4) * d + m;
                }
            }
            return;
        case GgmlType::MXFP4:
            for (std::size_t i = 0; i < blocks; ++i, src += 17, out += 32) {
                const float d = detail::ggml_e8m0_half(detail::u8(src));
                for (int j = 0; j < 16; ++j) {
                    const std::uint8_t b = detail::u8(src + 1 + j);
                    out[j] = static_cast<float>(detail::ggml_kvalues_mxfp4[b & 0x0F]) * d;
                    out[j + 16] = static_cast<float>(detail::ggml_kvalues_mxfp4[b >> 4]) * d;
                }
            }
            return;
        default:
            throw invalid_argument("ptq::io::ggml_dequantize_row: ggml type '" + std::string(ggml_type_name(type)) +
                                   "' is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, MXFP4)");
    }
}

/// The float matrix [ne1 x ne0] (row-major) of a ggml tensor, dequantized with ggml's
/// formulas (see the file comment). `name` is used in error messages; shape and size are
/// checked first (ptq::invalid_argument naming the tensor).
inline Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> ggml_dequantize(
    GgmlType type, std::span<const std::uint64_t> ne, std::span<const std::byte> data, std::string_view name) {
    if (!ggml_dequantize_supported(type))
        detail::throw_tensor("ggml_dequantize", name,
                             "ggml type '" + std::string(ggml_type_name(type)) + "' (" +
                                 std::to_string(static_cast<std::uint32_t>(type)) + ") is not supported");
    const auto s = detail::ggml_matrix_shape("ggml_dequantize", name, type, ne, data.size());
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> out(static_cast<Eigen::Index>(s.rows),
                                                                              static_cast<Eigen::Index>(s.cols));
    for (std::size_t r = 0; r < s.rows; ++r)
        ggml_dequantize_row(type, data.data() + r * s.row_bytes, s.blocks_per_row, out.data() + r * s.cols);
    return out;
}

}  // namespace ptq::io
