// Tests of ptq/algo/gptq.hpp: blocked GPTQ vs the naive oracle, GPTQ vs RTN, robustness,
// layout of act-order results, determinism, the factor.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>

#include <Eigen/Core>
#include <Eigen/LU>
#include <Eigen/QR>

#include <ptq/algo/coordinate_descent.hpp>
#include <ptq/algo/gptaq.hpp>
#include <ptq/algo/gptq.hpp>
#include <ptq/algo/gptq_naive.hpp>
#include <ptq/metric/output_error.hpp>
#include <ptq/algo/rtn.hpp>
#include <ptq/calib/calibration_stats.hpp>
#include <ptq/format/int_format.hpp>
#include <ptq/format/int_min_format.hpp>
#include <ptq/format/scale_storage.hpp>
#include <ptq/format/minifloat.hpp>
#include <ptq/format/mx_fp.hpp>
#include <ptq/format/mx_int.hpp>

namespace {

using Int4Asym = ptq::IntFormat<4, false>;
using Int4Sym = ptq::IntFormat<4, true>;
using Int3Asym = ptq::IntFormat<3, false>;
using MxInt4 = ptq::MxInt<4, 32>;
using MxInt8 = ptq::MxInt<8, 32>;
using Fp8 = ptq::Fp8<4, 3>;

/// Calibration activations [tokens x n] with correlated channels (a shared low-rank part)
/// and a few outlier channels (x 15).
Eigen::MatrixXf make_acts(Eigen::Index tokens, Eigen::Index n, unsigned seed, bool outliers = true) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const Eigen::Index k = std::max<Eigen::Index>(2, n / 8);
    Eigen::MatrixXf z(tokens, k), mix(k, n), noise(tokens, n);
    for (Eigen::Index i = 0; i < z.size(); ++i) z.data()[i] = nd(rng);
    for (Eigen::Index i = 0; i < mix.size(); ++i) mix.data()[i] = nd(rng);
    for (Eigen::Index i = 0; i < noise.size(); ++i) noise.data()[i] = nd(rng);
    Eigen::MatrixXf x = z * mix * 0.5f + noise;
    if (outliers)
        for (Eigen::Index j = 3; j < n; j += 37) x.col(j) *= 15.0f;
    return x;
}

Eigen::MatrixXf make_weights(Eigen::Index rows, Eigen::Index n, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    Eigen::MatrixXf w(rows, n);
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = nd(rng) * 0.1f;
    return w;
}

Eigen::MatrixXd hessian_of(const Eigen::MatrixXf& x) {
    ptq::CalibrationStats s(x.cols(), {ptq::HessianPrecision::double_exact});
    s.add(x);
    return s.hessian();
}

/// ||X W^T - X W^^T||^2 in double.
double output_error(const Eigen::MatrixXf& x, const Eigen::MatrixXf& w, const ptq::RowMatrixXf& wq) {
    const Eigen::MatrixXd d = w.cast<double>() - wq.cast<double>();
    return (x.cast<double>() * d.transpose()).squaredNorm();
}

template <class F>
std::uint8_t code_at(const ptq::QuantizedMatrix<F>& q, std::size_t r, std::size_t c) {
    return q.code(r, c);
}

/// Blocked GPTQ vs the naive oracle: same codes except at rare rounding ties (<= 0.5 % and
/// only when the two disagree by float noise), dequantized within 1e-5 relative otherwise.
template <class F, class G>
void check_vs_naive(const G& gran, const ptq::GptqOptions& o, Eigen::Index rows, Eigen::Index n, unsigned seed) {
    const Eigen::MatrixXf w = make_weights(rows, n, seed);
    const Eigen::MatrixXd h = hessian_of(make_acts(3 * n, n, seed + 1));
    const auto a = ptq::Gptq<F, G>(o, gran).quantize(w, h);
    const auto b = ptq::gptq_naive<F, G>(w, h, o, gran);
    REQUIRE(a.quantized.layout() == b.quantized.layout());
    CHECK(a.perm == b.perm);
    CHECK(a.storage_perm == b.storage_perm);
    CHECK(a.g_idx == b.g_idx);
    CHECK(a.diagnostics.damping == b.diagnostics.damping);
    std::size_t mismatch = 0;
    for (std::size_t r = 0; r < std::size_t(rows); ++r)
        for (std::size_t c = 0; c < std::size_t(n); ++c)
            mismatch += code_at(a.quantized, r, c) != code_at(b.quantized, r, c);
    // A code that flips at a near-tie changes every later column's update, so flips cascade;
    // how many depends on the float summation order, which differs between the blocked GEMMs
    // and the oracle's loops and with the optimisation level (FMA contraction). FP8 with
    // act-order reaches ~0.6 % at -O1; the bound is 1 %.
    CHECK(mismatch * 100 <= std::size_t(rows * n));
    CHECK(a.dequantized.allFinite());
    const double rel = (a.dequantized - b.dequantized).norm() / b.dequantized.norm();
    const double dloss = std::fabs(a.diagnostics.damped_loss - b.diagnostics.damped_loss) / b.diagnostics.damped_loss;
    if (mismatch == 0) {
        CHECK(rel <= 1e-5);
        CHECK(dloss <= 1e-3);
    } else {
        CHECK(rel <= 1e-2);
        CHECK(dloss <= 1e-2);
    }
    // The quantized matrix decodes to the dequantized result (storage order -> original).
    const ptq::RowMatrixXf dq = ptq::dequantize(a.quantized);
    for (Eigen::Index k = 0; k < n; ++k)
        CHECK((dq.col(k) - a.dequantized.col(Eigen::Index(a.storage_perm[std::size_t(k)]))).norm() == 0.0);
}

}  // namespace

