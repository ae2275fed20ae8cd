#pragma once
// SIMD kernels used by the quantizers. Each is written once over xsimd::batch<T, Arch>, takes
// the architecture as a template parameter (default xsimd::default_arch), and equals its
// scalar twin in kernel/reference.hpp bit for bit, for every length (tails go through the
// scalar formula or a zero-padded local copy; nothing reads or writes outside the caller's
// buffers).
//
//   range<Arch>(x, n)                      min/max of the finite values + non-finite flag
//   quantize_group<F, Arch>(x, n, p, r, c) float -> one code per byte (F's exact numerics)
//   pack_bits<Arch> / unpack_bits<Arch>    canonical LE bit stream <-> one code per byte
//   dequantize_row<F, Arch>                fused unpack + dequantize of one packed row
//   rtn_row<F, Arch>(x, cols, gc, o, p, out) min-max parameters + codes + packing of one row
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include <ptq/kernel/xsimd.hpp>

#include <ptq/format/concepts.hpp>
#include <ptq/format/e8m0.hpp>
#include <ptq/format/int_format.hpp>
#include <ptq/format/int_min_format.hpp>
#include <ptq/format/minifloat.hpp>
#include <ptq/format/mx_fp.hpp>
#include <ptq/format/mx_int.hpp>
#include <ptq/format/range.hpp>
#include <ptq/granularity/granularity.hpp>
#include <ptq/kernel/packing.hpp>
#include <ptq/kernel/reference.hpp>
#include <ptq/kernel/simd_detail.hpp>

