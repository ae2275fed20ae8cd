#pragma once
// SIMD dot products of packed quantized rows with activations (the kernels of ptq::gemv /
// ptq::gemm, include/ptq/gemv.hpp). Each works straight on the canonical packed row
// (kernel/packing.hpp) and the group parameters: no dequantized copy of the weights. The
// architecture is a template parameter (default xsimd::default_arch); the scalar twins are in
// kernel/gemv_reference.hpp.
//
//   dot_row<F, Arch>(row, layout, params, x)        float activations, every format F
//   dot_u8s8<Arch, Wide>(u, flip, s, n)             exact sum of (u ^ flip) * s over bytes
//   int_group_dots<F, A, Arch>(row, layout, s, sums, out)
//                                                   exact per-group integer dots of a row of
//                                                   integer codes with int8 activation codes
//   prepare_int_acts<F, A>(codes, n, q, lane_neg)   activation row reordered once per token for
//   int_dot_row<F, A, Arch>(row, layout, wp, q, lane_neg, xp)
//                                                   fused row dot: exact int32 lane dots, float
//                                                   accumulation (AVX2 / AVX-512 VNNI, 32-blocks)
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <ptq/kernel/xsimd.hpp>

#include <ptq/format/concepts.hpp>
#include <ptq/format/int_format.hpp>
#include <ptq/format/mx_int.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/kernels.hpp>
#include <ptq/kernel/simd_detail.hpp>

