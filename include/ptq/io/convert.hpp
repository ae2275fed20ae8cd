#pragma once
// Explicit conversions of raw little-endian tensor bytes to float, for the element types of
// safetensors (DType) and GGUF (GgmlType). Views of a file stay raw bytes; these functions are
// the only place bytes become floats.
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <ptq/error.hpp>
#include <ptq/format/e8m0.hpp>
#include <ptq/format/half.hpp>
#include <ptq/format/minifloat.hpp>
#include <ptq/io/dtype.hpp>
#include <ptq/io/gguf_types.hpp>

namespace ptq::io {

static_assert(std::endian::native == std::endian::little,
              "ptq::io reads little-endian files on little-endian hosts only");

/// Value of an FP8 "FNUZ" code (the AMD/Graphcore variants: F8_E4M3FNUZ with E = 4, M = 3, bias 8;
/// F8_E5M2FNUZ with E = 5, M = 2, bias 16). No infinities and no negative zero: 0x80 is the only
/// NaN; every other code is finite: normal (1 + m/2^M) * 2^(e - bias), subnormal (e = 0)
/// m/2^M * 2^(1 - bias). Max magnitudes: E4M3FNUZ 0x7F = 240, E5M2FNUZ 0x7F = 57344. Exact.
template <int E, int M>
inline float fp8_fnuz_decode(std::uint8_t code) noexcept {
    static_assert((E == 4 && M == 3) || (E == 5 && M == 2), "FNUZ FP8 exists as E4M3 and E5M2");
    constexpr int bias = 1 << (E - 1);  // one more than the IEEE-style bias
    if (code == 0x80) return std::numeric_limits<float>::quiet_NaN();
    const int e = (code >> M) & ((1 << E) - 1);
    const int m = code & ((1 << M) - 1);
    const float v = e == 0 ? std::ldexp(float(m), 1 - bias - M) : std::ldexp(float((1 << M) + m), e - bias - M);
    return (code & 0x80) ? -v : v;
}

/// True if decode_to_float supports `t`: every DType except C64 (complex), F4 and F6_* (their
/// sub-byte packing is not specified by safetensors; read them as raw bytes).
constexpr bool has_float_conversion(DType t) noexcept {
    return t != DType::C64 && t != DType::F4 && t != DType::F6_E2M3 && t != DType::F6_E3M2;
}
/// True if decode_to_float supports `t`: F32, F16, BF16 (the quantized block types are decoded
/// by their own converters).
constexpr bool has_float_conversion(GgmlType t) noexcept {
    return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16;
}

namespace detail {
template <class T>
inline T load_le(const std::byte* p) noexcept {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}
template <class T, class F>
inline void decode_each(std::span<const std::byte> in, std::span<float> out, F f) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = f(load_le<T>(in.data() + i * sizeof(T)));
}
}  // namespace detail

/// The bytes of a tensor as a span of T, without copying (the typed accessor of the views).
/// Throws ptq::file_error (field `what`) unless the elements are exactly sizeof(T) bytes
/// (`element_bits`) and the bytes are aligned for T. (Files written by ptq keep every tensor
/// aligned to its element size; use decode_to_float for unaligned or converted access.)
template <class T>
std::span<const T> typed_span(std::span<const std::byte> bytes, std::size_t element_bits, const std::string& file,
                              const std::string& what) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (element_bits != 8 * sizeof(T))
        throw file_error(file, what,
                         std::to_string(element_bits) + "-bit elements read as a " + std::to_string(8 * sizeof(T)) +
                             "-bit type");
    if (reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(T) != 0)
        throw file_error(file, what, "data is not aligned to " + std::to_string(alignof(T)) + " bytes");
    return {reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T)};
}

