#pragma once
// A seeded random source whose output is the same on every platform and standard library
// (std::normal_distribution is implementation-defined; std::mt19937_64 is not).
#include <cmath>
#include <cstdint>
#include <random>

namespace ptq::detail {

/// Uniform doubles in (0, 1), random signs and standard normal doubles from std::mt19937_64.
class SeededRandom {
public:
    explicit SeededRandom(std::uint64_t seed) : g_(seed) {}
    /// (k + 0.5) / 2^53 from the top 53 bits: never 0 or 1.
    double uniform() noexcept { return (double(g_() >> 11) + 0.5) * 0x1.0p-53; }
    /// +1 or -1 from the top bit.
    float sign() noexcept { return (g_() >> 63) ? -1.0f : 1.0f; }
    /// Box-Muller: sqrt(-2 ln u1) cos(2 pi u2) (one normal per two uniforms).
    double normal() noexcept {
        const double u1 = uniform(), u2 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
    }

private:
    std::mt19937_64 g_;
};

}  // namespace ptq::detail
