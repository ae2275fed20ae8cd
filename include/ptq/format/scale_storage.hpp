#pragma once
// Rounding a float group scale (or float minimum) to the type a model file stores it in
// (QuantOptions::scale_storage), so that the codes are computed with the stored value.
//
//   f32:  identity.
//   f16:  round to nearest, ties to even (format/half.hpp), then clamp to fp16's positive
//         finite range [2^-24, 65504] (smallest subnormal .. largest finite): a scale never
//         becomes 0 or Inf. Scales past 65504 (groups with max|x| > 65504 * qmax) saturate,
//         and their largest elements are clipped by the code clamp.
//   bf16: round to nearest, ties to even, then clamp to bf16's positive finite range
//         [2^-133, 0x1.FEp127] (smallest subnormal .. largest finite).
// NaN stays NaN (the NonFinite::propagate marker). A signed float minimum is rounded the same
// way and only clamped at the large end (to_stored_value).
#include <cmath>
#include <cstdint>
#include <limits>

#include <ptq/format/half.hpp>
#include <ptq/format/options.hpp>

namespace ptq {

/// Smallest positive finite value of the storage type (f32: FLT_MIN, ptq's own scale clamp).
constexpr float scale_storage_min(ScaleStorage st) noexcept {
    switch (st) {
        case ScaleStorage::f16: return 0x1p-24f;
        case ScaleStorage::bf16: return 0x1p-133f;
        case ScaleStorage::f32:
        default: return std::numeric_limits<float>::min();
    }
}
/// Largest finite value of the storage type.
constexpr float scale_storage_max(ScaleStorage st) noexcept {
    switch (st) {
        case ScaleStorage::f16: return 65504.0f;
        case ScaleStorage::bf16: return 0x1.FEp127f;
        case ScaleStorage::f32:
        default: return std::numeric_limits<float>::max();
    }
}

/// x rounded to the storage type (RNE), as a float; Inf past the range. f32: x.
constexpr float round_to_storage(float x, ScaleStorage st) noexcept {
    switch (st) {
        case ScaleStorage::f16: return round_to_half(x);
        case ScaleStorage::bf16: return round_to_bf16(x);
        case ScaleStorage::f32:
        default: return x;
    }
}

/// True if x is a value the storage type holds exactly (NaN: false).
constexpr bool is_storable(float x, ScaleStorage st) noexcept { return !(x != x) && round_to_storage(x, st) == x; }

/// A positive scale as stored: RNE to the storage type, clamped to
/// [scale_storage_min, scale_storage_max]. f32 returns s unchanged. NaN stays NaN.
constexpr float to_stored_scale(float s, ScaleStorage st) noexcept {
    if (st == ScaleStorage::f32 || s != s) return s;
    const float r = round_to_storage(s, st);
    if (!(r >= scale_storage_min(st))) return scale_storage_min(st);  // 0 (and underflow)
    if (r > scale_storage_max(st)) return scale_storage_max(st);      // Inf
    return r;
}

/// The largest storable positive scale <= s (s > 0): used where a scale must not grow (the
/// cap that keeps every code's value finite). Clamped to scale_storage_min. f32 returns s.
constexpr float stored_scale_below(float s, ScaleStorage st) noexcept {
    if (st == ScaleStorage::f32 || s != s) return s;
    const float r = to_stored_scale(s, st);
    if (r <= s || r == scale_storage_min(st)) return r;
    // r is the nearest storable value and lies above s: the previous one lies below s.
    if (st == ScaleStorage::f16) return half_bits_to_float(static_cast<std::uint16_t>(float_to_half_bits(r) - 1u));
    return bf16_bits_to_float(static_cast<std::uint16_t>(float_to_bf16_bits(r) - 1u));
}

/// A signed value (a float minimum) as stored: RNE to the storage type (magnitudes below half
/// the smallest subnormal become +-0), magnitudes past the largest finite value clamped to it
/// with the sign kept (never Inf). f32 returns v. NaN stays NaN.
constexpr float to_stored_value(float v, ScaleStorage st) noexcept {
    if (st == ScaleStorage::f32 || v != v) return v;
    const float r = round_to_storage(v, st), mx = scale_storage_max(st);
    return r > mx ? mx : (r < -mx ? -mx : r);
}

}  // namespace ptq
