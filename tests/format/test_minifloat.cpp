// Minifloat codecs (format/minifloat.hpp): OCP FP8 E4M3 ("E4M3FN") and E5M2, FP6 E3M2/E2M3,
// FP4 E2M1. Expected values are written by hand from the OCP FP8 rules of docs/DESIGN.md §6.4, or come
// from the brute-force nearest-value oracle in support.hpp (never from the library).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "support.hpp"

using namespace ptq;
using ptq_test::MiniSpec;

namespace {
constexpr Rounding kEven = Rounding::half_even;
constexpr Rounding kAway = Rounding::half_away;
constexpr Overflow kSat = Overflow::saturate;
constexpr Overflow kNonSat = Overflow::non_saturating;

template <class T>
MiniSpec spec_of() {
    return {T::exponent_bits, T::mantissa_bits};
}
}  // namespace

TEST_SUITE("format.minifloat") {

TEST_CASE("E4M3 conformance: the docs/DESIGN.md §6.4 examples") {
    using F = Fp8E4M3;
    CHECK(F::encode(0.1f) == 0x1D);
    CHECK(F::decode(0x1D) == 0.1015625f);
    CHECK(F::encode(300.0f) == 0x79);
    CHECK(F::decode(0x79) == 288.0f);
    CHECK(F::encode(-1.75f) == 0xBE);
    CHECK(F::decode(0xBE) == -1.75f);
    CHECK(F::encode(464.0f) == 0x7E);  // tie between 448 (0x7E, even) and 480 (would be 0x7F)
    CHECK(F::decode(0x7E) == 448.0f);
    CHECK(F::encode(std::ldexp(1.0f, -10)) == 0x00);  // tie between 0 and 2^-9: even -> 0
}

TEST_CASE("E4M3 special values and limits") {
    using F = Fp8E4M3;
    CHECK(F::decode(0x08) == std::ldexp(1.0f, -6));  // min normal S.0001.000
    CHECK(F::decode(0x01) == std::ldexp(1.0f, -9));  // min subnormal
    CHECK(F::decode(0x07) == 7 * std::ldexp(1.0f, -9));
    CHECK(std::isnan(F::decode(0x7F)));
    CHECK(std::isnan(F::decode(0xFF)));
    CHECK(F::decode(0xFE) == -448.0f);
    CHECK(F::decode(0x78) == 256.0f);  // S.1111.000 is a normal number in E4M3FN, not Inf
    CHECK(F::max_normal == 448.0);
    CHECK(F::emax == 8);

    SUBCASE("saturating overflow -> +-448") {
        CHECK(F::encode(465.0f) == 0x7E);
        CHECK(F::encode(1e6f) == 0x7E);
        CHECK(F::encode(-1e6f) == 0xFE);
        CHECK(F::encode(std::numeric_limits<float>::infinity()) == 0x7E);
        CHECK(F::encode(-std::numeric_limits<float>::infinity()) == 0xFE);
        CHECK(F::encode(std::numeric_limits<float>::max()) == 0x7E);
    }
    SUBCASE("non-saturating overflow -> NaN (0x7F), ties still to 448") {
        CHECK(F::encode(464.0f, kEven, kNonSat) == 0x7E);
        CHECK(F::encode(465.0f, kEven, kNonSat) == 0x7F);
        CHECK(F::encode(480.0f, kEven, kNonSat) == 0x7F);
        CHECK(F::encode(-500.0f, kEven, kNonSat) == 0xFF);
        CHECK(F::encode(std::numeric_limits<float>::infinity(), kEven, kNonSat) == 0x7F);
        CHECK(F::encode(464.0f, kAway, kNonSat) == 0x7F);  // half-away: the tie goes up -> overflow
    }
    SUBCASE("NaN input -> NaN code") {
        CHECK(F::is_nan_code(F::encode(std::numeric_limits<float>::quiet_NaN())));
        CHECK(std::isnan(F::decode(F::encode(std::numeric_limits<float>::quiet_NaN()))));
    }
    SUBCASE("signed zero and subnormal ties") {
        CHECK(F::encode(0.0f) == 0x00);
        CHECK(F::encode(-0.0f) == 0x80);
        CHECK(std::signbit(F::decode(0x80)));
        CHECK(F::encode(std::ldexp(1.0f, -10), kAway) == 0x01);
        CHECK(F::encode(3 * std::ldexp(1.0f, -10)) == 0x02);  // 1.5 * 2^-9: tie 1 vs 2 -> 2
        CHECK(F::encode(5 * std::ldexp(1.0f, -10)) == 0x02);  // 2.5 * 2^-9: tie 2 vs 3 -> 2
        CHECK(F::encode(5 * std::ldexp(1.0f, -10), kAway) == 0x03);
        CHECK(F::encode(15 * std::ldexp(1.0f, -10)) == 0x08);  // 7.5 * 2^-9 -> carries into min normal
        CHECK(F::encode(std::numeric_limits<float>::denorm_min()) == 0x00);
        CHECK(F::encode(-std::numeric_limits<float>::denorm_min()) == 0x80);
    }
}

TEST_CASE("E5M2 conformance (hand-derived vectors)") {
    using F = Fp8E5M2;
    const float inf = std::numeric_limits<float>::infinity();
    CHECK(F::decode(0x7B) == 57344.0f);  // S.11110.11 = 1.75 * 2^15
    CHECK(F::encode(57344.0f) == 0x7B);
    CHECK(F::decode(0x7C) == inf);
    CHECK(F::decode(0xFC) == -inf);
    CHECK(std::isnan(F::decode(0x7D)));
    CHECK(std::isnan(F::decode(0x7E)));
    CHECK(std::isnan(F::decode(0x7F)));
    CHECK(std::isnan(F::decode(0xFD)));
    CHECK(F::decode(0x04) == std::ldexp(1.0f, -14));  // min normal
    CHECK(F::encode(std::ldexp(1.0f, -14)) == 0x04);
    CHECK(F::decode(0x01) == std::ldexp(1.0f, -16));  // min subnormal
    CHECK(F::encode(std::ldexp(1.0f, -16)) == 0x01);
    CHECK(F::decode(0x03) == 3 * std::ldexp(1.0f, -16));
    CHECK(F::encode(1.0f) == 0x3C);
    CHECK(F::encode(-2.0f) == 0xC0);
    CHECK(F::encode(-0.0f) == 0x80);
    CHECK(F::max_normal == 57344.0);
    CHECK(F::emax == 15);

    SUBCASE("ties, both rounding modes") {
        CHECK(F::encode(1.125f, kEven) == 0x3C);  // 1.0 (mant 00) vs 1.25 (01) -> 1.0
        CHECK(F::encode(1.125f, kAway) == 0x3D);
        CHECK(F::encode(1.375f, kEven) == 0x3E);  // 1.25 (01) vs 1.5 (10) -> 1.5
        CHECK(F::encode(1.375f, kAway) == 0x3E);
        CHECK(F::encode(-1.125f, kEven) == 0xBC);
        CHECK(F::encode(-1.125f, kAway) == 0xBD);
        CHECK(F::encode(std::ldexp(1.0f, -17), kEven) == 0x00);  // half the min subnormal
        CHECK(F::encode(std::ldexp(1.0f, -17), kAway) == 0x01);
        CHECK(F::encode(3 * std::ldexp(1.0f, -17), kEven) == 0x02);
        CHECK(F::encode(7 * std::ldexp(1.0f, -17), kEven) == 0x04);  // 3.5 * 2^-16 -> min normal
        CHECK(F::encode(7 * std::ldexp(1.0f, -17), kAway) == 0x04);
        CHECK(F::encode(5 * std::ldexp(1.0f, -17), kEven) == 0x02);
        CHECK(F::encode(5 * std::ldexp(1.0f, -17), kAway) == 0x03);
    }
    SUBCASE("overflow: saturating vs non-saturating") {
        // 61440 is the midpoint of 57344 (mantissa 11, odd) and 65536 (= 2^16, even): the
        // IEEE tie goes up, i.e. overflows.
        CHECK(F::encode(60000.0f, kEven, kNonSat) == 0x7B);
        CHECK(F::encode(61440.0f, kEven, kNonSat) == 0x7C);
        CHECK(F::encode(61439.0f, kEven, kNonSat) == 0x7B);
        CHECK(F::encode(-61440.0f, kEven, kNonSat) == 0xFC);
        CHECK(F::encode(1e9f, kEven, kNonSat) == 0x7C);
        CHECK(F::encode(inf, kEven, kNonSat) == 0x7C);
        CHECK(F::encode(-inf, kEven, kNonSat) == 0xFC);
        CHECK(F::encode(61440.0f, kEven, kSat) == 0x7B);
        CHECK(F::encode(1e9f, kEven, kSat) == 0x7B);
        CHECK(F::encode(inf, kEven, kSat) == 0x7B);
        CHECK(F::encode(-inf, kEven, kSat) == 0xFB);
        CHECK(F::encode(std::numeric_limits<float>::max(), kAway, kSat) == 0x7B);
    }
    SUBCASE("NaN input -> a NaN code") {
        CHECK(F::is_nan_code(F::encode(std::numeric_limits<float>::quiet_NaN())));
        CHECK(F::is_nan_code(F::encode(-std::numeric_limits<float>::quiet_NaN(), kEven, kNonSat)));
        CHECK_FALSE(F::is_nan_code(0x7C));
    }
}

TEST_CASE("FP6 / FP4 values by hand") {
    SUBCASE("E2M1 (FP4): 0, 0.5, 1, 1.5, 2, 3, 4, 6 and negatives") {
        const float table[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
        for (int c = 0; c < 8; ++c) {
            CHECK(Fp4::decode(std::uint8_t(c)) == table[c]);
            CHECK(Fp4::decode(std::uint8_t(c | 8)) == -table[c]);
            CHECK(Fp4::encode(table[c]) == c);
            CHECK(Fp4::encode(-table[c]) == (c | 8));
        }
        CHECK(Fp4::encode(0.25f) == 0);  // tie 0 vs 0.5 -> 0 (even)
        CHECK(Fp4::encode(0.25f, kAway) == 1);
        CHECK(Fp4::encode(2.5f) == 4);  // tie 2 vs 3 -> 2
        CHECK(Fp4::encode(2.5f, kAway) == 5);
        CHECK(Fp4::encode(3.5f) == 6);  // tie 3 vs 4 -> 4
        CHECK(Fp4::encode(5.0f) == 6);  // tie 4 vs 6 -> 4 (mag code 6 even)
        CHECK(Fp4::encode(5.0f, kAway) == 7);
        CHECK(Fp4::encode(7.0f) == 7);                    // saturates to 6
        CHECK(Fp4::encode(100.0f, kEven, kNonSat) == 7);  // no Inf/NaN: always saturates
        CHECK(Fp4::encode(-std::numeric_limits<float>::infinity(), kEven, kNonSat) == 15);
        CHECK(Fp4::max_normal == 6.0);
    }
    SUBCASE("E3M2 max 28, E2M3 max 7.5") {
        CHECK(Fp6E3M2::decode(0x1F) == 28.0f);
        CHECK(Fp6E3M2::decode(0x01) == 0.0625f);  // bias 3: min subnormal 2^-2 * 1/4
        CHECK(Fp6E3M2::decode(0x04) == 0.25f);    // min normal 2^-2
        CHECK(Fp6E3M2::encode(1000.0f) == 0x1F);
        CHECK(Fp6E3M2::encode(-1000.0f, kEven, kNonSat) == 0x3F);
        CHECK(Fp6E3M2::max_normal == 28.0);
        CHECK(Fp6E2M3::decode(0x1F) == 7.5f);
        CHECK(Fp6E2M3::decode(0x01) == 0.125f);  // bias 1: min subnormal 2^0 * 1/8
        CHECK(Fp6E2M3::decode(0x08) == 1.0f);
        CHECK(Fp6E2M3::encode(7.75f) == 0x1F);  // above max: saturates
        CHECK(Fp6E2M3::max_normal == 7.5);
        CHECK(Fp6E3M2::emax == 4);
        CHECK(Fp6E2M3::emax == 2);
        CHECK(Fp4::emax == 2);
    }
}

TEST_CASE_TEMPLATE("decode of every code equals the bit-field oracle", F, Fp8E4M3, Fp8E5M2, Fp6E3M2, Fp6E2M3, Fp4E2M1) {
    const MiniSpec s = spec_of<F>();
    CHECK(F::max_normal == s.max_value());
    for (std::uint32_t c = 0; c < (1u << F::bits); ++c) {
        CAPTURE(c);
        const double want = s.decode(c);
        const float got = F::decode(static_cast<std::uint8_t>(c));
        CHECK(F::is_nan_code(static_cast<std::uint8_t>(c)) == s.is_nan(c));
        if (std::isnan(want)) {
            CHECK(std::isnan(got));
        } else {
            CHECK(double(got) == want);
            CHECK(std::signbit(got) == std::signbit(want));
        }
    }
}

TEST_CASE_TEMPLATE("exhaustive round trip encode(decode(c)) == c", F, Fp8E4M3, Fp8E5M2, Fp6E3M2, Fp6E2M3, Fp4E2M1) {
    const MiniSpec s = spec_of<F>();
    int checked = 0;
    for (std::uint32_t c = 0; c < (1u << F::bits); ++c) {
        if (s.is_nan(c)) continue;  // NaN codes are not unique
        CAPTURE(c);
        const auto code = static_cast<std::uint8_t>(c);
        const float v = F::decode(code);
        for (Rounding r : {kEven, kAway}) {
            CHECK(F::encode(v, r, kNonSat) == code);  // -0 keeps its sign; Inf stays Inf
            if (s.is_inf(c)) CHECK(F::encode(v, r, kSat) == (code & 0x80) + s.max_mag());
            else CHECK(F::encode(v, r, kSat) == code);
        }
        ++checked;
    }
    CHECK(checked == (1 << F::bits) - (s.e4m3() ? 2 : s.e5m2() ? 6 : 0));
}

TEST_CASE_TEMPLATE("encode equals the brute-force nearest-value oracle (random values, all ties)", F, Fp8E4M3, Fp8E5M2,
                   Fp6E3M2, Fp6E2M3, Fp4E2M1) {
    const MiniSpec s = spec_of<F>();
    std::vector<float> xs;
    // Every midpoint between adjacent magnitudes (the ties), its float neighbours, and the
    // overflow midpoint max + top_step/2.
    const std::uint32_t mm = s.max_mag();
    for (std::uint32_t m = 0; m <= mm; ++m) {
        const double a = s.decode(m);
        const double b = m < mm ? s.decode(m + 1) : a + s.top_step();
        const float mid = static_cast<float>((a + b) / 2);
        REQUIRE(double(mid) == (a + b) / 2);
        for (float v : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY), float(a)}) {
            xs.push_back(v);
            xs.push_back(-v);
        }
    }
    // Random floats with exponents from well below the smallest subnormal to above the max.
    std::mt19937 g(1234u + F::bits);
    const int lo_exp = 1 - s.bias() - s.M - 4, hi_exp = F::emax + 3;
    std::uniform_int_distribution<int> ed(lo_exp, hi_exp);
    std::uniform_real_distribution<float> md(1.0f, 2.0f);
    for (int i = 0; i < 20000; ++i) xs.push_back((i & 1 ? -1.0f : 1.0f) * std::ldexp(md(g), ed(g)));
    xs.push_back(std::numeric_limits<float>::max());
    xs.push_back(-std::numeric_limits<float>::denorm_min());
    xs.push_back(std::numeric_limits<float>::min());

    int mismatches = 0;
    for (float x : xs)
        for (Rounding r : {kEven, kAway})
            for (Overflow o : {kSat, kNonSat}) {
                const auto want = s.encode(double(x), r, o);
                const auto got = F::encode(x, r, o);
                if (got != want) {
                    if (++mismatches <= 10) {
                        CAPTURE(x);
                        CAPTURE(int(r));
                        CAPTURE(int(o));
                        CHECK(int(got) == int(want));
                    }
                }
            }
    CHECK(mismatches == 0);
}

TEST_CASE("scaled minifloat parameters: scale = absmax / max_normal") {
    QuantOptions o;
    RangeStats st;
    for (float v : {1.0f, -2.0f, 0.5f}) st.add(v);
    CHECK(Fp8E4M3::make_params(st, o).scale == 2.0f / 448.0f);
    CHECK(Fp8E5M2::make_params(st, o).scale == 2.0f / 57344.0f);
    CHECK(Fp4::make_params(st, o).scale == 2.0f / 6.0f);
    // 2 * 448/2 = 448 exactly -> the max code; 0.5 * 224 = 112 = 1.75 * 2^6 -> S.1101.110
    const auto p = Fp8E4M3::make_params(st, o);
    CHECK(Fp8E4M3::quantize(-2.0f, p, kEven) == 0xFE);
    CHECK(Fp8E4M3::quantize(0.5f, p, kEven) == 0x6E);
    CHECK(Fp8E4M3::dequantize(0xFE, p) == -2.0f);
}

}  // TEST_SUITE("format.minifloat")