namespace ptq::kernel {

// =============================================================================================
// float activations
// =============================================================================================
namespace detail {

/// The per-element factor t(c) whose products with x are accumulated within a group; the
/// dequantized weight is w^ = k0 * t(c) (k0, k1 from DequantConstants):
///   IntFormat:  t = float(c) - float(zero)   (exact: small integers), k0 = scale
///   MxInt:      t = float(sext(c))           (exact),                 k0 = 2^(e-(d-2))
///   Minifloat:  t = decode(c)                (exact),                 k0 = scale
///   MxFp:       t = decode(c)                (exact),                 k0 = 2^e
///   IntMinFormat: t = float(c)               (exact), w^ = k0 * t + k1 (k1 = the group's
///               minimum): the group adds k0 * sum(t x) + k1 * sum(x) (two accumulators)
/// Subtracting the zero point per element (rather than acc - zero * sum(x) per group) keeps
/// the accumulated terms equal to w^_i x_i / k0, so the error bound below is relative to
/// sum |w^_i x_i| and does not suffer from cancellation against zero * sum(x).
template <class F, class A>
PTQ_ALWAYS_INLINE inline fbatch<A> code_factors(const ubatch<A>& c, const fbatch<A>& k1) noexcept {
    if constexpr (F::kind == FormatKind::integer) {
        return xsimd::batch_cast<float>(xsimd::bitwise_cast<ibatch<A>>(c)) - k1;
    } else if constexpr (F::kind == FormatKind::integer_min) {
        (void)k1;
        return xsimd::batch_cast<float>(xsimd::bitwise_cast<ibatch<A>>(c));
    } else if constexpr (F::kind == FormatKind::mx_integer) {
        (void)k1;
        constexpr std::uint32_t sb = 1u << (F::bits - 1);
        return xsimd::batch_cast<float>(xsimd::bitwise_cast<ibatch<A>>(c ^ ubatch<A>(sb)) -
                                        ibatch<A>(static_cast<std::int32_t>(sb)));
    } else if constexpr (F::kind == FormatKind::minifloat) {
        (void)k1;
        return decode_minifloat<F, A>(c);
    } else {
        (void)k1;
        return decode_minifloat<typename F::element, A>(c);
    }
}

/// acc += t(c) * x over one small unit (detail::unpack_small: S codes at p, x[0, S)), one fma
/// per batch; IntMinFormat also ax += x.
template <class F, class A>
PTQ_ALWAYS_INLINE inline void dot_unit(const std::uint8_t* p, const float* x, const fbatch<A>& k1, fbatch<A>& acc,
                                       fbatch<A>& ax) noexcept {
    unpack_small<F::bits, A>(p, [&](std::size_t j, const ubatch<A>& c) PTQ_ALWAYS_INLINE {
        const fbatch<A> xv = fbatch<A>::load_unaligned(x + j * fbatch<A>::size);
        acc = xsimd::fma(code_factors<F, A>(c, k1), xv, acc);
        if constexpr (F::kind == FormatKind::integer_min) ax += xv;
    });
}

/// One group of cnt codes at p (byte-aligned) with activations x[0, cnt) into y:
/// y = fma(k0, acc_0 + acc_1, y) (IntMinFormat: then y = fma(k1, sum x, y)), the small units
/// alternating between acc_0 and acc_1. U > 0: cnt = U * S, the units unrolled; U = 0: any cnt,
/// the last partial unit read with its bytes zero-padded (unpack_small_partial) and x = 0 past
/// cnt (load_floats_partial), where the zero codes decode to finite values.
template <class F, class A, std::size_t U>
PTQ_ALWAYS_INLINE inline void dot_group(const std::uint8_t* p, const float* x, std::size_t cnt,
                                        const typename F::Params& prm, fbatch<A>& y) noexcept {
    using Fb = fbatch<A>;
    constexpr std::size_t S = small_unit_codes<A>, SB = small_unit_bytes<F::bits, A>;
    const DequantConstants<F> kc(prm);
    const Fb k1(kc.k1);
    Fb a0(0.0f), a1(0.0f), ax(0.0f);
    if constexpr (U > 0) {
        (void)cnt;
        // clang-format off
        [&]<std::size_t... J>(std::index_sequence<J...>) PTQ_ALWAYS_INLINE {
            (dot_unit<F, A>(p + J * SB, x + J * S, k1, J % 2 == 0 ? a0 : a1, ax), ...);
        }(std::make_index_sequence<U>{});
        // clang-format on
    } else {
        std::size_t i = 0;
        for (; i + 2 * S <= cnt; i += 2 * S, p += 2 * SB) {
            dot_unit<F, A>(p, x + i, k1, a0, ax);
            dot_unit<F, A>(p + SB, x + i + S, k1, a1, ax);
        }
        if (i + S <= cnt) {
            dot_unit<F, A>(p, x + i, k1, a0, ax);
            i += S;
            p += SB;
        }
        if (i < cnt) {
            const std::size_t rem = cnt - i;
            unpack_small_partial<F::bits, A>(p, rem, [&](std::size_t j, const ubatch<A>& c) PTQ_ALWAYS_INLINE {
                constexpr std::size_t W = Fb::size;
                if (j * W >= rem) return;
                const Fb xv = load_floats_partial<A>(x + i + j * W, rem - j * W < W ? rem - j * W : W, A{});
                a1 = xsimd::fma(code_factors<F, A>(c, k1), xv, a1);
                if constexpr (F::kind == FormatKind::integer_min) ax += xv;
            });
        }
    }
    y = xsimd::fma(Fb(kc.k0), a0 + a1, y);
    if constexpr (F::kind == FormatKind::integer_min) y = xsimd::fma(k1, ax, y);
}

/// dot_row when every group starts at a multiple of S (n > 0): whole groups of gc codes (U
/// small units each when U > 0) alternating between y_0 and y_1, then the row's last partial
/// group.
template <class F, class A, std::size_t U>
float dot_row_grouped(const std::uint8_t* row, std::size_t n, std::size_t gc, const typename F::Params* params,
                      const float* x) noexcept {
    fbatch<A> y0(0.0f), y1(0.0f);
    const std::size_t gb = gc / 8 * static_cast<std::size_t>(F::bits);  // bytes per group (gc % 8 == 0 if n > gc)
    std::size_t b = 0;
    for (; b + 2 * gc <= n; b += 2 * gc, row += 2 * gb, params += 2) {
        dot_group<F, A, U>(row, x + b, gc, params[0], y0);
        dot_group<F, A, U>(row + gb, x + b + gc, gc, params[1], y1);
    }
    if (b + gc <= n) {
        dot_group<F, A, U>(row, x + b, gc, params[0], y0);
        b += gc;
        row += gb;
        ++params;
    }
    if (b < n) dot_group<F, A, 0>(row, x + b, n - b, params[0], y1);
    return xsimd::hadd(y0 + y1);
}

/// dot_row for group sizes that are not a multiple of S: batch by batch (unpack_stream), the
/// batches that straddle two groups dequantized lane by lane.
template <class F, class A>
float dot_row_ragged(const std::uint8_t* packed_row, const GroupLayout& layout, const typename F::Params* params,
                     const float* x) noexcept {
    using Fb = fbatch<A>;
    constexpr std::size_t W = Fb::size;
    constexpr bool with_min = F::kind == FormatKind::integer_min;
    const std::size_t n = layout.cols, gc = layout.group_cols;
    Fb y0(0.0f), y1(0.0f);
    std::size_t g = 0, gend = gc < n ? gc : n;
    DequantConstants<F> kc(params[0]);
    Fb k0(kc.k0), k1(kc.k1), acc(0.0f), accx(0.0f);  // accx (IntMinFormat): the group's sum of x
    auto close_group = [&]() PTQ_ALWAYS_INLINE {
        y0 = xsimd::fma(k0, acc, y0);
        if constexpr (with_min) {
            y0 = xsimd::fma(k1, accx, y0);
            accx = Fb(0.0f);
        }
    };
    unpack_stream<F::bits, A>(
        packed_row, n, [&](std::size_t i0, const ubatch<A>& c, std::size_t cnt) PTQ_ALWAYS_INLINE {
            while (i0 >= gend) {  // group g is complete
                close_group();
                acc = Fb(0.0f);
                ++g;
                gend = gend + gc < n ? gend + gc : n;
                kc = DequantConstants<F>(params[g]);
                k0 = Fb(kc.k0);
                k1 = Fb(kc.k1);
            }
            // x beyond the row is 0 (the padded codes decode to finite values)
            const Fb xv = cnt == W ? Fb::load_unaligned(x + i0) : load_floats_partial<A>(x + i0, cnt, A{});
            if (i0 + cnt <= gend) {
                acc = xsimd::fma(code_factors<F, A>(c, k1), xv, acc);
                if constexpr (with_min) accx += xv;
            } else {
                y1 = xsimd::fma(dequantize_straddling<F, A>(c, layout, params, i0, g), xv, y1);
            }
        });
    close_group();
    return xsimd::hadd(y0 + y1);
}

}  // namespace detail

/// y = sum_c w^(c) * x[c] over one packed row (layout.cols codes at bit 0 of packed_row, groups
/// with params[0 .. col_groups), i.e. QuantizedMatrix::row_params), w^ = F::dequantize.
///
/// Evaluation (W = SIMD lanes, S = detail::small_unit_codes = max(W, 8) codes, which fill whole
/// bytes). When every group starts at a multiple of S (group_cols % S == 0, or one group per
/// row), group by group (detail::dot_row_grouped): the group's codes are unpacked S at a time
/// straight from the row (detail::unpack_small; the row's last partial unit from a zero-padded
/// copy, with x read as 0 past the row), acc_a += t(c) * x (fma per lane, t from
/// detail::code_factors, the units alternating between a = 0 and a = 1), then
/// y_(g mod 2) = fma(k0_g, acc_0 + acc_1, y_(g mod 2)) (the row's last partial group into y_1).
/// Otherwise (detail::dot_row_ragged) the row is unpacked W codes at a time: a batch inside
/// group g goes into acc as above, y_0 = fma(k0_g, acc, y_0) when the group ends, and a batch
/// that straddles two groups is dequantized lane by lane (exactly F::dequantize) and
/// accumulated with fma into y_1. Finally y = reduce_add(y_0 + y_1) (log2 W pairwise
/// additions). NaN/Inf in x or in the weights propagate as IEEE arithmetic does.
///
/// Error bound (no overflow or underflow): every product w^_i x_i goes through at most
///   r = 2 * (ceil(cols / W) + col_groups) + log2(W) + 2
/// roundings (an fma counts as two where the architecture emulates it), so
///   |y - sum_i w^_i x_i| <= r * u * sum_i |w^_i x_i| (to first order), u = 2^-24,
/// plus one more u for the rounding of w^ itself, which this kernel does not perform.
/// (Count: the product and the additions into acc, at most 2 * ceil(cols / W) with emulated
/// fma; acc_0 + acc_1; k0 * acc and the additions into y, at most 2 * col_groups; y_0 + y_1;
/// log2(W) in the reduction.)
/// IntMinFormat: the group's k0 * sum(t x) and k1 * sum(x) are added separately, so the bound
/// is relative to sum_i (|k0 c_i x_i| + |k1 x_i|) instead (it can exceed sum |w^_i x_i| when
/// k0 c_i and k1 nearly cancel).
template <QuantFormat F, class Arch = xsimd::default_arch>
float dot_row(const std::uint8_t* packed_row, const GroupLayout& layout, const typename F::Params* params,
              const float* x) noexcept {
    constexpr std::size_t S = detail::small_unit_codes<Arch>;
    const std::size_t n = layout.cols, gc = layout.group_cols;
    if (n == 0 || gc == 0) return 0.0f;
    if (gc >= n) return detail::dot_row_grouped<F, Arch, 0>(packed_row, n, n, params, x);
    if (gc % S != 0) return detail::dot_row_ragged<F, Arch>(packed_row, layout, params, x);
    switch (gc / S) {  // the common group sizes with their units unrolled
        case 1: return detail::dot_row_grouped<F, Arch, 1>(packed_row, n, gc, params, x);
        case 2: return detail::dot_row_grouped<F, Arch, 2>(packed_row, n, gc, params, x);
        case 4: return detail::dot_row_grouped<F, Arch, 4>(packed_row, n, gc, params, x);
        case 8: return detail::dot_row_grouped<F, Arch, 8>(packed_row, n, gc, params, x);
        default: return detail::dot_row_grouped<F, Arch, 0>(packed_row, n, gc, params, x);
    }
}

// =============================================================================================
// integer activations: exact integer dot products
// =============================================================================================
namespace detail {

/// Elements per int32 accumulation chunk: |(u ^ flip) * s| <= 255 * 128 < 2^15, so a chunk sums
/// to less than 2^29 in any lane split; chunks are added in int64.
inline constexpr std::size_t dot_chunk = 16384;

/// sum_{i<n} int32(u[i] ^ flip) * int32(s[i]), n <= dot_chunk (generic: scalar).
template <bool Wide, class A>
std::int32_t dot_u8s8_chunk(const std::uint8_t* u, std::uint8_t flip, const std::int8_t* s, std::size_t n,
                            requires_arch<xsimd::generic>) noexcept {
    std::int32_t acc = 0;
    for (std::size_t i = 0; i < n; ++i) acc += std::int32_t(std::uint8_t(u[i] ^ flip)) * std::int32_t(s[i]);
    return acc;
}

#if XSIMD_WITH_AVX2
/// AVX2: vpmaddubsw (u8 x s8, adjacent pairs summed to s16 with saturation) then vpmaddwd with
/// ones (pairs to s32). A pair sum is exact when u <= 127 (2 * 127 * 128 < 2^15): !Wide (codes
/// of at most 7 bits). Wide (8-bit u) splits u = 16 h + l into nibbles: two exact vpmaddubsw,
/// the high one weighted by 16 in vpmaddwd.
template <bool Wide, class A>
std::int32_t dot_u8s8_chunk(const std::uint8_t* u, std::uint8_t flip, const std::int8_t* s, std::size_t n,
                            requires_arch<xsimd::avx2>) noexcept {
    const __m256i fv = _mm256_set1_epi8(static_cast<char>(flip));
    const __m256i ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16), low4 = _mm256_set1_epi8(0x0F);
    __m256i acc = _mm256_setzero_si256();
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i uv = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(u + i)), fv);
        const __m256i sv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
        if constexpr (Wide) {
            const __m256i lo = _mm256_and_si256(uv, low4), hi = _mm256_and_si256(_mm256_srli_epi16(uv, 4), low4);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, sv), ones));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, sv), sixteen));
        } else {
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(uv, sv), ones));
        }
    }
    const __m128i h = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    const __m128i q = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
    std::int32_t r = _mm_cvtsi128_si32(_mm_add_epi32(q, _mm_shuffle_epi32(q, 0xB1)));
    for (; i < n; ++i) r += std::int32_t(std::uint8_t(u[i] ^ flip)) * std::int32_t(s[i]);
    return r;
}
#endif