namespace ptq::kernel {

// =============================================================================================
// range
// =============================================================================================

/// Range of x[0..n): lo/hi over the finite values, non_finite if a NaN or +-Inf is present;
/// equal to ref::range field by field, bit for bit. Fast path: plain per-lane min/max of the
/// values and the per-lane maximum of |bits| (x & 0x7FFFFFFF as int32); when that maximum is
/// below 0x7F800000 every value is finite and lo/hi are the result. Otherwise (a NaN or Inf
/// seen) the group is redone with per-lane min/max of the finite values (non-finite lanes
/// replaced by +-Inf, which never wins). The reference keeps the *first* element among equal
/// minima, so when the minimum (maximum) is a zero its sign is taken from the first zero of x,
/// exactly as the reference does. Always inlined: returned through the ABI, the struct's bool
/// is stored as a byte and reloaded as a word (a store-forwarding stall per group).
template <class Arch = xsimd::default_arch>
PTQ_ALWAYS_INLINE inline RangeStats range(const float* x, std::size_t n) noexcept {
    using B = detail::fbatch<Arch>;
    using I = detail::ibatch<Arch>;
    constexpr std::size_t W = B::size;
    constexpr float inf = std::numeric_limits<float>::infinity();
    RangeStats s;
    std::size_t i = 0;
    if (n >= W) {
        const B pinf(inf), ninf(-inf);
        B lo = pinf, hi = ninf;
        const I abs_mask(0x7FFFFFFF);
        I mag(0);
        for (; i + W <= n; i += W) {
            const B v = B::load_unaligned(x + i);
            lo = xsimd::min(lo, v);
            hi = xsimd::max(hi, v);
            mag = xsimd::max(mag, xsimd::bitwise_cast<I>(v) & abs_mask);
        }
        if (xsimd::any(mag > I(0x7F7FFFFF))) {  // a NaN or Inf: min/max over the finite lanes only
            lo = pinf;
            hi = ninf;
            for (i = 0; i + W <= n; i += W) {
                const B v = B::load_unaligned(x + i);
                const auto f = xsimd::abs(v) < pinf;  // false for NaN and +-Inf
                lo = xsimd::min(lo, xsimd::select(f, v, pinf));
                hi = xsimd::max(hi, xsimd::select(f, v, ninf));
            }
            s.non_finite = true;
        }
        s.lo = detail::reduce_min<Arch>(lo, Arch{});
        s.hi = detail::reduce_max<Arch>(hi, Arch{});
    }
    for (; i < n; ++i) s.add(x[i]);
    // Sign of a zero extremum: the reference keeps the first element equal to it.
    if (s.lo == 0.0f || s.hi == 0.0f) [[unlikely]] {
        for (std::size_t k = 0; k < n; ++k)
            if (x[k] == 0.0f) {
                if (s.lo == 0.0f) s.lo = x[k];
                if (s.hi == 0.0f) s.hi = x[k];
                break;
            }
    }
    return s;
}

// =============================================================================================
// per-format SIMD encoders and decoders
// =============================================================================================
namespace detail {

/// 2^e as float for e in [-149, 127], exact: the bit pattern for normal results, ldexp (as
/// ptq::detail::exp2i) only for the subnormal ones. Avoids a libm call per MX block.
inline float pow2(int e) noexcept {
    return e >= -126 ? std::bit_cast<float>(static_cast<std::uint32_t>(e + 127) << 23) : ptq::detail::exp2i(e);
}

/// Minifloat<E, M>::encode on a batch, bit for bit, always saturating (the quantizers' mode).
///   a = |y|; sign = sign bit of y moved to bit E+M;
///   a <  2^(1-bias) (subnormal target): mag = round_R(a * 2^-(1-bias-M))  (exact scaling);
///   a >= 2^(1-bias): round the float's bit pattern to M mantissa bits (R = half_even: add
///     2^(22-M) - 1 + lowest kept bit; half_away: add 2^(22-M)), shift, rebias the exponent:
///     identical to round_R(a * 2^(M-e)) with the carry into the next binade;
///   mag > max_finite (incl. +-Inf) -> max_finite (saturate);
///   NaN -> sign | NaN code for E4M3/E5M2, 0 for the FP6/FP4 types (as the reference).
template <class Elem, Rounding R, class A>
ubatch<A> encode_minifloat(const fbatch<A>& y) noexcept {
    using U = ubatch<A>;
    constexpr int M = Elem::mantissa_bits;
    constexpr int sh = 23 - M;
    const U u = xsimd::bitwise_cast<U>(y);
    const U abits = u & U(0x7FFFFFFFu);
    const U sign = (u >> 31) << Elem::sign_shift;
    // subnormal target range
    const fbatch<A> a = xsimd::bitwise_cast<fbatch<A>>(abits);
    constexpr float min_normal = static_cast<float>(1.0 / double(1ull << (Elem::bias - 1)));  // 2^(1-bias)
    const fbatch<A> a_sub = xsimd::min(a, fbatch<A>(min_normal));  // keeps the conversion in range
    const U sub = xsimd::bitwise_cast<U>(xsimd::batch_cast<std::int32_t>(
        round_integral<R, A>(a_sub * fbatch<A>(ptq::detail::exp2i(-Elem::min_subnormal_exponent)))));
    // normal target range: rounding on the bit pattern
    U rb;
    if constexpr (R == Rounding::half_even) rb = abits + U((1u << (sh - 1)) - 1u) + ((abits >> sh) & U(1u));
    else rb = abits + U(1u << (sh - 1));
    const U norm =
        xsimd::min((rb >> sh) - U(static_cast<std::uint32_t>(127 - Elem::bias) << M), U(Elem::max_finite_magnitude));
    const U code = sign | xsimd::select(abits < U(std::bit_cast<std::uint32_t>(min_normal)), sub, norm);
    if constexpr (Elem::has_nan) {
        return xsimd::select(abits > U(0x7F800000u), sign | U(Elem::nan_magnitude), code);
    } else {
        return xsimd::select(abits > U(0x7F800000u), U(0u), code);
    }
}

/// E2M1 (FP4) encode, bit for bit Minifloat<2, 1>::encode (saturating), without the generic
/// float-bit rounding: the 8 magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6} are the grid of step 0.5 on
/// [0, 2) (codes 0-4), of step 1 on [2, 4) (codes 4-6) and of step 2 on [4, 8) (codes 6-7), so
/// with a = |y| and k = [a >= 2] + [a >= 4]:
///   mag = min(round_R(a * 2^(1-k)) + 2k, 7)   (unsigned min), code = sign | mag, NaN -> 0.
/// a * 2^(1-k) is exact (a power-of-two scaling of a finite a: a * 2 for a < 2 is the reference's
/// own subnormal-range product, a * 1 and a * 0.5 for a >= 2 stay normal), so the one rounding is
/// the reference's: a tie at a midpoint (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5) goes to the even
/// code under half_even (2k is even: the code's parity is the rounded value's), away from zero
/// under half_away. Saturation: a in [6, 8) gives 7 or 8 -> 7; a >= 8 (finite or +Inf) gives a
/// rounded value >= 4 or round_to_int32's INT_MIN, 0x80000000 + 2k as unsigned -> 7.
/// The multiplier and the offset are chosen by two compares and blends (mask registers on
/// AVX-512). NaN: both compares false, t NaN, the code forced to 0.
template <Rounding R, class A>
PTQ_ALWAYS_INLINE inline ubatch<A> encode_e2m1(const fbatch<A>& y) noexcept {
    using U = ubatch<A>;
    using Fb = fbatch<A>;
    const U u = xsimd::bitwise_cast<U>(y);
    const U abits = u & U(0x7FFFFFFFu);
    const Fb a = xsimd::bitwise_cast<Fb>(abits);
    const auto ge2 = a >= Fb(2.0f), ge4 = a >= Fb(4.0f);
    const Fb t = a * xsimd::select(ge2, xsimd::select(ge4, Fb(0.5f), Fb(1.0f)), Fb(2.0f));
    using I = ibatch<A>;
    const I off = xsimd::select(xsimd::bool_cast(ge2), xsimd::select(xsimd::bool_cast(ge4), I(4), I(2)), I(0));  // 2k
    const U q = xsimd::bitwise_cast<U>(round_to_int32<R, A>(t, A{}) + off);
    const U code = xsimd::min(q, U(7u)) | ((u >> 31) << 3);
    const auto nan = xsimd::bitwise_cast<I>(abits) > I(0x7F800000);
    return xsimd::bitwise_cast<U>(xsimd::select(nan, I(0), xsimd::bitwise_cast<I>(code)));
}

/// Minifloat encode on a batch, saturating (encode_minifloat; E2M1 through encode_e2m1).
template <class Elem, Rounding R, class A>
PTQ_ALWAYS_INLINE inline ubatch<A> encode_element(const fbatch<A>& y) noexcept {
    if constexpr (Elem::exponent_bits == 2 && Elem::mantissa_bits == 1) return encode_e2m1<R, A>(y);
    else return encode_minifloat<Elem, R, A>(y);
}

/// Minifloat<E, M>::decode on a batch, bit for bit: the value is built as a float bit
/// pattern (normal codes: exponent ef - bias + 127, mantissa mf << (23 - M); subnormal codes:
/// float(mf) * 2^(1-bias-M), the reference's own exact product), then the sign; NaN codes give
/// the reference's quiet_NaN (0x7FC00000), E5M2 infinities +-Inf.
template <class Elem, class A>
fbatch<A> decode_minifloat_bits(const ubatch<A>& code) noexcept {
    using U = ubatch<A>;
    using Fb = fbatch<A>;
    constexpr int M = Elem::mantissa_bits;
    const U c = code & U((1u << Elem::bits) - 1u);
    const U mag = c & U(Elem::magnitude_mask);
    const U neg = (c >> Elem::sign_shift) << 31;
    const U ef = mag >> M;
    const U mf = mag & U((1u << M) - 1u);
    const U nbits = ((ef + U(static_cast<std::uint32_t>(127 - Elem::bias))) << 23) | (mf << (23 - M));
    const Fb sub = xsimd::batch_cast<float>(xsimd::bitwise_cast<ibatch<A>>(mf)) *
                   Fb(ptq::detail::exp2i(Elem::min_subnormal_exponent));
    U v = xsimd::select(ef == U(0u), xsimd::bitwise_cast<U>(sub), nbits) | neg;
    if constexpr (Elem::has_inf) v = xsimd::select(mag == U(Elem::inf_magnitude), neg | U(0x7F800000u), v);
    if constexpr (Elem::has_nan) {
        const auto nan = Elem::has_inf ? (mag > U(Elem::inf_magnitude)) : (mag == U(Elem::nan_magnitude));
        v = xsimd::select(nan, U(0x7FC00000u), v);
    }
    return xsimd::bitwise_cast<Fb>(v);
}

/// E2M1 (FP4) decode, the bits of Minifloat<2, 1>::decode: generic = the bit construction
/// above; AVX2 / AVX-512 = a table lookup of the 8 magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6}
/// (exact floats) with the sign from code bit 3 (code 8 = -0).
template <class A>
fbatch<A> decode_e2m1(const ubatch<A>& code, requires_arch<xsimd::generic>) noexcept {
    return decode_minifloat_bits<Minifloat<2, 1>, A>(code);
}
#if XSIMD_WITH_AVX2
template <class A>
fbatch<A> decode_e2m1(const ubatch<A>& code, requires_arch<xsimd::avx2>) noexcept {
    const __m256 mag = _mm256_permutevar8x32_ps(_mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f),
                                                code);  // index: bits 0-2
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(code, _mm256_set1_epi32(8)), 28);
    return _mm256_or_ps(mag, _mm256_castsi256_ps(sign));
}
#endif
#if XSIMD_WITH_AVX512F
template <class A>
fbatch<A> decode_e2m1(const ubatch<A>& code, requires_arch<xsimd::avx512f>) noexcept {
    const __m512 table = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,  //
                                        -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
    return _mm512_permutexvar_ps(code, table);  // index: bits 0-3
}
#endif

