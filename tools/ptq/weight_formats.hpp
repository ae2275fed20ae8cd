// The weight formats the ptq tool offers, as compile-time type lists grouped by family; every
// format is instantiated (RTN, GPTQ, AWQ, SmoothQuant, LQER, the file encoders) in
// quantize_formats.cpp.
#pragma once

#include <ptq/format/int_format.hpp>
#include <ptq/format/int_min_format.hpp>
#include <ptq/format/minifloat.hpp>
#include <ptq/format/mx_fp.hpp>
#include <ptq/format/mx_int.hpp>

#include <string>
#include <type_traits>

namespace ptq::llama {

template <class... Ts>
struct TypeList {};

/// Calls f.template operator()<T>() for each T until one returns true; returns whether one did.
template <class... Ts, class F>
bool for_each_type(TypeList<Ts...>, F&& f) {
    return (f.template operator()<Ts>() || ...);
}

using Int34Formats = TypeList<IntFormat<3, true>, IntFormat<3, false>, IntFormat<4, true>, IntFormat<4, false>>;
using IntOtherFormats =
    TypeList<IntFormat<2, true>, IntFormat<2, false>, IntFormat<5, false>, IntFormat<8, true>, IntFormat<8, false>>;
using FloatMinFormats = TypeList<Fp8E4M3, IntMinFormat<4>>;
using MxFormats = TypeList<MxInt<3, 32>, MxInt<4, 16>, MxInt<4, 32>, MxFp<2, 1, 32>>;

/// Activation formats of a=ACT.
using ActFormats = TypeList<IntFormat<8, true>, IntFormat<4, true>, Fp8E4M3, MxInt<8, 16>, MxInt<8, 32>, MxInt<8, 128>>;

/// Activation-format name as written in recipes: "int8" / "int4" for per-token symmetric INT8 /
/// INT4, otherwise the format's own name ("fp8-e4m3", "mxint8-b16").
template <class F>
std::string act_name() {
    if constexpr (std::is_same_v<F, IntFormat<8, true>>) return "int8";
    else if constexpr (std::is_same_v<F, IntFormat<4, true>>) return "int4";
    else return F::name();
}

}  // namespace ptq::llama
