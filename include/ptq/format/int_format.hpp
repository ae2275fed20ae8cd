#pragma once
// Uniform integer formats: IntFormat<Bits, Symmetric, Range>.
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

/// Code range of a symmetric integer format.
///  - restricted: q in [-(2^(b-1) - 1), 2^(b-1) - 1], scale = absmax / (2^(b-1) - 1) (default);
///  - full:       q in [-2^(b-1), 2^(b-1) - 1],     scale = absmax / (2^(b-1) - 1/2),
///                i.e. 2*absmax / (2^b - 1), so that the whole signed range is used (+absmax
///                itself lands half a step past the top and clamps). This is the paper authors'
///                symmetric quantizer (IST-DASLab gptq, sym=True: levels -8..+7, scale
///                2*absmax/15 at 4 bits; zero 2^(b-1), c = clamp(round(x/scale) + 2^(b-1), 0,
///                2^b - 1)) for every group holding a negative value, up to the reciprocal: ptq
///                multiplies by 1/scale where the reference divides, so a code may differ where
///                x/scale is within an ulp of a half-integer (mostly -absmax, which lands on
///                -(2^(b-1) - 1/2): both choices then err by half a step). A group with no
///                negative value differs by design: the reference keeps its minimum at 0 there
///                (scale = max/(2^b - 1), values above (2^(b-1) - 1)/(2^b - 1) * max clamp),
///                ptq stays symmetric about 0.
enum class IntRange : std::uint8_t { restricted, full };

/// A b-bit uniform integer format, 1 <= b <= 8 (symmetric needs b >= 2).
///
/// Stored codes are unsigned b-bit integers `c` in [code_min, code_max]; every integer
/// format decodes the same way:   x^ = scale * (float(c) - float(zero))   (two roundings:
/// the exact subtraction of small integers, then one float multiplication).
///
/// Asymmetric (Symmetric = false), codes 0 .. 2^b - 1:
///   [lo, hi] = group min/max, widened to contain 0 if QuantOptions::widen_to_zero;
///   scale = (hi - lo) / (2^b - 1)   computed in double, rounded once to float,
///           clamped to [FLT_MIN, FLT_MAX] so that 1/scale is finite, and capped so that
///           every code decodes to a finite value (finite_scale: ranges near FLT_MAX only);
///   zero  = clamp(round(-lo / scale), 0, 2^b - 1)   (float division, rounding mode r);
///   c     = clamp(round(x * (1/scale)) + zero, 0, 2^b - 1).
/// Symmetric (Symmetric = true): zero is fixed at 2^(b-1) (offset binary, so the stored code
/// is q + 2^(b-1)); scale = absmax / (2^(b-1) - 1) (restricted) or absmax / (2^(b-1) - 1/2)
/// (full), clamped likewise; c = clamp(round(x * (1/scale)) + 2^(b-1), code_min, code_max).
///
/// Storage-exact scales (QuantOptions::scale_storage = f16 / bf16): the scale above is then
/// rounded to the storage type (RNE) and clamped to its positive finite range (fp16:
/// [2^-24, 65504]; format/scale_storage.hpp) right after the FLT_MIN/FLT_MAX clamp, and the
/// zero point and every code are computed with that rounded scale; a finite_scale cap, when it
/// applies, is rounded down to the storage type. Default f32: no rounding.
///
/// Rounding is `QuantOptions::rounding` (half-to-even by default). The quantizer multiplies
/// by the float reciprocal 1/scale (computed once per group), it does not divide.
/// Degenerate groups: all-zero -> scale 1 (codes = zero); all elements equal to c != 0 ->
/// scale |c| and code zero +- 1, so the group reconstructs exactly.
template <int Bits, bool Symmetric, IntRange Range = IntRange::restricted>
struct IntFormat {
    static_assert(Bits >= 1 && Bits <= 8, "ptq::IntFormat<Bits, Symmetric>: Bits must be in [1, 8]");
    static_assert(!Symmetric || Bits >= 2,
                  "ptq::IntFormat<Bits, true>: a symmetric format needs at least 2 bits (1 bit has no +-1 pair)");

    static constexpr int bits = Bits;
    static constexpr bool symmetric = Symmetric;
    static constexpr IntRange range = Range;
    static constexpr FormatKind kind = FormatKind::integer;
    static constexpr bool is_mx = false;
    static constexpr std::int32_t levels = (1 << Bits) - 1;  // 2^b - 1
    /// Fixed zero point of the symmetric formats (offset-binary storage).
    static constexpr std::int32_t symmetric_zero = Symmetric ? (1 << (Bits - 1)) : 0;
    /// Range of stored (unsigned) codes.
    static constexpr std::int32_t code_min = (Symmetric && Range == IntRange::restricted) ? 1 : 0;
    static constexpr std::int32_t code_max = levels;
    /// Range of signed levels q = c - zero for symmetric formats.
    static constexpr std::int32_t q_min = code_min - symmetric_zero;
    static constexpr std::int32_t q_max = code_max - symmetric_zero;
    static constexpr bool has_zero_point = !Symmetric;

