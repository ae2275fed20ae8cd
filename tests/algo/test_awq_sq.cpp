// SmoothQuant and AWQ.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include <ptq/algo/awq.hpp>
#include <ptq/algo/smooth_quant.hpp>
#include <ptq/ptq.hpp>

#include "../format/support.hpp"

namespace {

using ptq::RowMatrixXf;

using ptq_test::gaussian;

// Activations whose channels 2, 11 and 29 are 20x, 50x and 100x the rest, as in LLMs.
RowMatrixXf outlier_x(Eigen::Index tokens, Eigen::Index in, unsigned seed) {
    RowMatrixXf x = gaussian(tokens, in, seed);
    x.col(2) *= 20.0f;
    x.col(11) *= 50.0f;
    x.col(29) *= 100.0f;
    return x;
}

double rel(const RowMatrixXf& a, const RowMatrixXf& b) { return (a - b).norm() / b.norm(); }

// Independent oracle of the AWQ / RTN calibration loss: mean over outputs of the squared error.
template <class F, class G>
double rtn_output_mse(const RowMatrixXf& x, const RowMatrixXf& w, const G& g, const ptq::QuantOptions& o) {
    const RowMatrixXf q = ptq::fake_quantize<F>(w, o, g);
    return (x.cast<double>() * (w - q).cast<double>().transpose()).squaredNorm() / double(x.rows() * w.rows());
}

double output_sse(const RowMatrixXf& x, const RowMatrixXf& w, const RowMatrixXf& w_hat) {
    return (x.cast<double>() * (w - w_hat).cast<double>().transpose()).squaredNorm();
}

RowMatrixXf rmsnorm(const RowMatrixXf& h, const Eigen::VectorXf& g) {
    RowMatrixXf y(h.rows(), h.cols());
    for (Eigen::Index t = 0; t < h.rows(); ++t) {
        const float inv = 1.0f / std::sqrt(h.row(t).squaredNorm() / float(h.cols()) + 1e-5f);
        y.row(t) = h.row(t).cwiseProduct(g.transpose()) * inv;
    }
    return y;
}

}  // namespace

TEST_CASE("smoothquant: the transform is exact and folds into an RMSNorm") {
    const RowMatrixXf x = outlier_x(64, 48, 1);
    const RowMatrixXf wq = gaussian(32, 48, 2, 0.05f), wk = gaussian(16, 48, 3, 0.05f);
    const Eigen::VectorXf amax = x.cwiseAbs().colwise().maxCoeff().transpose();
    const auto r = ptq::SmoothQuant().compute(amax, ptq::linears(wq, wk));
    REQUIRE(r.weights.size() == 2);
    const RowMatrixXf xs = ptq::smooth_activations(x, r.scales);
    CHECK(rel(xs * r.weights[0].transpose(), x * wq.transpose()) < 1e-5);
    CHECK(rel(xs * r.weights[1].transpose(), x * wk.transpose()) < 1e-5);

    SUBCASE("s by hand: max|X_j|^a / max over the group of max|W_ij|^(1-a)") {
        for (Eigen::Index j : {0, 2, 29}) {
            const double wmax = std::max(wq.col(j).cwiseAbs().maxCoeff(), wk.col(j).cwiseAbs().maxCoeff());
            CHECK(r.scales(j) == doctest::Approx(std::sqrt(double(amax(j))) / std::sqrt(wmax)).epsilon(1e-6));
        }
    }
    SUBCASE("folding 1/s into the RMSNorm weight gives the same layer output") {
        const RowMatrixXf h = gaussian(20, 48, 4);
        Eigen::VectorXf g = Eigen::VectorXf::Constant(48, 1.0f) + gaussian(48, 1, 5, 0.1f);
        const RowMatrixXf ref = rmsnorm(h, g) * wq.transpose();
        ptq::fold_into_rmsnorm(g, r.scales);
        CHECK(rel(rmsnorm(h, g) * r.weights[0].transpose(), ref) < 1e-5);
    }
    SUBCASE("folding into the rows of a previous linear") {
        const RowMatrixXf prev = gaussian(48, 40, 6), in = gaussian(10, 40, 7);
        RowMatrixXf folded = prev;
        ptq::fold_into_rows(folded, r.scales);
        CHECK(rel((in * folded.transpose()) * r.weights[0].transpose(), (in * prev.transpose()) * wq.transpose()) <
              1e-5);
    }
}

