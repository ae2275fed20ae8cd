#pragma once
// Building blocks of the SIMD kernels (kernel/kernels.hpp), written over xsimd::batch<T, A>.
//
// Everything here is generic over the architecture A. Where xsimd 8.1.0 lacks a fast
// generic operation (variable 32-bit shifts on AVX-512, narrowing 32 -> 8 bit stores), the
// primitive is an overload set dispatched like xsimd's own kernels: a `requires_arch<generic>`
// version that is always correct, and `requires_arch<avx512f>` / `requires_arch<avx2>`
// overloads picked by overload resolution on the architecture tag (derived-to-base).
// No function body contains an #if on the instruction set.
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#include <ptq/kernel/xsimd.hpp>

#include <ptq/format/options.hpp>
#include <ptq/format/rounding.hpp>

/// Forces inlining of the small per-batch pieces of the kernels (GCC otherwise keeps the
/// per-batch lambdas out of line and passes every batch through memory).
#if defined(__GNUC__) || defined(__clang__)
#define PTQ_ALWAYS_INLINE __attribute__((always_inline))
#else
#define PTQ_ALWAYS_INLINE
#endif

namespace ptq::kernel::detail {

static_assert(std::endian::native == std::endian::little,
              "ptq kernels read the packed little-endian bit stream as 32/64-bit words");

template <class A>
using fbatch = xsimd::batch<float, A>;
template <class A>
using ubatch = xsimd::batch<std::uint32_t, A>;
template <class A>
using ibatch = xsimd::batch<std::int32_t, A>;
template <class A>
using u64batch = xsimd::batch<std::uint64_t, A>;

template <class A>
using requires_arch = xsimd::kernel::requires_arch<A>;

// ---- variable shifts (xsimd 8.1.0 only has them natively for AVX2) --------------------------
// Shift counts must be < 32 (the generic path shifts lane by lane in C++).
template <class A>
ubatch<A> srlv(const ubatch<A>& x, const ubatch<A>& s, requires_arch<xsimd::generic>) noexcept {
    return x >> s;
}
template <class A>
ubatch<A> sllv(const ubatch<A>& x, const ubatch<A>& s, requires_arch<xsimd::generic>) noexcept {
    return x << s;
}
#if XSIMD_WITH_AVX512F
template <class A>
ubatch<A> srlv(const ubatch<A>& x, const ubatch<A>& s, requires_arch<xsimd::avx512f>) noexcept {
    return _mm512_srlv_epi32(x, s);
}
template <class A>
ubatch<A> sllv(const ubatch<A>& x, const ubatch<A>& s, requires_arch<xsimd::avx512f>) noexcept {
    return _mm512_sllv_epi32(x, s);
}
#endif
template <class A>
ubatch<A> shift_right(const ubatch<A>& x, const ubatch<A>& s) noexcept {
    return srlv<A>(x, s, A{});
}
template <class A>
ubatch<A> shift_left(const ubatch<A>& x, const ubatch<A>& s) noexcept {
    return sllv<A>(x, s, A{});
}

// ---- narrowing store: W lanes of uint32 (each < 256) -> W bytes ----------------------------
template <class A>
void store_u8(const ubatch<A>& v, std::uint8_t* out, requires_arch<xsimd::generic>) noexcept {
    alignas(64) std::array<std::uint32_t, ubatch<A>::size> t;
    v.store_aligned(t.data());
    for (std::size_t i = 0; i < t.size(); ++i) out[i] = static_cast<std::uint8_t>(t[i]);
}
#if XSIMD_WITH_AVX512F
template <class A>
void store_u8(const ubatch<A>& v, std::uint8_t* out, requires_arch<xsimd::avx512f>) noexcept {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(v));  // vpmovdb
}
#endif
#if XSIMD_WITH_AVX2
template <class A>
void store_u8(const ubatch<A>& v, std::uint8_t* out, requires_arch<xsimd::avx2>) noexcept {
    // byte 0 of each dword, per 128-bit half, then the two 4-byte results.
    const __m256i idx = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,  //
                                         0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i b = _mm256_shuffle_epi8(v, idx);
    const std::int32_t lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(b));
    const std::int32_t hi = _mm_cvtsi128_si32(_mm256_extracti128_si256(b, 1));
    std::memcpy(out, &lo, 4);
    std::memcpy(out + 4, &hi, 4);
}
#endif
template <class A>
void store_bytes(const ubatch<A>& v, std::uint8_t* out) noexcept {
    store_u8<A>(v, out, A{});
}

// ---- rounding --------------------------------------------------------------------------------
/// Rounds to an integral float: half_even = IEEE roundTiesToEven (xsimd::nearbyint, an
/// explicit round-to-nearest-even instruction on SSE4.1+/AVX/AVX-512; default FP environment
/// on SSE2), half_away = std::round semantics (xsimd::round).
template <Rounding R, class A>
fbatch<A> round_integral(const fbatch<A>& v) noexcept {
    if constexpr (R == Rounding::half_even) return xsimd::nearbyint(v);
    else return xsimd::round(v);
}