TEST_CASE("upper_cholesky_of_inverse: U^T U = A^-1 with U upper") {
    const Eigen::MatrixXf x = make_acts(300, 150, 7);
    const Eigen::MatrixXd a = hessian_of(x) + 0.01 * Eigen::MatrixXd::Identity(150, 150);
    Eigen::MatrixXf u = a.cast<float>();
    REQUIRE(ptq::detail::upper_cholesky_of_inverse(u));
    const Eigen::MatrixXd ud = u.cast<double>().triangularView<Eigen::Upper>();
    const Eigen::MatrixXd inv = a.inverse();
    CHECK((ud.transpose() * ud - inv).norm() <= 2e-3 * inv.norm());
    for (Eigen::Index i = 0; i < 150; ++i) CHECK(ud(i, i) > 0.0);
    Eigen::MatrixXf bad = -Eigen::MatrixXf::Identity(4, 4);
    CHECK_FALSE(ptq::detail::upper_cholesky_of_inverse(bad));
}

TEST_CASE("Gptq blocked == naive oracle") {
    ptq::GptqOptions o;
    o.block_size = 64;
    for (bool act : {false, true}) {
        CAPTURE(act);
        o.act_order = act;
        SUBCASE("int4 asym g32, ragged 24x172") { check_vs_naive<Int4Asym>(ptq::PerGroup<32>{}, o, 24, 172, 1); }
        SUBCASE("int4 asym g48 (groups straddle blocks)") {
            check_vs_naive<Int4Asym>(ptq::PerGroup<48>{}, o, 16, 150, 2);
        }
        SUBCASE("int4 asym g32 static groups") {
            ptq::GptqOptions s = o;
            s.static_groups = true;
            check_vs_naive<Int4Asym>(ptq::PerGroup<32>{}, s, 24, 172, 3);
        }
        SUBCASE("int4 sym per-channel") { check_vs_naive<Int4Sym>(ptq::PerChannel{}, o, 24, 172, 4); }
        SUBCASE("int3 asym per-tensor") { check_vs_naive<Int3Asym>(ptq::PerTensor{}, o, 20, 100, 5); }
        SUBCASE("mxint4-32") { check_vs_naive<MxInt4>(ptq::PerGroup<32>{}, o, 24, 172, 6); }
        SUBCASE("mxint8-32") { check_vs_naive<MxInt8>(ptq::PerGroup<32>{}, o, 24, 172, 7); }
        SUBCASE("mxint4-32, micro-block 64") {
            ptq::GptqOptions s = o;
            s.mx_micro_block = 64;
            s.block_size = 100;  // rounded up to 128
            check_vs_naive<MxInt4>(ptq::PerGroup<32>{}, s, 24, 172, 8);
        }
        SUBCASE("mxfp4") { check_vs_naive<ptq::MxFp4>(ptq::PerGroup<32>{}, o, 16, 96, 9); }
        SUBCASE("fp8 e4m3 per-channel") { check_vs_naive<Fp8>(ptq::PerChannel{}, o, 24, 172, 10); }
        SUBCASE("fp8 e4m3 g32") { check_vs_naive<Fp8>(ptq::PerGroup<32>{}, o, 24, 172, 11); }
        SUBCASE("int4 asym g32, MSE clip") {
            ptq::GptqOptions s = o;
            s.quant.range = ptq::RangeMethod::mse_search;
            check_vs_naive<Int4Asym>(ptq::PerGroup<32>{}, s, 12, 96, 12);
        }
    }
}

namespace {
template <class F, class G>
void check_beats_rtn(const G& gran, const char* name) {
    CAPTURE(name);
    const Eigen::Index rows = 32, n = 128;
    const Eigen::MatrixXf x = make_acts(512, n, 21);
    const Eigen::MatrixXf w = make_weights(rows, n, 22);
    const Eigen::MatrixXd h = hessian_of(x);
    ptq::GptqOptions o;
    const auto rtn = ptq::dequantize(ptq::Rtn<F, G>(o.quant, gran).quantize(w));
    const double e_rtn = output_error(x, w, rtn);
    const auto g = ptq::Gptq<F, G>(o, gran).quantize(w, h);
    const double e_gptq = output_error(x, w, g.dequantized);
    CHECK(e_gptq < e_rtn);
    CHECK(g.diagnostics.damped_loss < g.diagnostics.damped_loss_rtn);
    o.act_order = true;
    const auto ga = ptq::Gptq<F, G>(o, gran).quantize(w, h);
    const double e_act = output_error(x, w, ga.dequantized);
    CHECK(e_act < e_rtn);
    CHECK(e_act <= e_gptq * 1.02);  // act-order is not worse on outlier data
}
}  // namespace

