// LQER / L²QER / LoRC and the SVD backends.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include <Eigen/SVD>

#include <ptq/algo/lqer.hpp>
#include <ptq/algo/svd.hpp>
#include <ptq/ptq.hpp>

#include "../format/support.hpp"

namespace {

using Mat = Eigen::MatrixXf;

Mat gaussian(Eigen::Index r, Eigen::Index c, unsigned seed) { return ptq_test::gaussian<Mat>(r, c, seed); }

// Singular values of a matrix in double precision (independent oracle: Jacobi SVD).
Eigen::VectorXd singular_values_d(const Mat& m) {
    Eigen::JacobiSVD<Eigen::MatrixXd> svd(m.cast<double>());
    return svd.singularValues();
}

// Activations with a few outlier channels: X [tokens x in], column j scaled by c_j.
struct OutlierData {
    Mat x;
    Eigen::VectorXf act_scale;  // max over samples of per-sample mean|x_j|
};
OutlierData outlier_activations(Eigen::Index tokens, Eigen::Index in, unsigned seed) {
    OutlierData d;
    d.x = gaussian(tokens, in, seed);
    std::mt19937 g(seed + 1);
    std::uniform_real_distribution<float> u(0.5f, 1.5f);
    Eigen::VectorXf c(in);
    for (Eigen::Index j = 0; j < in; ++j) c(j) = u(g);
    for (Eigen::Index j : {Eigen::Index(3), Eigen::Index(17), Eigen::Index(40)}) c(j) = 60.0f;
    d.x = d.x * c.asDiagonal();
    // 4 "samples" of tokens/4 rows each: per-sample mean |x_j|, max over samples.
    const Eigen::Index per = tokens / 4;
    d.act_scale = Eigen::VectorXf::Zero(in);
    for (int s = 0; s < 4; ++s)
        d.act_scale = d.act_scale.cwiseMax(d.x.middleRows(s * per, per).cwiseAbs().colwise().mean().transpose());
    return d;
}

double output_error(const Mat& x, const Mat& w, const ptq::RowMatrixXf& approx) {
    return (x.cast<double>() * (w.cast<double>() - approx.cast<double>()).transpose()).norm();
}

}  // namespace

TEST_CASE("svd: randomized SVD matches the exact top-k singular values on a decaying spectrum") {
    const Eigen::Index m = 300, n = 200, k = 16;
    Eigen::HouseholderQR<Mat> qu(gaussian(m, n, 1)), qv(gaussian(n, n, 2));
    const Mat U = qu.householderQ() * Mat::Identity(m, n), V = qv.householderQ() * Mat::Identity(n, n);
    Eigen::VectorXf s(n);
    for (Eigen::Index i = 0; i < n; ++i) s(i) = float(std::pow(0.85, double(i)));
    const Mat a = U * s.asDiagonal() * V.transpose();
    const auto exact = ptq::exact_svd(a, k);
    const auto rnd = ptq::randomized_svd(a, k);
    const Eigen::VectorXd oracle = singular_values_d(a);
    for (Eigen::Index i = 0; i < k; ++i) {
        CHECK(std::fabs(exact.S(i) - oracle(i)) <= 1e-4 * oracle(i));
        CHECK(std::fabs(rnd.S(i) - exact.S(i)) <= 1e-3 * exact.S(i));
    }
    // Low-rank reconstruction error within 1.05x of Eckart-Young.
    const Mat ar = rnd.U * rnd.S.asDiagonal() * rnd.V.transpose();
    double tail = 0.0;
    for (Eigen::Index i = k; i < oracle.size(); ++i) tail += oracle(i) * oracle(i);
    CHECK((a - ar).cast<double>().norm() <= 1.05 * std::sqrt(tail));

    SUBCASE("same seed, same result; another seed differs") {
        const auto again = ptq::randomized_svd(a, k);
        CHECK(again.S == rnd.S);
        CHECK(again.U == rnd.U);
        ptq::RandomizedSvdOptions o;
        o.seed = 7;
        const auto other = ptq::randomized_svd(a, k, o);
        CHECK(other.U != rnd.U);
    }
}

TEST_CASE("svd: bad arguments") {
    const Mat a = gaussian(10, 6, 3);
    CHECK_THROWS_AS(ptq::exact_svd(a, 7), ptq::invalid_argument);
    CHECK_THROWS_AS(ptq::randomized_svd(a, -1), ptq::invalid_argument);
    Mat bad = a;
    bad(2, 2) = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_AS(ptq::exact_svd(bad, 2), ptq::non_finite_error);
    CHECK_THROWS_AS(ptq::randomized_svd(bad, 2), ptq::non_finite_error);
    CHECK(ptq::exact_svd(a, 0).U.cols() == 0);
}

