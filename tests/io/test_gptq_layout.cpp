// GPTQ checkpoint layout: export_gptq -> the consumer's dequantization (dequantize_gptq,
// written from GPTQModel's dequantize_weight) equals ptq::dequantize bit for bit, for every
// bit width, sym/asym, group size (per channel, ragged last group), act-order permutation,
// v1 and v2; and the refusals.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <ptq/io/compressed_tensors_layout.hpp>
#include <ptq/io/gptq_layout.hpp>

#include "support.hpp"

namespace {

using namespace ptq_io_test;
using ptq::io::GptqCheckpointFormat;

template <class F>
bool has_zero_point_zero(const ptq::QuantizedMatrix<F>& q) {
    return std::any_of(q.params().begin(), q.params().end(), [](const auto& p) { return p.zero == 0; });
}

/// Exports q, reads the config back from the exported JSON, dequantizes with the consumer
/// formula and compares with `expected` bit for bit. Returns false when v1 had to be skipped.
template <class F>
bool check_roundtrip(const ptq::QuantizedMatrix<F>& q, const RowMatrixXf& expected, GptqCheckpointFormat fmt,
                     const std::vector<std::size_t>& perm = {}) {
    if (fmt == GptqCheckpointFormat::gptq && !F::symmetric && has_zero_point_zero(q)) {
        CHECK_THROWS_AS(ptq::io::export_gptq(q, "layer", perm, {fmt}), ptq::invalid_argument);
        return false;
    }
    const ptq::io::LayerExport e = ptq::io::export_gptq(q, "model.layers.0.mlp.up_proj", perm, {fmt});
    const ptq::io::GptqConfig cfg = ptq::io::gptq_config_from_json(e.quantization_config);
    CHECK(cfg.bits == F::bits);
    CHECK(cfg.sym == F::symmetric);
    CHECK(e.quantization_config.at("checkpoint_format") == (fmt == GptqCheckpointFormat::gptq ? "gptq" : "gptq_v2"));
    REQUIRE(e.tensors.size() == 4);
    const RowMatrixXf w = ptq::io::dequantize_gptq(e.tensors, "model.layers.0.mlp.up_proj", cfg);
    CHECK(bit_mismatches(w, expected) == 0);
    // Back to a QuantizedMatrix: the same numbers (and, without act-order, the same bytes).
    const auto imp = ptq::io::import_gptq<F>(e.tensors, "model.layers.0.mlp.up_proj", cfg);
    CHECK(bit_mismatches(unpermute(ptq::dequantize(imp.quantized), imp.storage_perm), expected) == 0);
    if (perm.empty() && !(q.layout().group_rows > 1)) {
        CHECK(imp.quantized.layout() == q.layout());
        CHECK(std::equal(q.packed().begin(), q.packed().end(), imp.quantized.packed().begin(),
                         imp.quantized.packed().end()));
        CHECK(std::equal(q.params().begin(), q.params().end(), imp.quantized.params().begin(),
                         imp.quantized.params().end()));
    }
    return true;
}

template <class F, class G>
void rtn_case(Eigen::Index out, Eigen::Index in, const G& gran, std::int64_t expect_group, unsigned seed) {
    CAPTURE(F::name());
    CAPTURE(in);
    CAPTURE(expect_group);
    auto q = ptq::Rtn<F, G>({}, gran).quantize(weights(out, in, seed));
    make_scales_exact(q);
    const RowMatrixXf expected = ptq::dequantize(q);
    const auto e = ptq::io::export_gptq(q, "", {}, {GptqCheckpointFormat::gptq_v2});
    CHECK(e.quantization_config.at("group_size") == expect_group);
    CHECK(e.quantization_config.at("desc_act") == false);
    // Shapes of the consumer's buffers.
    const std::int64_t groups = expect_group < 0 ? 1 : (in + expect_group - 1) / expect_group;
    CHECK(e.tensors[0].name == "qweight");
    CHECK(e.tensors[0].shape == std::vector<std::int64_t>{in * F::bits / 32, out});
    CHECK(e.tensors[1].shape == std::vector<std::int64_t>{groups, out * F::bits / 32});
    CHECK(e.tensors[2].shape == std::vector<std::int64_t>{groups, out});
    CHECK(e.tensors[3].shape == std::vector<std::int64_t>{in});
    check_roundtrip(q, expected, GptqCheckpointFormat::gptq_v2);
    check_roundtrip(q, expected, GptqCheckpointFormat::gptq);
}

template <class F>
void all_groupings(unsigned seed) {
    // in = 96: multiples of 32 (every bit width); 64-column groups leave a 32-column last group.
    rtn_case<F>(64, 96, ptq::PerChannel{}, -1, seed);
    rtn_case<F>(64, 96, ptq::PerGroup<32>{}, 32, seed + 1);
    rtn_case<F>(64, 96, ptq::PerGroup<>{64}, 64, seed + 2);
    rtn_case<F>(32, 96, ptq::PerTensor{}, -1, seed + 3);
}

}  // namespace