/// round_R(v) as int32 where |round_R(v)| < 2^31, and INT_MIN (x86's "integer indefinite")
/// for NaN, +-Inf and larger magnitudes. half_even: cvtps2dq, which rounds in the current
/// rounding mode, as std::nearbyint does (round-to-nearest-even by default); half_away:
/// xsimd::round (std::round semantics), then the truncating conversion. Generic: lane by lane
/// with the same explicit out-of-range rule.
template <Rounding R, class A>
ibatch<A> round_to_int32(const fbatch<A>& v, requires_arch<xsimd::generic>) noexcept {
    constexpr std::size_t W = fbatch<A>::size;
    alignas(64) float t[W];
    alignas(64) std::int32_t q[W];
    round_integral<R, A>(v).store_aligned(t);
    for (std::size_t k = 0; k < W; ++k)
        q[k] = (t[k] > -0x1p31f && t[k] < 0x1p31f) ? static_cast<std::int32_t>(t[k]) : std::int32_t(-0x7FFFFFFF - 1);
    return ibatch<A>::load_aligned(q);
}
#if XSIMD_WITH_SSE2
template <Rounding R, class A>
ibatch<A> round_to_int32(const fbatch<A>& v, requires_arch<xsimd::sse2>) noexcept {
    if constexpr (R == Rounding::half_even) return _mm_cvtps_epi32(v);
    else return xsimd::batch_cast<std::int32_t>(xsimd::round(v));
}
#endif
#if XSIMD_WITH_AVX
template <Rounding R, class A>
ibatch<A> round_to_int32(const fbatch<A>& v, requires_arch<xsimd::avx>) noexcept {
    if constexpr (R == Rounding::half_even) return _mm256_cvtps_epi32(v);
    else return xsimd::batch_cast<std::int32_t>(xsimd::round(v));
}
#endif
#if XSIMD_WITH_AVX512F
template <Rounding R, class A>
ibatch<A> round_to_int32(const fbatch<A>& v, requires_arch<xsimd::avx512f>) noexcept {
    if constexpr (R == Rounding::half_even) return _mm512_cvtps_epi32(v);
    else return xsimd::batch_cast<std::int32_t>(xsimd::round(v));
}
#endif

/// Calls f.template operator()<R>() with the compile-time twin of the runtime rounding r.
template <class Fn>
decltype(auto) with_rounding(Rounding r, Fn&& f) {
    if (r == Rounding::half_even) return f.template operator()<Rounding::half_even>();
    return f.template operator()<Rounding::half_away>();
}

/// Calls f.template operator()<B>() for the runtime bit width 1 <= bits <= 8.
template <class Fn>
void with_bits(int bits, Fn&& f) {
    switch (bits) {
        case 1: f.template operator()<1>(); break;
        case 2: f.template operator()<2>(); break;
        case 3: f.template operator()<3>(); break;
        case 4: f.template operator()<4>(); break;
        case 5: f.template operator()<5>(); break;
        case 6: f.template operator()<6>(); break;
        case 7: f.template operator()<7>(); break;
        case 8: f.template operator()<8>(); break;
        default: break;
    }
}

// ---- horizontal min / max (log2(W) swizzle steps) --------------------------------------------
template <std::size_t D>
struct xor_lane {
    static constexpr std::uint32_t get(std::size_t i, std::size_t) { return static_cast<std::uint32_t>(i ^ D); }
};
template <class A, std::size_t D = fbatch<A>::size / 2>
fbatch<A> all_lanes_min(fbatch<A> v) noexcept {
    if constexpr (D == 0) {
        return v;
    } else {
        v = xsimd::min(v, xsimd::swizzle(v, xsimd::make_batch_constant<ubatch<A>, xor_lane<D>>()));
        return all_lanes_min<A, D / 2>(v);
    }
}
template <class A, std::size_t D = fbatch<A>::size / 2>
fbatch<A> all_lanes_max(fbatch<A> v) noexcept {
    if constexpr (D == 0) {
        return v;
    } else {
        v = xsimd::max(v, xsimd::swizzle(v, xsimd::make_batch_constant<ubatch<A>, xor_lane<D>>()));
        return all_lanes_max<A, D / 2>(v);
    }
}

/// min / max over the lanes of v, as a float: generic = the swizzle steps above; AVX / AVX-512
/// fold the halves first (256 -> 128 bits, then in-lane shuffles), a shorter dependency chain
/// than full-width permutes. v must hold no NaN; the sign of a zero result is unspecified
/// (kernel::range fixes it from the data).
template <class A>
float reduce_min(const fbatch<A>& v, requires_arch<xsimd::generic>) noexcept {
    return all_lanes_min<A>(v).get(0);
}
template <class A>
float reduce_max(const fbatch<A>& v, requires_arch<xsimd::generic>) noexcept {
    return all_lanes_max<A>(v).get(0);
}
#if XSIMD_WITH_AVX
template <class A>
float reduce_min(const fbatch<A>& v, requires_arch<xsimd::avx>) noexcept {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_min_ss(m, _mm_shuffle_ps(m, m, 1)));
}
template <class A>
float reduce_max(const fbatch<A>& v, requires_arch<xsimd::avx>) noexcept {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}
#endif
#if XSIMD_WITH_AVX512F
template <class A>
float reduce_min(const fbatch<A>& v, requires_arch<xsimd::avx512f>) noexcept {
    return _mm512_reduce_min_ps(v);
}
template <class A>
float reduce_max(const fbatch<A>& v, requires_arch<xsimd::avx512f>) noexcept {
    return _mm512_reduce_max_ps(v);
}
#endif