#if XSIMD_WITH_AVX512BW
/// AVX-512: with VNNI (compiled for it: __AVX512VNNI__, e.g. -march=native on Ice Lake / Zen 4)
/// vpdpbusd sums four u8 x s8 products into each s32 lane without intermediate saturation
/// (exact for every byte); without VNNI, the AVX2 scheme on 64 bytes. The tail (< 64 bytes)
/// is read with a masked load (no access past n).
template <bool Wide, class A>
std::int32_t dot_u8s8_chunk(const std::uint8_t* u, std::uint8_t flip, const std::int8_t* s, std::size_t n,
                            requires_arch<xsimd::avx512bw>) noexcept {
    const __m512i fv = _mm512_set1_epi8(static_cast<char>(flip));
    __m512i acc = _mm512_setzero_si512();
    auto step = [&](__m512i uv, __m512i sv) PTQ_ALWAYS_INLINE {
        uv = _mm512_xor_si512(uv, fv);
#if defined(__AVX512VNNI__)
        acc = _mm512_dpbusd_epi32(acc, uv, sv);
#else
        const __m512i ones = _mm512_set1_epi16(1);
        if constexpr (Wide) {
            const __m512i low4 = _mm512_set1_epi8(0x0F);
            const __m512i lo = _mm512_and_si512(uv, low4), hi = _mm512_and_si512(_mm512_srli_epi16(uv, 4), low4);
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(lo, sv), ones));
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(hi, sv), _mm512_set1_epi16(16)));
        } else {
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(uv, sv), ones));
        }
