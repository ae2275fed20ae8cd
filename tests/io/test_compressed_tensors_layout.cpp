// compressed-tensors checkpoint layouts: export_compressed_tensors -> the consumer's
// decompression (dequantize_compressed_tensors, written from compressed-tensors'
// unpack_from_int32 / unpack_fp4_from_uint8 / forward.dequantize) equals ptq::dequantize (or
// GPTQ's own W^) bit for bit, for pack-quantized 1..8 bits sym/asym, float-quantized FP8 and
// mxfp4-pack-quantized, every strategy, F16 / BF16 / F32 scales and act-order g_idx.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <ptq/format/minifloat.hpp>
#include <ptq/format/mx_fp.hpp>
#include <ptq/io/compressed_tensors_layout.hpp>

#include "support.hpp"

namespace {

using namespace ptq_io_test;
using ptq::io::CtFormat;
using ptq::io::CtStrategy;
using ptq::io::DType;

const char* const kPrefix = "model.layers.3.mlp.down_proj";

template <class F>
void round_scales_for(ptq::QuantizedMatrix<F>& q, DType d) {
    if (d == DType::F16) make_scales_exact(q, Storage::f16);
    if (d == DType::BF16) make_scales_exact(q, Storage::bf16);
}

/// Export, read the config back from JSON, decompress with the consumer formula.
template <class F>
RowMatrixXf roundtrip(const ptq::QuantizedMatrix<F>& q, DType d, const std::vector<std::size_t>& perm,
                      ptq::io::LayerExport* keep = nullptr) {
    ptq::io::CtExportOptions o;
    o.scale_dtype = d;
    ptq::io::LayerExport e = ptq::io::export_compressed_tensors(q, kPrefix, perm, o);
    const ptq::io::CtConfig cfg = ptq::io::ct_config_from_json(e.quantization_config);
    RowMatrixXf w = ptq::io::dequantize_compressed_tensors(e.tensors, kPrefix, cfg);
    // Back to a QuantizedMatrix: the same numbers, and without act-order the same bytes.
    const auto back = ptq::io::import_compressed_tensors<F>(e.tensors, kPrefix, cfg);
    CHECK(bit_mismatches(unpermute(ptq::dequantize(back.quantized), back.storage_perm), w) == 0);
    if (perm.empty()) {
        CHECK(back.quantized.layout() == q.layout());
        CHECK(std::equal(q.packed().begin(), q.packed().end(), back.quantized.packed().begin(),
                         back.quantized.packed().end()));
        CHECK(std::equal(q.params().begin(), q.params().end(), back.quantized.params().begin(),
                         back.quantized.params().end()));
    }
    if (keep) *keep = std::move(e);
    return w;
}

template <class F, class G>
void rtn_case(Eigen::Index out, Eigen::Index in, const G& gran, CtStrategy strategy, unsigned seed) {
    for (DType d : {DType::F16, DType::BF16, DType::F32}) {
        CAPTURE(F::name());
        CAPTURE(std::string(ptq::io::dtype_name(d)));
        CAPTURE(in);
        auto q = ptq::Rtn<F, G>({}, gran).quantize(weights(out, in, seed));
        round_scales_for(q, d);
        ptq::io::LayerExport e;
        const RowMatrixXf w = roundtrip(q, d, {}, &e);
        CHECK(bit_mismatches(w, ptq::dequantize(q)) == 0);
        const ptq::io::CtConfig cfg = ptq::io::ct_config_from_json(e.quantization_config);
        CHECK(cfg.weights.strategy == strategy);
        CHECK(cfg.weights.num_bits == F::bits);
        CHECK_FALSE(cfg.weights.actorder_group);
        const auto& scale = e.tensors[ptq::io::is_int_format_v<F> ? 2 : 1];
        CHECK(scale.name == std::string(kPrefix) + ".weight_scale");
        CHECK(scale.dtype == d);
        if constexpr (ptq::io::is_int_format_v<F>) {
            CHECK(cfg.format == CtFormat::pack_quantized);
            CHECK(cfg.weights.symmetric == F::symmetric);
            CHECK(e.tensors[0].shape == std::vector<std::int64_t>{out, (in * F::bits + 31) / 32});
            CHECK(e.tensors.size() == (F::symmetric ? 3u : 4u));
        } else {
            CHECK(cfg.format == CtFormat::float_quantized);
            CHECK(e.tensors[0].dtype == DType::F8_E4M3);
        }
    }
}

template <class F>
void all_strategies(unsigned seed) {
    rtn_case<F>(40, 96, ptq::PerTensor{}, CtStrategy::tensor, seed);
    rtn_case<F>(40, 96, ptq::PerChannel{}, CtStrategy::channel, seed + 1);
    rtn_case<F>(40, 96, ptq::PerGroup<32>{}, CtStrategy::group, seed + 2);
    rtn_case<F>(37, 100, ptq::PerGroup<>{20}, CtStrategy::group, seed + 3);  // odd shapes: streams straddle words
}

}  // namespace

