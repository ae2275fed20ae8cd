// MX formats (format/mx_int.hpp, format/mx_fp.hpp, format/e8m0.hpp): hand-computed blocks from
// the OCP Microscaling v1.0 rules of docs/DESIGN.md §6.2, §6.3 and §6.5, the three scale rules,
// both rounding modes, and exhaustive code round trips of MxInt<2..8>.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "support.hpp"

using namespace ptq;

namespace {
RangeStats stats_of(const std::vector<float>& v) {
    RangeStats s;
    for (float x : v) s.add(x);
    return s;
}
/// Sign-extends a d-bit two's-complement code.
int sext(std::uint8_t c, int d) {
    const int v = c & ((1 << d) - 1);
    return v >= (1 << (d - 1)) ? v - (1 << d) : v;
}

template <int B>
void roundtrip_mxint() {
    using F = MxInt<B, 32>;
    CAPTURE(B);
    for (int byte : {0, 1, 100, 126, 127, 128, 200, 254}) {
        const typename F::Params p{static_cast<std::uint8_t>(byte)};
        for (int c = 0; c < (1 << B); ++c) {
            CAPTURE(byte);
            CAPTURE(c);
            const auto code = static_cast<std::uint8_t>(c);
            const float v = F::dequantize(code, p);
            // value = 2^(byte-127) * q / 2^(B-2), computed here in double and rounded to float
            // (the never-emitted code -2^(d-1) at byte 254 is -2^128: overflows to -Inf)
            const double want = std::ldexp(double(sext(code, B)), byte - 127 - (B - 2));
            CHECK(v == static_cast<float>(want));
            if (c == (1 << (B - 1))) {
                // -2^(d-1) is never emitted: it decodes as such and re-quantizes to q_min.
                CHECK(sext(F::quantize(v, p, Rounding::half_even), B) == -((1 << (B - 1)) - 1));
            } else {
                CHECK(F::quantize(v, p, Rounding::half_even) == code);
                CHECK(F::quantize(v, p, Rounding::half_away) == code);
            }
        }
    }
}
template <int... B>
void roundtrip_mxint_all(std::integer_sequence<int, B...>) {
    (roundtrip_mxint<B + 2>(), ...);
}
}  // namespace

