// SIMD kernels (kernel/kernels.hpp) == scalar reference (kernel/reference.hpp), bit for bit,
// for every kernel, bit width 1-8, length (0 .. 3W+1 and long buffers at odd offsets), format
// and rounding, at several SIMD widths (default arch, SSE2, AVX2).
#include <ptq/kernel/kernels.hpp>  // first: see ptq/kernel/xsimd.hpp

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
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
#include <ptq/kernel/reference.hpp>
#include <ptq/quantize.hpp>

namespace {

using namespace ptq;

// The formats checked at every width: one or two per format family and storage width.
#define PTQ_REPRESENTATIVE_FORMATS                                                                                  \
    IntFormat<1, false>, IntFormat<4, false>, IntFormat<3, true>, IntFormat<8, true, IntRange::full>, MxInt<2, 32>, \
        MxInt<8, 16>, Fp8<4, 3>, Fp6<2, 3>, Fp4, MxFp<5, 2, 32>, MxFp<2, 1, 32>, IntMinFormat<4>
template <class F, class... Fs>
constexpr bool one_of = (std::is_same_v<F, Fs> || ...);
template <class F>
constexpr bool representative = one_of<F, PTQ_REPRESENTATIVE_FORMATS>;

// Every kernel is checked at the machine's widest width (default_arch) for every format, and
// at SSE2's 4 lanes for the representative formats (F = void: format-independent kernels), so
// tails and the generic code run at two widths on every x86 machine. The AVX2 pass (8 lanes)
// adds a third width on AVX-512 machines; it is opt-in (-DPTQ_TEST_ALL_ARCHS) because it adds
// minutes of compile time to the 2-core CI.
template <class F = void, class Fn>
void for_each_arch(Fn&& f) {
    f.template operator()<xsimd::default_arch>();
    if constexpr (std::is_void_v<F> || representative<F>) f.template operator()<xsimd::sse2>();
#if defined(PTQ_TEST_ALL_ARCHS) && XSIMD_WITH_AVX2 && XSIMD_WITH_AVX512F
    f.template operator()<xsimd::avx2>();
#endif
}

std::uint32_t bits_of(float f) { return std::bit_cast<std::uint32_t>(f); }

/// Random floats with a sprinkling of special values (when `specials`): +-0, denormals,
/// huge, FLT_MAX, and (when `non_finite`) NaN / +-Inf.
std::vector<float> random_floats(std::mt19937& rng, std::size_t n, float scale, bool specials, bool non_finite) {
    std::normal_distribution<float> nd(0.0f, scale);
    std::uniform_int_distribution<int> pick(0, 99);
    std::vector<float> v(n);
    for (auto& x : v) {
        x = nd(rng);
        if (!specials) continue;
        const int k = pick(rng);
        if (k == 0) x = 0.0f;
        else if (k == 1) x = -0.0f;
        else if (k == 2) x = 1e-40f * (pick(rng) - 50);  // denormals
        else if (k == 3) x = (pick(rng) < 50 ? -1.0f : 1.0f) * 1e30f;
        else if (k == 4) x = std::numeric_limits<float>::max();
        else if (k == 5) x = std::round(x * 4.0f) / 4.0f + 0.125f;  // ties at scale 1/4
        else if (k == 6) x = std::round(x) + 0.5f;                  // ties at scale 1
        else if (k == 7 && non_finite) x = std::numeric_limits<float>::quiet_NaN();
        else if (k == 8 && non_finite) x = (pick(rng) < 50 ? -1.0f : 1.0f) * std::numeric_limits<float>::infinity();
    }
    return v;
}

template <class F>
bool params_bits_equal(const typename F::Params& a, const typename F::Params& b) {
    return std::memcmp(&a, &b, sizeof(a)) == 0;
}

/// Parameters for a group of x: the format's own (from the reference range), or random ones
/// (exercises clamping, zero points and every scale byte incl. 255 = NaN).
template <class F>
typename F::Params some_params(std::mt19937& rng, const float* x, std::size_t n, int which) {
    QuantOptions o;
    o.widen_to_zero = (which % 2) == 0;
    if (which < 2) return F::make_params(ref::range(x, n), o);
    typename F::Params p = F::make_params(ref::range(x, n), o);
    std::uniform_int_distribution<int> byte(0, 255);
    if constexpr (F::kind == FormatKind::integer) {
        const float s[] = {1.0f, 0.25f, 0.5f, 3.0f, 1e-3f};
        p.scale = s[byte(rng) % 5];
        if constexpr (!F::symmetric) p.zero = byte(rng) % (F::levels + 1);
        if (which == 3) p = F::nan_params();
    } else if constexpr (F::kind == FormatKind::integer_min) {
        // scales of at most 24 - b significant bits, as make_params gives (the exact product)
        const float s[] = {1.0f, 0.25f, 0.5f, 3.0f, 0x1.0Cp-10f};
        const float m[] = {0.0f, -1.0f, 2.5f, -1e30f, -0.375f};
        p.scale = s[byte(rng) % 5];
        p.min = m[byte(rng) % 5];
        if (which == 3) p = F::nan_params();
    } else if constexpr (F::kind == FormatKind::minifloat) {
        const float s[] = {1.0f, 0.25f, 1e-3f, 7.0f, 1e-30f};
        p.scale = s[byte(rng) % 5];
        if (which == 3) p = F::nan_params();
    } else {
        p.scale_byte = static_cast<std::uint8_t>(which == 3 ? 255 : 100 + byte(rng) % 60);
        if (byte(rng) < 8) p.scale_byte = static_cast<std::uint8_t>(byte(rng));
    }
    return p;
}

}  // namespace

