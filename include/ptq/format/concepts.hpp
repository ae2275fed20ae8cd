#pragma once
// The concept every quantization format satisfies.
#include <concepts>
#include <cstdint>
#include <string>

#include <ptq/format/options.hpp>
#include <ptq/format/range.hpp>

namespace ptq {

/// Kind of a quantization format (selects the kernels). integer_min: integer codes with a
/// float scale and a float minimum (IntMinFormat).
enum class FormatKind : std::uint8_t { integer, mx_integer, minifloat, mx_minifloat, integer_min };

/// A quantization format: a compile-time type with the code width, a per-group parameter
/// struct, and the scalar reference numerics (make_params / quantize / dequantize).
// (clang-format 14 mangles requires-expressions.)
// clang-format off
template <class F>
concept QuantFormat = requires(const RangeStats& s, const QuantOptions& o, float x, std::uint8_t c,
                               const typename F::Params& p) {
    { F::bits } -> std::convertible_to<int>;
    { F::kind };
    { F::is_mx } -> std::convertible_to<bool>;
    { F::name() } -> std::convertible_to<std::string>;
    { F::make_params(s, o) } -> std::same_as<typename F::Params>;
    { F::nan_params() } -> std::same_as<typename F::Params>;
    { F::is_nan(p) } -> std::convertible_to<bool>;
    { F::quantize(x, p, o.rounding) } -> std::same_as<std::uint8_t>;
    { F::dequantize(c, p) } -> std::same_as<float>;
} && (F::bits >= 1 && F::bits <= 8);
// clang-format on

/// MX formats carry their own block granularity.
template <class F>
concept MxFormat = QuantFormat<F> && F::is_mx;

}  // namespace ptq