TEST_CASE("compressed-tensors pack-quantized: 1..8 bits, sym/asym, every strategy, F16/BF16/F32 scales") {
    all_strategies<ptq::IntFormat<1, false>>(100);
    all_strategies<ptq::IntFormat<2, false>>(110);
    all_strategies<ptq::IntFormat<2, true>>(120);
    all_strategies<ptq::IntFormat<3, false>>(130);
    all_strategies<ptq::IntFormat<3, true>>(140);
    all_strategies<ptq::IntFormat<4, false>>(150);
    all_strategies<ptq::IntFormat<4, true>>(160);
    all_strategies<ptq::IntFormat<5, false>>(170);
    all_strategies<ptq::IntFormat<5, true, ptq::IntRange::full>>(175);
    all_strategies<ptq::IntFormat<6, false>>(180);
    all_strategies<ptq::IntFormat<7, true>>(190);
    all_strategies<ptq::IntFormat<8, false>>(200);
    all_strategies<ptq::IntFormat<8, true>>(210);
}

TEST_CASE("compressed-tensors float-quantized: FP8 E4M3, every strategy, F16/BF16/F32 scales") {
    all_strategies<ptq::Fp8<4, 3>>(300);
}

TEST_CASE("compressed-tensors pack-quantized: the bit stream is pack_to_int32's (5 bits, by hand)") {
    // pack_to_int32: element e of each 32-element group at bit_starts = 5e: word 5e / 32, offset
    // 5e % 32, and the bits past 32 (ov = offset + 5 - 32 > 0) go to the next word.
    using F = ptq::IntFormat<5, false>;
    const std::size_t in = 40;
    ptq::QuantizedMatrix<F> q(ptq::PerChannel{}.layout(1, in));
    for (std::size_t c = 0; c < in; ++c) ptq::ref::set_code(q.row_data(0), c, 5, std::uint32_t((7 * c + 3) % 32));
    q.row_params(0)[0] = {1.0f, 16};
    const auto e = ptq::io::export_compressed_tensors(q, "", {}, {DType::F32});
    std::vector<std::uint64_t> expect(10, 0);  // 2 groups (padded to 64 elements) x 5 words, truncated to 7
    for (std::size_t i = 0; i < in; ++i) {
        const std::uint64_t v = (7 * i + 3) % 32;
        const std::size_t grp = i / 32, bit = 5 * (i % 32), word = grp * 5 + bit / 32, off = bit % 32;
        expect[word] += (v << off) & 0xFFFFFFFFu;
        if (off + 5 > 32) expect[word + 1] += v >> (5 - (off + 5 - 32));
    }
    REQUIRE(e.tensors[0].shape == std::vector<std::int64_t>{1, 7});
    for (std::size_t w = 0; w < 7; ++w) CHECK(e.tensors[0].load_bits(w) == (expect[w] & 0xFFFFFFFFu));
}