TEST_CASE("lqer: full rank reproduces W; rank k attains the Eckart-Young optimum") {
    const Mat w = gaussian(48, 72, 4) * 0.05f;
    using L = ptq::Lqer<ptq::IntFormat<3, false>, ptq::PerGroup<32>>;
    ptq::LqerOptions o;
    o.scaled = false;
    o.rank = 48;
    const auto full = L(o).compute(w);
    CHECK(full.error_after <= 1e-5 * w.norm());
    CHECK(full.error_before > 0.01 * w.norm());

    const ptq::RowMatrixXf e = w - ptq::fake_quantize<ptq::IntFormat<3, false>>(w, {}, ptq::PerGroup<32>{});
    const Eigen::VectorXd sv = singular_values_d(e);
    for (Eigen::Index k : {1, 5, 20}) {
        o.rank = k;
        const auto r = L(o).compute(w);
        double tail = 0.0;
        for (Eigen::Index i = k; i < sv.size(); ++i) tail += sv(i) * sv(i);
        CHECK(r.error_after * r.error_after == doctest::Approx(tail).epsilon(1e-4));
        for (Eigen::Index i = 0; i < k; ++i) CHECK(r.singular_values(i) == doctest::Approx(sv(i)).epsilon(1e-4));
    }
}

TEST_CASE("lqer: L2QER beats LQER on outlier activations, both beat no correction, error falls with rank") {
    const Eigen::Index out = 64, in = 96;
    const Mat w = gaussian(out, in, 5) * 0.05f;
    const auto d = outlier_activations(1024, in, 6);
    using F = ptq::IntFormat<4, false>;
    const ptq::RowMatrixXf qw = ptq::fake_quantize<F>(w, {}, ptq::PerGroup<32>{});
    const double none = output_error(d.x, w, qw);
    double prev_plain = none, prev_l2 = none;
    for (Eigen::Index k : {2, 4, 8, 16, 32}) {
        ptq::LqerOptions o;
        o.rank = k;
        o.scaled = false;
        const auto plain = ptq::Lqer<F, ptq::PerGroup<32>>(o).compute(w);
        o.scaled = true;
        const auto l2 = ptq::Lqer<F, ptq::PerGroup<32>>(o).compute(w, &d.act_scale);
        const double ep = output_error(d.x, w, plain.weight_dequantized + plain.A * plain.B);
        const double el = output_error(d.x, w, l2.weight_dequantized + l2.A * l2.B);
        CAPTURE(k);
        CHECK(el < ep);
        CHECK(ep < none);
        CHECK(el < prev_l2);
        CHECK(ep < prev_plain);
        prev_plain = ep;
        prev_l2 = el;
    }
}

TEST_CASE("lqer: quantized factors, accounting and the inference helper") {
    const Eigen::Index out = 40, in = 64, k = 8;
    const Mat w = gaussian(out, in, 7) * 0.05f;
    const auto d = outlier_activations(256, in, 8);
    ptq::LqerOptions o;
    o.rank = k;
    using F = ptq::IntFormat<4, false>;
    const auto f32 = ptq::Lqer<F, ptq::PerGroup<32>>(o).compute(w, &d.act_scale);
    const auto mx = ptq::Lqer<F, ptq::PerGroup<32>, ptq::MxInt<8, 16>>(o).compute(w, &d.act_scale);
    REQUIRE(mx.A_q.has_value());
    REQUIRE(mx.B_q.has_value());
    CHECK(mx.A_q->rows() == std::size_t(out));
    CHECK(mx.A_q->cols() == std::size_t(k));
    CHECK(mx.B_q->cols() == std::size_t(in));
    // MXINT8 factors are close to the float factors.
    CHECK((mx.A * mx.B - f32.A * f32.B).norm() <= 0.02 * (f32.A * f32.B).norm());
    // Effective bits: 4 + 2*16/32 for W; A's rows hold k = 8 < 16 elements, one (short) MX block
    // per row -> 8 + 8/8 = 9 bits each; B's rows hold 64 = 4 full blocks -> 8 + 8/16 = 8.5 bits.
    const double expect = 5.0 + (9.0 * double(out * k) + 8.5 * double(k * in)) / double(out * in);
    CHECK(mx.effective_bits == doctest::Approx(expect));
    CHECK(f32.effective_bits == doctest::Approx(5.0 + 32.0 * double(out * k + k * in) / double(out * in)));
    CHECK(mx.extra_macs_ratio() == doctest::Approx(double((in + out) * k) / double(in * out)));

    // y = Q(W) x + A (B x), no activation quantization: equals X (Q + AB)^T.
    const ptq::RowMatrixXf y = ptq::lqer_forward(d.x, f32);
    const Mat yref = d.x * (f32.weight_dequantized + f32.A * f32.B).transpose();
    CHECK((y - yref).norm() <= 1e-5 * yref.norm());
    // With MXINT8 activations: close to the float result.
    const ptq::RowMatrixXf y8 = ptq::lqer_forward<ptq::MxInt<8, 16>>(d.x, mx);
    CHECK((y8 - yref).norm() <= 0.05 * yref.norm());
    CHECK_THROWS_AS(ptq::lqer_forward(Mat(3, in + 1), f32), ptq::invalid_argument);
}

