// Storage-exact scales (QuantOptions::scale_storage): every scale a format chooses is a value
// of the storage type, and the codes are the ones the scalar formula gives with that stored
// scale. Oracles: the fp16 / bf16 grids are enumerated here from their bit fields (not taken
// from the library); codes and zero points are recomputed from the spec formulas.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <ptq/algo/gptq.hpp>
#include <ptq/calib/calibration_stats.hpp>
#include <ptq/format/scale_storage.hpp>

#include "support.hpp"

namespace {

using ptq::ScaleStorage;
using ptq_test::Dist;
using ptq_test::RowMatrixXf;

/// Value of an fp16 / bf16 bit pattern from its fields (independent decoder).
double half_value(std::uint32_t h) {
    const int e = int((h >> 10) & 31u), m = int(h & 1023u);
    const double v = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(1.0 + m / 1024.0, e - 15);
    return (h & 0x8000u) ? -v : v;
}
double bf16_value(std::uint32_t b) {
    const int e = int((b >> 7) & 255u), m = int(b & 127u);
    const double v = e == 0 ? std::ldexp(double(m), -133) : std::ldexp(1.0 + m / 128.0, e - 127);
    return (b & 0x8000u) ? -v : v;
}

/// Sorted positive finite values of the storage type.
const std::vector<double>& grid(ScaleStorage st) {
    static const std::vector<double> h = [] {
        std::vector<double> v;
        for (std::uint32_t c = 1; c < 0x7C00u; ++c) v.push_back(half_value(c));
        return v;
    }();
    static const std::vector<double> b = [] {
        std::vector<double> v;
        for (std::uint32_t c = 1; c < 0x7F80u; ++c) v.push_back(bf16_value(c));
        return v;
    }();
    return st == ScaleStorage::f16 ? h : b;
}

bool on_grid(float s, ScaleStorage st) {
    const auto& g = grid(st);
    return std::binary_search(g.begin(), g.end(), double(s));
}

/// Oracle of to_stored_scale: nearest grid value (ties to the even code = even index + 1 ->
/// odd index in the 0-based table of codes 1..), clamped to the grid's ends.
float stored_oracle(float s, ScaleStorage st) {
    const auto& g = grid(st);
    const double x = s;
    if (x <= g.front()) return float(g.front());
    if (x >= g.back()) {
        return float(g.back());  // clamp (the rounding of anything past the top is Inf, clamped)
    }
    const auto it = std::lower_bound(g.begin(), g.end(), x);
    if (*it == x) return float(x);
    const std::size_t hi = std::size_t(it - g.begin()), lo = hi - 1;
    const double dl = x - g[lo], du = g[hi] - x;
    if (dl < du) return float(g[lo]);
    if (du < dl) return float(g[hi]);
    return float((lo + 1) % 2 == 0 ? g[lo] : g[hi]);  // code lo+1 even -> g[lo]
}

}  // namespace