TEST_SUITE("format.mx") {

TEST_CASE("E8M0") {
    CHECK(E8M0::decode(127) == 1.0f);
    CHECK(E8M0::decode(128) == 2.0f);
    CHECK(E8M0::decode(0) == std::ldexp(1.0f, -127));
    CHECK(E8M0::decode(254) == std::ldexp(1.0f, 127));
    CHECK(std::isnan(E8M0::decode(255)));
    CHECK(E8M0::encode_exponent(-127) == 0);
    CHECK(E8M0::encode_exponent(127) == 254);
}

TEST_CASE("MXINT8 conformance: docs/DESIGN.md §6.3 example [3, 1, -0.3, 0.01]") {
    using F = MxInt<8, 32>;
    const std::vector<float> x{3.0f, 1.0f, -0.3f, 0.01f};
    const auto p = F::make_params(stats_of(x));
    CHECK(p.scale_byte == 128);  // e = floor(log2 3) = 1
    const int q[4] = {96, 32, -10, 0};
    const float v[4] = {3.0f, 1.0f, -0.3125f, 0.0f};
    for (int i = 0; i < 4; ++i) {
        CAPTURE(i);
        const auto c = F::quantize(x[i], p, Rounding::half_even);
        CHECK(sext(c, 8) == q[i]);
        CHECK(F::dequantize(c, p) == v[i]);
    }
    CHECK(F::quantize(-0.3f, p, Rounding::half_even) == 0xF6);  // stored two's complement
    CHECK(F::max_elem == 1.984375);

    SUBCASE("through Rtn: same byte, codes and values") {
        RowMatrixXf m(1, 4);
        m << 3.0f, 1.0f, -0.3f, 0.01f;
        const auto qm = quantize<F>(m);
        REQUIRE(qm.params().size() == 1);
        CHECK(qm.params()[0].scale_byte == 128);
        CHECK(qm.code(0, 0) == 96);
        CHECK(qm.code(0, 1) == 32);
        CHECK(qm.code(0, 2) == 0xF6);
        CHECK(qm.code(0, 3) == 0);
        const auto d = dequantize(qm);
        for (int i = 0; i < 4; ++i) CHECK(d(0, i) == v[i]);
    }
}

TEST_CASE("MXINT8: values above 1.984375 X are clamped, all-zero block gets byte 0") {
    using F = MxInt<8, 32>;
    const auto p = F::make_params(stats_of({3.99f, -1.0f}));
    CHECK(p.scale_byte == 128);
    CHECK(F::quantize(3.99f, p, Rounding::half_even) == 127);  // 127.68 -> 128 -> clamp 127
    CHECK(F::quantize(-3.99f, p, Rounding::half_even) == std::uint8_t(-127));
    const auto pz = F::make_params(stats_of({0.0f, -0.0f, 0.0f}));
    CHECK(pz.scale_byte == 0);
    CHECK(F::quantize(0.0f, pz, Rounding::half_even) == 0);
    CHECK(F::quantize(-0.0f, pz, Rounding::half_even) == 0);
    CHECK(F::dequantize(0, pz) == 0.0f);
}

TEST_CASE("MXINT4 by hand: [0.9, -0.4, 0.13, 0.6, 0.3125, -0.0625]") {
    // amax 0.9: e = floor(log2 0.9) = -1, X = 0.5, byte 126; q = round(x / 0.5 * 4) = round(8x),
    // |q| <= 7, value = 0.5 * q / 4.
    using F = MxInt<4, 32>;
    const std::vector<float> x{0.9f, -0.4f, 0.13f, 0.6f, 0.3125f, -0.0625f};
    const auto p = F::make_params(stats_of(x));
    CHECK(p.scale_byte == 126);
    const int even[6] = {7, -3, 1, 5, 2, 0};   // 7.2, -3.2, 1.04, 4.8, 2.5 -> 2, -0.5 -> 0
    const int away[6] = {7, -3, 1, 5, 3, -1};  // 2.5 -> 3, -0.5 -> -1
    for (int i = 0; i < 6; ++i) {
        CAPTURE(i);
        const auto ce = F::quantize(x[i], p, Rounding::half_even);
        const auto ca = F::quantize(x[i], p, Rounding::half_away);
        CHECK(ce < 16);
        CHECK(sext(ce, 4) == even[i]);
        CHECK(sext(ca, 4) == away[i]);
        CHECK(F::dequantize(ce, p) == float(even[i]) * 0.125f);
    }
    CHECK(F::quantize(-0.4f, p, Rounding::half_even) == 13);  // -3 in 4-bit two's complement
}

TEST_CASE("MXINT8: the three MxScaleRule variants") {
    // Block A = [4, 1, -0.3, 0.01]: floor -> e=2; ceil -> ceil(log2 4)-1 = 1;
    //   nvidia -> ceil(log2(4/1.984375)) = ceil(1.011) = 2.
    // Block B = [3.99, 1, -0.3, 0.01]: floor -> 1; ceil -> ceil(1.996)-1 = 1;
    //   nvidia -> ceil(log2(3.99/1.984375)) = ceil(1.008) = 2.
    using F = MxInt<8, 4>;
    RowMatrixXf m(2, 4);
    m << 4.0f, 1.0f, -0.3f, 0.01f, 3.99f, 1.0f, -0.3f, 0.01f;
    struct Case {
        MxScaleRule rule;
        int byteA, byteB;
        int qA[4], qB[4];
    };
    const Case cases[] = {
        {MxScaleRule::ocp_floor, 129, 128, {64, 16, -5, 0}, {127, 32, -10, 0}},
        {MxScaleRule::ceil, 128, 128, {127, 32, -10, 0}, {127, 32, -10, 0}},
        {MxScaleRule::nvidia, 129, 129, {64, 16, -5, 0}, {64, 16, -5, 0}},
    };
    for (const Case& c : cases) {
        CAPTURE(int(c.rule));
        QuantOptions o;
        o.mx_scale_rule = c.rule;
        const auto q = quantize<F>(m, o, PerGroup<4>{});
        CHECK(q.params()[0].scale_byte == c.byteA);
        CHECK(q.params()[1].scale_byte == c.byteB);
        for (int j = 0; j < 4; ++j) {
            CAPTURE(j);
            CHECK(sext(q.code(0, j), 8) == c.qA[j]);
            CHECK(sext(q.code(1, j), 8) == c.qB[j]);
        }
    }
    // Default options use the OCP floor rule.
    CHECK(QuantOptions{}.mx_scale_rule == MxScaleRule::ocp_floor);
}

TEST_CASE("MXFP4 by hand: E8M0 byte from floor(log2 amax) - 2, E2M1 codes") {
    // amax 5.9: floor(log2 5.9) = 2, e = 2 - emax_elem(2) = 0, X = 1, byte 127.
    // E2M1 magnitude codes 0..7 = 0, 0.5, 1, 1.5, 2, 3, 4, 6; sign bit 8.
    using F = MxFp4;
    const std::vector<float> x{1.2f, -2.5f, 0.25f, 5.9f, 0.1f, -0.76f, 2.6f, 0.0f};
    const int even[8] = {2, 12, 0, 7, 0, 10, 5, 0};  // -2.5 -> -2 (mag 4 even); 0.25 -> 0
    const int away[8] = {2, 13, 1, 7, 0, 10, 5, 0};  // -2.5 -> -3; 0.25 -> 0.5
    const float val[8] = {1.0f, -2.0f, 0.0f, 6.0f, 0.0f, -1.0f, 3.0f, 0.0f};
    for (int shift : {0, 5, -20}) {
        CAPTURE(shift);
        std::vector<float> xs;
        for (float v : x) xs.push_back(std::ldexp(v, shift));
        const auto p = F::make_params(stats_of(xs));
        CHECK(p.scale_byte == 127 + shift);
        for (int i = 0; i < 8; ++i) {
            CAPTURE(i);
            const auto ce = F::quantize(xs[i], p, Rounding::half_even);
            CHECK(int(ce) == even[i]);
            CHECK(int(F::quantize(xs[i], p, Rounding::half_away)) == away[i]);
            CHECK(F::dequantize(ce, p) == std::ldexp(val[i], shift));
        }
    }
    SUBCASE("saturation inside the block: 7 -> 6") {
        const auto p = F::make_params(stats_of({7.0f, 1.0f}));
        CHECK(p.scale_byte == 127);
        CHECK(F::quantize(7.0f, p, Rounding::half_even) == 7);
        CHECK(F::quantize(-7.5f, p, Rounding::half_even) == 15);
    }
    SUBCASE("scale rules: amax 5.9 and 7") {
        QuantOptions o;
        o.mx_scale_rule = MxScaleRule::ceil;  // ceil(log2 amax) - 2
        CHECK(F::make_params(stats_of({5.9f}), o).scale_byte == 128);
        CHECK(F::make_params(stats_of({4.0f}), o).scale_byte == 127);
        o.mx_scale_rule = MxScaleRule::nvidia;  // ceil(log2(amax / 6))
        CHECK(F::make_params(stats_of({5.9f}), o).scale_byte == 127);
        CHECK(F::make_params(stats_of({7.0f}), o).scale_byte == 128);
        CHECK(F::make_params(stats_of({6.0f}), o).scale_byte == 127);
    }
}

TEST_CASE("MXFP8 E4M3 / E5M2 and MXFP6 shared exponents") {
    // emax_elem: E4M3 8, E5M2 15, E3M2 4, E2M3 2.
    const auto s = stats_of({1000.0f, -3.0f});  // floor(log2 1000) = 9
    CHECK(MxFp8E4M3::make_params(s).scale_byte == 127 + 9 - 8);
    CHECK(MxFp8E5M2::make_params(s).scale_byte == 127 + 9 - 15);
    CHECK(MxFp6E3M2::make_params(s).scale_byte == 127 + 9 - 4);
    CHECK(MxFp6E2M3::make_params(s).scale_byte == 127 + 9 - 2);
    // E4M3 with X = 2: 1000 / 2 = 500 -> saturates to 448 -> 896
    const auto p = MxFp8E4M3::make_params(s);
    CHECK(MxFp8E4M3::dequantize(MxFp8E4M3::quantize(1000.0f, p, Rounding::half_even), p) == 896.0f);
    CHECK(MxFp8E4M3::dequantize(MxFp8E4M3::quantize(-3.0f, p, Rounding::half_even), p) == -3.0f);
    // all-zero block: byte 0
    CHECK(MxFp8E4M3::make_params(stats_of({0.0f, 0.0f})).scale_byte == 0);
}

TEST_CASE("E8M0 exponent clamping at the float extremes") {
    // FLT_MAX: floor(log2) = 127 -> MXINT byte 254; denorm_min: floor(log2) = -149 -> clamp -127.
    const float big = std::numeric_limits<float>::max();
    const float tiny = std::numeric_limits<float>::denorm_min();
    CHECK(MxInt<8, 32>::make_params(stats_of({big})).scale_byte == 254);
    CHECK(MxInt<8, 32>::make_params(stats_of({tiny})).scale_byte == 0);
    CHECK(MxFp8E4M3::make_params(stats_of({big})).scale_byte == 127 + 127 - 8);
    CHECK(MxFp8E4M3::make_params(stats_of({tiny})).scale_byte == 0);
    QuantOptions o;
    o.mx_scale_rule = MxScaleRule::ceil;
    CHECK(MxInt<8, 32>::make_params(stats_of({big}), o).scale_byte == 254);  // ceil = 128, - 1
    o.mx_scale_rule = MxScaleRule::nvidia;
    CHECK(MxInt<8, 32>::make_params(stats_of({big}), o).scale_byte == 254);
    // the largest element decodes finite: 127/64 * 2^127 < FLT_MAX
    const MxInt<8, 32>::Params p{254};
    CHECK(std::isfinite(MxInt<8, 32>::dequantize(MxInt<8, 32>::quantize(big, p, Rounding::half_even), p)));
}

TEST_CASE("exhaustive code round trips: MxInt<2..8>") { roundtrip_mxint_all(std::make_integer_sequence<int, 7>{}); }

TEST_CASE("NaN scale byte decodes every code to NaN") {
    CHECK(std::isnan(MxInt<8, 32>::dequantize(0, MxInt<8, 32>::nan_params())));
    CHECK(std::isnan(MxFp4::dequantize(0, MxFp4::nan_params())));
    RangeStats s;
    s.add(1.0f);
    s.add(std::numeric_limits<float>::quiet_NaN());
    CHECK(MxInt<8, 32>::make_params(s).scale_byte == 255);
}

}  // TEST_SUITE("format.mx")

