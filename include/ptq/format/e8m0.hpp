#pragma once
// E8M0: the OCP Microscaling shared-scale format (an unsigned biased exponent byte).
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include <ptq/format/options.hpp>
#include <ptq/format/range.hpp>

namespace ptq {

/// E8M0 scale X = 2^(byte - 127). Byte 255 encodes NaN; there is no zero and no infinity.
struct E8M0 {
    static constexpr int bias = 127;
    static constexpr int min_exponent = -127;  // byte 0
    static constexpr int max_exponent = 127;   // byte 254
    static constexpr std::uint8_t nan_byte = 255;

    /// Byte of 2^e. e must be in [-127, 127].
    static constexpr std::uint8_t encode_exponent(int e) noexcept { return static_cast<std::uint8_t>(e + bias); }
    /// Exponent of a non-NaN byte.
    static constexpr int exponent(std::uint8_t b) noexcept { return int(b) - bias; }
    static constexpr bool is_nan(std::uint8_t b) noexcept { return b == nan_byte; }
    /// Value of the byte as float: 2^(b-127) exactly (2^-127 is a float subnormal), NaN for 255.
    static float decode(std::uint8_t b) noexcept {
        return b == nan_byte ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, exponent(b));
    }
};

/// Parameters of an MX block (MxInt, MxFp): the E8M0 byte of its shared scale
/// X = 2^(scale_byte - 127); byte 255 is NaN (NonFinite::propagate).
struct MxParams {
    std::uint8_t scale_byte = 0;
    friend bool operator==(const MxParams&, const MxParams&) = default;
};

namespace detail {
/// floor(log2(a)) for finite a > 0, exact: the biased exponent field of a's bit pattern
/// (subnormals: the position of the highest set mantissa bit). No libm call.
inline int floor_log2(float a) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(a) & 0x7FFFFFFFu;
    const int ef = static_cast<int>(u >> 23);
    return ef != 0 ? ef - 127 : -126 - std::countl_zero(u << 9) - 1;
}
/// ceil(log2(a)) for finite a > 0, exact: floor_log2 on the double's bit pattern, + 1 unless a
/// is a power of two (zero mantissa field).
inline int ceil_log2(double a) noexcept {
    const std::uint64_t u = std::bit_cast<std::uint64_t>(a) & 0x7FFFFFFFFFFFFFFFull;
    const int ef = static_cast<int>(u >> 52);
    const std::uint64_t m = u & 0x000FFFFFFFFFFFFFull;
    if (ef == 0) {  // subnormal double: a = m * 2^-1074
        const int fl = 63 - std::countl_zero(m) - 1074;
        return (m & (m - 1)) == 0 ? fl : fl + 1;
    }
    return m == 0 ? ef - 1023 : ef - 1023 + 1;
}
/// 2^e as float for e in [-149, 127] (exact; subnormal below -126).
inline float exp2i(int e) noexcept { return std::ldexp(1.0f, e); }

/// Shared exponent of an MX block with amax = max|x| > 0 (finite), clamped to E8M0's
/// [-127, 127]:
///   MxScaleRule::ocp_floor  e = floor(log2 amax) - emax_elem
///   MxScaleRule::ceil       e = ceil(log2 amax) - ceil_offset   (the LQER code's rule)
///   MxScaleRule::nvidia     e = ceil(log2(amax / max_elem))     (no element overflows)
inline int mx_shared_exponent(float amax, MxScaleRule rule, int emax_elem, int ceil_offset, double max_elem) noexcept {
    int e;
    switch (rule) {
        case MxScaleRule::ceil: e = ceil_log2(double(amax)) - ceil_offset; break;
        case MxScaleRule::nvidia: e = ceil_log2(double(amax) / max_elem); break;
        case MxScaleRule::ocp_floor:
        default: e = floor_log2(amax) - emax_elem; break;
    }
    return e < E8M0::min_exponent ? E8M0::min_exponent : (e > E8M0::max_exponent ? E8M0::max_exponent : e);
}

/// E8M0 byte of a block's shared scale from its range: 255 (NaN) when the block holds NaN/Inf,
/// byte 0 (2^-127) for an empty or all-zero block, else 127 + mx_shared_exponent(...).
inline std::uint8_t mx_scale_byte(const RangeStats& s, MxScaleRule rule, int emax_elem, int ceil_offset,
                                  double max_elem) noexcept {
    if (s.non_finite) return E8M0::nan_byte;
    const float amax = s.empty() ? 0.0f : s.absmax();
    if (amax == 0.0f) return 0;
    return E8M0::encode_exponent(mx_shared_exponent(amax, rule, emax_elem, ceil_offset, max_elem));
}
}  // namespace detail

}  // namespace ptq