/// Minifloat decode on a batch (decode_minifloat_bits; E2M1 through decode_e2m1).
template <class Elem, class A>
PTQ_ALWAYS_INLINE inline fbatch<A> decode_minifloat(const ubatch<A>& code) noexcept {
    if constexpr (Elem::exponent_bits == 2 && Elem::mantissa_bits == 1) return decode_e2m1<A>(code, A{});
    else return decode_minifloat_bits<Elem, A>(code);
}

/// The per-group constants of F's quantizer, broadcast once per group, and the encoder.
template <class F, Rounding R, class A>
struct Encoder;

/// IntFormat: c = clamp(round_R(x * (1/scale)) + zero, code_min, code_max) (multiply by the
/// float reciprocal, then one rounding, then the exact integer add, then the clamp: xsimd
/// max(t, lo) returns lo for a NaN t like std::fmax).
template <int Bits, bool Sym, IntRange Rg, Rounding R, class A>
struct Encoder<IntFormat<Bits, Sym, Rg>, R, A> {
    using F = IntFormat<Bits, Sym, Rg>;
    fbatch<A> inv, zero, lo, hi;
    static float multiplier(const typename F::Params& p) noexcept { return 1.0f / p.scale; }
    Encoder(const typename F::Params& p, float m) noexcept
        : inv(m), zero(float(p.zero)), lo(float(F::code_min)), hi(float(F::code_max)), zero_i(p.zero) {}
    explicit Encoder(const typename F::Params& p) noexcept : Encoder(p, multiplier(p)) {}
    ubatch<A> operator()(const fbatch<A>& x) const noexcept {
        fbatch<A> t = round_integral<R, A>(x * inv) + zero;
        t = xsimd::min(xsimd::max(t, lo), hi);
        return xsimd::bitwise_cast<ubatch<A>>(xsimd::batch_cast<std::int32_t>(t));
    }
    /// The integer form (rtn_row): raw(x) = int(round_R(x * inv)) + zero (round_to_int32, exact
    /// int add), below raw_overflow when x * inv is NaN, +-Inf or at least 2^31 in magnitude,
    /// i.e. for a NaN / Inf x (inv is finite and positive, or NaN). Elsewhere
    /// codes(raw(x)) == operator()(x): the float sum round(x * inv) + zero is exact below 2^24
    /// and beyond it both forms clamp to the same end.
    ibatch<A> raw(const fbatch<A>& x) const noexcept { return round_to_int32<R, A>(x * inv, A{}) + ibatch<A>(zero_i); }
    ubatch<A> codes(const ibatch<A>& q) const noexcept {
        return xsimd::bitwise_cast<ubatch<A>>(xsimd::min(xsimd::max(q, ibatch<A>(code_lo)), ibatch<A>(code_hi)));
    }
    static constexpr std::int32_t code_lo = F::code_min, code_hi = F::code_max;  // codes(q) = clamp(q, lo, hi)
    std::int32_t zero_i;
};

/// IntMinFormat: c = clamp(round_R((x - min) * (1/scale)), 0, 2^b - 1) (float subtraction,
/// multiplication by the float reciprocal, one rounding, clamp), as the reference.
template <int Bits, Rounding R, class A>
struct Encoder<IntMinFormat<Bits>, R, A> {
    using F = IntMinFormat<Bits>;
    fbatch<A> inv, mn, hi;
    explicit Encoder(const typename F::Params& p) noexcept : inv(1.0f / p.scale), mn(p.min), hi(float(F::levels)) {}
    ubatch<A> operator()(const fbatch<A>& x) const noexcept {
        fbatch<A> t = round_integral<R, A>((x - mn) * inv);
        t = xsimd::min(xsimd::max(t, fbatch<A>(0.0f)), hi);
        return xsimd::bitwise_cast<ubatch<A>>(xsimd::batch_cast<std::int32_t>(t));
    }
};