namespace {

template <class F, std::size_t Gs>
void act_order_case(Eigen::Index out, Eigen::Index in, unsigned seed) {
    CAPTURE(F::name());
    auto r = gptq_act_order<F>(out, in, ptq::PerGroup<Gs>{}, seed);
    REQUIRE(r.permuted_storage);
    // F32 scales hold GPTQ's scales exactly: the file decompresses to GPTQ's own W^.
    ptq::io::LayerExport e;
    const RowMatrixXf w = roundtrip(r.quantized, DType::F32, r.storage_perm, &e);
    CHECK(bit_mismatches(w, r.dequantized) == 0);
    CHECK(e.quantization_config["config_groups"]["group_0"]["weights"]["actorder"] == "group");
    const auto& g_idx = e.tensors.back();
    REQUIRE(g_idx.name == std::string(kPrefix) + ".weight_g_idx");
    for (std::size_t c = 0; c < std::size_t(in); ++c) CHECK(g_idx.load_i32(c) == std::int32_t(r.g_idx[c]));
    // BF16 scales after rounding them.
    make_scales_exact(r.quantized, Storage::bf16);
    CHECK(bit_mismatches(roundtrip(r.quantized, DType::BF16, r.storage_perm),
                         unpermute(ptq::dequantize(r.quantized), r.storage_perm)) == 0);
}

}  // namespace

TEST_CASE("compressed-tensors: act-order GPTQ (weight_g_idx) decompresses to GPTQ's own W^") {
    act_order_case<ptq::IntFormat<4, true>, 32>(48, 128, 11);
    act_order_case<ptq::IntFormat<4, false>, 64>(48, 128, 12);
    act_order_case<ptq::IntFormat<3, false>, 16>(24, 80, 13);
    act_order_case<ptq::IntFormat<8, true>, 32>(24, 96, 14);
    act_order_case<ptq::Fp8<4, 3>, 32>(24, 96, 15);
}

TEST_CASE("compressed-tensors mxfp4-pack-quantized: E2M1 nibbles and E8M0 bytes") {
    using F = ptq::MxFp<2, 1, 32>;
    for (Eigen::Index in : {32, 96, 160}) {
        CAPTURE(in);
        RowMatrixXf x = weights(24, in, unsigned(in));
        x(3, 5) = 0.0f;
        x(4, 7) = -0.0f;
        auto q = ptq::Rtn<F, ptq::PerGroup<32>>().quantize(x);
        ptq::io::LayerExport e;
        const RowMatrixXf w = roundtrip(q, DType::BF16, {}, &e);
        CHECK(bit_mismatches(w, ptq::dequantize(q)) == 0);
        const ptq::io::CtConfig cfg = ptq::io::ct_config_from_json(e.quantization_config);
        CHECK(cfg.format == CtFormat::mxfp4_pack_quantized);
        CHECK(cfg.weights.group_size == 32);
        CHECK(e.quantization_config["config_groups"]["group_0"]["weights"]["scale_dtype"] == "torch.uint8");
        REQUIRE(e.tensors.size() == 2);
        CHECK(e.tensors[0].dtype == DType::U8);
        CHECK(e.tensors[0].shape == std::vector<std::int64_t>{24, in / 2});
        CHECK(e.tensors[1].shape == std::vector<std::int64_t>{24, in / 32});
        // byte k of a row: element 2k low nibble, 2k+1 high nibble; scale bytes as stored.
        for (std::size_t k = 0; k < std::size_t(in / 2); ++k)
            CHECK(e.tensors[0].data[std::size_t(in / 2) * 2 + k] == (q.code(2, 2 * k) | (q.code(2, 2 * k + 1) << 4)));
        for (std::size_t g = 0; g < std::size_t(in / 32); ++g)
            CHECK(e.tensors[1].data[std::size_t(in / 32) * 5 + g] == q.row_params(5)[g].scale_byte);
    }
}

