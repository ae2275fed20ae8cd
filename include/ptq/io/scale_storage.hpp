#pragma once
// Storing float quantization scales in a checkpoint's floating-point dtype (F16, BF16, F32)
// without silently changing them.
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#include <ptq/error.hpp>
#include <ptq/format/half.hpp>
#include <ptq/io/dtype.hpp>
#include <ptq/io/layer_tensor.hpp>

namespace ptq::io {

/// What an exporter does with a scale that the storage dtype cannot hold exactly.
///  - exact (default): refuse with ptq::invalid_argument naming the tensor, row and group;
///    the file then dequantizes exactly like ptq::dequantize of the matrix that was exported.
///  - round_nearest: store the nearest value (round to nearest, ties to even); the file then
///    dequantizes with the rounded scales (codes and zero points are unchanged).
/// Either way a scale that is NaN, Inf, <= 0, or that rounds to 0 or Inf is refused.
enum class ScaleRounding : std::uint8_t { exact, round_nearest };

namespace detail {
/// x with 9 significant digits (enough to tell every float apart), for error messages.
inline std::string scale_text(float x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", double(x));
    return buf;
}
}  // namespace detail

/// The bit pattern of `x` in `dtype` (F16, BF16 or F32), after the checks of ScaleRounding.
/// `tensor`, `row` and `group` only name the scale in error messages.
inline std::uint32_t encode_scale(float x, DType dtype, ScaleRounding rounding, const std::string& tensor,
                                  std::size_t row, std::size_t group) {
    auto where = [&] { return "row " + std::to_string(row) + ", group " + std::to_string(group); };
    if (!std::isfinite(x) || !(x > 0.0f))
        ptq::detail::throw_invalid("io::encode_scale", tensor,
                                   "scale " + detail::scale_text(x) + " at " + where() +
                                       " is not a finite positive number");
    std::uint32_t bits = 0;
    float stored = x;
    switch (dtype) {
        case DType::F16:
            bits = float_to_half_bits(x);
            stored = half_bits_to_float(static_cast<std::uint16_t>(bits));
            break;
        case DType::BF16:
            bits = float_to_bf16_bits(x);
            stored = bf16_bits_to_float(static_cast<std::uint16_t>(bits));
            break;
        case DType::F32: bits = std::bit_cast<std::uint32_t>(x); break;
        default:
            ptq::detail::throw_invalid("io::encode_scale", "dtype",
                                       std::string(dtype_name(dtype)) + " is not a scale dtype (F16, BF16 or F32)");
    }
    if (stored != x) {
        if (rounding == ScaleRounding::exact)
            ptq::detail::throw_invalid("io::encode_scale", tensor,
                                       "scale " + detail::scale_text(x) + " at " + where() +
                                           " is not exactly representable in " + std::string(dtype_name(dtype)) +
                                           " (make the quantizer produce representable scales, or pass "
                                           "ScaleRounding::round_nearest)");
        if (!std::isfinite(stored) || !(stored > 0.0f))
            ptq::detail::throw_invalid("io::encode_scale", tensor,
                                       "scale " + detail::scale_text(x) + " at " + where() + " rounds to " +
                                           detail::scale_text(stored) + " in " + std::string(dtype_name(dtype)));
    }
    return bits;
}

/// Element i of an F16 / BF16 / F32 tensor as float (exact).
inline float load_float(const LayerTensor& t, std::size_t i) {
    switch (t.dtype) {
        case DType::F16: return half_bits_to_float(static_cast<std::uint16_t>(t.load_bits(i)));
        case DType::BF16: return bf16_bits_to_float(static_cast<std::uint16_t>(t.load_bits(i)));
        case DType::F32: return std::bit_cast<float>(static_cast<std::uint32_t>(t.load_bits(i)));
        default:
            ptq::detail::throw_invalid("io::load_float", t.name,
                                       "has dtype " + std::string(dtype_name(t.dtype)) + ", expected F16, BF16 or F32");
    }
}

}  // namespace ptq::io