/// MxInt: q = clamp(round_R((x * 2^-e) * 2^(d-2)), -(2^(d-1)-1), 2^(d-1)-1), stored as its
/// low d bits (two's complement). Two exact power-of-two multiplications, as the reference.
template <int Bits, std::size_t Blk, Rounding R, class A>
struct Encoder<MxInt<Bits, Blk>, R, A> {
    using F = MxInt<Bits, Blk>;
    fbatch<A> s1, s2, lo, hi;
    static float multiplier(const typename F::Params& p) noexcept { return pow2(-E8M0::exponent(p.scale_byte)); }
    Encoder(const typename F::Params&, float m) noexcept
        : s1(m), s2(float(1 << F::fraction_bits)), lo(float(F::q_min)), hi(float(F::q_max)) {}
    explicit Encoder(const typename F::Params& p) noexcept : Encoder(p, multiplier(p)) {}
    ubatch<A> operator()(const fbatch<A>& x) const noexcept {
        fbatch<A> t = round_integral<R, A>((x * s1) * s2);
        t = xsimd::min(xsimd::max(t, lo), hi);
        return xsimd::bitwise_cast<ubatch<A>>(xsimd::batch_cast<std::int32_t>(t)) & ubatch<A>(F::code_mask);
    }
    /// The integer form (rtn_row), as IntFormat's: raw(x) = int(round_R((x * s1) * s2)), below
    /// raw_overflow for a NaN / Inf x (s1, s2 are positive powers of two); codes(raw(x)) ==
    /// operator()(x) elsewhere (|(x * s1) * s2| < 2^(d-1) + 1 for the block's own scale).
    ibatch<A> raw(const fbatch<A>& x) const noexcept { return round_to_int32<R, A>((x * s1) * s2, A{}); }
    ubatch<A> codes(const ibatch<A>& q) const noexcept {
        return xsimd::bitwise_cast<ubatch<A>>(xsimd::min(xsimd::max(q, ibatch<A>(F::q_min)), ibatch<A>(F::q_max))) &
               ubatch<A>(F::code_mask);
    }
};

/// Scaled minifloat: code = encode(x * (1/scale)), saturating. In two steps for rtn_row:
/// y = scaled(x), code = encode(y).
template <int E, int M, Rounding R, class A>
struct Encoder<Minifloat<E, M>, R, A> {
    using F = Minifloat<E, M>;
    fbatch<A> inv;
    static float multiplier(const typename F::Params& p) noexcept { return 1.0f / p.scale; }
    Encoder(const typename F::Params&, float m) noexcept : inv(m) {}
    explicit Encoder(const typename F::Params& p) noexcept : Encoder(p, multiplier(p)) {}
    fbatch<A> scaled(const fbatch<A>& x) const noexcept { return x * inv; }
    ubatch<A> encode(const fbatch<A>& y) const noexcept { return encode_element<F, R, A>(y); }
    ubatch<A> operator()(const fbatch<A>& x) const noexcept { return encode(scaled(x)); }
};

/// MXFP: code = encode(x * 2^-e), saturating (y = scaled(x), code = encode(y), as the minifloat's).
template <int E, int M, std::size_t Blk, Rounding R, class A>
struct Encoder<MxFp<E, M, Blk>, R, A> {
    using F = MxFp<E, M, Blk>;
    fbatch<A> s;
    static float multiplier(const typename F::Params& p) noexcept { return pow2(-E8M0::exponent(p.scale_byte)); }
    Encoder(const typename F::Params&, float m) noexcept : s(m) {}
    explicit Encoder(const typename F::Params& p) noexcept : Encoder(p, multiplier(p)) {}
    fbatch<A> scaled(const fbatch<A>& x) const noexcept { return x * s; }
    ubatch<A> encode(const fbatch<A>& y) const noexcept { return encode_element<typename F::element, R, A>(y); }
    ubatch<A> operator()(const fbatch<A>& x) const noexcept { return encode(scaled(x)); }
};

/// Dequantization constants of one group as two floats (k0, k1); decode(c, k0, k1) works on
/// broadcast or per-lane constants alike.
///   IntFormat: k0 = scale, k1 = float(zero);   x^ = k0 * (float(c) - k1)  (two roundings, no fma)
///   IntMinFormat: k0 = scale, k1 = min;        x^ = k0 * float(c) + k1  (exact product: one rounding,
///              fused or not)
///   MxInt:     k0 = 2^(e-(d-2)) (quiet NaN for byte 255);  x^ = float(sext(c)) * k0
///   Minifloat: k0 = scale;                      x^ = k0 * decode(c)
///   MxFp:      k0 = 2^e (quiet NaN for byte 255);          x^ = decode(c) * k0
/// (NaN * finite returns the NaN operand, so NaN groups give the reference's quiet_NaN.)
template <class F>
struct DequantConstants {
    float k0 = 0.0f, k1 = 0.0f;
    explicit DequantConstants(const typename F::Params& p) noexcept {
        if constexpr (F::kind == FormatKind::integer) {
            k0 = p.scale;
            k1 = float(p.zero);
        } else if constexpr (F::kind == FormatKind::integer_min) {
            k0 = p.scale;
            k1 = p.min;
        } else if constexpr (F::kind == FormatKind::mx_integer) {
            k0 = E8M0::is_nan(p.scale_byte) ? std::numeric_limits<float>::quiet_NaN()
                                            : pow2(E8M0::exponent(p.scale_byte) - F::fraction_bits);
        } else if constexpr (F::kind == FormatKind::minifloat) {
            k0 = p.scale;
        } else {
            k0 = E8M0::is_nan(p.scale_byte) ? std::numeric_limits<float>::quiet_NaN()
                                            : pow2(E8M0::exponent(p.scale_byte));
        }
    }
};

template <class F, class A>
PTQ_ALWAYS_INLINE inline fbatch<A> dequantize_codes(const ubatch<A>& c, const fbatch<A>& k0,
                                                    const fbatch<A>& k1) noexcept {
    if constexpr (F::kind == FormatKind::integer) {
        return k0 * (xsimd::batch_cast<float>(xsimd::bitwise_cast<ibatch<A>>(c)) - k1);
    } else if constexpr (F::kind == FormatKind::integer_min) {
        return k0 * xsimd::batch_cast<float>(xsimd::bitwise_cast<ibatch<A>>(c)) + k1;
    } else if constexpr (F::kind == FormatKind::mx_integer) {
        (void)k1;
        constexpr std::uint32_t sb = 1u << (F::bits - 1);  // sign extension: (c ^ s) - s
        const ibatch<A> q =
            xsimd::bitwise_cast<ibatch<A>>(c ^ ubatch<A>(sb)) - ibatch<A>(static_cast<std::int32_t>(sb));
        return xsimd::batch_cast<float>(q) * k0;
    } else if constexpr (F::kind == FormatKind::minifloat) {
        (void)k1;
        return k0 * decode_minifloat<F, A>(c);
    } else {
        (void)k1;
        return decode_minifloat<typename F::element, A>(c) * k0;
    }
}

