// AWQ GEMM checkpoint layout: export_awq -> the consumer's dequantization (dequantize_awq,
// written from AutoAWQ's dequantize_gemm) equals ptq::dequantize bit for bit; the nibble
// interleave against AutoAWQ's pack loop; the refusals.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include <ptq/io/awq_layout.hpp>

#include "support.hpp"

namespace {

using namespace ptq_io_test;

template <class F, class G>
void awq_case(Eigen::Index out, Eigen::Index in, const G& gran, std::int64_t expect_group, unsigned seed) {
    CAPTURE(F::name());
    CAPTURE(expect_group);
    ptq::QuantOptions o;
    o.widen_to_zero = false;  // AWQ's convention; also gives zero points at both ends of 0..15
    auto q = ptq::Rtn<F, G>(o, gran).quantize(weights(out, in, seed));
    make_scales_exact(q);
    const auto e = ptq::io::export_awq(q, "model.layers.1.self_attn.o_proj");
    CHECK(e.quantization_config.at("quant_method") == "awq");
    CHECK(e.quantization_config.at("version") == "gemm");
    CHECK(e.quantization_config.at("group_size") == expect_group);
    const std::int64_t groups = expect_group < 0 ? 1 : in / expect_group;
    REQUIRE(e.tensors.size() == 3);
    CHECK(e.tensors[0].shape == std::vector<std::int64_t>{in, out / 8});
    CHECK(e.tensors[1].shape == std::vector<std::int64_t>{groups, out / 8});
    CHECK(e.tensors[2].shape == std::vector<std::int64_t>{groups, out});
    const auto cfg = ptq::io::awq_config_from_json(e.quantization_config);
    const RowMatrixXf w = ptq::io::dequantize_awq(e.tensors, "model.layers.1.self_attn.o_proj", cfg);
    CHECK(bit_mismatches(w, ptq::dequantize(q)) == 0);
    // Back to a QuantizedMatrix: the same bytes and parameters.
    const auto back = ptq::io::import_awq<F>(e.tensors, "model.layers.1.self_attn.o_proj", cfg);
    CHECK(bit_mismatches(ptq::dequantize(back), ptq::dequantize(q)) == 0);
    if (!(q.layout().group_rows > 1)) {
        CHECK(back.layout() == q.layout());
        CHECK(std::equal(q.packed().begin(), q.packed().end(), back.packed().begin(), back.packed().end()));
        CHECK(std::equal(q.params().begin(), q.params().end(), back.params().begin(), back.params().end()));
    }
}

}  // namespace

TEST_CASE("awq layout: export -> AutoAWQ dequantization is bit-exact (asym/sym, groups, per channel)") {
    awq_case<ptq::IntFormat<4, false>>(64, 128, ptq::PerGroup<32>{}, 32, 1);
    awq_case<ptq::IntFormat<4, false>>(24, 128, ptq::PerGroup<>{64}, 64, 2);
    awq_case<ptq::IntFormat<4, false>>(16, 72, ptq::PerChannel{}, -1, 3);
    awq_case<ptq::IntFormat<4, true>>(32, 96, ptq::PerGroup<32>{}, 32, 4);
    awq_case<ptq::IntFormat<4, true, ptq::IntRange::full>>(32, 96, ptq::PerGroup<48>{}, 48, 5);
    awq_case<ptq::IntFormat<4, false>>(8, 40, ptq::PerTensor{}, -1, 6);
}

