#pragma once
// Asymmetric integers with a float minimum: IntMinFormat<Bits> (ggml's Q4_1 form).
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <ptq/format/concepts.hpp>
#include <ptq/format/options.hpp>
#include <ptq/format/range.hpp>
#include <ptq/format/rounding.hpp>
#include <ptq/format/scale_storage.hpp>

namespace ptq {

namespace detail {
/// s rounded to nearest (ties to even) on its bit pattern to `keep` significant bits
/// (1 <= keep <= 24), for a positive normal float; a carry moves into the exponent.
constexpr float round_significand(float s, int keep) noexcept {
    if (keep >= 24) return s;
    const int drop = 24 - keep;
    std::uint32_t u = std::bit_cast<std::uint32_t>(s);
    u += (1u << (drop - 1)) - 1u + ((u >> drop) & 1u);
    u &= ~((1u << drop) - 1u);
    return std::bit_cast<float>(u);
}
/// s truncated to `keep` significant bits (rounded toward zero), for a positive normal float.
constexpr float truncate_significand(float s, int keep) noexcept {
    if (keep >= 24) return s;
    const int drop = 24 - keep;
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(s) & ~((1u << drop) - 1u));
}
}  // namespace detail

/// A b-bit asymmetric integer format whose offset is a float minimum instead of an integer
/// zero point (1 <= b <= 8): codes c in [0, 2^b - 1], parameters {scale, min}.
///
///   min   = lo (the group minimum), rounded to QuantOptions::scale_storage (to_stored_value:
///           RNE, clamped to the storage type's finite range; f32: unchanged);
///   scale = (hi - min) / (2^b - 1)  computed in double, rounded once to float, clamped to
///           [FLT_MIN, (FLT_MAX - max(min, 0)) / (2^b - 1)] (so min + scale * c stays finite),
///           rounded to the storage type (to_stored_scale), and finally rounded to nearest
///           even on 24 - b significant bits (a no-op for fp16 / bf16 scales), so that
///           scale * c is exact in float for every code;
///   c     = clamp(round((x - min) * (1/scale)), 0, 2^b - 1)   (float subtraction, one
///           multiplication by the float reciprocal, rounding QuantOptions::rounding);
///   x^    = scale * c + min   (the product is exact, so this is one rounding whether or not
///           the compiler fuses the multiply-add: ggml's Q4_1 formula `q * d + m`).
/// QuantOptions::widen_to_zero is ignored: zero need not be a grid point here.
/// Degenerate groups: empty -> {1, 0}; all elements equal to v -> {1, stored(v)}, code 0 (exact
/// when v is storable).
template <int Bits>
struct IntMinFormat {
    static_assert(Bits >= 1 && Bits <= 8, "ptq::IntMinFormat<Bits>: Bits must be in [1, 8]");

    static constexpr int bits = Bits;
    static constexpr FormatKind kind = FormatKind::integer_min;
    static constexpr bool is_mx = false;
    static constexpr std::int32_t levels = (1 << Bits) - 1;
    static constexpr std::int32_t code_min = 0;
    static constexpr std::int32_t code_max = levels;
    static constexpr int scales_per_group = 1;
    /// The float minimum is metadata like a zero point (ptq::effective_bits counts it so).
    static constexpr bool has_zero_point = true;
    /// Significant bits kept in the scale so that scale * c is exact.
    static constexpr int scale_bits = 24 - Bits;

    static std::string name() { return "int" + std::to_string(Bits) + "-min"; }

    struct Params {
        float scale = 1.0f;
        float min = 0.0f;
        friend bool operator==(const Params&, const Params&) = default;
    };

    static Params nan_params() noexcept {
        return {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::quiet_NaN()};
    }
    static bool is_nan(const Params& p) noexcept { return std::isnan(p.scale); }

    static Params make_params(const RangeStats& s, const QuantOptions& o = {}) noexcept {
        const ScaleStorage st = o.scale_storage;
        if (s.non_finite) return nan_params();
        if (s.empty()) return {1.0f, 0.0f};
        const float mn = to_stored_value(s.lo, st);
        if (s.lo == s.hi) return {1.0f, mn};
        constexpr double fmax = double(std::numeric_limits<float>::max());
        const double cap = (fmax - (mn > 0.0f ? double(mn) : 0.0)) / double(levels);
        // The largest storable scale of scale_bits significant bits that is <= cap.
        const auto capped = [&] {
            float c = static_cast<float>(cap);
            if (double(c) > cap) c = std::nextafter(c, 0.0f);
            return detail::truncate_significand(stored_scale_below(c, st), scale_bits);
        };
        const double d = (double(s.hi) - double(mn)) / double(levels);
        if (d > cap) return {capped(), mn};
        // d < FLT_MIN: a tiny range, or hi below a min that storage rounded up.
        float scale =
            d >= double(std::numeric_limits<float>::min()) ? static_cast<float>(d) : std::numeric_limits<float>::min();
        scale = detail::round_significand(to_stored_scale(scale, st), scale_bits);
        if (double(scale) > cap) scale = capped();  // rounded up past the cap
        return {scale, mn};
    }

    /// c = clamp(round((x - min) * (1/scale)), 0, 2^b - 1). x must be finite.
    static std::uint8_t quantize(float x, const Params& p, Rounding r) noexcept {
        float t = round_integral((x - p.min) * (1.0f / p.scale), r);
        t = std::fmin(std::fmax(t, 0.0f), float(levels));
        return static_cast<std::uint8_t>(t);
    }
    /// x^ = scale * c + min.
    static float dequantize(std::uint8_t c, const Params& p) noexcept { return p.scale * float(c) + p.min; }
};

}  // namespace ptq