TEST_CASE("Gptq beats RTN on correlated data with outlier channels") {
    check_beats_rtn<Int4Asym>(ptq::PerGroup<32>{}, "int4-asym g32");
    check_beats_rtn<Int4Asym>(ptq::PerChannel{}, "int4-asym per-channel");
    check_beats_rtn<Int4Sym>(ptq::PerChannel{}, "int4-sym per-channel");
    check_beats_rtn<Int3Asym>(ptq::PerGroup<16>{}, "int3-asym g16");
    check_beats_rtn<Int4Asym>(ptq::PerTensor{}, "int4-asym per-tensor");
    check_beats_rtn<MxInt4>(ptq::PerGroup<32>{}, "mxint4");
    check_beats_rtn<MxInt8>(ptq::PerGroup<32>{}, "mxint8");
    check_beats_rtn<ptq::MxFp4>(ptq::PerGroup<32>{}, "mxfp4");
    check_beats_rtn<Fp8>(ptq::PerChannel{}, "fp8 per-channel");
    check_beats_rtn<Fp8>(ptq::PerGroup<32>{}, "fp8 g32");
}

TEST_CASE("Gptq diagnostics: damped_loss = tr((W - W^) Hd (W - W^)^T)") {
    const Eigen::MatrixXf w = make_weights(16, 64, 31);
    const Eigen::MatrixXd h = hessian_of(make_acts(200, 64, 32));
    const auto r = ptq::Gptq<Int4Asym, ptq::PerGroup<32>>().quantize(w, h);
    const Eigen::MatrixXd hd = h + r.diagnostics.damping * Eigen::MatrixXd::Identity(64, 64);
    CHECK(r.diagnostics.retries == 0);
    CHECK(r.diagnostics.damping == doctest::Approx(0.01 * h.diagonal().mean()));
    CHECK(r.diagnostics.damped_loss == doctest::Approx(ptq::output_error_proxy(w, r.dequantized, hd)).epsilon(1e-3));
    const auto rtn = ptq::dequantize(ptq::Rtn<Int4Asym, ptq::PerGroup<32>>().quantize(w));
    CHECK(r.diagnostics.damped_loss_rtn == doctest::Approx(ptq::output_error_proxy(w, rtn, hd)).epsilon(1e-3));
}

TEST_CASE("Gptq act-order layout: permuted storage, g_idx rebuild, static groups") {
    const Eigen::MatrixXf w = make_weights(8, 100, 41);
    const Eigen::MatrixXd h = hessian_of(make_acts(300, 100, 42));
    ptq::GptqOptions o;
    o.act_order = true;
    const auto r = ptq::Gptq<Int4Asym, ptq::PerGroup<32>>(o).quantize(w, h);
    CHECK(r.permuted_storage);
    for (std::size_t k = 1; k < r.perm.size(); ++k)
        CHECK(h(Eigen::Index(r.perm[k - 1]), Eigen::Index(r.perm[k - 1])) >=
              h(Eigen::Index(r.perm[k]), Eigen::Index(r.perm[k])));
    std::vector<std::size_t> inv(r.perm.size());
    for (std::size_t k = 0; k < r.perm.size(); ++k) inv[r.perm[k]] = k;
    for (std::size_t row = 0; row < 8; ++row)
        for (std::size_t c = 0; c < 100; ++c) {
            const auto code = r.quantized.code(row, inv[c]);
            const auto& p = r.quantized.row_params(row)[r.g_idx[c]];
            CHECK(Int4Asym::dequantize(code, p) == r.dequantized(Eigen::Index(row), Eigen::Index(c)));
        }
    o.static_groups = true;
    const auto s = ptq::Gptq<Int4Asym, ptq::PerGroup<32>>(o).quantize(w, h);
    CHECK_FALSE(s.permuted_storage);
    CHECK((ptq::dequantize(s.quantized) - s.dequantized).norm() == 0.0);
    for (std::size_t c = 0; c < 100; ++c) CHECK(s.g_idx[c] == c / 32);
    // Static group parameters are RTN's on the original weights.
    const auto rq = ptq::Rtn<Int4Asym, ptq::PerGroup<32>>().quantize(w);
    for (std::size_t i = 0; i < rq.params().size(); ++i) CHECK(rq.params()[i] == s.quantized.params()[i]);
}

