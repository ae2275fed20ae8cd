#pragma once
// Forward declarations of ptq's public types.
#include <cstddef>

namespace ptq {
enum class Rounding : unsigned char;
enum class IntRange : unsigned char;
enum class ScaleStorage : unsigned char;
struct QuantOptions;
struct RangeStats;
struct GroupLayout;
struct PerTensor;
struct PerChannel;
struct PerToken;
template <std::size_t G>
struct PerGroup;
template <int Bits, bool Symmetric, IntRange Range>
struct IntFormat;
template <int Bits>
struct IntMinFormat;
template <int Bits, std::size_t Block>
struct MxInt;
template <int E, int M>
struct Minifloat;
template <int E, int M, std::size_t Block>
struct MxFp;
}  // namespace ptq
