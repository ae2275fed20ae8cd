// The canonical packed layout (kernel/packing.hpp, docs/DESIGN.md §9), with bytes computed by hand:
// row-major, each row a little-endian bit stream (code i at bits [i*b, (i+1)*b), bit k of the
// stream = bit k%8 of byte k/8), rows padded with zero bits to whole bytes. Checked on the
// reference packer and on what Rtn stores in a QuantizedMatrix.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "support.hpp"

using namespace ptq;
using RM = ptq_test::RowMatrixXf;

namespace {
std::vector<std::uint8_t> pack(const std::vector<std::uint8_t>& codes, int bits) {
    std::vector<std::uint8_t> out(packed_bytes(codes.size(), bits), 0xAB);  // garbage: must be overwritten
    ref::pack_bits(codes.data(), codes.size(), bits, out.data());
    return out;
}
/// A 1 x n matrix whose asymmetric b-bit RTN codes are exactly 0, 1, ..., n-1 (mod 2^b):
/// row [0, 1, ..., 2^b - 1, ...] has lo = 0, hi = 2^b - 1, so scale = 1 and zero = 0.
RM ramp(int n, int bits) {
    RM m(1, n);
    for (int i = 0; i < n; ++i) m(0, i) = float(i % (1 << bits));
    return m;
}
}  // namespace

TEST_SUITE("format.packed_layout") {

TEST_CASE("packed_bytes = ceil(n * b / 8)") {
    CHECK(packed_bytes(0, 4) == 0);
    CHECK(packed_bytes(1, 1) == 1);
    CHECK(packed_bytes(8, 1) == 1);
    CHECK(packed_bytes(9, 1) == 2);
    CHECK(packed_bytes(5, 3) == 2);  // 15 bits
    CHECK(packed_bytes(8, 3) == 3);
    CHECK(packed_bytes(172, 4) == 86);
    CHECK(packed_bytes(3, 8) == 3);
    CHECK(packed_bytes(7, 7) == 7);  // 49 bits
}

TEST_CASE("b = 4: byte j = code 2j | code 2j+1 << 4") {
    CHECK(pack({0x1, 0x2, 0x3, 0x4, 0xF}, 4) == std::vector<std::uint8_t>{0x21, 0x43, 0x0F});
    const auto q = quantize<IntFormat<4, false>>(ramp(16, 4));
    REQUIRE(q.params()[0].scale == 1.0f);
    REQUIRE(q.params()[0].zero == 0);
    const std::vector<std::uint8_t> want{0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE};
    CHECK(std::vector<std::uint8_t>(q.packed().begin(), q.packed().end()) == want);
}

TEST_CASE("b = 3: c0 | c1<<3 | (c2&3)<<6, c2>>2 | c3<<1 | c4<<4 | (c5&1)<<7, c5>>1 | c6<<2 | c7<<5") {
    // codes 0..7: byte0 = 0 | 1<<3 | (2&3)<<6 = 0x88; byte1 = 0 | 3<<1 | 4<<4 | 1<<7 = 0xC6;
    // byte2 = 5>>1 | 6<<2 | 7<<5 = 0xFA.
    CHECK(pack({0, 1, 2, 3, 4, 5, 6, 7}, 3) == std::vector<std::uint8_t>{0x88, 0xC6, 0xFA});
    // 5 codes = 15 bits: the 16th bit (padding) is zero. 7,7,7,7,7 -> 0xFF, 0x7F.
    CHECK(pack({7, 7, 7, 7, 7}, 3) == std::vector<std::uint8_t>{0xFF, 0x7F});
    const auto q = quantize<IntFormat<3, false>>(ramp(8, 3));
    CHECK(std::vector<std::uint8_t>(q.packed().begin(), q.packed().end()) ==
          std::vector<std::uint8_t>{0x88, 0xC6, 0xFA});
}

TEST_CASE("b = 1: code i is bit i") {
    CHECK(pack({1, 0, 1, 1, 0, 0, 0, 1, 1}, 1) == std::vector<std::uint8_t>{0x8D, 0x01});
    // only the low bit of each input byte counts
    CHECK(pack({0xFE, 0xFF}, 1) == std::vector<std::uint8_t>{0x02});
}

TEST_CASE("b = 8: one byte per code; b = 7, 5, 6, 2") {
    CHECK(pack({0x00, 0x7F, 0x80, 0xFF}, 8) == std::vector<std::uint8_t>{0x00, 0x7F, 0x80, 0xFF});
    CHECK(pack({0x7F, 0x01}, 7) == std::vector<std::uint8_t>{0xFF, 0x00});        // 1111111 then 1 at bit 7
    CHECK(pack({0x1F, 0x00, 0x1F}, 5) == std::vector<std::uint8_t>{0x1F, 0x7C});  // bits 0-4, 10-14
    CHECK(pack({0x3F, 0x01}, 6) == std::vector<std::uint8_t>{0x7F, 0x00});
    CHECK(pack({1, 2, 3, 0, 3}, 2) == std::vector<std::uint8_t>{0x39, 0x03});
}

TEST_CASE("row stride, padding and QuantizedMatrix::code") {
    // 3 rows x 5 columns of 3-bit codes: stride ceil(15/8) = 2 bytes, bit 15 of each row is 0.
    RM m(3, 5);
    m << 0, 1, 2, 3, 7,  //
        7, 7, 7, 7, 7,   //
        0, 0, 0, 0, 0;
    // per-tensor: lo = 0, hi = 7 -> scale 1, zero 0, codes = values
    const auto q = quantize<IntFormat<3, false>>(m, {}, PerTensor{});
    REQUIRE(q.params()[0].scale == 1.0f);
    CHECK(q.row_stride() == 2);
    REQUIRE(q.packed().size() == 6);
    // row 0: 0 | 1<<3 | (2&3)<<6 = 0x88 ; 2>>2 | 3<<1 | 7<<4 = 0x76 (bit 15 = 0)
    const std::vector<std::uint8_t> want{0x88, 0x76, 0xFF, 0x7F, 0x00, 0x00};
    CHECK(std::vector<std::uint8_t>(q.packed().begin(), q.packed().end()) == want);
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 5; ++c) {
            CAPTURE(r);
            CAPTURE(c);
            CHECK(int(q.code(r, c)) == int(m(r, c)));
            CHECK(q.row_data(r) == q.packed().data() + 2 * r);
        }
    CHECK_THROWS_AS(q.code(3, 0), ptq::invalid_argument);
    CHECK_THROWS_AS(q.code(0, 5), ptq::invalid_argument);
    CHECK_THROWS_WITH(q.code(7, 9), doctest::Contains("(7, 9)"));
    CHECK_THROWS_AS(q.value(0, 5), ptq::invalid_argument);
}