#endif
    };
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64) step(_mm512_loadu_si512(u + i), _mm512_loadu_si512(s + i));
    if (i < n) {
        // masked-off bytes of s are 0: (0 ^ flip) * 0 = 0.
        const __mmask64 m = (~__mmask64(0)) >> (64 - (n - i));
        step(_mm512_maskz_loadu_epi8(m, u + i), _mm512_maskz_loadu_epi8(m, s + i));
    }
    return _mm512_reduce_add_epi32(acc);
}
#endif

}  // namespace detail

/// Exact sum_{i<n} int64((u[i] ^ flip)) * s[i] (u read as unsigned bytes, s as signed).
/// Wide = false promises u[i] ^ flip <= 127 (codes of at most 7 bits); Wide = true accepts any
/// byte. Dispatch on Arch: AVX-512BW (VNNI vpdpbusd when compiled for it), AVX2 (vpmaddubsw),
/// else a scalar loop.
template <class Arch = xsimd::default_arch, bool Wide = true>
std::int64_t dot_u8s8(const std::uint8_t* u, std::uint8_t flip, const std::int8_t* s, std::size_t n) noexcept {
    std::int64_t total = 0;
    for (std::size_t i = 0; i < n; i += detail::dot_chunk) {
        const std::size_t m = n - i < detail::dot_chunk ? n - i : detail::dot_chunk;
        total += detail::dot_u8s8_chunk<Wide, Arch>(u + i, flip, s + i, m, Arch{});
    }
    return total;
}