// ---- per-group reductions, W groups at once ---------------------------------------------------
/// r[g] = min (Max: max) over the lanes of v[g], g < W: the W horizontal reductions of W batches
/// in one batch. Generic: one reduce_min / reduce_max per batch. AVX / AVX-512: a transposing
/// tree (halves of two batches exchanged and combined, then quarters, ...): W - 1 min/max and
/// about 2W shuffles for W groups instead of W * log2(W) dependent steps. The inputs are read
/// in the order that leaves group g in lane g. v must hold no NaN; the sign of a zero result
/// is unspecified.
template <bool Max, class A>
PTQ_ALWAYS_INLINE inline fbatch<A> reduce_groups(const fbatch<A>* v, requires_arch<xsimd::generic>) noexcept {
    alignas(64) float r[fbatch<A>::size];
    for (std::size_t g = 0; g < fbatch<A>::size; ++g) r[g] = Max ? reduce_max<A>(v[g], A{}) : reduce_min<A>(v[g], A{});
    return fbatch<A>::load_aligned(r);
}
#if XSIMD_WITH_AVX
template <bool Max, class A>
PTQ_ALWAYS_INLINE inline fbatch<A> reduce_groups(const fbatch<A>* v, requires_arch<xsimd::avx>) noexcept {
    auto op = [](__m256 a, __m256 b) { return Max ? _mm256_max_ps(a, b) : _mm256_min_ps(a, b); };
    auto halves = [&](__m256 a, __m256 b) {  // [a0 b0] op [a1 b1] (128-bit halves)
        return op(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    };
    auto pairs = [&](__m256 a, __m256 b) {  // per half: [a0 a1 b0 b1] op [a2 a3 b2 b3]
        return op(_mm256_shuffle_ps(a, b, 0x44), _mm256_shuffle_ps(a, b, 0xEE));
    };
    auto singles = [&](__m256 a, __m256 b) {  // per half: [a0 a2 b0 b2] op [a1 a3 b1 b3]
        return op(_mm256_shuffle_ps(a, b, 0x88), _mm256_shuffle_ps(a, b, 0xDD));
    };
    // lane 4h + k of the result comes from input 2k + h: inputs in the order 0 4 1 5 2 6 3 7.
    return singles(pairs(halves(v[0], v[4]), halves(v[1], v[5])), pairs(halves(v[2], v[6]), halves(v[3], v[7])));
}
#endif
#if XSIMD_WITH_AVX512F
template <bool Max, class A>
PTQ_ALWAYS_INLINE inline fbatch<A> reduce_groups(const fbatch<A>* v, requires_arch<xsimd::avx512f>) noexcept {
    auto op = [](__m512 a, __m512 b) { return Max ? _mm512_max_ps(a, b) : _mm512_min_ps(a, b); };
    auto halves = [&](__m512 a, __m512 b) {  // [a0 a1 b0 b1] op [a2 a3 b2 b3] (128-bit quarters)
        return op(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    };
    auto quarters = [&](__m512 a, __m512 b) {  // [a0 a2 b0 b2] op [a1 a3 b1 b3]
        return op(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
    };
    auto pairs = [&](__m512 a, __m512 b) {  // per quarter: [a0 a1 b0 b1] op [a2 a3 b2 b3]
        return op(_mm512_shuffle_ps(a, b, 0x44), _mm512_shuffle_ps(a, b, 0xEE));
    };
    auto singles = [&](__m512 a, __m512 b) {  // per quarter: [a0 a2 b0 b2] op [a1 a3 b1 b3]
        return op(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xDD));
    };
    // Input p[i] ends in lane 4 (i % 4) + i / 4: feeding p = 0 4 8 12 1 5 9 13 ... leaves group g in lane g.
    auto q = [&](int a, int b, int c, int d) { return quarters(halves(v[a], v[b]), halves(v[c], v[d])); };
    return singles(pairs(q(0, 4, 8, 12), q(1, 5, 9, 13)), pairs(q(2, 6, 10, 14), q(3, 7, 11, 15)));
}
#endif
template <class A>
PTQ_ALWAYS_INLINE inline fbatch<A> min_of_groups(const fbatch<A>* v) noexcept {
    return reduce_groups<false, A>(v, A{});
}
template <class A>
PTQ_ALWAYS_INLINE inline fbatch<A> max_of_groups(const fbatch<A>* v) noexcept {
    return reduce_groups<true, A>(v, A{});
}

// ---- interleaved store of two batches (parameter records) --------------------------------------
/// out[2k] = a[k], out[2k + 1] = b[k] for k < W (2W floats, any alignment): the records
/// {float, 32-bit} of W groups written with two vector stores. Generic: lane by lane; AVX:
/// unpacklo/hi (interleave inside each 128-bit half) and a swap of the middle halves;
/// AVX-512: two two-source permutes.
template <class A>
PTQ_ALWAYS_INLINE inline void store_interleaved(const fbatch<A>& a, const fbatch<A>& b, float* out,
                                                requires_arch<xsimd::generic>) noexcept {
    constexpr std::size_t W = fbatch<A>::size;
    alignas(64) float ta[W], tb[W];
    a.store_aligned(ta);
    b.store_aligned(tb);
    for (std::size_t k = 0; k < W; ++k) {
        out[2 * k] = ta[k];
        out[2 * k + 1] = tb[k];
    }
}
#if XSIMD_WITH_AVX
template <class A>
PTQ_ALWAYS_INLINE inline void store_interleaved(const fbatch<A>& a, const fbatch<A>& b, float* out,
                                                requires_arch<xsimd::avx>) noexcept {
    const __m256 lo = _mm256_unpacklo_ps(a, b),
                 hi = _mm256_unpackhi_ps(a, b);  // [a0 b0 a1 b1 | a4 b4 a5 b5], [a2 .. | a6 ..]
    _mm256_storeu_ps(out, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}
#endif
#if XSIMD_WITH_AVX512F
template <class A>
PTQ_ALWAYS_INLINE inline void store_interleaved(const fbatch<A>& a, const fbatch<A>& b, float* out,
                                                requires_arch<xsimd::avx512f>) noexcept {
    const __m512i i0 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i i1 = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_storeu_ps(out, _mm512_permutex2var_ps(a, i0, b));
    _mm512_storeu_ps(out + 16, _mm512_permutex2var_ps(a, i1, b));
}
#endif

// ---- float -> double -> float lane arithmetic --------------------------------------------------
/// float(min(max((double(hi) - double(lo)) / d, FLT_MIN), FLT_MAX)) per lane (lo, hi finite):
/// the subtraction and the division in double, one rounding to float (current rounding mode,
/// round-to-nearest-even by default) as static_cast<float> does. Generic: lane by lane.
template <class A>
PTQ_ALWAYS_INLINE inline fbatch<A> scale_from_range(const fbatch<A>& lo, const fbatch<A>& hi, double d,
                                                    requires_arch<xsimd::generic>) noexcept {
    constexpr std::size_t W = fbatch<A>::size;
    alignas(64) float l[W], h[W];
    lo.store_aligned(l);
    hi.store_aligned(h);
    for (std::size_t k = 0; k < W; ++k) {
        double s = (double(h[k]) - double(l[k])) / d;
        s = s > double(std::numeric_limits<float>::min()) ? s : double(std::numeric_limits<float>::min());
        s = s < double(std::numeric_limits<float>::max()) ? s : double(std::numeric_limits<float>::max());
        l[k] = static_cast<float>(s);
    }
    return fbatch<A>::load_aligned(l);
}
#if XSIMD_WITH_AVX
template <class A>
PTQ_ALWAYS_INLINE inline fbatch<A> scale_from_range(const fbatch<A>& lo, const fbatch<A>& hi, double d,
                                                    requires_arch<xsimd::avx>) noexcept {
    const __m256d dv = _mm256_set1_pd(d), mn = _mm256_set1_pd(double(std::numeric_limits<float>::min())),
                  mx = _mm256_set1_pd(double(std::numeric_limits<float>::max()));
    auto half = [&](__m128 l, __m128 h) {
        const __m256d s = _mm256_div_pd(_mm256_sub_pd(_mm256_cvtps_pd(h), _mm256_cvtps_pd(l)), dv);
        return _mm256_cvtpd_ps(_mm256_min_pd(_mm256_max_pd(s, mn), mx));
    };
    return _mm256_set_m128(half(_mm256_extractf128_ps(lo, 1), _mm256_extractf128_ps(hi, 1)),
                           half(_mm256_castps256_ps128(lo), _mm256_castps256_ps128(hi)));
}
#endif
#if XSIMD_WITH_AVX512F
template <class A>
PTQ_ALWAYS_INLINE inline fbatch<A> scale_from_range(const fbatch<A>& lo, const fbatch<A>& hi, double d,
                                                    requires_arch<xsimd::avx512f>) noexcept {
    const __m512d dv = _mm512_set1_pd(d), mn = _mm512_set1_pd(double(std::numeric_limits<float>::min())),
                  mx = _mm512_set1_pd(double(std::numeric_limits<float>::max()));
    auto high = [](__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); };
    auto half = [&](__m256 l, __m256 h) {
        const __m512d s = _mm512_div_pd(_mm512_sub_pd(_mm512_cvtps_pd(h), _mm512_cvtps_pd(l)), dv);
        return _mm256_castps_pd(_mm512_cvtpd_ps(_mm512_min_pd(_mm512_max_pd(s, mn), mx)));
    };
    const __m256d a = half(_mm512_castps512_ps256(lo), _mm512_castps512_ps256(hi)), b = half(high(lo), high(hi));
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(a), b, 1));
}
#endif