TEST_SUITE("format.scale_storage") {

TEST_CASE("to_stored_scale: nearest storable value, clamped to the positive finite range") {
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> ex(-40.0f, 40.0f);
    for (ScaleStorage st : {ScaleStorage::f16, ScaleStorage::bf16}) {
        CAPTURE(int(st));
        int bad = 0;
        for (int i = 0; i < 20000; ++i) {
            const float s = std::exp2(ex(rng)) * (1.0f + float(i % 7) / 8.0f);
            const float r = ptq::to_stored_scale(s, st);
            if (!(r == stored_oracle(s, st) && on_grid(r, st))) {
                if (++bad <= 3) {
                    CAPTURE(s);
                    CHECK(r == stored_oracle(s, st));
                }
            }
        }
        CHECK(bad == 0);
        // Ties (midpoints between neighbours) and the clamp ends.
        const auto& g = grid(st);
        for (std::size_t k = 1; k + 1 < g.size(); k += 97) {
            const float mid = float((g[k] + g[k + 1]) / 2);
            if (double(mid) != (g[k] + g[k + 1]) / 2) continue;  // not exact in float
            CHECK(ptq::to_stored_scale(mid, st) == stored_oracle(mid, st));
        }
        CHECK(ptq::to_stored_scale(0.0f, st) == float(g.front()));
        CHECK(ptq::to_stored_scale(float(g.front()) / 4, st) == float(g.front()));
        CHECK(ptq::to_stored_scale(std::numeric_limits<float>::max(), st) == float(g.back()));
        CHECK(ptq::to_stored_scale(std::numeric_limits<float>::infinity(), st) == float(g.back()));
        CHECK(std::isnan(ptq::to_stored_scale(std::numeric_limits<float>::quiet_NaN(), st)));
        CHECK(ptq::scale_storage_min(st) == float(g.front()));
        CHECK(ptq::scale_storage_max(st) == float(g.back()));
    }
    CHECK(ptq::scale_storage_max(ScaleStorage::f16) == 65504.0f);
    CHECK(ptq::scale_storage_min(ScaleStorage::f16) == 0x1p-24f);
    // f32: identity.
    for (float s : {1e-30f, 0.1f, 3.0f, 1e30f}) CHECK(ptq::to_stored_scale(s, ScaleStorage::f32) == s);
}

TEST_CASE("stored_scale_below and to_stored_value") {
    for (ScaleStorage st : {ScaleStorage::f16, ScaleStorage::bf16}) {
        const auto& g = grid(st);
        for (std::size_t k = 3; k + 1 < g.size(); k += 131) {
            // a value just above g[k] that rounds up to g[k+1] or down to g[k]: below is g[k].
            const float s = std::nextafter(float(g[k + 1]), 0.0f);
            CHECK(ptq::stored_scale_below(s, st) == float(g[k]));
            CHECK(ptq::stored_scale_below(float(g[k]), st) == float(g[k]));
        }
        CHECK(ptq::to_stored_value(-std::numeric_limits<float>::max(), st) == -ptq::scale_storage_max(st));
        CHECK(ptq::to_stored_value(0.0f, st) == 0.0f);
        CHECK(ptq::to_stored_value(-0.3f, st) == -stored_oracle(0.3f, st));
    }
}

namespace {

/// Scalar oracle of an INT format's parameters and codes with the stored scale, from the
/// spec formulas (format/int_format.hpp) with the scale rounded by stored_oracle.
template <class F>
void check_int_group(const float* x, std::size_t n, const typename F::Params& p, const ptq::QuantOptions& o,
                     const std::uint8_t* codes, int& bad) {
    const ScaleStorage st = o.scale_storage;
    float lo = INFINITY, hi = -INFINITY;
    for (std::size_t i = 0; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
    float scale;
    std::int32_t zero = F::symmetric_zero;
    if (lo == hi) {
        scale = lo == 0.0f ? 1.0f : stored_oracle(std::fabs(lo), st);
        if (!F::symmetric && lo != 0.0f) zero = lo < 0.0f ? 1 : 0;
    } else if constexpr (F::symmetric) {
        const double qmax = F::range == ptq::IntRange::restricted ? double(F::q_max) : double(F::q_max) + 0.5;
        scale = stored_oracle(std::max(float(double(std::max(-lo, hi)) / qmax), std::numeric_limits<float>::min()), st);
    } else {
        const float l = std::min(lo, 0.0f), h = std::max(hi, 0.0f);
        scale =
            stored_oracle(std::max(float((double(h) - double(l)) / F::levels), std::numeric_limits<float>::min()), st);
        const double z = ptq_test::round_ref(double(-l / scale), o.rounding);
        zero = std::int32_t(std::min(std::max(z, 0.0), double(F::levels)));
    }
    if (!(p.scale == scale && p.zero == zero && on_grid(p.scale, st))) {
        if (++bad <= 3) {
            CAPTURE(lo);
            CAPTURE(hi);
            CHECK(p.scale == scale);
            CHECK(p.zero == zero);
        }
        return;
    }
    const float inv = 1.0f / scale;
    for (std::size_t i = 0; i < n; ++i) {
        const double t = ptq_test::round_ref(double(x[i] * inv), o.rounding) + zero;
        const auto c = std::uint8_t(std::min(std::max(t, double(F::code_min)), double(F::code_max)));
        if (codes[i] != c && ++bad <= 3) {
            CAPTURE(x[i]);
            CHECK(int(codes[i]) == int(c));
        }
    }
}

template <class F>
constexpr bool asym_int() {
    if constexpr (F::kind == ptq::FormatKind::integer) return !F::symmetric;
    else return false;
}

template <class F, class G>
void check_rtn_int(const RowMatrixXf& w, const G& gran, const ptq::QuantOptions& o) {
    const auto q = ptq::Rtn<F, G>(o, gran).quantize(w);
    int bad = 0;
    std::vector<std::uint8_t> codes(std::size_t(w.cols()));
    for (std::size_t r = 0; r < q.rows(); ++r) {
        ptq::ref::unpack_bits(q.row_data(r), 0, q.cols(), F::bits, codes.data());
        for (std::size_t g = 0; g < q.layout().col_groups(); ++g) {
            const std::size_t b = q.layout().group_begin(g), e = q.layout().group_end(g);
            check_int_group<F>(w.data() + r * q.cols() + b, e - b, q.row_params(r)[g], o, codes.data() + b, bad);
        }
    }
    CHECK(bad == 0);
}

}  // namespace

TEST_CASE_TEMPLATE("RTN with fp16/bf16 scales: storable scales, codes from the stored scale", F,
                   ptq::IntFormat<4, true>, ptq::IntFormat<8, true>, ptq::IntFormat<4, false>,
                   ptq::IntFormat<3, true, ptq::IntRange::full>) {
    std::uint32_t seed = 40;
    for (ScaleStorage st : {ScaleStorage::f16, ScaleStorage::bf16}) {
        ptq::QuantOptions o;
        o.scale_storage = st;
        for (Dist d : ptq_test::all_dists) {
            CAPTURE(int(st));
            CAPTURE(int(d));
            const RowMatrixXf w = ptq_test::random_matrix(6, 100, d, seed++);
            check_rtn_int<F>(w, ptq::PerGroup<32>{}, o);
            check_rtn_int<F>(w, ptq::PerChannel{}, o);
        }
    }
}

TEST_CASE_TEMPLATE("RTN with fp16 scales keeps the format properties", F, ptq::IntFormat<4, true>,
                   ptq::IntFormat<4, false>, ptq::IntFormat<8, true>, ptq::Fp8<4, 3>, ptq::Fp4) {
    // Properties: every scale storable, |x - x^| within half a step of the stored scale (or
    // the distance to the clamped end), monotone within each group, Q(DQ(Q(x))) == Q(x).
    ptq::QuantOptions o;
    o.scale_storage = ScaleStorage::f16;
    std::uint32_t seed = 70;
    for (Dist d : {Dist::normal, Dist::heavy_tailed, Dist::positive, Dist::outliers}) {
        CAPTURE(int(d));
        const RowMatrixXf w = ptq_test::random_matrix(5, 96, d, seed++);
        const auto q = ptq::Rtn<F, ptq::PerGroup<32>>(o).quantize(w);
        for (const auto& p : q.params()) CHECK(on_grid(p.scale, ScaleStorage::f16));
        const RowMatrixXf wh = ptq::dequantize(q);
        int bad_err = 0, bad_mono = 0;
        for (Eigen::Index r = 0; r < w.rows(); ++r)
            for (Eigen::Index g = 0; g < 3; ++g) {
                const auto& p = q.row_params(std::size_t(r))[g];
                double step;
                if constexpr (F::kind == ptq::FormatKind::integer) step = p.scale;
                else step = p.scale * F::max_normal / double(1 << F::mantissa_bits);  // >= the top binade's step
                float lo = INFINITY, hi = -INFINITY;
                for (Eigen::Index c = 32 * g; c < 32 * g + 32; ++c)
                    lo = std::min(lo, wh(r, c)), hi = std::max(hi, wh(r, c));
                for (Eigen::Index c = 32 * g; c < 32 * g + 32; ++c) {
                    const double x = w(r, c), err = std::fabs(x - wh(r, c));
                    const double clip = std::max({0.0, x - hi, lo - x});
                    if (!(err <= std::max(0.5 * step * 1.0001, clip + 0.5 * step))) ++bad_err;
                    for (Eigen::Index c2 = 32 * g; c2 < 32 * g + 32; ++c2)
                        if (w(r, c) < w(r, c2) && wh(r, c) > wh(r, c2)) ++bad_mono;
                }
            }
        CHECK(bad_err == 0);
        CHECK(bad_mono == 0);
        // Idempotence (symmetric INT and minifloats: the stored scale times the top code is
        // exact, so the second pass finds the same scale; asymmetric INT is excluded: with a
        // rounded scale the two ends may land on codes 0 and 14).
        if constexpr (!asym_int<F>()) {
            const auto q2 = ptq::Rtn<F, ptq::PerGroup<32>>(o).quantize(wh);
            CHECK(ptq::dequantize(q2) == wh);
        }
    }
}

TEST_CASE("Minifloat with fp16 scales: scale = stored(absmax / max_normal), codes = encode(x / scale)") {
    ptq::QuantOptions o;
    o.scale_storage = ScaleStorage::f16;
    const RowMatrixXf w = ptq_test::random_matrix(4, 64, Dist::heavy_tailed, 91);
    const auto q = ptq::Rtn<ptq::Fp8<4, 3>, ptq::PerGroup<32>>(o).quantize(w);
    const ptq_test::MiniSpec spec{4, 3};
    int bad = 0;
    for (std::size_t r = 0; r < 4; ++r)
        for (std::size_t g = 0; g < 2; ++g) {
            float amax = 0.0f;
            for (std::size_t c = 32 * g; c < 32 * g + 32; ++c)
                amax = std::max(amax, std::fabs(w(Eigen::Index(r), Eigen::Index(c))));
            const float scale = stored_oracle(amax / 448.0f, ScaleStorage::f16);
            if (q.row_params(r)[g].scale != scale) ++bad;
            const float inv = 1.0f / scale;
            for (std::size_t c = 32 * g; c < 32 * g + 32; ++c)
                if (q.code(r, c) != spec.encode(double(w(Eigen::Index(r), Eigen::Index(c)) * inv),
                                                ptq::Rounding::half_even, ptq::Overflow::saturate))
                    ++bad;
        }
    CHECK(bad == 0);
}

TEST_CASE("fp16 scale storage: clamp ends and degenerate groups") {
    ptq::QuantOptions o;
    o.scale_storage = ScaleStorage::f16;
    using I4 = ptq::IntFormat<4, true>;
    ptq::RangeStats huge{-1e30f, 1e30f, false}, tiny{-1e-30f, 1e-30f, false}, cst{0.1f, 0.1f, false};
    CHECK(I4::make_params(huge, o).scale == 65504.0f);
    CHECK(I4::make_params(tiny, o).scale == 0x1p-24f);
    CHECK(I4::make_params(cst, o).scale == stored_oracle(0.1f, ScaleStorage::f16));
    CHECK(ptq::IntFormat<4, false>::make_params(huge, o).scale == 65504.0f);
    CHECK(ptq::Fp8<4, 3>::make_params(huge, o).scale == 65504.0f);
    // bf16 near FLT_MAX: the finite cap is itself storable and every code decodes finitely.
    o.scale_storage = ScaleStorage::bf16;
    const ptq::RangeStats top{-std::numeric_limits<float>::max(), std::numeric_limits<float>::max(), false};
    for (const auto& p : {ptq::IntFormat<4, false>::make_params(top, o)}) {
        CHECK(on_grid(p.scale, ScaleStorage::bf16));
        for (int c = 0; c < 16; ++c) CHECK(std::isfinite(ptq::IntFormat<4, false>::dequantize(std::uint8_t(c), p)));
    }
    using F4 = ptq::IntFormat<4, true, ptq::IntRange::full>;
    const auto pf = F4::make_params(top, o);
    CHECK(on_grid(pf.scale, ScaleStorage::bf16));
    CHECK(std::isfinite(F4::dequantize(0, pf)));
    const auto pm = ptq::Fp8<5, 2>::make_params(top, o);
    CHECK(on_grid(pm.scale, ScaleStorage::bf16));
    CHECK(std::isfinite(ptq::Fp8<5, 2>::dequantize(0x7B, pm)));
    // NaN groups keep the NaN marker.
    o.scale_storage = ScaleStorage::f16;
    CHECK(std::isnan(I4::make_params(ptq::RangeStats{0.0f, 1.0f, true}, o).scale));
}

TEST_CASE("f32 scale storage is the default and changes nothing") {
    ptq::QuantOptions o;
    CHECK(o.scale_storage == ScaleStorage::f32);
    const RowMatrixXf w = ptq_test::random_matrix(3, 70, Dist::normal, 3);
    // Independent check of the f32 path: scale = absmax / 7 as one float rounding (not storable in fp16 in general).
    const auto q = ptq::Rtn<ptq::IntFormat<4, true>, ptq::PerGroup<32>>(o).quantize(w);
    int not_half = 0;
    for (std::size_t r = 0; r < 3; ++r)
        for (std::size_t g = 0; g < 3; ++g) {
            float amax = 0.0f;
            for (std::size_t c = 32 * g; c < std::min<std::size_t>(70, 32 * g + 32); ++c)
                amax = std::max(amax, std::fabs(w(Eigen::Index(r), Eigen::Index(c))));
            const float s = float(double(amax) / 7.0);
            CHECK(q.row_params(r)[g].scale == s);
            if (!on_grid(s, ScaleStorage::f16)) ++not_half;
        }
    CHECK(not_half > 0);  // the data exercises scales that f16 storage would change
}

TEST_CASE("GPTQ with fp16 scale storage: storable scales, still beats RTN") {
    std::mt19937 rng(8);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    Eigen::MatrixXf x(400, 64), w(16, 64);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = nd(rng);
    x.col(5) *= 10.0f;
    for (Eigen::Index i = 0; i < x.rows(); ++i) x(i, 9) = x(i, 5) * 0.5f + 0.1f * nd(rng);
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = 0.1f * nd(rng);
    ptq::CalibrationStats cs(64, {ptq::HessianPrecision::double_exact});
    cs.add(x);
    ptq::GptqOptions go;
    go.quant.scale_storage = ScaleStorage::f16;
    for (bool act : {false, true}) {
        go.act_order = act;
        const auto r = ptq::Gptq<ptq::IntFormat<4, false>, ptq::PerGroup<32>>(go).quantize(w, cs.hessian());
        for (const auto& p : r.quantized.params()) CHECK(on_grid(p.scale, ScaleStorage::f16));
        CHECK(r.diagnostics.damped_loss < r.diagnostics.damped_loss_rtn);
        // What GPTQ returns is what its stored parameters decode to.
        const RowMatrixXf dq = ptq::dequantize(r.quantized);
        if (!act) CHECK(dq == RowMatrixXf(r.dequantized));
    }
}

}  // TEST_SUITE("format.scale_storage")