TEST_CASE("Gptq robustness") {
    SUBCASE("fewer tokens than columns (singular H)") {
        const Eigen::MatrixXf w = make_weights(16, 96, 51);
        const Eigen::MatrixXd h = hessian_of(make_acts(20, 96, 52));
        const auto r = ptq::Gptq<Int4Asym, ptq::PerGroup<32>>().quantize(w, h);
        CHECK(r.dequantized.allFinite());
        CHECK(r.diagnostics.damped_loss <= r.diagnostics.damped_loss_rtn);
    }
    SUBCASE("all-zero input channels and H = 0") {
        Eigen::MatrixXf x = make_acts(200, 64, 53);
        x.col(5).setZero();
        x.col(40).setZero();
        const Eigen::MatrixXf w = make_weights(8, 64, 54);
        const auto r = ptq::Gptq<MxInt4>().quantize(w, hessian_of(x));
        REQUIRE(r.diagnostics.dead_columns.size() == 2);
        CHECK(r.diagnostics.dead_columns[0] == 5);
        CHECK(r.diagnostics.dead_columns[1] == 40);
        CHECK(r.dequantized.col(5).norm() == 0.0);
        CHECK(r.dequantized.allFinite());
        const auto z = ptq::Gptq<Int4Asym, ptq::PerChannel>().quantize(w, Eigen::MatrixXd::Zero(64, 64));
        CHECK(z.diagnostics.dead_columns.size() == 64);
        CHECK(z.dequantized.norm() == 0.0);
    }
    SUBCASE("indefinite H: damping retries, reported") {
        const Eigen::MatrixXf w = make_weights(8, 48, 55);
        Eigen::MatrixXd h = hessian_of(make_acts(100, 48, 56));
        Eigen::VectorXd v = Eigen::VectorXd::Ones(48);
        h -= 0.5 * h.diagonal().mean() * v * v.transpose();  // a large negative eigenvalue
        const auto r = ptq::Gptq<Int4Asym, ptq::PerGroup<16>>().quantize(w, h);
        CHECK(r.diagnostics.retries > 0);
        CHECK(r.diagnostics.damping > 0.01 * r.diagnostics.mean_diag);
        CHECK(r.dequantized.allFinite());
        const auto naive = ptq::gptq_naive<Int4Asym, ptq::PerGroup<16>>(w, h);
        CHECK(naive.diagnostics.retries == r.diagnostics.retries);
    }
    SUBCASE("percdamp 0 on a singular H retries from a tiny damping") {
        const Eigen::MatrixXf w = make_weights(4, 32, 57);
        Eigen::MatrixXd h = Eigen::MatrixXd::Ones(32, 32);  // rank 1
        ptq::GptqOptions o;
        o.percdamp = 0.0;
        const auto r = ptq::Gptq<Fp8, ptq::PerChannel>(o).quantize(w, h);
        CHECK(r.dequantized.allFinite());
        CHECK(r.diagnostics.damping >= 0.0);
    }
    SUBCASE("NaN / Inf / shape errors name the argument") {
        Eigen::MatrixXf w = make_weights(4, 16, 58);
        Eigen::MatrixXd h = Eigen::MatrixXd::Identity(16, 16);
        ptq::Gptq<Int4Asym, ptq::PerChannel> g;
        w(1, 2) = std::numeric_limits<float>::quiet_NaN();
        try {
            (void)g.quantize(w, h);
            FAIL("no throw");
        } catch (const ptq::non_finite_error& e) {
            CHECK(std::string(e.what()).find("'w'") != std::string::npos);
        }
        w(1, 2) = 0.0f;
        h(3, 3) = std::numeric_limits<double>::infinity();
        try {
            (void)g.quantize(w, h);
            FAIL("no throw");
        } catch (const ptq::non_finite_error& e) {
            CHECK(std::string(e.what()).find("'h'") != std::string::npos);
        }
        CHECK_THROWS_AS((void)g.quantize(w, Eigen::MatrixXd::Identity(15, 15)), ptq::invalid_argument);
        ptq::GptqOptions bad;
        bad.block_size = 0;
        CHECK_THROWS_AS((void)ptq::Gptq<Int4Asym>(bad).quantize(w, Eigen::MatrixXd::Identity(16, 16)),
                        ptq::invalid_argument);
        ptq::GptqOptions mx;
        mx.mx_micro_block = 48;
        CHECK_THROWS_AS((void)ptq::Gptq<MxInt4>(mx).quantize(w, Eigen::MatrixXd::Identity(16, 16)),
                        ptq::invalid_argument);
    }
    SUBCASE("empty shapes") {
        const auto r =
            ptq::Gptq<Int4Asym, ptq::PerChannel>().quantize(Eigen::MatrixXf(0, 8), Eigen::MatrixXd::Identity(8, 8));
        CHECK(r.dequantized.rows() == 0);
        const auto c = ptq::Gptq<Int4Asym, ptq::PerChannel>().quantize(Eigen::MatrixXf(3, 0), Eigen::MatrixXd(0, 0));
        CHECK(c.dequantized.cols() == 0);
    }
}