TEST_CASE("gptq layout: RTN export -> consumer dequantization is bit-exact (2/3/4/8 bits, sym/asym, groups)") {
    all_groupings<ptq::IntFormat<2, false>>(10);
    all_groupings<ptq::IntFormat<2, true>>(20);
    all_groupings<ptq::IntFormat<3, false>>(30);
    all_groupings<ptq::IntFormat<3, true>>(40);
    all_groupings<ptq::IntFormat<4, false>>(50);
    all_groupings<ptq::IntFormat<4, true>>(60);
    all_groupings<ptq::IntFormat<4, true, ptq::IntRange::full>>(65);
    all_groupings<ptq::IntFormat<8, false>>(70);
    all_groupings<ptq::IntFormat<8, true>>(80);
    // 4 bits only needs multiples of 8: in = 40 with groups of 16 (16 + 16 + 8).
    rtn_case<ptq::IntFormat<4, false>>(16, 40, ptq::PerGroup<16>{}, 16, 90);
    rtn_case<ptq::IntFormat<2, true>>(16, 48, ptq::PerGroup<>{20}, 20, 91);
}

namespace {

template <class F, std::size_t Gs>
void gptq_act_order_case(Eigen::Index out, Eigen::Index in, unsigned seed) {
    CAPTURE(F::name());
    CAPTURE(Gs);
    auto r = gptq_act_order<F>(out, in, ptq::PerGroup<Gs>{}, seed);
    REQUIRE(r.permuted_storage);
    // Before any change: GPTQ's own W^ is the storage-order dequantization, unpermuted.
    CHECK(bit_mismatches(unpermute(ptq::dequantize(r.quantized), r.storage_perm), r.dequantized) == 0);
    make_scales_exact(r.quantized);
    const RowMatrixXf expected = unpermute(ptq::dequantize(r.quantized), r.storage_perm);
    const auto e = ptq::io::export_gptq(r.quantized, "l", r.storage_perm, {GptqCheckpointFormat::gptq_v2});
    CHECK(e.quantization_config.at("desc_act") == true);
    const auto& g_idx = e.tensors[3];
    REQUIRE(g_idx.name == "l.g_idx");
    bool monotone = true;
    for (std::size_t c = 0; c < std::size_t(in); ++c) {
        CHECK(g_idx.load_i32(c) == std::int32_t(r.g_idx[c]));
        if (c && g_idx.load_i32(c) < g_idx.load_i32(c - 1)) monotone = false;
    }
    CHECK_FALSE(monotone);
    // import_gptq stores the columns sorted by group: the same groups as GPTQ's storage.
    const auto imp = ptq::io::import_gptq<F>(e.tensors, "l", ptq::io::gptq_config_from_json(e.quantization_config));
    for (std::size_t k = 0; k < std::size_t(in); ++k) CHECK(r.g_idx[imp.storage_perm[k]] == k / Gs);
    check_roundtrip(r.quantized, expected, GptqCheckpointFormat::gptq_v2, r.storage_perm);
    check_roundtrip(r.quantized, expected, GptqCheckpointFormat::gptq, r.storage_perm);
}

}  // namespace