    static std::string name() {
        std::string n = "int" + std::to_string(Bits) + (Symmetric ? "-sym" : "-asym");
        if (Symmetric && Range == IntRange::full) n += "-full";
        return n;
    }

    struct Params {
        float scale = 1.0f;
        std::int32_t zero = symmetric_zero;  ///< code that represents 0 (fixed for symmetric)
        friend bool operator==(const Params&, const Params&) = default;
    };

    static Params nan_params() noexcept { return {std::numeric_limits<float>::quiet_NaN(), symmetric_zero}; }
    static bool is_nan(const Params& p) noexcept { return std::isnan(p.scale); }

    static float clamp_scale(double s) noexcept {
        if (!(s >= double(std::numeric_limits<float>::min()))) return std::numeric_limits<float>::min();
        if (s > double(std::numeric_limits<float>::max())) return std::numeric_limits<float>::max();
        return static_cast<float>(s);
    }

    /// Caps `scale` so that every code decodes to a finite value: scale * |c - zero| <= FLT_MAX
    /// for all c in [code_min, code_max]. Only ranges near FLT_MAX are affected (e.g. a group
    /// holding -FLT_MAX and FLT_MAX, where the rounded zero point or the full-range code -2^(b-1)
    /// would otherwise decode past FLT_MAX, to -Inf).
    static float finite_scale(float scale, std::int32_t zero) noexcept {
        const std::int32_t span = zero - code_min > code_max - zero ? zero - code_min : code_max - zero;
        if (span <= 0) return scale;
        const double fmax = double(std::numeric_limits<float>::max());
        if (double(scale) * double(span) <= fmax) return scale;
        float cap = static_cast<float>(fmax / double(span));
        if (double(cap) * double(span) > fmax) cap = std::nextafter(cap, 0.0f);
        return cap;
    }

    /// finite_scale for a scale already rounded to the storage type `st`: a cap is rounded down
    /// to the storage type so that it stays storable and every code stays finite.
    static float stored_finite_scale(float scale, std::int32_t zero, ScaleStorage st) noexcept {
        const float f = finite_scale(scale, zero);
        return f == scale ? f : stored_scale_below(f, st);
    }

    /// Parameters of a group from its range (see the class comment for the formulas).
    static Params make_params(const RangeStats& s, const QuantOptions& o = {}) noexcept {
        const ScaleStorage st = o.scale_storage;
        if (s.non_finite) return nan_params();
        if (s.empty()) return {1.0f, symmetric_zero};
        if (s.lo == s.hi) {  // constant group (incl. all zero): exact (if |c| is storable)
            const float c = s.lo;
            if (c == 0.0f) return {1.0f, symmetric_zero};
            return {to_stored_scale(std::fabs(c), st), Symmetric ? symmetric_zero : (c < 0.0f ? 1 : 0)};
        }
        if constexpr (Symmetric) {
            const double qmax = Range == IntRange::restricted ? double(q_max) : double(q_max) + 0.5;
            const float scale = to_stored_scale(clamp_scale(double(s.absmax()) / qmax), st);
            return {stored_finite_scale(scale, symmetric_zero, st), symmetric_zero};
        } else {
            float lo = s.lo, hi = s.hi;
            if (o.widen_to_zero) {  // comparisons, not libm's fmin/fmax (lo, hi are finite)
                lo = lo < 0.0f ? lo : 0.0f;
                hi = hi > 0.0f ? hi : 0.0f;
            }
            const float scale = to_stored_scale(clamp_scale((double(hi) - double(lo)) / double(levels)), st);
            float z = round_integral(-lo / scale, o.rounding);  // finite: |lo| / scale <= 2^b - 1 + rounding
            z = z > 0.0f ? (z < float(levels) ? z : float(levels)) : 0.0f;
            return {stored_finite_scale(scale, static_cast<std::int32_t>(z), st), static_cast<std::int32_t>(z)};
        }
    }

    /// c = clamp(round(x * (1/scale)) + zero, code_min, code_max). x must be finite.
    static std::uint8_t quantize(float x, const Params& p, Rounding r) noexcept {
        float t = round_integral(x * (1.0f / p.scale), r) + float(p.zero);
        t = std::fmin(std::fmax(t, float(code_min)), float(code_max));
        return static_cast<std::uint8_t>(t);
    }
    /// x^ = scale * (float(c) - float(zero)).
    static float dequantize(std::uint8_t c, const Params& p) noexcept { return p.scale * (float(c) - float(p.zero)); }
};

}  // namespace ptq
