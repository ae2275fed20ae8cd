#pragma once
// Minifloats: FP8 (OCP E4M3FN, E5M2), FP6 (E3M2, E2M3) and FP4 (E2M1), bit-exact codecs,
// and the "scaled minifloat" quantization format (one float scale per group).
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <ptq/format/concepts.hpp>
#include <ptq/format/e8m0.hpp>
#include <ptq/format/options.hpp>
#include <ptq/format/range.hpp>
#include <ptq/format/rounding.hpp>
#include <ptq/format/scale_storage.hpp>

namespace ptq {

namespace detail {
template <int E, int M>
constexpr bool is_supported_minifloat = (E == 4 && M == 3) || (E == 5 && M == 2) || (E == 3 && M == 2) ||
                                        (E == 2 && M == 3) || (E == 2 && M == 1);
}

/// A minifloat element type with E exponent bits and M mantissa bits (1 + E + M bits).
///
/// Supported: E4M3 (OCP "E4M3FN": bias 7, no infinities, NaN = S.1111.111, max 448),
/// E5M2 (bias 15, IEEE-like: Inf = S.11111.00, NaN = S.11111.{01,10,11}, max 57344),
/// E3M2 (max 28), E2M3 (max 7.5), E2M1 (FP4: 0, 0.5, 1, 1.5, 2, 3, 4, 6); the last three
/// have no Inf/NaN and always saturate. Subnormals are kept.
///
/// As a quantization format (`Minifloat<E,M>` with a granularity; `Fp8<4,3>` etc.):
///   scale = absmax / max_normal   (absmax of the group; a float, clamped to >= FLT_MIN)
///   code  = encode(x * (1/scale))  round-to-nearest on the bit pattern, saturating
///   x^    = scale * decode(code)
/// A group of equal values c != 0 gets scale |c| (codes +-1.0) so that it reconstructs
/// exactly; an all-zero group gets scale 1.
/// QuantOptions::scale_storage = f16 / bf16: the scale is rounded to the storage type (RNE)
/// and clamped to its positive finite range (fp16: [2^-24, 65504]; format/scale_storage.hpp)
/// before any code is computed; if scale * max_normal would then exceed FLT_MAX the scale is
/// the largest storable value below FLT_MAX / max_normal. Default f32: no rounding.
template <int E, int M>
struct Minifloat {
    static_assert(detail::is_supported_minifloat<E, M>,
                  "ptq::Minifloat<E, M>: supported element types are E4M3, E5M2 (FP8), E3M2, E2M3 (FP6) "
                  "and E2M1 (FP4)");

    static constexpr int exponent_bits = E;
    static constexpr int mantissa_bits = M;
    static constexpr int bits = 1 + E + M;
    static constexpr FormatKind kind = FormatKind::minifloat;
    static constexpr bool is_mx = false;
    static constexpr int bias = (1 << (E - 1)) - 1;
    static constexpr bool has_inf = (E == 5 && M == 2);
    static constexpr bool has_nan = (E == 5 && M == 2) || (E == 4 && M == 3);
    static constexpr int sign_shift = E + M;
    static constexpr std::uint32_t magnitude_mask = (1u << (E + M)) - 1u;
    /// Largest finite magnitude code: E4M3 0x7E, E5M2 0x7B, all-ones otherwise.
    static constexpr std::uint32_t max_finite_magnitude = (E == 4 && M == 3)   ? 0x7Eu
                                                          : (E == 5 && M == 2) ? 0x7Bu
                                                                               : magnitude_mask;
    static constexpr std::uint32_t inf_magnitude = has_inf ? 0x7Cu : 0u;  // E5M2 only
    static constexpr std::uint32_t nan_magnitude = (E == 4 && M == 3) ? 0x7Fu : (E == 5 && M == 2) ? 0x7Fu : 0u;
    /// Largest finite value.
    static constexpr double max_normal = (E == 4 && M == 3) ? 448.0
                                         : (E == 5 && M == 2)
                                             ? 57344.0
                                             : (2.0 - 1.0 / (1 << M)) * double(1 << ((1 << E) - 1 - bias));
    /// floor(log2(max_normal)): the emax_elem of the OCP MX spec (8, 15, 4, 2, 2).
    static constexpr int emax = (E == 4 && M == 3) ? 8 : (E == 5 && M == 2) ? 15 : (1 << E) - 1 - bias;
    static constexpr int min_normal_exponent = 1 - bias;         // min normal = 2^(1-bias)
    static constexpr int min_subnormal_exponent = 1 - bias - M;  // min subnormal = 2^(1-bias-M)

    static std::string name() {
        return "fp" + std::to_string(bits) + "-e" + std::to_string(E) + "m" + std::to_string(M);
    }