TEST_CASE("gptq layout: act-order GPTQ (desc_act, g_idx) export -> consumer dequantization is bit-exact") {
    gptq_act_order_case<ptq::IntFormat<4, false>, 32>(64, 128, 1);
    gptq_act_order_case<ptq::IntFormat<4, true>, 32>(32, 128, 2);
    gptq_act_order_case<ptq::IntFormat<3, false>, 64>(32, 96, 3);  // ragged: 64 + 32
    gptq_act_order_case<ptq::IntFormat<2, false>, 16>(32, 64, 4);
    gptq_act_order_case<ptq::IntFormat<8, true>, 48>(32, 96, 5);  // 48 + 48
}

TEST_CASE("gptq layout: the 3-bit stream straddles words exactly as GPTQModel packs it") {
    // Code k = k % 8 in a 32-row column: GPTQModel's 10 | 1 | 10 | 1 | 10 words, computed by
    // hand from its pack loop (A = codes 0..9 << 3j | code10 << 30, B = code10 >> 2 |
    // codes 11..20 << (3j + 1) | code21 << 31, C = code21 >> 1 | codes 22..31 << (3j + 2)).
    using F = ptq::IntFormat<3, false>;
    ptq::QuantizedMatrix<F> q(ptq::PerChannel{}.layout(32, 32));
    for (std::size_t r = 0; r < 32; ++r) {
        for (std::size_t c = 0; c < 32; ++c) ptq::ref::set_code(q.row_data(r), c, 3, std::uint32_t((c + r) % 8));
        q.row_params(r)[0] = {0.5f, 3};
    }
    const auto e = ptq::io::export_gptq(q, "", {}, {GptqCheckpointFormat::gptq_v2});
    const auto& qw = e.tensors[0];
    for (std::size_t n = 0; n < 32; ++n) {
        auto x = [&](std::size_t k) { return std::uint64_t((k + n) % 8); };
        std::uint64_t A = 0, B = 0, C = 0;
        for (std::size_t j = 0; j < 10; ++j) A |= x(j) << (3 * j);
        A |= (x(10) << 30) & 0xFFFFFFFFu;
        B = (x(10) >> 2) & 1;
        for (std::size_t j = 0; j < 10; ++j) B |= x(11 + j) << (3 * j + 1);
        B |= (x(21) << 31) & 0xFFFFFFFFu;
        C = (x(21) >> 1) & 3;
        for (std::size_t j = 0; j < 10; ++j) C |= x(22 + j) << (3 * j + 2);
        CHECK(qw.load_bits(0 * 32 + n) == (A & 0xFFFFFFFFu));
        CHECK(qw.load_bits(1 * 32 + n) == (B & 0xFFFFFFFFu));
        CHECK(qw.load_bits(2 * 32 + n) == (C & 0xFFFFFFFFu));
    }
}

