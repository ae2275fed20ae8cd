#pragma once
// Rounding policies shared by every format.
#include <cmath>
#include <cstdint>

namespace ptq {

/// How a real value is rounded to the nearest integer (or grid point).
///  - half_even: ties go to the even integer (IEEE 754 roundTiesToEven). Default.
///  - half_away: ties go away from zero (the MX emulation library's default, std::round).
/// Both round a non-tie to the nearest integer. The scalar half_even path uses std::nearbyint
/// and therefore assumes the default floating-point environment (FE_TONEAREST); the SIMD
/// kernels use an explicit round-to-nearest-even instruction, and tests check they agree.
enum class Rounding : std::uint8_t { half_even, half_away };

/// Round `v` to an integral float under `r`. NaN stays NaN; +-Inf stays +-Inf.
inline float round_integral(float v, Rounding r) noexcept {
    return r == Rounding::half_even ? std::nearbyint(v) : std::round(v);
}

constexpr const char* to_string(Rounding r) noexcept { return r == Rounding::half_even ? "half-even" : "half-away"; }

}  // namespace ptq
