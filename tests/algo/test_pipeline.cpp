// Composition: transformation (SmoothQuant / AWQ) -> reconstruction (RTN / GPTQ).
#include <doctest/doctest.h>

#include <span>

#include <random>

#include <ptq/algo/pipeline.hpp>
#include <ptq/ptq.hpp>

#include "../format/support.hpp"

namespace {

using ptq::RowMatrixXf;

using ptq_test::gaussian;

// Correlated calibration activations (a random mixing of the channels) with outlier channels
// 1, 17 and 40 (in must be > 40).
RowMatrixXf calib_x(Eigen::Index tokens, Eigen::Index in, unsigned seed) {
    REQUIRE(in > 40);
    RowMatrixXf x = gaussian(tokens, in, seed) * (RowMatrixXf::Identity(in, in) + gaussian(in, in, seed + 1, 0.3f));
    x.col(1) *= 30.0f;
    x.col(17) *= 60.0f;
    x.col(40) *= 25.0f;
    return x;
}

template <class F, class G>
ptq::PipelineResult<F> run(const RowMatrixXf& x, std::span<const ptq::RowMatrixRef> ws, ptq::Transform t,
                           ptq::Reconstruct rc) {
    ptq::PipelineOptions o;
    o.transform = t;
    o.reconstruct = rc;
    return ptq::Pipeline<F, G>(o).quantize(x, ws);
}

double total(const std::vector<double>& v) {
    double s = 0.0;
    for (double d : v) s += d;
    return s;
}

}  // namespace

TEST_CASE_TEMPLATE("pipeline: every combination on INT, MXINT and FP8 targets", F, ptq::IntFormat<3, false>,
                   ptq::IntFormat<4, true>, ptq::MxInt<4, 32>, ptq::Fp8<4, 3>) {
    const RowMatrixXf x = calib_x(512, 96, 1);
    const RowMatrixXf w1 = gaussian(48, 96, 2, 0.05f), w2 = gaussian(32, 96, 3, 0.05f);
    const auto ws = ptq::linears(w1, w2);
    using G = std::conditional_t<F::is_mx, ptq::default_granularity_t<F>,
                                 std::conditional_t<(F::bits == 8), ptq::PerChannel, ptq::PerGroup<32>>>;
    using T = ptq::Transform;
    using R = ptq::Reconstruct;
    const auto rtn = run<F, G>(x, ws, T::none, R::rtn);
    const auto gptq = run<F, G>(x, ws, T::none, R::gptq);
    const auto sq = run<F, G>(x, ws, T::smooth_quant, R::rtn);
    const auto awq = run<F, G>(x, ws, T::awq, R::rtn);
    const auto sq_gptq = run<F, G>(x, ws, T::smooth_quant, R::gptq);
    const auto awq_gptq = run<F, G>(x, ws, T::awq, R::gptq);
    // Plain RTN through the pipeline is RTN.
    CHECK(total(rtn.output_mse) == doctest::Approx(total(rtn.output_mse_rtn)));
    CHECK(rtn.effective[0] == ptq::fake_quantize<F>(w1, {}, G{}));
    for (const auto* r : {&gptq, &sq, &awq, &sq_gptq, &awq_gptq}) {
        REQUIRE(r->effective.size() == 2);
        CHECK(r->effective[0].allFinite());
        CHECK(r->effective[1].allFinite());
        CHECK(r->scales.allFinite());
    }
    MESSAGE(F::name() << " output MSE: rtn " << total(rtn.output_mse) << "  gptq " << total(gptq.output_mse) << "  sq "
                      << total(sq.output_mse) << "  awq " << total(awq.output_mse) << "  sq+gptq "
                      << total(sq_gptq.output_mse) << "  awq+gptq " << total(awq_gptq.output_mse));
    CHECK(total(gptq.output_mse) < total(rtn.output_mse));
    CHECK(total(awq.output_mse) <= total(rtn.output_mse));
    CHECK(total(awq_gptq.output_mse) < total(rtn.output_mse));
    CHECK(total(sq_gptq.output_mse) < total(sq.output_mse));
}

TEST_CASE("pipeline: AWQ+GPTQ is no worse than GPTQ alone at 3 bits on outlier activations") {
    for (unsigned seed : {10u, 20u, 30u}) {
        const RowMatrixXf x = calib_x(512, 128, seed);
        const RowMatrixXf w = gaussian(64, 128, seed + 5, 0.05f);
        using F = ptq::IntFormat<3, false>;
        using G = ptq::PerGroup<32>;
        const auto g = run<F, G>(x, ptq::linears(w), ptq::Transform::none, ptq::Reconstruct::gptq);
        const auto ag = run<F, G>(x, ptq::linears(w), ptq::Transform::awq, ptq::Reconstruct::gptq);
        CAPTURE(seed);
        CAPTURE(g.output_mse[0]);
        CAPTURE(ag.output_mse[0]);
        CHECK(ag.output_mse[0] <= g.output_mse[0]);
    }
}