TEST_CASE("compressed-tensors: refusals and reader checks") {
    using F = ptq::IntFormat<4, false>;
    SUBCASE("shorter last group") {
        auto q = ptq::Rtn<F, ptq::PerGroup<32>>().quantize(weights(8, 80, 1));
        CHECK_THROWS_WITH_AS(ptq::io::export_compressed_tensors(q, "p", {}, {DType::F32}),
                             doctest::Contains("not a multiple of the group size 32"), ptq::invalid_argument);
    }
    SUBCASE("a scale BF16 cannot hold names the tensor, row and group") {
        auto q = ptq::Rtn<F, ptq::PerGroup<32>>().quantize(weights(8, 64, 2));
        make_scales_exact(q, Storage::bf16);
        q.row_params(6)[1].scale = 0.3f;
        CHECK_THROWS_WITH_AS(
            ptq::io::export_compressed_tensors(q, "p"),
            doctest::Contains(
                "'p.weight_scale': scale 0.300000012 at row 6, group 1 is not exactly representable in BF16"),
            ptq::invalid_argument);
        CHECK_NOTHROW(ptq::io::export_compressed_tensors(q, "p", {}, {DType::F32}));
        CHECK_THROWS_WITH_AS(ptq::io::export_compressed_tensors(q, "p", {}, {DType::I32}),
                             doctest::Contains("scale_dtype"), ptq::invalid_argument);
    }
    SUBCASE("mxfp4: in not a multiple of 32, a permutation, a NaN scale byte") {
        using M = ptq::MxFp<2, 1, 32>;
        auto q = ptq::Rtn<M, ptq::PerGroup<32>>().quantize(weights(8, 64, 3));
        std::vector<std::size_t> perm(64);
        for (std::size_t i = 0; i < 64; ++i) perm[i] = 63 - i;
        CHECK_THROWS_WITH_AS(ptq::io::export_compressed_tensors(q, "p", perm), doctest::Contains("has no g_idx"),
                             ptq::invalid_argument);
        q.row_params(2)[1].scale_byte = 255;
        CHECK_THROWS_WITH_AS(ptq::io::export_compressed_tensors(q, "p"),
                             doctest::Contains("NaN scale at row 2, group 1"), ptq::invalid_argument);
        auto q2 = ptq::Rtn<M, ptq::PerGroup<32>>().quantize(weights(8, 48, 3));
        CHECK_THROWS_AS(ptq::io::export_compressed_tensors(q2, "p"), ptq::invalid_argument);
    }
    SUBCASE("reader") {
        CHECK_THROWS_WITH_AS(ptq::io::ct_config_from_json({{"quant_method", "gptq"}}),
                             doctest::Contains("'quant_method'"), ptq::invalid_argument);
        auto q = ptq::Rtn<F, ptq::PerGroup<32>>().quantize(weights(8, 64, 4));
        const auto e = ptq::io::export_compressed_tensors(q, "p", {}, {DType::F32});
        auto cfg = ptq::io::ct_config_from_json(e.quantization_config);
        cfg.weights.group_size = 16;  // the scale tensor says 32
        CHECK_THROWS_WITH_AS(ptq::io::dequantize_compressed_tensors(e.tensors, "p", cfg),
                             doctest::Contains("disagrees"), ptq::invalid_argument);
        cfg.weights.group_size = 32;
        using Fp8 = ptq::Fp8<4, 3>;
        using Int4Sym = ptq::IntFormat<4, true, ptq::IntRange::full>;
        CHECK_THROWS_WITH_AS(ptq::io::import_compressed_tensors<Fp8>(e.tensors, "p", cfg),
                             doctest::Contains("pack-quantized does not hold fp8-e4m3"), ptq::invalid_argument);
        CHECK_THROWS_WITH_AS(ptq::io::import_compressed_tensors<Int4Sym>(e.tensors, "p", cfg),
                             doctest::Contains("does not fit int4-sym-full"), ptq::invalid_argument);
        std::vector<ptq::io::LayerTensor> t(e.tensors.begin(), e.tensors.begin() + 3);  // no weight_zero_point
        CHECK_THROWS_WITH_AS(ptq::io::dequantize_compressed_tensors(t, "p", cfg),
                             doctest::Contains("'p.weight_zero_point': tensor is missing"), ptq::invalid_argument);
        // A g_idx whose groups do not have group_size columns each.
        t = e.tensors;
        ptq::io::LayerTensor g = ptq::io::make_tensor("p.weight_g_idx", DType::I32, {64});
        for (std::size_t c = 0; c < 64; ++c) g.store_bits(c, c < 33 ? 0 : 1);
        t.push_back(g);
        CHECK_THROWS_WITH_AS(ptq::io::dequantize_compressed_tensors(t, "p", cfg),
                             doctest::Contains("does not have exactly 32 columns"), ptq::invalid_argument);
    }
}
