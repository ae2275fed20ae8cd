#pragma once
// Range estimation: min-max, and the clipping search over a grid of shrink factors with a
// pluggable score (the weight error here; AWQ scores on the layer output).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <ptq/error.hpp>
#include <ptq/format/concepts.hpp>
#include <ptq/format/options.hpp>
#include <ptq/format/range.hpp>

namespace ptq {

namespace detail {
inline void check_clip(const ClipSearch& c, const char* fn = "clip_search", const char* arg = "clip") {
    const std::string a(arg);
    if (c.grid < 1) throw_invalid(fn, a + ".grid", "must be at least 1");
    if (!(c.max_shrink >= 0.0f && c.max_shrink < 1.0f)) throw_invalid(fn, a + ".max_shrink", "must be in [0, 1)");
    if (!(c.norm > 0.0f) || !std::isfinite(c.norm)) throw_invalid(fn, a + ".norm", "must be finite and > 0");
}
/// The checks of QuantOptions that do not depend on the data: the clip grid when the range
/// method searches it (named '<arg>.clip.grid', ...).
inline void check_quant_options(const QuantOptions& o, const char* fn, const char* arg) {
    if (o.range == RangeMethod::mse_search) check_clip(o.clip, fn, (std::string(arg) + ".clip").c_str());
}
inline double error_power(double d, float norm) noexcept { return norm == 2.0f ? d * d : std::pow(d, double(norm)); }

/// The range of candidate (p_lo, p_hi) for a group with range s (see ClipBounds); false when
/// it is not a proper interval lo < hi (a constant group, or a one-sided group whose nearer
/// bound lies beyond the clip): such candidates are skipped.
inline bool clip_candidate(const RangeStats& s, float pl, float ph, ClipBounds b, RangeStats& c) noexcept {
    c = s;
    if (b == ClipBounds::scale) {
        c.lo = s.lo * pl;
        c.hi = s.hi * ph;
    } else {
        const float a = pl * s.absmax();
        c.lo = s.lo > -a ? s.lo : -a;
        c.hi = s.hi < a ? s.hi : a;
    }
    return c.lo < c.hi;
}

/// m values of T: on the stack for m <= 1 (the common single-group search), else on the heap.
template <class T>
struct SmallBuffer {
    T one{};
    std::vector<T> many;
    std::span<T> get(std::size_t m) {
        if (m <= 1) return {&one, m};
        many.resize(m);
        return many;
    }
};
}  // namespace detail

/// Quantization error sum_i |x_i - dequantize(quantize(x_i))|^norm of a group with params p.
template <QuantFormat F>
double group_error(const float* x, std::size_t n, const typename F::Params& p, Rounding r, float norm) noexcept {
    double e = 0.0;
    for (std::size_t i = 0; i < n; ++i)
        e += detail::error_power(std::fabs(double(x[i]) - double(F::dequantize(F::quantize(x[i], p, r), p))), norm);
    return e;
}

/// The clipping search, for a batch of m groups with finite ranges stats[k] (RangeStats of
/// their elements): the min-max parameters F::make_params(stats[k], o) are scored first; then
/// for each candidate shrink factor p = 1 - i/clip.grid, i = 0 .. floor(clip.max_shrink *
/// clip.grid) (and, with separate_bounds for an asymmetric INT format and ClipBounds::scale,
/// every pair (p_lo, p_hi) of the grid, i outer, j inner), the clipped range of ClipBounds is
/// turned into parameters by F::make_params, candidates that are not a proper interval being
/// skipped. score(candidates, errors) sets errors[k] to the error of group k with
/// candidates[k], for the whole batch at once (AWQ scores the rows of a column group with one
/// GEMM; errors of skipped groups are ignored). Per group the first candidate with the lowest
/// error wins, so min-max is kept unless another candidate is strictly better: the search
/// never does worse than min-max on its own score. Result in best[0 .. m).
template <QuantFormat F, class Score>
void clip_search(std::span<const RangeStats> stats, const ClipSearch& clip, const QuantOptions& o, Score&& score,
                 std::span<typename F::Params> best) {
    using Params = typename F::Params;
    detail::check_clip(clip);
    const std::size_t m = stats.size();
    if (best.size() != m) detail::throw_invalid("clip_search", "best", "size differs from stats");
    detail::SmallBuffer<Params> cand_buf;
    detail::SmallBuffer<double> err_buf, best_err_buf;
    detail::SmallBuffer<unsigned char> ok_buf;
    const auto cand = cand_buf.get(m);
    const auto err = err_buf.get(m), best_err = best_err_buf.get(m);
    const auto ok = ok_buf.get(m);
    for (std::size_t k = 0; k < m; ++k) best[k] = cand[k] = F::make_params(stats[k], o);
    score(std::span<const Params>(cand), best_err);
    bool separate = false;
    if constexpr (F::kind == FormatKind::integer)
        separate = clip.separate_bounds && F::has_zero_point && clip.bounds == ClipBounds::scale;
    const int steps = static_cast<int>(std::floor(double(clip.max_shrink) * clip.grid + 1e-9));
    for (int i = 0; i <= steps; ++i) {
        const float pl = 1.0f - float(i) / float(clip.grid);
        for (int j = separate ? 0 : i; j <= (separate ? steps : i); ++j) {
            if (i == 0 && j == 0) continue;  // that is min-max, already scored
            const float ph = 1.0f - float(j) / float(clip.grid);
            bool any = false;
            for (std::size_t k = 0; k < m; ++k) {
                RangeStats s;
                ok[k] = detail::clip_candidate(stats[k], pl, ph, clip.bounds, s);
                cand[k] = ok[k] ? F::make_params(s, o) : best[k];
                any = any || ok[k];
            }
            if (!any) continue;
            score(std::span<const Params>(cand), err);
            for (std::size_t k = 0; k < m; ++k)
                if (ok[k] && err[k] < best_err[k]) {
                    best_err[k] = err[k];
                    best[k] = cand[k];
                }
        }
    }
}

/// Parameters of the group x[0..n) chosen by the clipping search scored on the weight error
/// group_error (RangeMethod::mse_search, the grid of o.clip). `stats` must be range_of(x, n)
/// and must be finite (non-finite groups are handled by the caller).
template <QuantFormat F>
typename F::Params clip_search_params(const float* x, std::size_t n, const RangeStats& stats, const QuantOptions& o) {
    using Params = typename F::Params;
    Params best;
    clip_search<F>(
        std::span<const RangeStats>(&stats, 1), o.clip, o,
        [&](std::span<const Params> c, std::span<double> e) {
            e[0] = group_error<F>(x, n, c[0], o.rounding, o.clip.norm);
        },
        std::span<Params>(&best, 1));
    return best;
}

/// Parameters of the group x[0..n) by the range method of `o` (min-max or MSE search).
template <QuantFormat F>
typename F::Params choose_params(const float* x, std::size_t n, const RangeStats& stats, const QuantOptions& o) {
    if (o.range == RangeMethod::mse_search && !stats.non_finite) return clip_search_params<F>(x, n, stats, o);
    return F::make_params(stats, o);
}

}  // namespace ptq
