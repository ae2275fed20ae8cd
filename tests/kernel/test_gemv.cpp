// gemv / gemm on packed weights against dequantize-then-multiply in double precision, within
// the documented bounds (float activations; integer activations), and the integer group dot
// products against an integer reference written from the formats' definitions (equality).
// Every kernel runs at the machine's default arch, AVX2 (maddubs) and SSE2 (generic path).
#include <ptq/gemv.hpp>  // first: see ptq/kernel/xsimd.hpp

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include <ptq/format/int_format.hpp>
#include <ptq/format/int_min_format.hpp>
#include <ptq/format/minifloat.hpp>
#include <ptq/format/mx_fp.hpp>
#include <ptq/format/mx_int.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/gemv_reference.hpp>
#include <ptq/quantize.hpp>

namespace {

using namespace ptq;

template <class Fn>
void for_each_arch(Fn&& f) {
    f.template operator()<xsimd::default_arch>();
#if XSIMD_WITH_AVX2
    if constexpr (!std::is_same_v<xsimd::default_arch, xsimd::avx2>) f.template operator()<xsimd::avx2>();
#endif
    f.template operator()<xsimd::sse2>();
}

constexpr double u = 1.0 / 16777216.0;  // 2^-24

/// A [rows x cols] matrix: normal entries, one all-zero row, one row of huge values, a few
/// exact zeros.
RowMatrixXf weights(std::mt19937& rng, std::size_t rows, std::size_t cols) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    RowMatrixXf w(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
    for (Eigen::Index r = 0; r < w.rows(); ++r)
        for (Eigen::Index c = 0; c < w.cols(); ++c)
            w(r, c) = nd(rng) * (r == 2 ? 1e20f : 1.0f) + (r == 3 ? 0.7f : 0.0f);
    if (rows > 1) w.row(1).setZero();
    if (cols > 4) w(0, 4) = 0.0f;
    return w;
}

RowMatrixXf activations(std::mt19937& rng, std::size_t tokens, std::size_t cols) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    RowMatrixXf x(static_cast<Eigen::Index>(tokens), static_cast<Eigen::Index>(cols));
    for (Eigen::Index t = 0; t < x.rows(); ++t)
        for (Eigen::Index c = 0; c < x.cols(); ++c) x(t, c) = nd(rng) * (t == 1 ? 1e6f : 1.0f);
    if (cols > 2) x(0, 1) = 0.0f;
    return x;
}

struct Shape {
    std::size_t rows, cols;
};
const Shape kShapes[] = {{1, 1}, {3, 7}, {4, 32}, {5, 33}, {6, 100}, {17, 128}, {9, 257}, {67, 300}};

/// Checks |y[o] - sum_i w^_oi x_i| <= k_o * u * sum_i |w^_oi x_i| (+ a denormal-sized slack)
/// for every row, w^ the dequantized matrix, in double precision.
void check_bound(const RowMatrixXf& w_hat, const float* x, const float* y, const std::vector<double>& k,
                 const std::string& what) {
    for (Eigen::Index o = 0; o < w_hat.rows(); ++o) {
        double ref = 0.0, mag = 0.0;
        for (Eigen::Index i = 0; i < w_hat.cols(); ++i) {
            ref += double(w_hat(o, i)) * double(x[i]);
            mag += std::fabs(double(w_hat(o, i)) * double(x[i]));
        }
        const double err = std::fabs(double(y[o]) - ref);
        const double bound = k[std::size_t(o)] * u * mag + 1e-37;
        CAPTURE(what);
        CAPTURE(o);
        CAPTURE(y[o]);
        CAPTURE(ref);
        CAPTURE(bound);
        CHECK(err <= bound);
    }
}

template <class G>
std::string gname(const G& g) {
    if constexpr (is_per_group<G>::value) return "group " + std::to_string(g.group_size());
    else return G::name();
}

