#pragma once
// Which ptq formats a checkpoint layout can hold (compile-time tests used by the exporters).
#include <type_traits>

#include <ptq/format/int_format.hpp>
#include <ptq/format/minifloat.hpp>
#include <ptq/format/mx_fp.hpp>

namespace ptq::io {

/// True for IntFormat<B, S, R> (uniform integer codes with a float scale and integer zero).
template <class F>
struct is_int_format : std::false_type {};
template <int B, bool S, IntRange R>
struct is_int_format<IntFormat<B, S, R>> : std::true_type {};
template <class F>
inline constexpr bool is_int_format_v = is_int_format<F>::value;

/// True for Minifloat<4, 3> (FP8 E4M3FN with a float scale per group).
template <class F>
inline constexpr bool is_fp8_e4m3_v = std::is_same_v<F, Minifloat<4, 3>>;

/// True for MxFp<2, 1, 32> (OCP MXFP4: E2M1 codes, one E8M0 scale per 32 elements).
template <class F>
inline constexpr bool is_mxfp4_v = std::is_same_v<F, MxFp<2, 1, 32>>;

}  // namespace ptq::io