TEST_CASE("awq layout: nibble j of word c holds out channel 8c + [0,2,4,6,1,3,5,7][j] (AutoAWQ's pack loop)") {
    // Code of (out n, in i) = (n + 3 i) % 16, zero point of (n, g) = (2 n + g) % 16.
    using F = ptq::IntFormat<4, false>;
    const std::size_t out = 16, in = 64;
    ptq::QuantizedMatrix<F> q(ptq::PerGroup<32>{}.layout(out, in));
    for (std::size_t n = 0; n < out; ++n) {
        for (std::size_t i = 0; i < in; ++i) ptq::ref::set_code(q.row_data(n), i, 4, std::uint32_t((n + 3 * i) % 16));
        for (std::size_t g = 0; g < 2; ++g) q.row_params(n)[g] = {0.25f, std::int32_t((2 * n + g) % 16)};
    }
    const auto e = ptq::io::export_awq(q, "");
    const int order_map[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    for (std::size_t i = 0; i < in; ++i)
        for (std::size_t col = 0; col < out / 8; ++col) {
            std::uint32_t expect = 0;  // qweight[:, col] |= intweight[:, col * 8 + order_map[j]] << (j * 4)
            for (int j = 0; j < 8; ++j)
                expect |= std::uint32_t((col * 8 + std::size_t(order_map[j]) + 3 * i) % 16) << (j * 4);
            CHECK(e.tensors[0].load_bits(i * 2 + col) == expect);
        }
    for (std::size_t g = 0; g < 2; ++g)
        for (std::size_t col = 0; col < 2; ++col) {
            std::uint32_t expect = 0;
            for (int j = 0; j < 8; ++j)
                expect |= std::uint32_t((2 * (col * 8 + std::size_t(order_map[j])) + g) % 16) << (j * 4);
            CHECK(e.tensors[1].load_bits(g * 2 + col) == expect);
        }
}

TEST_CASE("awq layout: refusals") {
    using F = ptq::IntFormat<4, false>;
    SUBCASE("ragged last group") {
        auto q = ptq::Rtn<F, ptq::PerGroup<32>>().quantize(weights(16, 80, 1));
        make_scales_exact(q);
        CHECK_THROWS_WITH_AS(ptq::io::export_awq(q, "p"), doctest::Contains("not a multiple of the group size 32"),
                             ptq::invalid_argument);
    }
    SUBCASE("out_features not a multiple of 8") {
        auto q = ptq::Rtn<F, ptq::PerGroup<32>>().quantize(weights(12, 64, 2));
        make_scales_exact(q);
        CHECK_THROWS_WITH_AS(ptq::io::export_awq(q, "p"), doctest::Contains("out_features = 12"),
                             ptq::invalid_argument);
    }
    SUBCASE("a scale that is not an fp16 value") {
        auto q = ptq::Rtn<F, ptq::PerGroup<32>>().quantize(weights(16, 64, 3));
        make_scales_exact(q);
        q.row_params(9)[0].scale = 1.0f + 0x1p-20f;
        CHECK_THROWS_WITH_AS(ptq::io::export_awq(q, "p"), doctest::Contains("'p.scales'"), ptq::invalid_argument);
        CHECK_THROWS_WITH_AS(ptq::io::export_awq(q, "p"), doctest::Contains("row 9, group 0"), ptq::invalid_argument);
        CHECK_NOTHROW(ptq::io::export_awq(q, "p", ptq::io::ScaleRounding::round_nearest));
    }
    SUBCASE("reader: bits, version, groups that do not cover in") {
        CHECK_THROWS_WITH_AS(ptq::io::awq_config_from_json({{"bits", 3}, {"group_size", 128}}),
                             doctest::Contains("'bits'"), ptq::invalid_argument);
        CHECK_THROWS_WITH_AS(ptq::io::awq_config_from_json({{"bits", 4}, {"group_size", 128}, {"version", "gemv"}}),
                             doctest::Contains("'version'"), ptq::invalid_argument);
        CHECK(ptq::io::awq_config_from_json({{"w_bit", 4}, {"q_group_size", 64}, {"version", "GEMM"}}).group_size ==
              64);
        auto q = ptq::Rtn<F, ptq::PerGroup<32>>().quantize(weights(16, 64, 4));
        make_scales_exact(q);
        const auto e = ptq::io::export_awq(q, "p");
        CHECK_THROWS_WITH_AS(ptq::io::dequantize_awq(e.tensors, "p", {16}),
                             doctest::Contains("do not cover in_features"), ptq::invalid_argument);
    }
}