/// A batch of codes [i0, i0 + W) that spans several groups (g = group of i0): per-lane constants.
template <class F, class A>
[[gnu::noinline]] fbatch<A> dequantize_straddling(const ubatch<A>& c, const GroupLayout& layout,
                                                  const typename F::Params* params, std::size_t i0,
                                                  std::size_t g) noexcept {
    constexpr std::size_t W = fbatch<A>::size;
    alignas(64) float a0[W], a1[W];
    std::size_t ge = layout.group_end(g);
    for (std::size_t l = 0; l < W; ++l) {
        while (i0 + l >= ge && g + 1 < layout.col_groups()) ge = layout.group_end(++g);
        const DequantConstants<F> kl(params[g]);
        a0[l] = kl.k0;
        a1[l] = kl.k1;
    }
    return dequantize_codes<F, A>(c, fbatch<A>::load_aligned(a0), fbatch<A>::load_aligned(a1));
}

template <QuantFormat F, Rounding R, class A>
void quantize_simd(const float* x, std::size_t n, const typename F::Params& p, std::uint8_t* codes) noexcept {
    constexpr std::size_t W = fbatch<A>::size;
    const Encoder<F, R, A> enc(p);
    std::size_t i = 0;
    for (; i + W <= n; i += W) store_bytes<A>(enc(fbatch<A>::load_unaligned(x + i)), codes + i);
    for (; i < n; ++i) codes[i] = F::quantize(x[i], p, R);
}

// ---- min-max parameters of W groups at once ------------------------------------------------
/// MinMaxParams<F, R, A>::make(lo, hi, o, p, m): the parameters F::make_params(range, o) of W
/// groups whose finite ranges are the lanes of lo / hi, written to p[0..W), and m[k] =
/// Encoder<F, R, A>::multiplier(p[k]); the same operations as the scalar make_params, lane by
/// lane (IEEE float / double arithmetic, the same rounding and clamps), so equal bit for bit in
/// every lane that is not flagged in the returned mask. Flagged ("special") lanes are the
/// cases the batch does not reproduce (constant groups, a scale large enough for
/// finite_scale's cap, subnormal MX ranges): the caller recomputes them with the scalar
/// make_params. supported(o): the options the batch reproduces (others: the per-group path).
template <class F, Rounding R, class A>
struct MinMaxParams {
    static constexpr bool available = false;
};

/// IntFormat (f32 scale storage):
///   asymmetric: [l, h] = [lo, hi] widened to contain 0 if o.widen_to_zero;
///               scale = float(clamp((double(h) - double(l)) / (2^b - 1), FLT_MIN, FLT_MAX));
///               zero = clamp(round_R(-l / scale), 0, 2^b - 1) (float division);
///   symmetric:  scale = float(clamp(double(max(|lo|, |hi|)) / qmax, FLT_MIN, FLT_MAX)), zero fixed;
///   m = 1.0f / scale. Special: lo == hi (constant group), scale >= 2^119 (scale * |c - zero|
///   could pass FLT_MAX: finite_scale's cap; below 2^119 * 255 < FLT_MAX it never applies).
template <int Bits, bool Sym, IntRange Rg, Rounding R, class A>
struct MinMaxParams<IntFormat<Bits, Sym, Rg>, R, A> {
    using F = IntFormat<Bits, Sym, Rg>;
    using B = fbatch<A>;
    static constexpr bool available = true;
    static bool supported(const QuantOptions& o) noexcept { return o.scale_storage == ScaleStorage::f32; }
    static xsimd::batch_bool<float, A> make(const B& lo, const B& hi, const QuantOptions& o, typename F::Params* p,
                                            float* m) noexcept {
        constexpr std::size_t W = B::size;
        B scale, z;
        if constexpr (Sym) {
            constexpr double qmax = Rg == IntRange::restricted ? double(F::q_max) : double(F::q_max) + 0.5;
            scale = scale_from_range<A>(B(0.0f), xsimd::max(xsimd::abs(lo), xsimd::abs(hi)), qmax, A{});
            z = B(float(F::symmetric_zero));
        } else {
            B l = lo, h = hi;
            if (o.widen_to_zero) {  // the sign of a zero end does not change scale or zero
                l = xsimd::min(l, B(0.0f));
                h = xsimd::max(h, B(0.0f));
            }
            scale = scale_from_range<A>(l, h, double(F::levels), A{});
            z = xsimd::min(xsimd::max(round_integral<R, A>(-l / scale), B(0.0f)), B(float(F::levels)));
        }
        using P = typename F::Params;  // {float scale; int32 zero}: W records stored interleaved
        static_assert(std::is_trivially_copyable_v<P> && sizeof(P) == 8 && offsetof(P, zero) == 4);
        alignas(64) float rec[2 * W];
        store_interleaved<A>(scale, xsimd::bitwise_cast<B>(xsimd::batch_cast<std::int32_t>(z)), rec, A{});
        std::memcpy(p, rec, sizeof rec);
        (B(1.0f) / scale).store_unaligned(m);
        return (lo == hi) | (scale >= B(0x1p119f));
    }
};

/// Scaled minifloat (f32 scale storage): scale = max(max(|lo|, |hi|) / float(max_normal),
/// FLT_MIN) (float division), m = 1.0f / scale. Special: lo == hi (constant or all-zero group).
template <int E, int M, Rounding R, class A>
struct MinMaxParams<Minifloat<E, M>, R, A> {
    using F = Minifloat<E, M>;
    using B = fbatch<A>;
    static constexpr bool available = true;
    static bool supported(const QuantOptions& o) noexcept { return o.scale_storage == ScaleStorage::f32; }
    static xsimd::batch_bool<float, A> make(const B& lo, const B& hi, const QuantOptions&, typename F::Params* p,
                                            float* m) noexcept {
        constexpr std::size_t W = B::size;
        const B amax = xsimd::max(xsimd::abs(lo), xsimd::abs(hi));
        const B scale = xsimd::max(amax / B(static_cast<float>(F::max_normal)), B(std::numeric_limits<float>::min()));
        static_assert(std::is_trivially_copyable_v<typename F::Params> && sizeof(typename F::Params) == 4);
        alignas(64) float sc[W];
        scale.store_aligned(sc);
        std::memcpy(p, sc, sizeof sc);
        (B(1.0f) / scale).store_unaligned(m);
        return lo == hi;
    }
};