TEST_CASE("smoothquant: lowers the W8A8 output error on outlier activations") {
    const RowMatrixXf x = outlier_x(256, 64, 8);
    const RowMatrixXf w = gaussian(48, 64, 9, 0.05f);
    const RowMatrixXf ref = x * w.transpose();
    using I8 = ptq::IntFormat<8, true>;
    auto w8a8 = [&](const RowMatrixXf& xa, const RowMatrixXf& wa) {
        return (ptq::fake_quantize_activations<I8>(xa) * ptq::fake_quantize<I8>(wa, {}, ptq::PerChannel{}).transpose() -
                ref)
            .norm();
    };
    const double plain = w8a8(x, w);
    const Eigen::VectorXf amax = x.cwiseAbs().colwise().maxCoeff().transpose();
    const auto r = ptq::SmoothQuant().compute(amax, ptq::linears(w));
    const double smoothed = w8a8(ptq::smooth_activations(x, r.scales), r.weights[0]);
    CAPTURE(plain);
    CAPTURE(smoothed);
    CHECK(smoothed < 0.5 * plain);
    // MXINT8 activations (block 32) with the smoothed weights: also better than unsmoothed.
    using M8 = ptq::MxInt<8, 32>;
    auto mx = [&](const RowMatrixXf& xa, const RowMatrixXf& wa) {
        return (ptq::fake_quantize_activations<M8>(xa) * ptq::fake_quantize<M8>(wa).transpose() - ref).norm();
    };
    CHECK(mx(ptq::smooth_activations(x, r.scales), r.weights[0]) < mx(x, w));
}

TEST_CASE("smoothquant: edges and bad input") {
    const RowMatrixXf w = gaussian(8, 6, 10);
    Eigen::VectorXf amax = Eigen::VectorXf::Ones(6);
    amax(1) = 0.0f;  // a dead channel: clamped to min_value, finite scale
    ptq::SmoothQuantOptions o;
    o.alpha = 0.0f;  // s = 1 / max|W_j|
    auto s0 = ptq::SmoothQuant(o).scales(amax, ptq::linears(w));
    CHECK(s0.allFinite());
    CHECK(s0(3) == doctest::Approx(1.0 / w.col(3).cwiseAbs().maxCoeff()));
    o.alpha = 1.0f;  // s = max|X_j|
    auto s1 = ptq::SmoothQuant(o).scales(amax, ptq::linears(w));
    CHECK(s1(0) == doctest::Approx(1.0));
    CHECK(s1(1) == doctest::Approx(1e-5));
    o.alpha = 1.5f;
    CHECK_THROWS_WITH_AS(ptq::SmoothQuant{o}, doctest::Contains("'options.alpha'"), ptq::invalid_argument);
    o.alpha = 0.5f;
    o.min_value = 0.0f;
    CHECK_THROWS_WITH_AS(ptq::SmoothQuant{o}, doctest::Contains("'options.min_value'"), ptq::invalid_argument);
    CHECK_THROWS_AS(ptq::SmoothQuant().scales(Eigen::VectorXf::Ones(5), ptq::linears(w)), ptq::invalid_argument);
    CHECK_THROWS_AS(ptq::SmoothQuant().scales(amax, {}), ptq::invalid_argument);
    amax(2) = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_AS(ptq::SmoothQuant().scales(amax, ptq::linears(w)), ptq::non_finite_error);
}