TEST_CASE("pipeline: the transformation comes first: SQ+GPTQ == GPTQ(W s, H of X/s) / s") {
    const RowMatrixXf x = calib_x(256, 64, 40);
    const RowMatrixXf w = gaussian(24, 64, 41, 0.05f);
    using F = ptq::IntFormat<4, false>;
    using G = ptq::PerGroup<16>;
    const auto r = run<F, G>(x, ptq::linears(w), ptq::Transform::smooth_quant, ptq::Reconstruct::gptq);
    // Independent composition from the parts.
    const Eigen::VectorXf s = ptq::SmoothQuant().scales(x.cwiseAbs().colwise().maxCoeff().transpose(), ptq::linears(w));
    CHECK(r.scales == s);
    const Eigen::MatrixXd xs = (x * s.cwiseInverse().asDiagonal()).cast<double>();
    const Eigen::MatrixXd h = 2.0 / double(x.rows()) * xs.transpose() * xs;
    const auto g = ptq::Gptq<F, G>().quantize(RowMatrixXf(w * s.asDiagonal()), h);
    const RowMatrixXf expect = g.dequantized * s.cwiseInverse().asDiagonal();
    CHECK((r.effective[0] - expect).norm() <= 1e-5 * expect.norm());
}

TEST_CASE("pipeline: bad input") {
    const RowMatrixXf x = calib_x(32, 48, 50), w = gaussian(8, 48, 51);
    RowMatrixXf bad = x;
    bad(0, 0) = std::numeric_limits<float>::infinity();
    using F = ptq::IntFormat<4, false>;
    CHECK_THROWS_AS((ptq::Pipeline<F, ptq::PerGroup<8>>().quantize(bad, ptq::linears(w))), ptq::non_finite_error);
    const RowMatrixXf w2 = gaussian(8, 47, 52);
    CHECK_THROWS_AS((ptq::Pipeline<F, ptq::PerGroup<8>>().quantize(x, ptq::linears(w2))), ptq::invalid_argument);
}

TEST_CASE("pipeline: the RTN baseline uses the QuantOptions of the method it is compared with") {
    // One-signed groups make widen_to_zero matter (the only groups where it changes the range):
    // rows 0..7 are positive, rows 8..15 negative, the rest straddle 0.
    const RowMatrixXf x = calib_x(128, 48, 60);
    RowMatrixXf w = gaussian(24, 48, 61, 0.05f);
    w.topRows(8) = w.topRows(8).cwiseAbs().array() + 0.02f;
    w.middleRows(8, 8) = -(w.middleRows(8, 8).cwiseAbs().array() + 0.02f);
    using F = ptq::IntFormat<3, false>;
    using G = ptq::PerGroup<8>;
    ptq::QuantOptions widen, narrow;
    narrow.widen_to_zero = false;
    // The two settings give different RTN baselines here, so the check below can fail.
    const double mse_widen = ptq::output_mse(x, w, ptq::fake_quantize<F>(w, widen, G{}));
    const double mse_narrow = ptq::output_mse(x, w, ptq::fake_quantize<F>(w, narrow, G{}));
    REQUIRE(mse_widen != mse_narrow);
    struct Case {
        ptq::Transform t;
        ptq::Reconstruct r;
        bool awq_widen, gptq_widen, rtn_widen, expect_widen;
    };
    for (const Case c : {Case{ptq::Transform::awq, ptq::Reconstruct::rtn, false, true, true, false},
                         Case{ptq::Transform::awq, ptq::Reconstruct::rtn, true, false, false, true},
                         Case{ptq::Transform::none, ptq::Reconstruct::gptq, true, false, true, false},
                         Case{ptq::Transform::awq, ptq::Reconstruct::gptq, true, false, true, false},
                         Case{ptq::Transform::smooth_quant, ptq::Reconstruct::rtn, true, true, false, false},
                         Case{ptq::Transform::none, ptq::Reconstruct::rtn, false, false, true, true}}) {
        ptq::PipelineOptions o;
        o.transform = c.t;
        o.reconstruct = c.r;
        o.awq.quant.widen_to_zero = c.awq_widen;
        o.gptq.quant.widen_to_zero = c.gptq_widen;
        o.rtn.widen_to_zero = c.rtn_widen;
        const auto r = ptq::Pipeline<F, G>(o).quantize(x, ptq::linears(w));
        CAPTURE(int(c.t));
        CAPTURE(int(c.r));
        CHECK(r.output_mse_rtn[0] == (c.expect_widen ? mse_widen : mse_narrow));
    }
}