/// MX formats, MxScaleRule::ocp_floor: amax = max(|lo|, |hi|), e = clamp(floor(log2(amax)) -
/// emax_elem, -127, 127) from amax's exponent field, byte = e + 127, m = 2^-e (the bit
/// pattern (127 - e) << 23). A zero or subnormal amax (exponent field 0) gives e = -127 - emax
/// -> -127, byte 0, as the scalar rule (its floor_log2 is <= -127 there). Special: amax >= 2^127
/// (e = 127 when emax_elem = 0: 2^-127 is subnormal, not a bit pattern of that form).
template <int EmaxElem, class A>
xsimd::batch_bool<float, A> mx_floor_params(const fbatch<A>& lo, const fbatch<A>& hi, MxParams* p, float* m) noexcept {
    using B = fbatch<A>;
    using I = ibatch<A>;
    constexpr std::size_t W = B::size;
    const B amax = xsimd::max(xsimd::abs(lo), xsimd::abs(hi));
    I e = (xsimd::bitwise_cast<I>(amax) >> 23) - I(127 + EmaxElem);
    e = xsimd::min(xsimd::max(e, I(E8M0::min_exponent)), I(E8M0::max_exponent));
    static_assert(std::is_trivially_copyable_v<MxParams> && sizeof(MxParams) == 1);
    alignas(64) std::uint8_t eb[W];
    store_bytes<A>(xsimd::bitwise_cast<ubatch<A>>(e + I(E8M0::bias)), eb);  // bytes 0..254
    std::memcpy(p, eb, W);
    xsimd::bitwise_cast<B>((I(127) - e) << 23).store_unaligned(m);
    return amax >= B(0x1p127f);
}
template <int Bits, std::size_t Blk, Rounding R, class A>
struct MinMaxParams<MxInt<Bits, Blk>, R, A> {
    using F = MxInt<Bits, Blk>;
    static constexpr bool available = true;
    static bool supported(const QuantOptions& o) noexcept { return o.mx_scale_rule == MxScaleRule::ocp_floor; }
    static xsimd::batch_bool<float, A> make(const fbatch<A>& lo, const fbatch<A>& hi, const QuantOptions&,
                                            typename F::Params* p, float* m) noexcept {
        return mx_floor_params<F::emax_elem, A>(lo, hi, p, m);
    }
};
template <int E, int M, std::size_t Blk, Rounding R, class A>
struct MinMaxParams<MxFp<E, M, Blk>, R, A> {
    using F = MxFp<E, M, Blk>;
    static constexpr bool available = true;
    static bool supported(const QuantOptions& o) noexcept { return o.mx_scale_rule == MxScaleRule::ocp_floor; }
    static xsimd::batch_bool<float, A> make(const fbatch<A>& lo, const fbatch<A>& hi, const QuantOptions&,
                                            typename F::Params* p, float* m) noexcept {
        return mx_floor_params<F::emax_elem, A>(lo, hi, p, m);
    }
};

/// Values of Encoder::raw below this are NaN / Inf (or a magnitude >= 2^30 after scaling, which
/// the per-group path then handles): round_to_int32 gives INT_MIN for them.
inline constexpr std::int32_t raw_overflow = -(1 << 30);

/// Encoders with the integer form raw / codes (IntFormat, MxInt): the row kernel detects NaN /
/// Inf from raw, with no separate pass over the values.
template <class E, class A>
concept RawEncoder = requires(const E& e, const fbatch<A>& x) {
    { e.codes(e.raw(x)) } -> std::same_as<ubatch<A>>;
};

/// Encoders whose codes are raw values clamped to a range inside [0, 255] (IntFormat): packed by
/// pack32_clamped, the clamp folded into the narrowing.
template <class E>
concept ClampEncoder = requires {
    { E::code_lo } -> std::convertible_to<std::int32_t>;
    { E::code_hi } -> std::convertible_to<std::int32_t>;
};