/// Runs f(granularity) for per-channel, per-tensor and groups 32 / 128 / 10 (MX formats:
/// their block only).
template <class F, class Fn>
void for_each_granularity(Fn&& f) {
    if constexpr (F::is_mx) {
        f(PerGroup<F::block>{});
    } else {
        f(PerChannel{});
        f(PerTensor{});
        f(PerGroup<>{32});
        f(PerGroup<>{128});
        f(PerGroup<>{10});
    }
}

/// The rounding count r of kernel::int_dot_row's documented bound for rows of n codes.
std::size_t int_dot_row_roundings(std::size_t n) {
#if defined(__FMA__)
    constexpr std::size_t per_block = 1;
#else
    constexpr std::size_t per_block = 2;
#endif
    return per_block * ((n + 63) / 64) + 6;
}

std::size_t log2i(std::size_t w) {
    std::size_t l = 0;
    while ((std::size_t(1) << l) < w) ++l;
    return l;
}

}  // namespace

#define PTQ_GEMV_FORMATS                                                                                   \
    IntFormat<4, false>, IntFormat<4, true>, IntFormat<8, false>, IntFormat<8, true>, IntFormat<3, false>, \
        MxInt<8, 32>, MxFp<2, 1, 32>, Fp8<4, 3>, MxFp<4, 3, 32>

TEST_SUITE("gemv") {

TEST_CASE_TEMPLATE("gemv / gemm, float activations == dequantize-then-multiply within the bound", F, PTQ_GEMV_FORMATS) {
    std::mt19937 rng(11);
    for (const Shape s : kShapes) {
        const RowMatrixXf w = weights(rng, s.rows, s.cols);
        const RowMatrixXf x = activations(rng, 3, s.cols);
        for_each_granularity<F>([&](const auto& gran) {
            const QuantizedMatrix<F> q = quantize<F>(w, QuantOptions{}, gran);
            const RowMatrixXf w_hat = dequantize(q);
            const std::size_t ng = q.layout().col_groups();
            const std::string what =
                F::name() + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols) + " " + gname(gran);
            for_each_arch([&]<class Arch>() {
                const std::size_t W = xsimd::batch<float, Arch>::size;
                const double k = double(2 * ((s.cols + W - 1) / W + ng) + log2i(W) + 4);
                const RowMatrixXf y = gemm<F, Arch>(q, x);
                REQUIRE(y.rows() == x.rows());
                REQUIRE(std::size_t(y.cols()) == s.rows);
                for (Eigen::Index t = 0; t < x.rows(); ++t) {
                    const RowMatrixXf yt = y.row(t);
                    check_bound(w_hat, x.row(t).data(), yt.data(), std::vector<double>(s.rows, k),
                                what + " " + Arch::name());
                    // gemv is the same kernel: identical bits.
                    const Eigen::VectorXf v = gemv<F, Arch>(q, x.row(t).transpose());
                    for (std::size_t o = 0; o < s.rows; ++o) CHECK(v[Eigen::Index(o)] == y(t, Eigen::Index(o)));
                }
            });
            // the scalar twin: sequential summation, r = cols + 2 roundings
            for (Eigen::Index t = 0; t < x.rows(); ++t) {
                std::vector<float> yr(s.rows);
                for (std::size_t o = 0; o < s.rows; ++o)
                    yr[o] = ref::dot_row<F>(q.row_data(o), q.layout(), q.row_params(o), x.row(t).data());
                check_bound(w_hat, x.row(t).data(), yr.data(), std::vector<double>(s.rows, double(s.cols + 3)),
                            what + " ref");
            }
        });
    }
}

