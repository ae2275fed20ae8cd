// The safetensors dtype vocabulary and the conversions of raw bytes to float.
#include <cmath>
#include <limits>

#include <doctest/doctest.h>

#include <ptq/format/minifloat.hpp>
#include <ptq/io/convert.hpp>
#include <ptq/io/dtype.hpp>

using namespace ptq::io;

TEST_CASE("dtype names and widths") {
    for (DType t : all_dtypes) CHECK(dtype_from_name(dtype_name(t)) == t);
    CHECK(!dtype_from_name("f16"));
    CHECK(!dtype_from_name("F8_E4M3FN"));
    CHECK(bits_per_element(DType::F4) == 4);
    CHECK(bits_per_element(DType::F6_E3M2) == 6);
    CHECK(bits_per_element(DType::C64) == 64);
    CHECK(bits_per_element(DType::BF16) == 16);
    CHECK(bits_per_element(DType::F8_E8M0) == 8);
}

namespace {
std::vector<float> decode(DType t, std::vector<std::uint8_t> bytes) {
    std::vector<float> out(bytes.size() * 8 / bits_per_element(t));
    decode_to_float(t, std::as_bytes(std::span(bytes)), out);
    return out;
}
}  // namespace

TEST_CASE("decode_to_float: hand values of each dtype") {
    CHECK(decode(DType::BOOL, {0, 1, 7}) == std::vector<float>{0, 1, 1});
    CHECK(decode(DType::U8, {0, 255}) == std::vector<float>{0, 255});
    CHECK(decode(DType::I8, {0x80, 0x7F}) == std::vector<float>{-128, 127});
    CHECK(decode(DType::I16, {0x00, 0x80}) == std::vector<float>{-32768});
    CHECK(decode(DType::U16, {0xFF, 0xFF}) == std::vector<float>{65535});
    CHECK(decode(DType::F16, {0x00, 0x3C, 0x00, 0xC0}) == std::vector<float>{1, -2});
    CHECK(decode(DType::BF16, {0x80, 0x3F}) == std::vector<float>{1});
    CHECK(decode(DType::I32, {0xFE, 0xFF, 0xFF, 0xFF}) == std::vector<float>{-2});
    CHECK(decode(DType::U32, {0x00, 0x00, 0x00, 0x80}) == std::vector<float>{2147483648.0f});
    CHECK(decode(DType::F32, {0x00, 0x00, 0xC0, 0x3F}) == std::vector<float>{1.5f});
    CHECK(decode(DType::F64, {0, 0, 0, 0, 0, 0, 0xF8, 0x3F}) == std::vector<float>{1.5f});
    CHECK(decode(DType::I64, {0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}) == std::vector<float>{-3});
    CHECK(decode(DType::U64, {0, 0, 0, 0, 0, 0, 0, 0x80}) == std::vector<float>{9223372036854775808.0f});
    // E4M3 (bias 7): 0x7E = 448, 0x01 = 2^-9; E5M2 (bias 15): 0x7B = 57344, 0x7C = inf.
    CHECK(decode(DType::F8_E4M3, {0x7E, 0x01, 0xB8}) == std::vector<float>{448, std::ldexp(1.0f, -9), -1});
    const auto e5 = decode(DType::F8_E5M2, {0x7B, 0x7C, 0x3C});
    CHECK(e5[0] == 57344);
    CHECK(std::isinf(e5[1]));
    CHECK(e5[2] == 1);
    // E8M0: 2^(b-127), 255 NaN.
    const auto e8 = decode(DType::F8_E8M0, {127, 0, 254, 255});
    CHECK(e8[0] == 1);
    CHECK(e8[1] == std::ldexp(1.0f, -127));
    CHECK(e8[2] == std::ldexp(1.0f, 127));
    CHECK(std::isnan(e8[3]));
}

TEST_CASE("FNUZ FP8: hand values and the relation to the IEEE-style codes") {
    // E4M3FNUZ, bias 8: 0x7F = 1.875 * 2^7 = 240, 0x40 = 2^(8-8) = 1, 0x01 = 2^-3 * 2^-7 = 2^-10.
    CHECK(fp8_fnuz_decode<4, 3>(0x7F) == 240.0f);
    CHECK(fp8_fnuz_decode<4, 3>(0x40) == 1.0f);
    CHECK(fp8_fnuz_decode<4, 3>(0x01) == std::ldexp(1.0f, -10));
    CHECK(fp8_fnuz_decode<4, 3>(0xC0) == -1.0f);
    CHECK(std::isnan(fp8_fnuz_decode<4, 3>(0x80)));
    CHECK(fp8_fnuz_decode<4, 3>(0x00) == 0.0f);
    CHECK(!std::signbit(fp8_fnuz_decode<4, 3>(0x00)));
    // E5M2FNUZ, bias 16: 0x7F = 1.75 * 2^15 = 57344 (no infinity), 0x40 = 1, 0x01 = 2^-17.
    CHECK(fp8_fnuz_decode<5, 2>(0x7F) == 57344.0f);
    CHECK(fp8_fnuz_decode<5, 2>(0x7C) == 32768.0f);
    CHECK(fp8_fnuz_decode<5, 2>(0x40) == 1.0f);
    CHECK(fp8_fnuz_decode<5, 2>(0x01) == std::ldexp(1.0f, -17));
    CHECK(std::isnan(fp8_fnuz_decode<5, 2>(0x80)));
    // Same bits, bias one larger: half the value of the FN / IEEE-style code wherever that one is
    // finite (and not the FNUZ NaN 0x80).
    for (int c = 0; c < 256; ++c) {
        if (c == 0x80) continue;
        const auto u = static_cast<std::uint8_t>(c);
        const float fn43 = ptq::Minifloat<4, 3>::decode(u), fn52 = ptq::Minifloat<5, 2>::decode(u);
        if (std::isfinite(fn43)) CHECK(fp8_fnuz_decode<4, 3>(u) == fn43 / 2);
        if (std::isfinite(fn52)) CHECK(fp8_fnuz_decode<5, 2>(u) == fn52 / 2);
        CHECK(std::isfinite(fp8_fnuz_decode<4, 3>(u)));
        CHECK(std::isfinite(fp8_fnuz_decode<5, 2>(u)));
    }
    CHECK(decode(DType::F8_E4M3FNUZ, {0x7F, 0x80})[0] == 240.0f);
}

TEST_CASE("decode_to_float refuses what it cannot convert and wrong sizes") {
    std::vector<std::uint8_t> b(8);
    std::vector<float> out(2);
    CHECK_THROWS_AS(decode_to_float(DType::C64, std::as_bytes(std::span(b)), std::span(out).first(1)),
                    ptq::invalid_argument);
    CHECK_THROWS_AS(decode_to_float(DType::F4, std::as_bytes(std::span(b)).first(1), out), ptq::invalid_argument);
    CHECK_THROWS_AS(decode_to_float(DType::F32, std::as_bytes(std::span(b)).first(7), out), ptq::invalid_argument);
    CHECK_THROWS_AS(decode_to_float(GgmlType::Q8_0, std::as_bytes(std::span(b)), out), ptq::invalid_argument);
}
