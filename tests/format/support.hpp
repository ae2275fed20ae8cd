#pragma once
// Test support shared by the format / granularity / observe / algo / metric tests:
// deterministic random data, and *independent* oracles written straight from the spec
// (docs/DESIGN.md §6, OCP MX v1.0, OCP FP8). Nothing here calls the code under test to produce an
// expected value.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <Eigen/Core>

// The headers under test (not the umbrella, so that these tests do not depend on unrelated
// headers being work in progress).
#include <ptq/algo/rtn.hpp>
#include <ptq/error.hpp>
#include <ptq/format/e8m0.hpp>
#include <ptq/format/int_format.hpp>
#include <ptq/format/minifloat.hpp>
#include <ptq/format/mx_fp.hpp>
#include <ptq/format/mx_int.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/packing.hpp>
#include <ptq/metric/metrics.hpp>
#include <ptq/observe/clip_search.hpp>
#include <ptq/quantized_matrix.hpp>

namespace ptq_test {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// ---- random data ---------------------------------------------------------------------------

enum class Dist { normal, heavy_tailed, positive, outliers, tiny, huge };
inline constexpr Dist all_dists[] = {Dist::normal,   Dist::heavy_tailed, Dist::positive,
                                     Dist::outliers, Dist::tiny,         Dist::huge};

/// r x c matrix (type M) of N(0, sd^2) samples from mt19937(seed), drawn in M's storage order.
template <class M = RowMatrixXf>
M gaussian(Eigen::Index r, Eigen::Index c, unsigned seed, float sd = 1.0f) {
    std::mt19937 g(seed);
    std::normal_distribution<float> n(0.0f, sd);
    M m(r, c);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = n(g);
    return m;
}

inline RowMatrixXf random_matrix(std::size_t rows, std::size_t cols, Dist d, std::uint32_t seed) {
    std::mt19937 g(seed);
    std::normal_distribution<float> n(0.0f, 1.0f);
    std::uniform_real_distribution<float> u(0.05f, 1.0f);
    std::uniform_real_distribution<float> u01(0.0f, 1.0f);
    RowMatrixXf m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
    for (Eigen::Index i = 0; i < m.rows(); ++i)
        for (Eigen::Index j = 0; j < m.cols(); ++j) {
            float v = n(g);
            switch (d) {
                case Dist::normal: break;
                case Dist::heavy_tailed: v = v / std::pow(u(g), 1.5f); break;  // Pareto-like tails
                case Dist::positive: v = std::fabs(v) + 0.25f; break;
                case Dist::outliers: v = (u01(g) < 0.02f) ? v * 300.0f : v; break;
                case Dist::tiny: v *= 1e-30f; break;
                case Dist::huge: v *= 1e30f; break;
            }
            m(i, j) = v;
        }
    return m;
}

// ---- independent minifloat oracle ----------------------------------------------------------
// Decoding from the bit fields (sign | exponent E bits | mantissa M bits, bias 2^(E-1)-1),
// with the OCP special values: E4M3 ("E4M3FN") has NaN = S.1111.111 and no Inf; E5M2 is
// IEEE-like (Inf = S.11111.00, NaN = S.11111.{01,10,11}); FP6/FP4 have no specials.

struct MiniSpec {
    int E, M;
    int bias() const { return (1 << (E - 1)) - 1; }
    int bits() const { return 1 + E + M; }
    bool e4m3() const { return E == 4 && M == 3; }
    bool e5m2() const { return E == 5 && M == 2; }
    std::uint32_t mag_mask() const { return (1u << (E + M)) - 1u; }
    bool is_nan(std::uint32_t c) const {
        const std::uint32_t mag = c & mag_mask();
        const std::uint32_t ef = mag >> M, mf = mag & ((1u << M) - 1u);
        if (e4m3()) return ef == 15 && mf == 7;
        if (e5m2()) return ef == 31 && mf != 0;
        return false;
    }
    bool is_inf(std::uint32_t c) const {
        const std::uint32_t mag = c & mag_mask();
        return e5m2() && (mag >> M) == 31 && (mag & 3u) == 0;
    }
    /// Value in double (NaN / Inf for the specials).
    double decode(std::uint32_t c) const {
        if (is_nan(c)) return std::numeric_limits<double>::quiet_NaN();
        const bool neg = (c >> (E + M)) & 1u;
        if (is_inf(c)) return neg ? -INFINITY : INFINITY;
        const std::uint32_t mag = c & mag_mask();
        const int ef = int(mag >> M), mf = int(mag & ((1u << M) - 1u));
        const double v = ef == 0 ? std::ldexp(double(mf), 1 - bias() - M)
                                 : std::ldexp(1.0 + double(mf) / double(1 << M), ef - bias());
        return neg ? -v : v;
    }
    /// Largest finite magnitude code (found by scanning, not taken from the library).
    std::uint32_t max_mag() const {
        std::uint32_t best = 0;
        for (std::uint32_t m = 0; m <= mag_mask(); ++m)
            if (!is_nan(m) && !is_inf(m)) best = m;
        return best;
    }
    double max_value() const { return decode(max_mag()); }
    /// Grid step of the binade holding the largest finite value.
    double top_step() const { return decode(max_mag()) - decode(max_mag() - 1); }