// The sanitizer build (PTQ_TEST_QUICK, see tests/CMakeLists.txt) checks only the representative
// formats: its purpose is memory and UB errors, and the full list costs minutes of
// instrumented compile time.
#ifdef PTQ_TEST_QUICK
#define PTQ_ALL_FORMATS PTQ_REPRESENTATIVE_FORMATS
#else
#define PTQ_ALL_FORMATS                                                                                                \
    IntFormat<1, false>, IntFormat<2, false>, IntFormat<3, false>, IntFormat<4, false>, IntFormat<5, false>,           \
        IntFormat<6, false>, IntFormat<7, false>, IntFormat<8, false>, IntFormat<2, true>, IntFormat<3, true>,         \
        IntFormat<4, true>, IntFormat<5, true>, IntFormat<6, true>, IntFormat<7, true>, IntFormat<8, true>,            \
        IntFormat<3, true, IntRange::full>, IntFormat<4, true, IntRange::full>, IntFormat<8, true, IntRange::full>,    \
        MxInt<2, 32>, MxInt<3, 32>, MxInt<4, 32>, MxInt<5, 32>, MxInt<6, 32>, MxInt<7, 32>, MxInt<8, 32>,              \
        MxInt<8, 16>, Fp8<4, 3>, Fp8<5, 2>, Fp6<3, 2>, Fp6<2, 3>, Fp4, MxFp<4, 3, 32>, MxFp<5, 2, 32>, MxFp<3, 2, 32>, \
        MxFp<2, 3, 32>, MxFp<2, 1, 32>, MxFp<4, 3, 16>, IntMinFormat<1>, IntMinFormat<4>, IntMinFormat<8>
#endif