TEST_CASE("floor_log2 / ceil_log2 (bit-pattern exponents) equal frexp's, normals and subnormals") {
    // Oracle: frexp (a = m * 2^k, m in [0.5, 1)) -> floor = k - 1, ceil = k - 1 iff m == 0.5.
    std::vector<float> xs{std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::max(),
                          1.0f,
                          1.5f,
                          0.75f,
                          3.0f,
                          1e-40f,
                          2e-39f};
    for (int e = -149; e <= 127; ++e) {
        const float p = std::ldexp(1.0f, e);
        xs.push_back(p);
        if (e < 127) xs.push_back(std::nextafter(p, 4.0f * p));
        if (e > -149) xs.push_back(std::nextafter(p, 0.0f));
    }
    for (float a : xs) {
        CAPTURE(a);
        int k = 0;
        const float m = std::frexp(a, &k);
        CHECK(detail::floor_log2(a) == k - 1);
        CHECK(detail::floor_log2(-a) == k - 1);
        for (double d : {double(a), double(a) / 448.0, double(a) * 3.0}) {
            CAPTURE(d);
            int kd = 0;
            const double md = std::frexp(d, &kd);
            CHECK(detail::ceil_log2(d) == (md == 0.5 ? kd - 1 : kd));
        }
        (void)m;
    }
    for (double d : {std::numeric_limits<double>::denorm_min(), 3e-320, 4.9e-324 * 4}) {
        int kd = 0;
        const double md = std::frexp(d, &kd);
        CHECK(detail::ceil_log2(d) == (md == 0.5 ? kd - 1 : kd));
    }
}