TEST_CASE("gptq layout: refusals") {
    using F = ptq::IntFormat<4, false>;
    SUBCASE("a scale that is not an fp16 value names the tensor, row and group") {
        auto q = ptq::Rtn<F, ptq::PerGroup<32>>().quantize(weights(32, 64, 7));
        q.row_params(5)[1].scale = 0.1f;  // not an fp16 value
        make_scales_exact(q);
        q.row_params(5)[1].scale = 0.1f;
        CHECK_THROWS_WITH_AS(
            ptq::io::export_gptq(q, "p"),
            doctest::Contains("'p.scales': scale 0.100000001 at row 5, group 1 is not exactly representable in F16"),
            ptq::invalid_argument);
        // ... unless rounding is asked for: then the file holds the fp16 scale.
        const auto e =
            ptq::io::export_gptq(q, "p", {}, {GptqCheckpointFormat::gptq_v2, ptq::io::ScaleRounding::round_nearest});
        const RowMatrixXf w =
            ptq::io::dequantize_gptq(e.tensors, "p", ptq::io::gptq_config_from_json(e.quantization_config));
        q.row_params(5)[1].scale = ptq::round_to_half(0.1f);
        CHECK(bit_mismatches(w, ptq::dequantize(q)) == 0);
    }
    SUBCASE("v1 cannot store an asymmetric zero point 0") {
        RowMatrixXf w = weights(32, 64, 8);
        w.block(3, 32, 1, 32) = w.block(3, 32, 1, 32).cwiseAbs();  // row 3, group 1 >= 0: zero point 0
        auto q = ptq::Rtn<F, ptq::PerGroup<32>>().quantize(w);
        make_scales_exact(q);
        REQUIRE(q.row_params(3)[1].zero == 0);
        CHECK_THROWS_WITH_AS(ptq::io::export_gptq(q, "p"),
                             doctest::Contains("'p.qzeros': zero point 0 at row 3, group 1 cannot be stored"),
                             ptq::invalid_argument);
        const auto e = ptq::io::export_gptq(q, "p", {}, {GptqCheckpointFormat::gptq_v2});
        CHECK(bit_mismatches(
                  ptq::io::dequantize_gptq(e.tensors, "p", ptq::io::gptq_config_from_json(e.quantization_config)),
                  ptq::dequantize(q)) == 0);
    }
    SUBCASE("shapes the int32 packing cannot hold") {
        auto q = ptq::Rtn<F, ptq::PerChannel>().quantize(weights(32, 36, 9));  // 36 % 8 != 0
        make_scales_exact(q);
        CHECK_THROWS_WITH_AS(ptq::io::export_gptq(q, "p"), doctest::Contains("multiples of 8 for 4-bit GPTQ"),
                             ptq::invalid_argument);
        auto q3 = ptq::Rtn<ptq::IntFormat<3, true>, ptq::PerChannel>().quantize(weights(32, 48, 9));
        make_scales_exact(q3);
        CHECK_THROWS_WITH_AS(ptq::io::export_gptq(q3, "p"), doctest::Contains("multiples of 32 for 3-bit GPTQ"),
                             ptq::invalid_argument);
    }
    SUBCASE("a storage permutation that is not one") {
        auto q = ptq::Rtn<F, ptq::PerGroup<32>>().quantize(weights(32, 64, 10));
        make_scales_exact(q);
        std::vector<std::size_t> perm(64, 0);
        CHECK_THROWS_WITH_AS(ptq::io::export_gptq(q, "p", perm), doctest::Contains("storage_perm"),
                             ptq::invalid_argument);
    }
    SUBCASE("reader: bad config, missing tensor, g_idx out of range, symmetric file with a foreign zero") {
        CHECK_THROWS_WITH_AS(ptq::io::gptq_config_from_json({{"bits", 5}, {"group_size", 128}}),
                             doctest::Contains("'bits'"), ptq::invalid_argument);
        CHECK_THROWS_WITH_AS(ptq::io::gptq_config_from_json({{"bits", 4}}), doctest::Contains("'group_size'"),
                             ptq::invalid_argument);
        CHECK_THROWS_WITH_AS(
            ptq::io::gptq_config_from_json({{"bits", 4}, {"group_size", 128}, {"checkpoint_format", "gptq_v3"}}),
            doctest::Contains("'checkpoint_format'"), ptq::invalid_argument);
        auto q = ptq::Rtn<F, ptq::PerGroup<32>>().quantize(weights(32, 64, 11));
        make_scales_exact(q);
        auto e = ptq::io::export_gptq(q, "p", {}, {GptqCheckpointFormat::gptq_v2});
        auto cfg = ptq::io::gptq_config_from_json(e.quantization_config);
        std::vector<ptq::io::LayerTensor> missing(e.tensors.begin(), e.tensors.begin() + 3);
        CHECK_THROWS_WITH_AS(ptq::io::dequantize_gptq(missing, "p", cfg),
                             doctest::Contains("'p.g_idx': tensor is missing"), ptq::invalid_argument);
        auto bad = e.tensors;
        bad[3].store_bits(7, 2);  // only groups 0 and 1 exist
        CHECK_THROWS_WITH_AS(ptq::io::dequantize_gptq(bad, "p", cfg),
                             doctest::Contains("entry 7 = 2 is outside [0, 2)"), ptq::invalid_argument);
        using Int8 = ptq::IntFormat<8, false>;
        using Int4Sym = ptq::IntFormat<4, true, ptq::IntRange::full>;  // accepts code 0
        CHECK_THROWS_WITH_AS(ptq::io::import_gptq<Int8>(e.tensors, "p", cfg),
                             doctest::Contains("differs from the format's 8"), ptq::invalid_argument);
        CHECK_THROWS_WITH_AS(ptq::io::import_gptq<Int4Sym>(e.tensors, "p", cfg),
                             doctest::Contains("is not the symmetric zero"), ptq::invalid_argument);
        auto uneven = e.tensors;  // column 40 moved from group 1 to group 0: 33 + 31 columns
        uneven[3].store_bits(40, 0);
        CHECK_THROWS_WITH_AS(ptq::io::import_gptq<F>(uneven, "p", cfg),
                             doctest::Contains("does not have exactly 32 columns"), ptq::invalid_argument);
        CHECK(bit_mismatches(ptq::io::dequantize_gptq(uneven, "p", cfg),
                             ptq::io::dequantize_gptq(e.tensors, "p", cfg)) > 0);
        cfg.sym = true;  // the file is asymmetric
        CHECK_THROWS_WITH_AS(ptq::io::dequantize_gptq(e.tensors, "p", cfg), doctest::Contains("!= 2^(b-1)"),
                             ptq::invalid_argument);
    }
}