TEST_SUITE("kernel") {

TEST_CASE("range == reference (all lengths, specials, zero signs)") {
    std::mt19937 rng(1);
    for_each_arch([&]<class Arch>() {
        constexpr std::size_t W = xsimd::batch<float, Arch>::size;
        for (int trial = 0; trial < 6; ++trial) {
            const bool specials = trial >= 2, non_finite = trial >= 4;
            auto buf = random_floats(rng, 4096 + 64, trial == 1 ? 1e-38f : 1.0f, specials, non_finite);
            std::vector<std::size_t> lens;
            for (std::size_t n = 0; n <= 3 * W + 1; ++n) lens.push_back(n);
            lens.insert(lens.end(), {32, 64, 100, 1000, 4096});
            for (std::size_t n : lens) {
                const std::size_t off = rng() % 64;
                const float* x = buf.data() + off;
                const RangeStats a = kernel::range<Arch>(x, n), b = ref::range(x, n);
                CHECK(bits_of(a.lo) == bits_of(b.lo));
                CHECK(bits_of(a.hi) == bits_of(b.hi));
                CHECK(a.non_finite == b.non_finite);
            }
        }
        // zero extrema with both signs in every order
        for (std::size_t n : {W, 2 * W + 3, 3 * W + 1}) {
            for (int pat = 0; pat < 8; ++pat) {
                std::vector<float> x(n, (pat & 4) ? 1.0f : -1.0f);
                x[pat % n] = -0.0f;
                x[(pat * 7 + 3) % n] = 0.0f;
                if (pat & 1) std::swap(x[pat % n], x[(pat * 7 + 3) % n]);
                if (pat & 2) std::fill(x.begin(), x.end(), (pat & 1) ? 0.0f : -0.0f), x[n / 2] = -x[n / 2];
                const RangeStats a = kernel::range<Arch>(x.data(), n), b = ref::range(x.data(), n);
                CHECK(bits_of(a.lo) == bits_of(b.lo));
                CHECK(bits_of(a.hi) == bits_of(b.hi));
            }
        }
    });
}

TEST_CASE("pack_bits / unpack_bits == reference (bits 1-8, all lengths, odd offsets)") {
    std::mt19937 rng(2);
    for_each_arch([&]<class Arch>() {
        constexpr std::size_t W = xsimd::batch<float, Arch>::size;
        std::vector<std::size_t> lens;
        for (std::size_t n = 0; n <= 3 * W + 1; ++n) lens.push_back(n);
        lens.insert(lens.end(), {8 * W - 1, 8 * W, 8 * W + 1, 32 * W - 1, 32 * W, 32 * W + 5, 64 * W + 17, 3000});
        for (int bits = 1; bits <= 8; ++bits) {
            CAPTURE(bits);
            for (std::size_t n : lens) {
                CAPTURE(n);
                std::vector<std::uint8_t> codes(n + 16);
                for (auto& c : codes) c = static_cast<std::uint8_t>(rng());  // high bits must be ignored
                const std::size_t off = rng() % 16;
                const std::size_t nb = packed_bytes(n, bits);
                std::vector<std::uint8_t> a(nb + 8, 0xA5), b(nb + 8, 0xA5);
                kernel::pack_bits<Arch>(codes.data() + off, n, bits, a.data());
                ref::pack_bits(codes.data() + off, n, bits, b.data());
                CHECK(a == b);  // incl. the guard bytes past the end
                // unpack any sub-range [first, first + m)
                for (int t = 0; t < 3; ++t) {
                    const std::size_t first = n ? rng() % (n + 1) : 0;
                    const std::size_t m = n - first ? rng() % (n - first + 1) : 0;
                    const std::size_t mm = (t == 0) ? n - first : m;
                    std::vector<std::uint8_t> packed(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(nb));
                    std::vector<std::uint8_t> ua(mm + 4, 0x5A), ub(mm + 4, 0x5A);
                    kernel::unpack_bits<Arch>(packed.data(), first, mm, bits, ua.data());
                    ref::unpack_bits(packed.data(), first, mm, bits, ub.data());
                    CHECK(ua == ub);
                }
            }
        }
    });
}

TEST_CASE_TEMPLATE("quantize_group == reference", F, PTQ_ALL_FORMATS) {
    std::mt19937 rng(3);
    for_each_arch<F>([&]<class Arch>() {
        constexpr std::size_t W = xsimd::batch<float, Arch>::size;
        for (int trial = 0; trial < 4; ++trial) {
            const float scale = trial == 1 ? 1e-3f : (trial == 2 ? 300.0f : 2.0f);
            auto buf = random_floats(rng, 2048 + 32, scale, trial >= 2, trial == 3);
            std::vector<std::size_t> lens;
            for (std::size_t n = 0; n <= 3 * W + 1; ++n) lens.push_back(n);
            lens.insert(lens.end(), {32, 100, 2048});
            for (std::size_t n : lens) {
                const float* x = buf.data() + rng() % 32;
                for (int which = 0; which < 4; ++which) {
                    const auto p = some_params<F>(rng, x, n, which);
                    for (Rounding r : {Rounding::half_even, Rounding::half_away}) {
                        std::vector<std::uint8_t> a(n + 4, 0xEE), b(n + 4, 0xEE);
                        kernel::quantize_group<F, Arch>(x, n, p, r, a.data());
                        ref::quantize_group<F>(x, n, p, r, b.data());
                        CAPTURE(n);
                        CAPTURE(which);
                        CHECK(a == b);
                    }
                }
            }
        }
    });
}

TEST_CASE_TEMPLATE("quantize: exact ties and specials", F, PTQ_ALL_FORMATS) {
    // Values at exact ties of the grid (scale 1, 1/4, power-of-two MX scales) and specials.
    std::vector<float> x;
    for (int k = -300; k <= 300; ++k) x.push_back(0.125f * static_cast<float>(k));
    for (float s : {0.0f,
                    -0.0f,
                    1e-40f,
                    -1e-40f,
                    1e-45f,
                    1e30f,
                    -1e30f,
                    448.0f,
                    464.0f,
                    57344.0f,
                    61440.0f,
                    7.75f,
                    28.0f,
                    30.0f,
                    6.0f,
                    5.0f,
                    0.25f,
                    0.75f,
                    std::numeric_limits<float>::max(),
                    std::numeric_limits<float>::denorm_min(),
                    std::numeric_limits<float>::min()})
        x.push_back(s), x.push_back(-s);
    for (int e = -140; e < 128; ++e) x.push_back(std::ldexp(1.5f, e)), x.push_back(std::ldexp(-1.25f, e));
    std::mt19937 rng(4);
    for_each_arch<F>([&]<class Arch>() {
        for (int which = 0; which < 6; ++which) {
            typename F::Params p{};
            if constexpr (F::kind == FormatKind::integer || F::kind == FormatKind::minifloat ||
                          F::kind == FormatKind::integer_min) {
                p = F::make_params(ref::range(x.data(), x.size()), {});
                if (which == 1) p.scale = 1.0f;
                if (which == 2) p.scale = 0.25f;
                if (which == 3) p.scale = 1e-38f;
            } else {
                const std::uint8_t bytes[] = {127, 120, 130, 0, 254, 127};
                p.scale_byte = bytes[which];
            }
            for (Rounding r : {Rounding::half_even, Rounding::half_away}) {
                std::vector<std::uint8_t> a(x.size()), b(x.size());
                kernel::quantize_group<F, Arch>(x.data(), x.size(), p, r, a.data());
                ref::quantize_group<F>(x.data(), x.size(), p, r, b.data());
                CHECK(a == b);
            }
        }
        (void)rng;
    });
}

TEST_CASE_TEMPLATE("dequantize_row == reference (groups, ragged, unaligned groups)", F, PTQ_ALL_FORMATS) {
    std::mt19937 rng(5);
    for_each_arch<F>([&]<class Arch>() {
        constexpr std::size_t W = xsimd::batch<float, Arch>::size;
        std::vector<std::size_t> lens;
        for (std::size_t n = 0; n <= 3 * W + 1; ++n) lens.push_back(n);
        lens.insert(lens.end(), {32 * W - 3, 32 * W, 32 * W + 7, 96 * W + 33, 4096});
        for (std::size_t n : lens) {
            // group sizes: MX formats use their block (plus odd ones to exercise the layout);
            // runtime group 10 at odd bits starts groups at non-byte-aligned bits.
            const std::size_t groups[] = {32, 10, W, 7, 1, 64, 0 /*per-channel*/, 999 /*per-tensor*/};
            for (std::size_t gs : groups) {
                GroupLayout L;
                if (gs == 999) L = GroupLayout{1, n, 1, n};
                else L = GroupLayout{1, n, 1, gs == 0 ? n : gs};
                if (gs == 0 && n == 0) continue;
                const std::size_t ng = L.col_groups();
                std::vector<typename F::Params> params(ng ? ng : 1);
                auto xs = random_floats(rng, n + 1, 3.0f, true, false);
                for (std::size_t g = 0; g < ng; ++g) {
                    const std::size_t b = L.group_begin(g), e = L.group_end(g);
                    params[g] = some_params<F>(rng, xs.data() + b, e - b, static_cast<int>(rng() % 4));
                }
                std::vector<std::uint8_t> codes(n + 1);
                for (auto& c : codes) c = static_cast<std::uint8_t>(rng());  // every code, incl. NaN/Inf codes
                std::vector<std::uint8_t> packed(packed_bytes(n, F::bits));
                ref::pack_bits(codes.data(), n, F::bits, packed.data());
                std::vector<float> a(n + 4, 1234.0f), b(n + 4, 1234.0f);
                kernel::dequantize_row<F, Arch>(packed.data(), L, params.data(), a.data());
                ref::dequantize_row<F>(packed.data(), L, params.data(), b.data());
                bool same = true;
                for (std::size_t i = 0; i < n + 4; ++i) same = same && bits_of(a[i]) == bits_of(b[i]);
                CAPTURE(n);
                CAPTURE(gs);
                CHECK(same);
            }
        }
    });
}

TEST_CASE_TEMPLATE("params from kernel::range == params from ref::range", F, PTQ_ALL_FORMATS) {
    std::mt19937 rng(6);
    for_each_arch<F>([&]<class Arch>() {
        for (int trial = 0; trial < 50; ++trial) {
            auto x = random_floats(rng, 1 + rng() % 200, 1.0f, true, trial % 5 == 0);
            if (trial % 3 == 0)
                for (auto& v : x) v = std::fabs(v) * ((trial % 2) ? 1.0f : -1.0f);  // zero at an extreme
            if (trial % 7 == 0)
                for (std::size_t i = 0; i < x.size(); ++i) x[i] = (i % 2) ? 0.0f : -0.0f;
            for (bool widen : {true, false}) {
                QuantOptions o;
                o.widen_to_zero = widen;
                const auto a = F::make_params(kernel::range<Arch>(x.data(), x.size()), o);
                const auto b = F::make_params(ref::range(x.data(), x.size()), o);
                CHECK(params_bits_equal<F>(a, b));
            }
        }
    });
}

namespace rtn_row_check {
// Rows built to reach every branch of kernel::rtn_row's batch parameters: random groups, and
// groups that are constant, all zero, one-signed (a zero end after widening), subnormal, huge
// (scales near the finite_scale cap), with powers of two at the ends (MX exponent steps),
// exact ties, a narrow range far from 0 (scaled values past 2^31), and (when `non_finite`) a
// NaN or Inf in a random row.
std::vector<float> rows_with_special_groups(std::mt19937& rng, std::size_t rows, std::size_t cols, bool non_finite) {
    std::vector<float> w = random_floats(rng, rows * cols, 0.05f, false, false);
    std::uniform_int_distribution<int> pick(0, 16);
    for (std::size_t b = 0; b + 32 <= w.size(); b += 32) {
        float* g = w.data() + b;
        switch (pick(rng)) {
            case 0: std::fill(g, g + 32, 0.375f); break;
            case 1: std::fill(g, g + 32, (b / 32) % 2 ? 0.0f : -0.0f); break;
            case 2: std::fill(g, g + 32, -2.5f); break;
            case 3:
                for (int i = 0; i < 32; ++i) g[i] = std::fabs(g[i]);
                break;
            case 4:
                for (int i = 0; i < 32; ++i) g[i] = -std::fabs(g[i]);
                break;
            case 5:
                for (int i = 0; i < 32; ++i) g[i] = 1e-40f * float(i % 7 - 3);
                break;
            case 6:
                g[3] = std::numeric_limits<float>::max();
                g[9] = -std::numeric_limits<float>::max();
                break;
            case 7: g[5] = 0x1p127f; break;
            case 8:
                g[1] = 4.0f;
                g[2] = -0x1.fffffep1f;
                break;
            case 9:
                for (int i = 0; i < 32; ++i) g[i] = float(i % 16) * 0.25f - 2.0f + ((i % 3) ? 0.125f : 0.0f);
                break;
            case 10: g[0] = 1e30f; break;
            case 11: g[7] = 1e-39f; break;
            case 12:  // a range of 1 at 2^24: |x / scale| >= 2^31 for 8 bits without widening
                for (int i = 0; i < 32; ++i) g[i] = ((b / 32) % 2 ? -1.0f : 1.0f) * (16777215.0f - float(i % 2));
                break;
            default: break;
        }
    }
    if (non_finite) {
        const std::size_t r = rng() % rows, c = rng() % cols;
        w[r * cols + c] =
            (rng() % 2) ? std::numeric_limits<float>::quiet_NaN() : -std::numeric_limits<float>::infinity();
    }
    return w;
}

/// The scalar oracle, group by group: params = make_params(ref::range), codes =
/// ref::quantize_group, rows packed by ref::pack_bits; compared with Rtn at architecture Arch.
template <class F, class G, class Arch>
void check_against_reference(const std::vector<float>& w, std::size_t rows, std::size_t cols, std::size_t gc,
                             const QuantOptions& o) {
    const Eigen::Map<const RowMatrixXf> m(w.data(), Eigen::Index(rows), Eigen::Index(cols));
    const QuantizedMatrix<F> q = ptq::quantize<F, G, Arch>(m, o, G{});
    bool params_equal = true, codes_equal = true;
    std::vector<std::uint8_t> codes(cols), packed(packed_bytes(cols, F::bits));
    for (std::size_t r = 0; r < rows; ++r) {
        const float* x = w.data() + r * cols;
        for (std::size_t g = 0, b = 0; b < cols; ++g, b += gc) {
            const std::size_t n = std::min(gc, cols - b);
            const auto p = F::make_params(ref::range(x + b, n), o);
            params_equal = params_equal && params_bits_equal<F>(p, q.row_params(r)[g]);
            ref::quantize_group<F>(x + b, n, p, o.rounding, codes.data() + b);
        }
        ref::pack_bits(codes.data(), cols, F::bits, packed.data());
        codes_equal = codes_equal && std::memcmp(packed.data(), q.row_data(r), packed.size()) == 0;
    }
    CHECK(params_equal);
    CHECK(codes_equal);
}
}  // namespace rtn_row_check

// kernel::rtn_row (all groups of a row at once, used by Rtn / quantize for min-max ranges of
// one-row groups) against the scalar per-group reference, at every width, for the formats it
// takes and for those it hands back (IntMinFormat, fp16 scales, block 16, ragged rows).
TEST_CASE_TEMPLATE("Rtn (rows at once) == per-group reference", F, IntFormat<2, false>, IntFormat<3, false>,
                   IntFormat<4, false>, IntFormat<8, false>, IntFormat<4, true>, IntFormat<8, true, IntRange::full>,
                   MxInt<4, 32>, MxInt<8, 32>, MxInt<8, 16>, Fp8<4, 3>, Fp4, MxFp<2, 1, 32>, MxFp<4, 3, 32>,
                   IntMinFormat<4>) {
    std::mt19937 rng(21);
    auto at = [&]<class Arch>() {
        for (int trial = 0; trial < 24; ++trial) {
            QuantOptions o;
            o.widen_to_zero = trial % 2 == 0;
            o.rounding = (trial / 2) % 2 ? Rounding::half_away : Rounding::half_even;
            o.non_finite = NonFinite::propagate;
            if (trial % 8 == 7) o.scale_storage = ScaleStorage::f16;
            const std::size_t cols = trial % 5 == 4 ? 100 : 32 * std::size_t(1 + trial % 9) * 4;  // 100: ragged
            const std::size_t rows = 3;
            const auto w = rtn_row_check::rows_with_special_groups(rng, rows, cols, trial % 3 == 2);
            CAPTURE(trial);
            CAPTURE(cols);
            if constexpr (F::is_mx) {
                rtn_row_check::check_against_reference<F, PerGroup<F::block>, Arch>(w, rows, cols, F::block, o);
            } else {
                rtn_row_check::check_against_reference<F, PerGroup<32>, Arch>(w, rows, cols, 32, o);
                rtn_row_check::check_against_reference<F, PerGroup<64>, Arch>(w, rows, cols, 64, o);
                rtn_row_check::check_against_reference<F, PerChannel, Arch>(w, rows, cols, cols, o);
            }
        }
    };
    at.template operator()<xsimd::default_arch>();
    at.template operator()<xsimd::sse2>();
#if XSIMD_WITH_AVX2
    at.template operator()<xsimd::avx2>();
#endif
}

#if XSIMD_WITH_AVX2
// Paths that only the AVX / AVX2 overloads take (the folded min/max reduction of range, the
// table decode of E2M1), checked here even when the opt-in AVX2 pass of for_each_arch is off.
TEST_CASE("AVX2 overloads == reference: range reduction, E2M1 table decode") {
    using A = xsimd::avx2;
    constexpr std::size_t W = xsimd::batch<float, A>::size;
    std::mt19937 rng(12);
    const auto buf = random_floats(rng, 4096 + 64, 1.0f, true, true);
    for (std::size_t n : {W, W + 1, 2 * W, 4 * W - 1, std::size_t(32), std::size_t(4096)}) {
        const float* x = buf.data() + rng() % 64;
        const RangeStats a = kernel::range<A>(x, n), b = ref::range(x, n);
        CHECK(bits_of(a.lo) == bits_of(b.lo));
        CHECK(bits_of(a.hi) == bits_of(b.hi));
        CHECK(a.non_finite == b.non_finite);
    }
    // every E2M1 code, at AVX2 and the default width
    auto all_codes = [&]<class Arch>() {
        using U = xsimd::batch<std::uint32_t, Arch>;
        for (std::uint32_t c0 = 0; c0 < 16; c0 += U::size) {
            alignas(64) std::uint32_t c[U::size];
            alignas(64) float v[U::size];
            for (std::size_t k = 0; k < U::size; ++k) c[k] = (c0 + k) % 16;
            kernel::detail::decode_minifloat<Fp4, Arch>(U::load_aligned(c)).store_aligned(v);
            for (std::size_t k = 0; k < U::size; ++k)
                CHECK(bits_of(v[k]) == bits_of(Fp4::decode(static_cast<std::uint8_t>(c[k]))));
        }
    };
    all_codes.template operator()<A>();
    all_codes.template operator()<xsimd::default_arch>();
    for (std::size_t n : {std::size_t(5), std::size_t(32), std::size_t(100), std::size_t(4096)}) {
        const GroupLayout L{1, n, 1, 32};
        std::vector<MxFp4::Params> params(L.col_groups());
        for (auto& p : params) p.scale_byte = static_cast<std::uint8_t>(rng() % 256);  // incl. 255 = NaN
        std::vector<std::uint8_t> codes(n), packed(packed_bytes(n, 4));
        for (auto& c : codes) c = static_cast<std::uint8_t>(rng());
        ref::pack_bits(codes.data(), n, 4, packed.data());
        std::vector<float> a(n), b(n);
        kernel::dequantize_row<MxFp4, A>(packed.data(), L, params.data(), a.data());
        ref::dequantize_row<MxFp4>(packed.data(), L, params.data(), b.data());
        bool same = true;
        for (std::size_t i = 0; i < n; ++i) same = same && bits_of(a[i]) == bits_of(b[i]);
        CAPTURE(n);
        CHECK(same);
    }
}

// E2M1 (Fp4, MXFP4 elements) has its own encoder (exact power-of-two scaling of |y|, one
// rounding): against the scalar Minifloat<2, 1>::encode at AVX2 and the default width, both
// roundings, on every midpoint of the grid and its neighbours (ties), the saturation range
// (6 .. 8, huge, FLT_MAX, +-Inf), NaN of both signs, zeros and denormals, and a sweep of float
// bit patterns; then through quantize_group on a ragged length (tail through the scalar code).
TEST_CASE("E2M1 encode == Minifloat<2, 1>::encode: ties, saturation, NaN / Inf, ragged tails") {
    std::vector<float> x;
    const float inf = std::numeric_limits<float>::infinity();
    for (float m : {0.0f,
                    0.25f,
                    0.5f,
                    0.75f,
                    1.0f,
                    1.25f,
                    1.5f,
                    1.75f,
                    2.0f,
                    2.5f,
                    3.0f,
                    3.5f,
                    4.0f,
                    5.0f,
                    6.0f,
                    7.0f,
                    8.0f,
                    1e30f,
                    std::numeric_limits<float>::max(),
                    std::numeric_limits<float>::min(),
                    std::numeric_limits<float>::denorm_min()}) {
        float up = m, down = m;
        for (int k = 0; k < 4; ++k) {
            for (float v : {up, down}) x.push_back(v), x.push_back(-v);
            up = std::nextafter(up, inf);
            down = std::nextafter(down, -inf);
        }
    }
    for (float v : {inf, -inf, std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN()})
        x.push_back(v);
    for (std::uint64_t b = 0; b < (1ull << 32); b += 65521) x.push_back(std::bit_cast<float>(std::uint32_t(b)));
    x.push_back(0.75f);  // ragged: x.size() % 8 != 0
    REQUIRE(x.size() % 8 != 0);
    auto at = [&]<class Arch>() {
        constexpr std::size_t W = xsimd::batch<float, Arch>::size;
        for (Rounding r : {Rounding::half_even, Rounding::half_away}) {
            std::size_t bad = 0;
            for (std::size_t i = 0; i + W <= x.size(); i += W) {
                alignas(64) std::uint32_t c[W];
                const auto y = xsimd::batch<float, Arch>::load_unaligned(x.data() + i);
                (r == Rounding::half_even ? kernel::detail::encode_element<Fp4, Rounding::half_even, Arch>(y)
                                          : kernel::detail::encode_element<Fp4, Rounding::half_away, Arch>(y))
                    .store_aligned(c);
                for (std::size_t k = 0; k < W; ++k)
                    if (c[k] != Fp4::encode(x[i + k], r, Overflow::saturate)) ++bad;
            }
            CHECK(bad == 0);
            const MxFp4::Params unit{127};  // scale 2^0
            std::vector<std::uint8_t> a(x.size()), b(x.size());
            kernel::quantize_group<MxFp4, Arch>(x.data(), x.size(), unit, r, a.data());
            ref::quantize_group<MxFp4>(x.data(), x.size(), unit, r, b.data());
            CHECK(a == b);
        }
    };
    at.template operator()<xsimd::avx2>();
    at.template operator()<xsimd::default_arch>();
}
#endif

}  // TEST_SUITE("kernel")
