#pragma once
// GGUF's two type vocabularies: the ggml tensor types (with their block size and bytes per
// block, as in ggml's `type_traits` table, ggml-org/ggml src/ggml.c) and the metadata value
// types of a GGUF key/value pair (gguf.h `enum gguf_type`).
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ptq::io {

/// A ggml tensor type. The values are the ones stored in GGUF tensor infos; the gaps (4, 5,
/// 31-33, 36-38) are types ggml removed and refuses in files.
enum class GgmlType : std::uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
    NVFP4 = 40,
    Q1_0 = 41,
    Q2_0 = 42,
};

/// Size of a ggml type: `block_size` elements are stored in `type_size` bytes.
/// Both are 0 for a value that is not a (still supported) ggml type.
struct GgmlTypeTraits {
    std::string_view name;    ///< ggml's `type_name` ("f32", "q4_0", "q4_K", "mxfp4", ...)
    std::int64_t block_size;  ///< elements per block (`blck_size`)
    std::size_t type_size;    ///< bytes per block (`type_size`)
};

/// Traits of the raw type value `t` (any uint32: values from a file are checked with this).
constexpr GgmlTypeTraits ggml_type_traits(std::uint32_t t) noexcept {
    switch (t) {
        case 0: return {"f32", 1, 4};
        case 1: return {"f16", 1, 2};
        case 2: return {"q4_0", 32, 18};  // f16 d, 16 bytes of nibbles
        case 3: return {"q4_1", 32, 20};  // f16 d, f16 m, 16 bytes
        case 6: return {"q5_0", 32, 22};  // f16 d, 4 bytes high bits, 16 bytes
        case 7: return {"q5_1", 32, 24};  // f16 d, f16 m, 4, 16
        case 8: return {"q8_0", 32, 34};  // f16 d, int8[32]
        case 9: return {"q8_1", 32, 36};  // f16 d, f16 s, int8[32]
        case 10: return {"q2_K", 256, 84};
        case 11: return {"q3_K", 256, 110};
        case 12: return {"q4_K", 256, 144};  // f16 d, f16 dmin, 12 bytes of 6-bit scales, 128
        case 13: return {"q5_K", 256, 176};
        case 14: return {"q6_K", 256, 210};
        case 15: return {"q8_K", 256, 292};
        case 16: return {"iq2_xxs", 256, 66};
        case 17: return {"iq2_xs", 256, 74};
        case 18: return {"iq3_xxs", 256, 98};
        case 19: return {"iq1_s", 256, 50};
        case 20: return {"iq4_nl", 32, 18};
        case 21: return {"iq3_s", 256, 110};
        case 22: return {"iq2_s", 256, 82};
        case 23: return {"iq4_xs", 256, 136};
        case 24: return {"i8", 1, 1};
        case 25: return {"i16", 1, 2};
        case 26: return {"i32", 1, 4};
        case 27: return {"i64", 1, 8};
        case 28: return {"f64", 1, 8};
        case 29: return {"iq1_m", 256, 56};
        case 30: return {"bf16", 1, 2};
        case 34: return {"tq1_0", 256, 54};
        case 35: return {"tq2_0", 256, 66};
        case 39: return {"mxfp4", 32, 17};  // u8 E8M0 e, 16 bytes of E2M1 nibbles
        case 40: return {"nvfp4", 64, 36};  // 4 UE4M3 scales (one per 16), 32 bytes of E2M1
        case 41: return {"q1_0", 128, 18};  // f16 d, 16 bytes of bits
        case 42: return {"q2_0", 64, 18};   // f16 d, 16 bytes of 2-bit codes
        default: return {"", 0, 0};
    }
}
constexpr GgmlTypeTraits ggml_type_traits(GgmlType t) noexcept {
    return ggml_type_traits(static_cast<std::uint32_t>(t));
}

/// True if `t` is a ggml type a GGUF file may hold (ggml's `type_size != 0` check).
constexpr bool is_valid_ggml_type(std::uint32_t t) noexcept { return ggml_type_traits(t).block_size != 0; }

constexpr std::int64_t ggml_block_size(GgmlType t) noexcept { return ggml_type_traits(t).block_size; }
constexpr std::size_t ggml_type_size(GgmlType t) noexcept { return ggml_type_traits(t).type_size; }
constexpr std::string_view ggml_type_name(GgmlType t) noexcept { return ggml_type_traits(t).name; }

/// Bytes of a row of `ne0` elements (ggml_row_size); `ne0` must be a multiple of the block size.
constexpr std::size_t ggml_row_size(GgmlType t, std::int64_t ne0) noexcept {
    const auto tr = ggml_type_traits(t);
    return tr.block_size == 0 ? 0 : tr.type_size * static_cast<std::size_t>(ne0 / tr.block_size);
}

/// The type of a GGUF metadata value (gguf.h `enum gguf_type`).
enum class GgufValueType : std::uint32_t {
    UINT8 = 0,
    INT8 = 1,
    UINT16 = 2,
    INT16 = 3,
    UINT32 = 4,
    INT32 = 5,
    FLOAT32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    UINT64 = 10,
    INT64 = 11,
    FLOAT64 = 12,
};

/// Bytes of one value of a fixed-size type; 0 for STRING, ARRAY and unknown values.
constexpr std::size_t gguf_value_size(std::uint32_t t) noexcept {
    switch (t) {
        case 0:
        case 1:
        case 7: return 1;
        case 2:
        case 3: return 2;
        case 4:
        case 5:
        case 6: return 4;
        case 10:
        case 11:
        case 12: return 8;
        default: return 0;
    }
}

constexpr std::string_view gguf_value_type_name(GgufValueType t) noexcept {
    switch (t) {
        case GgufValueType::UINT8: return "u8";
        case GgufValueType::INT8: return "i8";
        case GgufValueType::UINT16: return "u16";
        case GgufValueType::INT16: return "i16";
        case GgufValueType::UINT32: return "u32";
        case GgufValueType::INT32: return "i32";
        case GgufValueType::FLOAT32: return "f32";
        case GgufValueType::BOOL: return "bool";
        case GgufValueType::STRING: return "str";
        case GgufValueType::ARRAY: return "arr";
        case GgufValueType::UINT64: return "u64";
        case GgufValueType::INT64: return "i64";
        case GgufValueType::FLOAT64: return "f64";
    }
    return "?";
}

}  // namespace ptq::io