TEST_CASE("Gptq is deterministic and accepts any Eigen expression") {
    const Eigen::MatrixXf w = make_weights(24, 96, 61);
    const Eigen::MatrixXd h = hessian_of(make_acts(256, 96, 62));
    ptq::GptqOptions o;
    o.act_order = true;
    const ptq::Gptq<Int4Asym, ptq::PerGroup<32>> g(o);
    const auto a = g.quantize(w, h);
    const auto b = g.quantize(w, h);
    CHECK((a.dequantized.array() == b.dequantized.array()).all());
    CHECK(std::equal(a.quantized.packed().begin(), a.quantized.packed().end(), b.quantized.packed().begin()));
    const ptq::RowMatrixXf wr = w;
    const auto c = g.quantize(wr, h.cast<float>());
    CHECK((a.dequantized - c.dequantized).norm() <= 1e-5 * a.dequantized.norm());
    const auto d = g.quantize(w.cast<double>() * 1.0, h);
    CHECK((a.dequantized.array() == d.dequantized.array()).all());
}

// ---- Coordinate descent after GPTQ (refine_rounding) ----

namespace {
/// tr((W - W^) H (W - W^)^T), computed here in long double from the definition.
long double objective_ld(const Eigen::MatrixXf& w, const ptq::RowMatrixXf& wh, const Eigen::MatrixXd& h) {
    long double total = 0.0L;
    for (Eigen::Index r = 0; r < w.rows(); ++r)
        for (Eigen::Index a = 0; a < w.cols(); ++a) {
            const long double da = (long double)w(r, a) - (long double)wh(r, a);
            if (da == 0.0L) continue;
            for (Eigen::Index b = 0; b < w.cols(); ++b)
                total += da * (long double)h(a, b) * ((long double)w(r, b) - (long double)wh(r, b));
        }
    return total;
}

template <class F, class G>
void check_refine(const Eigen::MatrixXf& w, const Eigen::MatrixXd& h, const ptq::GptqOptions& go,
                  const std::string& what) {
    const auto g = ptq::Gptq<F, G>(go).quantize(w, h);
    ptq::RefineOptions ro;
    ro.passes = 4;
    const auto r = ptq::refine_rounding<F>(w, h, g, ro);
    CAPTURE(what);
    CAPTURE(F::name());
    REQUIRE(r.objective.size() >= 2);
    // [0] is GPTQ's objective; every pass is a non-increase, recomputed independently.
    CHECK(double(objective_ld(w, g.dequantized, h)) == doctest::Approx(r.objective[0]).epsilon(1e-9));
    for (std::size_t k = 1; k < r.objective.size(); ++k) CHECK(r.objective[k] <= r.objective[k - 1]);
    CHECK(double(objective_ld(w, r.dequantized, h)) == doctest::Approx(r.objective.back()).epsilon(1e-9));
    CHECK(objective_ld(w, r.dequantized, h) <= objective_ld(w, g.dequantized, h));
    // Only codes change: same layout and parameters; dequantized is dequantize(quantized) put
    // back in the original column order.
    CHECK(r.quantized.layout() == g.quantized.layout());
    CHECK(std::equal(r.quantized.params().begin(), r.quantized.params().end(), g.quantized.params().begin()));
    const ptq::RowMatrixXf st = ptq::dequantize(r.quantized);
    for (std::size_t k = 0; k < g.storage_perm.size(); ++k)
        CHECK(st.col(Eigen::Index(k)) == r.dequantized.col(Eigen::Index(g.storage_perm[k])));
    MESSAGE(what << " " << F::name() << ": GPTQ " << r.objective[0] << " -> CD " << r.objective.back() << " ("
                 << r.objective.size() - 1 << " passes, " << r.changed << " codes changed)");
}
}  // namespace

TEST_CASE_TEMPLATE("refine_rounding: passes never increase the layer objective; strictly better than GPTQ", F, Int3Asym,
                   Int4Sym, Fp8, MxInt4) {
    using G = std::conditional_t<F::is_mx, ptq::default_granularity_t<F>, ptq::PerGroup<32>>;
    const Eigen::MatrixXf w = make_weights(24, 96, 31);
    // A realistic H (correlated channels, outliers) and an ill-conditioned one: fewer tokens
    // than channels (rank 40 of 96), channel scales over 6 decades, two dead channels.
    const Eigen::MatrixXd h = hessian_of(make_acts(512, 96, 32));
    Eigen::MatrixXf xi = make_acts(40, 96, 33, false);
    for (Eigen::Index j = 0; j < 96; ++j) xi.col(j) *= std::pow(10.0f, float(j % 7) - 3.0f);
    xi.col(5).setZero();
    xi.col(50).setZero();
    const Eigen::MatrixXd hi = hessian_of(xi);
    ptq::GptqOptions go;
    check_refine<F, G>(w, h, go, "random H");
    check_refine<F, G>(w, hi, go, "ill-conditioned H");
    go.act_order = true;  // permuted storage for the group-wise formats
    check_refine<F, G>(w, h, go, "act-order");
    const auto g = ptq::Gptq<F, G>().quantize(w, h);
    const auto r = ptq::refine_rounding<F>(w, h, g);
    CHECK(r.objective.back() < 0.999 * r.objective.front());
}

