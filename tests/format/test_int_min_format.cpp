// IntMinFormat<b>: integer codes with a float scale and a float minimum (ggml's Q4_1 form).
// Parameters and codes against a scalar oracle written from the formulas in the header
// comment; RTN / GPTQ properties; degenerate and extreme groups.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <ptq/algo/gptq.hpp>
#include <ptq/calib/calibration_stats.hpp>
#include <ptq/format/int_min_format.hpp>
#include <ptq/metric/metrics.hpp>

#include "support.hpp"

namespace {

using ptq::ScaleStorage;
using ptq_test::Dist;
using RM = ptq_test::RowMatrixXf;

/// Significant bits of a positive normal float (position of the lowest set mantissa bit).
int significant_bits(float s) {
    std::uint32_t m = (std::bit_cast<std::uint32_t>(s) & 0x7FFFFFu) | 0x800000u;
    int n = 24;
    while ((m & 1u) == 0) m >>= 1, --n;
    return n;
}

/// Oracle of make_params for an ordinary group (lo < hi, range far from FLT_MAX): min = lo
/// (fp16-rounded for f16 storage), scale = (hi - min) / levels in double, to float, fp16-
/// rounded for f16, then nearest even on 24 - b significant bits (double arithmetic).
template <int B>
typename ptq::IntMinFormat<B>::Params oracle_params(float lo, float hi, ScaleStorage st) {
    const float mn = st == ScaleStorage::f16 ? ptq::round_to_half(lo) : lo;
    float s = float((double(hi) - double(mn)) / double((1 << B) - 1));
    if (st == ScaleStorage::f16) s = ptq::round_to_half(s);
    // nearest even on 24 - B bits: s = m * 2^e with m in [2^(23-B), 2^(24-B))
    int e = 0;
    const double fr = std::frexp(double(s), &e);  // s = fr * 2^e, fr in [0.5, 1)
    const double m = fr * std::ldexp(1.0, 24 - B);
    const double r = ptq_test::round_ref(m, ptq::Rounding::half_even);
    return {float(std::ldexp(r, e - (24 - B))), mn};
}

}  // namespace

