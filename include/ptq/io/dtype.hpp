#pragma once
// The element types of safetensors files (huggingface/safetensors `Dtype`), with their width in
// bits and their names as written in the JSON header.
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ptq::io {

/// A safetensors element type. The enumerator names are the names written in the file.
/// F4, F6_E2M3, F6_E3M2 and F8_E8M0 exist only since safetensors 0.6.0: consumers store E8M0
/// scales and packed FP4 as U8 for compatibility with older readers.
enum class DType : std::uint8_t {
    BOOL,
    U8,
    I8,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
    C64,
    F8_E4M3,
    F8_E5M2,
    F8_E4M3FNUZ,
    F8_E5M2FNUZ,
    F4,
    F6_E2M3,
    F6_E3M2,
    F8_E8M0,
};

/// Every DType, in declaration order.
inline constexpr std::array<DType, 22> all_dtypes = {
    DType::BOOL, DType::U8,      DType::I8,      DType::I16,     DType::U16,         DType::F16,
    DType::BF16, DType::I32,     DType::U32,     DType::F32,     DType::F64,         DType::I64,
    DType::U64,  DType::C64,     DType::F8_E4M3, DType::F8_E5M2, DType::F8_E4M3FNUZ, DType::F8_E5M2FNUZ,
    DType::F4,   DType::F6_E2M3, DType::F6_E3M2, DType::F8_E8M0};

/// Width of one element in bits (safetensors `Dtype::bitsize`): 4 for F4, 6 for F6_*.
constexpr std::size_t bits_per_element(DType t) noexcept {
    switch (t) {
        case DType::F4: return 4;
        case DType::F6_E2M3:
        case DType::F6_E3M2: return 6;
        case DType::BOOL:
        case DType::U8:
        case DType::I8:
        case DType::F8_E4M3:
        case DType::F8_E5M2:
        case DType::F8_E4M3FNUZ:
        case DType::F8_E5M2FNUZ:
        case DType::F8_E8M0: return 8;
        case DType::I16:
        case DType::U16:
        case DType::F16:
        case DType::BF16: return 16;
        case DType::I32:
        case DType::U32:
        case DType::F32: return 32;
        case DType::F64:
        case DType::I64:
        case DType::U64:
        case DType::C64: return 64;
    }
    return 0;
}

/// The name written in a safetensors header ("F16", "F8_E4M3", ...).
constexpr std::string_view dtype_name(DType t) noexcept {
    switch (t) {
        case DType::BOOL: return "BOOL";
        case DType::U8: return "U8";
        case DType::I8: return "I8";
        case DType::I16: return "I16";
        case DType::U16: return "U16";
        case DType::F16: return "F16";
        case DType::BF16: return "BF16";
        case DType::I32: return "I32";
        case DType::U32: return "U32";
        case DType::F32: return "F32";
        case DType::F64: return "F64";
        case DType::I64: return "I64";
        case DType::U64: return "U64";
        case DType::C64: return "C64";
        case DType::F8_E4M3: return "F8_E4M3";
        case DType::F8_E5M2: return "F8_E5M2";
        case DType::F8_E4M3FNUZ: return "F8_E4M3FNUZ";
        case DType::F8_E5M2FNUZ: return "F8_E5M2FNUZ";
        case DType::F4: return "F4";
        case DType::F6_E2M3: return "F6_E2M3";
        case DType::F6_E3M2: return "F6_E3M2";
        case DType::F8_E8M0: return "F8_E8M0";
    }
    return "?";
}

/// The DType whose name is exactly `name` (case-sensitive, as the reference reader), or nullopt.
constexpr std::optional<DType> dtype_from_name(std::string_view name) noexcept {
    for (DType t : all_dtypes)
        if (dtype_name(t) == name) return t;
    return std::nullopt;
}

}  // namespace ptq::io