TEST_CASE("gemv / gemm, IntMinFormat (Q4_1): within the bound relative to sum |k0 c x| + |min x|") {
    // The kernel adds k0 * sum(c x) and min * sum(x) per group (kernel/gemv.hpp dot_row), so
    // its bound is relative to the two terms' magnitudes; the reference value is computed here
    // in double from the codes and parameters (w^ = scale * c + min, exact in double).
    using F = IntMinFormat<4>;
    std::mt19937 rng(13);
    for (const Shape s : kShapes) {
        const RowMatrixXf w = weights(rng, s.rows, s.cols);
        const RowMatrixXf x = activations(rng, 2, s.cols);
        for (const std::size_t gs : {std::size_t(32), std::size_t(10), s.cols}) {
            const QuantizedMatrix<F> q = quantize<F>(w, QuantOptions{}, PerGroup<>{gs});
            const std::size_t ng = q.layout().col_groups();
            for_each_arch([&]<class Arch>() {
                const std::size_t W = xsimd::batch<float, Arch>::size;
                const double k = double(2 * ((s.cols + W - 1) / W + ng) + log2i(W) + 6);
                const RowMatrixXf y = gemm<F, Arch>(q, x);
                for (Eigen::Index t = 0; t < x.rows(); ++t)
                    for (std::size_t o = 0; o < s.rows; ++o) {
                        double ref = 0.0, mag = 0.0;
                        for (std::size_t i = 0; i < s.cols; ++i) {
                            const auto& p = q.row_params(o)[i / gs];
                            const double c = double(ref::get_code(q.row_data(o), i, 4)),
                                         xi = double(x(t, Eigen::Index(i)));
                            ref += (double(p.scale) * c + double(p.min)) * xi;
                            mag += std::fabs(double(p.scale) * c * xi) + std::fabs(double(p.min) * xi);
                        }
                        CAPTURE(s.rows);
                        CAPTURE(s.cols);
                        CAPTURE(gs);
                        CHECK(std::fabs(double(y(t, Eigen::Index(o))) - ref) <= k * u * mag + 1e-37);
                    }
            });
        }
    }
}

namespace gemv_short_rows_test {
/// Random parameters of one group, plausible for F (scales over two decades, every zero point).
template <class F>
typename F::Params random_params(std::mt19937& rng) {
    typename F::Params p{};
    std::uniform_real_distribution<float> sd(0.01f, 1.0f);
    if constexpr (F::kind == FormatKind::integer) {
        p.scale = sd(rng);
        if constexpr (!F::symmetric) p.zero = std::int32_t(rng() % (F::levels + 1));
    } else if constexpr (F::kind == FormatKind::integer_min) {
        p.scale = sd(rng);
        p.min = -sd(rng) * 8.0f;
    } else if constexpr (F::is_mx) {
        p.scale_byte = static_cast<std::uint8_t>(120 + rng() % 14);
    } else {
        p.scale = sd(rng);
    }
    return p;
}
}  // namespace gemv_short_rows_test

TEST_CASE_TEMPLATE("dot_row on short rows, groups of 32 / 64 / ragged / whole row: random codes within the bound", F,
                   PTQ_GEMV_FORMATS, IntMinFormat<4>, MxInt<4, 32>, Fp8<5, 2>) {
    // Every code value (the NaN / Inf codes of the FP8 elements excepted) with random group parameters;
    // the oracle sums F::dequantize(c) * x in double (IntMinFormat: (scale * c + min) * x, exact
    // in double, its bound relative to |scale c x| + |min x|). The packed row and x are allocated
    // at their exact sizes.
    using namespace gemv_short_rows_test;
    std::mt19937 rng(17);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (const std::size_t cols : {1, 5, 31, 33, 64, 172, 288}) {
        for (const std::size_t gs : {32, 64, 10, 24, 40, 0}) {
            if (F::is_mx && gs != 32) continue;
            const GroupLayout L{1, cols, 1, gs == 0 ? cols : gs};
            const std::size_t ng = L.col_groups();
            std::vector<typename F::Params> params(ng);
            for (auto& p : params) p = random_params<F>(rng);
            std::vector<std::uint8_t> codes(cols), packed(packed_bytes(cols, F::bits));
            std::vector<float> x(cols);
            double ref = 0.0, mag = 0.0;
            for (std::size_t i = 0; i < cols; ++i) {
                const auto& p = params[i / L.group_cols];
                codes[i] = static_cast<std::uint8_t>(rng() & ((1u << F::bits) - 1u));
                if (!std::isfinite(F::dequantize(codes[i], p))) codes[i] = 0;
                x[i] = nd(rng);
                if constexpr (F::kind == FormatKind::integer_min) {
                    ref += (double(p.scale) * codes[i] + double(p.min)) * double(x[i]);
                    mag += std::fabs(double(p.scale) * codes[i] * x[i]) + std::fabs(double(p.min) * x[i]);
                } else {
                    const double w = double(F::dequantize(codes[i], p));
                    ref += w * double(x[i]);
                    mag += std::fabs(w * double(x[i]));
                }
            }
            ref::pack_bits(codes.data(), cols, F::bits, packed.data());
            for_each_arch([&]<class Arch>() {
                const std::size_t W = xsimd::batch<float, Arch>::size;
                const double k = double(2 * ((cols + W - 1) / W + ng) + log2i(W) + 4);
                const float y = kernel::dot_row<F, Arch>(packed.data(), L, params.data(), x.data());
                CAPTURE(F::name());
                CAPTURE(cols);
                CAPTURE(gs);
                const std::string arch = Arch::name();
                CAPTURE(arch);
                CAPTURE(y);
                CAPTURE(ref);
                CHECK(std::fabs(double(y) - ref) <= k * u * mag + 1e-37);
            });
        }
    }
}