/// Whether weights in format F and activations in format A have an integer kernel:
///  - F = IntFormat<4 or 8, any>, A = IntFormat<8, true, any range> (per-token or per-tensor);
///  - F = A = MxInt<8, K> (MXINT8 x MXINT8, same block).
template <class F, class A>
inline constexpr bool has_int_dot = false;
template <int B, bool S, IntRange R, IntRange RA>
inline constexpr bool has_int_dot<IntFormat<B, S, R>, IntFormat<8, true, RA>> = (B == 4 || B == 8);
template <std::size_t K>
inline constexpr bool has_int_dot<MxInt<8, K>, MxInt<8, K>> = true;

/// Signed activation codes q (int8) of a row of 8-bit activation codes: IntFormat<8, true>
/// stores q + 128 (q = c ^ 0x80 as int8); MxInt<8> stores q's two's complement (as is).
template <class A>
void activation_q(const std::uint8_t* codes, std::size_t n, std::int8_t* q) noexcept {
    for (std::size_t i = 0; i < n; ++i)
        q[i] = static_cast<std::int8_t>(A::kind == FormatKind::integer ? codes[i] ^ 0x80u : codes[i]);
}

/// The exact per-group integer dots of one packed weight row with signed activation codes q
/// (activation_q), groups from `layout` (the weight's):
///   IntFormat weights: I_g = sum_{i in g} (c_i - zero_g) * q_i
///   MxInt<8> weights:  I_g = sum_{i in g} sext(c_i) * q_i
/// computed as D_g - z_g * Q_g with D_g = dot_u8s8(u, q), u = c (IntFormat, z_g = zero_g) or
/// u = c ^ 0x80 = sext(c) + 128 (MxInt, z_g = 128), and Q_g = sum_{i in g} q_i = qsums[g].
/// 4-bit rows are unpacked into `scratch` (layout.cols bytes). out[g] for g < col_groups.
template <QuantFormat F, QuantFormat A, class Arch = xsimd::default_arch>
void int_group_dots(const std::uint8_t* packed_row, const GroupLayout& layout, const typename F::Params* params,
                    const std::int8_t* q, const std::int64_t* qsums, std::uint8_t* scratch,
                    std::int64_t* out) noexcept {
    static_assert(has_int_dot<F, A>,
                  "ptq::kernel::int_group_dots: integer kernels exist for IntFormat<4|8> weights x "
                  "IntFormat<8, true> activations and MxInt<8, K> x MxInt<8, K>");
    const std::uint8_t* u = packed_row;
    if constexpr (F::bits == 4) {
        unpack_bits<Arch>(packed_row, 0, layout.cols, 4, scratch);
        u = scratch;
    } else {
        (void)scratch;
    }
    constexpr std::uint8_t flip = F::kind == FormatKind::mx_integer ? 0x80 : 0x00;
    for (std::size_t g = 0; g < layout.col_groups(); ++g) {
        const std::size_t b = layout.group_begin(g), n = layout.group_end(g) - b;
        std::int64_t z;
        if constexpr (F::kind == FormatKind::mx_integer) z = 128;
        else z = params[g].zero;
        out[g] = dot_u8s8<Arch, (F::bits > 7)>(u + b, flip, q + b, n) - z * qsums[g];
    }
}

