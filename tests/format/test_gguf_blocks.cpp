// ggml block export / import (io/gguf_blocks.hpp) against ggml's own dequantization formulas
// (io/ggml_dequantize.hpp, written from ggml-quants.c independently of the exporter), byte
// layouts checked on hand-made blocks, and hostile inputs.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <ptq/io/ggml_dequantize.hpp>
#include <ptq/io/gguf_blocks.hpp>

#include "support.hpp"

namespace {

using ptq::io::GgmlType;
using ptq_test::Dist;
using RM = ptq_test::RowMatrixXf;

using Q8 = ptq::IntFormat<8, true>;
using Q8F = ptq::IntFormat<8, true, ptq::IntRange::full>;
using Q4 = ptq::IntFormat<4, true>;
using Q4F = ptq::IntFormat<4, true, ptq::IntRange::full>;

/// Bit-for-bit equality of two float matrices, where +0 and -0 count as equal (ggml's MXFP4
/// table has no -0); returns the number of differing elements.
int bit_mismatches(const RM& a, const RM& b) {
    if (a.rows() != b.rows() || a.cols() != b.cols()) return -1;
    int bad = 0;
    for (Eigen::Index i = 0; i < a.size(); ++i) {
        const float x = a.data()[i], y = b.data()[i];
        const bool same =
            (x == 0.0f && y == 0.0f) || std::bit_cast<std::uint32_t>(x) == std::bit_cast<std::uint32_t>(y);
        if (!same) ++bad;
    }
    return bad;
}

template <class F>
ptq::QuantizedMatrix<F> rtn_f16(const RM& w) {
    ptq::QuantOptions o;
    o.scale_storage = ptq::ScaleStorage::f16;
    return ptq::Rtn<F, ptq::PerGroup<32>>(o).quantize(w);
}

template <class F>
bool same_matrix(const ptq::QuantizedMatrix<F>& a, const ptq::QuantizedMatrix<F>& b) {
    if (!(a.layout() == b.layout())) return false;
    if (!std::equal(a.packed().begin(), a.packed().end(), b.packed().begin(), b.packed().end())) return false;
    return std::equal(a.params().begin(), a.params().end(), b.params().begin(), b.params().end());
}

std::vector<std::byte> bytes_of(std::initializer_list<int> v) {
    std::vector<std::byte> b;
    for (int x : v) b.push_back(static_cast<std::byte>(x));
    return b;
}

template <class Fn>
std::string error_of(Fn&& f) {
    try {
        f();
    } catch (const ptq::invalid_argument& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_SUITE("io.gguf_blocks") {

TEST_CASE_TEMPLATE("export -> ggml's dequantization == ptq::dequantize, export -> import == identity", F, Q8, Q8F, Q4,
                   Q4F, ptq::IntMinFormat<4>, ptq::MxFp4) {
    constexpr GgmlType type = ptq::io::ggml_type_of<F>();
    std::uint32_t seed = 11;
    for (Dist d : {Dist::normal, Dist::heavy_tailed, Dist::outliers, Dist::positive}) {
        for (const auto& shape : {std::pair<int, int>{1, 32}, {1, 64}, {7, 64}, {3, 4096}, {16, 96}}) {
            const int rows = shape.first, cols = shape.second;  // (clang 14: no lambda capture of bindings)
            CAPTURE(int(d));
            CAPTURE(rows);
            CAPTURE(cols);
            const RM w = ptq_test::random_matrix(std::size_t(rows), std::size_t(cols), d, seed++);
            const auto q = rtn_f16<F>(w);
            const auto t = ptq::io::to_ggml(q, "blk.0.ffn_up.weight");
            CHECK(t.type == type);
            REQUIRE(t.ne.size() == 2);
            CHECK(t.ne[0] == std::uint64_t(cols));
            CHECK(t.ne[1] == std::uint64_t(rows));
            CHECK(t.data.size() == ptq::io::ggml_row_size(type, cols) * std::size_t(rows));
            const RM ggml = ptq::io::ggml_dequantize(t.type, t.ne, t.data, "w");
            CHECK(bit_mismatches(ggml, ptq::dequantize(q)) == 0);
            const auto back = ptq::io::from_ggml<F>(t.type, t.ne, t.data, "w");
            CHECK(same_matrix(back, q));
        }
    }
}

TEST_CASE("byte layout of hand-made blocks (ggml-common.h block structs)") {
    SUBCASE("Q4_0: fp16 d little-endian, low nibble = element j, high nibble = element j + 16") {
        ptq::QuantizedMatrix<Q4F> q(ptq::GroupLayout{1, 32, 1, 32});
        std::uint8_t c[32];
        for (int j = 0; j < 32; ++j) c[j] = std::uint8_t((j * 7 + 3) % 16);
        ptq::ref::pack_bits(c, 32, 4, q.row_data(0));
        q.params()[0] = {0.5f, 8};  // 0.5 = fp16 0x3800
        const auto t = ptq::io::to_ggml(q, "t");
        REQUIRE(t.data.size() == 18);
        CHECK(t.data[0] == std::byte{0x00});
        CHECK(t.data[1] == std::byte{0x38});
        for (int j = 0; j < 16; ++j) CHECK(int(t.data[std::size_t(2 + j)]) == (c[j] | (c[j + 16] << 4)));
        // ggml: (nibble - 8) * d
        const RM v = ptq::io::ggml_dequantize(t.type, t.ne, t.data, "t");
        for (int j = 0; j < 32; ++j) CHECK(v(0, j) == float(c[j] - 8) * 0.5f);
    }
    SUBCASE("Q8_0: int8 q = code - 128") {
        ptq::QuantizedMatrix<Q8F> q(ptq::GroupLayout{1, 32, 1, 32});
        std::uint8_t c[32];
        for (int j = 0; j < 32; ++j) c[j] = std::uint8_t(j * 8);  // 0 (q = -128) .. 248 (q = 120)
        ptq::ref::pack_bits(c, 32, 8, q.row_data(0));
        q.params()[0] = {-0.0f + 3.0f, 128};  // 3 = fp16 0x4200
        const auto t = ptq::io::to_ggml(q, "t");
        REQUIRE(t.data.size() == 34);
        CHECK(t.data[0] == std::byte{0x00});
        CHECK(t.data[1] == std::byte{0x42});
        for (int j = 0; j < 32; ++j) CHECK(std::int8_t(t.data[std::size_t(2 + j)]) == j * 8 - 128);
    }
    SUBCASE("Q4_1: fp16 d, fp16 m, nibbles; value = nibble * d + m") {
        ptq::QuantizedMatrix<ptq::IntMinFormat<4>> q(ptq::GroupLayout{1, 32, 1, 32});
        std::uint8_t c[32];
        for (int j = 0; j < 32; ++j) c[j] = std::uint8_t((j * 5 + 1) % 16);
        ptq::ref::pack_bits(c, 32, 4, q.row_data(0));
        q.params()[0] = {0.125f, -1.5f};  // 0.125 = fp16 0x3000, -1.5 = 0xBE00
        const auto t = ptq::io::to_ggml(q, "t");
        CHECK(t.type == GgmlType::Q4_1);
        REQUIRE(t.data.size() == 20);
        CHECK(t.data[0] == std::byte{0x00});
        CHECK(t.data[1] == std::byte{0x30});
        CHECK(t.data[2] == std::byte{0x00});
        CHECK(t.data[3] == std::byte{0xBE});
        for (int j = 0; j < 16; ++j) CHECK(int(t.data[std::size_t(4 + j)]) == (c[j] | (c[j + 16] << 4)));
        const RM v = ptq::io::ggml_dequantize(t.type, t.ne, t.data, "t");
        for (int j = 0; j < 32; ++j) CHECK(v(0, j) == float(c[j]) * 0.125f - 1.5f);
    }
    SUBCASE("MXFP4: byte e = E8M0 byte, nibbles = E2M1 codes; value = E2M1 * 2^(e-127)") {
        ptq::QuantizedMatrix<ptq::MxFp4> q(ptq::GroupLayout{1, 32, 1, 32});
        std::uint8_t c[32];
        for (int j = 0; j < 32; ++j) c[j] = std::uint8_t(j % 16);
        ptq::ref::pack_bits(c, 32, 4, q.row_data(0));
        const float e2m1[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
        for (int e : {0, 1, 2, 100, 127, 130, 254}) {
            CAPTURE(e);
            q.params()[0].scale_byte = std::uint8_t(e);
            const auto t = ptq::io::to_ggml(q, "t");
            REQUIRE(t.data.size() == 17);
            CHECK(int(t.data[0]) == e);
            for (int j = 0; j < 16; ++j) CHECK(int(t.data[std::size_t(1 + j)]) == (c[j] | (c[j + 16] << 4)));
            const RM v = ptq::io::ggml_dequantize(t.type, t.ne, t.data, "t");
            for (int j = 0; j < 32; ++j) CHECK(v(0, j) == float(std::ldexp(double(e2m1[c[j]]), e - 127)));
        }
    }
}

TEST_CASE("export refuses what ggml cannot hold exactly, naming the tensor, row and group") {
    const RM w = ptq_test::random_matrix(3, 64, Dist::normal, 5);
    const auto q32 = ptq::Rtn<Q4, ptq::PerGroup<32>>().quantize(w);  // f32 scales
    const std::string msg = error_of([&] { (void)ptq::io::to_ggml(q32, "blk.3.attn_q.weight"); });
    CHECK(msg.find("blk.3.attn_q.weight") != std::string::npos);
    CHECK(msg.find("row 0, group 0") != std::string::npos);
    CHECK(msg.find("fp16") != std::string::npos);

    // round_to_fp16: the file holds the rounded scales; ggml's values are (c - 8) * fp16(scale).
    ptq::io::GgmlExportOptions ro;
    ro.round_to_fp16 = true;
    const auto t = ptq::io::to_ggml(q32, "w", ro);
    const RM v = ptq::io::ggml_dequantize(t.type, t.ne, t.data, "w");
    int bad = 0;
    for (std::size_t r = 0; r < 3; ++r)
        for (std::size_t c = 0; c < 64; ++c) {
            const float s = ptq::round_to_half(q32.row_params(r)[c / 32].scale);
            if (v(Eigen::Index(r), Eigen::Index(c)) != float(int(q32.code(r, c)) - 8) * s) ++bad;
        }
    CHECK(bad == 0);

    // Q4_1: a minimum that is not an fp16 value is refused like a scale.
    ptq::QuantOptions o1;
    const auto qm32 = ptq::Rtn<ptq::IntMinFormat<4>, ptq::PerGroup<32>>(o1).quantize(w);
    CHECK(error_of([&] { (void)ptq::io::to_ggml(qm32, "q41"); }).find("row 0, group 0") != std::string::npos);
    const auto tm = ptq::io::to_ggml(qm32, "q41", ro);
    const RM vm = ptq::io::ggml_dequantize(tm.type, tm.ne, tm.data, "q41");
    bad = 0;
    for (std::size_t r = 0; r < 3; ++r)
        for (std::size_t c = 0; c < 64; ++c) {
            const auto& p = qm32.row_params(r)[c / 32];
            const float want = float(qm32.code(r, c)) * ptq::round_to_half(p.scale) + ptq::round_to_half(p.min);
            if (vm(Eigen::Index(r), Eigen::Index(c)) != want) ++bad;
        }
    CHECK(bad == 0);

    // Granularity other than groups of 32.
    ptq::QuantOptions o;
    o.scale_storage = ptq::ScaleStorage::f16;
    const auto qc = ptq::Rtn<Q4, ptq::PerChannel>(o).quantize(w);
    CHECK(error_of([&] { (void)ptq::io::to_ggml(qc, "pc"); }).find("groups of 32") != std::string::npos);
    const auto q64 = ptq::Rtn<Q4, ptq::PerGroup<>>(o, ptq::PerGroup<>{64}).quantize(w);
    CHECK(error_of([&] { (void)ptq::io::to_ggml(q64, "g64"); }).find("64-column") != std::string::npos);
    const auto qt = ptq::Rtn<Q4, ptq::PerTensor>(o).quantize(w);
    CHECK_THROWS_AS((void)ptq::io::to_ggml(qt, "pt"), ptq::invalid_argument);
    const auto q32d = ptq::Rtn<Q4, ptq::PerGroup<>>(o, ptq::PerGroup<>{32}).quantize(w);  // runtime 32 is fine
    CHECK_NOTHROW((void)ptq::io::to_ggml(q32d, "g32"));

    // NaN parameters (NonFinite::propagate) and MXFP4's NaN byte.
    RM wn = w;
    wn(1, 40) = std::numeric_limits<float>::quiet_NaN();
    o.non_finite = ptq::NonFinite::propagate;
    const auto qn = ptq::Rtn<Q4, ptq::PerGroup<32>>(o).quantize(wn);
    CHECK(error_of([&] { (void)ptq::io::to_ggml(qn, "nan"); }).find("row 1, group 1") != std::string::npos);
    const auto qm = ptq::Rtn<ptq::MxFp4>(o).quantize(wn);
    CHECK(error_of([&] { (void)ptq::io::to_ggml(qm, "nanmx"); }).find("row 1, group 1") != std::string::npos);

    // Empty.
    const ptq::QuantizedMatrix<Q4> empty(ptq::GroupLayout{0, 0, 1, 32});
    CHECK_THROWS_AS((void)ptq::io::to_ggml(empty, "e"), ptq::invalid_argument);
}

TEST_CASE("ragged rows (the 172-wide FFN input): refused by name, or written in the fallback type") {
    const RM w = ptq_test::random_matrix(4, 172, Dist::normal, 6);
    const auto q = rtn_f16<Q8>(w);
    const std::string msg = error_of([&] { (void)ptq::io::to_ggml(q, "blk.0.ffn_down.weight"); });
    CHECK(msg.find("blk.0.ffn_down.weight") != std::string::npos);
    CHECK(msg.find("172") != std::string::npos);
    ptq::io::GgmlExportOptions o;
    o.ragged_fallback = GgmlType::F32;
    const auto t = ptq::io::to_ggml(q, "blk.0.ffn_down.weight", o);
    CHECK(t.type == GgmlType::F32);
    CHECK(t.ne == std::vector<std::uint64_t>{172, 4});
    CHECK(bit_mismatches(ptq::io::ggml_dequantize(t.type, t.ne, t.data, "x"), ptq::dequantize(q)) == 0);
    o.ragged_fallback = GgmlType::F16;
    const auto h = ptq::io::to_ggml(q, "x", o);
    const RM hv = ptq::io::ggml_dequantize(h.type, h.ne, h.data, "x");
    const RM dq = ptq::dequantize(q);
    int bad = 0;
    for (Eigen::Index i = 0; i < dq.size(); ++i)
        if (hv.data()[i] != ptq::round_to_half(dq.data()[i])) ++bad;
    CHECK(bad == 0);
    o.ragged_fallback = GgmlType::Q4_0;
    CHECK_THROWS_AS((void)ptq::io::to_ggml(q, "x", o), ptq::invalid_argument);
}

TEST_CASE("float tensors: F32 / F16 / BF16 bytes") {
    const RM w = ptq_test::random_matrix(3, 5, Dist::heavy_tailed, 7);
    const auto f = ptq::io::float_to_ggml(w, GgmlType::F32, "n");
    CHECK(f.ne == std::vector<std::uint64_t>{5, 3});
    REQUIRE(f.data.size() == 60);
    float first;
    std::memcpy(&first, f.data.data(), 4);  // little-endian host (checked by the kernels)
    CHECK(first == w(0, 0));
    CHECK(bit_mismatches(ptq::io::ggml_dequantize(f.type, f.ne, f.data, "n"), w) == 0);
    const auto h = ptq::io::float_to_ggml(w, GgmlType::F16, "n");
    const auto b = ptq::io::float_to_ggml(w, GgmlType::BF16, "n");
    const RM hv = ptq::io::ggml_dequantize(h.type, h.ne, h.data, "n"),
             bv = ptq::io::ggml_dequantize(b.type, b.ne, b.data, "n");
    for (Eigen::Index i = 0; i < w.size(); ++i) {
        CHECK(hv.data()[i] == ptq::round_to_half(w.data()[i]));
        CHECK(bv.data()[i] == ptq::round_to_bf16(w.data()[i]));
    }
    // A 1-D norm vector: ne = {n}.
    const std::vector<float> norm = {1.0f, 0.5f, 2.0f};
    const auto nv = ptq::io::float_to_ggml(std::span<const float>(norm), GgmlType::F32, "output_norm.weight");
    CHECK(nv.ne == std::vector<std::uint64_t>{3});
    // Refused: overflow to Inf in F16, NaN, other types, empty.
    RM big = w;
    big(2, 1) = 70000.0f;
    const std::string msg = error_of([&] { (void)ptq::io::float_to_ggml(big, GgmlType::F16, "tok_embd"); });
    CHECK(msg.find("tok_embd") != std::string::npos);
    CHECK(msg.find("row 2, column 1") != std::string::npos);
    CHECK_NOTHROW((void)ptq::io::float_to_ggml(big, GgmlType::BF16, "tok_embd"));
    big(0, 0) = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_AS((void)ptq::io::float_to_ggml(big, GgmlType::F32, "x"), ptq::non_finite_error);
    CHECK_THROWS_AS((void)ptq::io::float_to_ggml(w, GgmlType::Q8_0, "x"), ptq::invalid_argument);
    CHECK_THROWS_AS((void)ptq::io::float_to_ggml(RM(0, 3), GgmlType::F32, "x"), ptq::invalid_argument);
}

TEST_CASE("import refuses hostile or mismatched bytes") {
    const RM w = ptq_test::random_matrix(2, 64, Dist::normal, 8);
    const auto t = ptq::io::to_ggml(rtn_f16<Q4>(w), "w");
    auto imp = [&](GgmlType ty, std::vector<std::uint64_t> ne, std::span<const std::byte> data) {
        return error_of([&] { (void)ptq::io::from_ggml<Q4F>(ty, ne, data, "blk.1.attn_k.weight"); });
    };
    const std::span<const std::byte> all(t.data);
    CHECK(imp(t.type, t.ne, all).empty());
    CHECK(imp(t.type, t.ne, all.first(all.size() - 1)).find("blk.1.attn_k.weight") != std::string::npos);  // short
    std::vector<std::byte> longer(t.data);
    longer.push_back(std::byte{0});
    CHECK(!imp(t.type, t.ne, longer).empty());                               // long
    CHECK(imp(t.type, {48, 2}, all).find("multiple") != std::string::npos);  // ragged ne[0]
    CHECK(!imp(t.type, {64, 0}, all).empty());                               // zero extent
    CHECK(!imp(t.type, {}, all).empty());                                    // no dimensions
    CHECK(!imp(t.type, {64, 1, 2}, all).empty());                            // 3-D
    CHECK(!imp(t.type, {64, 2, 1, 1, 1}, all).empty());                      // 5 dimensions
    CHECK(!imp(t.type, {std::uint64_t(1) << 62, 2}, all).empty());           // absurd extent
    CHECK(imp(GgmlType::Q8_0, {32, 2}, std::span<const std::byte>(all).first(68)).find("q8_0") != std::string::npos);
    CHECK(!imp(GgmlType::Q4_K, {256, 1}, all.first(144)).empty());

    // d NaN / Inf.
    std::vector<std::byte> nan = t.data;
    nan[18] = std::byte{0x00};
    nan[19] = std::byte{0x7E};  // block 1 of row 0: fp16 NaN
    CHECK(imp(t.type, t.ne, nan).find("row 0, group 1") != std::string::npos);
    nan[19] = std::byte{0x7C};  // +Inf
    CHECK(!imp(t.type, t.ne, nan).empty());

    // Q4_0 nibble 0 (level -8) is outside IntRange::restricted.
    std::vector<std::byte> b = bytes_of({0x00, 0x3C});  // d = 1
    for (int j = 0; j < 16; ++j) b.push_back(std::byte{0x88});
    b[5] = std::byte{0x80};  // element 3 = nibble 0
    CHECK(error_of([&] {
              (void)ptq::io::from_ggml<Q4>(GgmlType::Q4_0, std::vector<std::uint64_t>{32, 1}, b, "r");
          }).find("IntRange::full") != std::string::npos);
    const auto qf = ptq::io::from_ggml<Q4F>(GgmlType::Q4_0, std::vector<std::uint64_t>{32, 1}, b, "r");
    CHECK(ptq::dequantize(qf)(0, 3) == -8.0f);

    // MXFP4 byte 255.
    std::vector<std::byte> m = bytes_of({255});
    for (int j = 0; j < 16; ++j) m.push_back(std::byte{0x21});
    CHECK(error_of([&] {
              (void)ptq::io::from_ggml<ptq::MxFp4>(GgmlType::MXFP4, std::vector<std::uint64_t>{32, 1}, m, "mx");
          }).find("255") != std::string::npos);
    m[0] = std::byte{254};
    CHECK_NOTHROW((void)ptq::io::from_ggml<ptq::MxFp4>(GgmlType::MXFP4, std::vector<std::uint64_t>{32, 1}, m, "mx"));
}

TEST_CASE("import of blocks written by ggml's own quantizer (negative and zero d)") {
    // ggml's quantize_row_q4_0_ref writes d = max / -8 (usually negative) and d = 0 for an
    // all-zero block. Import maps them to ptq's positive scales with identical values.
    std::vector<std::byte> b = bytes_of({0x00, 0xB8});  // d = -0.5
    for (int j = 0; j < 16; ++j) b.push_back(std::byte(std::uint8_t(((j % 15) + 1) | (((j * 5) % 15 + 1) << 4))));
    // block 2: d = -0, arbitrary nibbles (all values are zero)
    for (int x : {0x00, 0x80}) b.push_back(std::byte(x));
    for (int j = 0; j < 16; ++j) b.push_back(std::byte{0x3A});
    const std::vector<std::uint64_t> ne{64, 1};
    const RM ggml = ptq::io::ggml_dequantize(GgmlType::Q4_0, ne, b, "g");
    const auto q = ptq::io::from_ggml<Q4F>(GgmlType::Q4_0, ne, b, "g");
    CHECK(q.row_params(0)[0].scale == 0.5f);
    CHECK(q.row_params(0)[1].scale == 1.0f);
    CHECK(bit_mismatches(ptq::dequantize(q), ggml) == 0);
    // Nibble 0 with d < 0 is +8 * |d|: not a 4-bit symmetric level.
    b[2] = std::byte{0x80};
    CHECK(error_of([&] { (void)ptq::io::from_ggml<Q4F>(GgmlType::Q4_0, ne, b, "g"); }).find("d < 0") !=
          std::string::npos);
}

TEST_CASE_TEMPLATE("random bytes: import is refused or equals ggml's dequantization", F, Q8F, Q4F, ptq::IntMinFormat<4>,
                   ptq::MxFp4) {
    constexpr GgmlType type = ptq::io::ggml_type_of<F>();
    std::mt19937 rng(21);
    int imported = 0, refused = 0;
    for (int trial = 0; trial < 300; ++trial) {
        const std::uint64_t rows = 1 + rng() % 3, cols = 32 * (1 + rng() % 3);
        std::vector<std::byte> data(ptq::io::ggml_row_size(type, std::int64_t(cols)) * rows);
        for (auto& x : data) x = std::byte(std::uint8_t(rng()));
        const std::vector<std::uint64_t> ne{cols, rows};
        try {
            const auto q = ptq::io::from_ggml<F>(type, ne, data, "r");
            ++imported;
            CHECK(bit_mismatches(ptq::dequantize(q), ptq::io::ggml_dequantize(type, ne, data, "r")) == 0);
        } catch (const ptq::invalid_argument&) {
            ++refused;
        }
    }
    CHECK(imported > 0);
    CHECK(refused > 0);  // random d hits NaN / Inf, and negated levels leave the range
}

}  // TEST_SUITE("io.gguf_blocks")

TEST_CASE("readme: the ggml blocks snippet") {
    const RM W = ptq_test::random_matrix(8, 64, Dist::normal, 99);
    ptq::QuantOptions o;
    o.scale_storage = ptq::ScaleStorage::f16;
    auto q4 = ptq::Rtn<ptq::IntFormat<4, true>, ptq::PerGroup<32>>(o).quantize(W);
    ptq::io::GgmlTensor t = ptq::io::to_ggml(q4, "blk.0.attn_q.weight");
    auto back = ptq::io::from_ggml<ptq::IntFormat<4, true>>(t.type, t.ne, t.data, "blk.0.attn_q.weight");
    ptq::RowMatrixXf v = ptq::io::ggml_dequantize(t.type, t.ne, t.data, "blk.0.attn_q.weight");
    CHECK(t.type == GgmlType::Q4_0);
    CHECK(t.ne == std::vector<std::uint64_t>{64, 8});
    CHECK(same_matrix(back, q4));
    CHECK(v == ptq::dequantize(q4));
}