TEST_CASE("readme: the checkpoint layout snippet") {
    // The README's example (act-order GPTQ -> GPTQ v2 file with rounded fp16 scales, and a
    // compressed-tensors file with F32 scales), with its stated properties.
    using F = ptq::IntFormat<4, false>;
    auto r = gptq_act_order<F>(64, 256, ptq::PerGroup<128>{}, 21);
    auto e = ptq::io::export_gptq(r.quantized, "model.layers.0.mlp.up_proj", r.storage_perm,
                                  {ptq::io::GptqCheckpointFormat::gptq_v2, ptq::io::ScaleRounding::round_nearest});
    CHECK(e.tensors.size() == 4);
    CHECK(e.quantization_config.at("desc_act") == true);
    auto W_file = ptq::io::dequantize_gptq(e.tensors, "model.layers.0.mlp.up_proj",
                                           ptq::io::gptq_config_from_json(e.quantization_config));
    make_scales_exact(r.quantized);  // what the file holds
    CHECK(bit_mismatches(W_file, unpermute(ptq::dequantize(r.quantized), r.storage_perm)) == 0);
    auto r2 = gptq_act_order<F>(64, 256, ptq::PerGroup<128>{}, 21);
    auto c = ptq::io::export_compressed_tensors(r2.quantized, "model.layers.0.mlp.up_proj", r2.storage_perm,
                                                {ptq::io::DType::F32});
    auto W_ct = ptq::io::dequantize_compressed_tensors(c.tensors, "model.layers.0.mlp.up_proj",
                                                       ptq::io::ct_config_from_json(c.quantization_config));
    CHECK(bit_mismatches(W_ct, r2.dequantized) == 0);
}