TEST_CASE("refine_rounding: one pass equals an exhaustive column-by-column search (2x4 weights, 2 bits)") {
    using F = ptq::IntFormat<2, false>;
    std::mt19937 rng(77);
    std::normal_distribution<float> nd;
    for (int trial = 0; trial < 20; ++trial) {
        Eigen::MatrixXf w(2, 4);
        for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = nd(rng);
        Eigen::MatrixXf x(6, 4);
        for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = nd(rng);
        x.col(1) += 0.8f * x.col(0);  // correlated inputs: the coordinate steps interact
        const Eigen::MatrixXd h = hessian_of(x);
        const auto q0 = ptq::quantize<F>(w, {}, ptq::PerChannel{});
        // Oracle: for j = 0..3, for each row, every code 0..3 with the others fixed; the first
        // code of lowest objective (from its definition, in long double) wins, the current
        // code unless another is strictly lower.
        std::uint8_t codes[2][4];
        for (int r = 0; r < 2; ++r)
            for (int c = 0; c < 4; ++c) codes[r][c] = q0.code(std::size_t(r), std::size_t(c));
        const auto value = [&](int r, int c, int code) {
            return F::dequantize(std::uint8_t(code), q0.params_at(r, c));
        };
        const auto row_obj = [&](int r) {
            long double f = 0.0L;
            for (int a = 0; a < 4; ++a)
                for (int b = 0; b < 4; ++b)
                    f += ((long double)w(r, a) - value(r, a, codes[r][a])) * (long double)h(a, b) *
                         ((long double)w(r, b) - value(r, b, codes[r][b]));
            return f;
        };
        for (int c = 0; c < 4; ++c)
            for (int r = 0; r < 2; ++r) {
                const std::uint8_t keep = codes[r][c];
                long double best = row_obj(r);
                std::uint8_t arg = keep;
                for (int code = 0; code < 4; ++code) {
                    codes[r][c] = std::uint8_t(code);
                    const long double f = row_obj(r);
                    if (f < best * (1.0L - 1e-12L)) {
                        best = f;
                        arg = std::uint8_t(code);
                    }
                }
                codes[r][c] = arg;
            }
        ptq::RefineOptions o;
        o.passes = 1;
        const auto res = ptq::refine_rounding<F>(w, h, q0, o);
        CAPTURE(trial);
        for (int r = 0; r < 2; ++r)
            for (int c = 0; c < 4; ++c) CHECK(res.quantized.code(std::size_t(r), std::size_t(c)) == codes[r][c]);
    }
}

TEST_CASE("refine_rounding: bad input") {
    using F = Int4Asym;
    const Eigen::MatrixXf w = make_weights(4, 16, 40);
    const Eigen::MatrixXd h = hessian_of(make_acts(64, 16, 41));
    const auto q = ptq::quantize<F>(w, {}, ptq::PerGroup<8>{});
    ptq::RefineOptions o;
    o.passes = -1;
    CHECK_THROWS_WITH_AS(ptq::refine_rounding<F>(w, h, q, o), doctest::Contains("passes"), ptq::invalid_argument);
    CHECK_THROWS_WITH_AS(ptq::refine_rounding<F>(make_weights(4, 15, 42), h, q), doctest::Contains("w"),
                         ptq::invalid_argument);
    CHECK_THROWS_AS(ptq::refine_rounding<F>(w, Eigen::MatrixXd(h.topLeftCorner(8, 8)), q), ptq::invalid_argument);
    Eigen::MatrixXd hn = h;
    hn(2, 3) = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_AS(ptq::refine_rounding<F>(w, hn, q), ptq::non_finite_error);
    const std::vector<std::size_t> dup(16, 0);
    CHECK_THROWS_WITH_AS(ptq::refine_rounding<F>(w, h, q, {}, dup), doctest::Contains("storage_perm"),
                         ptq::invalid_argument);
    o.passes = 0;  // no pass: the input unchanged
    const auto r0 = ptq::refine_rounding<F>(w, h, q, o);
    CHECK(r0.objective.size() == 1);
    CHECK(r0.dequantized == ptq::dequantize(q));
}

// ---- refine_rounding with least-squares refit of the group parameters ----