// ---------------------------------------------------------------------------------------------
// fused integer rows: 32-code blocks, float accumulation of exact per-lane integer dots
// ---------------------------------------------------------------------------------------------

/// Distance in bytes of int_dot_row's software prefetch in the code stream (half of it in the
/// parameter stream), groups of 32: out of cache (256 MiB of int4 weights, one thread) it raised
/// the kernel from 72 % to 84 % of the read bandwidth of a plain SIMD sum in the same run
/// (4096 bytes: lower).
inline constexpr std::size_t int_dot_prefetch = 2048;
/// Codes per block of int_dot_row (one 256-bit vector of bytes).
inline constexpr std::size_t int_block = 32;

/// Whether int_dot_row exists for Arch: x86 AVX2 or AVX-512BW (in xsimd the AVX-512 archs do
/// not derive from avx2), compiled for it.
template <class Arch>
inline constexpr bool has_int_dot_row =
#if XSIMD_WITH_AVX2
    std::is_base_of_v<xsimd::avx2, Arch> || std::is_base_of_v<xsimd::avx512bw, Arch>;
#else
    false;
#endif

/// Whether int_dot_row<..., Arch> takes rows of `layout` (the weight's): Arch has it and the
/// row length and the group size are multiples of int_block (a shorter last group is fine).
/// Other layouts go through int_group_dots.
template <class Arch>
bool int_dot_row_fits(const GroupLayout& layout) noexcept {
    return has_int_dot_row<Arch> && layout.cols % int_block == 0 && layout.group_cols % int_block == 0;
}

/// Prepares one activation row (n codes of format A, n a multiple of int_block) for
/// int_dot_row with F weights; done once per token, reused by every weight row:
///  - q[n]: the signed codes (activation_q), reordered within each 32-block to the order of the
///    kernel's unpacked weight bytes. 4-bit weights: packed byte k holds code 2k (low nibble) and
///    2k+1 (high nibble), so the 16 bytes of a block unpack with one AND and one shift to
///    [c_0, c_2, ..., c_30 | c_1, c_3, ..., c_31]; q is stored [q_0, q_2, ..., q_30, q_1, ...].
///    8-bit weights: in order.
///  - lane_neg[n / 4]: minus the sum of the 4 reordered q of each int32 lane (4 consecutive
///    bytes), |lane_neg| <= 512: the zero-point term of that lane is z * lane_neg.
template <QuantFormat F, QuantFormat A>
void prepare_int_acts(const std::uint8_t* codes, std::size_t n, std::int8_t* q, std::int32_t* lane_neg) noexcept {
    activation_q<A>(codes, n, q);
    if constexpr (F::bits == 4) {
        for (std::size_t b = 0; b < n; b += int_block) {
            std::int8_t t[int_block];
            for (std::size_t k = 0; k < int_block / 2; ++k) {
                t[k] = q[b + 2 * k];
                t[int_block / 2 + k] = q[b + 2 * k + 1];
            }
            std::memcpy(q + b, t, int_block);
        }
    }
    for (std::size_t l = 0; l < n / 4; ++l)
        lane_neg[l] = -(std::int32_t(q[4 * l]) + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3]);
}

