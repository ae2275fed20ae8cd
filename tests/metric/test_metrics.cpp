// Error metrics and storage accounting (metric/metrics.hpp), against hand-computed values.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include <ptq/metric/output_error.hpp>

#include "../format/support.hpp"

using namespace ptq;
using RM = ptq_test::RowMatrixXf;

TEST_SUITE("metric") {

TEST_CASE("mse / sqnr / max_abs_error by hand") {
    RM ref(2, 2), approx(2, 2);
    ref << 1, 2, 3, 4;
    approx << 1, 2.5, 2, 4;
    // differences 0, -0.5, 1, 0: SSE 1.25, MSE 0.3125, max 1; signal 1+4+9+16 = 30
    CHECK(sum_squared_error(ref, approx) == 1.25);
    CHECK(mse(ref, approx) == 0.3125);
    CHECK(max_abs_error(ref, approx) == 1.0);
    CHECK(sqnr_db(ref, approx) == doctest::Approx(10.0 * std::log10(24.0)).epsilon(1e-12));
    CHECK(sqnr_db(ref, approx) == doctest::Approx(13.802112417116).epsilon(1e-10));
    SUBCASE("mixed expression types and storage orders") {
        const Eigen::MatrixXd refd = ref.cast<double>();
        const Eigen::MatrixXf approx_cm = approx;
        CHECK(mse(refd, approx_cm) == 0.3125);
        CHECK(max_abs_error(refd.transpose(), approx_cm.transpose()) == 1.0);
    }
    SUBCASE("accumulates in double") {
        RM a = RM::Constant(1000, 1000, 1e-4f), b = RM::Zero(1000, 1000);
        CHECK(mse(a, b) == doctest::Approx(double(1e-4f) * double(1e-4f)).epsilon(1e-12));
    }
}

TEST_CASE("metric edge cases") {
    RM a(2, 2), b(2, 2);
    a << 1, -2, 3, 4;
    b = a;
    CHECK(mse(a, b) == 0.0);
    CHECK(sqnr_db(a, b) == std::numeric_limits<double>::infinity());
    CHECK(max_abs_error(a, b) == 0.0);
    const RM z = RM::Zero(2, 2);
    CHECK(std::isnan(sqnr_db(z, z)));
    CHECK(sqnr_db(z, a) == -std::numeric_limits<double>::infinity());  // 10 log10(0 / n)
    const RM e(0, 3);
    CHECK(std::isnan(mse(e, e)));
    CHECK(std::isnan(sqnr_db(e, e)));
    CHECK(max_abs_error(e, e) == 0.0);
    b(1, 0) = std::numeric_limits<float>::quiet_NaN();
    CHECK(std::isnan(max_abs_error(a, b)));
    CHECK(std::isnan(mse(a, b)));
}

TEST_CASE("shape mismatch throws invalid_argument naming the argument") {
    const RM a = RM::Zero(2, 3), b = RM::Zero(3, 2);
    CHECK_THROWS_AS(mse(a, b), ptq::invalid_argument);
    CHECK_THROWS_AS(sqnr_db(a, b), ptq::invalid_argument);
    CHECK_THROWS_AS(max_abs_error(a, b), ptq::invalid_argument);
    CHECK_THROWS_AS(sum_squared_error(a, RM::Zero(2, 4)), ptq::invalid_argument);
    CHECK_THROWS_WITH(mse(a, b), doctest::Contains("'approx'"));
}

TEST_CASE("effective bits per weight") {
    SUBCASE("4-bit asymmetric, group 32, fp16 scale + zero = 5 bits exactly (the papers' N+1)") {
        CHECK(effective_bits<IntFormat<4, false>>(PerGroup<32>{}.layout(8, 256)) == 5.0);
        const RM x = ptq_test::random_matrix(8, 256, ptq_test::Dist::normal, 1);
        CHECK(effective_bits(quantize<IntFormat<4, false>>(x, {}, PerGroup<32>{})) == 5.0);
        CHECK(effective_bits<IntFormat<4, false>>(PerGroup<128>{}.layout(8, 256)) == 4.25);
    }
    SUBCASE("symmetric per-channel: scale only") {
        CHECK(effective_bits<IntFormat<8, true>>(PerChannel{}.layout(16, 128)) == 8.0 + 16.0 / 128.0);
        CHECK(effective_bits<IntFormat<4, true>>(PerGroup<64>{}.layout(2, 128)) == 4.25);
        CHECK(effective_bits<Fp8E4M3>(PerChannel{}.layout(4, 64)) == 8.25);
    }
    SUBCASE("MXINT8 block 32 = 8.25; MXFP4 block 32 = 4.25; metadata option ignored for MX") {
        CHECK(effective_bits<MxInt<8, 32>>(PerGroup<32>{}.layout(8, 256)) == 8.25);
        CHECK(effective_bits<MxFp4>(PerGroup<32>{}.layout(8, 256)) == 4.25);
        CHECK(effective_bits<MxInt<8, 32>>(PerGroup<32>{}.layout(8, 256), MetadataBits{32, 32}) == 8.25);
    }
    SUBCASE("ragged groups are counted: 172 columns, group 32 -> 6 groups per row") {
        // 3 rows: 18 groups * 32 bits over 516 weights
        CHECK(effective_bits<IntFormat<4, false>>(PerGroup<32>{}.layout(3, 172)) ==
              doctest::Approx(4.0 + 18.0 * 32.0 / 516.0).epsilon(1e-15));
        CHECK(effective_bits<MxInt<8, 32>>(PerGroup<32>{}.layout(1, 172)) ==
              doctest::Approx(8.0 + 6.0 * 8.0 / 172.0).epsilon(1e-15));
    }
    SUBCASE("per-tensor and custom metadata widths") {
        CHECK(effective_bits<IntFormat<4, false>>(PerTensor{}.layout(16, 16)) == 4.0 + 32.0 / 256.0);
        CHECK(effective_bits<IntFormat<4, false>>(PerGroup<32>{}.layout(8, 256), MetadataBits{32, 4}) == 5.125);
        CHECK(effective_bits<IntFormat<4, false>>(PerGroup<32>{}.layout(0, 0)) == 4.0);
    }
}

TEST_CASE("metrics of a real quantization agree with a naive loop") {
    const RM x = ptq_test::random_matrix(6, 100, ptq_test::Dist::heavy_tailed, 5);
    const RM xh = fake_quantize<IntFormat<3, true>>(x, {}, PerGroup<32>{});
    double sse = 0, sig = 0, mx = 0;
    for (Eigen::Index i = 0; i < x.rows(); ++i)
        for (Eigen::Index j = 0; j < x.cols(); ++j) {
            const double d = double(x(i, j)) - double(xh(i, j));
            sse += d * d;
            sig += double(x(i, j)) * double(x(i, j));
            mx = std::max(mx, std::fabs(d));
        }
    CHECK(mse(x, xh) == doctest::Approx(sse / 600.0).epsilon(1e-12));
    CHECK(sqnr_db(x, xh) == doctest::Approx(10 * std::log10(sig / sse)).epsilon(1e-12));
    CHECK(max_abs_error(x, xh) == mx);
}

TEST_CASE("detail::all_finite: every non-finite value found, in every storage layout, against std::isfinite") {
    // The oracle is a plain loop of std::isfinite over the coefficients.
    const float specials[] = {std::numeric_limits<float>::quiet_NaN(),  -std::numeric_limits<float>::quiet_NaN(),
                              std::numeric_limits<float>::infinity(),   -std::numeric_limits<float>::infinity(),
                              std::numeric_limits<float>::max(),        -std::numeric_limits<float>::max(),
                              std::numeric_limits<float>::denorm_min(), -0.0f};
    auto oracle = [](const auto& m) {
        for (Eigen::Index r = 0; r < m.rows(); ++r)
            for (Eigen::Index c = 0; c < m.cols(); ++c)
                if (!std::isfinite(double(m(r, c)))) return false;
        return true;
    };
    for (const float v : specials)
        for (Eigen::Index pos : {Eigen::Index(0), Eigen::Index(37), Eigen::Index(7 * 13 - 1)}) {
            CAPTURE(v);
            CAPTURE(pos);
            RM rm = RM::Constant(7, 13, 1.5f);
            rm(pos / 13, pos % 13) = v;
            const Eigen::MatrixXf cm = rm;
            const Eigen::MatrixXd dm = rm.cast<double>();
            const bool expect = std::isfinite(v);
            CHECK(ptq::detail::all_finite(rm) == expect);
            CHECK(ptq::detail::all_finite(cm) == expect);
            CHECK(ptq::detail::all_finite(dm) == expect);
            CHECK(ptq::detail::all_finite(rm.transpose()) == expect);
            CHECK(ptq::detail::all_finite(rm * 1.0f) == expect);  // an expression: evaluated first
            // Blocks (outer stride), a column of a row-major matrix (inner stride 13), a row of a
            // column-major one (inner stride 7): each agrees with the oracle on its own coefficients.
            const auto blk = rm.block(1, 2, 5, 9);
            CHECK(ptq::detail::all_finite(blk) == oracle(blk));
            for (Eigen::Index c = 0; c < 13; ++c) CHECK(ptq::detail::all_finite(rm.col(c)) == oracle(rm.col(c)));
            for (Eigen::Index r = 0; r < 7; ++r) CHECK(ptq::detail::all_finite(cm.row(r)) == oracle(cm.row(r)));
            const Eigen::Ref<const RM> ref = rm.middleRows(1, 5);
            CHECK(ptq::detail::all_finite(ref) == oracle(ref));
        }
    CHECK(ptq::detail::all_finite(RM(0, 4)));
}

TEST_CASE("output_squared_error / output_mse against a double product") {
    // Oracle: X and delta widened to double, multiplied and squared in double. The float product
    // (BLAS or Eigen) differs by its roundings only: tokens * in * out terms of size ~1 keep the
    // relative error far below 1e-5.
    const RM x = RM::Random(37, 53), w = RM::Random(11, 53), wh = RM::Random(11, 53);
    const RM d = w - wh;
    const double oracle = (x.cast<double>() * d.cast<double>().transpose()).squaredNorm();
    CHECK(ptq::output_squared_error(x, d) == doctest::Approx(oracle).epsilon(1e-5));
    const Eigen::MatrixXf xc = x, dc = d;  // column-major arguments are evaluated into row-major
    CHECK(ptq::output_squared_error(xc, dc) == doctest::Approx(oracle).epsilon(1e-5));
    CHECK(ptq::output_mse(x, w, wh) == doctest::Approx(oracle / (37.0 * 11.0)).epsilon(1e-5));
    // Column blocks: views with an outer stride larger than their width.
    const double oracle_blk =
        (x.middleCols(5, 20).cast<double>() * d.middleCols(5, 20).cast<double>().transpose()).squaredNorm();
    CHECK(ptq::output_squared_error(x.middleCols(5, 20), d.middleCols(5, 20)) ==
          doctest::Approx(oracle_blk).epsilon(1e-5));
    CHECK(ptq::output_squared_error(RM(0, 53), d) == 0.0);
    CHECK_THROWS_AS(ptq::output_squared_error(x, RM::Random(3, 52)), ptq::invalid_argument);
}
}  // TEST_SUITE("metric")