TEST_CASE_TEMPLATE("refine_rounding refit_scales: monotone, below codes-only CD, parameters stationary and stored", F,
                   Int3Asym, Int4Sym, ptq::IntMinFormat<4>) {
    const Eigen::MatrixXf w = make_weights(16, 96, 61);
    const Eigen::MatrixXd h = hessian_of(make_acts(512, 96, 62));
    ptq::GptqOptions go;
    go.act_order = true;  // permuted storage: groups are refitted in storage order
    go.quant.scale_storage = ptq::ScaleStorage::f16;
    const auto g = ptq::Gptq<F, ptq::PerGroup<32>>(go).quantize(w, h);
    ptq::RefineOptions ro;
    ro.passes = 3;
    const auto plain = ptq::refine_rounding<F>(w, h, g, ro);
    ro.refit_scales = true;
    ro.scale_storage = ptq::ScaleStorage::f16;
    const auto r = ptq::refine_rounding<F>(w, h, g, ro);
    CAPTURE(F::name());
    for (std::size_t k = 1; k < r.objective.size(); ++k) CHECK(r.objective[k] <= r.objective[k - 1]);
    CHECK(double(objective_ld(w, r.dequantized, h)) == doctest::Approx(r.objective.back()).epsilon(1e-9));
    CHECK(r.refitted > 0);
    CHECK(r.objective.back() < plain.objective.back());
    MESSAGE(F::name() << ": GPTQ " << r.objective[0] << ", CD " << plain.objective.back() << ", CD + refit "
                      << r.objective.back());
    // Stored as the file holds them: every scale (and minimum) is an f16 value; the zero points
    // did not move; dequantized == dequantize(quantized) in the original column order.
    for (std::size_t i = 0; i < r.quantized.params().size(); ++i) {
        const auto& p = r.quantized.params()[i];
        CHECK(ptq::is_storable(p.scale, ptq::ScaleStorage::f16));
        CHECK(p.scale > 0.0f);
        if constexpr (F::kind == ptq::FormatKind::integer_min) CHECK(ptq::is_storable(p.min, ptq::ScaleStorage::f16));
        else CHECK(p.zero == g.quantized.params()[i].zero);
    }
    const ptq::RowMatrixXf st = ptq::dequantize(r.quantized);
    for (std::size_t k = 0; k < g.storage_perm.size(); ++k)
        CHECK(st.col(Eigen::Index(k)) == r.dequantized.col(Eigen::Index(g.storage_perm[k])));
}

TEST_CASE("refine_rounding refit_scales: each refitted scale is a minimum along its own axis (f32 storage)") {
    // Independent check of the least-squares step: after the last pass, moving any one group
    // scale by a relative 1e-3 either way must not lower the objective (from its definition).
    using F = Int4Asym;
    const Eigen::MatrixXf w = make_weights(6, 64, 71);
    const Eigen::MatrixXd h = hessian_of(make_acts(256, 64, 72));
    const auto q0 = ptq::quantize<F>(w, {}, ptq::PerGroup<16>{});
    ptq::RefineOptions ro;
    ro.passes = 1;
    ro.refit_scales = true;
    const auto r = ptq::refine_rounding<F>(w, h, q0, ro);
    REQUIRE(r.refitted == 6);
    const long double f = objective_ld(w, r.dequantized, h);
    for (std::size_t gi = 0; gi < r.quantized.params().size(); ++gi)
        for (float factor : {1.001f, 0.999f}) {
            auto q = r.quantized;
            q.params()[gi].scale *= factor;
            CAPTURE(gi);
            CHECK(objective_ld(w, ptq::dequantize(q), h) >= f * (1.0L - 1e-9L));
        }
}

TEST_CASE("refine_rounding refit_scales: refused where parameters are not per row or not linear") {
    const Eigen::MatrixXf w = make_weights(4, 32, 81);
    const Eigen::MatrixXd h = hessian_of(make_acts(64, 32, 82));
    ptq::RefineOptions ro;
    ro.refit_scales = true;
    CHECK_THROWS_WITH_AS(ptq::refine_rounding<Int4Asym>(w, h, ptq::quantize<Int4Asym>(w, {}, ptq::PerTensor{}), ro),
                         doctest::Contains("refit_scales"), ptq::invalid_argument);
    CHECK_THROWS_WITH_AS(ptq::refine_rounding<MxInt4>(w, h, ptq::quantize<MxInt4>(w, {}, ptq::PerGroup<32>{}), ro),
                         doctest::Contains("refit_scales"), ptq::invalid_argument);
}

// ---- Error-aware calibration (gptaq_target) ----

namespace {
/// The quantized model's inputs of a layer: the fp32 inputs with an accumulated error that is
/// correlated with them (a random mixing, as earlier quantized layers produce) plus noise.
Eigen::MatrixXf perturbed(const Eigen::MatrixXf& x_fp, float scale, unsigned seed) {
    const Eigen::Index n = x_fp.cols();
    const Eigen::MatrixXf mix = make_weights(n, n, seed) * scale;
    return x_fp + x_fp * mix + make_acts(x_fp.rows(), n, seed + 1, false) * (0.3f * scale);
}
/// ||X_fp W^T - X_q W^^T||^2 in double: the error-aware layer objective.
double asymmetric_error(const Eigen::MatrixXf& x_fp, const Eigen::MatrixXf& x_q, const Eigen::MatrixXf& w,
                        const ptq::RowMatrixXf& wq) {
    return (x_fp.cast<double>() * w.cast<double>().transpose() - x_q.cast<double>() * wq.cast<double>().transpose())
        .squaredNorm();
}
}  // namespace

