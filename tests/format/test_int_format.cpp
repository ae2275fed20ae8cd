// Uniform integer formats (format/int_format.hpp): hand-computed conformance vectors from
// docs/DESIGN.md §6.1, both rounding modes on ties, and exhaustive code round trips.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "support.hpp"

using namespace ptq;

namespace {
RangeStats stats_of(std::initializer_list<float> v) {
    RangeStats s;
    for (float x : v) s.add(x);
    return s;
}

template <class F>
void check_roundtrip_all_codes(const typename F::Params& p) {
    for (int c = F::code_min; c <= F::code_max; ++c) {
        CAPTURE(c);
        const auto code = static_cast<std::uint8_t>(c);
        const float v = F::dequantize(code, p);
        CHECK(F::quantize(v, p, Rounding::half_even) == code);
        CHECK(F::quantize(v, p, Rounding::half_away) == code);
    }
}

template <int B>
void roundtrip_asym() {
    using F = IntFormat<B, false>;
    CAPTURE(B);
    for (float s : {1.0f, 0.37f, 3.0e-5f, 1234.5f, 1.0e-38f})
        for (int z : {0, 1, F::levels / 2, F::levels}) check_roundtrip_all_codes<F>({s, z});
}

template <int B, IntRange R>
void roundtrip_sym() {
    using F = IntFormat<B, true, R>;
    CAPTURE(B);
    CAPTURE(int(R));
    for (float s : {1.0f, 0.37f, 3.0e-5f, 1234.5f, 1.0e-38f}) check_roundtrip_all_codes<F>({s, F::symmetric_zero});
}

template <int... B>
void roundtrip_asym_all(std::integer_sequence<int, B...>) {
    (roundtrip_asym<B + 1>(), ...);
}
template <int... B>
void roundtrip_sym_all(std::integer_sequence<int, B...>) {
    (roundtrip_sym<B + 2, IntRange::restricted>(), ...);
    (roundtrip_sym<B + 2, IntRange::full>(), ...);
}
}  // namespace

