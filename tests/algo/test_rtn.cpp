// RTN (algo/rtn.hpp): hand-checked ragged groups, invalid runtime arguments, and input as any
// Eigen expression. The format x granularity property and edge-case sweeps are in
// tests/granularity/test_properties_*.cpp (rtn_checks.hpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../format/support.hpp"

using namespace ptq;
using ptq_test::Dist;
using ptq_test::random_matrix;
using RM = ptq_test::RowMatrixXf;

TEST_SUITE("algo.rtn") {

TEST_CASE("ragged last group: cols 172, group 32 (the real model's FFN)") {
    using F = IntFormat<4, false>;
    const RM x = random_matrix(3, 172, Dist::heavy_tailed, 3);
    const auto q = quantize<F>(x, {}, PerGroup<32>{});
    REQUIRE(q.params().size() == 3 * 6);  // ceil(172/32) = 6 groups per row, last has 12 columns
    CHECK(q.layout().col_groups() == 6);
    CHECK(q.layout().group_begin(5) == 160);
    CHECK(q.layout().group_end(5) == 172);
    CHECK(q.row_stride() == 86);  // 172 * 4 / 8
    for (int r = 0; r < 3; ++r) {
        // last group: columns 160..171, by hand from the formulas of docs/DESIGN.md §6.1 (widened)
        double lo = 0.0, hi = 0.0;
        for (int c = 160; c < 172; ++c) {
            lo = std::min(lo, double(x(r, c)));
            hi = std::max(hi, double(x(r, c)));
        }
        const float scale = static_cast<float>((hi - lo) / 15.0);
        const auto& p = q.params()[std::size_t(r) * 6 + 5];
        CHECK(p.scale == scale);
        CHECK(p.zero == int(ptq_test::round_ref(double(-float(lo) / scale), Rounding::half_even)));
    }
}

TEST_CASE("invalid runtime arguments") {
    CHECK_THROWS_AS(PerGroup<dynamic_group>{0}, ptq::invalid_argument);
    CHECK_THROWS_WITH(PerGroup<dynamic_group>{0}, doctest::Contains("group_size"));
    const RM x = RM::Ones(2, 64);
    using MX = MxInt<8, 32>;
    CHECK_THROWS_AS((Rtn<MX, PerGroup<dynamic_group>>({}, PerGroup<dynamic_group>{16}).quantize(x)),
                    ptq::invalid_argument);
    CHECK_THROWS_WITH((Rtn<MX, PerGroup<dynamic_group>>({}, PerGroup<dynamic_group>{16}).quantize(x)),
                      doctest::Contains("granularity"));
    CHECK_THROWS_AS((quantize<MxFp4>(x, {}, PerGroup<dynamic_group>{33})), ptq::invalid_argument);
    CHECK_NOTHROW((quantize<MX>(x, {}, PerGroup<dynamic_group>{32})));
}

TEST_CASE("any Eigen expression gives the same result as a row-major float copy") {
    using F = IntFormat<4, false>;
    using G = PerGroup<dynamic_group>;
    const G gran{10};
    Eigen::MatrixXf big = random_matrix(20, 60, Dist::heavy_tailed, 21);  // column-major
    const RM ref_src = big.block(3, 5, 7, 33);                            // plain row-major copy
    const auto ref = quantize<F>(ref_src, {}, gran);
    auto same = [&](const QuantizedMatrix<F>& q) {
        CHECK(q.rows() == ref.rows());
        CHECK(q.cols() == ref.cols());
        CHECK(std::equal(q.packed().begin(), q.packed().end(), ref.packed().begin(), ref.packed().end()));
        CHECK(std::equal(q.params().begin(), q.params().end(), ref.params().begin(), ref.params().end()));
    };
    SUBCASE("column-major matrix") {
        const Eigen::MatrixXf cm = ref_src;
        same(quantize<F>(cm, {}, gran));
    }
    SUBCASE("row-major matrix") { same(quantize<F>(ref_src, {}, gran)); }
    SUBCASE("Block of a bigger column-major matrix") { same(quantize<F>(big.block(3, 5, 7, 33), {}, gran)); }
    SUBCASE("Block of a bigger row-major matrix") {
        const RM bigr = big;
        same(quantize<F>(bigr.block(3, 5, 7, 33), {}, gran));
        same(quantize<F>(bigr.middleRows(3, 7).middleCols(5, 33), {}, gran));
    }
    SUBCASE("double matrix (values exactly representable in float)") {
        const Eigen::MatrixXd d = ref_src.cast<double>();
        same(quantize<F>(d, {}, gran));
    }
    SUBCASE("Map with outer stride and with inner stride") {
        std::vector<float> buf(7 * 40, -99.0f);
        for (int r = 0; r < 7; ++r)
            for (int c = 0; c < 33; ++c) buf[std::size_t(r) * 40 + std::size_t(c)] = ref_src(r, c);
        Eigen::Map<const RM, 0, Eigen::OuterStride<>> mo(buf.data(), 7, 33, Eigen::OuterStride<>(40));
        same(quantize<F>(mo, {}, gran));
        std::vector<float> buf2(7 * 33 * 2, -99.0f);
        for (int r = 0; r < 7; ++r)
            for (int c = 0; c < 33; ++c) buf2[(std::size_t(r) * 33 + std::size_t(c)) * 2] = ref_src(r, c);
        Eigen::Map<const RM, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>> mi(
            buf2.data(), 7, 33, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(66, 2));
        same(quantize<F>(mi, {}, gran));
    }
    SUBCASE("transpose and arithmetic expressions") {
        const Eigen::MatrixXf t = ref_src.transpose();
        same(quantize<F>(t.transpose(), {}, gran));
        same(quantize<F>(ref_src * 1.0f, {}, gran));
        same(quantize<F>(Eigen::Ref<const RM>(ref_src), {}, gran));
    }
}

}  // TEST_SUITE("algo.rtn")