TEST_CASE("gemv: a NaN group gives NaN, NaN/Inf activations propagate") {
    std::mt19937 rng(12);
    RowMatrixXf w = weights(rng, 4, 70);
    w(2, 40) = std::numeric_limits<float>::quiet_NaN();
    QuantOptions o;
    o.non_finite = NonFinite::propagate;
    const auto q = quantize<IntFormat<4, false>>(w, o, PerGroup<32>{});
    Eigen::VectorXf x = Eigen::VectorXf::Ones(70);
    const Eigen::VectorXf y = gemv(q, x);
    CHECK(std::isnan(y[2]));
    CHECK(std::isfinite(y[0]));
    CHECK(std::isfinite(y[3]));
    x[5] = std::numeric_limits<float>::infinity();
    const auto q2 = quantize<IntFormat<4, false>>(weights(rng, 4, 70), QuantOptions{}, PerGroup<32>{});
    const Eigen::VectorXf y2 = gemv(q2, x);
    CHECK(!std::isfinite(y2[3]));
}

TEST_CASE("gemv / gemm: shape errors") {
    std::mt19937 rng(13);
    const auto q = quantize<IntFormat<4, false>>(weights(rng, 4, 70), QuantOptions{}, PerGroup<32>{});
    CHECK_THROWS_AS(gemv(q, Eigen::VectorXf::Ones(69)), ptq::invalid_argument);
    CHECK_THROWS_AS(gemm(q, RowMatrixXf::Ones(3, 71)), ptq::invalid_argument);
    const auto xq = quantize<IntFormat<8, true>>(RowMatrixXf::Ones(2, 71), QuantOptions{}, PerToken{});
    CHECK_THROWS_AS(gemm(q, xq), ptq::invalid_argument);
    const auto xg = quantize<IntFormat<8, true>>(RowMatrixXf::Ones(2, 70), QuantOptions{}, PerGroup<32>{});
    CHECK_THROWS_AS(gemm(q, xg), ptq::invalid_argument);
    CHECK_THROWS_AS(gemv(q, quantize<IntFormat<8, true>>(RowMatrixXf::Ones(2, 70), QuantOptions{}, PerToken{})),
                    ptq::invalid_argument);
    // empty shapes are fine
    const auto e = quantize<IntFormat<4, false>>(RowMatrixXf(0, 5), QuantOptions{}, PerGroup<32>{});
    CHECK(gemv(e, Eigen::VectorXf::Ones(5)).size() == 0);
    CHECK(gemm(e, RowMatrixXf::Ones(2, 5)).cols() == 0);
}