TEST_CASE_TEMPLATE("awq: calibration loss never above RTN's, and alpha = 0 is RTN exactly", F, ptq::IntFormat<4, false>,
                   ptq::IntFormat<3, false>, ptq::IntFormat<4, true>, ptq::MxInt<4, 32>, ptq::Fp8<4, 3>,
                   ptq::MxFp<2, 1, 32>) {
    const RowMatrixXf x = outlier_x(128, 96, 11);
    const RowMatrixXf w1 = gaussian(40, 96, 12, 0.05f), w2 = gaussian(24, 96, 13, 0.05f);
    using G = std::conditional_t<F::is_mx, ptq::default_granularity_t<F>, ptq::PerGroup<32>>;
    const ptq::AwqOptions o;
    const auto r = ptq::Awq<F, G>(o).compute(x, ptq::linears(w1, w2));
    const double rtn = (rtn_output_mse<F>(x, w1, G{}, o.quant) * 40 + rtn_output_mse<F>(x, w2, G{}, o.quant) * 24) / 64;
    CHECK(r.output_mse_rtn == doctest::Approx(rtn).epsilon(1e-6));
    CHECK(r.output_mse <= r.output_mse_scaled);
    CHECK(r.output_mse_scaled <= r.output_mse_rtn);
    CHECK(r.output_mse_per_alpha.size() == 20);
    // The reported loss is the loss of the returned effective weights.
    const double check = (output_sse(x, w1, r.effective[0]) + output_sse(x, w2, r.effective[1])) / double(128 * 64);
    CHECK(r.output_mse == doctest::Approx(check).epsilon(1e-5));
    // The quantized matrices are Q(W diag(s)): dequantize(q) diag(1/s) == effective.
    const RowMatrixXf eff = ptq::dequantize(r.quantized[0]) * r.scales.cwiseInverse().asDiagonal();
    CHECK((eff - r.effective[0]).norm() <= 1e-6 * eff.norm());
}

TEST_CASE("awq: helps 4-bit and 3-bit INT on outlier activations; duo scaling; edges") {
    const RowMatrixXf x = outlier_x(256, 128, 14);
    const RowMatrixXf w = gaussian(64, 128, 15, 0.05f);
    using F = ptq::IntFormat<3, false>;
    using A = ptq::Awq<F, ptq::PerGroup<32>>;
    const auto r = A().compute(x, ptq::linears(w));
    CAPTURE(r.alpha);
    CHECK(r.alpha > 0.0f);
    CHECK(r.output_mse < 0.9 * r.output_mse_rtn);
    ptq::AwqOptions duo;
    duo.duo_scaling = true;
    const auto d = A(duo).compute(x, ptq::linears(w));
    // With duo scaling alpha = 0 is s = 1 / (w_mean + 1e-4), not RTN: output_mse_rtn is still
    // plain RTN's loss, and the same for both searches.
    CHECK(d.scales != Eigen::VectorXf::Ones(128));
    CHECK(d.output_mse_rtn == doctest::Approx(rtn_output_mse<F>(x, w, ptq::PerGroup<32>{}, duo.quant)).epsilon(1e-6));
    CHECK(d.output_mse_rtn == r.output_mse_rtn);
    CHECK(d.output_mse <= d.output_mse_per_alpha[0]);
    CHECK(d.output_mse < 0.9 * d.output_mse_rtn);

    SUBCASE("grid = 1: only alpha = 0, i.e. RTN (plus clipping)") {
        ptq::AwqOptions o;
        o.grid = 1;
        o.clip_search = false;
        const auto g1 = A(o).compute(x, ptq::linears(w));
        CHECK(g1.alpha == 0.0f);
        CHECK(g1.scales == Eigen::VectorXf::Ones(128));
        CHECK(ptq::dequantize(g1.quantized[0]) == ptq::fake_quantize<F>(w, o.quant, ptq::PerGroup<32>{}));
    }
    SUBCASE("zero and constant activation channels") {
        RowMatrixXf x2 = x;
        x2.col(5).setZero();
        x2.col(6).setConstant(3.0f);
        const auto z = A().compute(x2, ptq::linears(w));
        CHECK(z.scales.allFinite());
        CHECK(z.output_mse <= z.output_mse_rtn);
    }
    SUBCASE("bad input") {
        RowMatrixXf bad = x;
        bad(3, 3) = std::numeric_limits<float>::quiet_NaN();
        CHECK_THROWS_AS(A().compute(bad, ptq::linears(w)), ptq::non_finite_error);
        CHECK_THROWS_AS(A().compute(RowMatrixXf(4, 7), ptq::linears(w)), ptq::invalid_argument);
        ptq::AwqOptions o;
        o.grid = 0;
        CHECK_THROWS_WITH_AS(A{o}, doctest::Contains("'options.grid'"), ptq::invalid_argument);
        o = {};
        o.min_scale = 0.0f;
        CHECK_THROWS_WITH_AS(A{o}, doctest::Contains("'options.min_scale'"), ptq::invalid_argument);
        o = {};
        o.clip.grid = 0;
        CHECK_THROWS_WITH_AS(A{o}, doctest::Contains("'options.clip.grid'"), ptq::invalid_argument);
        o = {};
        o.quant.range = ptq::RangeMethod::mse_search;
        o.quant.clip.max_shrink = 1.0f;
        CHECK_THROWS_WITH_AS(A{o}, doctest::Contains("'options.quant.clip.max_shrink'"), ptq::invalid_argument);
    }
}