TEST_SUITE("format.int") {

TEST_CASE("asymmetric 4-bit by hand: [-1, 0, 0.5, 2]") {
    using F = IntFormat<4, false>;
    const auto p = F::make_params(stats_of({-1.0f, 0.0f, 0.5f, 2.0f}));
    CHECK(p.scale == doctest::Approx(0.2).epsilon(1e-7));  // (2 - (-1)) / 15
    CHECK(p.zero == 5);                                    // round(1 / 0.2)
    CHECK(F::quantize(-1.0f, p, Rounding::half_even) == 0);
    CHECK(F::quantize(0.0f, p, Rounding::half_even) == 5);
    CHECK(F::quantize(0.5f, p, Rounding::half_even) == 7);  // 2.5 -> 2 (even)
    CHECK(F::quantize(0.5f, p, Rounding::half_away) == 8);  // 2.5 -> 3
    CHECK(F::quantize(2.0f, p, Rounding::half_even) == 15);
    CHECK(F::dequantize(0, p) == doctest::Approx(-1.0));
    CHECK(F::dequantize(5, p) == 0.0f);
    CHECK(F::dequantize(15, p) == doctest::Approx(2.0));
    CHECK(F::quantize(9.0f, p, Rounding::half_even) == 15);  // clamped
    CHECK(F::quantize(-9.0f, p, Rounding::half_even) == 0);
}

TEST_CASE("asymmetric: widen_to_zero option") {
    using F = IntFormat<8, false>;
    QuantOptions widen, nowiden;
    nowiden.widen_to_zero = false;
    const auto s = stats_of({1.0f, 3.55f});  // all positive
    const auto pw = F::make_params(s, widen);
    CHECK(pw.scale == doctest::Approx(3.55 / 255).epsilon(1e-7));
    CHECK(pw.zero == 0);
    const auto pn = F::make_params(s, nowiden);
    CHECK(pn.scale == doctest::Approx(2.55 / 255).epsilon(1e-6));  // = 0.01
    // zero = round(-1 / 0.01) = -100, clamped to the code range (AWQ's convention too)
    CHECK(pn.zero == 0);
    // range entirely negative without widening: zero = round(2/0.01) = 200
    const auto pneg = F::make_params(stats_of({-2.0f, -0.5f}), nowiden);
    CHECK(pneg.scale == doctest::Approx(1.5 / 255).epsilon(1e-6));
    CHECK(pneg.zero == 255);  // round(2 / (1.5/255)) = 340 -> clamped to 255
}

TEST_CASE("symmetric 8-bit: rounding modes on ties") {
    using F = IntFormat<8, true>;
    const auto p = F::make_params(stats_of({127.0f, -3.0f}));
    REQUIRE(p.scale == 1.0f);
    REQUIRE(p.zero == 128);
    struct V {
        float x;
        int even, away;
    };
    for (V v : {V{127.0f, 255, 255}, V{2.5f, 130, 131}, V{-2.5f, 126, 125}, V{3.5f, 132, 132}, V{-0.5f, 128, 127},
                V{0.5f, 128, 129}, V{-127.0f, 1, 1}, V{-200.0f, 1, 1}, V{126.5f, 254, 255}}) {
        CAPTURE(v.x);
        CHECK(F::quantize(v.x, p, Rounding::half_even) == v.even);
        CHECK(F::quantize(v.x, p, Rounding::half_away) == v.away);
    }
    CHECK(F::dequantize(1, p) == -127.0f);  // restricted range: code 0 (-128) is never produced
}

TEST_CASE("symmetric 4-bit restricted and full range by hand") {
    SUBCASE("restricted: scale = absmax / 7") {
        using F = IntFormat<4, true>;
        const auto p = F::make_params(stats_of({-1.4f, 0.7f}));
        CHECK(p.scale == doctest::Approx(0.2).epsilon(1e-7));
        CHECK(F::quantize(-1.4f, p, Rounding::half_even) == 1);  // q = -7, stored q + 8
        CHECK(F::quantize(0.7f, p, Rounding::half_even) == 12);  // 3.5 -> 4
        CHECK(F::quantize(0.7f, p, Rounding::half_away) == 12);
        CHECK(F::code_min == 1);
        CHECK(F::code_max == 15);
    }
    SUBCASE("full: scale = absmax / 7.5 (GPTQ's 2*absmax/15), codes 0..15") {
        using F = IntFormat<4, true, IntRange::full>;
        const auto p = F::make_params(stats_of({-1.5f, 0.7f}));
        CHECK(p.scale == doctest::Approx(0.2).epsilon(1e-7));
        CHECK(F::quantize(-1.5f, p, Rounding::half_even) == 0);  // -7.5 -> -8
        CHECK(F::quantize(-1.5f, p, Rounding::half_away) == 0);
        CHECK(F::quantize(1.5f, p, Rounding::half_even) == 15);  // 7.5 -> 8 -> clamp 7
        CHECK(F::code_min == 0);
        CHECK(F::dequantize(0, p) == doctest::Approx(-1.6));
    }
}

TEST_CASE("degenerate groups quantize exactly") {
    SUBCASE("all zero") {
        using F = IntFormat<4, false>;
        const auto p = F::make_params(stats_of({0.0f, 0.0f, -0.0f}));
        CHECK(std::isfinite(p.scale));
        CHECK(F::dequantize(F::quantize(0.0f, p, Rounding::half_even), p) == 0.0f);
        CHECK(F::dequantize(F::quantize(-0.0f, p, Rounding::half_even), p) == 0.0f);
    }
    SUBCASE("constant, every width and sign") {
        for (float c : {3.0f, -3.0f, 1e-30f, -7.25e20f, 0.1f, -0.1f}) {
            CAPTURE(c);
            auto check = [c](auto fmt) {
                using F = decltype(fmt);
                const auto p = F::make_params(stats_of({c, c, c}));
                CHECK(F::dequantize(F::quantize(c, p, Rounding::half_even), p) == c);
                CHECK(F::dequantize(F::quantize(c, p, Rounding::half_away), p) == c);
            };
            check(IntFormat<1, false>{});
            check(IntFormat<2, false>{});
            check(IntFormat<4, false>{});
            check(IntFormat<8, false>{});
            check(IntFormat<2, true>{});
            check(IntFormat<4, true>{});
            check(IntFormat<4, true, IntRange::full>{});
            check(IntFormat<8, true>{});
        }
    }
}

TEST_CASE("ranges at the float limit decode to finite values (regression)") {
    // Found by the +-FLT_MAX edge case: asymmetric [-FLT_MAX, FLT_MAX] in 4 bits has
    // scale = 2 FLT_MAX / 15 and zero = round(7.5) = 8, so code 0 decoded to -16/15 FLT_MAX = -Inf;
    // symmetric 8-bit: scale = fl(FLT_MAX / 127) is rounded up, 127 * scale = +Inf; full range:
    // code 0 is -(qmax + 1) * absmax / (qmax + 0.5) > FLT_MAX. Every code must decode finite.
    const float m = std::numeric_limits<float>::max();
    auto all_codes_finite = [](auto fmt, const RangeStats& s) {
        using F = decltype(fmt);
        const auto p = F::make_params(s);
        for (int c = F::code_min; c <= F::code_max; ++c) {
            CAPTURE(c);
            CHECK(std::isfinite(F::dequantize(std::uint8_t(c), p)));
        }
        // the ends at +-FLT_MAX keep their sign
        if (s.hi == std::numeric_limits<float>::max())
            CHECK(F::dequantize(F::quantize(s.hi, p, Rounding::half_even), p) > 0.0f);
        if (s.lo == -std::numeric_limits<float>::max())
            CHECK(F::dequantize(F::quantize(s.lo, p, Rounding::half_even), p) < 0.0f);
    };
    for (const RangeStats& s :
         {stats_of({-m, m}), stats_of({-m, 1.0f}), stats_of({-1e38f, m}), stats_of({-m, 3e38f})}) {
        all_codes_finite(IntFormat<2, false>{}, s);
        all_codes_finite(IntFormat<4, false>{}, s);
        all_codes_finite(IntFormat<8, false>{}, s);
        all_codes_finite(IntFormat<2, true>{}, s);
        all_codes_finite(IntFormat<8, true>{}, s);
        all_codes_finite(IntFormat<4, true, IntRange::full>{}, s);
        all_codes_finite(IntFormat<8, true, IntRange::full>{}, s);
    }
    // The cap only touches such ranges: ordinary groups keep the exact formula.
    CHECK(IntFormat<8, true>::make_params(stats_of({-1.0f, 127.0f})).scale == 1.0f);
    CHECK(IntFormat<8, true>::make_params(stats_of({-1e38f, 1.0f})).scale == float(1e38 / 127.0));
}

TEST_CASE("exhaustive code round trips: IntFormat<1..8, false>, IntFormat<2..8, true> both ranges") {
    roundtrip_asym_all(std::make_integer_sequence<int, 8>{});
    roundtrip_sym_all(std::make_integer_sequence<int, 7>{});
}

TEST_CASE("format constants") {
    CHECK(IntFormat<4, false>::levels == 15);
    CHECK(IntFormat<4, false>::code_min == 0);
    CHECK(IntFormat<4, true>::q_min == -7);
    CHECK(IntFormat<4, true>::q_max == 7);
    CHECK(IntFormat<4, true, IntRange::full>::q_min == -8);
    CHECK(IntFormat<1, false>::levels == 1);
    CHECK(IntFormat<8, true>::symmetric_zero == 128);
}

namespace {
// The paper authors' symmetric quantizer (IST-DASLab gptq, quant.py: find_params with sym=True,
// then quantize), written from its formulas in float32 as torch computes them, for a group
// holding at least one negative value (only then is xmin set to -xmax):
//   xmax = max(|min x|, max x), scale = (xmax - (-xmax)) / (2^b - 1), zero = (2^b - 1 + 1) / 2,
//   q = clamp(round_half_even(x / scale) + zero, 0, 2^b - 1), x^ = scale * (q - zero).
struct ReferenceSym {
    float scale;
    float zero;
    float maxq;
    ReferenceSym(const std::vector<float>& x, int bits) {
        float xmin = 0.0f, xmax = 0.0f;
        for (float v : x) {
            xmin = std::min(xmin, v);
            xmax = std::max(xmax, v);
        }
        REQUIRE(xmin < 0.0f);
        xmax = std::max(std::fabs(xmin), xmax);
        xmin = -xmax;
        maxq = float((1 << bits) - 1);
        scale = (xmax - xmin) / maxq;
        zero = (maxq + 1.0f) / 2.0f;
    }
    float code(float x) const { return std::clamp(std::nearbyint(x / scale) + zero, 0.0f, maxq); }
};

template <int B>
void check_reference_sym(std::mt19937& g, int& near_ties, int& total) {
    using F = IntFormat<B, true, IntRange::full>;
    std::normal_distribution<float> nd;
    for (int t = 0; t < 200; ++t) {
        std::vector<float> x(std::size_t(8 + t % 57));
        for (auto& v : x) v = nd(g) * (t % 3 == 0 ? 0.01f : 1.0f);
        x[std::size_t(t) % x.size()] = -std::fabs(x[std::size_t(t) % x.size()]) - 0.001f;  // a negative value
        if (t % 5 == 0) x[0] = 6.0f * std::fabs(x[0]);                                     // a dominant positive end
        const ReferenceSym ref(x, B);
        const auto p = F::make_params(range_of(x.data(), x.size()));
        CAPTURE(B);
        CAPTURE(t);
        REQUIRE(p.scale == ref.scale);
        REQUIRE(float(p.zero) == ref.zero);
        total += int(x.size());
        for (float v : x) {
            // ptq multiplies by 1/scale, the reference divides: the two may round to different
            // integers only when x / scale lies within an ulp of a half-integer (mostly the group's
            // -absmax, at exactly -(2^(b-1) - 1/2) for the reference: both codes then err by
            // half a step).
            const std::uint8_t c = F::quantize(v, p, Rounding::half_even);
            if (float(c) == ref.code(v)) {
                CHECK(F::dequantize(c, p) == ref.scale * (ref.code(v) - ref.zero));
                continue;
            }
            ++near_ties;
            const float d = v / ref.scale;
            CHECK(std::fabs(std::fabs(d - std::trunc(d)) - 0.5f) <= 4e-7f * std::fabs(d));
            const float ref_value = ref.scale * (ref.code(v) - ref.zero);
            CHECK(std::fabs(v - F::dequantize(c, p)) == doctest::Approx(std::fabs(v - ref_value)).epsilon(1e-5));
        }
    }
}
}  // namespace

TEST_CASE("IntRange::full is the paper authors' symmetric quantizer (GPTQ reference, sym=True)") {
    std::mt19937 g(2024);
    int near_ties = 0, total = 0;
    check_reference_sym<2>(g, near_ties, total);
    check_reference_sym<3>(g, near_ties, total);
    check_reference_sym<4>(g, near_ties, total);
    check_reference_sym<8>(g, near_ties, total);
    MESSAGE("codes that differ from the reference (all at half-integer ties): " << near_ties << " of " << total);
    CHECK(near_ties * 100 < total);
    // 4 bits: levels -8 .. +7, scale 2 absmax / 15; +absmax lands half a step above +7 and clamps.
    using F = IntFormat<4, true, IntRange::full>;
    const std::vector<float> x{-1.5f, 0.1f, 1.5f};
    const auto p = F::make_params(range_of(x.data(), x.size()));
    CHECK(p.scale == 3.0f / 15.0f);
    CHECK(F::quantize(-1.5f, p, Rounding::half_even) == 0);  // q = -7.5 -> -8 (tie to even)
    CHECK(F::quantize(1.5f, p, Rounding::half_even) == 15);  // q = 7.5 -> 8 -> clamped to 7
    CHECK(F::dequantize(15, p) == 7.0f * (3.0f / 15.0f));
    // Documented difference: a group with no negative value. The reference keeps xmin = 0 there
    // (scale = max / 15, zero 8: values above 7/15 max clamp); ptq stays symmetric about 0.
    const std::vector<float> pos{0.25f, 1.5f};
    CHECK(F::make_params(range_of(pos.data(), pos.size())).scale == 3.0f / 15.0f);
}

}  // TEST_SUITE("format.int")
