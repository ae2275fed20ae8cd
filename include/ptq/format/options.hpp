#pragma once
// Runtime options that steer how a format turns a group of values into codes.
// Everything that changes the code space (bits, symmetry, block size, exponent/mantissa
// widths) is a compile-time parameter of the format type; everything below is runtime.
#include <cstdint>

#include <ptq/format/rounding.hpp>

namespace ptq {

/// What to do with NaN or +-Inf found in an input that is being quantized.
///  - error:     throw ptq::non_finite_error naming the argument and the position (default);
///  - propagate: the group (or MX block) that holds it gets NaN parameters (a NaN float scale,
///               or the E8M0 NaN byte 255), all its codes are 0, and every element of it
///               dequantizes to NaN. Other groups are unaffected.
enum class NonFinite : std::uint8_t { error, propagate };

/// Shared-exponent rule of the MX formats, stated for a block with amax = max|x| > 0.
/// ptq always decodes an MXINT<d> element as X * q / 2^(d-2) (OCP: d-2 fractional bits),
/// and an MXFP element as X * minifloat(code); the rules differ only in how X = 2^e is chosen:
///  - ocp_floor: e = floor(log2(amax)) - emax_elem (OCP MX v1.0; default). Values slightly
///               above the largest element magnitude are clamped.
///  - ceil:      MXINT: e = ceil(log2(amax)) - 1, which is the LQER code's rule
///               (X' = 2^ceil(log2 amax) with sign-magnitude elements of d-1 fractional bits)
///               written in ptq's decoding, since X'/2^(d-1) = X/2^(d-2);
///               MXFP: e = ceil(log2(amax)) - emax_elem.
///  - nvidia:    e = ceil(log2(amax / max_elem)), max_elem the largest element magnitude
///               (1.984375 for MXINT8, 448 for E4M3): nothing is ever clamped.
/// e is finally clamped to [-127, 127]; an all-zero block gets e = -127 (byte 0).
enum class MxScaleRule : std::uint8_t { ocp_floor, ceil, nvidia };

/// Overflow behaviour of a stand-alone minifloat conversion (Minifloat::encode).
/// Inside ptq's quantizers (scaled FP8 and MXFP) conversion always saturates.
enum class Overflow : std::uint8_t { saturate, non_saturating };

/// How a group's range [lo, hi] is chosen before its parameters are computed.
///  - min_max:    the group's minimum and maximum (absmax for symmetric/MX formats);
///  - mse_search: the shrink factor(s) p of a grid that minimise sum |x - Q(x)|^norm over the
///                group, with the range [p_lo * lo, p_hi * hi] (see ClipSearch).
enum class RangeMethod : std::uint8_t { min_max, mse_search };

/// How a candidate shrink factor p clips a group's range [lo, hi] in the clipping search.
///  - scale:        [p_lo * lo, p_hi * hi] (LLMC's clipping, GPTQ's MSE grid; default);
///  - clamp_absmax: [max(lo, -p a), min(hi, p a)], a = max(|lo|, |hi|): the range of the
///                  weights clamped to [-p a, p a] (llm-awq's clipping).
/// The two agree for symmetric and MX formats (only max(|lo|, |hi|) matters there).
enum class ClipBounds : std::uint8_t { scale, clamp_absmax };

/// Grid of the clipping search (observe/clip_search.hpp). Shrink factors are
/// p = 1 - i / grid for i = 0 .. floor(max_shrink * grid) (default: 1, 0.95, ..., 0.5 as in
/// AWQ; GPTQ's reference uses grid 100, max_shrink 0.8, norm 2.4).
///  - separate_bounds = false: one factor for both ends (LLMC's CS-sym);
///  - separate_bounds = true: lower and upper factors searched independently over the grid
///    (LLMC's CS-asym; (n+1)^2 candidates). Only meaningful for asymmetric INT formats with
///    ClipBounds::scale; symmetric and MX formats always use one factor.
///  - norm: the exponent of the weight error sum |x - Q(x)|^norm (RangeMethod::mse_search;
///    AWQ scores its candidates on the layer output instead and ignores it).
struct ClipSearch {
    int grid = 20;
    float max_shrink = 0.5f;
    float norm = 2.0f;
    bool separate_bounds = false;
    ClipBounds bounds = ClipBounds::scale;
};

/// The type a model file stores a float group scale in (and an asymmetric format's float
/// minimum), so that ptq can compute every code with the value the consumer will read back:
///  - f32:  no rounding (default; ptq's own storage);
///  - f16:  IEEE binary16 (GPTQ, AWQ, GGUF's Q4_0 / Q4_1 / Q8_0 `d`);
///  - bf16: bfloat16.
/// With f16 / bf16 a format rounds its scale to the storage type (round to nearest, ties to
/// even) and clamps it to the type's positive finite range (format/scale_storage.hpp) *before*
/// it computes the zero point and the codes, so the stored file dequantizes to exactly the
/// weights ptq evaluated. MX formats ignore it: their E8M0 scale is already exact.
enum class ScaleStorage : std::uint8_t { f32, f16, bf16 };

/// Options of every round-to-nearest quantizer. Plain struct; all defaults documented.
struct QuantOptions {
    Rounding rounding = Rounding::half_even;  ///< rounding of x/scale (and of the zero point)
    bool widen_to_zero = true;                ///< asymmetric INT: widen [min, max] to contain 0 (GPTQ: yes, AWQ: no)
    MxScaleRule mx_scale_rule = MxScaleRule::ocp_floor;  ///< MX formats only
    NonFinite non_finite = NonFinite::error;             ///< NaN / Inf policy
    RangeMethod range = RangeMethod::min_max;            ///< how each group's range is chosen
    ClipSearch clip{};                                   ///< grid of RangeMethod::mse_search
    ScaleStorage scale_storage = ScaleStorage::f32;      ///< storage type scales are rounded to
};

}  // namespace ptq