template <QuantFormat F, Rounding R, class A>
bool rtn_row_minmax(const float* x, std::size_t cols, std::size_t gc, const QuantOptions& o, typename F::Params* params,
                    std::uint8_t* packed) noexcept {
    using MP = MinMaxParams<F, R, A>;
    if constexpr (!MP::available) {
        return false;
    } else {
        using B = fbatch<A>;
        using I = ibatch<A>;
        constexpr std::size_t W = B::size, V = 32 / W;
        static_assert(32 % W == 0, "rtn_row: the batch width must divide 32");
        constexpr bool raw = RawEncoder<Encoder<F, R, A>, A>;
        if (!MP::supported(o) || gc == 0 || gc % 32 != 0 || cols % gc != 0) return false;
        const std::size_t ng = cols / gc;
        // Segments of up to S groups (about 16 KiB of values, in L1) in two passes: all parameters,
        // then all codes, so that the parameter chains of successive batches (reduction, double
        // division, zero point: ~70 cycles of latency) overlap each other and the range loads.
        constexpr std::size_t S = 128;
        static_assert(S % W == 0);
        const std::size_t fit = 4096 / gc / W * W, seg = fit < W ? W : (fit > S ? S : fit);
        alignas(64) float mult[S];
        I least(0);  // min of Encoder::raw (encoders with raw): < raw_overflow iff a NaN or Inf was seen
        // Encoders without raw (minifloat, MXFP): max |bits| of the scaled values y = x * m, taken in
        // the encode pass (the encoder computes |bits(y)| itself, no separate pass over x):
        // > 0x7F7FFFFF if a NaN or Inf was seen, as y is NaN / +-Inf for a NaN / +-Inf x whatever m
        // is (an Inf range gives m = 0, and Inf * 0 = NaN). For finite x, |y| <= amax * m stays
        // below 2^(emax+1) for the group's own scale; were it ever to overflow, the row would only
        // take the per-group path, never get a wrong code.
        I mag(0);
        for (std::size_t s0 = 0; s0 < ng; s0 += seg) {
            const std::size_t se = ng - s0 < seg ? ng : s0 + seg;
            for (std::size_t g0 = s0; g0 < se; g0 += W) {
                const std::size_t m = se - g0 < W ? se - g0 : W;
                // ranges: per-lane min / max of each group, then the W reductions at once
                B lov[W], hiv[W];
                auto block = [&](const float* xb, B& lo, B& hi) PTQ_ALWAYS_INLINE {  // 32 values
                    lo = hi = B::load_unaligned(xb);
                    for (std::size_t t = 1; t < V; ++t) {
                        const B v = B::load_unaligned(xb + t * W);
                        lo = xsimd::min(lo, v);
                        hi = xsimd::max(hi, v);
                    }
                };
                for (std::size_t k = 0; k < m; ++k) {
                    const float* xg = x + (g0 + k) * gc;
                    block(xg, lov[k], hiv[k]);
                    for (std::size_t j = 32; j < gc; j += 32) {
                        B lo, hi;
                        block(xg + j, lo, hi);
                        lov[k] = xsimd::min(lov[k], lo);
                        hiv[k] = xsimd::max(hiv[k], hi);
                    }
                }
                for (std::size_t k = m; k < W; ++k) {
                    lov[k] = lov[0];
                    hiv[k] = hiv[0];
                }
                // parameters, special lanes from the scalar make_params; a full batch straight
                // into params (W records, vector stores), a partial one through a local copy
                typename F::Params local[W];
                typename F::Params* p = m == W ? params + g0 : local;
                float* mu = mult + (g0 - s0);
                const auto special = MP::make(min_of_groups<A>(lov), max_of_groups<A>(hiv), o, p, mu);
                if (xsimd::any(special)) [[unlikely]] {
                    alignas(64) float sp[W];
                    xsimd::select(special, B(1.0f), B(0.0f)).store_aligned(sp);
                    for (std::size_t k = 0; k < m; ++k)
                        if (sp[k] != 0.0f) {
                            p[k] = F::make_params(range<A>(x + (g0 + k) * gc, gc), o);
                            mu[k] = Encoder<F, R, A>::multiplier(p[k]);
                        }
                }
                if (m < W)
                    for (std::size_t k = 0; k < m; ++k) params[g0 + k] = local[k];
            }
            // codes, packed 32 at a time
            for (std::size_t g = s0; g < se; ++g) {
                const Encoder<F, R, A> enc(params[g], mult[g - s0]);
                const float* xg = x + g * gc;
                std::uint8_t* out = packed + g * gc / 8 * F::bits;
                for (std::size_t j = 0; j < gc; j += 32) {
                    if constexpr (raw && ClampEncoder<Encoder<F, R, A>>) {
                        I q[V];
                        for (std::size_t t = 0; t < V; ++t) {
                            q[t] = enc.raw(B::load_unaligned(xg + j + t * W));
                            least = xsimd::min(least, q[t]);
                        }
                        using E = Encoder<F, R, A>;
                        pack32_clamped<F::bits, E::code_lo, E::code_hi, A>(q, out + j / 8 * F::bits, A{});
                    } else {
                        ubatch<A> c[V];
                        for (std::size_t t = 0; t < V; ++t) {
                            if constexpr (raw) {
                                const I q = enc.raw(B::load_unaligned(xg + j + t * W));
                                least = xsimd::min(least, q);
                                c[t] = enc.codes(q);
                            } else {
                                const B y = enc.scaled(B::load_unaligned(xg + j + t * W));
                                mag = xsimd::max(mag, xsimd::bitwise_cast<I>(y) & I(0x7FFFFFFF));
                                c[t] = enc.encode(y);
                            }
                        }
                        pack32<F::bits, A>(c, out + j / 8 * F::bits, A{});
                    }
                }
            }
            if (raw ? xsimd::any(least < I(raw_overflow)) : xsimd::any(mag > I(0x7F7FFFFF))) return false;
        }
        return true;
    }
}

}  // namespace detail

// =============================================================================================
// quantize_group
// =============================================================================================

/// codes[i] = F::quantize(x[i], p, r) for i < n (formula, rounding and clamp range in the
/// Encoder comments above and in F's class comment); all-zero codes for NaN parameters.
/// Every format is vectorised: minifloat encoding is done with integer bit manipulation.
template <QuantFormat F, class Arch = xsimd::default_arch>
void quantize_group(const float* x, std::size_t n, const typename F::Params& p, Rounding r,
                    std::uint8_t* codes) noexcept {
    if (F::is_nan(p)) {
        if (n) std::memset(codes, 0, n);
        return;
    }
    detail::with_rounding(r, [&]<Rounding R>() { detail::quantize_simd<F, R, Arch>(x, n, p, codes); });
}

/// Round-to-nearest of one row with min-max parameters, all groups in batches of W: for the
/// groups of gc values of x[0..cols) (gc a multiple of 32 that divides cols), params[g] =
/// F::make_params(range of group g, o) and packed[0 .. cols*bits/8) = the canonical stream of
/// the codes F::quantize(x, params[g], o.rounding): bit for bit what range + make_params +
/// quantize_group + pack_bits give (formulas in MinMaxParams and the Encoder comments), with
/// W groups' ranges reduced and parameters computed at once and the codes packed 32 at a time
/// straight from the encoder. Returns false when the row needs the per-group path: a NaN or
/// Inf in the row (QuantOptions::non_finite applies there), another group shape, or a format
/// / options without batch parameters (IntMinFormat, scale_storage != f32, an MX rule other
/// than ocp_floor); params and packed may then hold partial results, to be overwritten.
template <QuantFormat F, class Arch = xsimd::default_arch>
bool rtn_row(const float* x, std::size_t cols, std::size_t gc, const QuantOptions& o, typename F::Params* params,
             std::uint8_t* packed) noexcept {
    return detail::with_rounding(
        o.rounding, [&]<Rounding R>() { return detail::rtn_row_minmax<F, R, Arch>(x, cols, gc, o, params, packed); });
}