/// y = sum_i w^_i x^_i of one packed weight row (F) with one prepared activation row
/// (prepare_int_acts; xp: the activation row's parameters, one for IntFormat, one per block for
/// MxInt), for layouts where int_dot_row_fits.
///
/// Evaluation, per 32-block j of group g: the weight bytes u (4-bit: unpacked with one AND and
/// one shift; IntFormat: u = c, z = zero_g; MxInt: u = c ^ 0x80 = sext(c) + 128, z = 128) and
/// the reordered q give, in each of 8 int32 lanes l (4 bytes each),
///   I_jl = sum_{i in lane} (u_i - z) q_i = z * lane_neg_l + sum u_i q_i      (exact int32:
///   vpdpbusd with AVX-512 VNNI (256-bit, AVX512VL), else vpmaddubsw + vpmaddwd; 8-bit u on
///   AVX2 is split into nibbles so that vpmaddubsw cannot saturate),
/// |I_jl| <= 4 * 255 * 128 < 2^24, so float(I_jl) is exact. Then, in 8 float lanes,
///   IntFormat: acc_l = fma(float(I_jl), s_g, acc_l)           (one rounding, to nearest)
///   MxInt:     acc_l = fma(float(I_jl), 2^(e_w,j + e_x,j - 12), acc_l) when the factor is
///              a normal float, else fma(float(I_jl) * 2^(e_w,j - 6), 2^(e_x,j - 6), acc_l)
///              (NaN scale bytes, under/overflow; the product by a power of two is exact
///              unless it under/overflows): one rounding either way
/// into four accumulators acc_k, k = block index mod 4 (of the row for groups of 32, of the group
/// otherwise; a group's last 1-3 blocks go to acc_0, acc_1, acc_2), each in block order; then
/// acc = (acc_0 + acc_1) + (acc_2 + acc_3), y = hadd(acc) (log2 8 = 3 pairwise additions), times
/// s_x for IntFormat activations (one rounding). Without FMA (AVX2 compiled without it) the fma
/// is a multiplication and an addition (two roundings).
///
/// Error bound (no overflow or underflow; w^, x^ the exact dequantized values, u = 2^-24): an
/// accumulator takes at most ceil(cols / 64) blocks (the worst case, groups of 64, alternates
/// two), so every term goes through at most r = ceil(cols / 64) + 6 roundings with FMA
/// (2 * ceil(cols / 64) + 6 without), and |y - sum_i w^_i x^_i| <= r * u * sum_i |w^_i x^_i| to
/// first order (the I_jl are exact and |I_jl| <= sum over the lane of |(u_i - z) q_i|). NaN
/// parameters give NaN.
template <QuantFormat F, QuantFormat A, class Arch = xsimd::default_arch>
float int_dot_row(const std::uint8_t* packed_row, const GroupLayout& layout, const typename F::Params* wp,
                  const std::int8_t* q, const std::int32_t* lane_neg, const typename A::Params* xp) noexcept {
    static_assert(has_int_dot<F, A>, "ptq::kernel::int_dot_row: see has_int_dot");
    static_assert(has_int_dot_row<Arch>, "ptq::kernel::int_dot_row: needs AVX2 (check int_dot_row_fits)");
#if XSIMD_WITH_AVX2
    constexpr bool mx = F::kind == FormatKind::mx_integer;
    constexpr bool vnni =
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
        std::is_base_of_v<xsimd::avx512bw, Arch>;
#else
        false;
#endif
    const std::size_t n = layout.cols, gc = layout.group_cols;
    const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
    auto fmadd = [](__m256 a, __m256 b, __m256 c) PTQ_ALWAYS_INLINE {
#if defined(__FMA__)
        return _mm256_fmadd_ps(a, b, c);
#else
        return _mm256_add_ps(_mm256_mul_ps(a, b), c);
#endif
    };
    // Group g's constants: vpmaddwd of lane_neg (int32 in [-512, 512]: low int16 = value,
    // high = sign) with (z, 0) pairs gives z * lane_neg exactly (|z| <= 255).
    struct Group {
        __m256i zv;
        __m256 sv;
    };
    auto group = [&](std::size_t g) PTQ_ALWAYS_INLINE {
        if constexpr (mx) return Group{_mm256_set1_epi32(128), _mm256_setzero_ps()};  // scales: per block
        else return Group{_mm256_set1_epi32(wp[g].zero), _mm256_set1_ps(wp[g].scale)};
    };
    // acc += the 8 lanes of block [i, i + 32) of a group with constants gr.
    auto block = [&](std::size_t i, const Group& gr, __m256& acc) PTQ_ALWAYS_INLINE {
        __m256i u;
        if constexpr (F::bits == 4) {
            const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed_row + i / 2));
            u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), low4);
        } else {
            u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(packed_row + i));
            if constexpr (mx) u = _mm256_xor_si256(u, _mm256_set1_epi8(static_cast<char>(0x80)));
        }
        const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i));
        __m256i d = _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(lane_neg + i / 4)), gr.zv);
        if constexpr (vnni) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
            d = _mm256_dpbusd_epi32(d, u, qv);