TEST_CASE("dot_u8s8 is exact for every byte (no saturation), long runs, all archs") {
    std::mt19937 rng(14);
    for_each_arch([&]<class Arch>() {
        for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(31), std::size_t(32), std::size_t(33),
                              std::size_t(64), std::size_t(95), std::size_t(40000)}) {
            for (int pat = 0; pat < 3; ++pat) {
                std::vector<std::uint8_t> a(n);
                std::vector<std::int8_t> b(n);
                for (std::size_t i = 0; i < n; ++i) {
                    a[i] = pat == 0 ? 255 : static_cast<std::uint8_t>(rng());
                    b[i] = pat == 0 ? std::int8_t(-128) : pat == 1 ? std::int8_t(127) : static_cast<std::int8_t>(rng());
                }
                for (std::uint8_t flip : {std::uint8_t(0), std::uint8_t(0x80)}) {
                    std::int64_t want = 0;
                    for (std::size_t i = 0; i < n; ++i) want += std::int64_t(std::uint8_t(a[i] ^ flip)) * b[i];
                    CAPTURE(n);
                    CAPTURE(pat);
                    CHECK(kernel::dot_u8s8<Arch, true>(a.data(), flip, b.data(), n) == want);
                    // narrow path: bytes <= 127
                    std::vector<std::uint8_t> a7(a);
                    for (auto& v : a7) v = static_cast<std::uint8_t>(((v ^ flip) & 0x7F) ^ flip);
                    std::int64_t want7 = 0;
                    for (std::size_t i = 0; i < n; ++i) want7 += std::int64_t(std::uint8_t(a7[i] ^ flip)) * b[i];
                    CHECK(kernel::dot_u8s8<Arch, false>(a7.data(), flip, b.data(), n) == want7);
                }
            }
        }
    });
}

namespace {
/// Random codes of every value (incl. MXINT's never-emitted -128) and random parameters.
template <class F, class A>
void check_int_group_dots(std::mt19937& rng) {
    for (const Shape s : kShapes) {
        for (std::size_t gs : {std::size_t(32), std::size_t(128), std::size_t(10), std::size_t(0)}) {
            if constexpr (F::is_mx) {
                if (gs != F::block) continue;
            }
            const GroupLayout L{1, s.cols, 1, gs == 0 ? s.cols : gs};
            const std::size_t ng = L.col_groups();
            std::vector<typename F::Params> params(ng);
            for (auto& p : params)
                if constexpr (F::kind == FormatKind::integer)
                    p.zero = F::symmetric ? F::symmetric_zero : int(rng() % 256) % (F::levels + 1);
            std::vector<std::uint8_t> wc(s.cols), xc(s.cols), packed(packed_bytes(s.cols, F::bits));
            for (auto& c : wc) c = static_cast<std::uint8_t>(rng());
            for (auto& c : xc) c = static_cast<std::uint8_t>(rng());
            ref::pack_bits(wc.data(), s.cols, F::bits, packed.data());
            std::vector<std::int64_t> want(ng);
            ref::int_group_dots<F, A>(packed.data(), L, params.data(), xc.data(), want.data());
            std::vector<std::int8_t> q(s.cols);
            kernel::activation_q<A>(xc.data(), s.cols, q.data());
            std::vector<std::int64_t> qs(ng, 0);
            for (std::size_t g = 0; g < ng; ++g)
                for (std::size_t i = L.group_begin(g); i < L.group_end(g); ++i) qs[g] += q[i];
            for_each_arch([&]<class Arch>() {
                std::vector<std::int64_t> got(ng, -1);
                std::vector<std::uint8_t> scratch(s.cols);
                kernel::int_group_dots<F, A, Arch>(packed.data(), L, params.data(), q.data(), qs.data(), scratch.data(),
                                                   got.data());
                CAPTURE(s.cols);
                CAPTURE(gs);
                CAPTURE(Arch::name());
                CHECK(got == want);
            });
        }
    }
}
}  // namespace