// ---- bit-stream unpacking ----------------------------------------------------------------------
/// Plan of output batch J of an unpack unit (compile-time): the unit is 32*W codes of B bits
/// = B*W little-endian 32-bit words held in B batches; code c = J*W + k (lane k) starts at
/// bit p = c*B, i.e. in word p/32 at shift p%32, and continues into the next word when
/// p%32 + B > 32 ("straddles").
template <int B, std::size_t W, std::size_t J>
struct unpack_plan {
    static constexpr std::size_t bit(std::size_t k) { return (J * W + k) * static_cast<std::size_t>(B); }
    static constexpr std::size_t lo_word(std::size_t k) { return bit(k) / 32; }
    static constexpr std::uint32_t shift(std::size_t k) { return static_cast<std::uint32_t>(bit(k) % 32); }
    static constexpr bool straddles(std::size_t k) { return shift(k) + B > 32; }
    static constexpr std::size_t hi_word(std::size_t k) { return straddles(k) ? lo_word(k) + 1 : lo_word(k); }
    static constexpr bool any_straddle() {
        for (std::size_t k = 0; k < W; ++k)
            if (straddles(k)) return true;
        return false;
    }
    static constexpr std::size_t lo_batch = lo_word(0) / W;
    static constexpr bool lo_two = lo_word(W - 1) / W != lo_batch;
    static constexpr std::size_t hi_batch = hi_word(0) / W;
    static constexpr bool hi_two = hi_word(W - 1) / W != hi_batch;