TEST_CASE("gptaq_target: W~ == W without asymmetry; the least-squares solution otherwise") {
    const Eigen::MatrixXf w = make_weights(12, 48, 50);
    const Eigen::MatrixXf x_fp = make_acts(400, 48, 51);
    const Eigen::MatrixXf x_q = perturbed(x_fp, 0.1f, 52);
    const Eigen::MatrixXd h = hessian_of(x_q);
    // X_fp == X_q: D is exactly zero, W~ is W bit for bit.
    const Eigen::MatrixXd d0 = ptq::asymmetry_cross_term(x_q, x_q);
    CHECK(d0.isZero(0.0));
    CHECK(ptq::gptaq_target(w, d0, h) == ptq::RowMatrixXf(w));
    // alpha = 0: no correction.
    const Eigen::MatrixXd d = ptq::asymmetry_cross_term(x_fp, x_q);
    CHECK(ptq::gptaq_target(w, d, h, {.alpha = 0.0}) == ptq::RowMatrixXf(w));
    // Oracle: the least-squares solution of X_q B = X_fp W^T by Householder QR (double), no damping.
    const Eigen::MatrixXd b =
        x_q.cast<double>().colPivHouseholderQr().solve(x_fp.cast<double>() * w.cast<double>().transpose());
    const ptq::RowMatrixXf wt = ptq::gptaq_target(w, d, h, {.alpha = 1.0, .percdamp = 0.0});
    CHECK((wt.cast<double>() - b.transpose()).norm() <= 1e-4 * b.norm());
    CHECK((wt - ptq::RowMatrixXf(w)).norm() > 1e-2 * w.norm());  // the correction is not negligible here
    // alpha scales the correction linearly.
    const ptq::RowMatrixXf half = ptq::gptaq_target(w, d, h, {.alpha = 0.5, .percdamp = 0.0});
    CHECK((half.cast<double>() - 0.5 * (w.cast<double>() + wt.cast<double>())).norm() <= 1e-5 * w.norm());
}

TEST_CASE_TEMPLATE("gptaq_target: GPTQ on W~ lowers the error-aware objective below plain GPTQ", F, Int3Asym,
                   Int4Asym) {
    using G = ptq::PerGroup<16>;
    const Eigen::MatrixXf w = make_weights(32, 64, 60);
    const Eigen::MatrixXf x_fp = make_acts(512, 64, 61);
    const Eigen::MatrixXf x_q = perturbed(x_fp, 0.05f, 62);
    const Eigen::MatrixXd h = hessian_of(x_q);
    const Eigen::MatrixXd d = ptq::asymmetry_cross_term(x_fp, x_q);
    for (bool act_order : {false, true}) {
        ptq::GptqOptions go;
        go.act_order = act_order;
        const auto plain = ptq::Gptq<F, G>(go).quantize(w, h);
        const auto aware = ptq::Gptq<F, G>(go).quantize(ptq::gptaq_target(w, d, h, {.percdamp = go.percdamp}), h);
        const double e_plain = asymmetric_error(x_fp, x_q, w, plain.dequantized);
        const double e_aware = asymmetric_error(x_fp, x_q, w, aware.dequantized);
        CAPTURE(act_order);
        MESSAGE(F::name() << " act-order " << act_order << ": error-aware objective GPTQ " << e_plain << ", GPTAQ "
                          << e_aware);
        CHECK(e_aware < 0.95 * e_plain);
    }
}

TEST_CASE("gptaq_target: bad input") {
    const Eigen::MatrixXf w = make_weights(4, 16, 70);
    const Eigen::MatrixXf x = make_acts(64, 16, 71);
    const Eigen::MatrixXd h = hessian_of(x);
    const Eigen::MatrixXd d = ptq::asymmetry_cross_term(perturbed(x, 0.1f, 72), x);
    CHECK_THROWS_WITH_AS(ptq::asymmetry_cross_term(x, Eigen::MatrixXf(x.leftCols(15))), doctest::Contains("x_fp"),
                         ptq::invalid_argument);
    CHECK_THROWS_WITH_AS(ptq::gptaq_target(w, d, Eigen::MatrixXd(h.topLeftCorner(8, 8))), doctest::Contains("'h'"),
                         ptq::invalid_argument);
    CHECK_THROWS_WITH_AS(ptq::gptaq_target(w, Eigen::MatrixXd(d.topLeftCorner(8, 8)), h), doctest::Contains("'d'"),
                         ptq::invalid_argument);
    CHECK_THROWS_WITH_AS(ptq::gptaq_target(w, d, h, {.alpha = -1.0}), doctest::Contains("alpha"),
                         ptq::invalid_argument);
    CHECK_THROWS_WITH_AS(ptq::gptaq_target(w, d, h, {.percdamp = std::nan("")}), doctest::Contains("percdamp"),
                         ptq::invalid_argument);
    Eigen::MatrixXf xn = x;
    xn(3, 2) = std::numeric_limits<float>::infinity();
    CHECK_THROWS_AS(ptq::asymmetry_cross_term(xn, x), ptq::non_finite_error);
    Eigen::MatrixXd dn = d;
    dn(1, 1) = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_AS(ptq::gptaq_target(w, dn, h), ptq::non_finite_error);
    // A dead channel (H_jj = 0) keeps its weights.
    Eigen::MatrixXf xd = x;
    xd.col(4).setZero();
    Eigen::MatrixXf xfd = perturbed(x, 0.1f, 73);
    const ptq::RowMatrixXf wt = ptq::gptaq_target(w, ptq::asymmetry_cross_term(xfd, xd), hessian_of(xd));
    CHECK(wt.allFinite());
    CHECK(wt.col(4) == w.col(4));
}