    /// Oracle conversion: nearest finite magnitude by brute force over the code table; a tie
    /// goes to the even magnitude code (half_even: even mantissa LSB = IEEE RNE) or to the
    /// larger magnitude (half_away). The magnitude after the largest finite one is the
    /// "unbounded exponent" value max + top_step (with code max_mag + 1): rounding to it is an
    /// overflow, which saturates, or gives Inf (E5M2) / NaN (E4M3) when non-saturating.
    std::uint32_t encode(double x, ptq::Rounding r, ptq::Overflow o) const {
        const std::uint32_t sign = std::signbit(x) ? (1u << (E + M)) : 0u;
        const std::uint32_t mm = max_mag();
        const std::uint32_t nan_mag = 0x7Fu;  // S.1111.111 (E4M3) / S.11111.11 (E5M2)
        if (std::isnan(x)) return (e4m3() || e5m2()) ? (sign | nan_mag) : 0u;
        const double a = std::fabs(x);
        std::uint32_t k;
        if (std::isinf(a)) {
            k = mm + 1;
        } else {
            auto mag_value = [&](std::uint32_t m) { return m <= mm ? decode(m) : decode(mm) + top_step(); };
            std::uint32_t lo = 0;
            while (lo + 1 <= mm + 1 && mag_value(lo + 1) <= a) ++lo;
            if (lo == mm + 1 || mag_value(lo) == a) {
                k = lo;
            } else {
                const double dl = a - mag_value(lo), du = mag_value(lo + 1) - a;
                if (dl < du) k = lo;
                else if (du < dl) k = lo + 1;
                else k = (r == ptq::Rounding::half_away) ? lo + 1 : ((lo % 2 == 0) ? lo : lo + 1);
            }
        }
        if (k > mm) {
            if (o == ptq::Overflow::saturate || !(e4m3() || e5m2())) k = mm;
            else k = e5m2() ? 0x7Cu : 0x7Fu;
        }
        return sign | k;
    }
};

// ---- naive integer references ------------------------------------------------------------

/// Round half to even / half away, in double.
inline double round_ref(double v, ptq::Rounding r) {
    if (r == ptq::Rounding::half_away) return v < 0 ? -std::floor(-v + 0.5) : std::floor(v + 0.5);
    const double f = std::floor(v);
    const double d = v - f;
    if (d < 0.5) return f;
    if (d > 0.5) return f + 1;
    return std::fmod(f, 2.0) == 0.0 ? f : f + 1;
}

/// ulp distance between two finite floats of the same sign (0 when equal).
inline std::int64_t ulp_distance(float a, float b) {
    auto key = [](float f) {
        const std::int32_t i = std::bit_cast<std::int32_t>(f);
        return i < 0 ? std::int64_t(std::numeric_limits<std::int32_t>::min()) - i : std::int64_t(i);
    };
    const std::int64_t d = key(a) - key(b);
    return d < 0 ? -d : d;
}

}  // namespace ptq_test