TEST_CASE("lqer: composes with a Q(W) from another algorithm (LoRC, rank 8, unscaled)") {
    const Mat w = gaussian(32, 80, 9) * 0.05f;
    ptq::QuantOptions clip;
    clip.range = ptq::RangeMethod::mse_search;
    using F = ptq::IntFormat<3, false>;
    auto given = ptq::Rtn<F, ptq::PerGroup<16>>(clip).quantize(w);
    const ptq::RowMatrixXf given_dq = ptq::dequantize(given);
    ptq::LqerOptions o;
    o.rank = 8;
    o.scaled = false;
    const auto r = ptq::Lqer<F, ptq::PerGroup<16>>(o).compute(w, given);
    CHECK(r.weight_dequantized == given_dq);
    CHECK(r.error_before == doctest::Approx((w - given_dq).norm()));
    CHECK(r.error_after < r.error_before);
}

TEST_CASE("lqer: degenerate and bad inputs") {
    const Mat w = gaussian(16, 24, 10) * 0.05f;
    using L = ptq::Lqer<ptq::IntFormat<4, false>, ptq::PerGroup<8>>;
    ptq::LqerOptions o;
    o.rank = 4;
    CHECK_THROWS_AS(L(o).compute(w), ptq::invalid_argument);  // scaled needs act_scale
    Eigen::VectorXf s = Eigen::VectorXf::Ones(23);
    CHECK_THROWS_AS(L(o).compute(w, &s), ptq::invalid_argument);
    s = Eigen::VectorXf::Ones(24);
    s(5) = 0.0f;  // a dead channel: floored, no blow-up
    s(6) = 1e-30f;
    const auto r = L(o).compute(w, &s);
    CHECK(r.A.allFinite());
    CHECK(r.B.allFinite());
    CHECK(r.scale.maxCoeff() / r.scale.minCoeff() == doctest::Approx(1000.0).epsilon(1e-3));
    CHECK(r.error_after <= r.error_before);
    s(7) = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_AS(L(o).compute(w, &s), ptq::non_finite_error);
    o.rank = 25;
    CHECK_THROWS_AS(L(o).compute(w, nullptr), ptq::invalid_argument);
    o.rank = -1;
    CHECK_THROWS_WITH_AS(L{o}, doctest::Contains("'options.rank'"), ptq::invalid_argument);
    o.rank = 4;
    o.scale_floor = 0.0f;
    CHECK_THROWS_WITH_AS(L{o}, doctest::Contains("'options.scale_floor'"), ptq::invalid_argument);
    o.scale_floor = 1e-3f;
    o.weight_quant.range = ptq::RangeMethod::mse_search;
    o.weight_quant.clip.grid = 0;
    CHECK_THROWS_WITH_AS(L{o}, doctest::Contains("'options.weight_quant.clip.grid'"), ptq::invalid_argument);
    o.weight_quant = {};
    Mat bad = w;
    bad(0, 0) = std::numeric_limits<float>::infinity();
    o.rank = 2;
    o.scaled = false;
    CHECK_THROWS_AS(L(o).compute(bad), ptq::non_finite_error);
    // All-zero activation magnitudes: falls back to the unscaled decomposition.
    s = Eigen::VectorXf::Zero(24);
    o.scaled = true;
    CHECK(L(o).compute(w, &s).scale == Eigen::VectorXf::Ones(24));
}

TEST_CASE("lqer: a GPTQ result is accepted in column order and refused in act-order processing order") {
    using F = ptq::IntFormat<3, false>;
    using G = ptq::PerGroup<16>;
    const Mat w = gaussian(24, 64, 11) * 0.05f;
    Mat x = gaussian(256, 64, 12);
    for (int j = 0; j < 64; j += 5) x.col(j) *= 8.0f;  // a diag(H) order far from the identity
    const Eigen::MatrixXd h = 2.0 / 256.0 * (x.cast<double>().transpose() * x.cast<double>());
    ptq::LqerOptions o;
    o.rank = 4;
    o.scaled = false;
    const ptq::Lqer<F, G> lqer(o);

    ptq::GptqOptions go;
    go.act_order = true;
    const auto permuted = ptq::Gptq<F, G>(go).quantize(w, h);
    REQUIRE(permuted.permuted_storage);
    // Its storage order really differs from W's: read as W's order, Q(W) would be misaligned.
    REQUIRE(ptq::RowMatrixXf(ptq::dequantize(permuted.quantized)) != permuted.dequantized);
    CHECK_THROWS_WITH_AS(lqer.compute(w, permuted), doctest::Contains("gptq"), ptq::invalid_argument);

    go.static_groups = true;  // act-order with static groups keeps the original column order
    const auto stat = ptq::Gptq<F, G>(go).quantize(w, h);
    REQUIRE_FALSE(stat.permuted_storage);
    const auto r = lqer.compute(w, stat);
    CHECK(r.weight_dequantized == stat.dequantized);
    CHECK(r.error_before == doctest::Approx((w - stat.dequantized).norm()));
    CHECK(r.error_after < r.error_before);
}