TEST_CASE("awq: the clipping of one-signed groups only scores proper ranges") {
    // |X| = 1 everywhere, so every alpha gives s = 1 and AWQ clips W itself. Rows 0 and 1 are
    // one-signed with |w| in [6, 10]: llm-awq's clamp to [-p a, p a] with p a below the nearer
    // bound (p < 0.6) would form the inverted range [6, p a], which must be skipped (scored
    // as an "empty group" it got scale 1, zero 0: codes that stand for no clipped range).
    using F = ptq::IntFormat<4, false>;
    using G = ptq::PerGroup<8>;
    std::mt19937 g(7);
    RowMatrixXf x(64, 32);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = (g() & 1u) ? 1.0f : -1.0f;
    RowMatrixXf w = gaussian(4, 32, 8);
    for (Eigen::Index c = 0; c < 32; ++c) {
        w(0, c) = float(6 + (c * 7) % 5);
        w(1, c) = -float(6 + (c * 3) % 5);
    }
    ptq::AwqOptions o;
    const auto r = ptq::Awq<F, G>(o).compute(x, ptq::linears(w));
    REQUIRE(r.scales == Eigen::VectorXf::Ones(32));
    const auto& q = r.quantized[0];
    for (Eigen::Index row = 0; row < 2; ++row)
        for (Eigen::Index b = 0; b < 32; b += 8) {
            // Oracle: the parameters of every proper candidate range (p = 1 - i/20, i <= 10).
            const float lo = w.row(row).segment(b, 8).minCoeff(), hi = w.row(row).segment(b, 8).maxCoeff();
            const float a = std::max(std::fabs(lo), std::fabs(hi));
            std::vector<F::Params> allowed;
            for (int i = 0; i <= 10; ++i) {
                const float p = 1.0f - float(i) / 20.0f;
                ptq::RangeStats s;
                s.lo = std::max(lo, -p * a);
                s.hi = std::min(hi, p * a);
                if (s.lo < s.hi) allowed.push_back(F::make_params(s, o.quant));
            }
            const F::Params chosen = q.params_at(std::size_t(row), std::size_t(b));
            CAPTURE(row);
            CAPTURE(b);
            CAPTURE(chosen.scale);
            CAPTURE(chosen.zero);
            CHECK(std::find(allowed.begin(), allowed.end(), chosen) != allowed.end());
        }
}
