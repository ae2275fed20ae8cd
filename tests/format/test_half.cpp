// fp16 / bf16 conversions (format/half.hpp). The oracle is a brute-force nearest-value search
// over the sorted list of every finite fp16 value, in double, ties to the even code: it never
// calls the encoder under test.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <ptq/format/half.hpp>

using namespace ptq;

namespace {

// fp16 value of a code, written from IEEE 754 directly (not from half_bits_to_float).
double half_value(std::uint16_t h) {
    const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    const double mag = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -mag : mag;
}

// Nearest fp16 code of a finite float by search; ties to the even code; Inf from 65520 on.
std::uint16_t oracle_half(float x) {
    static const std::vector<std::uint16_t> codes = [] {
        std::vector<std::uint16_t> v;
        for (std::uint32_t h = 0; h < 0x7C00; ++h) v.push_back(static_cast<std::uint16_t>(h));
        return v;
    }();
    const double a = std::fabs(static_cast<double>(x));
    const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    if (a >= 65520.0) return sign | 0x7C00;
    auto it =
        std::lower_bound(codes.begin(), codes.end(), a, [](std::uint16_t h, double v) { return half_value(h) < v; });
    if (it == codes.end()) return sign | codes.back();  // between 65504 and the Inf threshold
    std::uint16_t best = *it;
    if (it != codes.begin()) {
        const std::uint16_t lo = *(it - 1);
        const double dlo = a - half_value(lo), dhi = half_value(*it) - a;
        if (dlo < dhi || (dlo == dhi && (lo & 1) == 0)) best = lo;
    }
    return sign | best;
}

}  // namespace

TEST_SUITE("format.half") {

TEST_CASE("fp16: every code decodes to its IEEE value and encodes back to itself") {
    for (std::uint32_t h = 0; h < 0x10000; ++h) {
        const auto c = static_cast<std::uint16_t>(h);
        const float v = half_bits_to_float(c);
        if (((c >> 10) & 0x1F) == 0x1F) {
            if (c & 0x3FF) {
                REQUIRE(std::isnan(v));
                REQUIRE(std::isnan(half_bits_to_float(float_to_half_bits(v))));
            } else {
                REQUIRE(std::isinf(v));
                REQUIRE(float_to_half_bits(v) == c);
            }
            continue;
        }
        REQUIRE(static_cast<double>(v) == half_value(c));
        REQUIRE(float_to_half_bits(v) == c);
    }
}

TEST_CASE("fp16: encoding equals the nearest-value oracle") {
    SUBCASE("hand values") {
        CHECK(float_to_half_bits(1.0f) == 0x3C00);
        CHECK(float_to_half_bits(-2.0f) == 0xC000);
        CHECK(float_to_half_bits(65504.0f) == 0x7BFF);
        CHECK(float_to_half_bits(65519.99f) == 0x7BFF);
        CHECK(float_to_half_bits(65520.0f) == 0x7C00);  // tie above the max rounds to Inf
        CHECK(float_to_half_bits(0x1p-24f) == 0x0001);
        CHECK(float_to_half_bits(0x1p-25f) == 0x0000);    // tie with 0: even
        CHECK(float_to_half_bits(0x1.8p-24f) == 0x0002);  // tie 1.5 ulp: even (2)
        CHECK(float_to_half_bits(std::nextafter(0x1p-25f, 1.0f)) == 0x0001);
        CHECK(float_to_half_bits(1.0f + 0x1p-11f) == 0x3C00);    // tie: even
        CHECK(float_to_half_bits(1.0f + 0x1.8p-10f) == 0x3C02);  // tie 1.5 ulp: even
        CHECK(float_to_half_bits(0x1.ffcp-15f) == 0x0400);       // subnormal rounding up to the smallest normal
        CHECK(float_to_half_bits(-0.0f) == 0x8000);
        CHECK(std::isnan(half_bits_to_float(float_to_half_bits(std::numeric_limits<float>::quiet_NaN()))));
        CHECK(float_to_half_bits(-std::numeric_limits<float>::infinity()) == 0xFC00);
    }
    SUBCASE("random floats over the whole fp16 range and beyond") {
        std::mt19937 rng(7);
        std::uniform_real_distribution<float> ex(-28.0f, 17.0f), mant(1.0f, 2.0f);
        for (int i = 0; i < 200000; ++i) {
            float x = std::ldexp(mant(rng), static_cast<int>(std::floor(ex(rng))));
            if (i & 1) x = -x;
            REQUIRE(float_to_half_bits(x) == oracle_half(x));
        }
    }
    SUBCASE("exact midpoints between neighbouring codes") {
        for (std::uint32_t h = 0; h + 1 < 0x7C00; h += 7) {
            const double mid =
                (half_value(static_cast<std::uint16_t>(h)) + half_value(static_cast<std::uint16_t>(h + 1))) / 2;
            const float x = static_cast<float>(mid);  // exact: fp16 midpoints fit in a float
            REQUIRE(static_cast<double>(x) == mid);
            REQUIRE(float_to_half_bits(x) == oracle_half(x));
        }
    }
}

TEST_CASE("bf16: truncation with round to nearest even") {
    CHECK(float_to_bf16_bits(1.0f) == 0x3F80);
    CHECK(float_to_bf16_bits(std::bit_cast<float>(0x3F808000u)) == 0x3F80);  // tie: even
    CHECK(float_to_bf16_bits(std::bit_cast<float>(0x3F818000u)) == 0x3F82);  // tie: even (up)
    CHECK(float_to_bf16_bits(std::bit_cast<float>(0x3F808001u)) == 0x3F81);
    CHECK(float_to_bf16_bits(std::bit_cast<float>(0x7F7FFFFFu)) == 0x7F80);  // FLT_MAX rounds to Inf
    CHECK(std::isnan(bf16_bits_to_float(float_to_bf16_bits(std::numeric_limits<float>::quiet_NaN()))));
    for (std::uint32_t b = 0; b < 0x10000; ++b) {
        const auto c = static_cast<std::uint16_t>(b);
        const float v = bf16_bits_to_float(c);
        REQUIRE(std::bit_cast<std::uint32_t>(v) == (b << 16));
        if (!std::isnan(v)) REQUIRE(float_to_bf16_bits(v) == c);
    }
    CHECK(round_to_bf16(1.00390625f) == 1.0f);  // 1 + 2^-8: tie -> even (1.0)
    CHECK(round_to_half(0.1f) == 0.0999755859375f);
}

}  // TEST_SUITE("format.half")
