#pragma once
// The statistics of a group that a format needs to choose its parameters.
#include <cmath>
#include <cstddef>
#include <limits>

namespace ptq {

/// Range of a group of values: minimum and maximum over its finite elements, and whether a
/// NaN or Inf was seen. An empty group has lo = +inf, hi = -inf.
struct RangeStats {
    float lo = std::numeric_limits<float>::infinity();
    float hi = -std::numeric_limits<float>::infinity();
    bool non_finite = false;

    /// max(|lo|, |hi|): the largest magnitude in the group (0 for an all-zero group).
    /// (A comparison, not std::fmax: lo and hi are never NaN, and the call would go to libm.)
    float absmax() const noexcept {
        const float a = std::fabs(lo), b = std::fabs(hi);
        return a > b ? a : b;
    }
    bool empty() const noexcept { return lo > hi; }
    void add(float x) noexcept {
        if (!std::isfinite(x)) {
            non_finite = true;
            return;
        }
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    void merge(const RangeStats& o) noexcept {
        lo = o.lo < lo ? o.lo : lo;
        hi = o.hi > hi ? o.hi : hi;
        non_finite = non_finite || o.non_finite;
    }
};

/// Scalar reference: range of x[0..n).
inline RangeStats range_of(const float* x, std::size_t n) noexcept {
    RangeStats s;
    for (std::size_t i = 0; i < n; ++i) s.add(x[i]);
    return s;
}

}  // namespace ptq
