#pragma once
// Range estimation: min-max, and the MSE clipping search over a grid of shrink factors.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/format/options.hpp>
#include <ptq/format/range.hpp>

namespace ptq {

namespace detail {
inline void check_clip(const ClipSearch& c) {
    if (c.grid < 1) throw_invalid("clip_search", "clip.grid", "must be at least 1");
    if (!(c.max_shrink >= 0.0f && c.max_shrink < 1.0f))
        throw_invalid("clip_search", "clip.max_shrink", "must be in [0, 1)");
    if (!(c.norm > 0.0f) || !std::isfinite(c.norm)) throw_invalid("clip_search", "clip.norm", "must be finite and > 0");
}
inline double error_power(double d, float norm) noexcept { return norm == 2.0f ? d * d : std::pow(d, double(norm)); }
}  // namespace detail

/// Quantization error sum_i |x_i - dequantize(quantize(x_i))|^norm of a group with params p.
template <QuantFormat F>
double group_error(const float* x, std::size_t n, const typename F::Params& p, Rounding r, float norm) noexcept {
    double e = 0.0;
    for (std::size_t i = 0; i < n; ++i)
        e += detail::error_power(std::fabs(double(x[i]) - double(F::dequantize(F::quantize(x[i], p, r), p))), norm);
    return e;
}

/// Parameters of the group x[0..n) chosen by the MSE clipping search (RangeMethod::mse_search):
/// for each candidate shrink factor p = 1 - i/grid, i = 0 .. floor(max_shrink*grid), the range
/// [p_lo * lo, p_hi * hi] (p_lo = p_hi unless separate_bounds and the format is asymmetric
/// INT) is turned into parameters by F::make_params and scored by group_error; the first
/// candidate with the lowest error wins, so p = 1 (plain min-max) is chosen unless another
/// factor is strictly better: the search never does worse than min-max on its own metric.
/// `stats` must be range_of(x, n) and must be finite (non-finite groups are handled by the caller).
template <QuantFormat F>
typename F::Params clip_search_params(const float* x, std::size_t n, const RangeStats& stats, const QuantOptions& o) {
    detail::check_clip(o.clip);
    const int steps = static_cast<int>(std::floor(double(o.clip.max_shrink) * o.clip.grid + 1e-9));
    auto best = F::make_params(stats, o);
    if (stats.empty() || stats.lo == stats.hi) return best;  // constant groups are exact already
    double best_err = group_error<F>(x, n, best, o.rounding, o.clip.norm);
    bool separate = false;
    if constexpr (F::kind == FormatKind::integer) separate = o.clip.separate_bounds && F::has_zero_point;
    for (int i = 0; i <= steps; ++i) {
        const float pl = 1.0f - float(i) / float(o.clip.grid);
        for (int j = separate ? 0 : i; j <= (separate ? steps : i); ++j) {
            if (i == 0 && j == 0) continue;  // that is min-max, already scored
            const float ph = 1.0f - float(j) / float(o.clip.grid);
            RangeStats s = stats;
            s.lo = stats.lo * pl;
            s.hi = stats.hi * ph;
            if (s.lo == s.hi) continue;  // would take the exact-constant path: not a clip
            const auto p = F::make_params(s, o);
            const double err = group_error<F>(x, n, p, o.rounding, o.clip.norm);
            if (err < best_err) {
                best_err = err;
                best = p;
            }
        }
    }
    return best;
}

/// Parameters of the group x[0..n) by the range method of `o` (min-max or MSE search).
template <QuantFormat F>
typename F::Params choose_params(const float* x, std::size_t n, const RangeStats& stats, const QuantOptions& o) {
    if (o.range == RangeMethod::mse_search && !stats.non_finite) return clip_search_params<F>(x, n, stats, o);
    return F::make_params(stats, o);
}

}  // namespace ptq