    struct lo_index {
        static constexpr std::uint32_t get(std::size_t k, std::size_t) {
            return static_cast<std::uint32_t>(lo_word(k) % W);
        }
    };
    struct lo_in_first {
        static constexpr bool get(std::size_t k, std::size_t) { return lo_word(k) / W == lo_batch; }
    };
    struct hi_index {
        static constexpr std::uint32_t get(std::size_t k, std::size_t) {
            return static_cast<std::uint32_t>(hi_word(k) % W);
        }
    };
    struct hi_in_first {
        static constexpr bool get(std::size_t k, std::size_t) { return hi_word(k) / W == hi_batch; }
    };
    struct right {
        static constexpr std::uint32_t get(std::size_t k, std::size_t) { return shift(k); }
    };
    struct left {  // the high part is shifted left by 32 - s as (h << 1) << (31 - s)
        static constexpr std::uint32_t get(std::size_t k, std::size_t) { return 31u - shift(k); }
    };
};

/// Codes [J*W, (J+1)*W) of a unit whose words are in `w[0..B)`.
template <int B, class A, std::size_t J>
PTQ_ALWAYS_INLINE inline ubatch<A> unpack_batch(const ubatch<A>* w) noexcept {
    constexpr std::size_t W = ubatch<A>::size;
    using P = unpack_plan<B, W, J>;
    using U = ubatch<A>;
    const auto lidx = xsimd::make_batch_constant<U, typename P::lo_index>();
    U lo;
    if constexpr (P::lo_two) {
        lo = xsimd::select(xsimd::make_batch_bool_constant<U, typename P::lo_in_first>(),
                           xsimd::swizzle(w[P::lo_batch], lidx), xsimd::swizzle(w[P::lo_batch + 1], lidx));
    } else {
        lo = xsimd::swizzle(w[P::lo_batch], lidx);
    }
    U v = shift_right<A>(lo, U(xsimd::make_batch_constant<U, typename P::right>()));
    if constexpr (P::any_straddle()) {
        const auto hidx = xsimd::make_batch_constant<U, typename P::hi_index>();
        U hi;
        if constexpr (P::hi_two) {
            hi = xsimd::select(xsimd::make_batch_bool_constant<U, typename P::hi_in_first>(),
                               xsimd::swizzle(w[P::hi_batch], hidx), xsimd::swizzle(w[P::hi_batch + 1], hidx));
        } else {
            hi = xsimd::swizzle(w[P::hi_batch], hidx);
        }
        // lanes that do not straddle get bits at positions >= 32 - s >= B: masked off below.
        v = v | shift_left<A>(hi << 1, U(xsimd::make_batch_constant<U, typename P::left>()));
    }
    return v & U((1u << B) - 1u);
}

/// Unpacks one unit: 32*W codes of B bits from exactly 4*B*W bytes at p (bit 0 of p[0] is
/// bit 0 of code 0). Calls emit(j, codes_j) for j = 0, 1, ... while it returns true.
template <int B, class A, class Emit>
PTQ_ALWAYS_INLINE inline void unpack_unit(const std::uint8_t* p, Emit&& emit) noexcept {
    constexpr std::size_t W = ubatch<A>::size;
    ubatch<A> w[B];
    for (int k = 0; k < B; ++k)
        w[k] = ubatch<A>::load_unaligned(reinterpret_cast<const std::uint32_t*>(p) + static_cast<std::size_t>(k) * W);
    // (clang-format 14 splits an immediately invoked template lambda.)
    // clang-format off
    [&]<std::size_t... J>(std::index_sequence<J...>) PTQ_ALWAYS_INLINE {
        (void)(emit(J, unpack_batch<B, A, J>(w)) && ...);
    }(std::make_index_sequence<32>{});
    // clang-format on
}

/// Codes per unpack unit and its bytes.
template <int B, class A>
inline constexpr std::size_t unit_codes = 32 * ubatch<A>::size;
template <int B, class A>
inline constexpr std::size_t unit_bytes = 4 * static_cast<std::size_t>(B) * ubatch<A>::size;

// ---- small unpack units --------------------------------------------------------------------------
/// The small unit: the fewest whole batches whose codes fill whole bytes for every B, i.e.
/// max(W, 8) codes (W codes from 2B bytes on AVX-512, W = 16), and its bytes (at most 16 for
/// W <= 16, B <= 8). Short rows, row tails and the group loop of kernel::dot_row use it.
template <class A>
inline constexpr std::size_t small_unit_codes = ubatch<A>::size < 8 ? 8 : ubatch<A>::size;
template <int B, class A>
inline constexpr std::size_t small_unit_bytes = small_unit_codes<A>* static_cast<std::size_t>(B) / 8;

/// The N bytes at p as the low bytes of a batch of 32-bit words, the other bytes 0; reads
/// exactly N bytes (N <= 4W; N <= 16 on AVX2 / AVX-512).
template <std::size_t N, class A>
PTQ_ALWAYS_INLINE inline ubatch<A> load_low_bytes(const std::uint8_t* p, requires_arch<xsimd::generic>) noexcept {
    alignas(64) std::uint32_t t[ubatch<A>::size] = {};
    std::memcpy(t, p, N);
    return ubatch<A>::load_aligned(t);
}
#if XSIMD_WITH_AVX2
template <std::size_t N>
PTQ_ALWAYS_INLINE inline __m128i load_bytes128(const std::uint8_t* p) noexcept {
    static_assert(N <= 16, "load_bytes128: at most 16 bytes");
    if constexpr (N == 16) {
        return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    } else if constexpr (N == 8) {
        return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    } else {
        std::uint64_t w[2] = {0, 0};
        std::memcpy(w, p, N);
        return _mm_set_epi64x(static_cast<long long>(w[1]), static_cast<long long>(w[0]));
    }
}
// (The upper lanes are left undefined: unpack_small reads words below N / 4 only.)
template <std::size_t N, class A>
PTQ_ALWAYS_INLINE inline ubatch<A> load_low_bytes(const std::uint8_t* p, requires_arch<xsimd::avx2>) noexcept {
    return _mm256_castsi128_si256(load_bytes128<N>(p));
}
#endif
#if XSIMD_WITH_AVX512F
template <std::size_t N, class A>
PTQ_ALWAYS_INLINE inline ubatch<A> load_low_bytes(const std::uint8_t* p, requires_arch<xsimd::avx512f>) noexcept {
    return _mm512_castsi128_si512(load_bytes128<N>(p));
}
#endif

