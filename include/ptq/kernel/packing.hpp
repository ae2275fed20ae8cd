#pragma once
// The canonical packed layout of b-bit codes (1 <= b <= 8) and its scalar reference codecs.
//
// Layout (independent of the SIMD width, identical on every machine):
//   * a matrix is stored row by row; each row is a little-endian bit stream: code i of the
//     row occupies bits [i*b, (i+1)*b) of the stream, where bit k of the stream is bit (k % 8)
//     of byte (k / 8) (LSB first);
//   * each row is padded with zero bits to a whole byte: row_stride = ceil(cols * b / 8) bytes;
//   * rows follow each other with no further padding.
// Example, b = 4: byte j holds code 2j in its low nibble and code 2j+1 in its high nibble.
// Example, b = 3: codes c0..c7 fill 3 bytes: byte0 = c0 | c1<<3 | (c2&3)<<6, ...
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ptq {

/// Bytes of a stream of n codes of `bits` bits: ceil(n * bits / 8).
constexpr std::size_t packed_bytes(std::size_t n, int bits) noexcept {
    return (n * static_cast<std::size_t>(bits) + 7) / 8;
}

namespace ref {

/// Code i of a packed stream (reference).
inline std::uint32_t get_code(const std::uint8_t* packed, std::size_t i, int bits) noexcept {
    const std::size_t bit = i * static_cast<std::size_t>(bits);
    std::uint32_t v = 0;
    for (int k = 0; k < bits; ++k) {
        const std::size_t b = bit + static_cast<std::size_t>(k);
        v |= static_cast<std::uint32_t>((packed[b >> 3] >> (b & 7)) & 1u) << k;
    }
    return v;
}

/// Writes code i (its low `bits` bits) into a packed stream (reference; other bits untouched).
inline void set_code(std::uint8_t* packed, std::size_t i, int bits, std::uint32_t code) noexcept {
    const std::size_t bit = i * static_cast<std::size_t>(bits);
    for (int k = 0; k < bits; ++k) {
        const std::size_t b = bit + static_cast<std::size_t>(k);
        const auto m = static_cast<std::uint8_t>(1u << (b & 7));
        if ((code >> k) & 1u) packed[b >> 3] = static_cast<std::uint8_t>(packed[b >> 3] | m);
        else packed[b >> 3] = static_cast<std::uint8_t>(packed[b >> 3] & ~m);
    }
}

/// Packs n codes (one per byte, only the low `bits` bits are used) into
/// out[0 .. packed_bytes(n, bits)); the padding bits of the last byte are zero.
inline void pack_bits(const std::uint8_t* codes, std::size_t n, int bits, std::uint8_t* out) noexcept {
    const std::size_t nb = packed_bytes(n, bits);
    if (nb) std::memset(out, 0, nb);
    for (std::size_t i = 0; i < n; ++i) set_code(out, i, bits, codes[i]);
}

/// Unpacks codes [first, first + n) of a packed stream into one byte each.
inline void unpack_bits(const std::uint8_t* packed, std::size_t first, std::size_t n, int bits,
                        std::uint8_t* codes) noexcept {
    for (std::size_t i = 0; i < n; ++i) codes[i] = static_cast<std::uint8_t>(get_code(packed, first + i, bits));
}

}  // namespace ref
}  // namespace ptq