TEST_CASE("pipeline: coordinate descent after GPTQ lowers the output error") {
    const RowMatrixXf x = calib_x(256, 64, 70);
    const RowMatrixXf w = gaussian(32, 64, 71, 0.05f);
    using F = ptq::IntFormat<3, false>;
    using G = ptq::PerGroup<16>;
    for (const auto t : {ptq::Transform::none, ptq::Transform::awq}) {
        ptq::PipelineOptions o;
        o.transform = t;
        o.reconstruct = ptq::Reconstruct::gptq;
        const auto plain = ptq::Pipeline<F, G>(o).quantize(x, ptq::linears(w));
        o.refine.passes = 3;
        const auto refined = ptq::Pipeline<F, G>(o).quantize(x, ptq::linears(w));
        CAPTURE(int(t));
        CHECK(refined.scales == plain.scales);
        CHECK(refined.output_mse[0] < plain.output_mse[0]);
        CHECK(refined.output_mse_rtn[0] == plain.output_mse_rtn[0]);
        CHECK(refined.effective[0] ==
              ptq::RowMatrixXf(refined.gptq[0].dequantized * refined.scales.cwiseInverse().asDiagonal()));
        // Refitting the scales as well: lower again, and the scales are stored as gptq.quant says.
        o.refine.refit_scales = true;
        o.gptq.quant.scale_storage = ptq::ScaleStorage::f16;
        const auto refit = ptq::Pipeline<F, G>(o).quantize(x, ptq::linears(w));
        CHECK(refit.output_mse[0] < refined.output_mse[0]);
        for (const auto& p : refit.quantized[0].params()) CHECK(ptq::is_storable(p.scale, ptq::ScaleStorage::f16));
    }
    ptq::PipelineOptions bad;
    bad.refine.passes = -1;
    CHECK_THROWS_WITH_AS((ptq::Pipeline<F, G>(bad)), doctest::Contains("'options.refine.passes'"),
                         ptq::invalid_argument);
    bad.refine.passes = 1;
    bad.refine.refit_scales = true;  // MX scales are powers of two: no least-squares refit
    CHECK_THROWS_WITH_AS((ptq::Pipeline<ptq::MxInt<4, 32>, ptq::PerGroup<32>>(bad)), doctest::Contains("refit_scales"),
                         ptq::invalid_argument);
}

TEST_CASE("pipeline: error-aware calibration (x_fp) fits the fp32 outputs; x_fp == x changes nothing") {
    using F = ptq::IntFormat<3, false>;
    using G = ptq::PerGroup<16>;
    const RowMatrixXf x_fp = calib_x(512, 64, 90);
    const RowMatrixXf x = x_fp + x_fp * gaussian(64, 64, 91, 0.03f);  // the quantized model's inputs
    const RowMatrixXf w = gaussian(24, 64, 92, 0.1f);
    for (auto t : {ptq::Transform::none, ptq::Transform::awq}) {
        ptq::PipelineOptions o;
        o.transform = t;
        o.reconstruct = ptq::Reconstruct::gptq;
        const ptq::Pipeline<F, G> p(o);
        const auto plain = p.quantize(x, ptq::linears(w));
        const auto same = p.quantize(x, ptq::linears(w), x);
        CHECK(same.effective[0] == plain.effective[0]);
        const auto aware = p.quantize(x, ptq::linears(w), x_fp);
        const auto err = [&](const RowMatrixXf& we) {
            return (x_fp.cast<double>() * w.cast<double>().transpose() -
                    x.cast<double>() * we.cast<double>().transpose())
                .squaredNorm();
        };
        CAPTURE(int(t));
        CHECK(err(aware.effective[0]) < 0.95 * err(plain.effective[0]));
    }
    ptq::PipelineOptions rtn;
    CHECK_THROWS_WITH_AS((ptq::Pipeline<F, G>(rtn).quantize(x, ptq::linears(w), x_fp)), doctest::Contains("x_fp"),
                         ptq::invalid_argument);
    ptq::PipelineOptions g;
    g.reconstruct = ptq::Reconstruct::gptq;
    CHECK_THROWS_WITH_AS((ptq::Pipeline<F, G>(g).quantize(x, ptq::linears(w), RowMatrixXf(x.topRows(10)))),
                         doctest::Contains("x_fp"), ptq::invalid_argument);
    g.gptaq.alpha = -0.5;
    CHECK_THROWS_WITH_AS((ptq::Pipeline<F, G>(g)), doctest::Contains("gptaq.alpha"), ptq::invalid_argument);
}