/// The first nb <= N bytes at p into out[0, N), the rest 0; reads only those nb bytes.
/// Generic: byte loop; AVX-512BW: one masked load (N <= 16).
template <std::size_t N, class A>
PTQ_ALWAYS_INLINE inline void copy_low_bytes(const std::uint8_t* p, std::size_t nb, std::uint8_t* out,
                                             requires_arch<xsimd::generic>) noexcept {
    for (std::size_t k = 0; k < N; ++k) out[k] = k < nb ? p[k] : std::uint8_t(0);
}
#if XSIMD_WITH_AVX512BW
template <std::size_t N, class A>
PTQ_ALWAYS_INLINE inline void copy_low_bytes(const std::uint8_t* p, std::size_t nb, std::uint8_t* out,
                                             requires_arch<xsimd::avx512bw>) noexcept {
    static_assert(N <= 16, "copy_low_bytes: at most 16 bytes");
    alignas(16) std::uint8_t t[16];
    // the 512-bit form (AVX-512BW without VL); masked-off bytes are not read
    const __m512i v = _mm512_maskz_loadu_epi8(static_cast<__mmask64>((std::uint64_t(1) << nb) - 1u), p);
    _mm_store_si128(reinterpret_cast<__m128i*>(t), _mm512_castsi512_si128(v));
    std::memcpy(out, t, N);
}
#endif

/// x[0, cnt) (cnt <= W) in the low lanes of a batch, the others 0; reads only those floats.
/// Generic: lane loop; AVX2: vmaskmovps; AVX-512: a masked load.
template <class A>
PTQ_ALWAYS_INLINE inline fbatch<A> load_floats_partial(const float* x, std::size_t cnt,
                                                       requires_arch<xsimd::generic>) noexcept {
    alignas(64) float t[fbatch<A>::size];
    for (std::size_t k = 0; k < fbatch<A>::size; ++k) t[k] = k < cnt ? x[k] : 0.0f;
    return fbatch<A>::load_aligned(t);
}
#if XSIMD_WITH_AVX2
template <class A>
PTQ_ALWAYS_INLINE inline fbatch<A> load_floats_partial(const float* x, std::size_t cnt,
                                                       requires_arch<xsimd::avx2>) noexcept {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(x, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(cnt)), lane));
}
#endif
#if XSIMD_WITH_AVX512F
template <class A>
PTQ_ALWAYS_INLINE inline fbatch<A> load_floats_partial(const float* x, std::size_t cnt,
                                                       requires_arch<xsimd::avx512f>) noexcept {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << cnt) - 1u), x);
}
#endif