TEST_CASE("int_group_dots == integer reference (exact)") {
    std::mt19937 rng(15);
    check_int_group_dots<IntFormat<4, false>, IntFormat<8, true>>(rng);
    check_int_group_dots<IntFormat<4, true>, IntFormat<8, true>>(rng);
    check_int_group_dots<IntFormat<8, false>, IntFormat<8, true, IntRange::full>>(rng);
    check_int_group_dots<IntFormat<8, true>, IntFormat<8, true>>(rng);
    check_int_group_dots<MxInt<8, 32>, MxInt<8, 32>>(rng);
}

TEST_CASE_TEMPLATE("gemm with int8 activations == dequantize-then-multiply within the bound", F, IntFormat<4, false>,
                   IntFormat<4, true>, IntFormat<8, false>, IntFormat<8, true>, MxInt<8, 32>) {
    using A = std::conditional_t<F::is_mx, MxInt<8, 32>, IntFormat<8, true>>;
    std::mt19937 rng(16);
    for (const Shape s : kShapes) {
        const RowMatrixXf w = weights(rng, s.rows, s.cols);
        const RowMatrixXf x = activations(rng, 3, s.cols);
        const QuantizedMatrix<A> xq = [&] {
            if constexpr (A::is_mx) return quantize<A>(x, QuantOptions{}, PerGroup<A::block>{});
            else return quantize<A>(x, QuantOptions{}, PerToken{});
        }();
        const RowMatrixXf x_hat = dequantize(xq);
        for_each_granularity<F>([&](const auto& gran) {
            const QuantizedMatrix<F> q = quantize<F>(w, QuantOptions{}, gran);
            const RowMatrixXf w_hat = dequantize(q);
            for_each_arch([&]<class Arch>() {
                // fused path: the bound of kernel::int_dot_row, + 2 for the roundings of w^ and x^
                // to float in the dequantized matrices; otherwise that of detail::combine_int_dots.
                const double k = kernel::int_dot_row_fits<Arch>(q.layout()) ? double(int_dot_row_roundings(s.cols) + 2)
                                                                            : double(q.layout().col_groups() + 5);
                const RowMatrixXf y = gemm<F, A, Arch>(q, xq);
                for (Eigen::Index t = 0; t < x.rows(); ++t) {
                    const RowMatrixXf yt = y.row(t);
                    check_bound(w_hat, x_hat.row(t).data(), yt.data(), std::vector<double>(s.rows, k),
                                F::name() + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols) + " " +
                                    gname(gran) + " " + Arch::name());
                }
            });
        });
    }
}