// =============================================================================================
// pack / unpack
// =============================================================================================

/// Packs n codes (low `bits` bits of each byte) into out[0 .. packed_bytes(n, bits)) in the
/// canonical layout (kernel/packing.hpp); padding bits of the last byte are zero.
/// Blocks of 8 codes are packed with SWAR inside 64-bit lanes; the last < 8*lanes codes one by one.
template <class Arch = xsimd::default_arch>
void pack_bits(const std::uint8_t* codes, std::size_t n, int bits, std::uint8_t* out) noexcept {
    detail::with_bits(bits, [&]<int B>() {
        using V = detail::u64batch<Arch>;
        constexpr std::size_t L = V::size;
        std::size_t i = 0;
        for (; i + 8 * L <= n; i += 8 * L) {
            const V v = detail::pack8_lanes<B>(V::load_unaligned(reinterpret_cast<const std::uint64_t*>(codes + i)));
            alignas(64) std::uint64_t t[L];
            v.store_aligned(t);
            std::uint8_t* o = out + i / 8 * B;
            for (std::size_t l = 0; l < L; ++l) std::memcpy(o + l * B, &t[l], B);
        }
        for (; i + 8 <= n; i += 8) {
            std::uint64_t w;
            std::memcpy(&w, codes + i, 8);
            w = detail::pack8_lanes<B>(w);
            std::memcpy(out + i / 8 * B, &w, B);
        }
        if (i < n) {
            std::uint8_t* o = out + i / 8 * B;
            std::memset(o, 0, packed_bytes(n - i, B));
            for (std::size_t k = i; k < n; ++k) ref::set_code(o, k - i, B, codes[k]);
        }
    });
}

/// Unpacks codes [first, first + n) of a packed stream into one byte each (any `first`: the
/// first codes up to a byte boundary are read one by one).
template <class Arch = xsimd::default_arch>
void unpack_bits(const std::uint8_t* packed, std::size_t first, std::size_t n, int bits, std::uint8_t* codes) noexcept {
    detail::with_bits(bits, [&]<int B>() {
        std::size_t i = 0;
        for (; i < n && ((first + i) * B) % 8 != 0; ++i)
            codes[i] = static_cast<std::uint8_t>(ref::get_code(packed, first + i, B));
        if (i == n) return;
        std::uint8_t* dst = codes + i;
        detail::unpack_stream<B, Arch>(packed + (first + i) * B / 8, n - i,
                                       [&](std::size_t i0, const detail::ubatch<Arch>& c, std::size_t cnt) {
                                           if (cnt == detail::ubatch<Arch>::size) {
                                               detail::store_bytes<Arch>(c, dst + i0);
                                           } else {
                                               std::uint8_t t[detail::ubatch<Arch>::size];
                                               detail::store_bytes<Arch>(c, t);
                                               std::memcpy(dst + i0, t, cnt);
                                           }
                                       });
    });
}

// =============================================================================================
// dequantize_row
// =============================================================================================

/// Dequantizes one packed row (layout.cols codes, starting at bit 0 of packed_row) whose groups
/// use params[0 .. col_groups) (QuantizedMatrix::row_params of the row): out[c] =
/// F::dequantize(code c, params of c's group), formulas in detail::DequantConstants.
/// The row is unpacked in units of 32*W codes straight from the bit stream (no byte-alignment
/// of groups needed); a batch of W outputs inside one group uses broadcast constants.
/// Fast path (group size a multiple of W, or one group per row): no batch straddles groups,
/// so a batch needs only a compare against the end of its group; the layout is read once
/// into locals (the stores to `out` could otherwise alias it and force reloads). Other group
/// sizes: a batch that straddles groups uses per-lane constants (out of line).
template <QuantFormat F, class Arch = xsimd::default_arch>
void dequantize_row(const std::uint8_t* packed_row, const GroupLayout& layout, const typename F::Params* params,
                    float* out) noexcept {
    using Fb = detail::fbatch<Arch>;
    constexpr std::size_t W = Fb::size;
    const std::size_t n = layout.cols, gc = layout.group_cols;
    if (n == 0 || layout.col_groups() == 0) return;
    auto store = [out](std::size_t i0, const Fb& v, std::size_t cnt) PTQ_ALWAYS_INLINE {
        if (cnt == W) {
            v.store_unaligned(out + i0);
        } else {
            alignas(64) float t[W];
            v.store_aligned(t);
            std::memcpy(out + i0, t, cnt * sizeof(float));
        }
    };
    std::size_t g = 0, gend = gc < n ? gc : n;
    detail::DequantConstants<F> kc(params[0]);
    Fb k0(kc.k0), k1(kc.k1);
    if (gc % W == 0 || gc >= n) {
        detail::unpack_stream<F::bits, Arch>(
            packed_row, n, [&](std::size_t i0, const detail::ubatch<Arch>& c, std::size_t cnt) PTQ_ALWAYS_INLINE {
                if (i0 >= gend) {  // next group (groups hold >= W codes: one step)
                    ++g;
                    gend = gend + gc < n ? gend + gc : n;
                    kc = detail::DequantConstants<F>(params[g]);
                    k0 = Fb(kc.k0);
                    k1 = Fb(kc.k1);
                }
                store(i0, detail::dequantize_codes<F, Arch>(c, k0, k1), cnt);
            });
        return;
    }
    detail::unpack_stream<F::bits, Arch>(
        packed_row, n, [&](std::size_t i0, const detail::ubatch<Arch>& c, std::size_t cnt) PTQ_ALWAYS_INLINE {
            while (i0 >= gend) {  // next group
                ++g;
                gend = gend + gc < n ? gend + gc : n;
                kc = detail::DequantConstants<F>(params[g]);
                k0 = Fb(kc.k0);
                k1 = Fb(kc.k1);
            }
            if (i0 + cnt <= gend) {
                store(i0, detail::dequantize_codes<F, Arch>(c, k0, k1), cnt);
            } else {  // the batch straddles groups: per-lane constants (out of line)
                store(i0, detail::dequantize_straddling<F, Arch>(c, layout, params, i0, g), cnt);
            }
        });
}

}  // namespace ptq::kernel