/// W bytes at p zero-extended to W 32-bit lanes (8-bit codes: no shifts). Generic: lane by
/// lane; AVX2 / AVX-512: vpmovzxbd.
template <class A>
PTQ_ALWAYS_INLINE inline ubatch<A> widen_bytes(const std::uint8_t* p, requires_arch<xsimd::generic>) noexcept {
    alignas(64) std::uint32_t t[ubatch<A>::size];
    for (std::size_t k = 0; k < ubatch<A>::size; ++k) t[k] = p[k];
    return ubatch<A>::load_aligned(t);
}
#if XSIMD_WITH_AVX2
template <class A>
PTQ_ALWAYS_INLINE inline ubatch<A> widen_bytes(const std::uint8_t* p, requires_arch<xsimd::avx2>) noexcept {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
#endif
#if XSIMD_WITH_AVX512F
template <class A>
PTQ_ALWAYS_INLINE inline ubatch<A> widen_bytes(const std::uint8_t* p, requires_arch<xsimd::avx512f>) noexcept {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
#endif

/// Unpacks one small unit: small_unit_codes<A> codes of B bits from exactly
/// small_unit_bytes<B, A> bytes at p. Calls emit(j, codes_j) for j = 0 .. S/W - 1 (j a
/// compile-time constant after inlining). B = 8: widen_bytes; else the words in one batch
/// (load_low_bytes) and unpack_batch's shifts.
template <int B, class A, class Emit>
PTQ_ALWAYS_INLINE inline void unpack_small(const std::uint8_t* p, Emit&& emit) noexcept {
    constexpr std::size_t W = ubatch<A>::size, S = small_unit_codes<A>;
    // clang-format off
    if constexpr (B == 8) {
        [&]<std::size_t... J>(std::index_sequence<J...>) PTQ_ALWAYS_INLINE {
            (emit(J, widen_bytes<A>(p + J * W, A{})), ...);
        }(std::make_index_sequence<S / W>{});
    } else {
        const ubatch<A> w = load_low_bytes<small_unit_bytes<B, A>, A>(p, A{});
        [&]<std::size_t... J>(std::index_sequence<J...>) PTQ_ALWAYS_INLINE {
            static_assert(((unpack_plan<B, W, J>::lo_batch == 0 && !unpack_plan<B, W, J>::lo_two &&
                            unpack_plan<B, W, J>::hi_batch == 0 && !unpack_plan<B, W, J>::hi_two) && ...),
                          "unpack_small: a small unit's words fit in one batch");
            (emit(J, unpack_batch<B, A, J>(&w)), ...);
        }(std::make_index_sequence<S / W>{});
    }
    // clang-format on
}

/// unpack_small on the first `count` < small_unit_codes<A> codes at p (reads only their
/// ceil(count * B / 8) bytes; the codes past count are 0).
template <int B, class A, class Emit>
PTQ_ALWAYS_INLINE inline void unpack_small_partial(const std::uint8_t* p, std::size_t count, Emit&& emit) noexcept {
    alignas(16) std::uint8_t buf[small_unit_bytes<B, A>];
    copy_low_bytes<small_unit_bytes<B, A>, A>(p, (count * static_cast<std::size_t>(B) + 7) / 8, buf, A{});
    unpack_small<B, A>(buf, emit);
}

/// Unpacks codes [0, n) of a stream that starts byte-aligned at p, reading only the
/// packed_bytes(n, B) bytes that hold them: whole units straight from memory, then whole small
/// units, then the last partial small unit from a zero-padded copy. emit(i0, codes, count)
/// receives codes [i0, i0 + count), count <= W, in increasing order.
template <int B, class A, class Emit>
PTQ_ALWAYS_INLINE inline void unpack_stream(const std::uint8_t* p, std::size_t n, Emit&& emit) noexcept {
    constexpr std::size_t W = ubatch<A>::size;
    constexpr std::size_t UC = unit_codes<B, A>, UB = unit_bytes<B, A>;
    constexpr std::size_t SC = small_unit_codes<A>, SB = small_unit_bytes<B, A>;
    std::size_t i = 0;
    for (; i + UC <= n; i += UC, p += UB)
        unpack_unit<B, A>(p, [&](std::size_t j, const ubatch<A>& c) PTQ_ALWAYS_INLINE {
            emit(i + j * W, c, W);
            return true;
        });
    for (; i + SC <= n; i += SC, p += SB)
        unpack_small<B, A>(p, [&](std::size_t j, const ubatch<A>& c) PTQ_ALWAYS_INLINE { emit(i + j * W, c, W); });
    if (i < n) {
        const std::size_t rem = n - i;
        unpack_small_partial<B, A>(p, rem, [&](std::size_t j, const ubatch<A>& c) PTQ_ALWAYS_INLINE {
            const std::size_t i0 = j * W;
            if (i0 < rem) emit(i + i0, c, rem - i0 < W ? rem - i0 : W);
        });
    }
}

// ---- bit-stream packing (SWAR inside 64-bit lanes) -------------------------------------------
/// (V = a batch of uint64 or std::uint64_t itself.) Eight codes of B bits held one per byte of a 64-bit lane (code t in
/// byte t) -> their 8*B bit little-endian stream in the low bits of the lane. Codes are masked to B bits first.
template <int B, class V>
V pack8_lanes(V x) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ull;
    x = x & V(ones * ((1u << B) - 1u));
    if constexpr (B < 8) {
        x = (x & V(0x00FF00FF00FF00FFull)) | ((x & V(0xFF00FF00FF00FF00ull)) >> (8 - B));
        x = (x & V(0x0000FFFF0000FFFFull)) | ((x & V(0xFFFF0000FFFF0000ull)) >> (16 - 2 * B));
        x = (x & V(0x00000000FFFFFFFFull)) | ((x & V(0xFFFFFFFF00000000ull)) >> (32 - 4 * B));
    }
    return x;
}

// ---- packing 32 codes held one per 32-bit lane -------------------------------------------------
/// 32 codes, one per byte (each < 2^B) -> their 4*B bytes of the canonical bit stream.
template <int B>
PTQ_ALWAYS_INLINE inline void pack_bytes32(const std::uint8_t* bytes, std::uint8_t* out) noexcept {
    for (std::size_t j = 0; j < 4; ++j) {
        std::uint64_t w;
        std::memcpy(&w, bytes + 8 * j, 8);
        w = pack8_lanes<B>(w);
        std::memcpy(out + j * B, &w, B);
    }
}

/// Codes c[0 .. 32/W) (code 32/W*t + k in lane k of c[t], each < 2^B) -> their 4*B bytes of
/// the canonical bit stream at out. Generic: narrowed to bytes, then pack8_lanes. AVX2 /
/// AVX-512 for B = 8 and B = 4: narrowed with packs / vpmov, the nibble pairs (code 2j in the
/// low nibble of byte j, code 2j+1 in the high one) formed by one shift and or.
///
/// pack32_clamped<B, Lo, Hi>: the same for int32 values q clamped to [Lo, Hi] (0 <= Lo <= Hi < 2^B)
/// first: generic = max / min per lane; AVX2 / AVX-512 = the saturating packs (signed to [-32768,
/// 32767], then unsigned to [0, 255]: clamp(clamp(q, 0, 255), Lo, Hi) = clamp(q, Lo, Hi)) and one
/// byte max (omitted for Lo = 0) / min (omitted for Hi = 255) for all 32 codes.
template <int B, class A>
PTQ_ALWAYS_INLINE inline void pack32(const ubatch<A>* c, std::uint8_t* out, requires_arch<xsimd::generic>) noexcept {
    constexpr std::size_t W = ubatch<A>::size;
    static_assert(32 % W == 0, "pack32: the batch width must divide 32");
    alignas(64) std::uint8_t bytes[32];
    for (std::size_t t = 0; t < 32 / W; ++t) store_bytes<A>(c[t], bytes + t * W);
    pack_bytes32<B>(bytes, out);
}
template <int B, std::int32_t Lo, std::int32_t Hi, class A>
PTQ_ALWAYS_INLINE inline void pack32_clamped(const ibatch<A>* q, std::uint8_t* out,
                                             requires_arch<xsimd::generic>) noexcept {
    ubatch<A> c[32 / ubatch<A>::size];
    for (std::size_t t = 0; t < 32 / ubatch<A>::size; ++t)
        c[t] = xsimd::bitwise_cast<ubatch<A>>(xsimd::min(xsimd::max(q[t], ibatch<A>(Lo)), ibatch<A>(Hi)));
    pack32<B, A>(c, out, xsimd::generic{});
}
#if XSIMD_WITH_AVX2
/// 32 codes in byte order (each < 2^B) -> the stream (AVX2; B = 8, 4 in registers).
template <int B>
PTQ_ALWAYS_INLINE inline void store_codes32(__m256i o, std::uint8_t* out) noexcept {
    if constexpr (B == 8) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), o);
    } else if constexpr (B == 4) {
        const __m256i n = _mm256_or_si256(o, _mm256_srli_epi16(o, 4));  // low byte of word j: c[2j] | c[2j+1] << 4
        const __m256i e =
            _mm256_shuffle_epi8(n, _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1, 0, 2, 4,
                                                    6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                         _mm256_castsi256_si128(_mm256_permute4x64_epi64(e, 0x08)));  // qwords 0, 2
    } else {
        alignas(32) std::uint8_t bytes[32];
        _mm256_store_si256(reinterpret_cast<__m256i*>(bytes), o);
        pack_bytes32<B>(bytes, out);
    }
}
/// 4 batches of 8 int32 -> 32 bytes in code order, saturated to [0, 255] (AVX2 packs
/// interleave the 128-bit halves: dword 4h + t holds codes 8t + 4h .. 8t + 4h + 3).
inline __m256i narrow32(__m256i q0, __m256i q1, __m256i q2, __m256i q3) noexcept {
    const __m256i b = _mm256_packus_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
template <std::int32_t Lo, std::int32_t Hi>
PTQ_ALWAYS_INLINE inline __m256i clamp_bytes(__m256i b) noexcept {
    static_assert(0 <= Lo && Lo <= Hi && Hi <= 255);
    if constexpr (Lo > 0) b = _mm256_max_epu8(b, _mm256_set1_epi8(static_cast<char>(Lo)));
    if constexpr (Hi < 255) b = _mm256_min_epu8(b, _mm256_set1_epi8(static_cast<char>(Hi)));
    return b;
}
template <int B, class A>
PTQ_ALWAYS_INLINE inline void pack32(const ubatch<A>* c, std::uint8_t* out, requires_arch<xsimd::avx2>) noexcept {
    store_codes32<B>(narrow32(c[0], c[1], c[2], c[3]), out);
}
template <int B, std::int32_t Lo, std::int32_t Hi, class A>
PTQ_ALWAYS_INLINE inline void pack32_clamped(const ibatch<A>* q, std::uint8_t* out,
                                             requires_arch<xsimd::avx2>) noexcept {
    store_codes32<B>(clamp_bytes<Lo, Hi>(narrow32(q[0], q[1], q[2], q[3])), out);
}
#endif
#if XSIMD_WITH_AVX512F
template <int B, class A>
PTQ_ALWAYS_INLINE inline void pack32(const ubatch<A>* c, std::uint8_t* out, requires_arch<xsimd::avx512f>) noexcept {
    if constexpr (B == 8) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(c[0]));  // vpmovdb
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16), _mm512_cvtepi32_epi8(c[1]));
    } else if constexpr (B == 4) {
        // per 64-bit lane: c[2j] | c[2j+1] << 4 in the low byte, then vpmovqb
        const __m128i a = _mm512_cvtepi64_epi8(_mm512_or_si512(c[0], _mm512_srli_epi64(c[0], 28)));
        const __m128i b = _mm512_cvtepi64_epi8(_mm512_or_si512(c[1], _mm512_srli_epi64(c[1], 28)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_unpacklo_epi64(a, b));
    } else {
        pack32<B, A>(c, out, xsimd::generic{});
    }
}
#if XSIMD_WITH_AVX2
template <int B, std::int32_t Lo, std::int32_t Hi, class A>
PTQ_ALWAYS_INLINE inline void pack32_clamped(const ibatch<A>* q, std::uint8_t* out,
                                             requires_arch<xsimd::avx512f>) noexcept {
    // packs per 128-bit lane k: words q0[4k..4k+3], q1[4k..4k+3] -> bytes (dword 4k: q0's four,
    // dword 4k+1: q1's four); dwords 0 4 8 12 1 5 9 13 are the 32 codes in order.
    const __m512i w = _mm512_packs_epi32(q[0], q[1]);
    const __m512i b = _mm512_packus_epi16(w, w);
    const __m512i o = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0), b);
    store_codes32<B>(clamp_bytes<Lo, Hi>(_mm512_castsi512_si256(o)), out);
}
#endif
#endif

}  // namespace ptq::kernel::detail