/// Decodes `out.size()` elements of type `t` from `in` (which must hold exactly that many).
/// F16 / BF16 exactly via half.hpp; F8_E4M3 / F8_E5M2 via Minifloat<4,3> / <5,2>; FNUZ via
/// fp8_fnuz_decode; F8_E8M0 as 2^(b-127) (255 = NaN); BOOL as 0 / 1 (any non-zero byte is 1);
/// F64 and the 32/64-bit integers round to nearest float (exact up to 2^24). Throws
/// ptq::invalid_argument for a size mismatch or an unsupported type (see has_float_conversion).
inline void decode_to_float(DType t, std::span<const std::byte> in, std::span<float> out) {
    if (!has_float_conversion(t))
        ptq::detail::throw_invalid("io::decode_to_float", "dtype",
                                   std::string(dtype_name(t)) + " has no conversion to float (read its raw bytes)");
    const std::size_t bytes = out.size() * bits_per_element(t) / 8;
    if (in.size() != bytes)
        ptq::detail::throw_invalid("io::decode_to_float", "in",
                                   std::to_string(in.size()) + " bytes for " + std::to_string(out.size()) + " " +
                                       std::string(dtype_name(t)) + " elements (expected " + std::to_string(bytes) +
                                       ")");
    using namespace detail;
    switch (t) {
        case DType::BOOL:
            decode_each<std::uint8_t>(in, out, [](std::uint8_t v) { return v != 0 ? 1.0f : 0.0f; });
            break;
        case DType::U8: decode_each<std::uint8_t>(in, out, [](std::uint8_t v) { return float(v); }); break;
        case DType::I8: decode_each<std::int8_t>(in, out, [](std::int8_t v) { return float(v); }); break;
        case DType::I16: decode_each<std::int16_t>(in, out, [](std::int16_t v) { return float(v); }); break;
        case DType::U16: decode_each<std::uint16_t>(in, out, [](std::uint16_t v) { return float(v); }); break;
        case DType::F16:
            decode_each<std::uint16_t>(in, out, [](std::uint16_t v) { return half_bits_to_float(v); });
            break;
        case DType::BF16:
            decode_each<std::uint16_t>(in, out, [](std::uint16_t v) { return bf16_bits_to_float(v); });
            break;
        case DType::I32: decode_each<std::int32_t>(in, out, [](std::int32_t v) { return float(v); }); break;
        case DType::U32: decode_each<std::uint32_t>(in, out, [](std::uint32_t v) { return float(v); }); break;
        case DType::F32: decode_each<float>(in, out, [](float v) { return v; }); break;
        case DType::F64: decode_each<double>(in, out, [](double v) { return static_cast<float>(v); }); break;
        case DType::I64: decode_each<std::int64_t>(in, out, [](std::int64_t v) { return float(v); }); break;
        case DType::U64: decode_each<std::uint64_t>(in, out, [](std::uint64_t v) { return float(v); }); break;
        case DType::F8_E4M3:
            decode_each<std::uint8_t>(in, out, [](std::uint8_t v) { return Minifloat<4, 3>::decode(v); });
            break;
        case DType::F8_E5M2:
            decode_each<std::uint8_t>(in, out, [](std::uint8_t v) { return Minifloat<5, 2>::decode(v); });
            break;
        case DType::F8_E4M3FNUZ:
            decode_each<std::uint8_t>(in, out, [](std::uint8_t v) { return fp8_fnuz_decode<4, 3>(v); });
            break;
        case DType::F8_E5M2FNUZ:
            decode_each<std::uint8_t>(in, out, [](std::uint8_t v) { return fp8_fnuz_decode<5, 2>(v); });
            break;
        case DType::F8_E8M0: decode_each<std::uint8_t>(in, out, [](std::uint8_t v) { return E8M0::decode(v); }); break;
        default: break;  // excluded by has_float_conversion
    }
}

/// Decodes F32 / F16 / BF16 GGUF tensor bytes (`out.size()` elements). Throws
/// ptq::invalid_argument for another type or a size mismatch.
inline void decode_to_float(GgmlType t, std::span<const std::byte> in, std::span<float> out) {
    switch (t) {
        case GgmlType::F32: decode_to_float(DType::F32, in, out); return;
        case GgmlType::F16: decode_to_float(DType::F16, in, out); return;
        case GgmlType::BF16: decode_to_float(DType::BF16, in, out); return;
        default:
            ptq::detail::throw_invalid("io::decode_to_float", "type",
                                       "ggml type " + std::string(ggml_type_name(t)) +
                                           " has no direct conversion to float (F32, F16, BF16 only)");
    }
}

}  // namespace ptq::io