TEST_CASE("QuantizedMatrix::code agrees with the layout for every width (random codes)") {
    std::mt19937 g(42);
    auto check_width = [&](auto fmt) {
        using F = decltype(fmt);
        CAPTURE(F::bits);
        const RM x = ptq_test::random_matrix(4, 37, ptq_test::Dist::normal, 9);
        const auto q = quantize<F>(x, {}, PerGroup<dynamic_group>{8});
        CHECK(q.row_stride() == (37 * std::size_t(F::bits) + 7) / 8);
        for (std::size_t r = 0; r < 4; ++r) {
            const std::uint8_t* row = q.row_data(r);
            for (std::size_t c = 0; c < 37; ++c) {
                // bit-by-bit read of the stream, written here independently
                unsigned v = 0;
                for (int k = 0; k < F::bits; ++k) {
                    const std::size_t bit = c * F::bits + std::size_t(k);
                    v |= unsigned((row[bit / 8] >> (bit % 8)) & 1u) << k;
                }
                CHECK(q.code(r, c) == v);
            }
            // padding bits of the last byte are zero
            const std::size_t used = 37 * std::size_t(F::bits) % 8;
            if (used) CHECK((row[q.row_stride() - 1] >> used) == 0);
        }
    };
    check_width(IntFormat<1, false>{});
    check_width(IntFormat<2, false>{});
    check_width(IntFormat<3, false>{});
    check_width(IntFormat<4, false>{});
    check_width(IntFormat<5, false>{});
    check_width(IntFormat<6, false>{});
    check_width(IntFormat<7, false>{});
    check_width(IntFormat<8, false>{});
    (void)g;
}

TEST_CASE("ref::unpack_bits / get_code / set_code") {
    const std::vector<std::uint8_t> bytes{0x88, 0xC6, 0xFA};
    std::vector<std::uint8_t> codes(6);
    ref::unpack_bits(bytes.data(), 2, 6, 3, codes.data());
    CHECK(codes == std::vector<std::uint8_t>{2, 3, 4, 5, 6, 7});
    std::vector<std::uint8_t> buf{0xFF, 0xFF};
    ref::set_code(buf.data(), 1, 5, 0);  // clears bits 5..9 only
    CHECK(buf == std::vector<std::uint8_t>{0x1F, 0xFC});
    CHECK(ref::get_code(buf.data(), 0, 5) == 0x1F);
}

}  // TEST_SUITE("format.packed_layout")