TEST_SUITE("format.int_min") {

TEST_CASE_TEMPLATE("make_params and codes == the formula oracle", F, ptq::IntMinFormat<2>, ptq::IntMinFormat<4>,
                   ptq::IntMinFormat<8>) {
    constexpr int B = F::bits;
    std::uint32_t seed = 1;
    for (ScaleStorage st : {ScaleStorage::f32, ScaleStorage::f16}) {
        ptq::QuantOptions o;
        o.scale_storage = st;
        for (Dist d : {Dist::normal, Dist::heavy_tailed, Dist::positive, Dist::outliers}) {
            CAPTURE(int(st));
            CAPTURE(int(d));
            const RM w = ptq_test::random_matrix(6, 96, d, seed++);
            const auto q = ptq::Rtn<F, ptq::PerGroup<32>>(o).quantize(w);
            int bad_p = 0, bad_c = 0, bad_v = 0;
            const RM wh = ptq::dequantize(q);
            for (std::size_t r = 0; r < 6; ++r)
                for (std::size_t g = 0; g < 3; ++g) {
                    float lo = INFINITY, hi = -INFINITY;
                    for (std::size_t c = 32 * g; c < 32 * g + 32; ++c)
                        lo = std::min(lo, w(Eigen::Index(r), Eigen::Index(c))),
                        hi = std::max(hi, w(Eigen::Index(r), Eigen::Index(c)));
                    const auto want = oracle_params<B>(lo, hi, st);
                    const auto& p = q.row_params(r)[g];
                    if (!(p == want)) ++bad_p;
                    CHECK(significant_bits(p.scale) <= 24 - B);
                    const float inv = 1.0f / p.scale;
                    for (std::size_t c = 32 * g; c < 32 * g + 32; ++c) {
                        const float x = w(Eigen::Index(r), Eigen::Index(c));
                        const double t = ptq_test::round_ref(double((x - p.min) * inv), ptq::Rounding::half_even);
                        const int code = int(std::min(std::max(t, 0.0), double((1 << B) - 1)));
                        if (q.code(r, c) != code) ++bad_c;
                        // decode: the product is exact, so one rounding of the exact value
                        const double exact = double(p.scale) * code + double(p.min);
                        if (wh(Eigen::Index(r), Eigen::Index(c)) != float(exact)) ++bad_v;
                    }
                }
            CHECK(bad_p == 0);
            CHECK(bad_c == 0);
            CHECK(bad_v == 0);
        }
    }
}

TEST_CASE_TEMPLATE("RTN properties: error bound, monotonicity, both ends reached", F, ptq::IntMinFormat<3>,
                   ptq::IntMinFormat<4>, ptq::IntMinFormat<8>) {
    std::uint32_t seed = 50;
    for (Dist d : ptq_test::all_dists) {
        for (const auto& shape : {std::pair<int, int>{5, 103}, {3, 172}, {1, 1}, {4, 64}}) {
            const int rows = shape.first, cols = shape.second;  // (clang 14: no lambda capture of bindings)
            CAPTURE(int(d));
            CAPTURE(cols);
            const RM w = ptq_test::random_matrix(std::size_t(rows), std::size_t(cols), d, seed++);
            for (ScaleStorage st : {ScaleStorage::f32, ScaleStorage::f16}) {
                if (st == ScaleStorage::f16 && (d == Dist::huge || d == Dist::tiny)) continue;  // outside fp16
                ptq::QuantOptions o;
                o.scale_storage = st;
                const auto q = ptq::Rtn<F, ptq::PerGroup<32>>(o).quantize(w);
                const RM wh = ptq::dequantize(q);
                int bad = 0, mono = 0;
                for (Eigen::Index r = 0; r < w.rows(); ++r)
                    for (Eigen::Index c = 0; c < w.cols(); ++c) {
                        const auto& p = q.row_params(std::size_t(r))[std::size_t(c) / 32];
                        const double x = w(r, c), top = double(p.min) + double(p.scale) * F::levels;
                        const double clip = std::max({0.0, double(p.min) - x, x - top});
                        const double bound = clip + 0.5 * p.scale * (1 + 1e-5) + std::ldexp(std::fabs(x), -22) + 1e-44;
                        if (!(std::fabs(x - wh(r, c)) <= bound) && ++bad <= 2) {
                            CAPTURE(x);
                            CAPTURE(wh(r, c));
                            CAPTURE(p.scale);
                            CAPTURE(p.min);
                            CAPTURE(int(st));
                            CHECK(std::fabs(x - wh(r, c)) <= bound);
                        }
                        // in f32 nothing is clipped beyond rounding: lo = min, and hi misses top by at most
                        // the scale's two roundings (float, then 24 - b bits: < one ulp of 24 - b bits) times the
                        // levels
                        const double slack = F::levels * p.scale * std::ldexp(1.0, -(23 - F::bits)) +
                                             std::ldexp(std::fabs(x), -22) + 1e-44;
                        if (st == ScaleStorage::f32 && clip > slack && ++bad <= 2) {
                            CAPTURE(x);
                            CAPTURE(p.scale);
                            CAPTURE(p.min);
                            CAPTURE(top);
                            CHECK(clip <= slack);
                        }
                        const Eigen::Index g0 = c / 32 * 32;
                        for (Eigen::Index c2 = g0; c2 < std::min<Eigen::Index>(g0 + 32, w.cols()); ++c2)
                            if (w(r, c) < w(r, c2) && wh(r, c) > wh(r, c2)) ++mono;
                    }
                CHECK(bad == 0);
                CHECK(mono == 0);
            }
        }
    }
}

TEST_CASE("degenerate and extreme groups") {
    using F = ptq::IntMinFormat<4>;
    const ptq::QuantOptions o;
    // empty, constant, NaN
    CHECK(F::make_params(ptq::RangeStats{}, o) == F::Params{1.0f, 0.0f});
    const auto pc = F::make_params(ptq::RangeStats{-0.3f, -0.3f, false}, o);
    CHECK(F::dequantize(F::quantize(-0.3f, pc, ptq::Rounding::half_even), pc) == -0.3f);
    CHECK(F::is_nan(F::make_params(ptq::RangeStats{0.0f, 1.0f, true}, o)));
    CHECK(std::isnan(F::dequantize(3, F::nan_params())));
    // [-FLT_MAX, FLT_MAX]: every code decodes to a finite value, and the scale keeps the exact product.
    constexpr float mx = std::numeric_limits<float>::max();
    for (ScaleStorage st : {ScaleStorage::f32, ScaleStorage::bf16}) {
        ptq::QuantOptions os;
        os.scale_storage = st;
        for (const auto& s : {ptq::RangeStats{-mx, mx, false}, ptq::RangeStats{1e38f, mx, false},
                              ptq::RangeStats{-mx, -1e38f, false}}) {
            const auto p = F::make_params(s, os);
            CHECK(significant_bits(p.scale) <= 20);
            for (int c = 0; c < 16; ++c) CHECK(std::isfinite(F::dequantize(std::uint8_t(c), p)));
            CHECK(F::quantize(s.lo, p, ptq::Rounding::half_even) == 0);
        }
    }
    // tiny ranges: scale clamps to FLT_MIN, values still within half a step
    const auto pt = F::make_params(ptq::RangeStats{1e-39f, 2e-39f, false}, o);
    CHECK(pt.scale >= std::numeric_limits<float>::min());
    // fp16 storage: the minimum saturates at -65504 instead of becoming -Inf
    ptq::QuantOptions oh;
    oh.scale_storage = ScaleStorage::f16;
    const auto ph = F::make_params(ptq::RangeStats{-1e9f, 1.0f, false}, oh);
    CHECK(ph.min == -65504.0f);
    CHECK(ptq::is_storable(ph.scale, ScaleStorage::f16));
    CHECK(ph.min + 15.0f * ph.scale >= 1.0f - ph.scale / 2);
    // metadata counted like a zero point: 4 + 32/32 bits at group 32
    CHECK(ptq::effective_bits<F>(ptq::GroupLayout{1, 64, 1, 32}) == 5.0);
    CHECK(F::name() == "int4-min");
}

TEST_CASE("MSE clipping search through IntMinFormat: never worse than min-max per group") {
    const RM w = ptq_test::random_matrix(6, 96, Dist::heavy_tailed, 31);
    ptq::QuantOptions mm, cs;
    mm.scale_storage = cs.scale_storage = ScaleStorage::f16;
    cs.range = ptq::RangeMethod::mse_search;
    using F = ptq::IntMinFormat<4>;
    const RM a = ptq::dequantize(ptq::Rtn<F, ptq::PerGroup<32>>(mm).quantize(w));
    const auto qc = ptq::Rtn<F, ptq::PerGroup<32>>(cs).quantize(w);
    const RM b = ptq::dequantize(qc);
    int worse = 0, better = 0;
    for (Eigen::Index r = 0; r < 6; ++r)
        for (Eigen::Index g = 0; g < 3; ++g) {
            const double ea = (w.block(r, 32 * g, 1, 32) - a.block(r, 32 * g, 1, 32)).squaredNorm();
            const double eb = (w.block(r, 32 * g, 1, 32) - b.block(r, 32 * g, 1, 32)).squaredNorm();
            worse += eb > ea;
            better += eb < ea;
        }
    CHECK(worse == 0);
    CHECK(better > 0);
    for (const auto& p : qc.params())
        CHECK((ptq::is_storable(p.scale, ScaleStorage::f16) && ptq::is_storable(p.min, ScaleStorage::f16)));
}

TEST_CASE("GPTQ with IntMinFormat<4> and fp16 storage beats RTN") {
    std::mt19937 rng(9);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    Eigen::MatrixXf x(400, 64), w(16, 64);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = nd(rng);
    for (Eigen::Index i = 0; i < x.rows(); ++i) x(i, 9) = x(i, 5) * 0.5f + 0.1f * nd(rng);
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = 0.1f * nd(rng);
    ptq::CalibrationStats cs(64, {ptq::HessianPrecision::double_exact});
    cs.add(x);
    ptq::GptqOptions go;
    go.quant.scale_storage = ScaleStorage::f16;
    const auto r = ptq::Gptq<ptq::IntMinFormat<4>, ptq::PerGroup<32>>(go).quantize(w, cs.hessian());
    CHECK(r.diagnostics.damped_loss < r.diagnostics.damped_loss_rtn);
    for (const auto& p : r.quantized.params()) {
        CHECK(ptq::is_storable(p.scale, ScaleStorage::f16));
        CHECK(ptq::is_storable(p.min, ScaleStorage::f16));
    }
    CHECK(ptq::dequantize(r.quantized) == RM(r.dequantized));
}

}  // TEST_SUITE("format.int_min")
