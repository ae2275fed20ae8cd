// Activation quantizers: dynamic per token / per MX block, static per tensor.
#include <doctest/doctest.h>

#include <random>

#include <ptq/algo/activation.hpp>
#include <ptq/ptq.hpp>

#include "../format/support.hpp"

namespace {
using ptq_test::gaussian;
}  // namespace

TEST_CASE("activations: static per-tensor INT8 equals per-tensor RTN on its calibration batch") {
    using I8 = ptq::IntFormat<8, true>;
    const ptq::RowMatrixXf x = gaussian(64, 40, 1);
    ptq::StaticActivationQuantizer<I8> q;
    CHECK_THROWS_AS(q.params(), ptq::invalid_argument);
    // Observed in two batches (any split): same range as one pass.
    q.observe(x.topRows(20));
    q.observe(x.bottomRows(44));
    CHECK(q.range().lo == x.minCoeff());
    CHECK(q.range().hi == x.maxCoeff());
    CHECK(q.apply(x) == ptq::fake_quantize<I8>(x, {}, ptq::PerTensor{}));

    SUBCASE("values beyond the calibrated range clamp to the extreme codes") {
        ptq::RowMatrixXf y = x;
        y(0, 0) = 10.0f * x.cwiseAbs().maxCoeff();
        const auto p = q.params();
        const ptq::RowMatrixXf yq = q.apply(y);
        CHECK(yq(0, 0) == doctest::Approx(p.scale * float(I8::q_max)));
        CHECK(yq.bottomRows(63) == q.apply(x).bottomRows(63));
    }
    SUBCASE("NaN: error by default, NaN batch with propagate") {
        ptq::RowMatrixXf y = x;
        y(3, 3) = std::numeric_limits<float>::quiet_NaN();
        CHECK_THROWS_AS(q.apply(y), ptq::non_finite_error);
        CHECK_THROWS_AS(q.observe(y), ptq::non_finite_error);
        ptq::QuantOptions o;
        o.non_finite = ptq::NonFinite::propagate;
        ptq::StaticActivationQuantizer<I8> qp(o);
        CHECK(qp.options().non_finite == ptq::NonFinite::propagate);
        qp.observe(x);
        CHECK(qp.apply(y).array().isNaN().all());
    }
    SUBCASE("the clipping search is refused at construction (only the range is calibrated)") {
        ptq::QuantOptions o;
        o.range = ptq::RangeMethod::mse_search;
        CHECK_THROWS_WITH_AS(ptq::StaticActivationQuantizer<I8>{o}, doctest::Contains("'options.range'"),
                             ptq::invalid_argument);
    }
}

TEST_CASE("activations: dynamic per-token INT8 and MXINT8 blocks of 16/32/128") {
    const ptq::RowMatrixXf x = gaussian(16, 256, 2);
    using I8 = ptq::IntFormat<8, true>;
    // Per token: every row uses its own absmax / 127.
    const ptq::RowMatrixXf t = ptq::fake_quantize_activations<I8>(x);
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
        const float step = x.row(r).cwiseAbs().maxCoeff() / 127.0f;
        CHECK((t.row(r) - x.row(r)).cwiseAbs().maxCoeff() <= 0.5f * step * 1.0001f);
    }
    // MX blocks (OCP floor rule, X = 2^floor(log2 amax)): elements within the largest magnitude
    // 127/64 X are off by at most half a grid step X/128; larger ones (up to amax < 2X) clamp
    // to +-127/64 X exactly.
    auto check_mx = [&](auto fmt, Eigen::Index block) {
        using M = decltype(fmt);
        const ptq::RowMatrixXf m = ptq::fake_quantize_activations<M>(x);
        for (Eigen::Index r = 0; r < x.rows(); ++r)
            for (Eigen::Index b = 0; b < x.cols(); b += block) {
                const float amax = x.row(r).segment(b, block).cwiseAbs().maxCoeff();
                const float xs = std::ldexp(1.0f, int(std::floor(std::log2(amax))));
                for (Eigen::Index c = b; c < b + block; ++c) {
                    const float lim = 127.0f / 64.0f * xs;
                    if (std::fabs(x(r, c)) <= lim) CHECK(std::fabs(m(r, c) - x(r, c)) <= xs / 128.0f * 1.0001f);
                    else CHECK(m(r, c) == std::copysign(lim, x(r, c)));
                }
            }
    };
    check_mx(ptq::MxInt<8, 16>{}, 16);
    check_mx(ptq::MxInt<8, 32>{}, 32);
    check_mx(ptq::MxInt<8, 128>{}, 128);
}