    /// Bit pattern of x (1+E+M bits in the low bits of the byte).
    /// Rounding: round-to-nearest on the bit pattern with ties by `r` (half_even = IEEE RNE).
    /// Overflow (|x| rounds above max_normal, or x = +-Inf): saturate -> +-max_normal;
    /// non_saturating -> +-Inf for E5M2, NaN for E4M3, saturate for the FP6/FP4 types
    /// (they have neither). NaN -> the NaN code (positive sign kept from the input) for
    /// E4M3/E5M2; the FP6/FP4 types have no NaN and encode NaN as +0 (ptq's quantizers never
    /// pass NaN here: see NonFinite).
    static std::uint8_t encode(float x, Rounding r = Rounding::half_even, Overflow o = Overflow::saturate) noexcept {
        const std::uint32_t sign = (std::bit_cast<std::uint32_t>(x) >> 31) << sign_shift;
        const float a = std::fabs(x);
        if (std::isnan(a)) return has_nan ? static_cast<std::uint8_t>(sign | nan_magnitude) : 0;
        std::uint32_t mag;
        if (std::isinf(a)) {
            mag = max_finite_magnitude + 1;  // forces the overflow path below
        } else if (a < detail::exp2i(min_normal_exponent)) {
            // subnormal range: grid step 2^(1-bias-M); a * 2^-(1-bias-M) is exact.
            mag = static_cast<std::uint32_t>(round_integral(a * detail::exp2i(-min_subnormal_exponent), r));
        } else {
            const int e = detail::floor_log2(a);  // a in [2^e, 2^(e+1))
            if (e > emax + 1) {
                mag = max_finite_magnitude + 1;
            } else {
                // t in [2^M, 2^(M+1)) exactly; q - 2^M is the mantissa, and a carry into the
                // exponent field (q = 2^(M+1)) is the correct next binade.
                const float t = a * detail::exp2i(M - e);
                const auto q = static_cast<std::uint32_t>(round_integral(t, r));
                mag = (static_cast<std::uint32_t>(e + bias) << M) + (q - (1u << M));
            }
        }
        if (mag > max_finite_magnitude) {
            if (o == Overflow::saturate || (!has_inf && !has_nan)) mag = max_finite_magnitude;
            else mag = has_inf ? inf_magnitude : nan_magnitude;
        }
        return static_cast<std::uint8_t>(sign | mag);
    }

    /// Value of a bit pattern (bits above 1+E+M are ignored). Exact.
    static float decode(std::uint8_t code) noexcept {
        const std::uint32_t c = code & ((1u << bits) - 1u);
        const bool neg = (c >> sign_shift) & 1u;
        const std::uint32_t mag = c & magnitude_mask;
        if constexpr (has_nan) {
            if (mag == nan_magnitude || (has_inf && mag > inf_magnitude))
                return std::numeric_limits<float>::quiet_NaN();
        }
        if constexpr (has_inf) {
            if (mag == inf_magnitude)
                return neg ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
        }
        const int ef = static_cast<int>(mag >> M);
        const int mf = static_cast<int>(mag & ((1u << M) - 1u));
        const float v = ef == 0 ? float(mf) * detail::exp2i(min_subnormal_exponent)
                                : float((1 << M) + mf) * detail::exp2i(ef - bias - M);
        return neg ? -v : v;
    }

    /// True for the codes that decode to NaN.
    static constexpr bool is_nan_code(std::uint8_t code) noexcept {
        const std::uint32_t mag = code & magnitude_mask;
        if constexpr (has_inf) return mag > inf_magnitude;
        else if constexpr (has_nan) return mag == nan_magnitude;
        else return false;
    }

    // ---- as a quantization format with a float scale per group -------------------------
    struct Params {
        float scale = 1.0f;
        friend bool operator==(const Params&, const Params&) = default;
    };
    static constexpr bool has_zero_point = false;

    static Params nan_params() noexcept { return {std::numeric_limits<float>::quiet_NaN()}; }
    static bool is_nan(const Params& p) noexcept { return std::isnan(p.scale); }

    /// scale = absmax / max_normal (float division), clamped to [FLT_MIN, FLT_MAX];
    /// constant group c: scale = |c|; all-zero group: scale = 1; then rounded to
    /// QuantOptions::scale_storage (see the class comment).
    static Params make_params(const RangeStats& s, const QuantOptions& o = {}) noexcept {
        const ScaleStorage st = o.scale_storage;
        if (s.non_finite) return nan_params();
        if (s.empty()) return {1.0f};
        const float amax = s.absmax();
        if (amax == 0.0f) return {1.0f};
        if (s.lo == s.hi) return {to_stored_scale(amax, st)};
        float scale = amax / static_cast<float>(max_normal);
        if (!(scale >= std::numeric_limits<float>::min())) scale = std::numeric_limits<float>::min();
        if (st != ScaleStorage::f32) {
            scale = to_stored_scale(scale, st);
            if (double(scale) * max_normal > double(std::numeric_limits<float>::max()))
                scale =
                    stored_scale_below(static_cast<float>(double(std::numeric_limits<float>::max()) / max_normal), st);
        }
        return {scale};
    }
    /// code = encode(x * (1/scale)), saturating.
    static std::uint8_t quantize(float x, const Params& p, Rounding r) noexcept {
        return encode(x * (1.0f / p.scale), r, Overflow::saturate);
    }
    /// x^ = scale * decode(code).
    static float dequantize(std::uint8_t code, const Params& p) noexcept { return p.scale * decode(code); }
};

namespace detail {
template <int E, int M>
struct fp8_check {
    static_assert(E + M == 7 && (E == 4 || E == 5), "ptq::Fp8<E, M>: FP8 is E4M3 (OCP E4M3FN) or E5M2");
    using type = Minifloat<E, M>;
};
template <int E, int M>
struct fp6_check {
    static_assert(E + M == 5 && (E == 3 || E == 2), "ptq::Fp6<E, M>: FP6 is E3M2 or E2M3");
    using type = Minifloat<E, M>;
};
}  // namespace detail

/// FP8: Fp8<4, 3> (OCP E4M3FN) or Fp8<5, 2> (E5M2).
template <int E, int M>
using Fp8 = typename detail::fp8_check<E, M>::type;
/// FP6: Fp6<3, 2> or Fp6<2, 3>.
template <int E, int M>
using Fp6 = typename detail::fp6_check<E, M>::type;
/// FP4: E2M1.
using Fp4 = Minifloat<2, 1>;

using Fp8E4M3 = Minifloat<4, 3>;
using Fp8E5M2 = Minifloat<5, 2>;
using Fp6E3M2 = Minifloat<3, 2>;
using Fp6E2M3 = Minifloat<2, 3>;
using Fp4E2M1 = Minifloat<2, 1>;

}  // namespace ptq