#endif
        } else if constexpr (F::bits == 4) {
            d = _mm256_add_epi32(d, _mm256_madd_epi16(_mm256_maddubs_epi16(u, qv), ones));
        } else {
            const __m256i lo = _mm256_and_si256(u, low4), hi = _mm256_and_si256(_mm256_srli_epi16(u, 4), low4);
            d = _mm256_add_epi32(d, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, qv), ones));
            d = _mm256_add_epi32(d, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, qv), sixteen));
        }
        const __m256 fi = _mm256_cvtepi32_ps(d);
        if constexpr (mx) {
            // factor 2^(e_w + e_x - 12) in one step when it is a normal float (then equal to the
            // two exact steps below); NaN bytes, under- or overflow: the two steps.
            const std::uint8_t bw = wp[i / int_block].scale_byte, bx = xp[i / int_block].scale_byte;
            const int e = E8M0::exponent(bw) + E8M0::exponent(bx) - F::fraction_bits - A::fraction_bits;
            if (e >= -126 && e <= 127 && !E8M0::is_nan(bw) && !E8M0::is_nan(bx)) [[likely]]
                acc = fmadd(fi, _mm256_set1_ps(detail::pow2(e)), acc);
            else
                acc = fmadd(_mm256_mul_ps(fi, _mm256_set1_ps(detail::DequantConstants<F>(wp[i / int_block]).k0)),
                            _mm256_set1_ps(detail::DequantConstants<A>(xp[i / int_block]).k0), acc);
        } else {
            acc = fmadd(fi, gr.sv, acc);
        }
    };
    // Four accumulators (the fma latency would otherwise bound the loop): blocks 4m + k of the
    // row (groups of 32) or of the group (larger groups; a group's last 1-3 blocks go to
    // acc0, acc1, acc2) go to acc_k.
    // A hint only (may point past the row: the address is formed as an integer, not dereferenced).
    auto prefetch = [](const void* p, std::size_t ahead) PTQ_ALWAYS_INLINE {
        _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) + ahead), _MM_HINT_T0);
    };
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    std::size_t i = 0;
    if (gc == int_block) {
        for (; i + 4 * int_block <= n; i += 4 * int_block) {
            prefetch(packed_row, i * F::bits / 8 + int_dot_prefetch);
            if constexpr (F::bits == 8) prefetch(packed_row, i + 64 + int_dot_prefetch);  // two lines per step
            prefetch(wp + i / int_block, int_dot_prefetch / 2);
            block(i, group(i / int_block), acc0);
            block(i + int_block, group(i / int_block + 1), acc1);
            block(i + 2 * int_block, group(i / int_block + 2), acc2);
            block(i + 3 * int_block, group(i / int_block + 3), acc3);
        }
        if (i + int_block <= n) block(i, group(i / int_block), acc0), i += int_block;
        if (i + int_block <= n) block(i, group(i / int_block), acc1), i += int_block;
        if (i + int_block <= n) block(i, group(i / int_block), acc2);
    } else {
        for (std::size_t b0 = 0, g = 0; b0 < n; b0 += gc, ++g) {
            const std::size_t b1 = b0 + gc < n ? b0 + gc : n;
            const Group gr = group(g);
            for (i = b0; i + 4 * int_block <= b1; i += 4 * int_block) {
                block(i, gr, acc0);
                block(i + int_block, gr, acc1);
                block(i + 2 * int_block, gr, acc2);
                block(i + 3 * int_block, gr, acc3);
            }
            if (i + int_block <= b1) block(i, gr, acc0), i += int_block;
            if (i + int_block <= b1) block(i, gr, acc1), i += int_block;
            if (i + int_block <= b1) block(i, gr, acc2);
        }
    }
    const __m256 acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));
    const float y = _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
    if constexpr (mx) return y;
    else return y * xp[0].scale;
#else
    (void)packed_row, (void)layout, (void)wp, (void)q, (void)lane_neg, (void)xp;
    return 0.0f;
#endif
}

}  // namespace ptq::kernel
