// Tests of ptq/calib/calibration_stats.hpp: streaming, merging, accuracy, errors.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include <Eigen/Core>

#include <ptq/calib/calibration_stats.hpp>

namespace {

Eigen::MatrixXf random_acts(Eigen::Index t, Eigen::Index n, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    Eigen::MatrixXf x(t, n);
    for (Eigen::Index i = 0; i < t; ++i)
        for (Eigen::Index j = 0; j < n; ++j) x(i, j) = nd(rng) * (1.0f + float(j % 5));
    return x;
}

double rel_diff(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) { return (a - b).norm() / b.norm(); }

}  // namespace

TEST_CASE("CalibrationStats: H = 2/n X^T X and per-channel statistics") {
    const Eigen::Index n = 37;
    const Eigen::MatrixXf x = random_acts(101, n, 1);
    const Eigen::MatrixXd xd = x.cast<double>();
    const Eigen::MatrixXd ref = 2.0 / 101.0 * (xd.transpose() * xd);

    SUBCASE("double_exact equals the naive product to 1e-12") {
        ptq::CalibrationStats s(n, {ptq::HessianPrecision::double_exact});
        s.add(x);
        CHECK(s.tokens() == 101);
        CHECK(s.samples() == 1);
        const Eigen::MatrixXd h = s.hessian();
        CHECK(rel_diff(h, ref) < 1e-12);
        CHECK((h - h.transpose()).norm() == 0.0);
    }
    SUBCASE("float_chunks is within float accuracy") {
        ptq::CalibrationStats s(n, {ptq::HessianPrecision::float_chunks, 16});
        s.add(x);
        CHECK(rel_diff(s.hessian(), ref) < 1e-5);
    }
    SUBCASE("max|x|, mean|x|, per-sample mean max") {
        ptq::CalibrationStats s(n);
        s.add(x.topRows(40));
        s.add(x.bottomRows(61));
        const Eigen::VectorXf amax = x.cwiseAbs().colwise().maxCoeff().transpose();
        CHECK(s.max_abs() == amax);
        const Eigen::VectorXd mean = xd.cwiseAbs().colwise().mean().transpose();
        CHECK((s.mean_abs() - mean).norm() <= 1e-12 * mean.norm());
        const Eigen::VectorXd m1 = xd.topRows(40).cwiseAbs().colwise().mean().transpose();
        const Eigen::VectorXd m2 = xd.bottomRows(61).cwiseAbs().colwise().mean().transpose();
        CHECK((s.sample_mean_abs_max() - m1.cwiseMax(m2)).norm() <= 1e-12 * m1.norm());
        CHECK(s.samples() == 2);
    }
}

TEST_CASE("CalibrationStats: any split or merge equals one pass") {
    const Eigen::Index n = 29;
    const Eigen::MatrixXf x = random_acts(150, n, 2);
    for (auto prec : {ptq::HessianPrecision::double_exact, ptq::HessianPrecision::float_chunks}) {
        CAPTURE(int(prec));
        const ptq::CalibOptions o{prec, 32};
        ptq::CalibrationStats one(n, o);
        one.add(x);
        const Eigen::MatrixXd h1 = one.hessian();

        ptq::CalibrationStats split(n, o);  // uneven batches straddling chunk boundaries
        split.add(x.topRows(7));
        split.add(x.middleRows(7, 50));
        split.add(x.middleRows(57, 0));
        split.add(x.bottomRows(93));
        const Eigen::MatrixXd h2 = split.hessian();
        if (prec == ptq::HessianPrecision::float_chunks) CHECK(h2 == h1);  // chunks follow the token index
        else CHECK(rel_diff(h2, h1) < 1e-12);

        ptq::CalibrationStats a(n, o), b(n, o), c(n, o);  // three "threads", merged
        a.add(x.topRows(45));
        b.add(x.middleRows(45, 33));
        c.add(x.bottomRows(72));
        a.merge(b);
        a.merge(c);
        CHECK(a.tokens() == 150);
        CHECK(a.samples() == 3);
        const double tol = prec == ptq::HessianPrecision::double_exact ? 1e-12 : 1e-6;
        CHECK(rel_diff(a.hessian(), h1) < tol);
        CHECK(a.max_abs() == one.max_abs());
        CHECK((a.mean_abs() - one.mean_abs()).norm() <= 1e-12 * one.mean_abs().norm());
    }
}

TEST_CASE("CalibrationStats: row-major and double inputs, empty state") {
    const Eigen::MatrixXf x = random_acts(20, 8, 3);
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> xr = x.cast<double>();
    ptq::CalibrationStats a(8), b(8);
    a.add(x);
    b.add(xr);
    CHECK(a.hessian() == b.hessian());
    ptq::CalibrationStats e(8);
    CHECK(e.hessian().norm() == 0.0);
    CHECK(e.mean_abs().norm() == 0.0);
    ptq::CalibrationStats z(0);
    z.add(Eigen::MatrixXf(5, 0));
    CHECK(z.tokens() == 5);
}

TEST_CASE("CalibrationStats: errors name the argument and leave the state unchanged") {
    ptq::CalibrationStats s(6);
    Eigen::MatrixXf x = random_acts(4, 6, 4);
    s.add(x);
    const Eigen::MatrixXd h = s.hessian();
    CHECK_THROWS_AS(s.add(Eigen::MatrixXf(3, 5)), ptq::invalid_argument);
    Eigen::MatrixXf bad = x;
    bad(2, 3) = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_AS(s.add(bad), ptq::non_finite_error);
    bad(2, 3) = std::numeric_limits<float>::infinity();
    try {
        s.add(bad);
        FAIL("no throw");
    } catch (const ptq::non_finite_error& e) {
        CHECK(std::string(e.what()).find("'x'") != std::string::npos);
    }
    CHECK(s.hessian() == h);
    CHECK(s.tokens() == 4);
    ptq::CalibrationStats other(7);
    CHECK_THROWS_AS(s.merge(other), ptq::invalid_argument);
    CHECK_THROWS_AS(ptq::CalibrationStats(3, {ptq::HessianPrecision::float_chunks, 0}), ptq::invalid_argument);
}