namespace {
/// Integer weights and activations built code by code (not through quantize), with an exact
/// double oracle written from the formats' definitions:
///   IntFormat: w^ = scale_g * (c - zero_g), x^ = s_x * (c_x - 128)
///   MxInt<8>:  w^ = sext(c) * 2^(e_g - 6), same for x^ with its block exponent.
/// zero_mode: 0 random zero points, 1 all 0, 2 all at the top code (15 / 255). Activation
/// codes: token 0 random with every third code 0 (q = -128), token 1 all 0 (q = -128), token 2
/// all 255 (q = 127). Checks gemm<F, A, Arch> against the oracle within r * u * sum |w^ x^|
/// (r: the documented bound of the path taken) and that this bound is tight enough to see one
/// nibble off by one (in the element with the largest |w-scale * x^|: a 4-bit code off by one,
/// or the high nibble of an 8-bit code: 16 units).
template <class F, class A, class Arch>
void check_int_codes(std::mt19937& rng, std::size_t rows, std::size_t cols, std::size_t gs, int zero_mode,
                     bool expect_fused) {
    const GroupLayout L{rows, cols, 1, gs};
    QuantizedMatrix<F> w(L);
    std::vector<std::uint8_t> codes(cols);
    for (std::size_t r = 0; r < rows; ++r) {
        for (auto& c : codes) c = static_cast<std::uint8_t>(rng() & ((1u << F::bits) - 1));
        ref::pack_bits(codes.data(), cols, F::bits, w.row_data(r));
    }
    for (auto& p : w.params()) {
        if constexpr (F::is_mx) {
            p.scale_byte = static_cast<std::uint8_t>(E8M0::encode_exponent(int(rng() % 21) - 10));
        } else {
            p.scale = 0.001f + float(rng() % 1000) * 1e-5f;
            if constexpr (!F::symmetric)
                p.zero = zero_mode == 1 ? 0 : zero_mode == 2 ? F::levels : std::int32_t(rng() % (F::levels + 1));
        }
    }
    const std::size_t tokens = 3;
    const GroupLayout XL = [&] {
        if constexpr (A::is_mx) return GroupLayout{tokens, cols, 1, A::block};
        else return GroupLayout{tokens, cols, 1, cols};
    }();
    QuantizedMatrix<A> xq(XL);
    for (std::size_t t = 0; t < tokens; ++t) {
        for (std::size_t i = 0; i < cols; ++i)
            codes[i] = t == 1 ? 0 : t == 2 ? 255 : i % 3 == 0 ? 0 : static_cast<std::uint8_t>(rng());
        if constexpr (A::is_mx) {
            for (std::size_t i = 0; i < cols; ++i) codes[i] ^= 0x80;  // MxInt: two's complement, 0x80 = -128
        }
        ref::pack_bits(codes.data(), cols, 8, xq.row_data(t));
    }
    for (auto& p : xq.params()) {
        if constexpr (A::is_mx) p.scale_byte = static_cast<std::uint8_t>(E8M0::encode_exponent(int(rng() % 21) - 10));
        else p.scale = 0.01f + float(rng() % 100) * 1e-3f;
    }
    auto w_exact = [&](std::size_t r, std::size_t i) {
        const auto c = static_cast<std::int32_t>(ref::get_code(w.row_data(r), i, F::bits));
        const auto& p = w.row_params(r)[(i / gs)];
        if constexpr (F::is_mx) return std::ldexp(double(std::int8_t(c)), E8M0::exponent(p.scale_byte) - 6);
        else return double(p.scale) * double(c - p.zero);
    };
    auto x_exact = [&](std::size_t t, std::size_t i) {
        const auto c = static_cast<std::int32_t>(ref::get_code(xq.row_data(t), i, 8));
        if constexpr (A::is_mx)
            return std::ldexp(double(std::int8_t(c)), E8M0::exponent(xq.row_params(t)[i / A::block].scale_byte) - 6);
        else return double(xq.row_params(t)[0].scale) * double(c - 128);
    };
    REQUIRE(kernel::int_dot_row_fits<Arch>(L) == expect_fused);
    const double k = expect_fused ? double(int_dot_row_roundings(cols)) : double(L.col_groups() + 1 + 4);
    const RowMatrixXf y = gemm<F, A, Arch>(w, xq);
    const double nibble = F::bits == 4 ? 1.0 : 16.0;
    for (std::size_t t = 0; t < tokens; ++t)
        for (std::size_t r = 0; r < rows; ++r) {
            double ref = 0.0, mag = 0.0, step = 0.0;
            for (std::size_t i = 0; i < cols; ++i) {
                const double wx = w_exact(r, i) * x_exact(t, i);
                ref += wx;
                mag += std::fabs(wx);
                // one code off by one changes the sum by the weight's unit times |x^_i|
                double unit;
                if constexpr (F::is_mx)
                    unit = std::ldexp(1.0, E8M0::exponent(w.row_params(r)[(i / gs)].scale_byte) - 6);
                else unit = double(w.row_params(r)[(i / gs)].scale);
                step = std::max(step, unit * std::fabs(x_exact(t, i)));
            }
            const double bound = k * u * mag;
            CAPTURE(F::name());
            CAPTURE(Arch::name());
            CAPTURE(cols);
            CAPTURE(gs);
            CAPTURE(zero_mode);
            CAPTURE(t);
            CAPTURE(r);
            CHECK(std::fabs(double(y(Eigen::Index(t), Eigen::Index(r))) - ref) <= bound);
            CHECK(step * nibble > bound);  // the check above would catch a nibble off by one
        }
}

template <class Fn>
void for_each_int_dot_arch(Fn&& f) {
    f.template operator()<xsimd::default_arch>();
#if XSIMD_WITH_AVX2
    if constexpr (!std::is_same_v<xsimd::default_arch, xsimd::avx2>) f.template operator()<xsimd::avx2>();
#endif
}
}  // namespace

TEST_CASE_TEMPLATE(
    "gemm, integer activations, fused 32-blocks: groups 32/64/128, extreme zero points, q = -128, rows "
    "of 4096",
    F, IntFormat<4, false>, IntFormat<4, true>, IntFormat<8, false>, IntFormat<8, true>) {
    using A = IntFormat<8, true>;
    std::mt19937 rng(17);
    for_each_int_dot_arch([&]<class Arch>() {
        for (std::size_t gs : {std::size_t(32), std::size_t(64), std::size_t(128), std::size_t(4096)})
            for (int zm = 0; zm < (F::symmetric ? 1 : 3); ++zm)
                check_int_codes<F, A, Arch>(rng, 5, 4096, gs, zm, kernel::has_int_dot_row<Arch>);
        // a short last group (4096 = 3 * 1344 + 64)
        check_int_codes<F, A, Arch>(rng, 3, 4096, 1344, 0, kernel::has_int_dot_row<Arch>);
        // general path: ragged group, row length not a multiple of 32
        check_int_codes<F, A, Arch>(rng, 3, 4090, 10, 2, false);
        check_int_codes<F, A, Arch>(rng, 3, 4100, 32, 1, false);
    });
    check_int_codes<F, A, xsimd::sse2>(rng, 3, 4096, 32, 0, false);
}

TEST_CASE("gemm, MXINT8 x MXINT8, fused 32-blocks: codes -128..127, rows of 4096") {
    using M = MxInt<8, 32>;
    std::mt19937 rng(18);
    for_each_int_dot_arch([&]<class Arch>() {
        check_int_codes<M, M, Arch>(rng, 5, 4096, 32, 0, kernel::has_int_dot_row<Arch>);
        check_int_codes<M, M, Arch>(rng, 3, 4010, 32, 0, false);  // a short last block: general path
    });
    check_int_codes<M, M, xsimd::sse2>(rng, 3, 4096, 32, 0, false);
}

TEST_CASE("prepare_int_acts + int_dot_row == int_group_dots combined (4-bit reorder, lane sums)") {
    // Exact agreement is not expected (different float order); the integer part is checked by
    // feeding one group with scale 1 and s_x = 1: the result is then the exact integer I.
    using F = IntFormat<4, false>;
    using A = IntFormat<8, true>;
    std::mt19937 rng(19);
    const GroupLayout L{1, 32, 1, 32};
    for (int trial = 0; trial < 200; ++trial) {
        std::vector<std::uint8_t> wc(32), xc(32), packed(16);
        for (auto& c : wc) c = static_cast<std::uint8_t>(rng() & 15);
        for (auto& c : xc) c = static_cast<std::uint8_t>(rng());
        ref::pack_bits(wc.data(), 32, 4, packed.data());
        F::Params wp{1.0f, std::int32_t(rng() % 16)};
        A::Params xp{1.0f, 128};
        std::int64_t want = 0;
        for (std::size_t i = 0; i < 32; ++i) want += std::int64_t(wc[i] - wp.zero) * (std::int64_t(xc[i]) - 128);
        std::vector<std::int8_t> q(32);
        std::vector<std::int32_t> lanes(8);
        kernel::prepare_int_acts<F, A>(xc.data(), 32, q.data(), lanes.data());
        for_each_int_dot_arch([&]<class Arch>() {
            if constexpr (kernel::has_int_dot_row<Arch>) {
                CAPTURE(trial);
                CHECK(kernel::int_dot_row<F, A, Arch>(packed.data(), L, &wp, q.data(), lanes.data(), &xp) ==
                      float(want));
            }
        });
    }
}

}  // TEST_SUITE("gemv")
